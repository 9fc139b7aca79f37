"""Inference over token ids and the metrics every evaluated model gets."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lightft.runtime import autocast, batches_by_length, model_device, pad_batch, resolve_precision


@torch.inference_mode()
def predict_logits(
    model: Any,
    encodings: list[list[int]],
    pad_id: int,
    batch_size: int = 64,
    precision: str = "auto",
    desc: str = "predicting",
    progress: bool = True,
) -> np.ndarray:
    """Logits (float32, shape [n, num_labels]) in input order; batches are length-sorted to avoid padding."""
    from tqdm.auto import tqdm

    model.eval()
    device = model_device(model)
    precision = resolve_precision(precision, device)
    out: np.ndarray | None = None
    batches = batches_by_length([len(e) for e in encodings], batch_size)
    with tqdm(total=len(encodings), desc=desc, unit="doc", leave=False, disable=not progress) as bar:
        for idx in batches:
            batch = {k: v.to(device) for k, v in pad_batch([encodings[i] for i in idx], pad_id).items()}
            with autocast(device, precision):
                logits = model(**batch).logits
            logits = logits.float().cpu().numpy()
            if out is None:
                out = np.zeros((len(encodings), logits.shape[1]), dtype=np.float32)
            out[idx] = logits
            bar.update(len(idx))
    if out is None:
        return np.zeros((0, 0), dtype=np.float32)
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def compute_metrics(y_true: list[int] | np.ndarray, y_pred: list[int] | np.ndarray,
                    label_names: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
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
    }


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
    max_length: int = 256,
    batch_size: int = 64,
    precision: str = "auto",
    seed: int = 42,
) -> dict[str, Any]:
    """Metrics of a run directory's fine-tuned model, or of a pre-trained model with a fresh (seeded) head,
    on every labelled text of ``data_spec``."""
    from pathlib import Path

    from lightft.config import DataConfig
    from lightft.data import clean_records, encode_labels, label_names_for, read_records, tokenize
    from lightft.rundir import MARKER

    data_cfg = DataConfig(source=data_spec, text_column=text_column, label_column=label_column, labels=labels)
    records = clean_records(read_records(data_spec, data_cfg, split))
    if (Path(target) / MARKER).exists():
        from lightft.predict import Classifier

        clf = Classifier.from_run(target, precision=None if precision == "auto" else precision)
        names = clf.label_names
        y = encode_labels(records, names, configured=True)
        ids = tokenize(records.texts, clf.tokenizer, clf.max_length, clf.truncation)
        logits = predict_logits(clf.model, ids, clf.pad_id, batch_size, clf.precision, desc="evaluating")
        kind = "run"
    else:
        from lightft.model import load_classifier, load_tokenizer
        from lightft.runtime import resolve_device, set_seed

        names = label_names_for(records, labels)
        y = encode_labels(records, names, configured=bool(labels))
        tokenizer = load_tokenizer(target)
        set_seed(seed)
        model, _ = load_classifier(target, names)
        model.to(resolve_device())
        ids = tokenize(records.texts, tokenizer, max_length)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        logits = predict_logits(model, ids, pad_id, batch_size, precision, desc="evaluating")
        kind = "pretrained (untrained head)"
    metrics = compute_metrics(y, logits.argmax(axis=1), names)
    metrics.update(target=str(target), target_kind=kind, data=data_spec)
    return metrics
