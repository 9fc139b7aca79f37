"""Side by side, in one invocation: the original recipe vs `lightft run`, same model, split and subset.

(a) the original recipe: transformers.Trainer + PEFT LoRA (r=8, alpha=16, dropout 0.1, query/value),
    learning rate 5e-4, every text padded to 512 tokens, fp32, batch 16, 5 epochs, test-split evaluation
    after every epoch;
(b) `lightft run` with the default config (configs/bbc-news.yaml); its run directory is kept in
    runs/bench-lightft/ (report.html, adapter) for reading and for bench/inference.py.

Each runs in its own child process so its peak RSS is its own, and each is timed from before its own imports
(torch, transformers, ...) to its end: whole command vs whole command (before 2026-11-27 the recipe's clock
started after its imports and lightft's before them). Prints wall times, test accuracy and
macro-F1, peak RSS, then the ratio (a)/(b) of total wall time. The last line is machine-readable:
    speedup=<a/b> accuracy_a=<...> accuracy_b=<...>

    .venv/bin/python bench/recipe_vs_lightft.py            # the full comparison (about 70 min on 2 cores)
    .venv/bin/python bench/recipe_vs_lightft.py --quick    # 200 train / 200 test, 2 epochs each (< 10 min)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
CONFIG = ROOT / "configs" / "bbc-news.yaml"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def child_recipe(args: argparse.Namespace) -> dict:
    """The original recipe, as the original experiment ran it; timed from before its imports (whole command)."""
    start = time.perf_counter()
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments
    from transformers.utils import logging as hf_logging

    from lightft.config import load_config
    from lightft.data import load_splits
    from lightft.model import resolve_model_path

    hf_logging.set_verbosity_error()
    cfg = load_config(CONFIG, args.overrides)
    splits = load_splits(cfg.data, cfg.seed)
    path = resolve_model_path(cfg.model.name)
    tok = AutoTokenizer.from_pretrained(path)
    names = splits.label_names
    torch.manual_seed(cfg.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.1,
                                             target_modules=["query", "value"]))

    class Encoded(torch.utils.data.Dataset):
        def __init__(self, texts: list[str], labels: list[int]) -> None:
            self.enc = tok(texts, padding="max_length", truncation=True, max_length=512)
            self.labels = labels

        def __len__(self) -> int:
            return len(self.labels)

        def __getitem__(self, i: int) -> dict:
            item = {k: torch.tensor(v[i]) for k, v in self.enc.items()}
            item["labels"] = torch.tensor(self.labels[i])
            return item

    def metrics(pred) -> dict:
        y = pred.label_ids
        p = np.argmax(pred.predictions, axis=1)
        return {"accuracy": accuracy_score(y, p), "macro_f1": f1_score(y, p, average="macro")}

    train = Encoded(splits.train.texts, splits.train.labels)
    test = Encoded(splits.test.texts, splits.test.labels)
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, num_train_epochs=args.recipe_epochs, per_device_train_batch_size=16,
            per_device_eval_batch_size=16, learning_rate=5e-4, eval_strategy="epoch", save_strategy="no",
            logging_strategy="epoch", report_to=[], seed=cfg.seed, use_cpu=not torch.cuda.is_available(),
            disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=targs, train_dataset=train, eval_dataset=test, compute_metrics=metrics)
        t_train = time.perf_counter()
        trainer.train()
        in_train = time.perf_counter() - t_train
    evals = [h for h in trainer.state.log_history if "eval_accuracy" in h]
    total = time.perf_counter() - start
    eval_seconds = sum(h["eval_runtime"] for h in evals)
    return {  # training: trainer.train() less its per-epoch evaluations (imports and loading are in total only)
        "total_seconds": total, "eval_seconds": eval_seconds, "train_seconds": in_train - eval_seconds,
        "accuracy": evals[-1]["eval_accuracy"], "macro_f1": evals[-1]["eval_macro_f1"],
        "peak_rss_mib": peak_rss_mib(), "train_samples": len(train), "test_samples": len(test),
        "epochs": args.recipe_epochs,
    }


# Every module either side imports on its way, the libraries' lazily imported parts included (the recipe's
# Trainer, lightft's regressions and plots).
WARM_UP = ("import torch, transformers, peft, accelerate, sklearn, datasets, transformers.trainer, "
           "sklearn.linear_model, sklearn.feature_extraction.text, matplotlib.pyplot, lightft.cli, "
           "lightft.experiment, lightft.train, lightft.baselines, lightft.linear, lightft.report, lightft.plots, "
           "lightft.card; from transformers import AutoModelForSequenceClassification, Trainer; "
           "from accelerate import Accelerator")


def child_lightft(args: argparse.Namespace) -> dict:
    """`lightft run` with the default config, in this process (so its peak RSS is this process's); timed from
    before its imports, as the recipe is."""
    start = time.perf_counter()
    from typer.testing import CliRunner

    from lightft.cli import app

    out = Path(args.workdir) / "lightft-run"
    result = CliRunner().invoke(app, ["run", str(CONFIG), "-o", str(out), *args.overrides], catch_exceptions=False)
    total = time.perf_counter() - start
    if result.exit_code != 0:
        raise SystemExit(f"lightft run failed: {result.output[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    # Keep the run (report, adapter) for reading, and for bench/inference.py --run runs/bench-lightft.
    kept = ROOT / "runs" / "bench-lightft"
    shutil.rmtree(kept, ignore_errors=True)
    shutil.copytree(out, kept)
    return {
        "total_seconds": total, "train_seconds": summary["train_seconds"],
        "eval_seconds": summary["test_eval_seconds"], "accuracy": summary["finetuned"]["accuracy"],
        "macro_f1": summary["finetuned"]["macro_f1"], "peak_rss_mib": peak_rss_mib(),
        "train_samples": summary["train_samples"], "test_samples": summary["test_samples"],
        # Trained epochs only: training.json's epoch 0 is the probe start, scored on validation, never trained.
        "epochs": sum(e["epoch"] > 0 for e in json.loads((out / "training.json").read_text())["epochs"]),
        # The optimizer steps alone (train_seconds also holds the validation passes): the FLOP/s denominator.
        "step_seconds": summary.get("phases", {}).get("training", summary["train_seconds"]),
        "baseline_accuracy": summary.get("baseline", {}).get("accuracy"),
        "precision": summary["precision"], "max_length": summary["max_length"],
    }


def run_child(role: str, overrides: list[str], recipe_epochs: int, workdir: str) -> dict:
    out = Path(workdir) / f"{role}.json"
    cmd = [sys.executable, __file__, "--child", role, "--recipe-epochs", str(recipe_epochs), "--workdir", workdir,
           "--result", str(out), "--", *overrides]
    subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"})
    return json.loads(out.read_text())


def print_efficiency(a: dict, b: dict, overrides: list[str]) -> None:
    """Achieved training FLOP/s (real, unpadded token counts) as a fraction of the matmul peak, same dtype."""
    import torch

    from lightft.config import load_config
    from lightft.data import load_splits, tokenize
    from lightft.model import load_tokenizer, resolve_model_path

    from flops import dtype_of, forward_flops, matmul_peak

    cfg = load_config(CONFIG, overrides)
    texts = load_splits(cfg.data, cfg.seed).train.texts
    tok = load_tokenizer(cfg.model.name)
    from transformers import AutoConfig

    arch = AutoConfig.from_pretrained(resolve_model_path(cfg.model.name))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for side, r, max_len, precision in (("(a)", a, 512, "fp32"), ("(b)", b, b["max_length"], b["precision"])):
        lengths = [len(x) for x in tokenize(texts, tok, max_len)]
        # Frozen base: the backward pass computes activation gradients only, so 2x the forward FLOPs.
        flops = 2 * forward_flops(arch, lengths) * r["epochs"]
        peak = matmul_peak(dtype_of(precision), device)
        seconds = r.get("step_seconds", r["train_seconds"])  # (a)'s train_seconds already leave out evaluation
        print(f"{side} training: {flops / 1e12:.1f} TFLOP of model work on real tokens at {max_len} max, "
              f"{flops / seconds / 1e9:.1f} GFLOP/s = {flops / seconds / peak:.1%} of the "
              f"{precision} matmul peak measured now ({peak / 1e9:.0f} GFLOP/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 train / 200 test documents, 2 epochs each")
    parser.add_argument("--child", choices=["recipe", "lightft"], help=argparse.SUPPRESS)
    parser.add_argument("--recipe-epochs", type=int, default=5, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="extra key.sub=value overrides for both sides' data/config")
    args = parser.parse_args()

    if args.child:
        result = child_recipe(args) if args.child == "recipe" else child_lightft(args)
        Path(args.result).write_text(json.dumps(result))
        return

    overrides = list(args.overrides)
    recipe_epochs = 5
    if args.quick:  # the command line's own overrides still win (bench/gpu.sh's CPU dry run shrinks further)
        overrides = ["data.test_size=200", "data.train_samples=200", "train.epochs=2", *overrides]
        recipe_epochs = 2
    # Both sides are timed from before their imports. One throwaway process imports what either side will
    # import first (WARM_UP), so that neither pays for a cold disk cache, compiling bytecode or matplotlib's
    # font cache, costs a machine pays once (a fresh GPU machine spent ~17 s of its first process there).
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", WARM_UP], check=True)
    print(f"import warm-up (not timed for either side): {time.perf_counter() - t:.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as workdir:
        print(f"(a) original recipe: Trainer, 512 tokens padded, fp32, {recipe_epochs} epochs ...", flush=True)
        a = run_child("recipe", overrides, recipe_epochs, workdir)
        print("(b) lightft run configs/bbc-news.yaml ...", flush=True)
        b = run_child("lightft", overrides, recipe_epochs, workdir)

    rows = [("train wall s", "train_seconds", "{:.1f}"), ("eval wall s", "eval_seconds", "{:.1f}"),
            ("total wall s", "total_seconds", "{:.1f}"), ("test accuracy", "accuracy", "{:.4f}"),
            ("test macro-F1", "macro_f1", "{:.4f}"), ("peak RSS MiB", "peak_rss_mib", "{:.0f}"),
            ("epochs", "epochs", "{}"), ("train / test docs", None, None)]
    print(f"\n{'':20s}{'(a) recipe':>14s}{'(b) lightft':>14s}")
    for title, key, fmt in rows:
        if key is None:
            va, vb = (f"{r['train_samples']}/{r['test_samples']}" for r in (a, b))
        else:
            va, vb = fmt.format(a[key]), fmt.format(b[key])
        print(f"{title:20s}{va:>14s}{vb:>14s}")
    print("(a)'s eval is the test split after every epoch; (b)'s total also includes the baseline evaluation "
          "and the validation passes.")
    print_efficiency(a, b, overrides)
    speedup = a["total_seconds"] / b["total_seconds"]
    print(f"speedup=(a)/(b) total wall time: {speedup:.2f}x")
    print(f"speedup={speedup:.2f} accuracy_a={a['accuracy']:.4f} accuracy_b={b['accuracy']:.4f}")


if __name__ == "__main__":
    main()
