"""The inference levers of lightft.speed: each computes the same predictions as the plain model."""

import contextlib
import threading

import numpy as np
import pytest
import torch

from conftest import ARCHITECTURES, build_tiny_model, make_texts


def _classifier_and_ids(root, arch: str = "bert", n_per_class: int = 3):
    from lightft.data import tokenize
    from lightft.model import load_classifier, load_tokenizer
    from lightft.runtime import set_seed

    path = build_tiny_model(root, arch)
    set_seed(0)
    model, _ = load_classifier(str(path), ["a", "b", "c"])
    ids = tokenize([t for t, _ in make_texts(n_per_class)], load_tokenizer(str(path)), 32, progress=False)
    # Cut some texts short, so batches mix lengths and carry padding masks.
    ids = [x[: max(3, len(x) - 5 * (i % 4))] for i, x in enumerate(ids)]
    assert len({len(x) for x in ids}) > 2
    return model, ids


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_cls_only_last_layer_gives_the_same_logits(arch, tiny_models):
    from lightft.inference import predict_logits
    from lightft.speed import ClsOnlyLayer, _last_layer_slot, cls_only_last_layer

    model, ids = _classifier_and_ids(tiny_models, arch)
    model.eval()
    supported = _last_layer_slot(model) is not None
    assert supported == (arch in ("bert", "roberta", "xlm-roberta", "electra"))
    full = predict_logits(model, ids, 0, 4, "fp32", progress=False, workers=1)
    pruned = predict_logits(model, ids, 0, 4, "fp32", progress=False, workers=1, cls_only=True)
    np.testing.assert_allclose(pruned, full, atol=1e-5)
    layers = [m for m in model.modules() if isinstance(m, ClsOnlyLayer)]
    assert not layers  # restored after the call
    if supported:
        with cls_only_last_layer(model):
            assert sum(isinstance(m, ClsOnlyLayer) for m in model.modules()) == 1
            with cls_only_last_layer(model):  # nested (the fp32 recheck): not wrapped twice
                assert sum(isinstance(m, ClsOnlyLayer) for m in model.modules()) == 1
        model.train()
        assert _last_layer_slot(model) is None  # never while training: the loss may need every position


def test_cls_only_last_layer_works_on_an_unmerged_lora_model(tiny_bert):
    from lightft.data import tokenize
    from lightft.inference import predict_logits
    from lightft.model import apply_method, load_classifier, load_tokenizer
    from lightft.runtime import set_seed

    set_seed(0)
    model, new = load_classifier(str(tiny_bert), ["a", "b", "c"])
    model = apply_method(model, "lora", {"r": 4, "lora_alpha": 8, "init_lora_weights": False}, new)
    ids = tokenize([t for t, _ in make_texts(2)], load_tokenizer(str(tiny_bert)), 32, progress=False)
    full = predict_logits(model, ids, 0, 3, "fp32", progress=False, workers=1)
    pruned = predict_logits(model, ids, 0, 3, "fp32", progress=False, workers=1, cls_only=True)
    np.testing.assert_allclose(pruned, full, atol=1e-5)


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert"])
def test_matmul_attention_is_sdpa_in_fp32_and_close_in_bf16(arch, tiny_models):
    from lightft.inference import predict_logits

    model, ids = _classifier_and_ids(tiny_models, arch)
    seen = []
    model.register_forward_pre_hook(lambda m, _: seen.append(m.config._attn_implementation))
    sdpa32 = predict_logits(model, ids, 0, 4, "fp32", progress=False, workers=1)
    matmul32 = predict_logits(model, ids, 0, 4, "fp32", progress=False, workers=1, attention="matmul")
    np.testing.assert_array_equal(matmul32, sdpa32)  # fp32 goes to SDPA unchanged
    assert "matmul" in seen and model.config._attn_implementation == "sdpa"  # switched, then restored
    sdpa16 = predict_logits(model, ids, 0, 4, "bf16", progress=False, workers=1)
    matmul16 = predict_logits(model, ids, 0, 4, "bf16", progress=False, workers=1, attention="matmul")
    np.testing.assert_allclose(matmul16, sdpa32, atol=0.05)
    assert np.abs(matmul16 - sdpa32).max() <= 2 * np.abs(sdpa16 - sdpa32).max() + 0.02


def test_matmul_attention_masks_padding():
    from lightft.speed import matmul_attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5, 8, dtype=torch.bfloat16) for _ in range(3))
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[1, :, :, 3:] = False  # the second sequence has 3 real tokens
    module = torch.nn.Module()
    out, _ = matmul_attention(module, q, k, v, mask, scaling=8 ** -0.5)
    ref = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
    torch.testing.assert_close(out.float(), ref.transpose(1, 2), atol=0.03, rtol=0.03)
    # Padding positions change nothing for the real tokens.
    out_short, _ = matmul_attention(module, q[1:, :, :3], k[1:, :, :3], v[1:, :, :3], None, scaling=8 ** -0.5)
    torch.testing.assert_close(out[1:, :3].float(), out_short.float(), atol=0.02, rtol=0.02)


def test_resolve_attention(monkeypatch):
    from lightft import speed
    from lightft.speed import resolve_attention

    monkeypatch.setattr(speed, "cpu_has_amx_tiles", lambda: False)
    assert resolve_attention("auto", torch.device("cpu")) == "matmul"
    monkeypatch.setattr(speed, "cpu_has_amx_tiles", lambda: True)  # flash attention runs bf16 on AMX: SDPA
    assert resolve_attention("auto", torch.device("cpu")) is None
    assert resolve_attention("matmul", torch.device("cpu")) == "matmul"  # a setting wins over the device
    assert resolve_attention("auto", torch.device("cuda")) is None
    assert resolve_attention("default", torch.device("cpu")) is None
    assert resolve_attention("eager", torch.device("cuda")) == "eager"


def test_bf16_copy_runs_the_bf16_pass_and_the_original_rechecks(tiny_bert):
    from lightft.inference import predict_logits
    from lightft.speed import cast_for_inference

    model, ids = _classifier_and_ids(tiny_bert.parent, "bert")
    assert cast_for_inference(model, "fp32") is None
    assert cast_for_inference(model, "fp16") is None  # fp16 keeps autocast (layer norms stay fp32)
    cast = cast_for_inference(model, "bf16")
    assert {p.dtype for p in cast.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # the original is untouched
    seen = []
    cast.register_forward_pre_hook(lambda m, _: seen.append(torch.is_autocast_enabled("cpu")))
    fp32 = predict_logits(model, ids, 0, 4, "fp32", progress=False, workers=1)
    fast = predict_logits(model, ids, 0, 4, "bf16", progress=False, workers=1, cast_model=cast)
    assert seen and not any(seen)  # the copy runs in its own dtype, not under autocast
    assert not np.array_equal(fast, fp32)
    np.testing.assert_allclose(fast, fp32, atol=0.05)
    rechecked = predict_logits(model, ids, 0, 4, "bf16", progress=False, workers=1, cast_model=cast,
                               recheck_margin=1e9)
    np.testing.assert_array_equal(rechecked, fp32)  # every close row comes from the fp32 original
    ignored = predict_logits(model, ids, 0, 4, "fp32", progress=False, workers=1, cast_model=cast)
    np.testing.assert_array_equal(ignored, fp32)  # fp32 inference never uses the copy


def test_workers_run_side_by_side_on_one_thread_each_and_keep_the_order(tiny_bert):
    from lightft.inference import predict_logits

    model, ids = _classifier_and_ids(tiny_bert.parent, "bert", n_per_class=6)
    threads_before = torch.get_num_threads()
    seen = []
    model.register_forward_pre_hook(
        lambda *_: seen.append((threading.current_thread().name, torch.get_num_threads(),
                                torch.is_inference_mode_enabled())))
    serial = predict_logits(model, ids, 0, 2, "fp32", progress=False, workers=1)
    assert {name for name, _, _ in seen} == {threading.current_thread().name}
    seen.clear()
    parallel = predict_logits(model, ids, 0, 2, "fp32", progress=False, workers=2)
    # Same rows in input order (one thread sums in another order than two: equal to float rounding).
    np.testing.assert_allclose(parallel, serial, atol=1e-6)
    np.testing.assert_array_equal(parallel.argmax(1), serial.argmax(1))
    assert all(name.startswith("lightft-infer") and n == 1 and inference for name, n, inference in seen)
    assert torch.get_num_threads() == threads_before


def test_resolve_workers():
    from lightft.speed import resolve_workers

    assert resolve_workers(None, torch.device("cpu")) == torch.get_num_threads()
    assert resolve_workers(None, torch.device("cuda")) == 1
    assert resolve_workers(3, torch.device("cpu")) == 3


@pytest.mark.parametrize("amx", [False, True])
def test_each_lever_resolves_per_device_unless_set(tiny_bert, monkeypatch, amx):
    """The default config's inference levers, as each device resolves them: on where measured faster on that
    device (CPU: all, but with AMX the model's own attention; an H100: none of attention/[CLS]-only/bf16 copy,
    bench/README.md and issue 14)."""
    from lightft import speed

    monkeypatch.setattr(speed, "cpu_has_amx_tiles", lambda: amx)
    from lightft.config import load_config
    from lightft.runtime import resolve_eval_batch_size
    from lightft.speed import (
        _last_layer_slot,
        cast_weights_for,
        cls_only_last_layer,
        device_lever,
        resolve_attention,
        resolve_workers,
    )

    cfg = load_config(None, ["data.source=x.csv"])
    inf = cfg.inference
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    resolved = {dev.type: {"attention": resolve_attention(inf.attention, dev),
                           "cls_only_last_layer": device_lever("cls_only_last_layer", inf.cls_only_last_layer, dev),
                           "cast_weights_once": device_lever("cast_weights_once", inf.cast_weights_once, dev),
                           "workers": resolve_workers(inf.workers, dev),
                           "cudnn_attention": device_lever("cudnn_attention", inf.cudnn_attention, dev),
                           "pad_multiple_of": device_lever("pad_multiple_of", cfg.train.pad_to_multiple_of, dev),
                           "batch_size": resolve_eval_batch_size(inf.batch_size, dev)} for dev in (cpu, gpu)}
    assert resolved == {
        "cpu": {"attention": None if amx else "matmul", "cls_only_last_layer": True, "cast_weights_once": True,
                "workers": torch.get_num_threads(), "cudnn_attention": False, "pad_multiple_of": 0,
                "batch_size": 4},
        "cuda": {"attention": None, "cls_only_last_layer": False, "cast_weights_once": False, "workers": 1,
                 "cudnn_attention": False, "pad_multiple_of": 64, "batch_size": 256},
    }
    assert device_lever("cls_only_last_layer", True, gpu) is True  # a setting wins over the device
    assert device_lever("cast_weights_once", False, cpu) is False

    model, _ = _classifier_and_ids(tiny_bert.parent, "bert")
    assert cast_weights_for(model, "bf16", None, cpu) is not None
    assert cast_weights_for(model, "bf16", None, gpu) is None  # autocast there
    assert cast_weights_for(model, "bf16", False, cpu) is None
    layers, i = _last_layer_slot(model)
    with cls_only_last_layer(model, None):  # the model is on the CPU: the lever is on
        assert type(layers[i]).__name__ == "ClsOnlyLayer"
    with cls_only_last_layer(model, False):
        assert type(layers[i]).__name__ != "ClsOnlyLayer"


def test_cudnn_attention_is_kept_out_of_sdpa_on_cuda_unless_allowed():
    """On a CUDA device SDPA runs without cuDNN's kernels (each new batch shape costs cuDNN a plan, issue 14),
    flash and memory-efficient attention stay allowed, and the flags come back afterwards; allowing cuDNN, or a
    CPU device, leaves SDPA's choice alone."""
    from torch.backends import cuda as backends

    from lightft.speed import attention_backends

    before = (backends.cudnn_sdp_enabled(), backends.flash_sdp_enabled(), backends.mem_efficient_sdp_enabled())
    with attention_backends(torch.device("cuda"), None):
        assert not backends.cudnn_sdp_enabled()
        assert backends.flash_sdp_enabled() and backends.mem_efficient_sdp_enabled()
    assert (backends.cudnn_sdp_enabled(), backends.flash_sdp_enabled(),
            backends.mem_efficient_sdp_enabled()) == before
    for device, allowed in ((torch.device("cuda"), True), (torch.device("cpu"), None)):
        with attention_backends(device, allowed):
            assert backends.cudnn_sdp_enabled() == before[0]


@pytest.mark.parametrize("method,section", [
    ("lora", {"target_modules": "all-linear", "lora_dropout": 0.0}), ("dora", {"lora_dropout": 0.0}),
    ("lokr", {"r": 2}), ("loha", {"r": 2}), ("ia3", {})])
def test_adapter_input_casts_off_changes_no_number_under_bf16(tiny_bert, method, section):
    """PEFT's adapter layers cast their input to fp32 (the adapter weights' dtype) and autocast casts it back to
    bf16 for the matmul: with the round trip skipped, the loss, the logits and every adapter gradient are the
    same, bit for bit, and each layer's setting comes back after the block."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    from lightft.model import apply_method, load_classifier
    from lightft.runtime import set_seed
    from lightft.speed import adapter_input_casts_off

    set_seed(0)
    model, new_modules = load_classifier(str(tiny_bert), ["a", "b", "c"])
    model = apply_method(model, method, section, new_modules)
    for p in model.parameters():  # LoRA's B starts at zero; make every adapter weight count
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.2)
    model.train()
    ids = torch.randint(5, model.config.vocab_size, (4, 12))
    mask = torch.ones_like(ids)
    mask[2:, 8:] = 0
    labels = torch.tensor([0, 1, 2, 1])

    def step(casts_off: bool, precision: str = "bf16"):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same dropout masks
        guard = adapter_input_casts_off(model, precision) if casts_off else contextlib.nullcontext()
        with guard, torch.autocast("cpu", dtype=torch.bfloat16):
            if casts_off and precision == "bf16":
                assert not any(getattr(m, "cast_input_dtype_enabled", False) for m in model.modules()
                               if isinstance(m, BaseTunerLayer))
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        return out.loss.detach(), out.logits.detach(), grads

    loss, logits, grads = step(False)
    loss_off, logits_off, grads_off = step(True)
    assert torch.equal(loss, loss_off) and torch.equal(logits, logits_off)
    assert grads.keys() == grads_off.keys() and all(torch.equal(grads[k], grads_off[k]) for k in grads)
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    switched = [m for m in layers if hasattr(m, "cast_input_dtype_enabled")]
    assert bool(switched) == (method != "ia3")  # IA3 has no switch; the others had something to switch off
    assert layers and all(getattr(m, "cast_input_dtype_enabled", True) for m in layers)  # restored
    with adapter_input_casts_off(model, "fp32"):  # fp32 has no autocast to cast back: left as it is
        assert all(getattr(m, "cast_input_dtype_enabled", True) for m in layers)
