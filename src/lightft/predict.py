"""Inference with a finished run: the model owns prediction; files in, the same format out."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lightft import rundir
from lightft.config import inference_options, load_run_config
from lightft.data import decode_bytes, read_jsonl
from lightft.errors import DataError
from lightft.evaluate import apply_threshold, predict_logits, softmax
from lightft.windows import Tokenized, tokenize_texts


@dataclass
class Prediction:
    label: str
    score: float
    probabilities: dict[str, float]


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
    def from_run(cls, run_dir: str | Path, precision: str | None = None) -> Classifier:
        from transformers import AutoTokenizer

        from lightft.model import label_names_of, load_saved_model, merged_for_inference
        from lightft.runtime import resolve_device, resolve_eval_batch_size, resolve_precision
        from lightft.speed import cast_for_inference

        run_dir = Path(run_dir)
        rundir.require_complete(run_dir)
        cfg = load_run_config(run_dir)
        model = load_saved_model(run_dir / "adapter", cfg.model.name, cfg.model.trust_remote_code,
                                 cfg.model.allow_pickle)
        names = label_names_of(model)
        if cfg.model.merge_adapter:
            model = merged_for_inference(model)
        device = resolve_device()
        model.to(device)
        tokenizer = AutoTokenizer.from_pretrained(run_dir / "adapter")
        decision = run_dir / "decision.json"
        threshold = rundir.read_json(decision)["threshold"] if decision.is_file() else None
        precision = precision or cfg.train.precision
        cast = cast_for_inference(model, resolve_precision(precision, device)) if cfg.model.cast_weights_once \
            else None
        return cls(model, tokenizer, names, cfg.model.max_length, cfg.model.truncation, precision,
                   resolve_eval_batch_size(cfg.train.eval_batch_size, device), threshold, inference_options(cfg),
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
        probs = self.predict_proba(texts, progress)
        out = []
        for row, best in zip(probs, apply_threshold(probs, self.threshold), strict=True):
            out.append(Prediction(self.label_names[best], float(row[best]),
                                  {n: float(p) for n, p in zip(self.label_names, row, strict=True)}))
        return out


def _read_table(path: Path, text_column: str) -> tuple[str, list[dict[str, Any]], list[str]]:
    """(format, rows, field names) of a CSV/TSV/JSONL input file."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise DataError(f"input file not found: {path}")
    if suffix in (".csv", ".tsv"):
        text = decode_bytes(path.read_bytes(), str(path))
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
        try:
            rows = list(reader)
        except csv.Error as exc:
            raise DataError(f"{path} line {reader.line_num}: malformed CSV ({exc})") from None
        fields = list(reader.fieldnames or [])
        fmt = suffix[1:]
    elif suffix == ".jsonl":
        rows = [row for _, row in read_jsonl(path, "cp1252")]
        fields = list(dict.fromkeys(k for row in rows for k in row))
        fmt = "jsonl"
    else:
        raise DataError(f"{path}: predict reads .csv, .tsv or .jsonl, not '{suffix}'")
    if not rows:
        raise DataError(f"{path}: the file holds no rows")
    if text_column not in fields:
        raise DataError(f"{path}: no text column '{text_column}'; available columns: {', '.join(fields)} "
                        "(use --text-column)")
    return fmt, rows, fields


def predict_file(classifier: Classifier, input_path: Path, output_path: Path, text_column: str = "text") -> int:
    """Classify every row of ``input_path``; write the same format with label, score and per-class
    probabilities. Returns the number of rows."""
    fmt, rows, fields = _read_table(Path(input_path), text_column)
    texts = ["" if r.get(text_column) is None else str(r[text_column]) for r in rows]
    predictions = classifier.predict(texts, progress=True)
    output_path = Path(output_path)
    buf = io.StringIO()
    if fmt == "jsonl":
        for row, pred in zip(rows, predictions, strict=True):
            buf.write(json.dumps({**row, "label": pred.label, "score": pred.score,
                                  "probabilities": pred.probabilities}, ensure_ascii=False) + "\n")
    else:
        prob_cols = [f"prob_{n}" for n in classifier.label_names]
        added = ["label", "score", *prob_cols]
        writer = csv.DictWriter(buf, fieldnames=[f for f in fields if f not in added] + added,
                                delimiter="\t" if fmt == "tsv" else ",", extrasaction="ignore")
        writer.writeheader()
        for row, pred in zip(rows, predictions, strict=True):
            writer.writerow({**row, "label": pred.label, "score": f"{pred.score:.6f}",
                             **{c: f"{pred.probabilities[n]:.6f}"
                                for c, n in zip(prob_cols, classifier.label_names, strict=True)}})
    rundir.atomic_write_text(output_path, buf.getvalue())
    return len(rows)
