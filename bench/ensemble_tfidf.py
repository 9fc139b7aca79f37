"""The fine-tuned model and the TF-IDF baseline combined, on finished runs: is the word-count model's view of
the whole article worth adding to the adapter's?

Each run's saved fine-tuned model is re-run on its validation and test splits (`Classifier.from_run`, the path
`lightft predict` takes) and TF-IDF + logistic regression is refitted exactly as `lightft run` fitted it (same
training texts and seed). The combination is the weighted geometric mean of the two models' probabilities,
w * log p_finetuned + (1 - w) * log p_tfidf; validation picks w (ties: the larger w, i.e. the fine-tuned model).

    .venv/bin/python bench/ensemble_tfidf.py runs/bench-quality/dedup/bbc-s42 [more runs] [--weights 1,0.5]

Prints per run and weight the validation and test accuracy; the last line is machine-readable:
    picked_mean=<test acc at the validation-picked w, mean over runs> finetuned_mean=<w = 1> runs=<n>
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np


def combined_accuracy(p_ft: np.ndarray, p_tfidf: np.ndarray, labels: np.ndarray, weight: float) -> float:
    logits = weight * np.log(p_ft + 1e-9) + (1 - weight) * np.log(p_tfidf + 1e-9)
    return float((logits.argmax(axis=1) == labels).mean())


def one_run(run: Path, weights: list[float]) -> tuple[float, float]:
    """(test accuracy at the validation-picked weight, test accuracy of the fine-tuned model alone)."""
    from lightft.config import load_config
    from lightft.data import load_splits
    from lightft.linear import tfidf_classifier
    from lightft.predict import Classifier

    cfg = load_config(run / "config.yaml", [])
    splits = load_splits(cfg.data, cfg.seed)
    if splits.multi_label:
        raise SystemExit(f"{run}: multi-label runs are not handled here")
    n = len(splits.label_names)
    clf = Classifier.from_run(run)
    scores = {}
    for name in ("validation", "test"):
        split = getattr(splits, name)
        p_ft = clf.predict_proba(split.texts, progress=True)
        p_tfidf = tfidf_classifier(splits.train.texts, splits.train.labels, split.texts, n, seed=cfg.seed)[0]
        y = np.asarray(split.labels)
        scores[name] = {w: combined_accuracy(p_ft, p_tfidf, y, w) for w in weights}
    for w in weights:
        print(f"{run.name} w={w:.2f} validation={scores['validation'][w]:.4f} test={scores['test'][w]:.4f}",
              flush=True)
    picked = max(weights, key=lambda w: (scores["validation"][w], w))
    print(f"{run.name}: validation picks w={picked:.2f}, test {scores['test'][picked]:.4f}", flush=True)
    return scores["test"][picked], scores["test"][1.0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--weights", default="1,0.8,0.7,0.6,0.5,0.4", help="weights of the fine-tuned model; 1 included")
    args = ap.parse_args()
    weights = sorted({float(w) for w in args.weights.split(",")} | {1.0}, reverse=True)
    results = [one_run(run, weights) for run in args.runs]
    print(f"picked_mean={statistics.mean(r[0] for r in results):.4f} "
          f"finetuned_mean={statistics.mean(r[1] for r in results):.4f} runs={len(results)}")


if __name__ == "__main__":
    main()
