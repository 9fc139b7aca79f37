"""Score a model on labelled data: a run directory's fine-tuned model or a pre-trained one (``lightft
evaluate``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lightft.errors import DataError, LightftError, MissingColumnError
from lightft.inference import Decision, predict_logits
from lightft.metrics import as_targets, score_predictions

log = logging.getLogger(__name__)


def _check_model_options(target: str, is_run: bool, labels: list[str] | None, max_length: int | None,
                         trust_remote_code: bool = False) -> None:
    """--labels and --max-length shape a bare model's head and input; a run has its own (and would ignore them).
    A target that is not here is looked up as a model before any data is read: a mistyped run directory is
    named as such, not reported later as a tokenizer or a column problem."""
    _check_target_exists(target, is_run, trust_remote_code)
    if is_run and (labels is not None or max_length is not None):
        given = " and ".join(f for f, v in (("--labels", labels), ("--max-length", max_length)) if v is not None)
        raise LightftError(f"{given}: for a model name or path only; the run {target} uses its own label names and "
                           "max_length")
    folder = Path(target)
    if not is_run and (folder / "model.onnx").is_file():
        raise LightftError(f"{target} is an ONNX export, which evaluate does not read: evaluate the run directory "
                           f"it was exported from, or classify the file with `lightft predict {target} -i FILE -o "
                           "OUT`")
    if not is_run and (folder / "modules.json").is_file() and _checkpoint_labels(target, any_head=True):
        raise LightftError(f"{target} is a sentence-transformers export of a fine-tuned mean-pooled head (its output "
                           "is the classifier's logits), which evaluate does not read: evaluate the run directory it "
                           "was exported from")
    if not is_run and folder.is_dir() and not (folder / "config.json").is_file():
        inside = "; its adapter/ is a PEFT adapter folder, which evaluate does not read" \
            if (folder / "adapter").is_dir() else ""
        raise LightftError(f"{target} is neither a lightft run directory (no run.json) nor a model folder (no "
                           f"config.json){inside}")
    if labels is not None and len(set(labels)) != len(labels):
        twice = sorted({n for n in labels if labels.count(n) > 1})
        raise LightftError(f"--labels names '{twice[0]}' more than once")


def _check_target_exists(target: str, is_run: bool, trust_remote_code: bool) -> None:
    from lightft.model import check_model_config, looks_like_path

    if is_run or Path(target).exists():
        return
    if looks_like_path(target):
        raise LightftError(f"run directory or model folder not found: {target}")
    try:
        check_model_config(target, None, trust_remote_code=trust_remote_code)
    except LightftError as exc:
        raise LightftError(f"no run directory or model folder '{target}' here, and {exc}") from None


def _checkpoint_labels(target: str, trust_remote_code: bool = False, any_head: bool = False) -> list[str] | None:
    """The label names of a fine-tuned checkpoint's own head (config.json's ``id2label`` in id order), or None
    for a checkpoint without trained labels (transformers' default ``LABEL_0``, ``LABEL_1``, ...) or, unless
    ``any_head`` (lightft's sentence-transformers export keeps them on its encoder), without a
    sequence-classification head."""
    from transformers import AutoConfig

    from lightft.model import resolve_model_path

    try:
        config = AutoConfig.from_pretrained(resolve_model_path(target), trust_remote_code=trust_remote_code)
    except Exception:  # noqa: BLE001 - not readable as a config: load_classifier names the problem later
        return None
    heads = getattr(config, "architectures", None) or []
    if not any_head and not any(str(a).endswith("ForSequenceClassification") for a in heads):
        return None  # no sequence-classification head to score with (a NER or base checkpoint)
    id2label = {int(i): str(n) for i, n in (getattr(config, "id2label", None) or {}).items()}
    names = [id2label.get(i, "") for i in range(len(id2label))]
    if not names or all(n == f"LABEL_{i}" for i, n in enumerate(names)) or "" in names:
        return None
    return names


def _data_configs(run: str | None, data_spec: str, text_column: str | None, label_column: str | None,
                  labels: list[str] | None, quoting: str, label_separator: str | None) -> tuple[Any, Any]:
    """How to read the data, and how else where its columns are missing: a run reads with its own data's
    columns and label separator unless told otherwise, and falls back to the usual 'text' and 'label' for the
    columns no flag named; a model reads 'text' and 'label' (no fallback: None)."""
    import dataclasses

    from lightft.config import DataConfig, load_run_config

    named = {k: v for k, v in (("text_column", text_column), ("label_column", label_column)) if v}
    usual = DataConfig(source=data_spec, labels=labels, quoting=quoting, label_separator=label_separator, **named)
    if run is None:
        return usual, None
    trained = load_run_config(run).data
    usual.label_separator = trained.label_separator if label_separator is None else label_separator
    own = dataclasses.replace(usual, **{k: getattr(trained, k) for k in ("text_column", "label_column")
                                        if k not in named})
    return own, (usual if usual != own else None)


def _read_with_fallback(data_spec: str, split: str, data_cfg: Any, fallback: Any) -> Any:
    """The records read with ``data_cfg``; where a column is missing, with ``fallback`` (the first error stands
    if that fails too)."""
    from lightft.readers import read_records

    try:
        return read_records(data_spec, data_cfg, split)
    except MissingColumnError as exc:
        if fallback is None:
            raise
        try:
            return read_records(data_spec, fallback, split)
        except DataError:
            raise exc from None


def seen_in_training(run_dir: str | Path, texts: list[str]) -> dict[str, int]:
    """How many of ``texts`` the run trained on or selected its epoch with (its ``seen_texts.json``; a run
    written before lightft recorded it counts none), per split and as ``any`` (a text in both counts once). A
    score on such texts overstates the model on new text."""
    from lightft.data import text_digests
    from lightft.rundir import SEEN_TEXTS, read_json

    path = Path(run_dir) / SEEN_TEXTS
    if not path.is_file():
        return {}
    try:
        seen = {split: set(read_json(path)[split]) for split in ("train", "validation")}
    except (LightftError, TypeError, KeyError) as exc:  # a side check: the evaluation goes on without it
        log.warning("%s cannot be read (%s): texts the run trained on are not looked for", path, exc)
        return {}
    digests = text_digests(texts)
    counts = {split: sum(d in known for d in digests) for split, known in seen.items()}
    return counts | {"any": sum(d in seen["train"] or d in seen["validation"] for d in digests)}


def _warn_if_seen(target: str, data_spec: str, texts: list[str]) -> dict[str, int]:
    seen = seen_in_training(target, texts)
    if seen.get("any"):
        where = " and ".join(f"{seen[split]:,} in its {split} split" for split in ("train", "validation")
                             if seen[split])
        log.warning("%s: %s of its %s texts were seen by the run %s (%s): these metrics overstate how the model "
                    "does on new text; evaluate on data kept apart from training", data_spec,
                    f"{seen['any']:,}", f"{len(texts):,}", target, where)
    return seen


def evaluate_target(
    target: str,
    data_spec: str,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    split: str = "test",
    labels: list[str] | None = None,
    max_length: int | None = None,
    batch_size: int = 64,
    precision: str = "auto",
    seed: int = 42,
    quoting: str = "auto",
    label_separator: str | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Metrics of a run directory's fine-tuned model, or of a pre-trained model with a fresh (seeded) head,
    on every labelled text of ``data_spec``. Remote code and pickle checkpoints only with the caller's opt-in
    (a run's own config never turns them on)."""

    from lightft.data import clean_records, detect_task, encode_labels
    from lightft.rundir import MARKER

    is_run = (Path(target) / MARKER).exists()
    _check_model_options(target, is_run, labels, max_length, trust_remote_code)
    separator_given = label_separator is not None
    data_cfg, fallback = _data_configs(target if is_run else None, data_spec, text_column, label_column, labels,
                                       quoting, label_separator)
    label_separator = data_cfg.label_separator
    raw = _read_with_fallback(data_spec, split, data_cfg, fallback)
    if is_run:
        from lightft.predict import Classifier, warn_if_unread

        clf = Classifier.from_run(target, precision=None if precision == "auto" else precision,
                                  trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
        decision = clf.decision
    else:
        decision = Decision(multi_label=detect_task(raw, "auto", label_separator) == "multi_label")
    if separator_given and not decision.multi_label:  # it would be ignored, and "a|b" read as one unknown label
        raise LightftError(f"--label-separator is for multi-label models; {target} is single-label")
    records = clean_records(raw, decision.task, label_separator)
    if is_run:
        names = clf.label_names
        y = encode_labels(records, names, configured=True)
        seen = _warn_if_seen(target, data_spec, records.texts)
        warn_if_unread(clf, records.texts, data_spec)
        clf.batch_size = batch_size
        logits = clf.predict_logits(records.texts, progress=True, desc="evaluating")
        kind = "run"
    else:
        names, y, logits, kind = _checkpoint_logits(target, records, data_spec, labels, decision, max_length,
                                                    batch_size, precision, seed, allow_pickle, trust_remote_code)
    probs = decision.probabilities(logits)
    metrics = score_predictions(as_targets(y, len(names)), decision.decide(probs), names, probs)
    metrics.update(target=str(target), target_kind=kind, data=data_spec)
    if is_run and seen.get("any"):
        metrics["seen_in_training"] = seen  # texts of this data the run trained on / selected its epoch with
    return metrics


def _checkpoint_logits(target: str, records: Any, data_spec: str, labels: list[str] | None, decision: Decision,
                       max_length: int | None, batch_size: int, precision: str, seed: int, allow_pickle: bool,
                       trust_remote_code: bool) -> tuple[list[str], list[Any], Any, str]:
    """(label names, targets, logits, target kind) of a model name or folder: a fine-tuned checkpoint with its
    own head and label order (a merged export, a Hub classifier), else a new seeded head: the pre-trained
    baseline."""
    from lightft.data import encode_labels, label_names_for, shown, tokenize
    from lightft.model import check_max_length, default_max_length, load_classifier, load_tokenizer
    from lightft.runtime import resolve_device, set_seed

    own = None if labels else _checkpoint_labels(target, trust_remote_code)
    names = own or label_names_for(records, labels)
    if not names:
        raise DataError(f"{data_spec}: no text carries a label, so there are no label names to score; "
                        "pass --labels")
    try:
        y = encode_labels(records, names, configured=bool(labels or own))
    except DataError as exc:
        if not own:
            raise
        raise DataError(f"{exc} (the names of {target}'s own head, its id2label; --labels NAMES scores the "
                        "data with a new head instead)") from None
    tokenizer = load_tokenizer(target, trust_remote_code=trust_remote_code)
    set_seed(seed)
    model, new_modules = load_classifier(target, names, allow_pickle=allow_pickle,
                                         trust_remote_code=trust_remote_code, multi_label=decision.multi_label)
    if max_length is None:  # not chosen: as a run's model.max_length, the model's limit, at most 512
        max_length = default_max_length(model.config)
    check_max_length(model.config, max_length, "--max-length")
    model.to(resolve_device())
    ids = tokenize(records.texts, tokenizer, max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    logits = predict_logits(model, ids, pad_id, batch_size, precision, desc="evaluating",
                            boundaries=decision.boundaries(len(names)))
    # A fine-tuned checkpoint scored with its own head and label order (a merged export, a Hub classifier);
    # otherwise the head is new: the pre-trained baseline.
    kind = "checkpoint (its own head)" if own and not new_modules else "pretrained (untrained head)"
    if own:
        log.info("%s: scored with its own head and label names (%s)", target, shown(names))
    return names, y, logits, kind
