"""Inference over token ids: batching by length, padding, precision (autocast, a bf16 copy, the fp32 recheck of
close decisions), the attention and last-layer levers of ``lightft.speed``, workers side by side, and the
aggregation of long texts' windows. Every path that runs a classifier forward (validation, the test split,
baselines' embeddings, predict, serve) goes through ``forward_batches``/``predict_logits``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from lightft.linear import sigmoid
from lightft.runtime import (
    autocast,
    batches_by_length,
    model_device,
    pad_batch,
    progress_bar,
    resolve_precision,
)
from lightft.speed import (
    adapter_input_casts_off,
    attention_backends,
    cls_only_last_layer,
    device_lever,
    inference_attention,
    resolve_workers,
    worker_map,
)


def forward_batches(model: Any, encodings: list[list[int]], pad_id: int, batch_size: int, precision: str,
                    desc: str, progress: bool = True, pad_to: int | None = None, sort_by_length: bool = True,
                    attention: str | None = None, pad_multiple_of: int | None = 0, max_length: int | None = None,
                    workers: int = 1, cls_only: bool | None = False, cudnn_attention: bool | None = None,
                    ) -> Iterator[tuple[list[int], dict[str, torch.Tensor], Any]]:
    """``(indices, batch, output)`` for each forward pass of ``model`` over ``encodings`` in eval mode and
    inference mode, under the precision's autocast and the chosen attention kernel, with a progress bar.

    Batches are length-sorted (``sort_by_length``) and padded to their longest text (or to ``pad_to``;
    ``pad_multiple_of``: up to a multiple of this, at most ``max_length``, see ``runtime.pad_batch``; None: per
    device, ``speed.DEVICE_LEVERS``).
    ``workers`` > 1 runs that many batches side by side on one thread each (``speed.worker_map``);
    ``cls_only``: the last layer computes only [CLS] where the head reads nothing else (the outputs then hold
    no other final token states). ``cudnn_attention``: whether SDPA may use cuDNN's kernels on a CUDA device
    (None: per device, ``speed.attention_backends``)."""
    model.eval()
    device = model_device(model)
    precision = resolve_precision(precision, device)
    batches = batches_by_length([len(e) for e in encodings], batch_size, sort_by_length)
    pad_multiple_of = device_lever("pad_multiple_of", pad_multiple_of, device)

    def forward(idx: list[int]) -> tuple[list[int], dict[str, torch.Tensor], Any]:
        padded = pad_batch([encodings[i] for i in idx], pad_id, pad_to, pad_multiple_of, max_length)
        batch = {k: v.to(device) for k, v in padded.items()}
        with torch.inference_mode(), autocast(device, precision):  # both are per thread
            return idx, batch, model(**batch)

    with progress_bar(total=len(encodings), desc=desc, unit="doc", leave=False, disable=not progress) as bar, \
            inference_attention(model, attention), cls_only_last_layer(model, cls_only), \
            attention_backends(device, cudnn_attention), adapter_input_casts_off(model, precision), \
            worker_map(min(workers, len(batches))) as run:
        for result in run(forward, batches):
            yield result
            bar.update(len(result[0]))


def put_rows(out: np.ndarray | None, idx: list[int], rows: np.ndarray, n: int) -> np.ndarray:
    """Write ``rows`` at ``idx`` of an [n, width] float32 array, made on the first call (``out`` None)."""
    if out is None:
        out = np.zeros((n, rows.shape[1]), dtype=np.float32)
    out[idx] = rows
    return out


@torch.inference_mode()
def predict_logits(
    model: Any,
    encodings: list[list[int]],
    pad_id: int,
    batch_size: int = 64,
    precision: str = "auto",
    desc: str = "predicting",
    progress: bool = True,
    pad_to: int | None = None,
    sort_by_length: bool = True,
    recheck_margin: float = 0.0,
    attention: str | None = None,
    pad_multiple_of: int | None = 0,
    max_length: int | None = None,
    workers: int | None = None,
    cls_only: bool | None = False,
    cudnn_attention: bool | None = None,
    cast_model: Any | None = None,
    owner: np.ndarray | None = None,
    aggregation: str = "mean",
    boundaries: np.ndarray | None = None,
) -> np.ndarray:
    """Logits (float32, shape [n, num_labels]) in input order, batched as ``forward_batches`` says.

    Under bf16/fp16, texts whose two highest logits are closer than ``recheck_margin`` are computed again in
    fp32, so reduced precision speeds up the clear cases without changing a close decision. ``attention``: the
    attention kernel to use (see ``speed.inference_attention``; None keeps the model's). ``workers``: batches
    run side by side (None: one per CPU thread, one on a GPU; see ``speed.resolve_workers``). ``cls_only``:
    the last layer computes only [CLS] where the head reads only that (``speed.cls_only_last_layer``; None: as
    the device does best). ``cudnn_attention``: see ``forward_batches``.
    ``cast_model``: a bf16 copy of ``model`` (``speed.cast_for_inference``) that runs the
    reduced-precision pass in place of autocast; the recheck uses ``model``. ``owner``: the text each encoding
    belongs to when long texts are windows (``lightft.windows``): the rows returned are then per text, the
    ``aggregation`` (mean or max) of its windows' logits. ``boundaries``: a multi-label model's decision point per
    label, as a logit (``Decision.boundaries``): a text is then close, and rechecked, where any label's logit is
    within ``recheck_margin`` of its boundary."""
    if owner is not None:
        from lightft.windows import aggregate

        per_window = predict_logits(model, encodings, pad_id, batch_size, precision, desc, progress, pad_to=pad_to,
                                    sort_by_length=sort_by_length, recheck_margin=recheck_margin,
                                    attention=attention, pad_multiple_of=pad_multiple_of, max_length=max_length,
                                    workers=workers, cls_only=cls_only, cudnn_attention=cudnn_attention,
                                    cast_model=cast_model,
                                    boundaries=boundaries)
        return aggregate(per_window, owner, aggregation)
    device = model_device(model)
    precision = resolve_precision(precision, device)
    options = dict(pad_to=pad_to, sort_by_length=sort_by_length, attention=attention,
                   pad_multiple_of=pad_multiple_of, max_length=max_length,
                   workers=resolve_workers(workers, device), cls_only=cls_only, cudnn_attention=cudnn_attention)
    # The cast copy runs in its own dtype, without autocast (which would upcast norms and softmax again).
    cast = cast_model is not None and precision != "fp32"
    first, first_precision = (cast_model, "fp32") if cast else (model, precision)
    out: np.ndarray | None = None
    for idx, _, output in forward_batches(first, encodings, pad_id, batch_size, first_precision, desc, progress,
                                          **options):
        out = put_rows(out, idx, output.logits.float().cpu().numpy(), len(encodings))
    if out is None:
        return np.zeros((0, 0), dtype=np.float32)
    if recheck_margin > 0 and precision != "fp32" and (out.shape[1] > 1 or boundaries is not None):
        if boundaries is not None:  # multi-label: each label decides on its own against its threshold
            gap = np.abs(out - np.asarray(boundaries, dtype=np.float32)).min(axis=1)
        else:
            top2 = np.sort(out, axis=1)[:, -2:]
            gap = top2[:, 1] - top2[:, 0]
        close = np.flatnonzero(gap < recheck_margin)
        if len(close):
            out[close] = predict_logits(model, [encodings[i] for i in close], pad_id, batch_size, "fp32",
                                        progress=False, **options)
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class Prediction:
    """One text's prediction. Single-label: ``label`` and its probability ``score``. Multi-label: ``labels`` is
    the predicted set (most probable first; it may be empty), ``label``/``score`` its first member (None when
    the set is empty). ``probabilities``: every label's (softmax over labels, or each label's sigmoid)."""

    label: str | None
    score: float | None
    probabilities: dict[str, float]
    labels: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if self.labels is None:
            del out["labels"]
        return out


@dataclass(frozen=True)
class Decision:
    """How a classifier's logits become labels, the same in evaluation, predict, serve and the exports.

    Single-label: softmax, then argmax, or for a binary task with a ``threshold`` tuned on validation
    (``train.tune_threshold``), label id 1 where its probability reaches it. Multi-label: each label's sigmoid,
    and a label is predicted where its probability reaches its own threshold (``thresholds``, tuned per label on
    validation; 0.5 where none was tuned), so a text may get several labels or none; with ``at_least_one`` (set
    where every training text has a label) a text that reaches no threshold gets its most probable label."""

    multi_label: bool = False
    threshold: float | None = None
    thresholds: tuple[float, ...] | None = None
    at_least_one: bool = False

    @property
    def task(self) -> str:
        return "multi_label" if self.multi_label else "single_label"

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return sigmoid(logits) if self.multi_label else softmax(logits)

    def cuts(self, k: int) -> np.ndarray:
        """Multi-label: each of the ``k`` labels' probability threshold (0.5 where none was tuned)."""
        return np.asarray(self.thresholds if self.thresholds is not None else [0.5] * k, dtype=np.float64)

    def boundaries(self, k: int) -> np.ndarray | None:
        """Multi-label: each label's threshold as a logit (0 for 0.5), where ``predict_logits`` rechecks close
        decisions in fp32; None for single-label (the top two logits decide there). Not covered: with
        ``at_least_one``, which of several labels all under their thresholds is most probable (rare, and the
        label chosen then is one the model rates below its threshold anyway)."""
        if not self.multi_label:
            return None
        cut = np.clip(self.cuts(k), 1e-7, 1 - 1e-7)
        return np.log(cut / (1 - cut)).astype(np.float32)

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        """Predicted label ids (n,), or for multi-label a 0/1 matrix (n, labels)."""
        if self.multi_label:
            chosen = (probabilities >= self.cuts(probabilities.shape[1])).astype(np.int64)
            if self.at_least_one and len(chosen):
                empty = np.flatnonzero(chosen.sum(1) == 0)
                chosen[empty, probabilities[empty].argmax(1)] = 1
            return chosen
        from lightft.metrics import apply_threshold

        return apply_threshold(probabilities, self.threshold)

    def to_json(self, label_names: list[str]) -> dict[str, Any]:
        """``decision.json``'s content (``chosen_on`` added by the writer)."""
        if self.multi_label:
            cut = self.cuts(len(label_names))
            return {"task": "multi_label", "thresholds": dict(zip(label_names, map(float, cut), strict=True)),
                    "at_least_one": self.at_least_one}
        return {"task": "single_label", "threshold": self.threshold,
                "positive_label": label_names[1] if self.threshold is not None else None}

    @classmethod
    def from_json(cls, data: Any, label_names: list[str], where: str) -> Decision:
        """The Decision a ``decision.json`` (or an export's metadata) holds; damaged: ``ValueError`` naming
        ``where``."""
        def probability(value: Any) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1

        if not isinstance(data, dict):
            raise ValueError(f"{where} is not a JSON object")
        if data.get("task") == "multi_label":
            cut = data.get("thresholds")
            if not isinstance(cut, dict) or set(cut) != set(label_names) or not all(map(probability, cut.values())):
                raise ValueError(f"{where} needs a threshold between 0 and 1 for each label "
                                 f"({', '.join(label_names)})")
            return cls(multi_label=True, thresholds=tuple(float(cut[n]) for n in label_names),
                       at_least_one=data.get("at_least_one") is True)
        threshold = data.get("threshold")
        if not probability(threshold):
            raise ValueError(f"{where} holds no threshold between 0 and 1")
        return cls(threshold=float(threshold))


@runtime_checkable
class Predictor(Protocol):
    """What every way of running a trained classifier offers: a run directory (``predict.Classifier``), an
    ONNX export (``export.OnnxClassifier``) and an adapter in a running server (``AdapterServer.predictor``).
    ``lightft predict``/``evaluate``, serve and the benches use only this."""

    label_names: list[str]
    decision: Decision  # probabilities -> labels (argmax, a binary threshold, or per-label thresholds)

    def predict_proba(self, texts: list[str], progress: bool = False) -> np.ndarray: ...

    def predict(self, texts: list[str], progress: bool = False) -> list[Prediction]: ...

    def unread(self, texts: list[str]) -> list[int]: ...  # texts that give the model no tokens (windows.Tokenized)


def to_predictions(probabilities: np.ndarray, label_names: list[str], decision: Decision) -> list[Prediction]:
    """Label(s), score and all label probabilities per row, as ``decision`` decides."""
    decided = decision.decide(probabilities)
    out = []
    for row, pick in zip(probabilities, decided, strict=True):
        probs = dict(zip(label_names, map(float, row), strict=True))
        if decision.multi_label:
            chosen = sorted(np.flatnonzero(pick), key=lambda j: -row[j])
            names = [label_names[j] for j in chosen]
            out.append(Prediction(names[0] if names else None, float(row[chosen[0]]) if names else None, probs,
                                  names))
        else:
            out.append(Prediction(label_names[pick], float(row[pick]), probs))
    return out
