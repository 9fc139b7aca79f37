"""WiSE-FT (Wortsman et al., CVPR 2022) on finished runs: the weights interpolated between the probe start and
the fine-tuned model, theta(a) = start + a * (fine-tuned - start), scored on validation and test for each a.

With LP-FT the start is the linear probe's head on the frozen encoder and LoRA's B = 0, so theta(a) is the
fine-tuned adapter with B scaled by a (A kept) and the classifier at start + a * (trained - start): still one
standard adapter. Nothing is retrained: the start is refitted exactly as `lightft run` fitted it (same
features, seed, regression), and the adapter is the run's saved best epoch.

    .venv/bin/python bench/wise_ft.py runs/bench-quality/lr1e-3/bbc-s42 [more runs] [--alphas 0,0.5,0.75,1]

Prints per run and alpha the validation and test accuracy / macro-F1; a = 0 is the probe start (epoch 0),
a = 1 the fine-tuned model. Validation picks a (ties: the larger a); the last line is machine-readable:
    picked_mean=<test acc of the validation-picked a, mean over runs> finetuned_mean=<a=1> runs=<n>
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any


def interpolate(model: Any, start: dict[str, Any], tuned: dict[str, Any], alpha: float) -> None:
    """Load theta(alpha) into ``model`` (a PEFT model holding the fine-tuned weights ``tuned``)."""
    import torch

    mixed = {}
    for name, value in tuned.items():
        if "lora_B" in name:  # B starts at 0: the adapter's update scales with alpha
            mixed[name] = alpha * value
        elif "lora_A" in name:
            mixed[name] = value
        else:  # the classifier (modules_to_save): between the probe's weights and the trained ones
            mixed[name] = torch.lerp(start[name], value, alpha)
    model.load_state_dict(mixed, strict=False)


def score(cfg: Any, prep: Any, model: Any, split: str) -> tuple[float, float]:
    """Accuracy and macro-F1 on ``split``, through the path `lightft run` scores its fine-tuned model on."""
    from lightft.experiment import _probabilities
    from lightft.metrics import as_targets, score_predictions

    names = prep.splits.label_names
    probs = _probabilities(cfg, prep, model, None, split, split)
    m = score_predictions(as_targets(getattr(prep.splits, split).labels, len(names)), probs.argmax(axis=1), names)
    return m["accuracy"], m["macro_f1"]


def one_run(run: Path, alphas: list[float]) -> list[tuple[float, float, float, float, float]]:
    from lightft.config import load_config
    from lightft.experiment import model_kwargs, prepare, start_head_from_probe
    from lightft.model import load_classifier, load_saved_model
    from lightft.runtime import set_seed

    cfg = load_config(run / "config.yaml", [])
    with tempfile.TemporaryDirectory() as tmp:
        prep = prepare(cfg, Path(tmp))
    set_seed(cfg.seed)
    base, _ = load_classifier(cfg.model.name, prep.splits.label_names, **model_kwargs(cfg))
    start_head_from_probe(cfg, prep, base)
    start_head = {k: v.detach().clone() for k, v in base.state_dict().items()}
    model = load_saved_model(run / "adapter", cfg.model.name, revision=cfg.model.revision).to(prep.device)
    tuned = {n: p.detach().clone() for n, p in model.named_parameters()
             if "lora_" in n or "modules_to_save" in n}
    # The start's value of each trained classifier tensor: PEFT names it ...modules_to_save.default.<name>.
    start = {}
    for name in tuned:
        if "modules_to_save" in name:
            plain = name.split("base_model.model.", 1)[-1].replace("modules_to_save.default.", "")
            start[name] = start_head[plain].to(tuned[name].device)
    rows = []
    for a in alphas:
        interpolate(model, start, tuned, a)
        rows.append((a, *score(cfg, prep, model, "validation"), *score(cfg, prep, model, "test")))
        print(f"{run.name} a={a:.2f}: validation {rows[-1][1]:.4f}/{rows[-1][2]:.4f} "
              f"test {rows[-1][3]:.4f}/{rows[-1][4]:.4f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--alphas", default="0,0.25,0.5,0.75,1")
    args = parser.parse_args()
    alphas = [float(a) for a in args.alphas.split(",")]
    picked, finetuned = [], []
    for run in args.runs:
        rows = one_run(run, alphas)
        best = max(rows, key=lambda r: (r[2], r[1], r[0]))  # validation macro-F1, then accuracy, then larger a
        picked.append(best[3])
        finetuned.append(next(r[3] for r in rows if r[0] == 1.0))
        print(f"{run}: validation picks a={best[0]:.2f}: test {best[3]:.4f}/{best[4]:.4f}")
    print(f"picked_mean={statistics.mean(picked):.4f} finetuned_mean={statistics.mean(finetuned):.4f} "
          f"runs={len(picked)}")


if __name__ == "__main__":
    main()
