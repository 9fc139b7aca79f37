"""Exports that load where lightft is not installed.

``export_merged``: the adapter folded into the base weights. For the architecture's own head (``cls``
pooling) that is a plain transformers checkpoint (safetensors, tokenizer, id2label) that
``transformers.pipeline("text-classification", model=OUT)`` loads. A mean-pooled head (``lightft.heads``) is
not expressible by ``AutoModelForSequenceClassification``, so it is written as a sentence-transformers folder
instead (Transformer -> Pooling(mean) -> Normalize -> Dense(identity) = logits), which
``SentenceTransformer(OUT).encode(texts)`` runs; the label names are in its ``config.json`` (``id2label``).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lightft import rundir
from lightft.errors import LightftError
from lightft.windows import ReadsAsTrained


def _merged_from_run(run_dir: Path, out: Path, what: str, trust_remote_code: bool = False,
                     allow_pickle: bool = False) -> tuple[Any, Any, Any]:
    """(config, merged model, tokenizer) of a complete run, refusing an existing file or non-empty folder
    ``out``. Remote code and pickle only with the caller's opt-in, never the run's own config."""
    from lightft.config import load_run_config
    from lightft.model import is_peft_model, load_saved_model, load_tokenizer, merged_for_inference

    rundir.require_complete(run_dir)
    if out.exists() and not out.is_dir():
        raise LightftError(f"{out} exists and is a file; choose a new folder")
    if out.exists() and any(out.iterdir()):
        raise LightftError(f"{out} exists and is not empty; choose a new folder")
    if Path(run_dir).resolve() in (out.resolve(), *out.resolve().parents):
        raise LightftError(f"{out} is inside the run directory {run_dir}; choose a folder outside it")
    cfg = load_run_config(run_dir)
    model = load_saved_model(run_dir / "adapter", cfg.model.name, trust_remote_code=trust_remote_code,
                             allow_pickle=allow_pickle, revision=cfg.model.revision)
    merged = merged_for_inference(model)
    if is_peft_model(merged):
        raise LightftError(f"method '{cfg.method}' cannot be merged into the base weights for {what}")
    tokenizer = load_tokenizer(str(run_dir / "adapter"), trust_remote_code=trust_remote_code)
    # The length the run read (and lightft predicts with), so that pipeline(..., truncation=True) and other
    # loaders of the export cut where lightft does, not at the base model's 512.
    tokenizer.model_max_length = cfg.model.max_length
    return cfg, merged.float().eval(), tokenizer


@contextlib.contextmanager
def _new_folder(out: Path) -> Iterator[Path]:
    """A temporary folder beside ``out``, renamed to ``out`` on success and removed on failure, so a crash
    never leaves a half-written export under its name."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o777 & ~rundir.current_umask())  # a folder as mkdir would make it, not mkdtemp's 0700
    try:
        yield tmp
        rundir.follow_umask(tmp)  # safetensors and ONNX write 0600 whatever the umask
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def export_merged(run_dir: str | Path, out: str | Path, *, trust_remote_code: bool = False,
                  allow_pickle: bool = False) -> Path:
    """Write the run's fine-tuned model, adapter merged, to ``out``; returns ``out``. A transformers checkpoint
    for the architecture's own head, a sentence-transformers folder for a mean-pooled one."""
    from lightft.card import write_model_card
    from lightft.heads import pooling_of

    run_dir, out = Path(run_dir), Path(out)
    cfg, merged, tokenizer = _merged_from_run(run_dir, out, "a merged export", trust_remote_code, allow_pickle)
    with _new_folder(out) as tmp:
        if pooling_of(merged) == "mean":
            _save_sentence_transformer(merged, tokenizer, tmp, cfg.model.max_length)
            write_model_card(run_dir, tmp, "sentence-transformers")
        else:
            merged.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            write_model_card(run_dir, tmp, "transformers")
    return out


def _save_sentence_transformer(model: Any, tokenizer: Any, out: Path, max_length: int) -> None:
    """A sentence-transformers folder whose output embedding is the classifier's logits."""
    import torch

    try:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    except ImportError:  # sentence-transformers 3-5
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.models import Dense, Normalize, Pooling, Transformer

    encoder = getattr(model, model.base_model_prefix)
    encoder.config.id2label, encoder.config.label2id = model.config.id2label, model.config.label2id
    encoder.config.problem_type = model.config.problem_type  # multi_label_classification: sigmoid per label
    encoder.config.architectures = [type(encoder).__name__]
    def dense(layer: Any, activation: Any) -> Any:
        return Dense(layer.in_features, layer.out_features, bias=True, activation_function=activation,
                     init_weight=layer.weight.detach().clone().float(), init_bias=layer.bias.detach().clone().float())

    from lightft.heads import dense_head_activation

    head = model.classifier
    if isinstance(head, torch.nn.Linear):  # BERT: one Linear over the pooled vector
        layers = [dense(head, torch.nn.Identity())]
    else:  # RoBERTa, XLM-R, ELECTRA, MPNet: dense -> tanh (ELECTRA: gelu) -> out_proj
        activation = dense_head_activation(head)
        if activation is None:
            raise LightftError(f"{type(head).__name__}: its activation is none of those a sentence-transformers "
                               "Dense layer can hold; export --onnx keeps the whole head")
        layers = [dense(head.dense, activation), dense(head.out_proj, torch.nn.Identity())]
    with tempfile.TemporaryDirectory(prefix=".encoder.", dir=out.parent) as staging:
        encoder.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        word = Transformer(staging, max_seq_length=max_length)
        st = SentenceTransformer(modules=[word, Pooling(word.get_word_embedding_dimension(), "mean"), Normalize(),
                                          *layers], device="cpu")
        st.save(str(out), safe_serialization=True)


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """Only errors from these loggers ("" is the root one) while the block runs: what the exporters print along
    the way is theirs, not something a lightft user acts on, and would otherwise be shown as lightft's."""
    import logging

    loggers = [logging.getLogger(name or None) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


ONNX_META = "lightft_onnx.json"


def _logits_only(model):
    """``model`` behind a forward(input_ids, attention_mask) -> logits, the signature the ONNX graph gets."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    return LogitsOnly(model)


def export_onnx(run_dir: str | Path, out: str | Path, int8: bool = False, *, trust_remote_code: bool = False,
                allow_pickle: bool = False) -> dict:
    """ONNX graph (merged weights, fp32) + tokenizer files + label names, runnable with onnxruntime alone.

    With ``int8``, also a dynamically quantised ``model_int8.onnx``, with its accuracy change and speed-up on
    the run's test split. Returns what was measured (also written to ``export.json``)."""
    import torch

    from lightft.inference import Decision
    from lightft.model import is_multi_label, label_names_of
    from lightft.predict import read_decision

    run_dir, out = Path(run_dir), Path(out)
    cfg, model, tokenizer = _merged_from_run(run_dir, out, "ONNX", trust_remote_code, allow_pickle)
    splits = _test_data(cfg) if int8 else None  # read before the export's work, so a missing corpus fails at once
    names = label_names_of(model)
    decision = read_decision(run_dir / "decision.json", names, is_multi_label(model))
    sample = tokenizer(["a short text", "a somewhat longer text for the example"], padding=True, return_tensors="pt")
    with _new_folder(out) as tmp:
        batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
        with _quiet_loggers("torch.onnx", "torch.export", "onnxscript"):  # progress lines and optional-op notes
            program = torch.onnx.export(
                _logits_only(model).eval(), (sample["input_ids"], sample["attention_mask"]), dynamo=True,
                input_names=["input_ids", "attention_mask"], output_names=["logits"], external_data=False,
                dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
                verbose=False,
            )
        program.save(str(tmp / "model.onnx"))
        tokenizer.save_pretrained(tmp)
        model.config.save_pretrained(tmp)
        # Windows of long texts are cut before the graph and its logits aggregated after it, as here.
        meta = {"labels": names, "max_length": cfg.model.max_length, "truncation": cfg.model.truncation,
                "window_stride": cfg.model.window_stride, "max_windows": cfg.model.max_windows,
                "window_aggregation": cfg.model.window_aggregation,
                "decision": decision.to_json(names) if decision != Decision() else None,
                "threshold": decision.threshold,  # what exports before multi-label read
                "text_column": cfg.data.text_column,  # predict --input reads it, as from a run
                "source_run": str(run_dir)}
        rundir.atomic_write_json(tmp / ONNX_META, meta)
        report: dict = {"model": "model.onnx"}
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            with _quiet_loggers(""):  # onnxruntime's advice on its image-classification example, on the root logger
                quantize_dynamic(str(tmp / "model.onnx"), str(tmp / "model_int8.onnx"), weight_type=QuantType.QInt8)
            report["int8"] = _compare_int8(tmp, splits)
        rundir.atomic_write_json(tmp / "export.json", report)
    return report


def _test_data(cfg: Any) -> Any:
    """The run's splits, for --int8's test-split comparison, or a one-line error that says why it needs them
    (and, for a relative local path the readers could not find, where to run export from)."""
    from lightft.data import load_splits
    from lightft.errors import DataError

    try:
        return load_splits(cfg.data, cfg.seed)
    except DataError as exc:
        hint = ": run export from the folder the run was started in" if "a relative path is read from" in str(exc) \
            else ""
        raise DataError(f"--int8 scores both graphs on the run's test split, and its data cannot be read: "
                        f"{exc}{hint}") from None


def _compare_int8(folder: Path, splits: Any) -> dict:
    """Accuracy (multi-label: subset accuracy) and docs/s of the fp32 and int8 graphs on the run's test split."""
    import time

    from lightft.metrics import as_targets, exact_match

    test = splits.test
    y = as_targets(test.labels, len(splits.label_names))
    result = {}
    for key, file in (("fp32", "model.onnx"), ("int8", "model_int8.onnx")):
        clf = OnnxClassifier(folder, file)
        start = time.perf_counter()
        probs = clf.predict_proba(test.texts)
        seconds = time.perf_counter() - start
        result[key] = {"accuracy": float(exact_match(y, clf.decision.decide(probs)).mean()),
                       "docs_per_second": len(test.texts) / seconds}
    result["accuracy_change"] = result["int8"]["accuracy"] - result["fp32"]["accuracy"]
    result["speedup"] = result["int8"]["docs_per_second"] / result["fp32"]["docs_per_second"]
    result["test_documents"] = len(test.texts)
    return result


class OnnxClassifier(ReadsAsTrained):
    """Prediction from an exported ONNX folder with onnxruntime (an ``inference.Predictor``, as
    ``predict.Classifier`` is)."""

    def __init__(self, folder: str | Path, model_file: str = "model.onnx", batch_size: int = 32) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        from lightft.inference import Decision

        folder = Path(folder)
        meta = rundir.read_json(folder / ONNX_META)
        if not isinstance(meta, dict) or not isinstance(meta.get("labels"), list) \
                or not isinstance(meta.get("max_length"), int) or meta["max_length"] < 1:
            raise LightftError(f"{folder / ONNX_META} is damaged (needs labels and max_length)")
        self.label_names = [str(n) for n in meta["labels"]]
        self.max_length = meta["max_length"]
        self.truncation = meta["truncation"]
        # exports written before multi-label hold a binary task's "threshold" (or null) instead of "decision"
        decision = meta.get("decision") or ({"threshold": meta["threshold"]} if meta.get("threshold") is not None
                                            else None)
        try:
            self.decision = Decision() if decision is None else Decision.from_json(decision, self.label_names,
                                                                                 str(folder / ONNX_META))
        except ValueError as exc:
            raise LightftError(str(exc)) from None
        self.window_stride, self.max_windows = meta.get("window_stride"), meta.get("max_windows", 8)
        self.window_aggregation = meta.get("window_aggregation", "mean")
        column = meta.get("text_column")  # exports written before it was recorded have none
        self.text_column = column if isinstance(column, str) and column else "text"
        self.batch_size = batch_size
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)  # an export is data
            self.session = ort.InferenceSession(str(folder / model_file), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - damaged tokenizer or graph files raise many types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise LightftError(f"cannot load the ONNX export in {folder}: {first}") from None
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def predict_proba(self, texts: list[str], progress: bool = False):
        import numpy as np

        from lightft.runtime import batches_by_length, pad_batch
        from lightft.windows import aggregate

        enc = self.tokenize(texts, progress)
        ids = enc.ids
        out = np.zeros((len(ids), len(self.label_names)), dtype=np.float32)
        for idx in batches_by_length([len(x) for x in ids], self.batch_size):
            batch = pad_batch([ids[i] for i in idx], self.pad_id)
            (logits,) = self.session.run(["logits"], {k: v.numpy() for k, v in batch.items()})
            out[idx] = logits
        return self.decision.probabilities(aggregate(out, enc.owner, self.window_aggregation))

    def predict(self, texts: list[str], progress: bool = False):
        from lightft.inference import to_predictions

        return to_predictions(self.predict_proba(texts, progress), self.label_names, self.decision)
