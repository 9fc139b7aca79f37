"""Inference with a finished run: the model owns prediction; files in, the same format out."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from lightft import rundir
from lightft.config import inference_options, load_run_config
from lightft.data import check_text, read_jsonl
from lightft.errors import DataError
from lightft.inference import Prediction, Predictor, predict_logits, softmax, to_predictions
from lightft.windows import Tokenized, tokenize_texts


class Classifier:
    """A fine-tuned classifier loaded from a complete run directory."""

    def __init__(self, model: Any, tokenizer: Any, label_names: list[str], max_length: int,
                 truncation: str = "head", precision: str = "auto", batch_size: int = 64,
                 threshold: float | None = None, inference: dict[str, Any] | None = None,
                 cast_model: Any | None = None, window_stride: int | None = None, max_windows: int = 8) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.label_names = label_names
        self.max_length = max_length
        self.truncation = truncation  # head, head_tail or windows (lightft.windows)
        self.window_stride = window_stride
        self.max_windows = max_windows
        self.precision = precision
        self.batch_size = batch_size
        self.threshold = threshold  # binary tasks: tuned on validation by `train.tune_threshold`
        self.inference = inference or {}  # padding / sorting options of predict_logits
        self.cast_model = cast_model  # a bf16 copy of model for the bf16 pass (speed.cast_for_inference)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def from_run(cls, run_dir: str | Path, precision: str | None = None, *, trust_remote_code: bool = False,
                 allow_pickle: bool = False) -> Classifier:
        """The run's classifier. A run directory is data: its own config never turns on remote code or pickle
        (``model.trust_remote_code``/``model.allow_pickle`` in its config.yaml are ignored here); only the
        caller's ``trust_remote_code``/``allow_pickle`` do (the CLI's ``--trust-remote-code``/``--allow-pickle``).
        """
        from lightft.model import label_names_of, load_saved_model, load_tokenizer, merged_for_inference
        from lightft.runtime import resolve_device, resolve_eval_batch_size, resolve_precision
        from lightft.speed import cast_for_inference

        run_dir = Path(run_dir)
        rundir.require_complete(run_dir)
        cfg = load_run_config(run_dir)
        model = load_saved_model(run_dir / "adapter", cfg.model.name, trust_remote_code=trust_remote_code,
                                 allow_pickle=allow_pickle, revision=cfg.model.revision)
        names = label_names_of(model)
        if cfg.inference.merge_adapter:
            model = merged_for_inference(model)
        device = resolve_device()
        model.to(device)
        tokenizer = load_tokenizer(str(run_dir / "adapter"), trust_remote_code=trust_remote_code)
        decision = run_dir / "decision.json"
        threshold = read_threshold(decision)
        precision = precision or cfg.train.precision
        cast = cast_for_inference(model, resolve_precision(precision, device)) if cfg.inference.cast_weights_once \
            else None
        return cls(model, tokenizer, names, cfg.model.max_length, cfg.model.truncation, precision,
                   resolve_eval_batch_size(cfg.inference.batch_size, device), threshold, inference_options(cfg),
                   cast, cfg.model.window_stride, cfg.model.max_windows)

    def tokenize(self, texts: list[str], progress: bool = False) -> Tokenized:
        """Model inputs for ``texts``, as the run was trained (one per text, or windows of long texts)."""
        return tokenize_texts(texts, self.tokenizer, self.max_length, self.truncation, self.window_stride,
                              self.max_windows, progress=progress)

    def predict_logits(self, texts: list[str], progress: bool = False, desc: str = "predicting") -> np.ndarray:
        """Logits per text (windows aggregated), with the run's inference levers."""
        enc = self.tokenize(texts, progress)
        return predict_logits(self.model, enc.ids, self.pad_id, self.batch_size, self.precision, desc=desc,
                              progress=progress, cast_model=self.cast_model, owner=enc.owner, **self.inference)

    def predict_proba(self, texts: list[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.label_names)), dtype=np.float32)
        return softmax(self.predict_logits(texts, progress))

    def predict(self, texts: list[str], progress: bool = False) -> list[Prediction]:
        return to_predictions(self.predict_proba(texts, progress), self.label_names, self.threshold)


def read_threshold(decision: Path) -> float | None:
    """A binary run's tuned threshold from ``decision.json`` (None when the run has none); damaged: one line."""
    if not decision.is_file():
        return None
    value = rundir.read_json(decision)
    threshold = value.get("threshold") if isinstance(value, dict) else None
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 <= threshold <= 1:
        raise rundir.RunDirError(f"{decision} holds no threshold between 0 and 1")
    return float(threshold)


PRED_PREFIX = "pred_"  # prediction columns never shadow the input's own columns (e.g. a true `label`)


def check_predict_paths(input_path: Path, output_path: Path, overwrite: bool = False) -> None:
    """Refuse, before any work, an output that is the input file or a folder, or one that exists without
    ``overwrite``."""
    inp, out = Path(input_path), Path(output_path)
    same = inp.resolve() == out.resolve()
    if not same and inp.exists() and out.exists():
        try:
            same = os.path.samefile(inp, out)
        except OSError:
            same = False
    if same:
        raise DataError(f"--output {out} is the --input file; choose another output (the input is never replaced)")
    rundir.refuse_inside_run(out, "predictions")
    rundir.check_writable_file(out, "--output", overwrite)


def read_table(path: Path, text_column: str, quoting: str = "auto") -> tuple[str, list[dict[str, Any]], list[str]]:
    """(format, rows, field names) of a CSV/TSV/JSONL input file, read by the same readers as training data
    (``lightft.data``): every record becomes a row, or the read fails naming the line."""
    from lightft.data import _read_csv

    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise DataError(f"input file not found: {path}")
    if suffix in (".csv", ".tsv"):
        located = _read_csv(path, "cp1252", "\t" if suffix == ".tsv" else ",", quoting)
        fields = list(located[0][1]) if located else []
        fmt = suffix[1:]
    elif suffix == ".jsonl":
        located = read_jsonl(path, "cp1252")
        fields = list(dict.fromkeys(k for _, row in located for k in row))
        fmt = "jsonl"
    else:
        raise DataError(f"{path}: predict reads .csv, .tsv or .jsonl, not '{suffix}'")
    if not located:
        raise DataError(f"{path}: the file holds no rows")
    if text_column not in fields:
        raise DataError(f"{path}: no text column '{text_column}'; available columns: {', '.join(fields)} "
                        "(use --text-column)")
    for where, row in located:
        value = row.get(text_column)
        if text_column not in row:
            raise DataError(f"{where}: no field '{text_column}'")
        if isinstance(value, (dict, list)):
            raise DataError(f"{where}: field '{text_column}' is not a text")
        check_predict_text("" if value is None else str(value), where)
    return fmt, [row for _, row in located], fields


def check_predict_text(text: str, where: str) -> str:
    """``text``, or a one-line DataError when it is not valid Unicode or holds nothing to read: training drops
    empty and whitespace-only texts, so the model has no label for one (serve answers 422 alike)."""
    check_text(text, where)
    if not text.strip():
        raise DataError(f"{where}: the text is empty or whitespace-only; training drops such texts, so there is "
                        "no label to give it (remove the row)")
    return text


def predict_file(classifier: Predictor, input_path: Path, output_path: Path, text_column: str = "text",
                 overwrite: bool = False, quoting: str = "auto") -> int:
    """Classify every row of ``input_path``; write the same format with the input's fields unchanged plus
    ``pred_label``, ``pred_score`` and ``pred_prob_<label>`` (JSONL: ``pred_probabilities``). Returns the
    number of rows. The output is never the input, an existing output needs ``overwrite``, and an input that
    already has a prediction column is refused rather than overwritten."""
    check_predict_paths(input_path, output_path, overwrite)
    fmt, rows, fields = read_table(Path(input_path), text_column, quoting)
    if fmt == "jsonl":
        added = [f"{PRED_PREFIX}label", f"{PRED_PREFIX}score", f"{PRED_PREFIX}probabilities"]
    else:
        added = [f"{PRED_PREFIX}label", f"{PRED_PREFIX}score",
                 *[f"{PRED_PREFIX}prob_{n}" for n in classifier.label_names]]
    clash = [c for c in added if c in fields]
    if clash:
        raise DataError(f"{input_path} already has a column '{clash[0]}'; rename it (predictions are written as "
                        f"{PRED_PREFIX}* columns beside the input's own)")
    texts = ["" if r.get(text_column) is None else str(r[text_column]) for r in rows]
    predictions = classifier.predict(texts, progress=True)
    output_path = Path(output_path)
    buf = io.StringIO()
    if fmt == "jsonl":
        for row, pred in zip(rows, predictions, strict=True):
            buf.write(json.dumps({**row, added[0]: pred.label, added[1]: pred.score,
                                  added[2]: pred.probabilities}, ensure_ascii=False) + "\n")
    else:
        # Written as it was read: an unquoted TSV stays unquoted, so quotes inside texts come back unchanged.
        unquoted = fmt == "tsv" and quoting in ("auto", "none")
        writer = csv.DictWriter(buf, fieldnames=fields + added, delimiter="\t" if fmt == "tsv" else ",",
                                quoting=csv.QUOTE_NONE if unquoted else csv.QUOTE_MINIMAL,
                                quotechar=None if unquoted else '"')
        try:
            writer.writeheader()
            for row, pred in zip(rows, predictions, strict=True):
                writer.writerow({**row, added[0]: pred.label, added[1]: f"{pred.score:.6f}",
                                 **{c: f"{pred.probabilities[n]:.6f}"
                                    for c, n in zip(added[2:], classifier.label_names, strict=True)}})
        except csv.Error as exc:  # a label name with a tab or newline cannot go into an unquoted TSV
            raise DataError(f"{output_path}: cannot write an unquoted TSV ({exc}); use a .csv output") from None
    rundir.atomic_write_text(output_path, buf.getvalue())
    return len(rows)
