"""`lightft sweep`: one fine-tune per PEFT method on one tokenised dataset, and a leaderboard.

Each method gets the config's training settings with its own PEFT section and, where a method is known to
need it, its own learning rate (below). A method that fails is listed as failed with its one-line reason and
the sweep goes on. Output: leaderboard.json / leaderboard.md / pareto.png / leaderboard.html, and per method
a run folder under methods/<name>/ (adapter, config, metrics, summary) that predict, serve, export and evaluate
load. Each method's folder is marked complete last, so an interrupted sweep resumed with the same config
(``--resume``) keeps the methods it finished, named in --methods or not, and trains the rest.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from lightft import rundir
from lightft.config import Config, inference_options, method_config, save_config
from lightft.errors import LightftError

log = logging.getLogger("lightft")

DEFAULT_METHODS = ["lora", "dora", "rslora", "adalora", "ia3", "loha", "lokr", "vera", "prompt_tuning",
                   "prefix_tuning", "full", "head"]
def _dir_size(path: Path) -> int:
    """Bytes of the weights on disk (safetensors files; the tokenizer and configs are the same for all)."""
    return sum(f.stat().st_size for f in path.glob("*.safetensors"))


# What a method's leaderboard row holds (summary.json keeps it, so --resume can list a finished method again).
ROW_KEYS = ("method", "learning_rate", "status", "accuracy", "macro_f1", "trainable_params", "total_params",
            "adapter_bytes", "train_seconds", "docs_per_second", "best_epoch")


def finished_methods(out: Path) -> dict[str, dict[str, Any]]:
    """The leaderboard rows of the methods an unfinished sweep in ``out`` trained, scored and saved: each method
    folder marked complete (its run.json, written last) with its row in summary.json. What --resume keeps;
    failed methods, and a folder a kill left half-written, are trained again."""
    done: dict[str, dict[str, Any]] = {}
    for folder in sorted((out / "methods").glob("*/")) if (out / "methods").is_dir() else []:
        try:
            marker = rundir.read_json(folder / rundir.MARKER)
            row = rundir.read_json(folder / "summary.json")["leaderboard_row"]
            if marker.get("status") == "complete" and all(k in row for k in ROW_KEYS) and \
                    row["method"] == folder.name and isinstance(row["accuracy"], float):
                done[folder.name] = row
        except (LightftError, TypeError, KeyError, AttributeError):  # not finished, or damaged: trained again
            continue
    return done


def _drop_unfinished(out: Path, keep: set[str]) -> None:
    """Remove what a kill left of a method the resumed sweep neither lists nor trains (no completion marker), so
    that the folders under methods/ are runs; one marked complete whose summary cannot be read is left as is."""
    for folder in sorted((out / "methods").glob("*/")) if (out / "methods").is_dir() else []:
        if folder.name in keep:
            continue
        try:
            complete = rundir.read_json(folder / rundir.MARKER).get("status") == "complete"
        except (LightftError, AttributeError):
            complete = False
        if complete:
            log.warning("%s: a finished method whose summary.json cannot be read; kept, not in the leaderboard",
                        folder)
        else:
            log.warning("%s: an unfinished method folder not in --methods; removed", folder)
            shutil.rmtree(folder, ignore_errors=True)


def _save_method_run(mcfg: Config, prep: Any, model: Any, result: Any, metrics: dict[str, Any], row: dict[str, Any],
                     method_dir: Path, out: Path) -> None:
    """A method's folder as a run directory that predict, serve, export and evaluate load like any other
    (adapter, config.yaml, labels, metrics/finetuned.json, summary.json with the leaderboard row), with its
    completion marker written last."""
    from lightft.experiment import summarise_run

    for name in ("labels.json", rundir.SEEN_TEXTS):  # the sweep's data, shared by every method
        rundir.atomic_write_json(method_dir / name, rundir.read_json(out / name))
    rundir.atomic_write_json(method_dir / "metrics" / "finetuned.json", metrics)
    rundir.atomic_write_text(method_dir / "config.yaml", save_config(mcfg))
    summary = summarise_run(mcfg, prep, model, result, row["trainable_params"], row["total_params"],
                            {"finetuned": metrics}, {}, {})
    rundir.atomic_write_json(method_dir / "summary.json", summary | {"sweep": str(out), "leaderboard_row": row})
    rundir.atomic_write_json(method_dir / rundir.MARKER, {"status": "complete", "command": "sweep",
                                                          "method": row["method"], "finished": rundir.now()})


def run_sweep(cfg: Config, methods: list[str], output_dir: Path | None = None, overwrite: bool = False,
              resume: Path | None = None) -> Path:
    """Train and score each of ``methods``; ``resume``: an interrupted sweep of this config, whose finished
    methods are kept."""
    from lightft.experiment import check_same_config, check_same_data, guarded_run, preflight, study_output

    # cheap: a complete (or resumable) sweep is refused before the data is read
    out = study_output(cfg, "sweep", output_dir, resume, overwrite, lambda o: len(finished_methods(o)))
    splits = preflight(cfg)
    if splits.multi_label:
        raise LightftError("lightft sweep handles single-label tasks only; this data is multi-label (use lightft run "
                           "or lightft tune)")
    done: dict[str, dict[str, Any]] | None = None  # a resume's finished methods
    if resume is not None:
        check_same_config(out, cfg)
        check_same_data(out, splits)
        done = finished_methods(out)
        kept = [m for m in done if m not in methods]  # finished work --methods no longer names stays listed
        if kept:
            log.warning("%s: %s finished in the earlier sweep and not in --methods: kept in the leaderboard",
                        out, ", ".join(kept))
        methods = [*kept, *methods]
        log.info("resuming %s: %s kept, %d to train", out, ", ".join(done) or "no method",
                 sum(m not in done for m in methods))
    return guarded_run(out, "sweep", lambda: _sweep(cfg, methods, out, splits, done), resume is not None,
                       overwrite)


def _sweep(cfg: Config, methods: list[str], out: Path, splits: Any = None,
           done: dict[str, dict[str, Any]] | None = None) -> None:
    import numpy as np

    from lightft import plots, report
    from lightft.experiment import finetune, prepare
    from lightft.inference import predict_logits, softmax
    from lightft.methods import build_peft_config
    from lightft.metrics import compute_metrics
    from lightft.model import save_model
    from lightft.runtime import resolve_eval_batch_size
    from lightft.train import planned_epochs, with_small_batches

    if done is not None:  # a resume, under the folder's lock: a kill's leftovers of methods not run go
        _drop_unfinished(out, set(methods))
    prep = prepare(cfg, out, splits)
    names = prep.splits.label_names
    y_test = np.asarray(prep.splits.test.labels)
    train_cfg = with_small_batches(cfg.train, len(prep.splits.train))  # the batches train_model will use
    batches = -(-len(prep.splits.train) // train_cfg.batch_size)
    steps = planned_epochs(train_cfg, batches) * batches
    rows: list[dict[str, Any]] = []
    eval_batch = resolve_eval_batch_size(cfg.inference.batch_size, prep.device)
    for method in methods:
        if done and method in done:  # trained, scored and saved before the sweep was interrupted
            rows.append(done[method])
            continue
        mcfg = method_config(cfg, method, steps)
        row: dict[str, Any] = {"method": method, "learning_rate": mcfg.train.learning_rate}
        try:
            build_peft_config(mcfg.method, mcfg.peft)
            method_dir = out / "methods" / method
            shutil.rmtree(method_dir, ignore_errors=True)  # what a kill left of this method's earlier attempt
            model, result, trainable, total = finetune(mcfg, prep, log_dir=None)
            t = time.perf_counter()
            logits = predict_logits(model, prep.enc["test"].ids, prep.pad_id, eval_batch, prep.precision,
                                    owner=prep.enc["test"].owner,
                                    desc=f"{method} on test", **inference_options(cfg))
            seconds = time.perf_counter() - t
            probs = softmax(logits)
            metrics = compute_metrics(y_test, probs.argmax(axis=1), names, probs, cfg.evaluation.bootstrap_resamples,
                                      cfg.seed)
            save_model(model, prep.tokenizer, method_dir / "adapter", cfg.model.name)
            metrics["trainable_params"] = trainable
            row.update(status="ok", accuracy=metrics["accuracy"], macro_f1=metrics["macro_f1"],
                       ci95=metrics.get("ci95"), trainable_params=trainable, total_params=total,
                       adapter_bytes=_dir_size(method_dir / "adapter"), train_seconds=round(result.train_seconds, 2),
                       docs_per_second=round(len(y_test) / seconds, 1), best_epoch=result.best_epoch)
            _save_method_run(mcfg, prep, model, result, metrics, row, method_dir, out)
            log.info("%s: accuracy %.4f, macro-F1 %.4f", method, metrics["accuracy"], metrics["macro_f1"])
            del model
        except Exception as exc:  # one method's failure must not end the sweep
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            row.update(status="failed", reason=reason)
            log.warning("%s failed: %s", method, reason)
        rows.append(row)
        rundir.atomic_write_json(out / "leaderboard.json", {"model": cfg.model.name, "methods": rows})
    ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: -r["accuracy"])
    if ok:
        plots.accuracy_vs_params([{"name": r["method"], **r} for r in ok], out / "pareto.png",
                                 "Accuracy vs trainable parameters (point size: train time)", size_key="train_seconds")
    md = leaderboard_markdown(cfg, ok, [r for r in rows if r["status"] != "ok"])
    rundir.atomic_write_text(out / "leaderboard.md", md)
    rundir.atomic_write_text(out / "leaderboard.html", report.markdown_to_html(md, out, "lightft leaderboard"))
    if not ok:  # the run is marked failed; leaderboard.md keeps each method's reason
        reasons = "; ".join(f"{r['method']}: {r['reason']}" for r in rows)
        raise LightftError(f"no method trained ({reasons}); see {out / 'leaderboard.md'}")


def _whole(method: str) -> str:
    """full and head train no adapter: what they save is the whole model, and the table says so."""
    from lightft.methods import NON_PEFT_METHODS

    return " (whole model)" if method in NON_PEFT_METHODS else ""


def leaderboard_markdown(cfg: Config, ok: list[dict[str, Any]], failed: list[dict[str, Any]]) -> str:
    def ci(r: dict[str, Any], key: str) -> str:
        c = (r.get("ci95") or {}).get(key)
        return f"{r[key]:.4f} [{c[0]:.3f}, {c[1]:.3f}]" if c else f"{r[key]:.4f}"

    from lightft.report import md_text

    lines = [f"# lightft leaderboard: {md_text(cfg.name)}", "",
             f"Model {md_text(cfg.model.name)}; every method trained on the same tokenised split and scored once "
             "on the same test split (brackets: 95% bootstrap interval).", "",
             "| method | accuracy | macro-F1 | trainable params | saved size | train s | docs/s | lr |",
             "|---|---|---|---|---|---|---|---|"]
    for r in ok:
        lines.append(f"| {r['method']} | {ci(r, 'accuracy')} | {ci(r, 'macro_f1')} | {r['trainable_params']:,} | "
                     f"{r['adapter_bytes'] / 1e6:.2f} MB{_whole(r['method'])} | {r['train_seconds']:.0f} | "
                     f"{r['docs_per_second']:.0f} | "
                     f"{r['learning_rate']:g} |")
    if failed:
        lines += ["", "## Failed", ""] + [f"- **{md_text(r['method'])}**: {md_text(r['reason'])}" for r in failed]
    if ok:  # no method trained: no plot was drawn
        lines += ["", "![Pareto: accuracy vs trainable parameters](pareto.png)", ""]
    return "\n".join(lines)
