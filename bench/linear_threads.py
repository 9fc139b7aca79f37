"""The logistic regressions of the probe, the probe start and TF-IDF with BLAS on its default threads vs on one
(`lightft.linear.fit`), alternated over rounds in one process.

lbfgs evaluates the loss and gradient with small matrix products; with several BLAS threads each product
wakes them all and waits for them. Shapes: the default model's BBC probe (1,000 x 384, 5 classes), a
bert-base-sized one (768 dims), BANKING77's (4,200 x 384, 77 classes) and a larger set (10,000 x 768);
features are random unit vectors with labels from a noisy linear rule, so each fit does real lbfgs work.

    .venv/bin/python bench/linear_threads.py [--rounds 2] [--bert-base-pooler]

`--bert-base-pooler` adds the regression of the bert-base shape's probe start as bench/gpu.sh times it: the
[CLS] pooler outputs of a `BertConfig()` model with random weights (seed 0, as `gpu_bundle.py unpack` makes it)
for 1,000 BBC articles (../shared/data/bbc, the first of each class in turn) at 48 tokens. Those features are
nearly constant (per-dimension sd ~0.04), so lbfgs needs hundreds of iterations.

Prints the best fit time of each variant per shape and their ratio; last line `speedup=<default/one>` for the
BBC shape.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

SHAPES = [(1000, 384, 5, "BBC probe, default model"), (1000, 768, 5, "BBC probe, bert-base width"),
          (4200, 384, 77, "BANKING77 probe"), (10000, 768, 5, "10,000 texts, 768 dims")]


def timed_fit(features, labels, one_thread: bool) -> tuple[float, int]:
    """One fit of lightft's regression: through ``lightft.linear.fit`` (one BLAS thread) or plain ``.fit``."""
    from lightft.linear import fit, logistic_regression

    clf = logistic_regression(0)
    start = time.perf_counter()
    fit(clf, features, labels) if one_thread else clf.fit(features, labels)
    return time.perf_counter() - start, int(clf.n_iter_[0])


def bert_base_pooler_features(corpus: Path, n: int = 1000):
    """[CLS] pooler outputs of a random-weight bert-base shape for ``n`` BBC articles, and their classes."""
    import numpy as np
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from lightft.model import resolve_model_path

    classes = sorted(p.name for p in corpus.iterdir() if p.is_dir())
    files = {c: sorted((corpus / c).glob("*.txt")) for c in classes}
    pairs = [(files[c][j], i) for j in range(max(map(len, files.values())))  # one of each class in turn
             for i, c in enumerate(classes) if j < len(files[c])][:n]
    texts = [f.read_text(encoding="utf-8", errors="replace") for f, _ in pairs]
    tok = AutoTokenizer.from_pretrained(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    model = BertModel(BertConfig()).eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            batch = tok(texts[start:start + 64], truncation=True, max_length=48, padding=True, return_tensors="pt")
            out.append(model(**batch).pooler_output.numpy())
    return np.concatenate(out), np.array([i for _, i in pairs])


def main() -> None:
    import numpy as np
    from threadpoolctl import threadpool_info

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bert-base-pooler", action="store_true",
                        help="add the random-weight bert-base shape's [CLS] pooler features (needs ../shared)")
    parser.add_argument("--corpus", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/bbc")
    args = parser.parse_args()
    threads = sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
    print(f"BLAS libraries' default threads: {threads}")
    rng = np.random.default_rng(0)
    ratio_bbc = None
    print(f"{'shape':44s}{'lbfgs its':>10s}{'default s':>11s}{'one s':>9s}{'ratio':>8s}")
    sets = []
    for n, dim, k, name in SHAPES:
        x = rng.normal(size=(n, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        sets.append((name, x, (x @ rng.normal(size=(dim, k)) + 0.5 * rng.normal(size=(n, k))).argmax(1)))
    if args.bert_base_pooler:
        x, y = bert_base_pooler_features(args.corpus)
        sets.append((f"random bert-base pooler (sd {x.std(0).mean():.3f})", x, y))
    for name, x, y in sets:
        best = {False: float("inf"), True: float("inf")}
        for _ in range(args.rounds):
            for one in (False, True):
                seconds, iterations = timed_fit(x, y, one)
                best[one] = min(best[one], seconds)
        ratio = best[False] / best[True]
        ratio_bbc = ratio_bbc or ratio
        print(f"{name:44s}{iterations:10d}{best[False]:11.3f}{best[True]:9.3f}{ratio:7.2f}x")
    print(f"speedup={ratio_bbc:.2f}")


if __name__ == "__main__":
    main()
