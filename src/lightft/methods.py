"""Fine-tuning methods: the names ``method:`` accepts, and the PEFT config object built from the ``peft:``
section (passed straight to the PEFT config class, so PEFT validates its own fields). Imports peft only
when called."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

from lightft.errors import ConfigError

# Methods that are not PEFT tuners.
NON_PEFT_METHODS = ("full", "head")
# Convenience names for LoRA variants that PEFT exposes as LoraConfig flags.
LORA_VARIANTS = {"dora": {"use_dora": True}, "rslora": {"use_rslora": True}}
# LoRA and its variants: one LoraConfig, so they share a `peft:` section, the default one and `lightft serve`.
LORA_FAMILY = ("lora", *LORA_VARIANTS)
# PEFT methods that cannot wrap an encoder classifier (decoder-only or multi-task designs).
UNSUPPORTED_METHODS = {"adaption_prompt", "xlora", "cpt", "cartridge", "multitask_prompt_tuning", "poly"}


def _peft_methods() -> dict[str, type]:
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    methods = {str(getattr(k, "value", k)).lower(): v for k, v in PEFT_TYPE_TO_CONFIG_MAPPING.items()}
    return {k: v for k, v in methods.items() if k not in UNSUPPORTED_METHODS}


def available_methods() -> list[str]:
    return sorted(set(_peft_methods()) | set(LORA_VARIANTS) | set(NON_PEFT_METHODS))


def build_peft_config(method: str, section: dict[str, Any]) -> Any:
    """The PEFT config object for ``method`` built from the ``peft:`` section (None for full/head).

    Unknown keys are reported with the allowed ones; the PEFT class validates values itself.
    """
    method = method.lower()
    if method in NON_PEFT_METHODS:
        return None
    methods = _peft_methods()
    base = "lora" if method in LORA_VARIANTS else method
    if base not in methods:
        raise ConfigError(f"unknown method '{method}'; choose one of: {', '.join(available_methods())}")
    cls = methods[base]
    allowed = [f.name for f in dataclasses.fields(cls) if f.name not in ("task_type", "peft_type")]
    kwargs = dict(LORA_VARIANTS.get(method, {}))
    for key, value in section.items():
        if key not in allowed:
            raise ConfigError(f"unknown config key 'peft.{key}' for {cls.__name__}; allowed: {', '.join(allowed)}")
        kwargs[key] = value
    if "num_virtual_tokens" in allowed and kwargs.get("num_virtual_tokens") is None:  # PEFT has no default
        raise ConfigError(f"method '{method}' needs peft.num_virtual_tokens (e.g. peft.num_virtual_tokens=20, "
                          "as lightft sweep uses)")
    rank = kwargs.get("r")
    if "r" in allowed and base != "adalora" and isinstance(rank, (int, float)) and rank < 1:
        # PEFT's config takes r=0 and refuses it only when it wraps the model (a `lightft tune` search space
        # with r 0 among its choices passed the bounds check, then failed its trials); AdaLoRA allows r 0
        raise ConfigError(f"peft.r must be at least 1 for {cls.__name__}, got {rank}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls(task_type="SEQ_CLS", **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"peft section is invalid for {cls.__name__}: {exc}") from None
