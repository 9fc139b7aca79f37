"""The training loop: one readable flow on HF Accelerate (one CPU/GPU here; DDP/FSDP via `accelerate launch`).

Each epoch trains on length-grouped, dynamically padded batches under autocast, then scores the validation
split; the epoch with the best validation metric is the model that is kept. The test split is never seen here.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lightft.config import TrainConfig
from lightft.errors import LightftError
from lightft.inference import predict_logits
from lightft.metrics import compute_metrics
from lightft.runtime import (
    LengthGroupedBatchSampler,
    pad_batch,
    release_free_memory,
    resolve_device,
    resolve_eval_batch_size,
    resolve_precision,
    reuse_freed_memory,
)

log = logging.getLogger("lightft")


@dataclass
class TrainResult:
    best_epoch: int
    epochs: list[dict[str, Any]] = field(default_factory=list)  # per epoch: loss, validation metrics
    steps: list[dict[str, float]] = field(default_factory=list)  # per logging step: step, epoch, loss, lr
    train_seconds: float = 0.0
    precision: str = "fp32"
    device: str = "cpu"
    num_processes: int = 1


class _IndexDataset(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def _optimizer(model: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters")
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.learning_rate)


def _trainable_state(model: Any) -> dict[str, torch.Tensor]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k in names}


def _keep_trainable_weights(models: list[Any], weights: list[dict[str, torch.Tensor]], _output_dir: str) -> None:
    """Accelerate ``save_state`` hook: checkpoint only the trained weights (LoRA's are ~1% of the model); the
    frozen ones are the base model's, loaded again on resume. Saves writing the whole model every epoch."""
    for model, state in zip(models, weights, strict=True):
        trained = {name for name, p in model.named_parameters() if p.requires_grad}
        for key in [k for k in state if k not in trained]:
            del state[key]


class TrainingInterrupted(Exception):
    """Ctrl-C during training: a checkpoint was written at the last finished step."""


def _save_checkpoint(accelerator: Any, directory: Path, state: dict[str, Any],
                     best_state: dict[str, torch.Tensor] | None) -> None:
    """Write the checkpoint beside the old one, then swap it in, so a kill never leaves a torn checkpoint.

    Every process saves its part (its RNG states); the main process adds the trainer state and swaps."""
    import shutil

    from safetensors.torch import save_file

    from lightft.rundir import atomic_write_json

    tmp = directory.with_name(directory.name + ".tmp")
    old = directory.with_name(directory.name + ".old")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if best_state is not None:
            save_file({k: v.contiguous() for k, v in best_state.items()}, str(tmp / "best_trainable.safetensors"))
        atomic_write_json(tmp / "trainer_state.json", state)
        if directory.exists():
            directory.rename(old)
        tmp.rename(directory)
        if old.exists():
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def _load_state(accelerator: Any, directory: Path) -> None:
    """``accelerator.load_state``, with a warning where it silently skips a missing or corrupted RNG state
    (Accelerate only logs that at info level): the resumed run then cannot match an uninterrupted one."""
    messages: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    source = logging.getLogger("accelerate.checkpointing")
    handler, level = Catch(logging.INFO), source.level
    source.addHandler(handler)
    source.setLevel(logging.INFO)
    try:
        accelerator.load_state(str(directory), strict=False)
    finally:
        source.removeHandler(handler)
        source.setLevel(level)
    if any("could not load random states" in m.lower() for m in messages):
        log.warning("the checkpoint's RNG state in %s is missing or corrupted; training continues from fresh "
                    "random states, so this resumed run will not reproduce an uninterrupted one exactly", directory)


def train_model(
    model: Any,
    train_ids: list[list[int]],
    train_labels: list[int],
    val_ids: list[list[int]],
    val_labels: list[int],
    label_names: list[str],
    cfg: TrainConfig,
    seed: int,
    pad_id: int,
    log_dir: Path | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    max_length: int | None = None,
    inference: dict[str, Any] | None = None,
    validate_start: bool = False,
    val_owner: Any = None,
) -> TrainResult:
    """Fine-tune ``model`` in place and leave it holding the weights of the best validation epoch.

    With ``checkpoint_dir``, the training state (trained weights, optimizer, scheduler, RNG states, position in
    the data order, history) is saved after every epoch, every ``cfg.checkpoint_every`` steps and on Ctrl-C;
    ``resume`` continues from it and ends exactly where an uninterrupted run would. ``inference``: the
    keyword arguments of the validation passes' ``predict_logits`` (``config.inference_options``).
    ``validate_start``: the untrained start (a probe-initialised head) is scored too, as epoch 0, and kept only
    when every trained epoch scores lower on validation. ``val_owner``: the validation text of each of
    ``val_ids`` when long texts are windows (``lightft.windows``); ``val_labels`` are then per text.
    """
    import signal

    from accelerate import Accelerator
    from safetensors.torch import load_file
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    device = resolve_device()
    precision = resolve_precision(cfg.precision, device)
    trackers = list(cfg.report_to) if log_dir is not None else []
    # Accelerate keeps its settings in a process-wide singleton and refuses a second Accelerator with another
    # precision; a process that trains twice (a sweep, a notebook, the test suite) starts each run afresh.
    # The process group (PartialState) is kept, so this is safe under `accelerate launch` too.
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)
    reuse_freed_memory()  # training allocates large activations each step too
    accelerator = Accelerator(
        mixed_precision={"fp32": "no"}.get(precision, precision), cpu=device.type == "cpu",
        log_with=trackers or None, project_dir=str(log_dir) if log_dir is not None else None,
    )
    if trackers:
        # TensorBoard event files land in <run>/tensorboard; `tensorboard --logdir <run>` shows them.
        accelerator.init_trackers("tensorboard", config={k: v for k, v in vars(cfg).items()
                                                         if isinstance(v, (int, float, str, bool))})
    pad_to = None if cfg.dynamic_padding else max_length
    eval_batch = resolve_eval_batch_size(cfg.eval_batch_size, accelerator.device)
    sampler = LengthGroupedBatchSampler([len(x) for x in train_ids], cfg.batch_size, seed, cfg.group_by_length)
    labels = torch.tensor(train_labels, dtype=torch.long)

    def collate(indices: list[int]) -> dict[str, torch.Tensor]:
        batch = pad_batch([train_ids[i] for i in indices], pad_id, pad_to)
        batch["labels"] = labels[indices]
        return batch

    # A loader of its own generator: creating an iterator then draws from it, not from the global RNG, so a
    # resumed run (which creates its iterator after restoring the RNG) sees the same dropout masks.
    loader = torch.utils.data.DataLoader(_IndexDataset(len(train_ids)), batch_sampler=sampler, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(seed))
    optimizer = _optimizer(model, cfg)
    total_steps = cfg.epochs * len(loader)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    accelerator.register_save_state_pre_hook(_keep_trainable_weights)

    class_weights = None
    if cfg.class_weighted_loss:  # inverse class frequency, normalised so a balanced set gets weight 1
        counts = torch.bincount(labels, minlength=len(label_names)).float().clamp(min=1)
        class_weights = counts.sum() / (len(label_names) * counts)
    tuner = getattr(accelerator.unwrap_model(model), "base_model", None)
    adaptive = tuner if hasattr(tuner, "update_and_allocate") else None
    result = TrainResult(best_epoch=cfg.epochs, precision=precision, device=str(accelerator.device),
                         num_processes=accelerator.num_processes)
    best_score, best_state = float("-inf"), None
    step, first_epoch, skip, running, seen, elapsed_before = 0, 1, 0, 0.0, 0, 0.0
    if resume:
        if checkpoint_dir is None or not (checkpoint_dir / "trainer_state.json").is_file():
            raise LightftError(f"no checkpoint to resume from in {checkpoint_dir}")
        _load_state(accelerator, checkpoint_dir)  # frozen weights come from the base model
        state = json.loads((checkpoint_dir / "trainer_state.json").read_text(encoding="utf-8"))
        step, first_epoch, skip = state["step"], state["epoch"], state["batches_done"]
        running, seen, elapsed_before = state["running_loss"], state["batches_done"], state["elapsed_seconds"]
        best_score, result.best_epoch = state["best_score"], state["best_epoch"]
        result.epochs, result.steps = state["epochs"], state["steps"]
        if (checkpoint_dir / "best_trainable.safetensors").is_file():
            best_state = load_file(str(checkpoint_dir / "best_trainable.safetensors"))
        if accelerator.is_local_main_process:
            log.info("resuming at epoch %d, step %d", first_epoch, step)

    def checkpoint(epoch: int, batches_done: int) -> None:
        if checkpoint_dir is None:
            return
        state = {"epoch": epoch, "batches_done": batches_done, "step": step, "running_loss": running,
                 "best_score": best_score, "best_epoch": result.best_epoch, "epochs": result.epochs,
                 "steps": result.steps, "elapsed_seconds": elapsed_before + time.perf_counter() - start}
        _save_checkpoint(accelerator, checkpoint_dir, state, best_state)

    def validate(epoch: int) -> dict[str, float]:
        logits = predict_logits(accelerator.unwrap_model(model), val_ids, pad_id, eval_batch, precision,
                                desc="validation", progress=accelerator.is_local_main_process, owner=val_owner,
                                **(inference or {}))
        metrics = compute_metrics(val_labels, logits.argmax(axis=1), label_names)
        accelerator.log({"validation/accuracy": metrics["accuracy"], "validation/macro_f1": metrics["macro_f1"],
                         "epoch": epoch}, step=step)
        return {"val_accuracy": metrics["accuracy"], "val_macro_f1": metrics["macro_f1"]}

    if validate_start and val_ids and not resume:
        scores = validate(0)
        best_score, result.best_epoch = scores[f"val_{cfg.select_metric}"], 0
        best_state = _trainable_state(accelerator.unwrap_model(model))
        result.epochs.append({"epoch": 0, "train_loss": None, **scores, "elapsed_seconds": 0.0})
        if accelerator.is_local_main_process:
            log.info("epoch 0 (the start, before training): validation accuracy %.4f macro-F1 %.4f",
                     scores["val_accuracy"], scores["val_macro_f1"])

    # Ctrl-C is noted and acted on after the current optimizer step, so the checkpoint is consistent.
    interrupted = []
    previous_handler = signal.getsignal(signal.SIGINT)
    if checkpoint_dir is not None:
        signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    start = time.perf_counter()
    try:
        for epoch in range(first_epoch, cfg.epochs + 1):
            sampler.use_epoch(epoch)
            model.train()
            if epoch != first_epoch or not resume:
                running, seen = 0.0, 0
            batches = accelerator.skip_first_batches(loader, skip) if skip else loader
            bar = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False,
                       initial=skip, total=len(loader), disable=not accelerator.is_local_main_process)
            skip = 0
            for batch in bar:
                if class_weights is None:
                    loss = model(**batch).loss
                else:
                    targets = batch.pop("labels")
                    loss = torch.nn.functional.cross_entropy(model(**batch).logits.float(), targets,
                                                             weight=class_weights.to(targets.device))
                accelerator.backward(loss)
                if cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                if adaptive is not None:  # AdaLoRA re-allocates ranks between the gradient step and zero_grad
                    adaptive.update_and_allocate(step + 1)
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                running += loss.item()
                seen += 1
                if step % cfg.log_every == 0 or seen == len(loader):
                    lr = scheduler.get_last_lr()[0]
                    result.steps.append({"step": step, "epoch": epoch, "loss": running / seen, "lr": lr})
                    accelerator.log({"train/loss": running / seen, "train/lr": lr}, step=step)
                    bar.set_postfix(loss=f"{running / seen:.4f}")
                if interrupted:
                    checkpoint(epoch, seen)
                    raise TrainingInterrupted(f"interrupted at epoch {epoch}, step {step}")
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and seen < len(loader):
                    checkpoint(epoch, seen)
            bar.close()
            record: dict[str, Any] = {"epoch": epoch, "train_loss": running / max(seen, 1)}
            if val_ids:
                scores = validate(epoch)
                record.update(scores)
                score = scores[f"val_{cfg.select_metric}"]
                # Ties keep the earlier epoch, except the untrained start: a trained epoch that ties it wins.
                if score > best_score or (score == best_score and result.best_epoch == 0):
                    best_score, result.best_epoch = score, epoch
                    best_state = _trainable_state(accelerator.unwrap_model(model))
                model.train()
            release_free_memory()  # the validation batches' shapes differ from training's; give their pages back
            record["elapsed_seconds"] = elapsed_before + time.perf_counter() - start
            result.epochs.append(record)
            if accelerator.is_local_main_process:
                val = (f", validation accuracy {record['val_accuracy']:.4f} macro-F1 {record['val_macro_f1']:.4f}"
                       if "val_accuracy" in record else "")
                log.info("epoch %d/%d: train loss %.4f%s", epoch, cfg.epochs, record["train_loss"], val)
            checkpoint(epoch + 1, 0)
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    result.train_seconds = elapsed_before + time.perf_counter() - start
    plain = accelerator.unwrap_model(model)
    if best_state is not None:
        plain.load_state_dict(best_state, strict=False)
    plain.eval()
    accelerator.end_training()
    accelerator.free_memory()
    return result
