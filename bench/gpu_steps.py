"""Fine-tuning levers on a GPU, side by side in one process: the default config's fine-tuning (LoRA from the
probe start, 2 epochs, validation after each) under each variant, on the same prepared splits.

    python bench/gpu_steps.py [key.sub=value ...]        # bench/gpu.sh runs it on a lent GPU

Variants (one lever changed from the default each): batch lengths padded to each batch's longest text instead of a
multiple of 64 (`train.pad_to_multiple_of`: fewer distinct shapes); training in fp32 instead of bf16 autocast
(`train.precision`; at inference fp32 beat bf16 on an H200 for the small default model); batches of 32 and 64 with
the learning rate scaled by the square root of the batch ratio (fewer, larger steps: each step's Python overhead is
paid once per 32 or 64 texts); LoRA dropout 0 (`peft.lora_dropout`: no dropout kernel in an adapted layer's forward
and backward passes). cuDNN's attention kernels (`inference.cudnn_attention`) were measured twice on Hopper (4.5x
slower whole; bench/README.md) and are no longer a row. A short warm-up run comes first (CUDA context, cuBLAS
handles, lazily loaded kernels), and the default runs again last, so the table shows the run-to-run spread. Each
row: the whole fine-tune (model load, probe start, training, validation), the training steps alone, the validation
passes, steps per second, and the best validation accuracy (225 articles: a lever that loses more than ~2 of them is
a quality question for bench/quality.py before it is a default).
On CPU it runs too (slowly; use a small `data.train_samples`) and checks nothing but the code path.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "bbc-news.yaml"

VARIANTS = [  # (name, overrides); the first is the warm-up, the second lightft's GPU default
    ("warm-up (1 epoch, not compared)", ["train.epochs=1"]),
    ("default", []),
    ("lengths to the longest", ["train.pad_to_multiple_of=0"]),
    ("fp32 training", ["train.precision=fp32"]),
    ("batch 32, lr 1.41e-3", ["train.batch_size=32", "train.learning_rate=1.41e-3"]),
    ("batch 64, lr 2e-3", ["train.batch_size=64", "train.learning_rate=2e-3"]),
    ("LoRA dropout 0", ["peft.lora_dropout=0.0"]),
    ("default again", []),
]


def resolved_config(overrides: list[str]):
    """The config as `lightft run` trains it: preflight's model-dependent defaults (model.max_length, attention
    dropout 0) decided, which prepare/finetune called directly would not do."""
    from lightft.config import load_config
    from lightft.experiment import resolve_model_defaults
    from lightft.model import check_model_config

    cfg = load_config(CONFIG, overrides)
    resolve_model_defaults(cfg, check_model_config(cfg.model.name, cfg.model.max_length))
    return cfg


def main() -> None:
    import torch

    from lightft.experiment import finetune, prepare

    overrides = sys.argv[1:]
    base = resolved_config(overrides)
    with tempfile.TemporaryDirectory() as tmp:
        prep = prepare(base, Path(tmp))
        device = prep.device
        print(f"device {torch.cuda.get_device_name() if device.type == 'cuda' else device}, precision "
              f"{prep.precision}, {len(prep.splits.train)} train / {len(prep.splits.validation)} validation texts")
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        rows = []
        for name, extra in VARIANTS:
            cfg = resolved_config([*overrides, *extra])
            sync()
            start = time.perf_counter()
            model, result, _, _ = finetune(cfg, prep, log_dir=None)
            sync()
            total = time.perf_counter() - start
            steps = len(result.steps) and result.steps[-1]["step"]
            best = max(e.get("val_accuracy", 0.0) for e in result.epochs)
            rows.append((name, total, result.step_seconds, result.validation_seconds, steps, best))
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
    print(f"\n{'variant':34s}{'whole s':>9s}{'steps s':>9s}{'valid s':>9s}{'steps/s':>9s}{'val acc':>9s}")
    for name, total, step_s, val_s, steps, best in rows:
        print(f"{name:34s}{total:9.2f}{step_s:9.2f}{val_s:9.2f}{steps / max(step_s, 1e-9):9.1f}{best:9.4f}")
    reference = (rows[1][1] + rows[-1][1]) / 2  # the default, first and last: the spread is in the table
    for name, total, *_ in rows[2:-1]:
        print(f"{name}: speedup={reference / total:.2f} (whole fine-tune, default / variant)")


if __name__ == "__main__":
    main()
