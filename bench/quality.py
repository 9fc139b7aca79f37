"""Is the fine-tuned model the best one in its report on more than one lucky split, and beyond BBC News?

Runs `lightft run` (the default config, or --config) once per split seed, on BBC News or on another dataset
prepared as a CSV with `text,label` columns (bench/README.md says where each comes from), and prints the test
accuracy and macro-F1 of the fine-tuned model and of every baseline, per seed and as mean ± sd. Overrides after
the options measure a lever over the same seeds, e.g. `train.head_init=random` or `model.pooling=cls`.

    .venv/bin/python bench/quality.py --seeds 42,43,44
    .venv/bin/python bench/quality.py --dataset sms_spam=/path/to/sms_spam.csv --seeds 42,43,44
    .venv/bin/python bench/quality.py --seeds 42,43,44 train.head_init=random     # one lever, same seeds
    .venv/bin/python bench/quality.py --dataset emotions=/path/to/emotions.csv data.label_separator='|'  # multi-label

Last line (machine-readable): finetuned_mean=<acc> best_baseline_mean=<acc> seeds=<n>
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
MODELS = ("finetuned", "linear_probe", "tfidf", "zero_shot", "baseline")

# Data sections for CSV datasets: everything else (model, method, training) stays the default config's.
# Test and validation sizes are fractions, so each dataset keeps its own size; no training subset.
CSV_DATA = {"test_size": 0.3, "validation_size": 0.15, "train_samples": None, "labels": None}


def run_one(config: str, dataset: str, csv: str | None, seed: int, overrides: list[str], out: Path,
            reuse: bool) -> dict:
    from lightft.config import load_config
    from lightft.experiment import run_experiment

    if reuse and (out / "summary.json").is_file() and '"complete"' in (out / "run.json").read_text():
        return json.loads((out / "summary.json").read_text())
    data = []
    if csv is not None:
        data = [f"data.source={csv}", "data.text_column=text", "data.label_column=label"]
        data += [f"data.{k}={'null' if v is None else v}" for k, v in CSV_DATA.items()]
    cfg = load_config(ROOT / config, [*data, *overrides, f"seed={seed}", f"name={dataset}"])
    if out.exists():
        import shutil

        shutil.rmtree(out)
    run_experiment(cfg, output_dir=out)
    return json.loads((out / "summary.json").read_text())


def sd(xs: list[float]) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/bbc-news.yaml")
    parser.add_argument("--dataset", default="bbc", help="bbc (the config's data), or NAME=PATH.csv (text,label)")
    parser.add_argument("--seeds", default="42,43,44", help="comma-separated split/training seeds")
    parser.add_argument("--out", default="runs/bench-quality", help="run directories go under OUT/<label>/")
    parser.add_argument("--label", default="default", help="sub-folder for this lever setting")
    parser.add_argument("--reuse", action="store_true", help="keep complete run directories from an earlier call")
    parser.add_argument("overrides", nargs="*", help="config overrides (key.sub=value) applied to every run")
    args = parser.parse_args()
    from lightft.runtime import reuse_freed_memory

    reuse_freed_memory()  # the process setting the lightft command applies (cli), so timings match it

    name, csv = (args.dataset.split("=", 1) + [None])[:2] if "=" in args.dataset else (args.dataset, None)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    rows: dict[int, dict] = {}
    for seed in seeds:
        start = time.perf_counter()
        out = ROOT / args.out / args.label / f"{name}-s{seed}"
        summary = run_one(args.config, name, csv, seed, args.overrides, out, args.reuse)
        rows[seed] = summary
        print(f"# {name} seed {seed}: {time.perf_counter() - start:.0f} s ({out})", file=sys.stderr, flush=True)

    present = [m for m in MODELS if all(m in r for r in rows.values())]
    print(f"\n{name}: {len(seeds)} seeds, overrides: {' '.join(args.overrides) or 'none'}")
    print(f"{'model':<14}" + "".join(f"{'s' + str(s):>16}" for s in seeds) + f"{'mean ± sd (acc)':>22}"
          + f"{'mean ± sd (macro-F1)':>24}")
    means = {}
    for m in present:
        acc = [rows[s][m]["accuracy"] for s in seeds]
        f1 = [rows[s][m]["macro_f1"] for s in seeds]
        means[m] = statistics.mean(acc)
        cells = "".join(f"{a:>8.4f}/{f:<7.4f}" for a, f in zip(acc, f1, strict=True))
        print(f"{m:<14}{cells}{statistics.mean(acc):>14.4f} ± {sd(acc):.4f}"
              f"{statistics.mean(f1):>16.4f} ± {sd(f1):.4f}")
    if all(rows[s].get("task") == "multi_label" for s in seeds):  # accuracy above is subset accuracy
        print("multi-label: accuracy is subset accuracy; micro-F1 per seed and mean:")
        for m in present:
            micro = [rows[s][m]["micro_f1"] for s in seeds]
            print(f"{m:<14}" + "".join(f"{x:>16.4f}" for x in micro) + f"{statistics.mean(micro):>14.4f}")
    extra = [f"{s}: epoch {rows[s].get('best_epoch')}, {rows[s].get('total_seconds')} s" for s in seeds]
    print("kept epoch and run time per seed: " + "; ".join(extra))
    best = max((v for k, v in means.items() if k != "finetuned"), default=float("nan"))
    print(f"finetuned_mean={means.get('finetuned', float('nan')):.4f} best_baseline_mean={best:.4f} "
          f"seeds={len(seeds)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
