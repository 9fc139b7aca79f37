"""Each speed/accuracy lever of the default config, measured on its own, side by side in one invocation.

Every variant is `lightft train configs/bbc-news.yaml` on the same subset with one override, run one after
the other in child processes. Prints training seconds, test-evaluation seconds, test accuracy and the ratio
to the default for each variant. Timings on a shared machine are noisy: compare ratios within one run.

    .venv/bin/python bench/levers.py            # 300 train / 300 test documents, 1 epoch each
    .venv/bin/python bench/levers.py --epochs 3 --train 1000 --test 1000    # the default config's size
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "bbc-news.yaml"

# (name, overrides that turn one lever off or change it)
VARIANTS = [
    ("default", []),
    ("fp32 (no bf16 autocast)", ["train.precision=fp32"]),
    ("pad to max_length (no dynamic padding)", ["train.dynamic_padding=false"]),
    ("random batches (no length grouping)", ["train.group_by_length=false"]),
    ("unsorted inference batches", ["inference.sort_by_length=false"]),
    ("no fp32 recheck of close decisions", ["inference.recheck_margin=0"]),
    ("max_length 512", ["model.max_length=512", "model.truncation=head"]),
    ("max_length 256", ["model.max_length=256", "model.truncation=head"]),
    ("head_tail truncation", ["model.truncation=head_tail"]),
    ("attention dropout 0.1 (model default)", ["model.config_overrides={attention_probs_dropout_prob: 0.1}"]),
    ("frozen pooler (classifier only)", ["peft.modules_to_save=[]"]),
    ("LoRA in the top 3 of 6 layers (backward stops at layer 3)", ["peft.layers_to_transform=[3,4,5]"]),
    ("1 thread", ["train.num_threads=1"]),
    ("recheck margin 1.0 (was the default)", ["inference.recheck_margin=1.0"]),
    ("inference batches of 32 (was the default)", ["inference.batch_size=32"]),
    ("eager attention for inference", ["inference.attention=eager"]),
    ("SDPA attention (was the default)", ["inference.attention=default"]),
    ("full last layer (no [CLS]-only)", ["inference.cls_only_last_layer=false"]),
    ("autocast (no bf16 copy of the weights)", ["inference.cast_weights_once=false"]),
    ("one inference batch at a time on all cores", ["inference.workers=1"]),
    ("training reads 384 tokens (evaluation 512)", ["train.max_length=384"]),
    ("training reads 256 tokens (evaluation 512)", ["train.max_length=256"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train", type=int, default=300, help="training documents")
    parser.add_argument("--test", type=int, default=300, help="test documents")
    parser.add_argument("--only", help="comma-separated variant numbers to run (0 = default is always run)")
    args = parser.parse_args()
    base = [f"train.epochs={args.epochs}", f"data.train_samples={args.train}", f"data.test_size={args.test}",
            "baselines.pretrained=false", "baselines.tfidf=false", "baselines.zero_shot=false",
            "baselines.linear_probe=false", "evaluation.bootstrap_resamples=0", "train.report_to=[]"]
    chosen = VARIANTS
    if args.only:
        keep = {0} | {int(i) for i in args.only.split(",")}
        chosen = [v for i, v in enumerate(VARIANTS) if i in keep]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, overrides) in enumerate(chosen):
            out = Path(tmp) / f"v{i}"
            cmd = [sys.executable, "-m", "lightft", "train", str(CONFIG), *base, *overrides, "-o", str(out)]
            print(f"[{i + 1}/{len(chosen)}] {name} ...", flush=True)
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                                  env={**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"})
            if proc.returncode != 0:
                rows.append((name, None))
                print(proc.stderr[-1500:])
                continue
            rows.append((name, json.loads((out / "summary.json").read_text())))
    default = rows[0][1]
    print(f"\n{'variant':42s}{'train s':>9s}{'x default':>10s}{'eval s':>9s}{'x default':>10s}{'test acc':>10s}")
    for name, s in rows:
        if s is None:
            print(f"{name:42s}  failed")
            continue
        print(f"{name:42s}{s['train_seconds']:9.1f}{s['train_seconds'] / default['train_seconds']:10.2f}"
              f"{s['test_eval_seconds']:9.1f}{s['test_eval_seconds'] / default['test_eval_seconds']:10.2f}"
              f"{s['finetuned']['accuracy']:10.4f}")


if __name__ == "__main__":
    main()
