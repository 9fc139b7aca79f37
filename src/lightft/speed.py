"""Inference levers that change how the model computes, not what: the attention kernel, the last layer at
[CLS] only, a reduced-precision copy of the weights, and batches run side by side on single-threaded workers.

Each is measured on its own by bench/inference.py and bench/levers.py and can be switched off in config
(bench/README.md)."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from lightft.compat import attention_function, attention_kernel, can_switch_attention, cpu_has_amx_tiles

# Heads that read only the first token's final state (BERT's pooler, the RoBERTa and ELECTRA heads), on
# encoders whose layers are built like BERT's (tests/test_speed.py checks each gives the same logits).
CLS_HEADS = ("BertForSequenceClassification", "RobertaForSequenceClassification",
             "XLMRobertaForSequenceClassification", "ElectraForSequenceClassification")


def matmul_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                     **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Attention as two matmuls and a softmax, all in the inputs' dtype (bf16 under autocast).

    On CPUs without AMX, with MiniLM's 32-dim heads, PyTorch's bf16 flash kernel runs attention at a sixth of
    the matmul rate and eager attention upcasts the softmax to fp32 under autocast; this is faster than both
    (bench/inference.py, bench/levers.py). fp32 inputs (the fp32 recheck), dropout and causal models take
    SDPA unchanged."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if query.dtype == torch.float32 or dropout or getattr(module, "is_causal", False) \
            or kwargs.get("output_attentions"):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    with torch.autocast(query.device.type, enabled=False):
        scores = torch.matmul(query * scaling, key.transpose(-1, -2))
        if attention_mask is not None:  # SDPA's mask format: True = attend
            hidden = ~attention_mask
            # Only key columns that some row masks need filling: in length-sorted batches, the last few.
            cols = hidden.flatten(0, -2).any(0).nonzero()
            if len(cols):
                start = int(cols[0])
                scores[..., start:].masked_fill_(hidden[..., start:], torch.finfo(scores.dtype).min)
        out = torch.matmul(scores.softmax(-1), value)
    return out.transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register("matmul", matmul_attention)
    AttentionMaskInterface.register("matmul", sdpa_mask)


_register()


# What an inference lever left to the device (``auto`` or empty in config) resolves to, per kind of device
# (``device_kind``). A lever is on only where it measured faster on that kind:
# - CPU (2-core EPYC, bench/inference.py and bench/levers.py): matmul attention; the [CLS]-only last layer
#   1.13-1.19x; the bf16 copy of the weights 1.03-1.08x.
# - CPU with AMX (2-core Intel Xeon with AVX-512 bf16 and AMX tiles, bench/inference.py, 2026-11-29): PyTorch's
#   flash-attention kernel runs bf16 on AMX there, so the model's own SDPA predicted 64.6 docs/s against 47.1
#   with matmul attention (1.37x); the bf16 copy stayed faster (1.08x). Matmul attention only pays on bf16
#   CPUs without AMX (fp32 inputs take SDPA in it anyway).
# - CUDA (one H100, commit e1bfebd, issue 14): with each lever switched off on its own, predict got faster than
#   with all of them on (481 docs/s): the model's own SDPA 678, the full last layer 716, autocast instead of
#   the bf16 copy 710; so each is off there. Other accelerators (MPS, XPU) are unmeasured and get the GPU's
#   choice: the model as it comes.
# - cuDNN's attention kernels (CUDA only; training and inference): on Hopper, PyTorch's SDPA can pick cuDNN,
#   which builds a plan for every new input shape (hundreds of milliseconds each, NVIDIA/cudnn-frontend and
#   torchtune#1652), and lightft's batches are padded to their own longest text, so nearly every batch is a
#   new shape: on one H200 (issue 14) predict's p95 batch took 81 ms against a p50 of 11, and the first pass of
#   each shape cost more than the model. Off, SDPA takes flash or memory-efficient attention, built ahead.
#   With cuDNN off, one fine-tune of the default config took 4.2 s instead of 18.8 (bench/gpu_steps.py).
# - Padding each batch up to a multiple of 64 tokens (training and inference): on that H200, with cuDNN off,
#   3.5 s instead of 4.2 (fewer distinct shapes); on CPU every padded token is work, so it stays off there.
_CPU_LEVERS: dict[str, Any] = {"attention": "matmul", "cls_only_last_layer": True, "cast_weights_once": True,
                               "cudnn_attention": False, "pad_multiple_of": 0}
DEVICE_LEVERS: dict[str, dict[str, Any]] = {
    "cpu": _CPU_LEVERS,
    "cpu_amx": {**_CPU_LEVERS, "attention": None},  # the one lever that measured the other way with AMX
    "cuda": {"attention": None, "cls_only_last_layer": False, "cast_weights_once": False,
             "cudnn_attention": False, "pad_multiple_of": 64},
}


def device_kind(device: torch.device) -> str:
    """The ``DEVICE_LEVERS`` row for ``device``: ``cpu_amx``, ``cpu``, or ``cuda`` for every accelerator."""
    if device.type != "cpu":
        return "cuda"
    return "cpu_amx" if cpu_has_amx_tiles() else "cpu"


def device_lever(lever: str, configured: Any, device: torch.device) -> Any:
    """``configured`` (the config's value), or where it is left to the device (None or ``auto``) the value
    ``DEVICE_LEVERS`` holds for ``device``'s kind."""
    if configured is not None and configured != "auto":
        return configured
    return DEVICE_LEVERS[device_kind(device)][lever]


def resolve_attention(attention: str | None, device: torch.device) -> str | None:
    """``auto``: per device (``DEVICE_LEVERS``: matmul attention on a CPU without AMX, the model's own on one
    with AMX and on a GPU); ``default`` or None: the model's own."""
    attention = device_lever("attention", attention, device) if attention == "auto" else attention
    return None if attention in (None, "default") else attention


@contextlib.contextmanager
def attention_backends(device: torch.device, cudnn: bool | None = None) -> Iterator[None]:
    """Run the block with SDPA kept off cuDNN's kernels on a CUDA device, unless ``cudnn`` (None: per device,
    ``DEVICE_LEVERS``) allows them; elsewhere, or when allowed, SDPA chooses as it does. Training steps and
    every inference pass run inside it; the backward pass follows the kernel its forward pass took."""
    if device.type != "cuda" or device_lever("cudnn_attention", cudnn, device):
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        yield


@contextlib.contextmanager
def inference_attention(model: Any, attention: str | None) -> Iterator[None]:
    """Run the block with ``model``'s attention kernel switched to ``attention`` (None or ``default``: as is;
    ``auto``: see ``resolve_attention``). Models that cannot switch kernels at run time are left as they are."""
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    current = attention_kernel(target)
    attention = resolve_attention(attention, next(model.parameters()).device)
    switch = attention and current and attention != current and can_switch_attention(target)
    if not switch:
        yield
        return
    target.set_attn_implementation(attention)
    try:
        yield
    finally:
        target.set_attn_implementation(current)


@contextlib.contextmanager
def adapter_input_casts_off(model: Any, precision: str) -> Iterator[None]:
    """Under bf16/fp16 autocast, run the block with PEFT's adapter layers (LoRA and its kin) no longer casting
    their input to the adapter weights' dtype (fp32) before the adapter's matmuls: autocast casts it straight
    back to bf16/fp16 for them, so the logits and gradients are the same (tests/test_speed.py) and the round
    trip was two copies of the activations per adapted layer, forward and backward. With LoRA on every linear
    layer, a training step on a bf16 CPU took 1.15x as long with the casts (bench/README.md). fp32: as is.
    (``peft.helpers.disable_input_dtype_casting`` does this but fails on layers without the switch, e.g. IA3's.)"""
    from peft.tuners.tuners_utils import BaseTunerLayer

    # fp32 first: every inference pass (the fp32 recheck, serve's requests) comes here, no module walk for it.
    layers = [] if precision not in ("bf16", "fp16") else [
        m for m in model.modules() if isinstance(m, BaseTunerLayer) and hasattr(m, "cast_input_dtype_enabled")]
    if not layers:
        yield
        return
    before = [m.cast_input_dtype_enabled for m in layers]
    for m in layers:
        m.cast_input_dtype_enabled = False
    try:
        yield
    finally:
        for m, value in zip(layers, before, strict=True):
            m.cast_input_dtype_enabled = value


class ClsOnlyLayer(torch.nn.Module):
    """A BERT-style encoder layer that computes only position 0 ([CLS]): keys and values from every token,
    the query, attention output and feed-forward for the first one. When the classifier reads nothing else,
    the logits are the same and the last layer costs ~1/400 of its attention and 1/6 of its projections."""

    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, *args: Any,
                **kwargs: Any) -> torch.Tensor:
        layer, attn = self.layer, self.layer.attention.self
        batch = hidden_states.shape[0]
        first = hidden_states[:, :1]
        heads = (batch, -1, attn.num_attention_heads, attn.attention_head_size)
        query = attn.query(first).view(heads).transpose(1, 2)
        key = attn.key(hidden_states).view(heads).transpose(1, 2)
        value = attn.value(hidden_states).view(heads).transpose(1, 2)
        fn = attention_function(attn)
        if attention_mask is not None and attention_mask.shape[-2] > 1:
            attention_mask = attention_mask[:, :, :1]  # [batch, 1, queries, keys]: keep the first query's row
        out, _ = fn(attn, query, key, value, attention_mask, dropout=0.0, scaling=attn.scaling)
        out = layer.attention.output(out.reshape(batch, 1, -1), first)
        return layer.output(layer.intermediate(out), out)


def _last_layer_slot(model: Any) -> tuple[torch.nn.ModuleList, int] | None:
    """(layer list, index) of the last encoder layer where ``ClsOnlyLayer`` gives the same logits, else None."""
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    if type(target).__name__ not in CLS_HEADS or target.training \
            or getattr(target.config, "classifier_pooling", None) == "mean":  # a mean head reads every position
        return None
    layers = getattr(getattr(target.base_model, "encoder", None), "layer", None)
    if not isinstance(layers, torch.nn.ModuleList) or not len(layers):
        return None
    last = layers[-1]
    if isinstance(last, ClsOnlyLayer):
        return None  # already in place (a nested call)
    parts = ("attention", "intermediate", "output")
    if not all(hasattr(last, p) for p in parts) or getattr(last, "crossattention", None) is not None \
            or not all(hasattr(last.attention, p) for p in ("self", "output")):
        return None
    return layers, len(layers) - 1


@contextlib.contextmanager
def cls_only_last_layer(model: Any, enabled: bool | None = True) -> Iterator[None]:
    """Run the block with the last encoder layer computing only [CLS] (see ``ClsOnlyLayer``), for models whose
    classification head reads only that position; other models are left as they are. ``enabled`` None: as the
    model's device does best (``DEVICE_LEVERS``)."""
    if enabled is None:
        enabled = device_lever("cls_only_last_layer", None, next(model.parameters()).device)
    slot = _last_layer_slot(model) if enabled else None
    if slot is None:
        yield
        return
    layers, i = slot
    original = layers[i]
    layers[i] = ClsOnlyLayer(original)
    try:
        yield
    finally:
        layers[i] = original


def resolve_workers(workers: int | None, device: torch.device) -> int:
    """``inference.workers``, or when empty: on CPU one per torch thread, on a GPU one."""
    if workers:
        return workers
    return torch.get_num_threads() if device.type == "cpu" else 1


@contextlib.contextmanager
def worker_map(workers: int) -> Iterator[Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]]:
    """``map`` that runs calls on ``workers`` threads with one torch thread each (results in order), or the
    builtin ``map`` for one worker.

    On this project's 2-core CPU, two texts side by side on one core each ran faster than one text at a time
    on both cores: the many small ops of a forward pass (softmax, GELU, layer norm) scale poorly across
    threads (bench/inference.py, bench/levers.py)."""
    if workers <= 1:
        yield map
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="lightft-infer")
    try:
        yield pool.map
    finally:
        pool.shutdown(cancel_futures=True)
        torch.set_num_threads(threads)


def cast_weights_for(model: Any, precision: str, configured: bool | None, device: torch.device) -> Any | None:
    """``cast_for_inference`` where ``inference.cast_weights_once`` (empty: per device, ``DEVICE_LEVERS``) asks
    for it on ``device``, else None (autocast)."""
    return cast_for_inference(model, precision) if device_lever("cast_weights_once", configured, device) else None


def cast_for_inference(model: Any, precision: str) -> Any | None:
    """A copy of ``model`` with every weight in bf16, to run without autocast, for a resolved ``precision`` of
    bf16; None otherwise (fp16 keeps autocast: a whole model in fp16 can overflow in its layer norms, where
    autocast keeps them in fp32).

    Under autocast each Linear weight is cast on every forward pass and layer norms, GELU and residual sums
    go back and forth between fp32 and bf16; the copy skips all of that (bench/inference.py). Its logits are a
    little further from fp32 than autocast's (bench/inference.py prints the largest difference), still far
    inside the recheck margin that recomputes close decisions in fp32 with the original."""
    return copy.deepcopy(model).to(torch.bfloat16).eval() if precision == "bf16" else None
