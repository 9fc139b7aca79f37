"""Streaming `lightft predict` on a corpus: docs/s and peak memory at two input sizes, one process and two
(`accelerate launch --num_processes 2`), and the ONNX and int8 exports of the same run.

The corpus is short texts (BBC News sentences of 5-60 words, cycled with distinct ids) written as CSV; every
configuration is the whole `lightft predict RUN -i in.csv -o out.csv --quiet` command (start-up and model
load included), run one after another in this process's machine. Peak RSS is the largest ru_maxrss of the
command's processes. Predictions of the two-process run are compared with the one-process run's (identical
bytes expected). Prints a Markdown table, the docs/s between the smallest and largest size (start-up and model
load cancel out), and last:
    rows=<largest size> docs_per_s_1proc=<..> peak_mib_small=<..> peak_mib_large=<..>

    .venv/bin/python bench/predict_scale.py [--run runs/bbc-news] [--sizes 10000,100000] [--no-onnx]
(`make run` first: it writes runs/bbc-news.)
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEAK = ("import resource, runpy, sys\n"
        "try:\n    runpy.run_module('lightft', run_name='__main__')\n"
        "finally:\n    print('peak_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")


def sentences(corpus: Path) -> list[str]:
    out = []
    for path in sorted(corpus.glob("*/*.txt")):
        text = path.read_bytes().decode("utf-8", "replace")
        for s in re.split(r"(?<=[.!?])\s+", text):
            words = s.split()
            if 5 <= len(words) <= 60:
                out.append(" ".join(words))
    return out


def write_corpus(path: Path, texts: list[str], n: int) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text"])
        for i in range(n):
            writer.writerow([f"s{i}", texts[i % len(texts)]])
    return path


def run(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak MiB over the command's processes)."""
    env = {**os.environ, "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    peaks = [int(x) for x in re.findall(r"peak_kib (\d+)", proc.stderr)]
    return wall, max(peaks) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/bbc-news", help="a complete run directory")
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated row counts")
    parser.add_argument("--corpus", default=str(ROOT.parent / "shared/data/bbc"), help="where the sentences come from")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX and int8 rows")
    args = parser.parse_args()
    run_dir = Path(args.run).resolve()
    if not (run_dir / "run.json").is_file():
        sys.exit(f"{run_dir} is not a run directory; `make run` first")
    sizes = [int(s) for s in args.sizes.split(",")]
    texts = sentences(Path(args.corpus))
    py = sys.executable
    launcher = str(Path(py).parent / "accelerate")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wrapper = tmp / "peak.py"
        wrapper.write_text(PEAK)
        models = [("PyTorch, 1 process", run_dir, [], 1), ("PyTorch, 2 processes", run_dir, [], 2)]
        if not args.no_onnx:
            onnx = tmp / "onnx"
            subprocess.run([py, "-m", "lightft", "export", str(run_dir), "--onnx", str(onnx), "--int8"], check=True,
                           capture_output=True, cwd=ROOT)
            models += [("ONNX fp32, 1 process", onnx, [], 1), ("ONNX int8, 1 process", onnx, ["--int8"], 1)]
        rows, results = [], {}
        for n in sizes:
            src = write_corpus(tmp / f"in{n}.csv", texts, n)
            for name, model, extra, procs in models:
                out = tmp / f"out-{n}-{len(rows)}.csv"
                args_ = ["predict", str(model), "-i", str(src), "-o", str(out), "--quiet", *extra]
                cmd = [py, str(wrapper), *args_] if procs == 1 else \
                    [launcher, "launch", "--multi_gpu", "--num_processes", str(procs), "--num_machines", "1",
                     "--mixed_precision", "no", "--dynamo_backend", "no", str(wrapper), *args_]
                wall, peak = run(cmd)
                results[(n, name)] = (wall, peak, out)
                same = ""
                if procs > 1:
                    same = "identical" if out.read_bytes() == results[(n, models[0][0])][2].read_bytes() else "DIFFER"
                rows.append(f"| {n:,} | {name} | {n / wall:,.0f} | {wall:,.1f} | {peak:,.0f} | {same} |")
                print(rows[-1], flush=True)
    print("\n| rows | model | docs/s | wall s | peak RSS MiB | vs 1 process |\n|---|---|---|---|---|---|")
    print("\n".join(rows))
    big, small = max(sizes), min(sizes)
    if big > small:  # start-up and model load cancel out: the streaming rate itself
        print(f"\ndocs/s between {small:,} and {big:,} rows (start-up excluded):")
        for name, *_ in models:
            print(f"  {name}: {(big - small) / (results[(big, name)][0] - results[(small, name)][0]):,.0f}")
    one = models[0][0]
    print(f"rows={big} docs_per_s_1proc={big / results[(big, one)][0]:.1f} "
          f"peak_mib_small={results[(small, one)][1]:.0f} peak_mib_large={results[(big, one)][1]:.0f}")


if __name__ == "__main__":
    main()
