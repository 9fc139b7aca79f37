"""The training loop: one readable flow on HF Accelerate (one CPU/GPU here; DDP/FSDP via `accelerate launch`).

Each epoch trains on length-grouped, dynamically padded batches under autocast, then scores the validation
split; the epoch with the best validation metric is the model that is kept. The test split is never seen here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lightft.config import TrainConfig
from lightft.errors import LightftError
from lightft.inference import Decision, predict_logits
from lightft.metrics import as_targets, is_label_sets, score_predictions
from lightft.runtime import (
    LengthGroupedBatchSampler,
    pad_batch,
    progress_bar,
    release_free_memory,
    resolve_device,
    resolve_eval_batch_size,
    resolve_precision,
)
from lightft.speed import adapter_input_casts_off, attention_backends, device_lever

log = logging.getLogger("lightft")


@dataclass
class TrainResult:
    best_epoch: int
    epochs: list[dict[str, Any]] = field(default_factory=list)  # per epoch: loss, validation metrics
    steps: list[dict[str, float]] = field(default_factory=list)  # per logging step: step, epoch, loss, lr
    train_seconds: float = 0.0  # the epochs: optimizer steps and the validation pass after each
    validation_seconds: float = 0.0  # every validation pass, the untrained start's included
    step_seconds: float = 0.0  # train_seconds less its validation passes
    precision: str = "fp32"
    device: str = "cpu"
    num_processes: int = 1
    resumed_seconds: float = 0.0  # of train_seconds, those an interrupted process trained before --resume
    select_metric: str = "accuracy"  # the validation metric that picked best_epoch (train.select_metric resolved)
    epochs_planned: int = 0  # train.epochs, or more where train.min_steps raised it (the schedule's length)
    batch_size: int = 0  # train.batch_size, or train.small_batch_size where the training set is small
    stopped_early: bool = False  # a trained epoch was perfect on validation, so the rest were not trained


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

    from lightft.rundir import atomic_write_json, checkpoint_swap_paths

    tmp, old = checkpoint_swap_paths(directory)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        settle_checkpoint(directory)  # a .old left by a kill during the last swap would block the rename below
        if tmp.exists():
            shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if best_state is not None:
            save_file({k: v.contiguous() for k, v in best_state.items()}, str(tmp / "best_trainable.safetensors"))
        atomic_write_json(tmp / "trainer_state.json", state)  # written last: it marks tmp complete
        if directory.exists():
            directory.rename(old)
        tmp.rename(directory)
        if old.exists():
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def settle_checkpoint(directory: Path) -> None:
    """Finish a checkpoint swap that a kill cut short (``_save_checkpoint``: write ``.tmp``, rename the checkpoint
    to ``.old``, ``.tmp`` to the checkpoint, remove ``.old``). Killed between the renames: the complete ``.tmp``
    (its trainer_state.json is written last) becomes the checkpoint, else ``.old`` is put back. Killed while
    ``.old`` was being removed: the rest of it goes. A ``.tmp`` without trainer_state.json is left to the next
    save, which starts by removing it. Safe to call from every process at once: a rename another process
    made first fails here and is let be."""
    import shutil

    from lightft.rundir import checkpoint_swap_paths

    tmp, old = checkpoint_swap_paths(directory)
    for source in (tmp, old):
        if not directory.exists() and (source / "trainer_state.json").is_file():
            try:
                source.rename(directory)
            except OSError:  # another process settled it first
                pass
    if directory.exists() and old.exists():
        shutil.rmtree(old, ignore_errors=True)


def _load_state(accelerator: Any, directory: Path) -> None:
    """``accelerator.load_state``, with a warning where it silently skips a missing or corrupted RNG state
    (Accelerate only logs that at info level): the resumed run then cannot match an uninterrupted one."""
    messages: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    source = logging.getLogger("accelerate.checkpointing")
    handler, level, propagate = Catch(logging.INFO), source.level, source.propagate
    source.addHandler(handler)
    source.setLevel(logging.INFO)
    source.propagate = False  # caught here, not printed: "[RANK 0] All model weights loaded successfully" x5
    try:
        accelerator.load_state(str(directory), strict=False)
    finally:
        source.removeHandler(handler)
        source.setLevel(level)
        source.propagate = propagate
    if any("could not load random states" in m.lower() for m in messages):
        log.warning("the checkpoint's RNG state in %s is missing or corrupted; training continues from fresh "
                    "random states, so this resumed run will not reproduce an uninterrupted one exactly", directory)


@dataclass
class TrainState:
    """Where training stands, in one object: what a checkpoint's ``trainer_state.json`` holds and a resumed
    run starts from. The best epoch's trained weights travel beside it (``best_trainable.safetensors``)."""

    epoch: int = 1  # the epoch being trained, or the next one after an epoch ends
    batches_done: int = 0  # batches of ``epoch`` already trained
    step: int = 0  # optimizer steps so far
    running_loss: float = 0.0  # sum of this epoch's batch losses so far
    best_score: float = float("-inf")  # validation ``select_metric`` of the best epoch
    best_epoch: int = 0
    epochs: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, float]] = field(default_factory=list)
    elapsed_seconds: float = 0.0  # training seconds before this process took over

    @classmethod
    def read(cls, directory: Path) -> TrainState:
        data = json.loads((directory / "trainer_state.json").read_text(encoding="utf-8"))
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Loop:
    """One training run's moving parts (Accelerate objects, data, state) and its named steps."""

    def __init__(self, accelerator: Any, model: Any, optimizer: Any, scheduler: Any, loader: Any, sampler: Any,
                 cfg: TrainConfig, state: TrainState, validate: Any, checkpoint_dir: Path | None,
                 class_weights: torch.Tensor | None, multi_label: bool = False) -> None:
        self.accelerator, self.model, self.optimizer, self.scheduler = accelerator, model, optimizer, scheduler
        self.loader, self.sampler, self.cfg, self.state = loader, sampler, cfg, state
        self.score, self.checkpoint_dir, self.class_weights = validate, checkpoint_dir, class_weights
        self.best_weights: dict[str, torch.Tensor] | None = None
        tuner = getattr(accelerator.unwrap_model(model), "base_model", None)
        self.adaptive = tuner if hasattr(tuner, "update_and_allocate") else None  # AdaLoRA
        self.started = time.perf_counter()
        self.interrupted: list[bool] = []
        # sees each trained epoch's record and the record of the epoch kept so far
        self.on_epoch: Callable[[dict[str, Any], dict[str, Any]], None] | None = None
        self.validation_seconds: dict[int, float] = {}  # per epoch (0: the start), for the run's phase table
        self.selected_by = select_metric(cfg.select_metric, multi_label)  # what train.select_metric auto means here
        self.stopped_early = False  # cannot_improve ended training before the planned epochs

    @property
    def main(self) -> bool:
        return self.accelerator.is_local_main_process

    def elapsed(self) -> float:
        return self.state.elapsed_seconds + time.perf_counter() - self.started

    def resume_from(self, directory: Path) -> None:
        from safetensors.torch import load_file

        if not (directory / "trainer_state.json").is_file():
            raise LightftError(f"no checkpoint to resume from in {directory}")
        _load_state(self.accelerator, directory)  # frozen weights come from the base model
        self.state = TrainState.read(directory)
        if (directory / "best_trainable.safetensors").is_file():
            self.best_weights = load_file(str(directory / "best_trainable.safetensors"))
        if self.main:
            log.info("resuming at epoch %d, step %d", self.state.epoch, self.state.step)

    def checkpoint(self) -> None:
        if self.checkpoint_dir is None:
            return
        saved = self.state.as_json() | {"elapsed_seconds": self.elapsed()}
        _save_checkpoint(self.accelerator, self.checkpoint_dir, saved, self.best_weights)

    def keep_if_best(self, epoch: int, scores: dict[str, float]) -> None:
        """Keep ``epoch`` if its validation ``select_metric`` is the best so far. Ties keep the earlier epoch,
        except the untrained start: a trained epoch that ties it wins. (Breaking ties by the lower validation
        loss was measured: BBC seed 42, deduplicated, all epochs at 0.9733, kept epoch 2 and lost 3 test
        articles against epoch 1; bench/README.md.)"""
        st = self.state
        score = scores[f"val_{self.selected_by}"]
        if score > st.best_score or (score == st.best_score and st.best_epoch == 0 and epoch > 0):
            st.best_score, st.best_epoch = score, epoch
            self.best_weights = _trainable_state(self.accelerator.unwrap_model(self.model))

    def cannot_improve(self) -> bool:
        """A trained epoch already scored a perfect validation metric: a later epoch could at best tie it, and
        ties keep the earlier epoch, so the kept model is decided and more epochs would only cost time (a
        small, easy set that ``train.min_steps`` raised to many epochs)."""
        st = self.state
        stop = st.best_epoch > 0 and st.best_score >= 1.0 and st.epoch <= self.cfg.epochs
        if self.accelerator.num_processes > 1:  # every process must leave the loop together, or one waits forever
            from accelerate.utils import broadcast_object_list

            stop = broadcast_object_list([stop], from_process=0)[0]
        if not stop:
            return False
        self.stopped_early = True
        if self.main:
            log.info("validation %s is 1.0000 at epoch %d: no later epoch can be kept (ties keep the earlier one), "
                     "so training stops after %d of %d epochs", self.selected_by, st.best_epoch, st.epoch - 1,
                     self.cfg.epochs)
        return True

    def timed_score(self, epoch: int) -> dict[str, float]:
        """The validation scores after ``epoch`` (0: the start); its wall time goes to ``validation_seconds``."""
        started = time.perf_counter()
        scores = self.score(epoch, self.state.step)
        self.validation_seconds[epoch] = self.validation_seconds.get(epoch, 0.0) + time.perf_counter() - started
        return scores

    def result(self, train_seconds: float, precision: str) -> TrainResult:
        st, acc = self.state, self.accelerator
        return TrainResult(best_epoch=st.best_epoch, epochs=st.epochs, steps=st.steps, **self.timings(train_seconds),
                           precision=precision, device=str(acc.device), num_processes=acc.num_processes,
                           resumed_seconds=st.elapsed_seconds, select_metric=self.selected_by,
                           epochs_planned=self.cfg.epochs, stopped_early=self.stopped_early,
                           batch_size=self.cfg.batch_size)

    def timings(self, train_seconds: float) -> dict[str, float]:
        """TrainResult's seconds: the epochs, every validation pass, and the epochs less their validation."""
        in_epochs = sum(t for epoch, t in self.validation_seconds.items() if epoch > 0)
        return {"train_seconds": train_seconds, "validation_seconds": sum(self.validation_seconds.values()),
                "step_seconds": max(train_seconds - in_epochs, 0.0)}

    def score_start(self) -> None:
        """Epoch 0: the untrained start (a probe-initialised head), kept only if no trained epoch beats it."""
        scores = self.timed_score(0)
        self.keep_if_best(0, scores)
        self.state.epochs.append({"epoch": 0, "train_loss": None, **scores, "elapsed_seconds": 0.0})
        if self.main:
            log.info("epoch 0 (the start, before training): validation accuracy %.4f macro-F1 %.4f",
                     scores["val_accuracy"], scores["val_macro_f1"])

    def train_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One optimizer step; the batch loss stays on the device (reading it would make the host wait for the
        accelerator every step, see ``train_epoch``)."""
        smoothing, weights = self.cfg.label_smoothing, self.class_weights
        if weights is None and not smoothing:
            loss = self.model(**batch).loss
        elif batch["labels"].ndim == 2:  # multi-label: each label's positives weighted by its negatives/positives
            targets = batch.pop("labels")
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                self.model(**batch).logits.float(), targets * (1 - smoothing) + smoothing / 2,
                pos_weight=None if weights is None else weights.to(targets.device))
        else:
            targets = batch.pop("labels")
            loss = torch.nn.functional.cross_entropy(self.model(**batch).logits.float(), targets,
                                                     weight=None if weights is None else weights.to(targets.device),
                                                     label_smoothing=smoothing)
        self.accelerator.backward(loss)
        if self.cfg.max_grad_norm > 0:
            self.accelerator.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        if self.adaptive is not None:  # AdaLoRA re-allocates ranks between the gradient step and zero_grad
            self.adaptive.update_and_allocate(self.state.step + 1)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach().float()

    def train_epoch(self) -> None:
        """The batches of ``state.epoch`` not yet trained; a checkpoint every ``checkpoint_every`` steps, and on
        Ctrl-C one at the finished step before ``TrainingInterrupted``."""
        st, cfg, n = self.state, self.cfg, len(self.loader)
        self.sampler.use_epoch(st.epoch)
        self.model.train()
        skip = st.batches_done
        batches = self.accelerator.skip_first_batches(self.loader, skip) if skip else self.loader
        bar = progress_bar(batches, desc=f"epoch {st.epoch}/{cfg.epochs}", unit="batch", leave=False, initial=skip,
                           total=n, disable=not self.main)
        # The losses since the last log line are summed on the device and read once per line (and before a
        # checkpoint): a read per step is a host synchronisation that leaves a GPU idle while Python waits.
        pending: torch.Tensor | None = None
        for batch in bar:
            loss_t = self.train_step(batch)
            pending = loss_t if pending is None else pending + loss_t
            st.step += 1
            st.batches_done += 1
            save = cfg.checkpoint_every and st.step % cfg.checkpoint_every == 0 and st.batches_done < n
            if st.step % cfg.log_every == 0 or st.batches_done == n or self.interrupted or save:
                st.running_loss += float(pending.float())
                pending = None
            if st.step % cfg.log_every == 0 or st.batches_done == n:
                loss, lr = st.running_loss / st.batches_done, self.scheduler.get_last_lr()[0]
                st.steps.append({"step": st.step, "epoch": st.epoch, "loss": loss, "lr": lr})
                self.accelerator.log({"train/loss": loss, "train/lr": lr}, step=st.step)
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)  # shown at the next redraw
            if self.interrupted:
                self.checkpoint()
                raise TrainingInterrupted(f"interrupted at epoch {st.epoch}, step {st.step}")
            if save:
                self.checkpoint()
        bar.close()

    def end_epoch(self, has_validation: bool) -> None:
        """Score the epoch on validation, keep it if best, record it, move to the next and checkpoint."""
        st = self.state
        record: dict[str, Any] = {"epoch": st.epoch, "train_loss": st.running_loss / max(st.batches_done, 1)}
        if has_validation:
            scores = self.timed_score(st.epoch)
            record.update(scores)
            self.keep_if_best(st.epoch, scores)
        release_free_memory()  # the validation batches' shapes differ from training's; give their pages back
        record["elapsed_seconds"] = self.elapsed()
        st.epochs.append(record)
        if self.main:
            val = (f", validation accuracy {record['val_accuracy']:.4f} macro-F1 {record['val_macro_f1']:.4f}"
                   if "val_accuracy" in record else "")
            log.info("epoch %d/%d: train loss %.4f%s", st.epoch, self.cfg.epochs, record["train_loss"], val)
        st.epoch, st.batches_done, st.running_loss = st.epoch + 1, 0, 0.0
        self.checkpoint()
        if self.on_epoch is not None:  # last: it may stop training (a pruned `lightft tune` trial)
            # the kept epoch too: its scores, not this epoch's, are what training keeps if it stops here (tune
            # ranks trials by them); without validation the last epoch is kept
            self.on_epoch(record, next((e for e in st.epochs if e["epoch"] == st.best_epoch), record))

    @contextlib.contextmanager
    def ctrl_c_checkpoints(self) -> Iterator[None]:
        """Ctrl-C is noted and acted on after the current optimizer step, so the checkpoint is consistent."""
        import signal

        if self.checkpoint_dir is None:
            yield
            return
        previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, lambda *_: self.interrupted.append(True))
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _without_training_autocast(model: Any) -> Iterator[Any]:
    """``model`` with the forward it had before Accelerate wrapped it in mixed precision's autocast, for a
    validation pass: predict_logits sets its own precision, and its fp32 pass over close decisions must be
    fp32, as it is when the saved model is evaluated later. The wrapper is back for the next training step.
    (train_model drops it for good at the end, ``_drop_training_autocast``: kept, it had made BBC seed 42 report
    0.9822 on test where the saved adapter, reloaded, scores 0.9800 in bf16 and fp32 alike; two articles within
    0.005 of a tie.)"""
    wrapped, original = model.__dict__.get("forward"), model.__dict__.get("_original_forward")
    if wrapped is None or original is None:  # fp32 training: nothing was wrapped
        yield model
        return
    model.forward = original
    try:
        yield model
    finally:
        model.forward = wrapped


def _drop_training_autocast(model: Any) -> None:
    """Give ``model`` back the forward it had before Accelerate's autocast wrapper, for good. (Not
    ``unwrap_model(keep_fp32_wrapper=False)``: that unwinds every ``__wrapped__`` and so also strips
    transformers' own decorators, e.g. ``can_return_tuple``: ``return_dict=False`` then fails.)"""
    original = model.__dict__.pop("_original_forward", None)
    if original is not None:
        model.forward = original


def _accelerator(cfg: TrainConfig, precision: str, device: torch.device, log_dir: Path | None) -> Any:
    from accelerate import Accelerator

    from lightft.compat import fresh_accelerator_state

    trackers = list(cfg.report_to) if log_dir is not None else []
    fresh_accelerator_state()
    accelerator = Accelerator(
        mixed_precision={"fp32": "no"}.get(precision, precision), cpu=device.type == "cpu",
        log_with=trackers or None, project_dir=str(log_dir) if log_dir is not None else None,
    )
    if trackers:
        # TensorBoard event files land in <run>/tensorboard; `tensorboard --logdir <run>` shows them.
        accelerator.init_trackers("tensorboard", config={k: v for k, v in vars(cfg).items()
                                                         if isinstance(v, (int, float, str, bool))})
    return accelerator


def _loader(train_ids: list[list[int]], labels: torch.Tensor, cfg: TrainConfig, seed: int, pad_id: int,
            max_length: int | None, device: torch.device) -> tuple[Any, LengthGroupedBatchSampler]:
    """Length-grouped batches padded as ``cfg`` says: to each batch's longest text (rounded up to a multiple of
    ``train.pad_to_multiple_of``, per device when empty, never past ``max_length``) or all to ``max_length``."""
    pad_to = None if cfg.dynamic_padding else max_length
    multiple_of = device_lever("pad_multiple_of", cfg.pad_to_multiple_of, device)
    sampler = LengthGroupedBatchSampler([len(x) for x in train_ids], cfg.batch_size, seed, cfg.group_by_length)

    def collate(indices: list[int]) -> dict[str, torch.Tensor]:
        batch = pad_batch([train_ids[i] for i in indices], pad_id, pad_to, multiple_of, max_length)
        batch["labels"] = labels[indices]
        return batch

    # A loader of its own generator: creating an iterator then draws from it, not from the global RNG, so a
    # resumed run (which creates its iterator after restoring the RNG) sees the same dropout masks.
    loader = torch.utils.data.DataLoader(_IndexDataset(len(train_ids)), batch_sampler=sampler, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(seed))
    return loader, sampler


def _class_weights(labels: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse class frequency, normalised so a balanced set gets weight 1. Multi-label (an (n, k) 0/1
    matrix): BCE's ``pos_weight``, each label's negatives per positive (1 for a label with no positive)."""
    if labels.ndim == 2:  # a label on no text or on every text gets 1; at most 100 for the rarest
        positives = labels.sum(0)
        ratio = (len(labels) - positives) / positives.clamp(min=1)
        return torch.where((positives > 0) & (positives < len(labels)), ratio, torch.ones(k)).clamp(max=100.0)
    counts = torch.bincount(labels, minlength=k).float().clamp(min=1)
    return counts.sum() / (k * counts)


def _label_tensor(labels: list[Any], k: int) -> torch.Tensor:
    """Training targets: class ids, or for multi-label (id tuples) an (n, k) float 0/1 matrix (BCE's targets)."""
    dtype = torch.float32 if is_label_sets(labels) else torch.long
    return torch.tensor(as_targets(labels, k), dtype=dtype)


def _validation_scores(logits: Any, labels: list[Any], label_names: list[str]) -> dict[str, float]:
    """Validation accuracy and macro-F1 (multi-label: subset accuracy and macro-F1 at 0.5; the per-label
    thresholds are tuned after training)."""
    y = as_targets(labels, len(label_names))
    metrics = score_predictions(y, logits >= 0 if y.ndim == 2 else logits.argmax(axis=1), label_names)
    scores, fn = torch.as_tensor(logits, dtype=torch.float32), torch.nn.functional
    loss = fn.binary_cross_entropy_with_logits(scores, torch.as_tensor(y, dtype=torch.float32)) if y.ndim == 2 \
        else fn.cross_entropy(scores, torch.as_tensor(y, dtype=torch.long))
    return {"val_accuracy": metrics["accuracy"], "val_macro_f1": metrics["macro_f1"], "val_loss": float(loss)}


# train.min_steps raises epochs to at most this many: every epoch ends in a validation pass, which a training set
# of a few dozen texts (3 batches an epoch) would otherwise pay 40 times to reach 120 steps.
MIN_STEPS_MAX_EPOCHS = 10


def select_metric(name: str, multi_label: bool) -> str:
    """The validation metric ``train.select_metric`` names: ``auto`` is accuracy for single-label tasks (the
    lower-variance estimate on small validation splits with rare classes) and macro_f1 for multi-label ones."""
    if name != "auto":
        return name
    return "macro_f1" if multi_label else "accuracy"


def planned_epochs(cfg: TrainConfig, batches_per_epoch: int) -> int:
    """``cfg.epochs``, raised until the optimizer steps reach ``cfg.min_steps`` to at most
    ``MIN_STEPS_MAX_EPOCHS``; never lowered."""
    needed = -(-cfg.min_steps // max(batches_per_epoch, 1))
    return max(cfg.epochs, min(needed, MIN_STEPS_MAX_EPOCHS))


def with_small_batches(cfg: TrainConfig, examples: int) -> TrainConfig:
    """``cfg`` with ``train.small_batch_size`` as its batch size where ``examples`` in batches of
    ``cfg.batch_size`` would not reach ``cfg.min_steps`` in ``cfg.epochs`` (the floor then adds epochs only if
    the smaller batches still fall short)."""
    small = cfg.small_batch_size
    if not cfg.min_steps or small is None or small >= cfg.batch_size:
        return cfg
    batches = -(-examples // cfg.batch_size)
    if cfg.epochs * batches >= cfg.min_steps:
        return cfg
    log.info("%d training texts make %d batches of %d an epoch, short of train.min_steps=%d in %d epochs: batches "
             "of %d instead (train.small_batch_size; empty keeps train.batch_size)", examples, batches,
             cfg.batch_size, cfg.min_steps, cfg.epochs, small)
    return dataclasses.replace(cfg, batch_size=small)


def _with_min_steps(cfg: TrainConfig, batches_per_epoch: int) -> TrainConfig:
    epochs = planned_epochs(cfg, batches_per_epoch)
    if epochs == cfg.epochs:
        return cfg
    log.info("%d batches an epoch: %d epochs instead of %d (train.min_steps=%d optimizer steps, at most %d epochs; "
             "train.min_steps=0 trains exactly train.epochs)", batches_per_epoch, epochs, cfg.epochs, cfg.min_steps,
             MIN_STEPS_MAX_EPOCHS)
    return dataclasses.replace(cfg, epochs=epochs)


@contextlib.contextmanager
def _kernels(accelerator: Any, model: Any, precision: str, inference: dict[str, Any] | None) -> Iterator[None]:
    """How the training steps compute: SDPA's kernels per device (``speed.attention_backends``), and adapters
    without their input's fp32 round trip under autocast (``speed.adapter_input_casts_off``)."""
    with attention_backends(accelerator.device, (inference or {}).get("cudnn_attention")), \
            adapter_input_casts_off(accelerator.unwrap_model(model), precision):
        yield


def train_model(
    model: Any,
    train_ids: list[list[int]],
    train_labels: list[Any],
    val_ids: list[list[int]],
    val_labels: list[Any],
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
    eval_batch_size: int | None = None,
    on_epoch: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Fine-tune ``model`` in place and leave it holding the weights of the best validation epoch.

    With ``checkpoint_dir``, the training state (trained weights, optimizer, scheduler, RNG states, position in the
    data order, history: ``TrainState``) is saved after every epoch, every ``cfg.checkpoint_every`` steps and on
    Ctrl-C; ``resume`` continues from it and ends exactly where an uninterrupted run would. ``inference``: the
    validation passes' ``predict_logits`` keywords (``config.inference_options``). ``validate_start``: the untrained
    start (a probe-initialised head) is scored too, as epoch 0, and kept only when every trained epoch scores lower
    on validation. ``val_owner``: the validation text of each of ``val_ids`` when long texts are windows
    (``lightft.windows``); ``val_labels`` are then per text. ``eval_batch_size``: the validation passes' batch.
    ``on_epoch``: sees each trained epoch's record and the kept epoch's; an exception it raises ends training."""
    from transformers import get_linear_schedule_with_warmup

    device = resolve_device()
    precision = resolve_precision(cfg.precision, device)
    accelerator = _accelerator(cfg, precision, device, log_dir)
    labels = _label_tensor(train_labels, len(label_names))  # multi-label: 2-D, decided at 0.5 (logit 0) per label
    boundaries = Decision(multi_label=labels.ndim == 2).boundaries(len(label_names))
    cfg = with_small_batches(cfg, len(train_ids))  # small training sets: smaller batches, then more epochs
    loader, sampler = _loader(train_ids, labels, cfg, seed, pad_id, max_length, device)
    cfg = _with_min_steps(cfg, len(loader))
    optimizer = _optimizer(model, cfg)
    total_steps = cfg.epochs * len(loader)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    accelerator.register_save_state_pre_hook(_keep_trainable_weights)
    eval_batch = resolve_eval_batch_size(eval_batch_size, accelerator.device)

    def validate(epoch: int, step: int) -> dict[str, float]:
        with _without_training_autocast(accelerator.unwrap_model(model)) as plain:
            logits = predict_logits(plain, val_ids, pad_id, eval_batch, precision, desc="validation",
                                    progress=accelerator.is_local_main_process, owner=val_owner,
                                    boundaries=boundaries, **(inference or {}))
        scores = _validation_scores(logits, val_labels, label_names)
        accelerator.log({f"validation/{k[4:]}": v for k, v in scores.items()} | {"epoch": epoch}, step=step)
        return scores

    loop = _Loop(accelerator, model, optimizer, scheduler, loader, sampler, cfg, TrainState(best_epoch=cfg.epochs),
                 validate, checkpoint_dir,
                 _class_weights(labels, len(label_names)) if cfg.class_weighted_loss else None, labels.ndim == 2)
    if resume:
        if checkpoint_dir is None:
            raise LightftError("no checkpoint to resume from")
        loop.resume_from(checkpoint_dir)
    elif validate_start and val_ids:
        loop.score_start()
    loop.started = time.perf_counter()  # training time: the epochs, not the start's scoring or loading
    loop.on_epoch = on_epoch
    with loop.ctrl_c_checkpoints(), _kernels(accelerator, model, precision, inference):
        while loop.state.epoch <= cfg.epochs and not loop.cannot_improve():
            loop.train_epoch()
            loop.end_epoch(bool(val_ids))
    train_seconds = loop.elapsed()
    plain = accelerator.unwrap_model(model)
    _drop_training_autocast(plain)  # _without_training_autocast says why
    if loop.best_weights is not None:
        plain.load_state_dict(loop.best_weights, strict=False)
    plain.eval()
    accelerator.end_training()
    accelerator.free_memory()
    return loop.result(train_seconds, precision)
