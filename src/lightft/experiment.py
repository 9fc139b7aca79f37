"""The experiment, top to bottom: data -> baseline -> fine-tune -> evaluate -> save -> report.

``run_experiment`` is what ``lightft run`` (and, with ``baselines=False``, ``lightft train``) calls.
The test split is evaluated exactly once per model; model selection uses the validation split.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from lightft import rundir
from lightft.config import Config, save_config

log = logging.getLogger("lightft")


def default_output_dir(cfg: Config) -> Path:
    return Path(cfg.output_dir) if cfg.output_dir else Path("runs") / cfg.name


def run_experiment(cfg: Config, output_dir: Path | None = None, with_baselines: bool = True,
                   command: str = "run") -> Path:
    """Run the whole experiment and return the complete run directory."""
    out = Path(output_dir) if output_dir else default_output_dir(cfg)
    rundir.start_run(out, command)
    try:
        _run(cfg, out, with_baselines)
    except BaseException as exc:  # also Ctrl-C: the folder must say it did not finish
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        rundir.fail_run(out, reason)
        raise
    rundir.finish_run(out)
    return out


def _run(cfg: Config, out: Path, with_baselines: bool) -> None:
    from lightft import report
    from lightft.data import load_splits, tokenize
    from lightft.evaluate import evaluate_model
    from lightft.model import apply_method, count_parameters, load_classifier, load_tokenizer, save_model
    from lightft.runtime import resolve_device, resolve_precision, set_seed, set_threads
    from lightft.train import train_model

    t0 = time.perf_counter()
    set_threads(cfg.train.num_threads)
    rundir.atomic_write_text(out / "config.yaml", save_config(cfg))

    # 1. Data: deterministic stratified splits, tokenized once for every model.
    splits = load_splits(cfg.data, cfg.seed)
    names = splits.label_names
    rundir.atomic_write_json(out / "labels.json", {"labels": names, "counts": splits.counts()})
    log.info("data: %d train / %d validation / %d test, %d classes (%s)", len(splits.train),
             len(splits.validation), len(splits.test), len(names), ", ".join(names))
    tokenizer = load_tokenizer(cfg.model.name, cfg.model.revision, cfg.model.trust_remote_code)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    enc = {
        name: tokenize(split.texts, tokenizer, cfg.model.max_length, cfg.model.truncation, f"tokenizing {name}")
        for name, split in (("train", splits.train), ("validation", splits.validation), ("test", splits.test))
    }
    device = resolve_device()
    precision = resolve_precision(cfg.train.precision, device)
    evaluations: dict[str, dict[str, Any]] = {}

    def evaluate_on_test(model: Any, key: str, desc: str) -> dict[str, Any]:
        metrics, _ = evaluate_model(model, enc["test"], splits.test.labels, names, pad_id,
                                    cfg.train.eval_batch_size, precision, desc)
        trainable, total = count_parameters(model)
        metrics.update(model=key, trainable_params=trainable, total_params=total)
        rundir.atomic_write_json(out / "metrics" / f"{key}.json", metrics)
        evaluations[key] = metrics
        log.info("%s on test: accuracy %.4f, macro-F1 %.4f", key, metrics["accuracy"], metrics["macro_f1"])
        return metrics

    model_kwargs = dict(revision=cfg.model.revision, trust_remote_code=cfg.model.trust_remote_code,
                        config_overrides=cfg.model.config_overrides)

    # 2. Baseline: the pre-trained model with its untrained head (seeded, so the head is reproducible).
    if with_baselines and cfg.baselines.pretrained:
        set_seed(cfg.seed)
        baseline, _ = load_classifier(cfg.model.name, names, **model_kwargs)
        baseline.to(device)
        evaluate_on_test(baseline, "baseline", "baseline on test")
        del baseline

    # 3. Fine-tune with the chosen method; the best validation epoch is kept.
    set_seed(cfg.seed)
    model, new_modules = load_classifier(cfg.model.name, names, **model_kwargs)
    model = apply_method(model, cfg.method, cfg.peft, new_modules)
    trainable, total = count_parameters(model)
    log.info("method %s: %s of %s parameters trainable (%.2f%%); newly initialised and trained: %s",
             cfg.method, f"{trainable:,}", f"{total:,}", 100 * trainable / total, ", ".join(new_modules) or "none")
    if not splits.validation.texts:
        log.warning("no validation split: the last epoch is kept (set data.validation_size to select)")
    result = train_model(model, enc["train"], splits.train.labels, enc["validation"], splits.validation.labels,
                         names, cfg.train, cfg.seed, pad_id)

    # 4. The one test evaluation of the fine-tuned model, then save it.
    t_eval = time.perf_counter()
    evaluate_on_test(model, "finetuned", "fine-tuned on test")
    eval_seconds = time.perf_counter() - t_eval
    save_model(model, tokenizer, out / "adapter", cfg.model.name)
    rundir.atomic_write_json(out / "training.json", {
        "best_epoch": result.best_epoch, "epochs": result.epochs, "steps": result.steps,
        "train_seconds": result.train_seconds, "precision": result.precision, "device": result.device,
    })

    summary = {
        "name": cfg.name,
        "model": cfg.model.name,
        "method": cfg.method,
        "labels": names,
        "trainable_params": trainable,
        "total_params": total,
        "train_samples": len(splits.train),
        "validation_samples": len(splits.validation),
        "test_samples": len(splits.test),
        "best_epoch": result.best_epoch,
        "train_seconds": round(result.train_seconds, 2),
        "test_eval_seconds": round(eval_seconds, 2),
        "total_seconds": round(time.perf_counter() - t0, 2),
        "precision": result.precision,
        "device": result.device,
        "max_length": cfg.model.max_length,
    }
    for key, metrics in evaluations.items():
        summary[key] = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}
    rundir.atomic_write_json(out / "environment.json", rundir.environment_record(
        {"device": result.device, "precision": result.precision}))
    rundir.atomic_write_json(out / "summary.json", summary)
    rundir.atomic_write_text(out / "report.md", report.run_report_markdown(summary, evaluations, result.epochs))

