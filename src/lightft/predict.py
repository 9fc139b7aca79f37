"""Inference with a finished run: the model owns prediction; files in, the same format out."""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lightft import rundir
from lightft.config import inference_options, load_run_config
from lightft.errors import DataError, LightftError
from lightft.inference import Decision, Prediction, Predictor, predict_logits, to_predictions
from lightft.readers import check_text, is_null, not_text
from lightft.runtime import Shard, progress_bar
from lightft.tables import Row, TableReader, TableWriter, table_format, write_text_atomically
from lightft.windows import UNREAD_REASON, ReadsAsTrained

log = logging.getLogger("lightft")


class Classifier(ReadsAsTrained):
    """A fine-tuned classifier loaded from a complete run directory (``tokenize`` and ``unread``: its
    ``ReadsAsTrained`` base)."""

    def __init__(self, model: Any, tokenizer: Any, label_names: list[str], max_length: int,
                 truncation: str = "head", precision: str = "auto", batch_size: int = 64,
                 decision: Decision | None = None, inference: dict[str, Any] | None = None,
                 cast_model: Any | None = None, window_stride: int | None = None, max_windows: int = 8,
                 text_column: str = "text") -> None:
        self.model = model
        self.text_column = text_column  # the run's data.text_column: predict -i reads it where the input has it
        self.tokenizer = tokenizer
        self.label_names = label_names
        self.max_length = max_length
        self.truncation = truncation  # head, head_tail or windows (lightft.windows)
        self.window_stride = window_stride
        self.max_windows = max_windows
        self.precision = precision
        self.batch_size = batch_size
        # probabilities -> labels: argmax, a binary threshold (`train.tune_threshold`) or per-label thresholds
        if decision is None:  # as the model scores: a sigmoid per label at 0.5, or argmax
            from lightft.model import is_multi_label

            decision = Decision(multi_label=is_multi_label(model))
        self.decision = decision
        self.inference = inference or {}  # padding / sorting options of predict_logits
        self.cast_model = cast_model  # a bf16 copy of model for the bf16 pass (speed.cast_for_inference)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def from_run(cls, run_dir: str | Path, precision: str | None = None, *, trust_remote_code: bool = False,
                 allow_pickle: bool = False, device: Any = None) -> Classifier:
        """The run's classifier. A run directory is data: its own config never turns on remote code or pickle
        (``model.trust_remote_code``/``model.allow_pickle`` in its config.yaml are ignored here); only the
        caller's ``trust_remote_code``/``allow_pickle`` do (the CLI's ``--trust-remote-code``/``--allow-pickle``).
        ``device``: a torch device (None: CUDA when present, else CPU)."""
        from lightft.model import (
            is_multi_label,
            label_names_of,
            load_saved_model,
            load_tokenizer,
            merged_for_inference,
        )
        from lightft.runtime import resolve_device, resolve_eval_batch_size, resolve_precision
        from lightft.speed import cast_weights_for

        run_dir = Path(run_dir)
        rundir.require_complete(run_dir)
        cfg = load_run_config(run_dir)
        model = load_saved_model(run_dir / "adapter", cfg.model.name, trust_remote_code=trust_remote_code,
                                 allow_pickle=allow_pickle, revision=cfg.model.revision)
        names = label_names_of(model)
        decision = read_decision(run_dir / "decision.json", names, is_multi_label(model))
        if cfg.inference.merge_adapter:
            model = merged_for_inference(model)
        device = device or resolve_device()
        model.to(device)
        tokenizer = load_tokenizer(str(run_dir / "adapter"), trust_remote_code=trust_remote_code)
        precision = precision or cfg.train.precision
        cast = cast_weights_for(model, resolve_precision(precision, device), cfg.inference.cast_weights_once, device)
        return cls(model, tokenizer, names, cfg.model.max_length, cfg.model.truncation, precision,
                   resolve_eval_batch_size(cfg.inference.batch_size, device), decision, inference_options(cfg),
                   cast, cfg.model.window_stride, cfg.model.max_windows, cfg.data.text_column)

    def predict_logits(self, texts: list[str], progress: bool = False, desc: str = "predicting") -> np.ndarray:
        """Logits per text (windows aggregated), with the run's inference levers."""
        enc = self.tokenize(texts, progress)
        return predict_logits(self.model, enc.ids, self.pad_id, self.batch_size, self.precision, desc=desc,
                              progress=progress, cast_model=self.cast_model, owner=enc.owner,
                              boundaries=self.decision.boundaries(len(self.label_names)), **self.inference)

    def predict_proba(self, texts: list[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.label_names)), dtype=np.float32)
        return self.decision.probabilities(self.predict_logits(texts, progress))

    def predict(self, texts: list[str], progress: bool = False) -> list[Prediction]:
        return to_predictions(self.predict_proba(texts, progress), self.label_names, self.decision)


# Warn when a classifier reads less than half of the tokens of the texts it is given (as model.truncation auto
# chooses windows at the same share), estimated on this many of them.
UNREAD_SAMPLE = 256


def warn_if_unread(classifier: Any, texts: list[str], where: str) -> float:
    """Log a warning when ``classifier`` (a run's or an ONNX export's) leaves most of ``texts``' tokens unread:
    beyond ``max_length`` (head or head+tail truncation) or beyond what ``max_windows`` windows reach. Its labels
    then come from the part it reads. Returns the unread share (0.0 for a classifier without a tokenizer)."""
    from lightft.windows import AUTO_WINDOWS_UNREAD_SHARE, unread_share, window_reach

    tokenizer = getattr(classifier, "tokenizer", None)
    if tokenizer is None or not texts:
        return 0.0
    windows = classifier.truncation == "windows"
    reach = window_reach(classifier.max_length, classifier.window_stride, classifier.max_windows) if windows \
        else classifier.max_length
    share = unread_share(texts, tokenizer, reach, reach, sample=UNREAD_SAMPLE)
    if share > AUTO_WINDOWS_UNREAD_SHARE:
        if windows:
            how = (f"at most {classifier.max_windows} windows of {classifier.max_length} tokens; a run trained "
                   "with a larger model.max_windows reads more")
        else:
            how = (f"the first {classifier.max_length} tokens" if classifier.truncation == "head" else
                   f"its first and last tokens, {classifier.max_length} in all") + \
                "; a run trained with model.truncation: windows reads long texts whole"
        log.warning("%s: about %.0f%% of the texts' tokens are beyond what the model reads (%s), so their labels "
                    "come from the part it reads", where, 100 * share, how)
    return share


def read_decision(path: Path, label_names: list[str], multi_label: bool) -> Decision:
    """How a run's probabilities become labels: its ``decision.json`` (a binary threshold or per-label
    thresholds, chosen on validation), else argmax (single-label) or 0.5 per label (multi-label). A damaged
    file, or one of the other kind of task, is one line."""
    if not path.is_file():
        return Decision(multi_label=multi_label)
    try:
        decision = Decision.from_json(rundir.read_json(path), label_names, str(path))
    except ValueError as exc:
        raise rundir.RunDirError(str(exc)) from None
    if decision.threshold is not None and len(label_names) != 2:
        raise rundir.RunDirError(f"{path}: a threshold is for a binary task, and this one has {len(label_names)} "
                                 "labels")
    if decision.multi_label != multi_label:
        raise rundir.RunDirError(f"{path} is for a {decision.task.replace('_', '-')} task, but the model is not")
    return decision


PRED_PREFIX = "pred_"  # prediction columns never shadow the input's own columns (e.g. a true `label`)
MULTI_LABEL_JOIN = "|"  # a multi-label prediction's names in one CSV/TSV field (data.label_separator reads it)


def errors_path(output: Path) -> Path:
    """Where rows that could not be classified go: ``out.csv`` -> ``out.csv.errors.jsonl``."""
    output = Path(output)
    return output.with_name(f"{output.name}.errors.jsonl")


def partial_path(output: Path) -> Path:
    """The folder of finished chunks of an unfinished predict: ``out.csv`` -> ``out.csv.partial``."""
    output = Path(output)
    return output.with_name(f"{output.name}.partial")


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_predict_paths(input_path: Path, output_path: Path, overwrite: bool = False, resume: bool = False) -> None:
    """Refuse, before any work, an output that is the input file or a folder, or one that exists (or an
    interrupted predict's chunks, or an errors file) without ``overwrite`` or ``resume``."""
    inp, out = Path(input_path), Path(output_path)
    if _same_file(inp, out):
        raise DataError(f"--output {out} is the --input file; choose another output (the input is never replaced)")
    if _same_file(inp, errors_path(out)):
        raise DataError(f"--input {inp} is where predict would write the rows it cannot classify; rename it")
    rundir.refuse_inside_run(out, "predictions")
    if out.is_file() and partial_path(out).is_dir() and not (overwrite or resume):  # a killed --overwrite job
        raise LightftError(f"--output {out} is an earlier output, and {partial_path(out)} an interrupted predict "
                           "that was replacing it: continue that one with --resume, or pass --overwrite to start "
                           "over")
    rundir.check_writable_file(out, "--output", overwrite or resume)
    if table_format(inp) != table_format(out, "--output"):
        raise DataError(f"--output {out} must have --input's format ({inp.suffix.lower()}): predict writes the "
                        "input's format")
    partial = partial_path(out)
    if partial.exists() and not partial.is_dir():
        raise LightftError(f"{partial} is a file; predict keeps an unfinished job's chunks there (remove it)")
    if resume and not overwrite and out.exists() and not partial.exists():
        raise LightftError(f"{out} is complete: there is no unfinished predict to resume ({partial.name} is "
                           "absent); pass --overwrite to classify again")
    if overwrite or resume:
        return
    if partial.exists():
        raise LightftError(f"an interrupted predict left {partial_path(out)}; continue it with --resume, or pass "
                           "--overwrite to start over")
    if errors_path(out).exists():
        raise LightftError(f"{errors_path(out)} exists (the rows an earlier predict could not classify); pass "
                           "--overwrite to replace it")


def check_predict_text(text: str, where: str) -> str:
    """``text``, or a one-line DataError when it is not valid Unicode or holds nothing to read: training drops
    empty and whitespace-only texts, so the model has no label for one (serve answers 422 alike)."""
    check_text(text, where)
    if not text.strip():
        raise DataError(f"{where}: the text is empty or whitespace-only; training drops such texts, so there is "
                        "no label to give it" + (" (remove the row)" if " line " in where or " row " in where else ""))
    return text




def text_problem(values: dict[str, Any], column: str) -> str | None:
    """Why a record's ``column`` cannot be classified (None: it can): missing, not a text, empty or not valid
    Unicode. Numbers count as text, as they do in training data."""
    if column not in values:
        return f"no field '{column}'"
    value = values[column]
    if is_null(value):
        return f"field '{column}' is empty ({'null' if value is None else 'NaN'})"
    if not_text(value):
        return f"field '{column}' is not a text ({not_text(value)})"
    try:
        check_predict_text(str(value), "")
    except DataError as exc:
        return str(exc).removeprefix(": ")
    return None


@dataclass
class PredictSummary:
    rows: int                 # rows classified and written to the output (this run and any it resumed)
    skipped: int              # rows written to the errors file instead
    output: Path
    errors: Path | None       # the errors file; None when every row was classified
    resumed: int = 0          # input rows an interrupted predict had already done (``--resume``)


@dataclass
class FileJob:
    """One `lightft predict --input --output` job, streamed: the input is read chunk by chunk; each chunk's
    predictions (and the rows it could not classify) are written as parts under ``OUTPUT.partial/`` with a
    manifest of the settings; the parts are merged in input order when every chunk is done. Killed at any
    moment, the job resumes at the first missing part. Under `accelerate launch`, process i of N does the
    chunks k with k % N == i and the main process merges."""

    classifier: Predictor
    input: Path
    output: Path
    text_column: str = "text"
    id_column: str | None = None      # None: the input's `id` column when it has one, else the row number
    keep_columns: bool = False        # carry every input field, not just the id
    probabilities: bool = False       # add every class probability
    strict: bool = False              # stop at the first bad row instead of writing it to the errors file
    quoting: str = "auto"
    chunk_size: int = 1024
    model_id: str = ""                # the run directory (or ONNX folder), recorded in the manifest
    shard: Shard = field(default_factory=Shard)

    def __post_init__(self) -> None:
        self.input, self.output = Path(self.input), Path(self.output)
        self.unread_checked = False  # warn_if_unread runs on the first chunk with texts
        if self.chunk_size < 1:
            raise LightftError(f"--chunk-size must be at least 1, got {self.chunk_size}")
        self.reader = TableReader(self.input, self.quoting)
        fields = self.reader.fields
        if self.text_column not in fields:
            raise DataError(f"{self.input}: no text column '{self.text_column}'; available columns: "
                            f"{', '.join(map(str, fields))} (use --text-column)")
        if self.id_column is not None and self.id_column not in fields:
            raise DataError(f"{self.input}: no id column '{self.id_column}'; available columns: "
                            f"{', '.join(map(str, fields))}")
        names = self.classifier.label_names
        self.multi_label = self.classifier.decision.multi_label
        # multi-label: the set of labels (CSV/TSV: names joined by MULTI_LABEL_JOIN; JSONL/Parquet: a list)
        joined = [n for n in names if MULTI_LABEL_JOIN in n]
        if self.multi_label and self.reader.format in ("csv", "tsv") and joined:
            raise LightftError(f"label '{joined[0]}' contains '{MULTI_LABEL_JOIN}', which joins a text's labels in a "
                               f"{self.reader.format.upper()} field; predict a JSONL or Parquet file instead "
                               "(labels are written as a list there)")
        self.predicted = [f"{PRED_PREFIX}labels"] if self.multi_label else [f"{PRED_PREFIX}label",
                                                                               f"{PRED_PREFIX}score"]
        if self.probabilities:
            self.predicted += ([f"{PRED_PREFIX}probabilities"] if self.reader.format == "jsonl"
                               else [f"{PRED_PREFIX}prob_{n}" for n in names])
        if self.keep_columns:
            self.carried = list(fields)
        else:
            self.carried = [self.id_column or ("id" if "id" in fields else "row")]
        clash = [c for c in self.predicted if c in self.carried]
        if clash:
            raise DataError(f"{self.input} already has a column '{clash[0]}'; rename it (predictions are written as "
                            f"{PRED_PREFIX}* columns beside the input's own)")
        self.writer = TableWriter(self.reader.format, self.carried + self.predicted, self.quoting,
                                  self._parquet_schema() if self.reader.format == "parquet" else None)
        self.partial = partial_path(self.output)

    def _parquet_schema(self) -> Any:
        import pyarrow as pa

        source = self.reader.parquet_schema
        carried = [source.field(c) if c in source.names else pa.field(c, pa.int64()) for c in self.carried]
        label = pa.list_(pa.string()) if self.multi_label else pa.string()
        predicted = [pa.field(self.predicted[0], label), *[pa.field(c, pa.float64()) for c in self.predicted[1:]]]
        return pa.schema(carried + predicted)

    # ---- the manifest and the parts -----------------------------------------------------------------------
    def manifest(self, rows: int) -> dict[str, Any]:
        stat = self.input.stat()
        return {"input": str(self.input.resolve()), "input_bytes": stat.st_size, "input_mtime_ns": stat.st_mtime_ns,
                "rows": rows, "model": self.model_id, "labels": list(self.classifier.label_names),
                "text_column": self.text_column, "columns": self.carried + self.predicted, "quoting": self.quoting,
                "strict": self.strict, "chunk_size": self.chunk_size}

    def part(self, k: int) -> Path:
        return self.partial / f"part-{k:07d}{self.input.suffix.lower()}"

    def errors_part(self, k: int) -> Path:
        return self.partial / f"part-{k:07d}.errors.jsonl"

    def chunks(self, rows: int) -> int:
        return -(-rows // self.chunk_size)

    def chunk_rows(self, k: int, rows: int) -> int:
        return min(self.chunk_size, rows - k * self.chunk_size)

    # ---- the flow -----------------------------------------------------------------------------------------
    def run(self, resume: bool = False, overwrite: bool = False, progress: bool = True) -> PredictSummary:
        """Classify every row; returns the summary (the main process's counts the whole output; the others
        report only that they are done, since the main process is removing the parts they would count). A
        second predict writing the same output at the same time is refused with one line."""
        if self.shard.index != 0:
            return self._run(resume, overwrite, progress)
        self.output.parent.mkdir(parents=True, exist_ok=True)  # as `run -o` and `export` make theirs
        lock = self.output.with_name(f".{self.output.name}.lock")
        with rundir.file_lock(lock, f"{self.output} is being written by another lightft predict"):
            return self._run(resume, overwrite, progress)

    def _run(self, resume: bool, overwrite: bool, progress: bool) -> PredictSummary:
        rows = self.count_rows()
        self.check_resume(rows, resume, overwrite)  # on every process: one fails, all fail, none waits
        self.shard.wait()  # every process has checked the paths before the main process changes any
        if self.shard.index == 0:
            self.start(rows, resume, overwrite)
        self.shard.wait()
        done = [self.part(k).exists() for k in range(self.chunks(rows))]
        self.shard.wait()  # every process has seen the same finished chunks before any writes a new one
        resumed = sum(self.chunk_rows(k, rows) for k, d in enumerate(done) if d)
        self.classify_chunks(rows, done, progress)
        self.shard.wait()
        if self.shard.index != 0:
            return PredictSummary(rows, 0, self.output, None, resumed)
        return self.finish(rows, resumed)

    def count_rows(self) -> int:
        """The number of input rows; with ``strict``, also the first bad row's one-line error, before any work."""
        if self.strict:
            rows, pending = 0, []
            for row in self.reader.rows():
                reason = row.error or self.problem(row)
                if reason:
                    self.check_read(pending)  # an unread text before this row is the first bad one
                    raise DataError(f"{row.where}: {reason}")
                rows += 1
                pending.append(row)
                if len(pending) == self.chunk_size:
                    self.check_read(pending)
                    pending = []
            self.check_read(pending)
        else:
            rows = self.reader.count()
        if not rows:
            raise DataError(f"{self.input}: the file holds no rows")
        return rows

    def check_read(self, rows: list[Row]) -> None:
        """--strict: the first of ``rows`` whose text gives the model no tokens is a one-line error."""
        unread = self.classifier.unread([str(r.values[self.text_column]) for r in rows]) if rows else []
        if unread:
            raise DataError(f"{rows[unread[0]].where}: the text {UNREAD_REASON}")

    def problem(self, row: Row) -> str | None:
        """Why ``row`` gets no prediction (None: it gets one)."""
        reason = text_problem(row.values, self.text_column)
        if reason is None and self.keep_columns:
            clash = next((c for c in self.predicted if c in row.values), None)
            if clash:
                reason = f"field '{clash}' would be replaced by the prediction (rename it)"
        return reason

    def check_resume(self, rows: int, resume: bool, overwrite: bool) -> None:
        """Read-only: refuse to resume chunks written by another job (input, model or settings differ)."""
        marker = self.partial / "manifest.json"
        if not resume or overwrite or not marker.is_file():
            return
        manifest, earlier = self.manifest(rows), rundir.read_json(marker)
        changed = next((k for k in manifest if earlier.get(k) != manifest[k]), None) \
            if isinstance(earlier, dict) else "manifest"
        if changed:
            raise LightftError(f"{self.partial} belongs to another predict ({changed} differs: the input, the "
                               "model or the settings changed); rerun that command, or pass --overwrite")

    def start(self, rows: int, resume: bool, overwrite: bool) -> None:
        """A fresh OUTPUT.partial/ with its manifest, or (``resume``) the existing one, if it was started by
        the same job (``overwrite``: start afresh whatever it holds)."""
        marker = self.partial / "manifest.json"
        shutil.rmtree(self.trash, ignore_errors=True)  # a removal that a kill cut short
        if resume and not overwrite and marker.is_file():
            self.check_resume(rows, resume, overwrite)
            return
        if self.partial.exists() and not (resume or overwrite):
            raise LightftError(f"an interrupted predict left {self.partial}; continue it with --resume, or pass "
                               "--overwrite to start over")
        if self.partial.is_dir():
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True)
        write_text_atomically(marker, json.dumps(self.manifest(rows), indent=2) + "\n")  # ASCII: paths may not be UTF-8

    @property
    def trash(self) -> Path:
        return self.partial.with_name(f".{self.partial.name}.removing")

    def classify_chunks(self, rows: int, done: list[bool], progress: bool) -> None:
        """Classify this process's share of the chunks that have no part yet (the unfinished chunks dealt
        round-robin, so a resumed job is balanced too), writing each chunk's part as it ends."""
        mine = [k for k, d in enumerate(done) if not d][self.shard.index::self.shard.count]
        todo = set(mine)
        seen = 0
        with progress_bar(total=sum(self.chunk_rows(k, rows) for k in mine), unit="rows", desc="predicting",
                          disable=not progress or self.shard.index != 0, dynamic_ncols=True) as bar:
            for k, group in itertools.groupby(self.reader.rows(), key=lambda r: (r.number - 1) // self.chunk_size):
                if k in todo:
                    chunk = list(group)
                    self.write_chunk(k, chunk)
                    bar.update(len(chunk))
                    seen = k * self.chunk_size + len(chunk)
                else:
                    seen = k * self.chunk_size + sum(1 for _ in group)
        if seen != rows:
            raise DataError(f"{self.input} changed while it was read ({seen} rows, {rows} counted); rerun")

    def write_chunk(self, k: int, chunk: list[Row]) -> None:
        good, bad = [], []
        for row in chunk:
            reason = row.error or self.problem(row)
            if reason:
                if self.strict:  # the file changed since it was checked
                    raise DataError(f"{row.where}: {reason}")
                bad.append({"row": row.number, "where": row.where, "reason": reason})
            else:
                good.append(row)
        texts = [str(r.values[self.text_column]) for r in good]
        unread = self.classifier.unread(texts) if texts else []
        if unread:  # e.g. only zero-width characters: no label to give (serve answers 422 alike)
            if self.strict:
                raise DataError(f"{good[unread[0]].where}: the text {UNREAD_REASON}")
            bad += [{"row": good[i].number, "where": good[i].where, "reason": f"the text {UNREAD_REASON}"}
                    for i in unread]
            bad.sort(key=lambda b: b["row"])
            good = [row for i, row in enumerate(good) if i not in set(unread)]
            texts = [str(r.values[self.text_column]) for r in good]
        if not self.unread_checked and self.shard.index == 0:  # once, on the first chunk this job classifies
            warn_if_unread(self.classifier, texts, str(self.input))
            self.unread_checked = bool(texts)
        predictions = self.classifier.predict(texts) if good else []
        records = [self.record(row, pred) for row, pred in zip(good, predictions, strict=True)]
        # The errors part first: the data part's existence is what marks the chunk done. ASCII JSON: a path
        # that is not valid UTF-8 stays writable.
        write_text_atomically(self.errors_part(k), "".join(json.dumps(b) + "\n" for b in bad))
        self.writer.write_part(self.part(k), records)

    def record(self, row: Row, pred: Prediction) -> dict[str, Any]:
        out = dict(row.values) if self.keep_columns else \
            {self.carried[0]: row.number if self.carried[0] == "row" and "row" not in row.values
             else row.values.get(self.carried[0])}
        csv_like = self.reader.format in ("csv", "tsv")
        if self.multi_label:
            out[self.predicted[0]] = MULTI_LABEL_JOIN.join(pred.labels or []) if csv_like else pred.labels
        else:
            out[self.predicted[0]] = pred.label
            out[self.predicted[1]] = f"{pred.score:.6f}" if csv_like else pred.score
        first = 1 if self.multi_label else 2
        if self.probabilities:
            if self.reader.format == "jsonl":
                out[self.predicted[first]] = pred.probabilities
            else:
                for column, name in zip(self.predicted[first:], self.classifier.label_names, strict=True):
                    p = pred.probabilities[name]
                    out[column] = f"{p:.6f}" if csv_like else p
        return out

    def finish(self, rows: int, resumed: int) -> PredictSummary:
        """Merge the parts into the output and the errors file, then remove OUTPUT.partial/ (renamed first, so
        a kill during the removal never leaves a partial folder that looks resumable)."""
        n = self.chunks(rows)
        missing = [k for k in range(n) if not self.part(k).exists()]
        if missing:
            raise LightftError(f"{self.partial}: chunk {missing[0]} was not written (a process stopped early); "
                               "rerun with --resume")
        error_parts = [p for p in (self.errors_part(k) for k in range(n)) if p.is_file() and p.stat().st_size]
        skipped = 0
        for part in error_parts:
            with part.open("rb") as fh:
                skipped += sum(1 for _ in fh)
        self.writer.merge([self.part(k) for k in range(n)], self.output, scratch=self.partial)
        errors = errors_path(self.output)
        if error_parts:
            TableWriter("jsonl", []).merge(error_parts, errors, scratch=self.partial)
        else:
            errors.unlink(missing_ok=True)  # a stale one from the output this run replaced
        shutil.rmtree(self.trash, ignore_errors=True)
        os.replace(self.partial, self.trash)
        shutil.rmtree(self.trash, ignore_errors=True)
        return PredictSummary(rows - skipped, skipped, self.output, errors if skipped else None, resumed)


def predict_file(classifier: Predictor, input_path: Path, output_path: Path, text_column: str = "text",
                 overwrite: bool = False, quoting: str = "auto", *, resume: bool = False, progress: bool = True,
                 **options: Any) -> PredictSummary:
    """Classify every row of ``input_path`` into ``output_path`` (same format): the id column (or row number),
    ``pred_label`` and ``pred_score`` (multi-label: ``pred_labels``, the set) and, with ``probabilities=True``,
    ``pred_prob_<label>`` (JSONL: ``pred_probabilities``); ``keep_columns=True`` carries every input field. Rows
    that cannot be classified go to ``errors_path(output_path)`` unless ``strict=True``. ``options`` are
    ``FileJob``'s fields."""
    check_predict_paths(input_path, output_path, overwrite, resume)
    job = FileJob(classifier, Path(input_path), Path(output_path), text_column, quoting=quoting, **options)
    return job.run(resume=resume, overwrite=overwrite, progress=progress)
