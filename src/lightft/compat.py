"""Every private internal of torch, transformers and Accelerate that lightft relies on, in one place.

Each is used through a function here that checks the internal exists and falls back where it can;
``missing_internals()`` lists what a new release removed or renamed, and tests/test_compat.py fails loudly on
it, so an upgrade breaks one named test instead of a speed lever silently turning off.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import torch


def cpu_supports_bf16() -> bool:
    """Whether this CPU runs bf16 matmuls natively (oneDNN's own check; torch has no public one)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@functools.cache
def cpu_has_amx_tiles() -> bool:
    """Whether this CPU has AMX tiles (Intel Xeon since Sapphire Rapids), where PyTorch's CPU kernels (flash
    attention included) run bf16 on them (torch's own probe; it has no public one), asked once per process."""
    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def fresh_accelerator_state() -> None:
    """Let the next ``Accelerator`` take its own settings. Accelerate keeps them in a process-wide singleton and
    refuses a second Accelerator with another precision, so a process that trains twice (a sweep, a notebook,
    the test suite) starts each run afresh. The process group (PartialState) is kept, so this is safe under
    ``accelerate launch`` too."""
    from accelerate.state import AcceleratorState

    reset = getattr(AcceleratorState, "_reset_state", None)
    if reset is not None:
        reset(reset_partial_state=False)


def attention_kernel(model: Any) -> str | None:
    """The attention implementation a transformers model runs (None where it does not say)."""
    return getattr(getattr(model, "config", None), "_attn_implementation", None)


def can_switch_attention(model: Any) -> bool:
    """Whether ``model.set_attn_implementation`` may be called on it at run time."""
    check = getattr(model, "_can_set_attn_implementation", None)
    return hasattr(model, "set_attn_implementation") and check is not None and bool(check())


def attention_function(attn: Any) -> Any:
    """The function a BERT-style self-attention module calls for its configured kernel (eager as fallback)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    eager = sys.modules[type(attn).__module__].eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS.get_interface(attn.config._attn_implementation, eager)


def missing_internals() -> list[str]:
    """The internals above that the installed releases no longer have."""
    import accelerate.state
    import transformers
    import transformers.modeling_utils as mu
    import transformers.models.bert.modeling_bert as bert

    checks = {
        "transformers PretrainedConfig._attn_implementation":
            lambda: transformers.PretrainedConfig()._attn_implementation,
        "torch.ops.mkldnn._is_mkldnn_bf16_supported": lambda: torch.ops.mkldnn._is_mkldnn_bf16_supported,
        "torch.cpu._is_amx_tile_supported": lambda: torch.cpu._is_amx_tile_supported,
        "accelerate AcceleratorState._reset_state": lambda: accelerate.state.AcceleratorState._reset_state,
        "transformers PreTrainedModel._can_set_attn_implementation":
            lambda: transformers.PreTrainedModel._can_set_attn_implementation,
        "transformers PreTrainedModel.set_attn_implementation":
            lambda: transformers.PreTrainedModel.set_attn_implementation,
        "transformers ALL_ATTENTION_FUNCTIONS.get_interface": lambda: mu.ALL_ATTENTION_FUNCTIONS.get_interface,
        "transformers bert eager_attention_forward": lambda: bert.eager_attention_forward,
    }
    missing = []
    for name, get in checks.items():
        try:
            get()
        except AttributeError:
            missing.append(name)
    return missing
