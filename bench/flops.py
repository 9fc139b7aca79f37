"""Model FLOPs from the architecture and real token counts, and this machine's matmul peak, for the benchmarks.

Forward FLOPs of a BERT-style encoder for one text of s tokens (hidden h, feed-forward f, L layers):
    L * (2*s*(4*h*h + 2*h*f) + 4*s*s*h)        # Q/K/V/output projections, feed-forward, QK^T and AV
Training is counted as 3x forward for full fine-tuning and 2x for frozen-base methods (the backward pass
still computes activation gradients through every layer, but no weight gradients for frozen matrices).
"""

from __future__ import annotations

import time

import torch


def forward_flops(config, lengths: list[int]) -> float:
    h = config.hidden_size
    f = config.intermediate_size
    layers = config.num_hidden_layers
    return float(sum(layers * (2 * s * (4 * h * h + 2 * h * f) + 4 * s * s * h) for s in lengths))


def matmul_peak(dtype: torch.dtype, device: str = "cpu", n: int | None = None, seconds: float = 2.0) -> float:
    """Best measured FLOP/s of an n x n x n matrix product in ``dtype`` on ``device``."""
    n = n or (8192 if device == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def dtype_of(precision: str) -> torch.dtype:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
