"""Do windows help a trained run? Re-score its test split reading every window, without retraining.

Takes a complete run directory trained with head truncation and prints test accuracy / macro-F1 of
  - the fine-tuned model on the head window only (what the run reported) and aggregating all its windows'
    logits (mean and max),
  - the linear probe on frozen mean-pooled embeddings of the head only and of the mean of all windows
    (refitted on the training split's windows alike).
This is how `model.truncation: auto` was chosen (bench/README.md, "Long documents and windows").

    .venv/bin/python bench/windows_at_inference.py runs/bench-quality/default/ungd_long-s42
    .venv/bin/python bench/windows_at_inference.py RUN --stride 192 --max-windows 8
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import AutoModel

    from lightft import baselines, linear
    from lightft.config import load_run_config
    from lightft.data import load_splits
    from lightft.inference import predict_logits
    from lightft.model import resolve_model_path
    from lightft.predict import Classifier
    from lightft.windows import aggregate, tokenize_texts

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a complete run directory (trained with head truncation)")
    parser.add_argument("--stride", type=int, default=None, help="tokens between window starts (half a window)")
    parser.add_argument("--max-windows", type=int, default=8)
    args = parser.parse_args()
    from lightft.runtime import reuse_freed_memory

    reuse_freed_memory()  # as the lightft command does

    cfg = load_run_config(args.run)
    splits = load_splits(cfg.data, cfg.seed)
    clf = Classifier.from_run(args.run)
    ml = cfg.model.max_length
    stride = args.stride or ml // 2
    test = tokenize_texts(splits.test.texts, clf.tokenizer, ml, "windows", stride, args.max_windows)
    train = tokenize_texts(splits.train.texts, clf.tokenizer, ml, "windows", stride, args.max_windows)
    print(f"windows: {len(test.ids)} for {test.texts} test texts, {len(train.ids)} for {train.texts} training texts")

    def first(tok):  # each text's head window (what head truncation reads)
        return np.flatnonzero(np.r_[True, tok.owner[1:] != tok.owner[:-1]])

    y, k = np.asarray(splits.test.labels), len(splits.label_names)

    def score(pred):
        return round(accuracy_score(y, pred), 4), round(f1_score(y, pred, average="macro"), 4)

    logits = predict_logits(clf.model, test.ids, clf.pad_id, clf.batch_size, clf.precision,
                            cast_model=clf.cast_model, desc="fine-tuned on test windows", **clf.inference)
    result = {"finetuned_head": score(logits[first(test)].argmax(1)),
              "finetuned_windows_mean": score(aggregate(logits, test.owner, "mean").argmax(1)),
              "finetuned_windows_max": score(aggregate(logits, test.owner, "max").argmax(1))}
    encoder = AutoModel.from_pretrained(resolve_model_path(cfg.model.name), revision=cfg.model.revision).eval()
    e_train = baselines.embed(encoder, train.ids, clf.pad_id, "mean", 16, clf.precision, "embedding train windows")
    e_test = baselines.embed(encoder, test.ids, clf.pad_id, "mean", 16, clf.precision, "embedding test windows")
    for name, a, b in [("probe_head", e_train[first(train)], e_test[first(test)]),
                       ("probe_windows", baselines.per_text(e_train, train.owner),
                        baselines.per_text(e_test, test.owner))]:
        probs, _ = linear.linear_probe(a, splits.train.labels, b, k, cfg.seed)
        result[name] = score(probs.argmax(1))
    print(json.dumps({"run": str(args.run), **result}))


if __name__ == "__main__":
    main()
