"""What every evaluated model is scored with: accuracy, macro-F1, per-class tables, the confusion matrix,
calibration (ECE), bootstrap confidence intervals, McNemar's exact test between two models, the texts whose
prediction changed, and the decision thresholds (binary: one for the positive class; multi-label: one per label).

Multi-label tasks (a text carries a set of labels, rows of a 0/1 indicator matrix) are scored by
``compute_multilabel_metrics``: its ``accuracy`` is subset accuracy (the whole set right) and its ``macro_f1``
the mean of the labels' F1, so model selection, reports and comparisons read the same two keys for both kinds."""

from __future__ import annotations

from typing import Any

import numpy as np


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
    # Macro-F1 averages the classes the split has or a model predicts (scikit-learn's own default): a class
    # with neither has no F1 to speak of, and counting it as 0 would cap a perfect model at (k-1)/k.
    scored = sorted(set(y_true.tolist()) | set(y_pred.tolist())) or labels
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=scored, average="macro", zero_division=0)),
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
    return float(f1[denom > 0].mean()) if denom.any() else 0.0  # classes seen, as compute_metrics


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

    a_right = exact_match(y_true, pred_a)
    b_right = exact_match(y_true, pred_b)
    only_a = int((a_right & ~b_right).sum())
    only_b = int((~a_right & b_right).sum())
    n = only_a + only_b
    p = 1.0 if n == 0 else float(binomtest(min(only_a, only_b), n, 0.5).pvalue)
    return {"only_a_right": only_a, "only_b_right": only_b, "p_value": p}


def changed_predictions(texts: list[str], y_true: np.ndarray, before: np.ndarray, after: np.ndarray,
                        label_names: list[str], snippet: int = 160) -> dict[str, list[dict[str, Any]]]:
    """Texts whose prediction flipped between two models: wrong -> right and right -> wrong (multi-label: the
    whole label set, written as names joined by ', ')."""
    out: dict[str, list[dict[str, Any]]] = {"wrong_to_right": [], "right_to_wrong": []}
    y_true, before, after = np.asarray(y_true), np.asarray(before), np.asarray(after)
    b_right, a_right = exact_match(y_true, before), exact_match(y_true, after)

    def name(value: Any) -> str:
        if np.ndim(value):
            return ", ".join(label_names[j] for j in np.flatnonzero(value)) or "(none)"
        return label_names[value]

    for i in np.flatnonzero(b_right != a_right):
        text = " ".join(texts[i].split())
        row = {"index": int(i), "true": name(y_true[i]), "before": name(before[i]), "after": name(after[i]),
               "text": text[:snippet] + ("…" if len(text) > snippet else "")}
        out["wrong_to_right" if a_right[i] else "right_to_wrong"].append(row)
    return out


def tune_threshold(y_true: np.ndarray, positive_probs: np.ndarray) -> float:
    """The probability threshold for class 1 that maximises its F1 on these texts: the middle of the range of
    thresholds that reach that F1 (the highest such range), not its top. With a few well-separated positives
    every threshold between the highest negative score and the lowest positive one is "best"; the top of that
    range (the lowest positive's score) is the choice most likely to miss the next positive."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(np.asarray(y_true), positive_probs)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision),
                   where=(precision + recall) > 0)[:-1]
    if not len(thresholds):
        return 0.5
    best = f1 == f1.max()
    hi = int(np.flatnonzero(best)[-1])
    lo = hi
    while lo > 0 and best[lo - 1]:
        lo -= 1
    # thresholds[i] classifies p >= thresholds[i] as positive, so every t in (thresholds[lo - 1], thresholds[hi]]
    # gives the best F1 (down to 0 when lo is the lowest score)
    below = float(thresholds[lo - 1]) if lo > 0 else 0.0
    return (below + float(thresholds[hi])) / 2


def apply_threshold(probabilities: np.ndarray, threshold: float | None) -> np.ndarray:
    """Predicted ids: argmax, or for a binary task with a tuned threshold, class 1 when p1 >= threshold."""
    if threshold is None:
        return probabilities.argmax(axis=1)
    return (probabilities[:, 1] >= threshold).astype(int)


# --------------------------------------------------------------------------------------------------------
# Multi-label: Y is an (n, k) 0/1 indicator matrix, one column per label


def is_label_sets(labels: list[Any]) -> bool:
    """Whether ``labels`` are a multi-label task's id tuples (``data.Split.labels``) rather than ids."""
    return bool(labels) and isinstance(labels[0], tuple)


def as_targets(labels: list[Any], k: int) -> np.ndarray:
    """Labels as metrics read them: an (n, k) 0/1 matrix for label sets, else an array of ids."""
    return multi_hot(labels, k) if is_label_sets(labels) else np.asarray(labels)


def score_predictions(y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str],
                      probabilities: np.ndarray | None = None, bootstrap: int = 0, seed: int = 0) -> dict[str, Any]:
    """``compute_multilabel_metrics`` for an indicator matrix (``as_targets`` of label sets), else
    ``compute_metrics``."""
    score = compute_multilabel_metrics if np.ndim(y_true) == 2 else compute_metrics
    return score(y_true, y_pred, label_names, probabilities, bootstrap, seed)


def multi_hot(label_sets: list[Any], k: int) -> np.ndarray:
    """(n, k) 0/1 matrix of label-id sets (a set may be empty)."""
    out = np.zeros((len(label_sets), k), dtype=np.int64)
    for i, ids in enumerate(label_sets):
        out[i, list(ids)] = 1
    return out


def _multilabel_scores(t: np.ndarray, p: np.ndarray) -> tuple[float, np.ndarray, float, float]:
    """(subset accuracy, per-label F1, macro-F1, micro-F1) of boolean indicator matrices. A label with no true
    and no predicted positive has F1 0 in the table (scikit-learn's zero_division=0) but is left out of the
    macro average, as a single-label class with no text is: it has no F1 to speak of, and counting it as 0
    would cap a perfect model at (k-1)/k. Counted by hand: scikit-learn reads a one-column indicator matrix as
    a binary task."""
    tp = (t & p).sum(0).astype(float)
    denom = t.sum(0) + p.sum(0)
    f1 = np.divide(2 * tp, denom, out=np.zeros(t.shape[1]), where=denom > 0)
    macro = float(f1[denom > 0].mean()) if denom.any() else 0.0
    micro_denom = denom.sum()
    micro = float(2 * tp.sum() / micro_denom) if micro_denom else 0.0
    return float((t == p).all(1).mean()) if len(t) else 0.0, f1, macro, micro


def compute_multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str],
                               probabilities: np.ndarray | None = None, bootstrap: int = 0,
                               seed: int = 0) -> dict[str, Any]:
    """Subset accuracy (``accuracy``), macro- and micro-F1, Hamming loss, per-label precision/recall/F1/support
    and, with ``probabilities``, per-label ROC-AUC averaged over labels that have both kinds of text; with
    ``bootstrap`` > 0, 95% percentile intervals of subset accuracy, macro-F1 and micro-F1 (texts resampled)."""
    t, p = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    k = len(label_names)
    tp, support, predicted = (t & p).sum(0).astype(float), t.sum(0), p.sum(0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    accuracy, f1, macro, micro = _multilabel_scores(t, p)
    out: dict[str, Any] = {
        "task": "multi_label",
        "n": int(len(t)),
        "accuracy": accuracy,
        "subset_accuracy": accuracy,
        "macro_f1": macro,
        "micro_f1": micro,
        "hamming_loss": float((t != p).mean()) if t.size else 0.0,
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                             "support": int(support[i])} for i, name in enumerate(label_names)},
        "labels": list(label_names),
        "texts_without_label": {"true": int((~t.any(1)).sum()), "predicted": int((~p.any(1)).sum())},
    }
    if probabilities is not None:
        from sklearn.metrics import roc_auc_score

        aucs = [roc_auc_score(t[:, j], probabilities[:, j]) for j in range(k) if 0 < t[:, j].sum() < len(t)]
        if aucs:
            out["macro_roc_auc"] = float(np.mean(aucs))
    if bootstrap > 0 and len(t):
        rng = np.random.default_rng(seed)
        draws = np.empty((bootstrap, 3))
        for r in range(bootstrap):
            idx = rng.integers(0, len(t), len(t))
            acc, _, mac, mic = _multilabel_scores(t[idx], p[idx])
            draws[r] = acc, mac, mic
        out["ci95"] = {key: np.percentile(draws[:, j], [2.5, 97.5]).tolist()
                       for j, key in enumerate(("accuracy", "macro_f1", "micro_f1"))}
        out["ci95"]["resamples"] = bootstrap
    return out


# A label needs this many positive and negative validation texts before its threshold moves from 0.5: with one
# positive scored 0.05, "maximise F1" picks 0.05 and the label is then given to nearly every text.
MIN_TUNING_TEXTS = 5


def enough_to_tune(y_true: np.ndarray) -> np.ndarray:
    """Per column of 0/1 targets (a 1-D array: one), whether it has ``MIN_TUNING_TEXTS`` positive and negative
    texts: enough to move a threshold on."""
    positives = y_true.sum(0)
    return (positives >= MIN_TUNING_TEXTS) & (len(y_true) - positives >= MIN_TUNING_TEXTS)


def tune_label_thresholds(y_true: np.ndarray, probabilities: np.ndarray) -> list[float]:
    """Per label, the probability threshold that maximises its F1 on these texts (``tune_threshold``); 0.5 for
    a label with fewer than ``MIN_TUNING_TEXTS`` positive or negative texts here (too few to tune it on)."""
    y_true = np.asarray(y_true)
    enough = enough_to_tune(y_true)
    return [tune_threshold(y_true[:, j], probabilities[:, j]) if enough[j] else 0.5
            for j in range(y_true.shape[1])]


def exact_match(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per text: the prediction is right (single-label: the id; multi-label: the whole label set)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    same = y_true == y_pred
    return same.all(axis=1) if same.ndim == 2 else same
