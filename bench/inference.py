"""Inference throughput and latency: lightft's batch prediction vs `transformers.pipeline`, same weights.

Both sides use the run's fine-tuned model with the adapter merged into the base weights and the run's
max_length. lightft predicts with length-sorted, dynamically padded batches under `inference_mode` and
bf16 autocast where supported; the pipeline is called as users call it (`pipeline(texts)`, its defaults),
and, for reference, with `batch_size=16`. Prints docs/s over the test split, single-text latency p50/p95,
achieved model FLOP/s as a fraction of this machine's matmul peak measured in the same run, the unmerged
adapter's docs/s, how far bf16 logits are from fp32 ones (and how many texts the recheck margin recomputes),
on CPU the share of a forward pass spent in attention kernels, and last:
    speedup=<lightft docs/s / pipeline docs/s> identical_predictions=<true|false>

    .venv/bin/python bench/inference.py [--run runs/bbc-news] [--latency-texts 100]
(`make run` first: it writes runs/bbc-news.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flops import dtype_of, forward_flops, matmul_peak  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/bbc-news", help="a complete run directory")
    parser.add_argument("--latency-texts", type=int, default=100, help="texts classified one at a time")
    args = parser.parse_args()

    import torch
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    from lightft.config import load_run_config
    from lightft.data import load_splits, tokenize
    from lightft.errors import LightftError
    from lightft.model import load_saved_model, merged_for_inference
    from lightft.predict import Classifier
    from lightft.runtime import resolve_device, resolve_precision

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    run = Path(args.run)
    try:
        clf = Classifier.from_run(run)
    except LightftError as exc:
        raise SystemExit(f"error: {exc} (run `make run` first, or pass --run)") from None
    cfg = load_run_config(run)
    texts = load_splits(cfg.data, cfg.seed).test.texts
    device = resolve_device()
    precision = resolve_precision(clf.precision, device)

    # (b) lightft: batch prediction, warm-up first.
    clf.predict(texts[:32])
    t = time.perf_counter()
    ours = np.array([clf.label_names.index(p.label) for p in clf.predict(texts)])
    ours_s = time.perf_counter() - t

    # (a) transformers.pipeline on the merged model saved as a plain checkpoint.
    with tempfile.TemporaryDirectory() as tmp:
        merged = merged_for_inference(load_saved_model(run / "adapter", cfg.model.name))
        merged.save_pretrained(tmp)
        clf.tokenizer.save_pretrained(tmp)
        pipe = pipeline("text-classification", model=tmp, device=0 if device.type == "cuda" else -1)
    kwargs = {"truncation": True, "max_length": cfg.model.max_length}
    pipe(texts[:8], **kwargs)
    t = time.perf_counter()
    theirs = np.array([clf.label_names.index(r["label"]) for r in pipe(texts, **kwargs)])
    pipe_s = time.perf_counter() - t
    t = time.perf_counter()
    pipe(texts, batch_size=16, **kwargs)
    pipe16_s = time.perf_counter() - t

    # The same with fp32 inference: no bf16 rounding, so its argmax should match the fp32 pipeline exactly.
    clf32 = Classifier.from_run(run, precision="fp32")
    clf32.predict(texts[:32])
    t = time.perf_counter()
    ours32 = np.array([clf.label_names.index(p.label) for p in clf32.predict(texts)])
    ours32_s = time.perf_counter() - t
    del clf32

    # The same without folding LoRA into the base weights (the lever `model.merge_adapter: false`).
    unmerged = load_saved_model(run / "adapter", cfg.model.name).to(device)
    clf_u = Classifier(unmerged, clf.tokenizer, clf.label_names, clf.max_length, clf.truncation, clf.precision,
                       clf.batch_size, clf.threshold, clf.inference)
    clf_u.predict(texts[:32])
    t = time.perf_counter()
    clf_u.predict(texts)
    unmerged_s = time.perf_counter() - t
    del clf_u, unmerged

    # Single-text latency.
    sample = texts[: args.latency_texts]
    lat_ours, lat_pipe = [], []
    for text in sample:
        t = time.perf_counter()
        clf.predict([text])
        lat_ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        pipe(text, **kwargs)
        lat_pipe.append(time.perf_counter() - t)

    def pct(xs: list[float], q: int) -> float:
        return 1000 * statistics.quantiles(xs, n=100)[q - 1]

    ids = tokenize(texts, clf.tokenizer, clf.max_length, clf.truncation)
    lengths = [len(x) for x in ids]
    flops = forward_flops(clf.model.config, lengths)
    dev = "cuda" if device.type == "cuda" else "cpu"
    peak_ours = matmul_peak(dtype_of(precision), dev)
    peak_fp32 = matmul_peak(torch.float32, dev)
    n = len(texts)
    where = torch.cuda.get_device_name(0) if dev == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"device {device} ({where}), {n} test documents, max_length {clf.max_length}, lightft precision {precision}")
    print(f"{'':34s}{'docs/s':>10s}{'p50 ms':>10s}{'p95 ms':>10s}{'FLOP/s of peak':>16s}")
    print(f"{'(a) pipeline(texts)':34s}{n / pipe_s:10.1f}{pct(lat_pipe, 50):10.1f}{pct(lat_pipe, 95):10.1f}"
          f"{flops / pipe_s / peak_fp32:15.1%}")
    print(f"{'(a) pipeline(texts, batch_size=16)':34s}{n / pipe16_s:10.1f}{'':10s}{'':10s}"
          f"{flops / pipe16_s / peak_fp32:15.1%}")
    print(f"{'(b) lightft Classifier.predict':34s}{n / ours_s:10.1f}{pct(lat_ours, 50):10.1f}{pct(lat_ours, 95):10.1f}"
          f"{flops / ours_s / peak_ours:15.1%}")
    print(f"{'(b) lightft, precision fp32':34s}{n / ours32_s:10.1f}{'':20s}{flops / ours32_s / peak_fp32:15.1%}")
    print(f"{'(b) lightft, adapter not merged':34s}{n / unmerged_s:10.1f}{'':20s}"
          f"{flops / unmerged_s / peak_ours:15.1%}")
    print(f"fp32 lightft: speedup {pipe_s / ours32_s:.2f}x, predictions differing from the pipeline: "
          f"{int((ours32 != theirs).sum())} of {n}")
    print(f"model forward FLOPs over the split: {flops / 1e12:.2f} TFLOP; matmul peak {precision} "
          f"{peak_ours / 1e9:.0f} GFLOP/s, fp32 {peak_fp32 / 1e9:.0f} GFLOP/s (measured now)")
    if precision != "fp32":
        recheck_report(clf, ids, precision)
    if device.type == "cpu":
        attention_report(clf, ids, precision, lengths)
    identical = bool((ours == theirs).all())
    print(f"predictions differing: {int((ours != theirs).sum())} of {n}; "
          f"speedup vs batch_size=16 pipeline: {pipe16_s / ours_s:.2f}x")
    print(f"speedup={pipe_s / ours_s:.2f} identical_predictions={str(identical).lower()}")


def recheck_report(clf, ids: list[list[int]], precision: str) -> None:
    """How far reduced-precision logits are from fp32 ones, and how many texts the recheck margin recomputes."""
    from lightft.evaluate import predict_logits

    options = {**clf.inference, "recheck_margin": 0.0}
    low = predict_logits(clf.model, ids, clf.pad_id, clf.batch_size, precision, progress=False, **options)
    full = predict_logits(clf.model, ids, clf.pad_id, clf.batch_size, "fp32", progress=False, **options)
    top2 = np.sort(low, axis=1)[:, -2:]
    gap = top2[:, 1] - top2[:, 0]
    margin = clf.inference.get("recheck_margin", 0.0)
    print(f"largest |{precision} - fp32| logit difference: {np.abs(low - full).max():.4f}; argmax differing without "
          f"the recheck: {int((low.argmax(1) != full.argmax(1)).sum())}; texts recomputed in fp32 at margin "
          f"{margin}: {int((gap < margin).sum())} (at 1.0: {int((gap < 1.0).sum())})")


def attention_report(clf, ids: list[list[int]], precision: str, lengths: list[int]) -> None:
    """Share of one forward pass's CPU time spent in attention kernels vs attention's share of the FLOPs."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from lightft.runtime import autocast, pad_batch

    longest = sorted(range(len(ids)), key=lambda i: lengths[i])[-clf.batch_size:]
    batch = pad_batch([ids[i] for i in longest], clf.pad_id)
    device = torch.device("cpu")
    with torch.inference_mode(), autocast(device, precision):
        clf.model(**batch)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                clf.model(**batch)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    attention = sum(e.self_cpu_time_total for e in events if "attention" in e.key or e.key == "aten::bmm")
    c, s = clf.model.config, batch["input_ids"].shape[1]
    flop_share = 4 * s * s * c.hidden_size * c.num_hidden_layers / forward_flops(c, [s])  # QK^T and AV
    print(f"one {precision} forward pass, {len(longest)} texts of {s} tokens: attention kernels take "
          f"{attention / total:.0%} of the CPU time for {flop_share:.0%} of the FLOPs")


if __name__ == "__main__":
    main()
