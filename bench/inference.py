"""Inference throughput and latency: lightft's batch prediction vs the standard loader, same weights.

Both sides use the run's fine-tuned model with the adapter merged into the base weights and the run's
max_length. The standard side is the run's `lightft export --merged` output called without lightft:
`transformers.pipeline("text-classification")` for the architecture's own head, and for a mean-pooled head
(the default model's), which plain transformers cannot express, `SentenceTransformer(export).encode(texts)`.
lightft predicts as `Classifier.predict` does with the run's config (length-sorted, dynamically padded
batches; the device's inference levers, speed.DEVICE_LEVERS; the fp32 recheck of close decisions); the
standard side is called as users call it (its defaults: the pipeline one text at a time, encode() in batches
of 32), and with `batch_size=16`. The two are timed in alternation (mean of --rounds passes each). Prints
docs/s over the test split, single-text latency p50/p95, achieved model FLOP/s as a fraction of this
machine's matmul peak measured in the same run, the unmerged adapter's docs/s, how far bf16 logits are from
fp32 ones (and how many texts the recheck margin recomputes), on CPU the share of a forward pass spent in
attention, docs/s with each inference lever switched off on its own, and last:
    speedup=<lightft docs/s / standard side's docs/s> identical_predictions=<true|false>

    .venv/bin/python bench/inference.py [--run runs/bbc-news] [--latency-texts 100] [--rounds 2]
(`make run` first: it writes runs/bbc-news.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flops import dtype_of, forward_flops, matmul_peak  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/bbc-news", help="a complete run directory")
    parser.add_argument("--latency-texts", type=int, default=100, help="texts classified one at a time")
    parser.add_argument("--rounds", type=int, default=2, help="alternating timed passes of each side")
    args = parser.parse_args()
    from lightft.runtime import reuse_freed_memory

    reuse_freed_memory()  # the process setting the lightft command applies (cli), so timings match it

    import torch
    from transformers.utils import logging as hf_logging

    from lightft.config import load_run_config
    from lightft.data import load_splits, tokenize
    from lightft.errors import LightftError
    from lightft.model import load_saved_model
    from lightft.predict import Classifier
    from lightft.runtime import resolve_device, resolve_precision
    from lightft.speed import cast_for_inference

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

    # (a) the run's merged export, loaded and called the standard way for its head (no lightft).
    ref_name, pipe = reference(run, clf.label_names, cfg.model.max_length, device)

    # (b) lightft's batch prediction and (a) the pipeline, both warmed up, then timed in alternation for
    # --rounds rounds: this machine's speed drifts by 10-20% over minutes, so each side gets the same mix.
    clf.predict(texts[:32])
    pipe(texts[:8])
    ours_times, pipe_times, ours_runs, pipe_runs = [], [], [], []
    for _ in range(args.rounds):
        t = time.perf_counter()
        ours_runs.append(np.array([clf.label_names.index(p.label) for p in clf.predict(texts)]))
        ours_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        pipe_runs.append(pipe(texts))
        pipe_times.append(time.perf_counter() - t)
    ours, theirs = ours_runs[0], pipe_runs[0]
    same_every_round = all((o == ours).all() for o in ours_runs) and all((p == theirs).all() for p in pipe_runs)
    ours_s, pipe_s = statistics.mean(ours_times), statistics.mean(pipe_times)
    print("per round, seconds for the split: lightft " + ", ".join(f"{x:.1f}" for x in ours_times)
          + "; standard " + ", ".join(f"{x:.1f}" for x in pipe_times))
    t = time.perf_counter()
    pipe(texts, batch_size=16)
    pipe16_s = time.perf_counter() - t

    # The same with fp32 inference: no bf16 rounding, so its argmax should match the fp32 pipeline exactly.
    clf32 = Classifier.from_run(run, precision="fp32")
    clf32.predict(texts[:32])
    t = time.perf_counter()
    ours32 = np.array([clf.label_names.index(p.label) for p in clf32.predict(texts)])
    ours32_s = time.perf_counter() - t
    del clf32

    # The same without folding LoRA into the base weights (the lever `inference.merge_adapter: false`).
    unmerged = load_saved_model(run / "adapter", cfg.model.name).to(device)
    clf_u = Classifier(unmerged, clf.tokenizer, clf.label_names, clf.max_length, clf.truncation, clf.precision,
                       clf.batch_size, clf.decision, clf.inference,
                       cast_for_inference(unmerged, precision) if clf.cast_model is not None else None)
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
        pipe([text])
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
    print(f"(a) is {ref_name}")
    print(f"{'(a) its defaults':34s}{n / pipe_s:10.1f}{pct(lat_pipe, 50):10.1f}{pct(lat_pipe, 95):10.1f}"
          f"{flops / pipe_s / peak_fp32:15.1%}")
    print(f"{'(a) batch_size=16':34s}{n / pipe16_s:10.1f}{'':10s}{'':10s}"
          f"{flops / pipe16_s / peak_fp32:15.1%}")
    print(f"{'(b) lightft Classifier.predict':34s}{n / ours_s:10.1f}{pct(lat_ours, 50):10.1f}{pct(lat_ours, 95):10.1f}"
          f"{flops / ours_s / peak_ours:15.1%}")
    print(f"{'(b) lightft, precision fp32':34s}{n / ours32_s:10.1f}{'':20s}{flops / ours32_s / peak_fp32:15.1%}")
    print(f"{'(b) lightft, adapter not merged':34s}{n / unmerged_s:10.1f}{'':20s}"
          f"{flops / unmerged_s / peak_ours:15.1%}")
    print(f"fp32 lightft: speedup {pipe_s / ours32_s:.2f}x, predictions differing from (a): "
          f"{int((ours32 != theirs).sum())} of {n}")
    print(f"model forward FLOPs over the split: {flops / 1e12:.2f} TFLOP; matmul peak {precision} "
          f"{peak_ours / 1e9:.0f} GFLOP/s, fp32 {peak_fp32 / 1e9:.0f} GFLOP/s (measured now); every row counts "
          "the full model's FLOPs, so lightft's [CLS]-only last layer shows as a higher fraction")
    if precision != "fp32":
        recheck_report(clf, ids, precision)
    if device.type == "cpu":
        attention_report(clf, ids, precision, lengths)
    lever_report(clf, texts)
    identical = bool((ours == theirs).all()) and same_every_round
    print(f"predictions differing: {int((ours != theirs).sum())} of {n}; "
          f"speedup vs batch_size=16: {pipe16_s / ours_s:.2f}x")
    print(f"speedup={pipe_s / ours_s:.2f} identical_predictions={str(identical).lower()}")


def reference(run: Path, names: list[str], max_length: int, device) -> tuple[str, Callable]:
    """(description, predict(texts, batch_size=None) -> label ids) for the run's merged export run without
    lightft, as README's "Loading an adapter without lightft" says: `pipeline("text-classification")` on the
    merged checkpoint for the architecture's own head, `SentenceTransformer(folder).encode(texts)` (whose
    outputs are the logits) for a mean-pooled head, which plain transformers cannot express (a pipeline over
    its weights would read the untrained [CLS] pooler: different predictions)."""
    from transformers import pipeline

    from lightft.export import export_merged

    with tempfile.TemporaryDirectory(prefix="lightft-inference-bench-") as tmp:  # both load into memory
        folder = Path(tmp) / "merged"
        export_merged(run, folder)
        mean_head = (folder / "modules.json").is_file()
        if mean_head:
            from sentence_transformers import SentenceTransformer

            st = SentenceTransformer(str(folder), device=str(device))
        else:
            pipe = pipeline("text-classification", model=str(folder), device=0 if device.type == "cuda" else -1)
    if mean_head:

        def encode(texts: list[str], batch_size: int | None = None) -> np.ndarray:
            kwargs = {} if batch_size is None else {"batch_size": batch_size}
            return st.encode(texts, convert_to_numpy=True, show_progress_bar=False, **kwargs).argmax(1)

        return "SentenceTransformer(export).encode(texts) (mean-pooled head; logits out)", encode

    def classify(texts: list[str], batch_size: int | None = None) -> np.ndarray:
        kwargs = {"truncation": True, "max_length": max_length}
        if batch_size is not None:
            kwargs["batch_size"] = batch_size
        return np.array([names.index(r["label"]) for r in pipe(texts, **kwargs)])

    return 'pipeline("text-classification", model=export)(texts)', classify


def recheck_report(clf, ids: list[list[int]], precision: str) -> None:
    """How far reduced-precision logits are from fp32 ones, and how many texts the recheck margin recomputes."""
    from lightft.evaluate import predict_logits

    options = {**clf.inference, "recheck_margin": 0.0}
    low = predict_logits(clf.model, ids, clf.pad_id, clf.batch_size, precision, progress=False,
                         cast_model=clf.cast_model, **options)
    full = predict_logits(clf.model, ids, clf.pad_id, clf.batch_size, "fp32", progress=False, **options)
    top2 = np.sort(low, axis=1)[:, -2:]
    gap = top2[:, 1] - top2[:, 0]
    margin = clf.inference.get("recheck_margin", 0.0)
    print(f"largest |{precision} - fp32| logit difference: {np.abs(low - full).max():.4f}; argmax differing without "
          f"the recheck: {int((low.argmax(1) != full.argmax(1)).sum())}; texts recomputed in fp32 at margin "
          f"{margin}: {int((gap < margin).sum())} (at 1.0: {int((gap < 1.0).sum())})")


def lever_report(clf, texts: list[str], rounds: int = 2) -> None:
    """docs/s of Classifier.predict with each inference lever switched off (or, for the GPU's batch size and
    precision, moved) on its own, over every other test text, the variants interleaved for ``rounds`` rounds (a
    shared machine drifts; the mean is printed)."""
    import os

    import torch

    # the tokenizers library's own reading: unset is on; "", false, f, 0, no, n and off are off
    tokenizer_threads = os.environ.get("TOKENIZERS_PARALLELISM", "true").lower() not in (
        "", "false", "f", "0", "no", "n", "off")
    from lightft.speed import resolve_attention

    device = next(clf.model.parameters()).device
    own_attention = resolve_attention(clf.inference.get("attention"), device) is None
    variants = {
        "all levers on (the defaults)": {},
        # where the device already keeps the model's own (a GPU, a CPU with AMX), the other choice is matmul
        ("attention: matmul" if own_attention else "attention: the model's own (SDPA)"):
            {"attention": "matmul" if own_attention else "default"},
        "full last layer (no [CLS]-only)": {"cls_only": False},
        "autocast instead of the bf16 copy": {"cast_model": None},
        "one batch at a time on all cores": {"workers": 1},
        ("tokenizer on one thread" if tokenizer_threads else "tokenizer on all cores"):
            {"env": "false" if tokenizer_threads else "true"},
    }
    if device.type == "cuda":  # the levers above are already off on a GPU
        variants.update({f"batch_size {b}": {"batch_size": b} for b in (16, 64, 256) if b != clf.batch_size})
        variants["precision fp32 (no recheck)"] = {"precision": "fp32"}
    sample = texts[::2]
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    options, cast, batch, precision = dict(clf.inference), clf.cast_model, clf.batch_size, clf.precision
    env = os.environ.get("TOKENIZERS_PARALLELISM")
    own = ("cast_model", "env", "batch_size", "precision")
    try:
        for _ in range(rounds):
            for name, change in variants.items():
                clf.inference = {**options, **{k: v for k, v in change.items() if k not in own}}
                clf.cast_model = change.get("cast_model", cast)
                clf.batch_size, clf.precision = change.get("batch_size", batch), change.get("precision", precision)
                if "env" in change:
                    os.environ["TOKENIZERS_PARALLELISM"] = change["env"]
                elif env is None:
                    os.environ.pop("TOKENIZERS_PARALLELISM", None)
                else:
                    os.environ["TOKENIZERS_PARALLELISM"] = env
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                t = time.perf_counter()
                clf.predict(sample)
                seconds[name].append(time.perf_counter() - t)
    finally:
        clf.inference, clf.cast_model, clf.batch_size, clf.precision = options, cast, batch, precision
        if env is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = env
    base = statistics.mean(seconds["all levers on (the defaults)"])
    print(f"inference levers, each switched off on its own ({len(sample)} texts, mean of {rounds} interleaved "
          f"rounds; tokenizer on {'all cores' if tokenizer_threads else 'one thread'} by default):\n"
          f"{'':36s}{'docs/s':>10s}{'x slower':>10s}")
    for name, secs in seconds.items():
        print(f"{name:36s}{len(sample) / statistics.mean(secs):10.1f}{statistics.mean(secs) / base:10.2f}")


def attention_report(clf, ids: list[list[int]], precision: str, lengths: list[int]) -> None:
    """Share of one forward pass's CPU time spent in attention (the kernels SDPA, or matmul attention's
    batched matmuls, softmax and mask) vs attention's share of the FLOPs, on the path predict takes."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from lightft.runtime import autocast, pad_batch
    from lightft.speed import cls_only_last_layer, inference_attention

    longest = sorted(range(len(ids)), key=lambda i: lengths[i])[-clf.batch_size:]
    batch = pad_batch([ids[i] for i in longest], clf.pad_id)
    cast = clf.cast_model is not None
    model = clf.cast_model if cast else clf.model
    kernel = ("attention", "aten::bmm", "aten::_softmax", "aten::masked_fill")
    with torch.inference_mode(), autocast(torch.device("cpu"), "fp32" if cast else precision), \
            inference_attention(model, clf.inference.get("attention")), \
            cls_only_last_layer(model, clf.inference.get("cls_only", False)):
        model(**batch)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                model(**batch)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    attention = sum(e.self_cpu_time_total for e in events if any(k in e.key for k in kernel))
    c, s = clf.model.config, batch["input_ids"].shape[1]
    flop_share = 4 * s * s * c.hidden_size * c.num_hidden_layers / forward_flops(c, [s])  # QK^T and AV
    print(f"one {precision} forward pass as predict runs it, {len(longest)} texts of {s} tokens: attention "
          f"takes {attention / total:.0%} of the CPU time for {flop_share:.0%} of the (full model's) FLOPs")


if __name__ == "__main__":
    main()
