"""The experiment, top to bottom: data -> baseline -> fine-tune -> evaluate -> save -> report.

``run_experiment`` is what ``lightft run`` (and, with ``baselines=False``, ``lightft train``) calls.
The test split is evaluated exactly once per model; model selection uses the validation split.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightft import rundir
from lightft.config import (
    Config,
    config_differences,
    describe_differences,
    inference_options,
    load_run_config,
    save_config,
)
from lightft.errors import LightftError

if TYPE_CHECKING:
    from lightft.baselines import Background

log = logging.getLogger("lightft")


def default_output_dir(cfg: Config) -> Path:
    return Path(cfg.output_dir) if cfg.output_dir else Path("runs") / cfg.name


def guarded_run(out: Path, command: str, body: Callable[[], None], resume: bool = False,
                overwrite: bool = False) -> Path:
    """Lock ``out`` against other writers, mark it as running, run ``body``, and mark it complete, or
    failed/interrupted with the reason. A complete run is replaced only with ``overwrite``."""
    from lightft.train import TrainingInterrupted

    main = rundir.is_main_process()  # under `accelerate launch`, only rank 0 touches the run directory
    with rundir.run_lock(out):
        if main:
            if resume:
                rundir.reopen_run(out, command)
            else:
                rundir.start_run(out, command, overwrite)
        try:
            body()
        except BaseException as exc:  # also Ctrl-C: the folder must say it did not finish
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            interrupted = isinstance(exc, (TrainingInterrupted, KeyboardInterrupt))
            if main:
                rundir.fail_run(out, reason, "interrupted" if interrupted else "failed")
            raise
        if main:
            rundir.finish_run(out)
    return out


def check_same_config(out: Path, cfg: Config) -> None:
    """--resume: the folder's config.yaml must be this config (after ``preflight`` decided its auto settings).
    Compared as configs, not as text: a run written before a key moved (config.MOVED_KEYS) still resumes."""
    changed = config_differences(load_run_config(out), cfg)
    if changed:
        raise LightftError(f"cannot resume {out}: its config.yaml differs from this config and overrides "
                           f"({describe_differences(changed)}; the run's value first)")


SPLIT_NAMES = ("train", "validation", "test")


def check_same_data(out: Path, splits: Any) -> None:
    """--resume: the data read now must be the data ``out`` was started on (its labels.json fingerprint; a
    folder written before the fingerprint: its recorded training and validation texts), or training would go on
    with other texts and the result be scored on another test split."""
    from lightft.data import data_fingerprint, text_digests

    recorded = rundir.read_json(out / "labels.json") if (out / "labels.json").is_file() else {}
    old = recorded.get("data_fingerprint") if isinstance(recorded, dict) else None
    if old is not None:
        same = old == data_fingerprint(splits)
    else:
        seen = rundir.read_json(out / rundir.SEEN_TEXTS) if (out / rundir.SEEN_TEXTS).is_file() else None
        same = not isinstance(seen, dict) or all(seen.get(name) == text_digests(getattr(splits, name).texts)
                                                 for name in ("train", "validation") if name in seen)
    if not same:
        texts = (recorded.get("texts") or {}).get("train") if isinstance(recorded, dict) else None
        then = f" (it has {texts} training texts, this data {len(splits.train)})" if isinstance(texts, int) else ""
        raise LightftError(f"cannot resume {out}: the data differs from what it was started on{then}; a file "
                           "changed since? Start again with --overwrite")


def study_dir(cfg: Config, command: str, output_dir: Path | None = None, resume: Path | None = None) -> Path:
    """Where a sweep, curve or tune (``command``) writes: the folder resumed, the one given, or
    runs/<config name>-<command>."""
    return Path(resume or output_dir or Path("runs") / f"{cfg.name}-{command}")


def study_output(cfg: Config, command: str, output_dir: Path | None, resume: Path | None, overwrite: bool,
                 finished: Callable[[Path], int]) -> Path:
    """The output folder of a sweep or curve (``command``), checked before the data is read: ``resume`` must be
    an unfinished one of ``command``; otherwise a complete one is replaced only with ``overwrite``, and so is an
    unfinished one that ``finished`` (its count of results that --resume would keep) says holds work."""
    out = study_dir(cfg, command, output_dir, resume)
    if not rundir.is_main_process():
        return out
    if resume is None:
        rundir.check_output_dir(out, overwrite)
        kept = 0 if overwrite or not (out / rundir.MARKER).is_file() else finished(out)
        if kept:
            raise LightftError(f"{out} holds an unfinished {command} with {kept} result(s) done; continue it with "
                               f"--resume {out}, or pass --overwrite to start again")
        return out
    check_resumable(out, (command,), output_dir)
    return out


def check_resumable(out: Path, commands: tuple[str, ...], output_dir: Path | None = None) -> None:
    """--resume ``out``: an unfinished folder written by one of ``commands`` (a run's by run/train, a sweep's by
    sweep), with its config.yaml; an --output-dir naming another folder is refused rather than ignored."""
    if output_dir is not None and Path(output_dir).resolve() != Path(out).resolve():
        raise LightftError(f"--resume {out} continues that folder; --output-dir {output_dir} names another (give one)")
    marker = out / rundir.MARKER
    info = rundir.read_json(marker) if marker.is_file() else None
    if not isinstance(info, dict) or not (out / "config.yaml").is_file():
        raise LightftError(f"cannot resume {out}: not a lightft {commands[0]} folder (no run.json or config.yaml)")
    if info.get("command") not in commands:
        raise LightftError(f"cannot resume {out}: it was written by lightft {info.get('command')}, not "
                           f"{' or '.join(commands)}")
    if info.get("status") == "complete":
        raise LightftError(f"cannot resume {out}: it is already complete (--overwrite runs it again)")


def preflight(cfg: Config) -> Any:
    """Everything that can be checked before an output folder is touched: the model's config (it loads, and
    ``model.max_length`` fits its position embeddings) and the data (read and split; a warning where the
    model's vocabulary reads the training texts poorly). Returns the splits, so they are read once."""
    from lightft.data import load_splits
    from lightft.model import check_model_config

    model_config = check_model_config(cfg.model.name, cfg.model.max_length, cfg.model.revision,
                                      cfg.model.trust_remote_code, cfg.model.config_overrides)
    resolve_model_defaults(cfg, model_config)
    splits = load_splits(cfg.data, cfg.seed)
    if cfg.train.tune_threshold and (len(splits.label_names) != 2 or not splits.validation.texts or
                                     splits.multi_label):
        raise LightftError("train.tune_threshold needs a binary single-label task (two labels) and a validation "
                           "split")
    from lightft.model import load_tokenizer, warn_about_vocabulary

    tokenizer = load_tokenizer(cfg.model.name, cfg.model.revision, cfg.model.trust_remote_code)
    warn_about_vocabulary(splits.train.texts, tokenizer, cfg.model.name)
    decide_truncation(cfg, splits.train.texts, tokenizer)
    return splits


def resolve_model_defaults(cfg: Config, model_config: Any) -> None:
    """The model settings whose default depends on the model, decided in ``cfg`` (so config.yaml records them):
    an empty ``model.max_length`` becomes the model's limit, at most 512 tokens; attention dropout is 0 where
    the model's config has BERT's key for it and ``model.config_overrides`` does not set it (config.py says why).
    ``preflight`` calls it; code that calls ``prepare``/``finetune`` without ``preflight`` must call it first."""
    from lightft.config import check_window_stride
    from lightft.model import default_max_length

    if cfg.model.max_length is None:
        cfg.model.max_length = default_max_length(model_config)
        check_window_stride(cfg.model)
    if hasattr(model_config, "attention_probs_dropout_prob"):
        cfg.model.config_overrides.setdefault("attention_probs_dropout_prob", 0.0)


def decide_truncation(cfg: Config, train_texts: list[str], tokenizer: Any) -> None:
    """``model.truncation: auto`` becomes windows or head for this data (``windows.resolve_truncation``), in
    ``cfg`` itself: the run's config.yaml records the decision, so predict, serve and export read the same."""
    from lightft.windows import AUTO_WINDOWS_UNREAD_SHARE, resolve_truncation, window_reach

    if cfg.model.truncation != "auto":
        return
    m = cfg.model
    cfg.model.truncation, share = resolve_truncation("auto", train_texts, tokenizer, m.max_length,
                                                     window_reach(m.max_length, m.window_stride, m.max_windows))
    log.info("model.truncation auto -> %s: head truncation at %d tokens would leave %.0f%% of the training "
             "split's tokens unread (windows above %.0f%%)", cfg.model.truncation, cfg.model.max_length,
             100 * share, 100 * AUTO_WINDOWS_UNREAD_SHARE)


class PhaseClock:
    """Wall time per phase of one run: summary.json's ``phases`` and the run's closing line (where the time of a
    run goes, per device: bench/README.md). The first run of a process counts its start-up (imports, config)
    from the moment lightft was imported."""

    first_in_process = True

    def __init__(self) -> None:
        import lightft

        self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}
        if PhaseClock.first_in_process:
            self.seconds["start-up"] = round(self.last - lightft.IMPORTED_AT, 2)
            PhaseClock.first_in_process = False

    def lap(self, phase: str, seconds: float | None = None) -> None:
        """``phase`` took the time since the last lap, or ``seconds`` of it (measured inside a step; the next
        lap gets the rest; never more than has passed: a resumed run's training counts earlier processes too)."""
        took = time.perf_counter() - self.last
        took = took if seconds is None else min(seconds, took)
        self.seconds[phase] = round(self.seconds.get(phase, 0.0) + took, 2)
        self.last += took

    def line(self) -> str:
        return ", ".join(f"{name} {sec:.0f} s" for name, sec in self.seconds.items())


def run_experiment(cfg: Config, output_dir: Path | None = None, with_baselines: bool = True,
                   command: str = "run", resume: Path | None = None, overwrite: bool = False) -> Path:
    """Run the whole experiment and return the complete run directory.

    ``resume``: an interrupted run directory of the same config; training continues from its checkpoint.
    Config, model and data are checked before the output folder is touched; a complete run there is replaced
    only with ``overwrite``, and a folder another process is writing is refused."""
    clock = PhaseClock()
    out = Path(resume or output_dir or default_output_dir(cfg))
    if resume is not None:  # the same verb: a run's folder resumed by train would lose its baselines' report
        check_resumable(out, (command,), output_dir)
    if resume is None and rundir.is_main_process():
        rundir.check_output_dir(out, overwrite)  # cheap: a complete run is refused before the data is read
    from lightft.runtime import resolve_device  # imports torch: after the cheap refusal above

    splits = preflight(cfg)  # decides model.truncation auto, as the interrupted run did
    if resume is not None:
        check_same_config(out, cfg)
        check_same_data(out, splits)
        from lightft.train import settle_checkpoint

        settle_checkpoint(out / "checkpoint")  # a kill may have cut a checkpoint swap short
        if not (out / "checkpoint" / "trainer_state.json").is_file():
            raise LightftError(f"cannot resume {out}: no checkpoint was written before it stopped")
    # On an accelerator the TF-IDF baseline starts fitting in its own process as soon as the splits are read
    # (start_tfidf); a run that fails stops it rather than waiting for it at exit.
    tfidf = start_tfidf(cfg, splits, resolve_device()) if with_baselines else None
    try:
        return guarded_run(out, command, lambda: _run(cfg, out, with_baselines, resume is not None, splits, clock,
                                                      tfidf), resume is not None, overwrite)
    finally:
        if tfidf is not None:
            tfidf.cancel()


@dataclass
class Prepared:
    """Splits tokenized once, shared by every model of a run or sweep."""

    splits: Any
    enc: dict[str, Any]  # split name -> windows.Tokenized (model inputs, and the text each belongs to)
    tokenizer: Any
    pad_id: int
    device: Any
    precision: str
    # Head inputs of the frozen pre-trained model for the training split, by pooling, when a baseline has
    # already computed them (the linear probe's mean-pooled embeddings): the probe-initialised head reuses them.
    train_features: dict[str, Any] = field(default_factory=dict)


def prepare(cfg: Config, out: Path, splits: Any = None) -> Prepared:
    from lightft.data import data_fingerprint, load_splits, shown, text_digests
    from lightft.model import load_tokenizer
    from lightft.runtime import resolve_device, resolve_precision, set_threads
    from lightft.windows import tokenize_texts, tokenizing_options

    set_threads(cfg.train.num_threads)
    if splits is None:
        splits = load_splits(cfg.data, cfg.seed)
    tokenizer = load_tokenizer(cfg.model.name, cfg.model.revision, cfg.model.trust_remote_code)
    decide_truncation(cfg, splits.train.texts, tokenizer)  # before config.yaml: it records the decision
    rundir.atomic_write_text(out / "config.yaml", save_config(cfg))
    names = splits.label_names
    rundir.atomic_write_json(out / "labels.json", {"labels": names, "counts": splits.counts(),
                                                   "texts": {n: len(getattr(splits, n)) for n in SPLIT_NAMES},
                                                   "data_fingerprint": data_fingerprint(splits)})
    seen = {name: text_digests(getattr(splits, name).texts) for name in ("train", "validation")}
    rundir.atomic_write_json(out / rundir.SEEN_TEXTS, {"digest": "sha256 of the whitespace-collapsed text, 16 hex",
                                                       **seen})
    log.info("data: %d train / %d validation / %d test, %d classes (%s)", len(splits.train),
             len(splits.validation), len(splits.test), len(names), shown(names))
    from lightft.report import SMALL_TEST_SPLIT

    if 0 < len(splits.test) < SMALL_TEST_SPLIT:  # report.md says the same beside the scores
        log.warning("the test split holds %d texts: one text moves accuracy by %.1f points, and a perfect score's "
                    "bootstrap interval is a single point (data.test_size sets the split's size)", len(splits.test),
                    100 / len(splits.test))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    enc = {
        name: tokenize_texts(split.texts, tokenizer, desc=f"tokenizing {name}", **tokenizing_options(cfg.model))
        for name, split in (("train", splits.train), ("validation", splits.validation), ("test", splits.test))
    }
    if cfg.model.truncation == "windows":
        log.info("long texts as windows: %s", ", ".join(f"{len(t.ids)} windows for {t.texts} {name} texts"
                                                           for name, t in enc.items()))
    device = resolve_device()
    return Prepared(splits, enc, tokenizer, pad_id, device, resolve_precision(cfg.train.precision, device))


def model_kwargs(cfg: Config) -> dict[str, Any]:
    return dict(revision=cfg.model.revision, trust_remote_code=cfg.model.trust_remote_code,
                config_overrides=cfg.model.config_overrides, allow_pickle=cfg.model.allow_pickle,
                pooling=cfg.model.pooling)


def finetune(cfg: Config, prep: Prepared, log_dir: Path | None, checkpoint_dir: Path | None = None,
             resume: bool = False, on_epoch: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
             ) -> tuple[Any, Any, int, int]:
    """Load the model, apply ``cfg.method`` and train; returns (model, TrainResult, trainable, total).
    ``on_epoch``: ``train_model``'s per-epoch callback."""
    from lightft.model import apply_method, count_parameters, head_modules, load_classifier
    from lightft.runtime import set_seed
    from lightft.train import train_model
    from lightft.windows import cut, spread

    splits = prep.splits
    set_seed(cfg.seed)
    model, new_modules = load_classifier(cfg.model.name, splits.label_names, multi_label=splits.multi_label,
                                         **model_kwargs(cfg))
    # Windows: training reads at most train.windows_per_text of each text's windows (evaluation reads all).
    train, rows = spread(prep.enc["train"], cfg.train.windows_per_text)
    probe_start = cfg.train.head_init == "linear_probe" and not resume and \
        start_head_from_probe(cfg, prep, model, train, rows)
    # The head is trained whole and saved with the adapter, new or not: a checkpoint's own head was trained for
    # its task, and the probe start above has replaced its weights anyway.
    whole = sorted(set(new_modules) | set(head_modules(model)))
    model = apply_method(model, cfg.method, cfg.peft, whole)
    trainable, total = count_parameters(model)
    log.info("method %s: %s of %s parameters trainable (%.2f%%); trained whole and saved with it: %s%s",
             cfg.method, f"{trainable:,}", f"{total:,}", 100 * trainable / total, ", ".join(whole) or "none",
             f" (newly initialised: {', '.join(new_modules)})" if new_modules and new_modules != whole else "")
    if not splits.validation.texts:
        log.warning("no validation split: the last epoch is kept (set data.validation_size to select)")
    if rows is not None:
        log.info("training reads %d of the training split's %d windows (train.windows_per_text %d)",
                 len(train.ids), len(prep.enc["train"].ids), cfg.train.windows_per_text)
    train_ids = cut(train.ids, cfg.train.max_length)
    if train_ids is not train.ids:
        log.info("training reads at most %d tokens per input (train.max_length); evaluation reads %d",
                 cfg.train.max_length, cfg.model.max_length)
    val = prep.enc["validation"]
    result = train_model(model, train_ids, train.per_input(splits.train.labels), val.ids,
                         splits.validation.labels, splits.label_names, cfg.train, cfg.seed, prep.pad_id,
                         log_dir=log_dir, checkpoint_dir=checkpoint_dir, resume=resume,
                         max_length=min(cfg.train.max_length or cfg.model.max_length, cfg.model.max_length),
                         inference=inference_options(cfg),
                         validate_start=probe_start, val_owner=val.owner,
                         eval_batch_size=cfg.inference.batch_size, on_epoch=on_epoch)
    return model, result, trainable, total


def start_head_from_probe(cfg: Config, prep: Prepared, model: Any, train: Any = None,
                          rows: Any = None) -> bool:
    """LP-FT: fit a logistic regression on what the frozen model's classifier reads for the training split and
    start the classifier from it (``heads.init_head_from_probe``). False where the head cannot start so.

    ``train`` (rows ``rows`` of the training split's inputs; default all) is what training reads. Where texts
    are windows whose logits are averaged (``model.window_aggregation: mean``), the regression is fitted on
    each text's mean window features instead, over every window: a linear head's mean window logits are that
    mean's logits, so the start *is* the text-level probe (the report's strongest model on long documents,
    UNGD 0.957 vs 0.923 for a start fitted on head windows), and epoch 0's validation scores it."""
    import torch

    from lightft.heads import (
        calibrate_dense,
        head_inputs,
        init_head_from_probe,
        pooling_of,
        probe_activation,
        probe_layer,
        supports_probe_init,
    )
    from lightft.runtime import resolve_eval_batch_size
    from lightft.windows import aggregate

    if not supports_probe_init(model):
        log.info("train.head_init: %s has no linear classifier to start from a probe; it starts random",
                 type(model).__name__)
        return False
    pooling = pooling_of(model)
    layer, activation = probe_layer(model), probe_activation(model)
    every = prep.enc["train"]
    per_text = every.owner is not None and cfg.model.window_aggregation == "mean"
    inputs = every if per_text or train is None else train
    features = prep.train_features.get(pooling) if pooling == "mean" else None  # cached for every input
    if features is not None and not per_text and rows is not None:
        features = features[rows]
    if features is not None and activation is not None:  # the pooled vectors, through the head's activation
        features = activation(torch.from_numpy(features)).numpy()
    if features is None:
        model.to(prep.device)
        dense = getattr(model.classifier, "dense", None) if pooling == "cls" else None  # a [CLS] dense head
        features = head_inputs(model, inputs.ids, prep.pad_id,
                               resolve_eval_batch_size(cfg.inference.batch_size, prep.device), prep.precision,
                               cfg.inference.attention, dense or layer)
        if dense is not None:  # the [CLS] states: dense is set from them, out_proj fitted on what it then reads
            features = calibrate_dense(model, features, activation)
        if pooling == "mean" and inputs is every and activation is None:  # the next model (a tune trial)
            prep.train_features[pooling] = features                      # reuses the frozen model's
    if per_text:
        features, labels = aggregate(features, every.owner, "mean"), list(prep.splits.train.labels)
    else:  # one row per model input: with windows, each window carries its text's label, as in training
        labels = inputs.per_input(prep.splits.train.labels)
    accuracy = init_head_from_probe(model, features, labels, cfg.seed, cfg.train.head_init_temperature, layer)
    log.info("classifier starts from a linear probe on the frozen %s-pooled features%s (train accuracy %.4f)",
             pooling, " (each text's mean over its windows)" if per_text else "", accuracy)
    return True


# The report's and the console's order (report.MODEL_TITLES), whichever model finished first.
_REPORT_RANK = {key: i for i, key in enumerate(("baseline", "zero_shot", "tfidf", "linear_probe", "finetuned"))}


class TestScores:
    """The test split's scores of every model in a run: the only place test labels meet predictions."""

    def __init__(self, cfg: Config, splits: Any, out: Path) -> None:

        from lightft.metrics import as_targets

        self.cfg, self.out, self.names, self.multi_label = cfg, out, splits.label_names, splits.multi_label
        self.texts, self.y = splits.test.texts, as_targets(splits.test.labels, len(self.names))
        self.evaluations: dict[str, dict[str, Any]] = {}
        self.predictions: dict[str, Any] = {}

    def record(self, key: str, probs: Any, trainable: int, total: int | None = None,
               decision: Any = None, note: str | None = None) -> None:
        """Score one model's test probabilities, decided by ``decision`` (default: argmax, or 0.5 per label for
        multi-label), and write ``metrics/<key>.json``."""
        from lightft.inference import Decision
        from lightft.metrics import compute_metrics, score_predictions

        names, y = self.names, self.y
        decision = decision or Decision(multi_label=self.multi_label)
        pred = decision.decide(probs)
        metrics = score_predictions(y, pred, names, probs, self.cfg.evaluation.bootstrap_resamples, self.cfg.seed)
        metrics.update(model=key, trainable_params=trainable, total_params=total)
        if note:
            metrics["note"] = note
        if decision.thresholds is not None:
            metrics["thresholds"] = decision.to_json(names)["thresholds"]
        if decision.multi_label:
            metrics["at_least_one"] = decision.at_least_one
        threshold = decision.threshold
        if threshold is not None:
            argmax_f1 = compute_metrics(y, probs.argmax(axis=1), names)["per_class"][names[1]]["f1"]
            metrics["threshold"] = {"value": threshold, "positive_label": names[1],
                                    "positive_f1": metrics["per_class"][names[1]]["f1"],
                                    "positive_f1_argmax": argmax_f1}
        rundir.atomic_write_json(self.out / "metrics" / f"{key}.json", metrics)
        self.evaluations[key], self.predictions[key] = metrics, pred
        # Reports list models in one order, whichever finished first (TF-IDF can finish during training).
        self.evaluations = dict(sorted(self.evaluations.items(), key=lambda kv: _REPORT_RANK.get(kv[0], 99)))
        log.info("%s on test: accuracy %.4f, macro-F1 %.4f", key, metrics["accuracy"], metrics["macro_f1"])

    def comparisons(self) -> dict[str, Any]:
        """McNemar's exact test and the changed predictions of the fine-tuned model against every other."""
        from lightft.metrics import changed_predictions, mcnemar_exact

        tuned = self.predictions["finetuned"]
        return {key: {**mcnemar_exact(self.y, tuned, self.predictions[key]),
                      "changed": changed_predictions(self.texts, self.y, self.predictions[key], tuned, self.names)}
                for key in self.evaluations if key != "finetuned"}


def _run(cfg: Config, out: Path, with_baselines: bool, resume: bool = False, splits: Any = None,
         clock: PhaseClock | None = None, tfidf: Background | None = None) -> None:
    from lightft import report
    from lightft.card import write_model_card
    from lightft.model import save_model
    from lightft.speed import cast_weights_for

    t0 = time.perf_counter()
    clock = clock or PhaseClock()
    # 1. Data: deterministic stratified splits, tokenized once for every model (``tfidf``: the TF-IDF fit that
    #    run_experiment started on an accelerator).
    prep = prepare(cfg, out, splits)
    scores = TestScores(cfg, prep.splits, out)
    clock.lap("checks and data")  # from run_experiment: config, model and data checks, reading, tokenising

    # 2. Baselines, each on the same test split.
    later: list[Callable[[], None]] = []
    if with_baselines:
        later = _baselines(cfg, prep, scores.record, tfidf)
        clock.lap("baselines")

    # 3. Fine-tune with the chosen method; the best validation epoch is kept.
    model, result, trainable, total = finetune(cfg, prep, log_dir=out, checkpoint_dir=out / "checkpoint",
                                               resume=resume)
    clock.lap("training", result.step_seconds)
    clock.lap("validation", result.validation_seconds)
    clock.lap("model set-up and probe start")  # the rest of fine-tuning: loading, the probe start
    for finish in later:  # baselines that ran beside training: any wait for them counts as baselines
        finish()
    if later:
        clock.lap("baselines")

    # 4. Decision thresholds (binary with train.tune_threshold; multi-label: one per label) are chosen on
    #    validation, never on test.
    cast = cast_weights_for(model, prep.precision, cfg.inference.cast_weights_once, prep.device)
    decision = _tune_decision(cfg, prep, model, cast, out)

    # 5. The one test evaluation of the fine-tuned model, compared with every baseline; then save it.
    t_eval = time.perf_counter()
    scores.record("finetuned", _probabilities(cfg, prep, model, cast, "test", "fine-tuned on test", decision),
                  trainable, total, decision)
    eval_seconds = time.perf_counter() - t_eval
    clock.lap("test evaluation")  # with the thresholds tuned on validation just before
    del cast
    comparisons = scores.comparisons()
    rundir.atomic_write_json(out / "metrics" / "comparisons.json", comparisons)
    if rundir.is_main_process():
        save_model(model, prep.tokenizer, out / "adapter", cfg.model.name)
    training = {"best_epoch": result.best_epoch, "selected_by": result.select_metric, "epochs": result.epochs,
                "steps": result.steps,
                "train_seconds": result.train_seconds, "resumed_seconds": result.resumed_seconds,
                "precision": result.precision, "device": result.device,
                "num_processes": result.num_processes}
    rundir.atomic_write_json(out / "training.json", training)
    clock.lap("save")
    summary = summarise_run(cfg, prep, model, result, trainable, total, scores.evaluations, comparisons,
                            {"test_eval_seconds": round(eval_seconds, 2),
                             # a resumed run's whole: this process and the training done before the interruption
                             "total_seconds": round(time.perf_counter() - t0 + result.resumed_seconds, 2),
                             "phases": clock.seconds})
    rundir.atomic_write_json(out / "environment.json", rundir.environment_record(
        {"device": result.device, "precision": result.precision}))
    rundir.atomic_write_json(out / "summary.json", summary)
    if rundir.is_main_process():
        try:  # replaces PEFT's empty placeholder card; a card is documentation, never a reason to fail a run
            write_model_card(out, out / "adapter")
        except Exception as exc:  # noqa: BLE001
            log.warning("no model card written for %s: %s", out / "adapter", exc)
        report.write_run_reports(out, summary, scores.evaluations, training, comparisons)
        clock.lap("card and report")
        rundir.atomic_write_json(out / "summary.json", summary | {"phases": clock.seconds})
        log.info("wall time by phase: %s", clock.line())
        shutil.rmtree(out / "checkpoint", ignore_errors=True)  # only needed to resume; the adapter is saved


def _probabilities(cfg: Config, prep: Prepared, model: Any, cast: Any, split: str, desc: str,
                   decision: Any = None) -> Any:
    """The fine-tuned model's class probabilities on one split (multi-label: each label's), with the config's
    inference levers; ``decision`` (multi-label: its thresholds) says which reduced-precision logits are close
    enough to a decision to be recomputed in fp32."""
    from lightft.inference import Decision, predict_logits
    from lightft.runtime import resolve_eval_batch_size

    enc = prep.enc[split]
    decision = decision or Decision(multi_label=prep.splits.multi_label)
    logits = predict_logits(model, enc.ids, prep.pad_id, resolve_eval_batch_size(cfg.inference.batch_size, prep.device),
                            prep.precision, desc, cast_model=cast, owner=enc.owner,
                            boundaries=decision.boundaries(len(prep.splits.label_names)), **inference_options(cfg))
    return decision.probabilities(logits)


def multi_label_decision(splits: Any, val_probs: Any = None) -> Any:
    """A multi-label model's Decision: each label's threshold tuned on the validation probabilities ``val_probs``
    (0.5 without them), and ``at_least_one`` where every training text carries a label (the data says a text
    always has one). The fine-tuned model and the baselines that learn from data get the same procedure."""
    from lightft.inference import Decision
    from lightft.metrics import multi_hot, tune_label_thresholds

    cut = None
    if val_probs is not None and len(splits.validation):
        cut = tuple(tune_label_thresholds(multi_hot(splits.validation.labels, len(splits.label_names)), val_probs))
    return Decision(multi_label=True, thresholds=cut, at_least_one=all(map(len, splits.train.labels)))


def _tune_decision(cfg: Config, prep: Prepared, model: Any, cast: Any, out: Path) -> Any:
    """How the fine-tuned model's probabilities become labels, chosen on validation (``decision.json``):
    multi-label, each label's probability threshold that maximises its F1; binary with ``train.tune_threshold``,
    the positive class's; otherwise argmax (no file)."""
    import numpy as np

    from lightft.inference import Decision
    from lightft.metrics import MIN_TUNING_TEXTS, enough_to_tune, tune_threshold

    splits, names = prep.splits, prep.splits.label_names
    if splits.multi_label:
        if not splits.validation.texts:
            log.warning("no validation split: every label's threshold stays 0.5")
        val_probs = _probabilities(cfg, prep, model, cast, "validation", "validation") \
            if splits.validation.texts else None
        decision = multi_label_decision(splits, val_probs)
        log.info("label thresholds tuned on validation: %s%s", ", ".join(
            f"{n} {t:.3f}" for n, t in zip(names, decision.thresholds or [0.5] * len(names), strict=True)),
            "; a text under every threshold gets its most probable label" if decision.at_least_one else "")
    elif cfg.train.tune_threshold:
        y = np.asarray(splits.validation.labels)
        if not enough_to_tune(y):
            positives = int(y.sum())
            log.warning("train.tune_threshold: the validation split has %d '%s' and %d '%s' texts, fewer than %d of "
                        "one of them to tune a threshold on; predictions stay argmax (enlarge "
                        "data.validation_size)", positives, names[1], len(y) - positives, names[0], MIN_TUNING_TEXTS)
            return Decision()
        if y.mean() > 0.5:  # F1 of the majority class: most likely the classes are in the other order
            log.warning("train.tune_threshold tunes '%s' (label id 1), the more frequent class here; to tune the "
                        "rarer one, list it second: data.labels=[%s,%s]", names[1], names[1], names[0])
        val_probs = _probabilities(cfg, prep, model, cast, "validation", "validation")
        decision = Decision(threshold=tune_threshold(y, val_probs[:, 1]))
        log.info("decision threshold for '%s' tuned on validation: %.4f", names[1], decision.threshold)
    else:
        return Decision()
    chosen_on = "validation" if splits.validation.texts else "default (no validation split)"
    rundir.atomic_write_json(out / "decision.json", decision.to_json(names) | {"chosen_on": chosen_on})
    return decision


def summarise_run(cfg: Config, prep: Prepared, model: Any, result: Any, trainable: int, total: int,
                  evaluations: dict[str, Any], comparisons: dict[str, Any], seconds: dict[str, Any]) -> dict[str, Any]:
    """``summary.json``: what was run, on how much data, how long it took, and every model's headline scores."""
    from lightft.card import data_name, hub_id
    from lightft.heads import pooling_of

    splits = prep.splits
    summary = {
        "name": cfg.name,
        "task": splits.task,
        "model": cfg.model.name,
        "method": cfg.method,
        "pooling": pooling_of(model),
        "head_init": cfg.train.head_init,
        "truncation": cfg.model.truncation,
        "labels": splits.label_names,
        "trainable_params": trainable,
        "total_params": total,
        "train_samples": len(splits.train),
        "validation_samples": len(splits.validation),
        "test_samples": len(splits.test),
        "duplicates_dropped": splits.duplicates_dropped,  # data.duplicates: repeated texts dropped before splitting
        "best_epoch": result.best_epoch,
        "selected_by": result.select_metric,  # the validation metric that picked best_epoch
        # train.epochs, or more where train.min_steps raised it, or fewer where a perfect validation score
        # stopped training (the learning-rate schedule was still planned for epochs_planned)
        "epochs_trained": max((e["epoch"] for e in result.epochs), default=0),
        "epochs_planned": result.epochs_planned,
        "batch_size": result.batch_size,  # train.small_batch_size where the training set was small
        "stopped_early": result.stopped_early,
        "train_seconds": round(result.train_seconds, 2),
        **seconds,
        "precision": result.precision,
        "device": result.device,
        "max_length": cfg.model.max_length,
        # for model cards: the Hub id the base model came from (None: a local folder), and the data's name
        "base_model_hub_id": hub_id(cfg.model.name),
        "data_name": data_name(cfg.data.source),
    }
    for key, metrics in evaluations.items():
        summary[key] = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                        "trainable_params": metrics["trainable_params"]}
        if splits.multi_label:  # `accuracy` is subset accuracy
            summary[key].update({k: metrics[k] for k in ("micro_f1", "hamming_loss")})
        if "ci95" in metrics:
            summary[key]["ci95"] = {k: v for k, v in metrics["ci95"].items() if k != "resamples"}
        if key in comparisons:
            summary[key]["mcnemar_p_vs_finetuned"] = comparisons[key]["p_value"]
    return summary


def start_tfidf(cfg: Config, splits: Any, device: Any) -> Background | None:
    """On an accelerator, which trains meanwhile, the TF-IDF baseline's fit started in a process of its own (the
    call returned waits for its result); None on CPU, where it fits inline (the cores are busy) or when
    ``baselines.tfidf`` is off. Started as soon as the splits are read, before tokenising, so its process's
    start-up and the fit overlap with everything up to the end of training (bench/README.md, GPU phases)."""
    from lightft import baselines, linear

    if not cfg.baselines.tfidf or device.type == "cpu":
        return None
    return baselines.in_background(linear.tfidf_classifier, *_tfidf_args(cfg, splits))


def _tfidf_args(cfg: Config, splits: Any) -> tuple[Any, ...]:
    # Multi-label: validation rows first (their thresholds are tuned there), then test; see _baselines.
    nv = len(splits.validation) if splits.multi_label else 0
    return (splits.train.texts, splits.train.labels, splits.validation.texts[:nv] + splits.test.texts,
            len(splits.label_names), cfg.seed)


def _tfidf(cfg: Config, splits: Any, device: Any, scored: Callable[..., None],
           started: Callable[[], Any] | None) -> Callable[[], None] | None:
    """Score the TF-IDF baseline: now on CPU (None returned); on an accelerator, return the call that scores it
    once its fit (``started`` by run_experiment, or begun here) is done, after training."""
    from lightft import linear

    fit = started or start_tfidf(cfg, splits, device)

    def record() -> None:
        try:
            probs, params = fit() if fit is not None else linear.tfidf_classifier(*_tfidf_args(cfg, splits))
        except linear.NoVocabulary as exc:  # texts of numbers or codes: the other models still run
            log.warning("TF-IDF baseline left out: %s", exc)
            return
        scored("tfidf", probs, params, params)

    if fit is None:  # CPU: fitted and scored now
        record()
        return None
    return record


def _baselines(cfg: Config, prep: Prepared, record: Callable[..., None],
               tfidf: Callable[[], Any] | None = None) -> list[Callable[[], None]]:
    """Score the baselines on test; returns a recorder per baseline still running (TF-IDF, on an accelerator:
    ``tfidf``, the fit ``start_tfidf`` began, else begun here)."""
    import numpy as np

    from lightft import baselines, linear
    from lightft.inference import Decision
    from lightft.model import count_parameters, load_classifier
    from lightft.runtime import release_free_memory, resolve_eval_batch_size, set_seed
    from lightft.windows import aggregate

    splits, enc, pad_id, precision, device = prep.splits, prep.enc, prep.pad_id, prep.precision, prep.device
    b, names = cfg.baselines, splits.label_names
    # Multi-label: the baselines that learn from data are scored on validation too, where their thresholds are
    # tuned as the fine-tuned model's are; `nv` rows of validation come before the test rows.
    nv = len(splits.validation) if splits.multi_label else 0

    def scored(key: str, probs: Any, *params: Any, tuned: bool = True, note: str | None = None) -> None:
        # every multi-label model gets the same procedure, at_least_one included, even with no validation split
        decision = multi_label_decision(splits, probs[:nv] if tuned and nv else None) if splits.multi_label else None
        record(key, probs[nv:], *params, decision, note)

    pending = _tfidf(cfg, splits, device, scored, tfidf) if b.tfidf else None
    later = [pending] if pending is not None else []
    if not (b.pretrained or b.zero_shot or b.linear_probe):
        return later
    # One pre-trained model, one pass over the test split: its head's logits are the original experiment's
    # step 1 (the head is seeded, so reproducible) and its pooled token states feed zero-shot and the probe.
    set_seed(cfg.seed)
    classifier, _ = load_classifier(cfg.model.name, names, multi_label=splits.multi_label, **model_kwargs(cfg))
    classifier.to(device)
    total = count_parameters(classifier.base_model)[1]
    batch = resolve_eval_batch_size(cfg.inference.batch_size, device)
    attention = cfg.inference.attention
    test_emb, test_logits = baselines.embed(classifier, enc["test"].ids, pad_id, b.pooling, batch, precision,
                                            "pre-trained model on test" if b.pretrained else "embedding test",
                                            with_logits=True, attention=attention)
    # Long texts as windows: a text's embedding is the mean of its windows' (normalised again), its logits
    # aggregate as the fine-tuned model's do.
    test_emb = baselines.per_text(test_emb, enc["test"].owner)
    test_logits = aggregate(test_logits, enc["test"].owner, cfg.model.window_aggregation)
    if nv:  # validation first, then test (see `scored`)
        val_emb = baselines.embed(classifier.base_model, enc["validation"].ids, pad_id, b.pooling, batch, precision,
                                  "embedding validation", attention=attention)
        test_emb = np.concatenate([baselines.per_text(val_emb, enc["validation"].owner), test_emb])
        test_logits = np.concatenate([np.zeros((nv, test_logits.shape[1]), test_logits.dtype), test_logits])
    if b.pretrained:
        # No fp32 recheck here: an untrained head makes nearly every decision 'close', so the recheck would
        # be a second full fp32 pass for a chance-level number. metrics/baseline.json says so.
        scored("baseline", Decision(multi_label=splits.multi_label).probabilities(test_logits), 0,
               count_parameters(classifier)[1], tuned=False,  # an untrained head: its thresholds stay 0.5
               note=f"scored in {precision} without the fp32 recheck of close decisions")
    if b.zero_shot:
        label_emb = baselines.label_embeddings(classifier.base_model, names, b.label_descriptions, prep.tokenizer,
                                               cfg.model.max_length, pad_id, b.pooling, batch, precision, attention)
    train_emb = None
    if b.linear_probe or (b.zero_shot and splits.multi_label):
        inputs_emb = baselines.embed(classifier.base_model, enc["train"].ids, pad_id, b.pooling, batch, precision,
                                     "embedding train", attention=attention)
        train_emb = baselines.per_text(inputs_emb, enc["train"].owner)
        if b.pooling == "mean":
            prep.train_features["mean"] = inputs_emb  # what a mean-pooled head reads: its probe start reuses it
    if b.zero_shot:
        if splits.multi_label:  # a similarity cut, chosen on the training split, decides each label
            probs = baselines.zero_shot_multilabel(test_emb, label_emb, train_emb, splits.train.labels)
        else:
            probs = baselines.zero_shot(test_emb, label_emb)
        scored("zero_shot", probs, 0, total)
    if b.linear_probe:
        probs, params = linear.linear_probe(train_emb, splits.train.labels, test_emb, len(names), cfg.seed)
        scored("linear_probe", probs, params, total + params)
    del classifier
    release_free_memory()
    return later
