"""The glibc allocator lever (`runtime.reuse_freed_memory`) on and off, in alternating child processes.

Each child loads the run's classifier, warms up, and classifies the test split three times; it prints
docs/s per pass and the process's system CPU time (page faults are kernel time). "off" runs with
LIGHTFT_MALLOC=default, which leaves glibc's own thresholds. Last line: `speedup=<on/off docs/s>`.

    .venv/bin/python bench/malloc.py [--run runs/bbc-news] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = """
import resource, sys, time
from lightft.config import load_run_config
from lightft.data import load_splits
from lightft.predict import Classifier
from lightft.runtime import reuse_freed_memory
reuse_freed_memory()  # what the lightft command applies; LIGHTFT_MALLOC=default turns it off
clf = Classifier.from_run(sys.argv[1])
cfg = load_run_config(sys.argv[1])
texts = load_splits(cfg.data, cfg.seed).test.texts
clf.predict(texts[:32])
rates = []
for _ in range(3):
    t = time.perf_counter()
    clf.predict(texts)
    rates.append(len(texts) / (time.perf_counter() - t))
print("RESULT", " ".join(f"{r:.1f}" for r in rates), f"{resource.getrusage(resource.RUSAGE_SELF).ru_stime:.1f}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/bbc-news", help="a complete run directory")
    parser.add_argument("--rounds", type=int, default=2, help="alternating child processes per setting")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | {"HF_HUB_OFFLINE": "1"}
    rates: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(args.rounds):
        for setting in rates:
            child_env = {k: v for k, v in env.items() if k != "LIGHTFT_MALLOC"}
            if setting == "off":
                child_env["LIGHTFT_MALLOC"] = "default"
            out = subprocess.run([sys.executable, "-c", CHILD, args.run], env=child_env, capture_output=True,
                                 text=True, cwd=Path(__file__).resolve().parents[1])
            line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT")), None)
            if line is None:
                raise SystemExit(f"child failed:\n{out.stderr[-2000:]}")
            *passes, sys_s = (float(x) for x in line.split()[1:])
            rates[setting].extend(passes)
            print(f"{setting:4s} docs/s per pass {', '.join(f'{p:.1f}' for p in passes)}; system CPU {sys_s:.1f} s",
                  flush=True)
    on, off = statistics.mean(rates["on"]), statistics.mean(rates["off"])
    print(f"mean docs/s: on {on:.1f}, off {off:.1f}")
    print(f"speedup={on / off:.2f}")


if __name__ == "__main__":
    main()
