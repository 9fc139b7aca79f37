"""`lightft tune`: an Optuna study over the config's hyperparameters, scored on the validation split only.

The data are read, split and tokenised once; each trial is the config with the trial's values (``tune.space``,
or ``config.TUNE_DEFAULT_SPACE``) fine-tuned on the training split and scored, epoch by epoch, on the
validation split: the trial's value is ``tune.metric`` at the epoch training keeps (its best epoch, chosen by
``train.select_metric``), and the median pruner stops a trial whose value so far is below the median of earlier
trials' at that epoch. The test split is never tokenised or scored here: the best config, written as
``best.yaml``, is run with `lightft run`, which reads the test split once. The study lives in
``OUT/study.db`` (SQLite), so a tune that is stopped (Ctrl-C, a crash, a kill) continues where it was with the
same command; ``--trials N`` is the total number of finished trials.

Output: study.db, trials.csv, trials.md/trials.html (a table of every trial), trials.png (value per trial,
best so far), best.yaml, tune.json.
"""

from __future__ import annotations

import copy
import csv
import io
import logging
import math
import time
from pathlib import Path
from typing import Any

from lightft import rundir
from lightft.config import TUNE_DEFAULT_SPACE, Config, config_from_dict, method_config, save_config, set_dotted
from lightft.errors import ConfigError, LightftError
from lightft.methods import LORA_FAMILY

log = logging.getLogger("lightft")

LORA_KEYS = ("peft.r", "peft.lora_alpha", "peft.lora_dropout")


def search_space(cfg: Config) -> dict[str, dict[str, Any]]:
    """``tune.space``, or the default space (its LoRA keys only for a LoRA-family method)."""
    if cfg.tune.space:
        return {str(k): v for k, v in cfg.tune.space.items()}
    lora = cfg.method in LORA_FAMILY
    return {k: v for k, v in TUNE_DEFAULT_SPACE.items() if lora or k not in LORA_KEYS}


def trial_config(cfg: Config, params: dict[str, Any]) -> Config:
    """``cfg`` with ``params`` (dotted key -> value) set, validated as a config file would be. A trial that
    sets ``train.epochs`` trains exactly those: ``train.min_steps`` would otherwise raise every choice to the
    same number on a small training set; one that sets ``train.batch_size`` trains in it (no
    ``train.small_batch_size``)."""
    data = copy.deepcopy(cfg.to_dict())
    if "train.epochs" in params and "train.min_steps" not in params:
        params = {**params, "train.min_steps": 0}
    if "train.batch_size" in params and "train.small_batch_size" not in params:  # the trial's batch size, as chosen
        params = {**params, "train.small_batch_size": None}
    method = params.get("method", cfg.method)
    same_family = method == cfg.method or (method in LORA_FAMILY and cfg.method in LORA_FAMILY)
    if not same_family and not any(k.startswith("peft.") for k in params):
        # the config's section is for its own method (LoRA's r would reach IA3Config): the method's own, as sweep
        if method == "adalora":
            raise ConfigError("tune.space: method adalora needs a schedule set from the training steps; tune it "
                              "from a config whose method is adalora")
        data["peft"] = method_config(cfg, method, steps=0).peft
    try:
        for key, value in params.items():
            set_dotted(data, key, value)
        return config_from_dict(data, cfg.name, environment=False)
    except ConfigError as exc:
        raise ConfigError(f"tune.space: {exc}") from None


def check_space(cfg: Config) -> dict[str, dict[str, Any]]:
    """The space, each key tried at its bounds/choices so an unknown key or an impossible value is one line
    before any training."""
    from lightft.model import check_model_config

    space = search_space(cfg)
    for key, spec in space.items():
        for value in spec.get("choices") or [spec["low"], spec["high"]]:
            tcfg = trial_config(cfg, {key: value})
            if key.startswith("model.config_overrides."):  # the model's config judges these (names, types, shapes)
                m = tcfg.model
                check_model_config(m.name, None, m.revision, m.trust_remote_code, m.config_overrides)
    return space


def suggest(trial: Any, key: str, spec: dict[str, Any]) -> Any:
    """The trial's value for ``key``; a space Optuna refuses is a ConfigError that names the key."""
    try:
        if "choices" in spec:
            return trial.suggest_categorical(key, spec["choices"])
        low, high = spec["low"], spec["high"]
        if isinstance(low, int) and isinstance(high, int) and not isinstance(spec.get("step", 1), float):
            return trial.suggest_int(key, low, high, step=spec.get("step", 1), log=bool(spec.get("log")))
        return trial.suggest_float(key, float(low), float(high), step=spec.get("step"), log=bool(spec.get("log")))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"tune.space.{key}: {exc}") from None


def epoch_reporter(trial: Any, metric: str) -> Any:
    """``train_model``'s ``on_epoch``: after each epoch, report the trial's value so far (validation ``metric`` of
    the epoch training keeps, as the trial's value is at the end); stop a trial the pruner rejects."""
    import optuna

    def report(record: dict[str, Any], kept: dict[str, Any]) -> None:
        # The kept epoch's score, not this epoch's: an epoch train.select_metric does not keep would rank the
        # trial by a model that `lightft run best.yaml` does not keep either
        value = kept.get(f"val_{metric}")
        if value is None:
            return
        trial.report(value, record["epoch"])
        if trial.should_prune():
            trial.set_user_attr("best_epoch", kept["epoch"])  # the epoch that gives the pruned trial its value
            raise optuna.TrialPruned(f"epoch {record['epoch']}: validation {metric} {value:.4f}"
                                     + (f" (epoch {kept['epoch']}, the one kept)"
                                        if kept["epoch"] != record["epoch"] else ""))

    return report


def open_study(cfg: Config, out: Path) -> Any:
    """The study in OUT/study.db (created, or loaded to continue). A trial left running by a process that
    died is marked failed and its values queued again."""
    import optuna
    from optuna.trial import TrialState

    # lightft logs one line per trial itself, a failed one's reason included; Optuna's warning adds the
    # traceback (~150 lines for a Ctrl-C), so only its errors are shown
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=cfg.tune.startup_trials, n_warmup_steps=1) \
        if cfg.tune.pruner == "median" else optuna.pruners.NopPruner()
    study = optuna.create_study(study_name=cfg.name, storage=f"sqlite:///{(out / 'study.db').resolve()}",
                                direction="maximize", pruner=pruner, load_if_exists=True)
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(stale.number, state=TrialState.FAIL)
        study.enqueue_trial(stale.params, skip_if_exists=False)
        # a finished trial takes no user attribute, so its note lives with the study (trial_rows reads it)
        study.set_user_attr(f"note_{stale.number}", KILLED_NOTE)
        log.warning("trial %d was interrupted; it runs again", stale.number)
    # The sampler's state is not stored with the study: seeded with `seed` alone, each process that extends it
    # replays the same random start-up draws (trials 0, 1, 2 of three one-trial runs had the same values).
    # Adding the number of trials already held draws new values, and the same for the same history.
    study.sampler = optuna.samplers.TPESampler(seed=cfg.seed + len(study.trials),
                                               n_startup_trials=max(cfg.tune.startup_trials, 1))
    return study


def run_tune(cfg: Config, trials: int, output_dir: Path | None = None, overwrite: bool = False) -> Path:
    """Run (or continue) the study to ``trials`` finished trials; returns the output folder."""
    from lightft.experiment import preflight, study_dir

    if trials < 1:
        raise LightftError(f"--trials must be at least 1, got {trials}")
    space = check_space(cfg)
    out = study_dir(cfg, "tune", output_dir)
    if out.exists() and not out.is_dir():
        raise LightftError(f"{out} is a file; give a folder for the study")
    if overwrite and (out / "study.db").exists():
        for name in ("study.db", "trials.csv", "trials.md", "trials.html", "trials.png", "best.yaml", "tune.json"):
            (out / name).unlink(missing_ok=True)
    elif out.is_dir() and any(out.iterdir()) and not (out / "study.db").exists():
        raise LightftError(f"{out} exists, is not empty and holds no study; choose another --output-dir "
                           "(--overwrite replaces a study, never other files)")
    splits = preflight(cfg)
    if not splits.validation.texts:
        raise ConfigError("lightft tune scores trials on the validation split: set data.validation_size above 0")
    out.mkdir(parents=True, exist_ok=True)
    with rundir.run_lock(out):
        try:
            _optimize(cfg, space, trials, out, splits)
        except KeyboardInterrupt:
            log.warning("study interrupted; the same command continues it (finished trials are kept, the "
                        "interrupted one runs again)")
            raise
    return out


def _optimize(cfg: Config, space: dict[str, dict[str, Any]], trials: int, out: Path, splits: Any) -> None:
    import dataclasses

    from optuna.trial import TrialState

    from lightft.data import Split
    from lightft.experiment import prepare

    study = open_study(cfg, out)
    _same_config(cfg, study, out)
    finished = (TrialState.COMPLETE, TrialState.PRUNED)

    def count(*states: Any) -> int:
        return len(study.get_trials(deepcopy=False, states=states))

    if count(*finished) >= trials:  # nothing to train: the data is not tokenised again
        log.info("the study already has %d finished trials (--trials %d)", count(*finished), trials)
        prep = None
    else:
        # The test split is left out of everything tune reads; `lightft run best.yaml` scores it once.
        prep = prepare(cfg, out, dataclasses.replace(splits, test=Split([], [])))

    def objective(trial: Any) -> float:
        return _trial(cfg, prep, trial, space)

    attempts = 0  # failed trials do not count towards --trials, but do not retry for ever either
    while count(*finished) < trials and attempts < 3 * trials:
        study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[_log_trial(trials, cfg.tune.metric)])
        attempts += 1
        _write_reports(cfg, study, out)
    if not attempts:  # the study was already complete: its reports, from this config
        _write_reports(cfg, study, out)
    if not count(TrialState.COMPLETE):
        failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        last = failed[-1].user_attrs.get("error", "see the log") if failed else "every trial was pruned"
        raise LightftError(f"no trial finished (see {out / 'trials.md'}); the last: {last}")


def _same_config(cfg: Config, study: Any, out: Path) -> None:
    """A study continues only under the config (and search space) it was started with: its trials, and the
    best.yaml written from them, would otherwise mix two configs. The first call records it in the study."""
    import yaml

    from lightft.config import config_differences, config_from_dict, describe_differences, save_config

    saved = study.user_attrs.get("lightft_config")
    if saved is None:
        if study.trials:  # a study from before lightft recorded its config
            log.warning("%s: this study's trials do not record their config; continuing it under this one", out)
        study.set_user_attr("lightft_config", save_config(cfg))
        return
    changed = config_differences(config_from_dict(yaml.safe_load(saved), environment=False), cfg)
    if changed:
        raise LightftError(f"{out} holds a study of another config ({describe_differences(changed)}; the study's "
                           "value first); pass --overwrite to start a new study, or choose another --output-dir")


def _trial(cfg: Config, prep: Any, trial: Any, space: dict[str, dict[str, Any]]) -> float:
    import optuna

    from lightft.experiment import finetune

    start = time.perf_counter()
    try:
        # drawn inside the try: a value Optuna refuses, or a config the values make invalid, is recorded as
        # the trial's reason like a training error (outside it, the trial failed with no reason shown)
        tcfg = trial_config(cfg, {key: suggest(trial, key, spec) for key, spec in space.items()})
        model, result, _, _ = finetune(tcfg, prep, log_dir=None, on_epoch=epoch_reporter(trial, cfg.tune.metric))
    except optuna.TrialPruned:
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 1))
        raise
    except KeyboardInterrupt:
        # Optuna marks the trial failed: its note says it was cut off (it showed a partial score and no reason),
        # and its values are queued, so the same command runs them again, as the interrupted tune says
        trial.set_user_attr("error", "interrupted (Ctrl-C); its values run again as a later trial")
        trial.study.enqueue_trial(trial.params, skip_if_exists=False)
        raise
    except Exception as exc:  # recorded with the trial; the study goes on
        trial.set_user_attr("error", (str(exc).strip().splitlines() or [type(exc).__name__])[0])
        raise
    del model
    # The trial's value is tune.metric at the epoch training keeps (chosen by train.select_metric), the model
    # `lightft run best.yaml` keeps too; the best tune.metric over all epochs ranked trials by epochs never kept.
    key, other = f"val_{cfg.tune.metric}", _other_metric(cfg.tune.metric)
    kept = next((e for e in result.epochs if e["epoch"] == result.best_epoch), {})
    if key not in kept:
        raise LightftError(f"epoch {result.best_epoch}, the one training kept, has no validation {cfg.tune.metric}")
    trial.set_user_attr("best_epoch", result.best_epoch)
    trial.set_user_attr("val_accuracy", kept.get("val_accuracy"))
    trial.set_user_attr("val_macro_f1", kept.get("val_macro_f1"))
    trial.set_user_attr("tie_break", kept.get(other))  # the other metric at that epoch, for best_trial's ties
    trial.set_user_attr("seconds", round(time.perf_counter() - start, 1))
    return float(kept[key])


def _other_metric(metric: str) -> str:
    return "val_accuracy" if metric == "macro_f1" else "val_macro_f1"


def _log_trial(total: int, metric: str) -> Any:
    def callback(study: Any, trial: Any) -> None:
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
        value = f"-> validation {trial.value:.4f}" if trial.value is not None else ""
        reason = trial.user_attrs.get("error", "")
        top = best_trial([t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"], metric)
        best = f"; best so far {top.value:.4f} (trial {top.number})" if top is not None else ""
        done = sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.get_trials(deepcopy=False))
        log.info("trial %d %s (%d of %d finished): %s %s%s%s", trial.number, trial.state.name.lower(), done, total,
                 shown, value,
                 f" ({reason})" if reason else "", best)
    return callback


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


KILLED_NOTE = "stopped with its process (killed); its values run again as a later trial"


def trial_rows(study: Any) -> list[dict[str, Any]]:
    rows = []
    trials = study.get_trials(deepcopy=False)  # each of these reads the study's SQLite storage: once, not per row
    keys = sorted({k for t in trials for k in t.params})
    notes = study.user_attrs
    for t in trials:
        # Optuna's value only (a pruned trial's: its last report, the kept epoch's score when pruned): the scores
        # a failed or interrupted trial reported before it stopped are not its result
        rows.append({"trial": t.number, "state": t.state.name.lower(), "value": t.value,
                     **{k: t.params.get(k) for k in keys},
                     "best_epoch": t.user_attrs.get("best_epoch"), "seconds": t.user_attrs.get("seconds"),
                     "note": t.user_attrs.get("error", notes.get(f"note_{t.number}", ""))})
    return rows


def best_trial(complete: list[Any], metric: str) -> Any:
    """The complete trial with the best value; among ties (225 validation texts move accuracy in steps of
    0.44%, so ties are common) the one better on the other validation metric, then the faster one, then the
    earlier. None when no trial completed."""
    if not complete:
        return None
    other = _other_metric(metric)
    top = max(t.value for t in complete)

    def tie_break(t: Any) -> float:  # the other metric at the epoch that gave the value (the kept one)
        return t.user_attrs.get("tie_break", t.user_attrs.get(other)) or 0.0

    return min((t for t in complete if t.value == top),
               key=lambda t: (-tie_break(t), t.user_attrs.get("seconds") or math.inf, t.number))


def _write_reports(cfg: Config, study: Any, out: Path) -> None:
    from optuna.trial import TrialState

    from lightft import plots, report
    from lightft.report import md_text

    rows = trial_rows(study)
    if not rows:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    rundir.atomic_write_text(out / "trials.csv", buf.getvalue())
    best = best_trial([t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE],
                      cfg.tune.metric)
    metric = "macro-F1" if cfg.tune.metric == "macro_f1" else "accuracy"
    lines = [f"# lightft tune: {md_text(cfg.name)}", "",
             f"{len(rows)} trials of {md_text(cfg.model.name)}; value: validation {metric} at the epoch training "
             "keeps (the best epoch, chosen by train.select_metric). The test split is not read; run best.yaml "
             "with `lightft run`.", ""]
    if best is not None:
        lines += [f"Best: trial {best.number}, validation {metric} {best.value:.4f}: "
                  + ", ".join(f"`{k}={_fmt(v)}`" for k, v in best.params.items()), ""]
    keys = [k for k in rows[0] if k not in ("trial", "state", "value", "best_epoch", "seconds", "note")]
    lines += ["| trial | state | value | " + " | ".join(keys) + " | best epoch | seconds | note |",
              "|---" * (len(keys) + 6) + "|"]
    for r in rows:
        cells = [r["trial"], r["state"], "" if r["value"] is None else f"{r['value']:.4f}",
                 *["" if r[k] is None else _fmt(r[k]) for k in keys],
                 "" if r["best_epoch"] is None else r["best_epoch"], r["seconds"] or "", md_text(r["note"])]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines += ["", "![validation score per trial](trials.png)", ""]
    md = "\n".join(lines)
    rundir.atomic_write_text(out / "trials.md", md)
    rundir.atomic_write_text(out / "trials.html", report.markdown_to_html(md, out, "lightft tune"))
    plots.tune_trials(rows, out / "trials.png", f"validation {metric}")
    if best is not None:
        _write_best(cfg, best, study, out)


def _write_best(cfg: Config, best: Any, study: Any, out: Path) -> None:
    tuned = trial_config(cfg, best.params)
    tuned.name = f"{cfg.name}-tuned"
    tuned.output_dir = None
    header = (f"# The best of {len(study.trials)} trials of `lightft tune` for '{cfg.name}' (trial {best.number}, "
              f"validation {cfg.tune.metric} {best.value:.4f}).\n"
              f"# Run: lightft run {out / 'best.yaml'}   (scores the test split once)\n"
              f"# Tuned: " + ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items()) + "\n")
    rundir.atomic_write_text(out / "best.yaml", header + save_config(tuned))
    rundir.atomic_write_json(out / "tune.json", {
        "name": cfg.name, "metric": cfg.tune.metric, "trials": len(study.trials),
        "states": {s: sum(t.state.name.lower() == s for t in study.trials) for s in ("complete", "pruned", "fail")},
        "best": {"trial": best.number, "value": best.value, "params": best.params, **best.user_attrs},
    })
