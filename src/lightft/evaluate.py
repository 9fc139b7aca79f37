"""Inference over token ids and the metrics every evaluated model gets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from lightft.runtime import (
    autocast,
    batches_by_length,
    model_device,
    pad_batch,
    resolve_precision,
    reuse_freed_memory,
)
from lightft.speed import cls_only_last_layer, inference_attention, resolve_workers, worker_map


def forward_batches(model: Any, encodings: list[list[int]], pad_id: int, batch_size: int, precision: str,
                    desc: str, progress: bool = True, pad_to: int | None = None, sort_by_length: bool = True,
                    attention: str | None = None, pad_multiple_of: int = 0, max_length: int | None = None,
                    workers: int = 1, cls_only: bool = False,
                    ) -> Iterator[tuple[list[int], dict[str, torch.Tensor], Any]]:
    """``(indices, batch, output)`` for each forward pass of ``model`` over ``encodings`` in eval mode and
    inference mode, under the precision's autocast and the chosen attention kernel, with a progress bar.

    Batches are length-sorted (``sort_by_length``) and padded to their longest text (or to ``pad_to``;
    ``pad_multiple_of``: up to a multiple of this, at most ``max_length``, see ``runtime.pad_batch``).
    ``workers`` > 1 runs that many batches side by side on one thread each (``speed.worker_map``);
    ``cls_only``: the last layer computes only [CLS] where the head reads nothing else (the outputs then hold
    no other final token states)."""
    from tqdm.auto import tqdm

    reuse_freed_memory()
    model.eval()
    device = model_device(model)
    precision = resolve_precision(precision, device)
    batches = batches_by_length([len(e) for e in encodings], batch_size, sort_by_length)

    def forward(idx: list[int]) -> tuple[list[int], dict[str, torch.Tensor], Any]:
        padded = pad_batch([encodings[i] for i in idx], pad_id, pad_to, pad_multiple_of, max_length)
        batch = {k: v.to(device) for k, v in padded.items()}
        with torch.inference_mode(), autocast(device, precision):  # both are per thread
            return idx, batch, model(**batch)

    with tqdm(total=len(encodings), desc=desc, unit="doc", leave=False, disable=not progress) as bar, \
            inference_attention(model, attention), cls_only_last_layer(model, cls_only), \
            worker_map(min(workers, len(batches))) as run:
        for result in run(forward, batches):
            yield result
            bar.update(len(result[0]))


def put_rows(out: np.ndarray | None, idx: list[int], rows: np.ndarray, n: int) -> np.ndarray:
    """Write ``rows`` at ``idx`` of an [n, width] float32 array, made on the first call (``out`` None)."""
    if out is None:
        out = np.zeros((n, rows.shape[1]), dtype=np.float32)
    out[idx] = rows
    return out


@torch.inference_mode()
def predict_logits(
    model: Any,
    encodings: list[list[int]],
    pad_id: int,
    batch_size: int = 64,
    precision: str = "auto",
    desc: str = "predicting",
    progress: bool = True,
    pad_to: int | None = None,
    sort_by_length: bool = True,
    recheck_margin: float = 0.0,
    attention: str | None = None,
    pad_multiple_of: int = 0,
    max_length: int | None = None,
    workers: int | None = None,
    cls_only: bool = False,
    cast_model: Any | None = None,
    owner: np.ndarray | None = None,
    aggregation: str = "mean",
) -> np.ndarray:
    """Logits (float32, shape [n, num_labels]) in input order, batched as ``forward_batches`` says.

    Under bf16/fp16, texts whose two highest logits are closer than ``recheck_margin`` are computed again in
    fp32, so reduced precision speeds up the clear cases without changing a close decision. ``attention``: the
    attention kernel to use (see ``speed.inference_attention``; None keeps the model's). ``workers``: batches
    run side by side (None: one per CPU thread, one on a GPU; see ``speed.resolve_workers``). ``cls_only``:
    the last layer computes only [CLS] where the head reads only that (``speed.cls_only_last_layer``).
    ``cast_model``: a bf16 copy of ``model`` (``speed.cast_for_inference``) that runs the
    reduced-precision pass in place of autocast; the recheck uses ``model``. ``owner``: the text each encoding
    belongs to when long texts are windows (``lightft.windows``): the rows returned are then per text, the
    ``aggregation`` (mean or max) of its windows' logits."""
    if owner is not None:
        from lightft.windows import aggregate

        per_window = predict_logits(model, encodings, pad_id, batch_size, precision, desc, progress, pad_to=pad_to,
                                    sort_by_length=sort_by_length, recheck_margin=recheck_margin,
                                    attention=attention, pad_multiple_of=pad_multiple_of, max_length=max_length,
                                    workers=workers, cls_only=cls_only, cast_model=cast_model)
        return aggregate(per_window, owner, aggregation)
    device = model_device(model)
    precision = resolve_precision(precision, device)
    options = dict(pad_to=pad_to, sort_by_length=sort_by_length, attention=attention,
                   pad_multiple_of=pad_multiple_of, max_length=max_length,
                   workers=resolve_workers(workers, device), cls_only=cls_only)
    # The cast copy runs in its own dtype, without autocast (which would upcast norms and softmax again).
    cast = cast_model is not None and precision != "fp32"
    first, first_precision = (cast_model, "fp32") if cast else (model, precision)
    out: np.ndarray | None = None
    for idx, _, output in forward_batches(first, encodings, pad_id, batch_size, first_precision, desc, progress,
                                          **options):
        out = put_rows(out, idx, output.logits.float().cpu().numpy(), len(encodings))
    if out is None:
        return np.zeros((0, 0), dtype=np.float32)
    if recheck_margin > 0 and precision != "fp32" and out.shape[1] > 1:
        top2 = np.sort(out, axis=1)[:, -2:]
        close = np.flatnonzero(top2[:, 1] - top2[:, 0] < recheck_margin)
        if len(close):
            out[close] = predict_logits(model, [encodings[i] for i in close], pad_id, batch_size, "fp32",
                                        progress=False, **options)
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def compute_metrics(y_true: list[int] | np.ndarray, y_pred: list[int] | np.ndarray,
                    label_names: list[str], probabilities: np.ndarray | None = None,
                    bootstrap: int = 0, seed: int = 0) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix; with
    ``probabilities`` also the expected calibration error; with ``bootstrap`` > 0 also 95% bootstrap
    confidence intervals (percentile method, ``bootstrap`` resamples of the split, seeded)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    labels = list(range(len(label_names)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(label_names)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "labels": list(label_names),
    } | _extras(y_true, y_pred, len(label_names), probabilities, bootstrap, seed)


def _extras(y_true: np.ndarray, y_pred: np.ndarray, k: int, probabilities: np.ndarray | None,
            bootstrap: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if probabilities is not None:
        out["ece"] = expected_calibration_error(y_true, probabilities)
        if k == 2 and len(set(y_true.tolist())) == 2:
            from sklearn.metrics import average_precision_score, roc_auc_score

            out["roc_auc"] = float(roc_auc_score(y_true, probabilities[:, 1]))
            out["pr_auc"] = float(average_precision_score(y_true, probabilities[:, 1]))
    if bootstrap > 0 and len(y_true):
        out["ci95"] = bootstrap_ci(y_true, y_pred, k, bootstrap, seed)
        out["ci95"]["resamples"] = bootstrap
    return out


def fast_macro_f1(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> float:
    cm = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1)
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    return float(f1.mean())


def bootstrap_ci(y_true: np.ndarray, y_pred: np.ndarray, k: int, resamples: int = 1000,
                 seed: int = 0) -> dict[str, list[float]]:
    """95% percentile intervals of accuracy and macro-F1 over ``resamples`` resamples with replacement."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    acc, f1 = np.empty(resamples), np.empty(resamples)
    for r in range(resamples):
        idx = rng.integers(0, n, n)
        t, p = y_true[idx], y_pred[idx]
        acc[r] = float((t == p).mean())
        f1[r] = fast_macro_f1(t, p, k)
    return {"accuracy": np.percentile(acc, [2.5, 97.5]).tolist(), "macro_f1": np.percentile(f1, [2.5, 97.5]).tolist()}


def expected_calibration_error(y_true: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> float:
    """ECE over ``bins`` equal-width confidence bins (Guo et al., 2017)."""
    conf = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(y_true)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return float(ece)


def mcnemar_exact(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict[str, Any]:
    """Exact (binomial) McNemar test of two models on the same texts: is one right where the other is wrong
    more often than chance? Returns the discordant counts and the two-sided p-value."""
    from scipy.stats import binomtest

    a_right = np.asarray(pred_a) == np.asarray(y_true)
    b_right = np.asarray(pred_b) == np.asarray(y_true)
    only_a = int((a_right & ~b_right).sum())
    only_b = int((~a_right & b_right).sum())
    n = only_a + only_b
    p = 1.0 if n == 0 else float(binomtest(min(only_a, only_b), n, 0.5).pvalue)
    return {"only_a_right": only_a, "only_b_right": only_b, "p_value": p}


def changed_predictions(texts: list[str], y_true: np.ndarray, before: np.ndarray, after: np.ndarray,
                        label_names: list[str], snippet: int = 160) -> dict[str, list[dict[str, Any]]]:
    """Texts whose prediction flipped between two models: wrong -> right and right -> wrong."""
    out: dict[str, list[dict[str, Any]]] = {"wrong_to_right": [], "right_to_wrong": []}
    for i, (t, b, a) in enumerate(zip(y_true, before, after, strict=True)):
        if (b == t) == (a == t):
            continue
        text = " ".join(texts[i].split())
        row = {"index": i, "true": label_names[t], "before": label_names[b], "after": label_names[a],
               "text": text[:snippet] + ("…" if len(text) > snippet else "")}
        out["wrong_to_right" if a == t else "right_to_wrong"].append(row)
    return out


def evaluate_model(model: Any, encodings: list[list[int]], labels: list[int], label_names: list[str],
                   pad_id: int, batch_size: int = 64, precision: str = "auto",
                   desc: str = "evaluating") -> tuple[dict[str, Any], np.ndarray]:
    """Metrics and logits of ``model`` on one split."""
    logits = predict_logits(model, encodings, pad_id, batch_size, precision, desc)
    metrics = compute_metrics(labels, logits.argmax(axis=1), label_names)
    return metrics, logits


def evaluate_target(
    target: str,
    data_spec: str,
    *,
    text_column: str = "text",
    label_column: str = "label",
    split: str = "test",
    labels: list[str] | None = None,
    max_length: int | None = None,
    batch_size: int = 64,
    precision: str = "auto",
    seed: int = 42,
    quoting: str = "auto",
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Metrics of a run directory's fine-tuned model, or of a pre-trained model with a fresh (seeded) head,
    on every labelled text of ``data_spec``. Remote code and pickle checkpoints only with the caller's opt-in
    (a run's own config never turns them on)."""
    from pathlib import Path

    from lightft.config import DataConfig
    from lightft.data import clean_records, encode_labels, label_names_for, read_records, tokenize
    from lightft.rundir import MARKER

    data_cfg = DataConfig(source=data_spec, text_column=text_column, label_column=label_column, labels=labels,
                          quoting=quoting)
    records = clean_records(read_records(data_spec, data_cfg, split))
    if (Path(target) / MARKER).exists():
        from lightft.predict import Classifier

        clf = Classifier.from_run(target, precision=None if precision == "auto" else precision,
                                  trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
        names = clf.label_names
        y = encode_labels(records, names, configured=True)
        clf.batch_size = batch_size
        logits = clf.predict_logits(records.texts, progress=True, desc="evaluating")
        kind, threshold = "run", clf.threshold
    else:
        from lightft.model import check_max_length, load_classifier, load_tokenizer, position_limit
        from lightft.runtime import resolve_device, set_seed

        names = label_names_for(records, labels)
        y = encode_labels(records, names, configured=bool(labels))
        tokenizer = load_tokenizer(target, trust_remote_code=trust_remote_code)
        set_seed(seed)
        model, _ = load_classifier(target, names, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
        if max_length is None:  # not chosen: 256 tokens, or fewer where the model has fewer positions
            max_length = min(256, position_limit(model.config) or 256)
        check_max_length(model.config, max_length, "--max-length")
        model.to(resolve_device())
        ids = tokenize(records.texts, tokenizer, max_length)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        logits = predict_logits(model, ids, pad_id, batch_size, precision, desc="evaluating")
        kind, threshold = "pretrained (untrained head)", None
    probs = softmax(logits)
    metrics = compute_metrics(y, apply_threshold(probs, threshold), names, probs)
    metrics.update(target=str(target), target_kind=kind, data=data_spec)
    return metrics


def tune_threshold(y_true: np.ndarray, positive_probs: np.ndarray) -> float:
    """The probability threshold for class 1 that maximises its F1 (ties: the higher threshold)."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(np.asarray(y_true), positive_probs)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision),
                   where=(precision + recall) > 0)[:-1]
    if not len(thresholds):
        return 0.5
    best = np.flatnonzero(f1 == f1.max())[-1]
    return float(thresholds[best])


def apply_threshold(probabilities: np.ndarray, threshold: float | None) -> np.ndarray:
    """Predicted ids: argmax, or for a binary task with a tuned threshold, class 1 when p1 >= threshold."""
    if threshold is None:
        return probabilities.argmax(axis=1)
    return (probabilities[:, 1] >= threshold).astype(int)
