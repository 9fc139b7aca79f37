"""Cheaper alternatives the fine-tuned model must beat, all scored on the same test split.

* zero-shot: label names (or descriptions) embedded by the same encoder; each text takes the nearest label
  by cosine similarity. Costs no training at all.
* tfidf: TF-IDF (word 1-2-grams) + logistic regression on the same training subset (``linear.tfidf_classifier``).
* linear_probe: frozen encoder embeddings + logistic regression on the same training subset
  (``linear.linear_probe``).

Multi-label tasks (training labels are id tuples): TF-IDF and the probe fit one regression per label
(``linear.one_vs_rest``) and return each label's probability; zero-shot turns each label's similarity into a
probability around one similarity cut chosen on the training split (``zero_shot_multilabel``).

Embeddings are the encoder's token states pooled over the attention mask (``mean``, what sentence-transformers
models were trained for) or the first token (``cls``), L2-normalised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from lightft.heads import mean_pool
from lightft.inference import forward_batches, put_rows
from lightft.linear import sigmoid
from lightft.metrics import multi_hot


@torch.inference_mode()
def embed(model: Any, encodings: list[list[int]], pad_id: int, pooling: str = "mean", batch_size: int = 64,
          precision: str = "auto", desc: str = "embedding", with_logits: bool = False,
          attention: str | None = None) -> Any:
    """Pooled, L2-normalised embeddings of ``encodings`` from ``model``'s final token states.

    The states are read from the backbone (``model.base_model``, the model itself for a bare encoder) on their
    way out. ``with_logits``: ``model`` is a classifier and the one pass returns ``(embeddings, logits)``, so
    the pre-trained baseline and the embedding baselines cost one pass over the split, not two."""
    captured: list[torch.Tensor] = []
    hook = model.base_model.register_forward_hook(lambda _m, _a, out: captured.append(out[0]))
    emb: np.ndarray | None = None
    logits: np.ndarray | None = None
    try:
        for idx, batch, output in forward_batches(model, encodings, pad_id, batch_size, precision, desc,
                                                  attention=attention):
            states = captured.pop().float()
            if pooling == "cls":
                vec = torch.nn.functional.normalize(states[:, 0], dim=-1)
            else:  # exactly what a mean-pooled head reads, so its probe start can reuse these
                vec = mean_pool(states, batch["attention_mask"])
            emb = put_rows(emb, idx, vec.cpu().numpy(), len(encodings))
            if with_logits:
                logits = put_rows(logits, idx, output.logits.float().cpu().numpy(), len(encodings))
    finally:
        hook.remove()
    emb = emb if emb is not None else np.zeros((0, 0), dtype=np.float32)
    return (emb, logits) if with_logits else emb


def per_text(embeddings: np.ndarray, owner: np.ndarray | None) -> np.ndarray:
    """Embeddings per text when texts are windows (``lightft.windows``): the mean of the text's windows,
    L2-normalised; unchanged otherwise."""
    if owner is None:
        return embeddings
    from lightft.windows import aggregate

    mean = aggregate(embeddings, owner, "mean")
    return mean / np.clip(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12, None)


def label_embeddings(encoder: Any, label_names: list[str], descriptions: dict[str, str] | None, tokenizer: Any,
                     max_length: int, pad_id: int, pooling: str, batch_size: int, precision: str,
                     attention: str | None = None) -> np.ndarray:
    """Zero-shot's side of the comparison: each label's name (or ``descriptions[name]``) embedded by
    ``encoder`` as the texts are (``lightft run``'s baseline and ``lightft curve`` share it)."""
    from lightft.data import tokenize

    texts = [(descriptions or {}).get(n, n) for n in label_names]
    ids = tokenize(texts, tokenizer, max_length, desc="embedding labels")
    return embed(encoder, ids, pad_id, pooling, batch_size, precision, "embedding labels", attention=attention)


def zero_shot(test_emb: np.ndarray, label_emb: np.ndarray, temperature: float = 0.05) -> np.ndarray:
    """Class probabilities from cosine similarity to each label embedding (softmax with a temperature)."""
    sims = test_emb @ label_emb.T / temperature
    sims -= sims.max(axis=1, keepdims=True)
    e = np.exp(sims)
    return e / e.sum(axis=1, keepdims=True)


def zero_shot_multilabel(test_emb: np.ndarray, label_emb: np.ndarray, train_emb: np.ndarray,
                         train_labels: list[Any], temperature: float = 0.05) -> np.ndarray:
    """Multi-label zero-shot: a label applies where the text's cosine similarity to it reaches one cut, the cut
    that maximises micro-F1 on the training split (the only thing learnt; no model is trained). Returns
    sigmoid((similarity - cut) / temperature) per label, so 0.5 is the cut."""
    sims = train_emb @ label_emb.T
    y = multi_hot(train_labels, label_emb.shape[0]).astype(bool)
    best, cut = -1.0, 0.5
    for c in np.quantile(sims, np.linspace(0.01, 0.99, 99)):
        pred = sims >= c
        tp = (pred & y).sum()
        f1 = 2 * tp / max(pred.sum() + y.sum(), 1)
        if f1 > best:
            best, cut = f1, float(c)
    return sigmoid((test_emb @ label_emb.T - cut) / temperature)


class Background:
    """``fn(*args)`` started in a fresh Python process: call the object to wait for its result; ``cancel()`` ends
    the process, so a run that failed does not wait at exit for work it will never use.

    Spawned, not forked: the parent may hold a CUDA context and threads, which a fork would copy. For CPU-only
    work that would otherwise wait for an accelerator, or make it wait: pure Python (TF-IDF's tokenising) in a
    thread would compete with the training loop for the GIL. Where no process can be started or it dies
    (no /dev/shm, a sandbox), ``fn`` runs here instead when the result is asked for, so an error of ``fn``
    itself surfaces as it would have inline."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.fn, self.args, self.future, self.processes = fn, args, None, []
        try:
            pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            self.future = pool.submit(fn, *args)
            # The worker's handle, taken before shutdown() drops it: the executor has no public way to stop a
            # running call (Python 3.14's terminate_workers() needs the handles shutdown() clears).
            self.processes = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False)  # the process ends after this one call
        except Exception:  # noqa: BLE001 - no process pool here: run it when asked
            self.future = None

    def __call__(self) -> Any:
        if self.future is None:
            return self.fn(*self.args)
        try:
            return self.future.result()
        except Exception:  # noqa: BLE001 - the pool broke, or fn failed: run it here, where fn's error shows
            return self.fn(*self.args)

    def cancel(self, timeout: float = 10.0) -> None:
        """End the process and wait (up to ``timeout`` s, then SIGKILL) until it is gone."""
        import time

        for process in self.processes:
            if process.is_alive():
                process.terminate()
        # The executor's own thread notices the death and joins the same Process objects: while it holds the
        # exit status it has reaped, is_alive() here can still say True for a moment, so poll, don't join once.
        deadline = time.monotonic() + timeout
        while any(p.is_alive() for p in self.processes) and time.monotonic() < deadline:
            time.sleep(0.05)
        for process in self.processes:
            if process.is_alive():
                process.kill()


def in_background(fn: Callable[..., Any], *args: Any) -> Background:
    """Start ``fn(*args)`` in a process of its own (``Background``); call the result to wait for it."""
    return Background(fn, *args)
