"""The linear probe's regularisation C (lightft.linear.logistic_regression uses C = 10) over split seeds.

The frozen default model's mean-pooled embeddings of every BBC article are computed once (the config's
max_length, head truncation, fp32); then, per split seed, one logistic regression per C is fitted on that
seed's training split and scored on its validation and test splits. C = 10 reproduces each report's probe.

    .venv/bin/python bench/probe_c.py [--seeds 42,43,44] [--cache /tmp/bbc_emb.npz]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
CS = (1, 3, 10, 30, 100, 300, 1000)


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    from lightft import baselines
    from lightft.config import load_config
    from lightft.data import load_splits
    from lightft.experiment import model_kwargs
    from lightft.model import load_classifier, load_tokenizer
    from lightft.windows import tokenize_texts

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "bbc-news.yaml"))
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--cache", help="an .npz to keep the embeddings in (reused when it exists)")
    args = parser.parse_args()
    cfg = load_config(args.config, [])
    splits = {int(s): load_splits(cfg.data, int(s)) for s in args.seeds.split(",")}
    texts = sorted({t for sp in splits.values() for part in (sp.train, sp.validation, sp.test) for t in part.texts})
    if args.cache and Path(args.cache).is_file():
        emb = np.load(args.cache)["emb"]
    else:
        tokenizer = load_tokenizer(cfg.model.name)
        model, _ = load_classifier(cfg.model.name, cfg.data.labels, **model_kwargs(cfg))
        ids = tokenize_texts(texts, tokenizer, cfg.model.max_length, "head").ids
        emb = baselines.embed(model, ids, tokenizer.pad_token_id, cfg.baselines.pooling, 4, "fp32",
                              attention=cfg.inference.attention)
        if args.cache:
            np.savez(args.cache, emb=emb)
    row_of = {t: i for i, t in enumerate(texts)}
    for seed, sp in splits.items():
        x = {name: emb[[row_of[t] for t in part.texts]] for name, part in
             (("train", sp.train), ("validation", sp.validation), ("test", sp.test))}
        cells = []
        for c in CS:
            clf = LogisticRegression(max_iter=5000, C=c, random_state=seed).fit(x["train"], sp.train.labels)
            pred = clf.predict(x["test"])
            cells.append(f"C={c}: val {accuracy_score(sp.validation.labels, clf.predict(x['validation'])):.4f} "
                         f"test {accuracy_score(sp.test.labels, pred):.4f}/"
                         f"{f1_score(sp.test.labels, pred, average='macro'):.4f}")
        print(f"seed {seed}: " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
