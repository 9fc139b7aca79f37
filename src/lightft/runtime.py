"""Device, precision and batching shared by training and inference."""

from __future__ import annotations

import contextlib
import functools
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lightft.compat import cpu_supports_bf16


def resolve_device() -> torch.device:
    """CUDA when present, else CPU (Apple's MPS is left out: its bf16 autocast is incomplete)."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


@dataclass(frozen=True)
class Shard:
    """This process's place among the processes `accelerate launch` started (a plain run: 0 of 1), and its
    device (None: ``resolve_device``)."""

    index: int = 0
    count: int = 1
    device: torch.device | None = None

    def wait(self) -> None:
        """Accelerate's barrier: return when every process has reached it."""
        if self.count > 1:
            from accelerate import PartialState

            PartialState().wait_for_everyone()


def process_shard() -> Shard:
    """This process's shard: under `accelerate launch --num_processes N` (torchrun sets WORLD_SIZE), Accelerate's
    process group decides rank and device (one GPU per process, or CPU processes with gloo)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Shard()
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # without cpu=True a CUDA-less launch is one process
    return Shard(state.process_index, state.num_processes, state.device)


def resolve_eval_batch_size(configured: int | None, device: torch.device) -> int:
    """``inference.batch_size``, or when empty: 4 on CPU (small batches stay in cache), 256 on a GPU (per-call
    overhead, not arithmetic, sets the pace there: on an H100, 256 ran 1.17x faster than 64 and 16 1.71x
    slower, bench/inference.py's lever rows, bench/README.md)."""
    if configured:
        return configured
    return 256 if device.type == "cuda" else 4


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``auto`` into bf16/fp16/fp32 for ``device``; an explicit choice is kept (fp32 always works)."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if cuda_supports_bf16() else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


@functools.cache
def cuda_supports_bf16() -> bool:
    """Asked once per process: each ``torch.cuda.is_bf16_supported`` call queries the device (49 calls in one
    GPU run, issue 14)."""
    return torch.cuda.is_bf16_supported()


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc's ``malloc_trim``; a no-op elsewhere).

    glibc keeps freed blocks for reuse, so a long-lived process that sees batches of changing shapes (a server)
    grows its resident memory long after the tensors are gone; trimming after each batch keeps it flat."""
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)


# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


@functools.cache
def reuse_freed_memory() -> bool:
    """glibc: take tensors of up to 32 MiB from the heap and keep up to 256 MiB of freed heap for reuse, instead
    of mapping fresh pages for each large tensor and unmapping them when it is freed. Returns whether it
    applied (once per process).

    A bf16 forward pass allocates and frees a 14 MB attention-score tensor per layer; glibc's default
    threshold often maps those freshly, and every new page is a page fault the kernel zeroes. Measured on the
    default predict path by bench/malloc.py (bench/README.md). LIGHTFT_MALLOC=default leaves glibc as it is,
    and a user who sets MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ keeps their own choice;
    ``release_free_memory`` still returns freed pages on demand. It is process-wide, so the ``lightft`` command
    applies it (``cli``) and library calls never do; a program that uses the library may call it itself."""
    if os.environ.get("LIGHTFT_MALLOC") == "default" or any(
            k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(M_TRIM_THRESHOLD, 256 << 20))


@functools.cache
def _libc_function(name: str) -> Any:
    import ctypes
    import ctypes.util

    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


# A progress bar redraws up to ten times a second. Where stderr is a file or a pipe (CI, `2> run.log`, nohup)
# every redraw lands in that log: a BBC run under bench/quality.py wrote over a thousand. There a bar redraws
# every 30 s instead, so the log still says how far a long step is. Notebooks (tqdm.auto's widget) and
# terminals keep tqdm's default.
LOG_REDRAW_SECONDS = 30.0


def progress_bar(iterable: Any = None, **kwargs: Any) -> Any:
    """``tqdm.auto.tqdm(iterable, **kwargs)``, redrawing every ``LOG_REDRAW_SECONDS`` where stderr is not a
    terminal (a ``mininterval`` given by the caller wins)."""
    import sys

    from tqdm import autonotebook
    from tqdm.auto import tqdm

    in_notebook = autonotebook.tqdm.__module__.endswith("notebook")
    is_terminal = getattr(sys.stderr, "isatty", lambda: False)()
    if not (in_notebook or is_terminal):
        kwargs.setdefault("mininterval", LOG_REDRAW_SECONDS)
        kwargs.setdefault("maxinterval", LOG_REDRAW_SECONDS)  # tqdm's monitor thread would redraw every 10 s
    return tqdm(iterable, **kwargs)


def set_threads(num_threads: int | None) -> None:
    """``train.num_threads``: torch's intra-op threads, and the fast tokenizer's (Rust rayon reads
    RAYON_NUM_THREADS when its pool starts, at the first batch tokenised, which is after this call)."""
    if num_threads:
        torch.set_num_threads(num_threads)
        os.environ["OMP_NUM_THREADS"] = str(num_threads)
        os.environ["RAYON_NUM_THREADS"] = str(num_threads)


def pad_batch(sequences: list[list[int]], pad_id: int, pad_to: int | None = None, multiple_of: int = 0,
              limit: int | None = None) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence in this batch (dynamic padding), or to ``pad_to``, with the attention mask.

    ``multiple_of``: round the padded length up to a multiple of this (never past ``limit``), so a long-lived
    server sees a bounded set of shapes (oneDNN keeps per-shape kernels and buffers)."""
    longest = max(pad_to or 0, max(len(s) for s in sequences))
    if multiple_of:
        rounded = -(-longest // multiple_of) * multiple_of
        longest = max(longest, min(rounded, limit)) if limit else rounded
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return {"input_ids": ids, "attention_mask": mask}


class LengthGroupedBatchSampler:
    """Random batches of similar-length texts: shuffle, sort within windows of ``window`` batches, split,
    shuffle the batches. Less padding, still a fresh random order each epoch (seed + epoch)."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_by_length: bool = True,
                 window: int = 50) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.window = window
        self.epoch = 0

    def use_epoch(self, epoch: int) -> None:
        # Not named set_epoch on purpose: Accelerate calls set_epoch with its own iteration counter, which
        # restarts at 0 in a resumed run's loader and would change the order of the resumed epoch.
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        if not self.group_by_length:
            return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        span = self.batch_size * self.window
        batches = []
        for start in range(0, len(order), span):
            chunk = sorted(order[start:start + span], key=lambda i: self.lengths[i], reverse=True)
            batches.extend(chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size


def batches_by_length(lengths: list[int], batch_size: int, sort: bool = True) -> list[list[int]]:
    """Inference batches over indices sorted by length (longest first: a memory error shows up at once),
    or in input order when ``sort`` is off."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True) if sort else list(range(len(lengths)))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def model_device(model: Any) -> torch.device:
    return next(model.parameters()).device
