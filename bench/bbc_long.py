"""Datasets for bench/quality.py beyond BBC News, written as `text,label` CSV files outside the repository.

    .venv/bin/python bench/bbc_long.py bbc-long /tmp/lightft-data/bbc_long.csv

bbc-long: long documents built from the BBC corpus (../shared/data/bbc): the articles of each class are
shuffled (seeded) and cut into disjoint groups of four, each group joined into one document (~1,600 words,
~2,000 tokens). No article is in two documents, so no text crosses the train/test boundary. Public sets of
short texts, SMS spam and long documents are described in bench/README.md with where to obtain them.
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BBC = ROOT.parent / "shared" / "data" / "bbc"


def _read(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252")


def bbc_long(out: Path, per_document: int = 4, seed: int = 0) -> int:
    rng = random.Random(seed)
    rows = []
    for folder in sorted(p for p in BBC.iterdir() if p.is_dir()):
        articles = [" ".join(_read(f).split()) for f in sorted(folder.glob("*.txt"))]
        rng.shuffle(articles)
        for i in range(0, len(articles) - per_document + 1, per_document):
            rows.append((" ".join(articles[i:i + per_document]), folder.name))
    rng.shuffle(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return len(rows)


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] != "bbc-long":
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    n = bbc_long(Path(sys.argv[2]))
    print(f"{n} documents written to {sys.argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
