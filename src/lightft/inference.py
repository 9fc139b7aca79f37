"""Inference over token ids: batching by length, padding, precision (autocast, a bf16 copy, the fp32 recheck of
close decisions), the attention and last-layer levers of ``lightft.speed``, workers side by side, and the
aggregation of long texts' windows. Every path that runs a classifier forward (validation, the test split,
baselines' embeddings, predict, serve) goes through ``forward_batches``/``predict_logits``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from lightft.runtime import (
    autocast,
    batches_by_length,
    model_device,
    pad_batch,
    resolve_precision,
)
from lightft.speed import cls_only_last_layer, inference_attention, resolve_workers, worker_map


def forward_batches(model: Any, encodings: list[list[int]], pad_id: int, batch_size: int, precision: str,
                    desc: str, progress: bool = True, pad_to: int | None = None, sort_by_length: bool = True,
                    attention: str | None = None, pad_multiple_of: int = 0, max_length: int | None = None,
                    workers: int = 1, cls_only: bool = False,
                    ) -> Iterator[tuple[list[int], dict[str, torch.Tensor], Any]]:
    """``(indices, batch, output)`` for each forward pass of ``model`` over ``encodings`` in eval mode and
    inference mode, under the precision's autocast and the chosen attention kernel, with a progress bar.

    Batches are length-sorted (``sort_by_length``) and padded to their longest text (or to ``pad_to``;
    ``pad_multiple_of``: up to a multiple of this, at most ``max_length``, see ``runtime.pad_batch``).
    ``workers`` > 1 runs that many batches side by side on one thread each (``speed.worker_map``);
    ``cls_only``: the last layer computes only [CLS] where the head reads nothing else (the outputs then hold
    no other final token states)."""
    from tqdm.auto import tqdm

    model.eval()
    device = model_device(model)
    precision = resolve_precision(precision, device)
    batches = batches_by_length([len(e) for e in encodings], batch_size, sort_by_length)

    def forward(idx: list[int]) -> tuple[list[int], dict[str, torch.Tensor], Any]:
        padded = pad_batch([encodings[i] for i in idx], pad_id, pad_to, pad_multiple_of, max_length)
        batch = {k: v.to(device) for k, v in padded.items()}
        with torch.inference_mode(), autocast(device, precision):  # both are per thread
            return idx, batch, model(**batch)

    with tqdm(total=len(encodings), desc=desc, unit="doc", leave=False, disable=not progress) as bar, \
            inference_attention(model, attention), cls_only_last_layer(model, cls_only), \
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
    pad_multiple_of: int = 0,
    max_length: int | None = None,
    workers: int | None = None,
    cls_only: bool = False,
    cast_model: Any | None = None,
    owner: np.ndarray | None = None,
    aggregation: str = "mean",
) -> np.ndarray:
    """Logits (float32, shape [n, num_labels]) in input order, batched as ``forward_batches`` says.

    Under bf16/fp16, texts whose two highest logits are closer than ``recheck_margin`` are computed again in
    fp32, so reduced precision speeds up the clear cases without changing a close decision. ``attention``: the
    attention kernel to use (see ``speed.inference_attention``; None keeps the model's). ``workers``: batches
    run side by side (None: one per CPU thread, one on a GPU; see ``speed.resolve_workers``). ``cls_only``:
    the last layer computes only [CLS] where the head reads only that (``speed.cls_only_last_layer``).
    ``cast_model``: a bf16 copy of ``model`` (``speed.cast_for_inference``) that runs the
    reduced-precision pass in place of autocast; the recheck uses ``model``. ``owner``: the text each encoding
    belongs to when long texts are windows (``lightft.windows``): the rows returned are then per text, the
    ``aggregation`` (mean or max) of its windows' logits."""
    if owner is not None:
        from lightft.windows import aggregate

        per_window = predict_logits(model, encodings, pad_id, batch_size, precision, desc, progress, pad_to=pad_to,
                                    sort_by_length=sort_by_length, recheck_margin=recheck_margin,
                                    attention=attention, pad_multiple_of=pad_multiple_of, max_length=max_length,
                                    workers=workers, cls_only=cls_only, cast_model=cast_model)
        return aggregate(per_window, owner, aggregation)
    device = model_device(model)
    precision = resolve_precision(precision, device)
    options = dict(pad_to=pad_to, sort_by_length=sort_by_length, attention=attention,
                   pad_multiple_of=pad_multiple_of, max_length=max_length,
                   workers=resolve_workers(workers, device), cls_only=cls_only)
    # The cast copy runs in its own dtype, without autocast (which would upcast norms and softmax again).
    cast = cast_model is not None and precision != "fp32"
    first, first_precision = (cast_model, "fp32") if cast else (model, precision)
    out: np.ndarray | None = None
    for idx, _, output in forward_batches(first, encodings, pad_id, batch_size, first_precision, desc, progress,
                                          **options):
        out = put_rows(out, idx, output.logits.float().cpu().numpy(), len(encodings))
    if out is None:
        return np.zeros((0, 0), dtype=np.float32)
    if recheck_margin > 0 and precision != "fp32" and out.shape[1] > 1:
        top2 = np.sort(out, axis=1)[:, -2:]
        close = np.flatnonzero(top2[:, 1] - top2[:, 0] < recheck_margin)
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
    label: str
    score: float
    probabilities: dict[str, float]


@runtime_checkable
class Predictor(Protocol):
    """What every way of running a trained classifier offers: a run directory (``predict.Classifier``), an
    ONNX export (``export.OnnxClassifier``) and an adapter in a running server (``AdapterServer.predictor``).
    ``lightft predict``/``evaluate``, serve and the benches use only this."""

    label_names: list[str]
    threshold: float | None  # binary tasks: the tuned probability threshold for label id 1 (else argmax)

    def predict_proba(self, texts: list[str], progress: bool = False) -> np.ndarray: ...

    def predict(self, texts: list[str], progress: bool = False) -> list[Prediction]: ...


def to_predictions(probabilities: np.ndarray, label_names: list[str], threshold: float | None) -> list[Prediction]:
    """Label, score and all class probabilities per row (the tuned threshold decides binary tasks)."""
    from lightft.metrics import apply_threshold

    return [Prediction(label_names[best], float(row[best]), dict(zip(label_names, map(float, row), strict=True)))
            for row, best in zip(probabilities, apply_threshold(probabilities, threshold), strict=True)]
