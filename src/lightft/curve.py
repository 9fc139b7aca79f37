"""`lightft curve`: how many labelled examples does the task need? A learning curve over label budgets.

The data are read and split once (the config's seed): every budget and seed is scored on the same test split
and selects its epoch on the same validation split. For each budget (labelled examples per class; ``all`` is
the whole training split) and each seed, a stratified subset of the training split is drawn, and the
fine-tuned model and the baselines that learn from labels (TF-IDF, the linear probe) are trained on it;
zero-shot, which needs no labels, is scored once. The splits are tokenised once and the frozen model's
embeddings computed once, then sliced per subset (the probe, and the fine-tuned head's probe start, reuse
them), so the curve costs little more than its training runs.

Output: curve.csv (one row per budget, seed and model), curve.json, curve.md/curve.html (mean and 95%
interval per budget and model), curve.png (accuracy vs labelled examples per class, log x).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import logging
import math
import random
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from lightft import rundir
from lightft.config import Config
from lightft.errors import LightftError

log = logging.getLogger("lightft")

DEFAULT_BUDGETS = "8,16,32,64,128,all"
LEARNERS = ("finetuned", "linear_probe", "tfidf")  # the models trained on each subset


def parse_budgets(text: str) -> list[int | None]:
    """``"8,16,all"`` -> [8, 16, None] (None: the whole training split), sorted, or one line."""

    out: list[int | None] = []
    for item in (s.strip().lower() for s in text.split(",") if s.strip()):
        if item == "all":
            out.append(None)
        elif item.isdigit() and int(item) > 0:
            out.append(int(item))
        else:
            raise LightftError(f"--budgets: '{item}' is neither a positive number of examples per class nor 'all'")
    if not out:
        raise LightftError("--budgets is empty")
    return sorted(set(out), key=lambda b: math.inf if b is None else b)


def stratified_subset(labels: list[int], per_class: int | None, seed: int) -> list[int]:
    """Indices of at most ``per_class`` examples of each class (all of a smaller class), drawn with ``seed``."""
    if per_class is None:
        return list(range(len(labels)))
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    chosen = [i for members in by_class.values() for i in rng.sample(members, min(per_class, len(members)))]
    return sorted(chosen)


def subset_tokenized(tok: Any, idx: list[int]) -> tuple[Any, np.ndarray]:
    """The model inputs of texts ``idx`` (windows keep their order; owners renumbered) and their rows in ``tok``."""
    from lightft.windows import Tokenized

    if tok.owner is None:
        rows = np.asarray(idx, dtype=np.int64)
        return Tokenized([tok.ids[i] for i in idx]), rows
    position = {text: k for k, text in enumerate(idx)}
    rows = np.asarray([r for r, o in enumerate(tok.owner) if int(o) in position], dtype=np.int64)
    return Tokenized([tok.ids[r] for r in rows], np.asarray([position[int(tok.owner[r])] for r in rows])), rows


@dataclasses.dataclass
class Frozen:
    """The frozen pre-trained model's embeddings, computed once for the whole curve."""

    train_inputs: np.ndarray  # per training input (a window, or a text): what a mean-pooled head reads
    train_texts: np.ndarray   # per training text (windows averaged): what the probe reads
    test_texts: np.ndarray
    zero_shot: np.ndarray | None  # test probabilities


def frozen_features(cfg: Config, prep: Any) -> Frozen:
    from lightft import baselines
    from lightft.experiment import model_kwargs
    from lightft.model import load_classifier
    from lightft.runtime import release_free_memory, resolve_eval_batch_size, set_seed

    set_seed(cfg.seed)
    classifier, _ = load_classifier(cfg.model.name, prep.splits.label_names, **model_kwargs(cfg))
    classifier.to(prep.device)
    encoder, batch, pooling = classifier.base_model, resolve_eval_batch_size(cfg.inference.batch_size,
                                                                               prep.device), cfg.baselines.pooling
    args = (prep.pad_id, pooling, batch, prep.precision)
    train = baselines.embed(encoder, prep.enc["train"].ids, *args, "embedding train", attention=cfg.inference.attention)
    test = baselines.embed(encoder, prep.enc["test"].ids, *args, "embedding test", attention=cfg.inference.attention)
    test = baselines.per_text(test, prep.enc["test"].owner)
    zero = None
    if cfg.baselines.zero_shot:
        zero = baselines.zero_shot(test, baselines.label_embeddings(
            encoder, prep.splits.label_names, cfg.baselines.label_descriptions, prep.tokenizer,
            cfg.model.max_length, *args, attention=cfg.inference.attention))
    del classifier, encoder
    release_free_memory()
    return Frozen(train, baselines.per_text(train, prep.enc["train"].owner), test, zero)


def subset_prepared(prep: Any, idx: list[int], frozen: Frozen, pooling: str) -> Any:
    """``prep`` with the training split cut to texts ``idx`` (validation and test as they are)."""
    from lightft.data import Split

    train = prep.splits.train
    tok, rows = subset_tokenized(prep.enc["train"], idx)
    splits = dataclasses.replace(prep.splits, train=Split([train.texts[i] for i in idx],
                                                          [train.labels[i] for i in idx]))
    features = {"mean": frozen.train_inputs[rows]} if pooling == "mean" else {}
    return dataclasses.replace(prep, splits=splits, enc={**prep.enc, "train": tok}, train_features=features)


def finished_subsets(out: Path) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """The rows of each (budget, seed) an unfinished curve in ``out`` completed (its fine-tuned model is the
    subset's last row), by budget ('all' or the number, as text) and seed: what --resume keeps. An unreadable
    curve.json keeps nothing (a warning says so)."""
    path = out / "curve.json"
    if not path.is_file():
        return {}
    try:
        rows = [r for r in rundir.read_json(path)["rows"] if _is_row(r)]
    except (LightftError, TypeError, KeyError) as exc:
        log.warning("%s cannot be read (%s): none of its results can be kept", path, exc)
        return {}
    complete = {(str(r["budget"]), r["seed"]) for r in rows if r["model"] == "finetuned"}
    kept: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        if (str(r["budget"]), r["seed"]) in complete:
            kept.setdefault((str(r["budget"]), r["seed"]), []).append(r)
    return kept


def _is_row(r: Any) -> bool:
    """A row as ``_score`` writes it (curve.csv, the summary and the plot read every one of these fields)."""
    return isinstance(r, dict) and isinstance(r.get("seed"), int) and isinstance(r.get("model"), str) and \
        (r.get("budget") == "all" or isinstance(r.get("budget"), int)) and isinstance(r.get("train_texts"), int) \
        and all(isinstance(r.get(k), float) for k in ("accuracy", "macro_f1"))


def run_curve(cfg: Config, budgets: list[int | None], seeds: int, output_dir: Path | None = None,
              overwrite: bool = False, resume: Path | None = None) -> Path:
    """Train and score at each budget and seed; ``resume``: an interrupted curve of this config, whose finished
    (budget, seed) subsets are kept."""
    from lightft.errors import ConfigError
    from lightft.experiment import check_same_config, check_same_data, guarded_run, preflight, study_output

    if seeds < 1:
        raise LightftError(f"--seeds must be at least 1, got {seeds}")
    out = study_output(cfg, "curve", output_dir, resume, overwrite, lambda o: len(finished_subsets(o)))
    splits = preflight(cfg)
    done: dict[tuple[str, int], list[dict[str, Any]]] = {}
    if resume is not None:
        check_same_config(out, cfg)
        check_same_data(out, splits)
        done = finished_subsets(out)
        log.info("resuming %s: %d budget/seed subset(s) kept", out, len(done))
    if splits.multi_label:
        raise LightftError("lightft curve handles single-label tasks only (its budgets are examples per class); "
                           "this data is multi-label (use lightft run or lightft tune)")
    if not splits.validation.texts:
        raise ConfigError("lightft curve selects each model's epoch on the validation split: set "
                          "data.validation_size above 0")
    budgets = _within_the_data(budgets, splits)
    return guarded_run(out, "curve", lambda: _curve(cfg, budgets, seeds, out, splits, done), resume is not None,
                       overwrite)


def _within_the_data(budgets: list[int | None], splits: Any) -> list[int | None]:
    """A budget at least as large as every class's training count trains on the whole split: it is 'all',
    not a smaller budget the curve could report as enough (warned, and merged into 'all')."""
    largest = max(Counter(splits.train.labels).values())
    over = [b for b in budgets if b is not None and b >= largest]
    if over:
        log.warning("--budgets %s: every class has at most %d training texts, so %s the whole training split "
                    "('all')", ",".join(map(str, over)), largest, "that is" if len(over) == 1 else "those are")
    return list(dict.fromkeys(None if b is not None and b >= largest else b for b in budgets))


def _curve(cfg: Config, budgets: list[int | None], seeds: int, out: Path, splits: Any,
           done: dict[tuple[str, int], list[dict[str, Any]]] | None = None) -> None:
    from lightft.experiment import prepare

    prep = prepare(cfg, out, splits)
    frozen = frozen_features(cfg, prep)
    y_test = np.asarray(prep.splits.test.labels)
    rows: list[dict[str, Any]] = []
    if frozen.zero_shot is not None:
        rows.append(_score("zero_shot", 0, cfg.seed, 0, frozen.zero_shot, y_test, prep.splits.label_names))
    for budget in budgets:
        for s in range(seeds):
            kept = (done or {}).get(("all" if budget is None else str(budget), cfg.seed + s))
            rows += kept or _one_subset(cfg, prep, frozen, budget, s)  # kept: finished before an interruption
            _write(cfg, rows, budgets, out, prep, final=False)
    _write(cfg, rows, budgets, out, prep, final=True)


def _one_subset(cfg: Config, prep: Any, frozen: Frozen, budget: int | None, s: int) -> list[dict[str, Any]]:
    from lightft import linear
    from lightft.config import inference_options
    from lightft.experiment import finetune
    from lightft.inference import predict_logits, softmax
    from lightft.runtime import resolve_eval_batch_size

    seed = cfg.seed + s
    idx = stratified_subset(prep.splits.train.labels, budget, seed)
    sub = subset_prepared(prep, idx, frozen, cfg.baselines.pooling)
    names, y_test, n = prep.splits.label_names, np.asarray(prep.splits.test.labels), len(idx)
    log.info("budget %s per class, seed %d: %d training texts", "all" if budget is None else budget, seed, n)
    labels = sub.splits.train.labels
    out = []
    if cfg.baselines.tfidf:
        try:
            probs, _ = linear.tfidf_classifier(sub.splits.train.texts, labels, prep.splits.test.texts, len(names),
                                               seed)
            out.append(_score("tfidf", budget, seed, n, probs, y_test, names))
        except linear.NoVocabulary as exc:  # a few short texts: no TF-IDF point at this budget and seed
            log.warning("TF-IDF left out at %d training texts (seed %d): %s", n, seed, exc)
    if cfg.baselines.linear_probe:
        probs, _ = linear.linear_probe(frozen.train_texts[idx], labels, frozen.test_texts, len(names), seed)
        out.append(_score("linear_probe", budget, seed, n, probs, y_test, names))
    scfg = copy.deepcopy(cfg)
    scfg.seed = seed
    model, result, _, _ = finetune(scfg, sub, log_dir=None)
    logits = predict_logits(model, prep.enc["test"].ids, prep.pad_id,
                            resolve_eval_batch_size(cfg.inference.batch_size, prep.device), prep.precision,
                            owner=prep.enc["test"].owner, desc="fine-tuned on test", **inference_options(cfg))
    scores = _score("finetuned", budget, seed, n, softmax(logits), y_test, names)
    out.append({**scores, "best_epoch": result.best_epoch})
    del model
    return out


def _score(model: str, budget: int | None, seed: int, n: int, probs: np.ndarray, y: np.ndarray,
           names: list[str]) -> dict[str, Any]:
    from lightft.metrics import compute_metrics

    m = compute_metrics(y, probs.argmax(axis=1), names)
    return {"budget": "all" if budget is None else budget, "seed": seed, "model": model, "train_texts": n,
            "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and 95% interval (Student's t over seeds) per budget and model."""
    from scipy import stats

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((str(r["budget"]), r["model"]), []).append(r)
    out = []
    for (budget, model), members in groups.items():
        entry: dict[str, Any] = {"budget": budget, "model": model, "seeds": len(members),
                                 "train_texts": float(np.mean([m["train_texts"] for m in members]))}
        for key in ("accuracy", "macro_f1"):
            values = np.asarray([m[key] for m in members], dtype=float)
            half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))) \
                if len(values) > 1 else 0.0
            entry[key] = float(values.mean())
            entry[f"{key}_ci95"] = [max(entry[key] - half, 0.0), min(entry[key] + half, 1.0)]
        out.append(entry)
    return out


def enough_labels(summary: list[dict[str, Any]], tolerance: float = 0.01) -> str | None:
    """The smallest budget at which the fine-tuned model's mean accuracy is within ``tolerance`` of its
    full-data mean (None when no budget is, or there is no ``all``)."""
    tuned = {e["budget"]: e["accuracy"] for e in summary if e["model"] == "finetuned"}
    if "all" not in tuned or len(tuned) == 1:  # no smaller budget was run
        return None
    close = [b for b, acc in tuned.items() if b != "all" and acc >= tuned["all"] - tolerance]
    return str(min(close, key=int)) if close else "all"


def _write(cfg: Config, rows: list[dict[str, Any]], budgets: list[int | None], out: Path, prep: Any,
           final: bool) -> None:
    buf = io.StringIO()
    fields = ["budget", "seed", "model", "train_texts", "accuracy", "macro_f1", "best_epoch"]
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    rundir.atomic_write_text(out / "curve.csv", buf.getvalue())
    summary = summarise(rows)
    enough = enough_labels(summary)
    rundir.atomic_write_json(out / "curve.json", {
        "model": cfg.model.name, "budgets": ["all" if b is None else b for b in budgets], "rows": rows,
        "summary": summary, "test_texts": len(prep.splits.test), "validation_texts": len(prep.splits.validation),
        "train_texts": len(prep.splits.train), "within_1_point_of_all": enough})
    if final:
        _write_page(cfg, summary, enough, out, prep)


def _write_page(cfg: Config, summary: list[dict[str, Any]], enough: str | None, out: Path, prep: Any) -> None:
    from lightft import plots, report
    from lightft.report import md_text

    order = {m: i for i, m in enumerate(("finetuned", "linear_probe", "tfidf", "zero_shot"))}
    per_class = len(prep.splits.train) / max(len(prep.splits.label_names), 1)
    lines = [f"# lightft curve: {md_text(cfg.name)}", "",
             f"{md_text(cfg.model.name)}; every model scored on the same {len(prep.splits.test)} test texts; "
             f"epochs selected on the same {len(prep.splits.validation)} validation texts. Budget: labelled "
             f"training examples per class (all: {len(prep.splits.train)} texts, ~{per_class:.0f} per class). "
             + ("Mean over seeds [95% interval, Student's t]." if any(e["seeds"] > 1 for e in summary)
              else "One seed: no intervals."), ""]
    if enough == "all":
        lines += ["No smaller budget brings the fine-tuned model within 1 point of its full-data accuracy.", ""]
    elif enough:
        lines += [f"The fine-tuned model is within 1 point of its full-data accuracy from **{enough}** labelled "
                  "examples per class on.", ""]
    lines += ["| budget | model | seeds | accuracy | macro-F1 |", "|---|---|---|---|---|"]
    for e in sorted(summary, key=lambda e: (math.inf if e["budget"] == "all" else float(e["budget"]),
                                            order.get(e["model"], 9))):
        acc, f1 = e["accuracy_ci95"], e["macro_f1_ci95"]
        if e["seeds"] > 1:
            lines.append(f"| {e['budget']} | {e['model']} | {e['seeds']} | {e['accuracy']:.4f} [{acc[0]:.3f}, "
                         f"{acc[1]:.3f}] | {e['macro_f1']:.4f} [{f1[0]:.3f}, {f1[1]:.3f}] |")
        else:  # one seed has no spread to make an interval from
            lines.append(f"| {e['budget']} | {e['model']} | 1 | {e['accuracy']:.4f} | {e['macro_f1']:.4f} |")
    lines += ["", "![accuracy vs labelled examples per class](curve.png)", ""]
    md = "\n".join(lines)
    plots.learning_curve(summary, out / "curve.png", per_class)
    rundir.atomic_write_text(out / "curve.md", md)
    rundir.atomic_write_text(out / "curve.html", report.markdown_to_html(md, out, "lightft curve"))
