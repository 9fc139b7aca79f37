"""The training loop (lightft.train): what it asks of the device per step."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lightft.config import TrainConfig
from lightft.data import tokenize
from lightft.model import load_classifier, load_tokenizer
from lightft.runtime import set_seed
from lightft.train import _Loop, planned_epochs, train_model

from conftest import CLASS_WORDS, make_texts


class Watched(torch.Tensor):
    """A batch loss that records every read of its value on the host (a device synchronisation on a GPU)."""

    reads: list[int] = []

    def item(self):
        Watched.reads.append(1)
        return super().item()

    def __float__(self):
        Watched.reads.append(1)
        return super().__float__()


def test_the_loss_is_read_once_per_log_line_not_once_per_step(tiny_bert, monkeypatch):
    """On a GPU, reading each step's loss makes Python wait for the device every step; the loop sums the
    losses on the device and reads them once per log line, and the logged means are still the exact ones."""
    names = list(CLASS_WORDS)
    rows = make_texts(16)  # 48 texts: 6 batches of 8 per epoch
    tok = load_tokenizer(str(tiny_bert))
    ids, labels = tokenize([t for t, _ in rows], tok, 32), [names.index(y) for _, y in rows]
    set_seed(0)
    model, _ = load_classifier(str(tiny_bert), names)
    losses = []
    step = _Loop.train_step

    def watched_step(self, batch):
        loss = step(self, batch)
        assert isinstance(loss, torch.Tensor), "train_step must leave the loss on the device"
        losses.append(float(loss.detach().clone()))
        return loss.as_subclass(Watched)

    monkeypatch.setattr(_Loop, "train_step", watched_step)
    Watched.reads.clear()
    steps_per_epoch = len(rows) // 8
    cfg = TrainConfig(epochs=2, min_steps=0, batch_size=8, learning_rate=1e-2, precision="fp32", log_every=3,
                      report_to=[])
    result = train_model(model, ids, labels, ids[:8], labels[:8], names, cfg, seed=0, pad_id=tok.pad_token_id)
    assert len(losses) == 2 * steps_per_epoch
    assert len(Watched.reads) == len(result.steps) == 4  # two log lines per epoch, each one read
    per_epoch = np.asarray(losses).reshape(2, steps_per_epoch).mean(1)
    np.testing.assert_allclose([e["train_loss"] for e in result.epochs], per_epoch, rtol=1e-6)


def test_the_trained_model_leaves_training_without_its_bf16_autocast(tiny_bert, monkeypatch):
    """Accelerate wraps the forward in autocast for mixed precision. The model train_model hands back must not
    keep it: an fp32 forward (predict_logits' recheck of close decisions, `precision: fp32` at test time) must
    be the saved weights' fp32 logits, not bf16 ones."""
    names, ids, labels, tok, model = tiny_training_set(tiny_bert)
    cfg = TrainConfig(epochs=1, min_steps=0, batch_size=8, learning_rate=1e-2, precision="bf16", report_to=[])
    import lightft.train as train_module

    seen, predict_logits = [], train_module.predict_logits

    def watched(model, *args, **kwargs):  # the validation passes: the model's own forward, no bf16 wrapper
        seen.append(model.forward == model.__dict__.get("_original_forward", model.forward))
        return predict_logits(model, *args, **kwargs)

    monkeypatch.setattr(train_module, "predict_logits", watched)
    train_model(model, ids, labels, ids[:8], labels[:8], names, cfg, seed=0, pad_id=tok.pad_token_id)
    assert seen == [True]
    assert "_original_forward" not in model.__dict__
    batch = {"input_ids": torch.tensor([ids[0]]), "attention_mask": torch.ones(1, len(ids[0]), dtype=torch.long)}
    with torch.inference_mode():
        logits = model(**batch).logits
        by_hand = type(model).forward(model, **batch).logits  # the class's forward: no wrapper in the way
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, by_hand, rtol=0, atol=0)
    assert isinstance(model(**batch, return_dict=False), tuple)  # transformers' own decorators are kept


@pytest.mark.parametrize("epochs,min_steps,batches,expected", [
    (2, 0, 3, 2),      # off
    (2, 120, 63, 2),   # BBC: 126 steps already, untouched
    (2, 120, 38, 4),   # 594 reviews: 76 steps -> 152
    (2, 120, 200, 2),  # never lowered
    (2, 120, 5, 10),   # 80 texts: 24 epochs needed, capped at 10 (each one ends in a validation pass)
    (12, 120, 5, 12),  # the cap never lowers the configured epochs
    (2, 120, 0, 10),   # no batches: no division by zero
])
def test_min_steps_raises_epochs_for_small_training_sets(epochs, min_steps, batches, expected):
    assert planned_epochs(TrainConfig(epochs=epochs, min_steps=min_steps), batches) == expected


def tiny_training_set(tiny_bert):
    """(label names, token ids, label ids, tokenizer, a freshly seeded model) of the tiny model's 3-class texts."""
    names = list(CLASS_WORDS)
    rows = make_texts(16)
    tok = load_tokenizer(str(tiny_bert))
    ids, labels = tokenize([t for t, _ in rows], tok, 32), [names.index(y) for _, y in rows]
    set_seed(0)
    model, _ = load_classifier(str(tiny_bert), names)
    return names, ids, labels, tok, model


@pytest.mark.parametrize("examples,batch,small,min_steps,expected", [
    (594, 16, 8, 120, 8),     # 594 IMDB reviews: 38 batches x 2 epochs < 120, so batches of 8 (150 steps)
    (1000, 16, 8, 120, 16),   # BBC: 63 x 2 = 126 steps already, untouched
    (80, 16, 8, 120, 8),      # 80 texts: batches of 8, then the floor adds epochs (10 x 10 = 100)
    (594, 16, None, 120, 16),  # off: train.small_batch_size empty
    (594, 16, 8, 0, 16),      # off with the floor
    (594, 8, 16, 120, 8),     # never larger than train.batch_size
])
def test_small_training_sets_train_in_smaller_batches_before_more_epochs(examples, batch, small, min_steps, expected):
    from lightft.train import with_small_batches

    cfg = TrainConfig(batch_size=batch, small_batch_size=small, min_steps=min_steps)
    assert with_small_batches(cfg, examples).batch_size == expected


def test_a_small_set_trains_in_small_batches_and_says_so(tiny_bert):
    names, ids, labels, tok, model = tiny_training_set(tiny_bert)
    cfg = TrainConfig(epochs=1, min_steps=4, batch_size=16, small_batch_size=4, precision="fp32", report_to=[])
    result = train_model(model, ids, labels, [], [], names, cfg, seed=0, pad_id=tok.pad_token_id)
    assert len(ids) < 4 * 16  # too few for 4 steps in batches of 16
    assert result.batch_size == 4 and result.epochs_planned == 1 and result.steps[-1]["step"] == -(-len(ids) // 4)


def test_a_raised_floor_trains_exactly_what_the_same_epochs_would(tiny_bert):
    """6 batches an epoch with a floor of 13 steps: 3 epochs (18 steps) although the config says 1, with the
    schedule, data order and weights of a plain 3-epoch run (bench/README.md's train.epochs=4 runs on IMDB
    reviews are therefore the train.min_steps=120 runs)."""
    names = list(CLASS_WORDS)
    rows = make_texts(16)
    tok = load_tokenizer(str(tiny_bert))
    ids, labels = tokenize([t for t, _ in rows], tok, 32), [names.index(y) for _, y in rows]
    runs = []
    for cfg in (TrainConfig(epochs=1, min_steps=13, batch_size=8, precision="fp32", report_to=[]),
                TrainConfig(epochs=3, min_steps=0, batch_size=8, precision="fp32", report_to=[])):
        set_seed(0)
        model, _ = load_classifier(str(tiny_bert), names)
        result = train_model(model, ids, labels, ids[:8], labels[:8], names, cfg, seed=0, pad_id=tok.pad_token_id)
        runs.append((result, {k: v.clone() for k, v in model.state_dict().items()}))
    (floor, floor_weights), (plain, plain_weights) = runs
    assert [e["epoch"] for e in floor.epochs] == [1, 2, 3]
    assert [e["train_loss"] for e in floor.epochs] == [e["train_loss"] for e in plain.epochs]
    assert all(torch.equal(floor_weights[k], plain_weights[k]) for k in plain_weights)


def test_training_batches_pad_to_a_multiple_when_asked_never_past_max_length():
    """train.pad_to_multiple_of (64 on a GPU by default): each batch's length is rounded up to a multiple, at
    most max_length; 0 pads to the batch's longest text, as on CPU."""
    import torch

    from lightft.config import TrainConfig
    from lightft.train import _loader

    ids = [[1] * n for n in (3, 5, 70, 90, 10, 12)]
    labels = torch.zeros(len(ids), dtype=torch.long)
    def widths(device: str, multiple: int | None) -> list[int]:
        cfg = TrainConfig(batch_size=2, pad_to_multiple_of=multiple)
        return sorted(b["input_ids"].shape[1] for b in _loader(ids, labels, cfg, 0, 0, 100, torch.device(device))[0])

    assert widths("cpu", None) == widths("cuda", 0) == [5, 12, 90]  # CPU's default: the batch's longest
    assert widths("cuda", None) == widths("cpu", 64) == [64, 64, 100]  # a GPU's default: multiples of 64


def _checkpoint(path: Path, step: int) -> Path:
    path.mkdir()
    (path / "model.safetensors").write_bytes(b"weights")
    (path / "trainer_state.json").write_text(json.dumps({"step": step}))
    return path


@pytest.mark.parametrize("left", ["checkpoint+partial old", "old+complete tmp", "old only", "old+partial tmp"])
def test_a_checkpoint_swap_cut_short_by_a_kill_is_settled(tmp_path, left):
    """_save_checkpoint writes checkpoint.tmp, renames checkpoint -> .old and .tmp -> checkpoint, removes .old; a
    SIGKILL can land between any two of those (tests/test_resume.py's kill once landed in the removal, and the
    resumed run's first save failed on the leftover .old). Settled, the newest complete checkpoint is in place
    and nothing blocks the next swap; settling twice (every process of a launch does it) changes nothing."""
    from lightft.rundir import RunDirError, check_output_dir
    from lightft.train import settle_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": "running"}))
    ckpt, old, tmp = run / "checkpoint", run / "checkpoint.old", run / "checkpoint.tmp"
    if left == "checkpoint+partial old":
        _checkpoint(ckpt, 20)
        old.mkdir()  # half removed: its trainer state already gone
        (old / "optimizer.bin").write_bytes(b"x")
    else:
        _checkpoint(old, 10)
        if left == "old+complete tmp":
            _checkpoint(tmp, 20)
        elif left == "old+partial tmp":
            tmp.mkdir()
            (tmp / "model.safetensors").write_bytes(b"half")
    with pytest.raises(RunDirError, match="--resume"):  # a new run there is refused and told to resume
        check_output_dir(run, overwrite=False)
    for _ in range(2):
        settle_checkpoint(ckpt)
        want = 20 if left in ("checkpoint+partial old", "old+complete tmp") else 10
        assert json.loads((ckpt / "trainer_state.json").read_text())["step"] == want
        assert not old.exists()
        assert not (tmp / "trainer_state.json").exists()


def test_the_first_save_after_a_kill_in_the_last_one_succeeds(tmp_path):
    """The failure CI met: a resumed run's next checkpoint with a half-removed checkpoint.old beside it."""
    from lightft.train import _save_checkpoint

    class OneProcess:  # the part of Accelerator that _save_checkpoint uses, for one process
        is_main_process = True

        def wait_for_everyone(self) -> None:
            pass

        def save_state(self, directory: str, safe_serialization: bool) -> None:
            Path(directory).mkdir()
            (Path(directory) / "model.safetensors").write_bytes(b"new weights")

    ckpt = _checkpoint(tmp_path / "checkpoint", 20)
    (tmp_path / "checkpoint.old").mkdir()
    (tmp_path / "checkpoint.old" / "optimizer.bin").write_bytes(b"x")
    _save_checkpoint(OneProcess(), ckpt, {"step": 30}, None)
    assert json.loads((ckpt / "trainer_state.json").read_text())["step"] == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_validation_ties_keep_the_earlier_trained_epoch_and_the_loss_is_recorded():
    """225 validation texts tie epochs often (BBC seed 42: 0.9733 at the start and after both epochs). The
    earlier trained epoch is kept (the lower validation loss was measured as a tie-break and lost on test), a
    trained epoch beats a tied start, and each epoch's validation loss is recorded beside its scores."""
    from types import SimpleNamespace

    from lightft.train import TrainState, _validation_scores

    def kept(history: list[tuple[float, float]]) -> int:
        loop = SimpleNamespace(state=TrainState(), cfg=TrainConfig(), model=torch.nn.Linear(2, 2),
                               accelerator=SimpleNamespace(unwrap_model=lambda m: m), selected_by="accuracy")
        for epoch, (acc, loss) in enumerate(history):
            _Loop.keep_if_best(loop, epoch, {"val_accuracy": acc, "val_macro_f1": acc, "val_loss": loss})
        return loop.state.best_epoch

    assert kept([(0.97, 0.10), (0.97, 0.20), (0.97, 0.15)]) == 1  # start tied: the first trained epoch
    assert kept([(0.97, 0.30), (0.98, 0.40), (0.97, 0.01)]) == 1  # a better score wins whatever the loss
    assert kept([(0.99, 0.30), (0.98, 0.01), (0.98, 0.01)]) == 0  # the start, when no trained epoch matches it
    logits = np.array([[2.0, 0.0], [0.0, 1.0]])
    scores = _validation_scores(logits, [0, 0], ["a", "b"])
    expected = -(np.log(np.exp(2) / (np.exp(2) + 1)) + np.log(1 / (1 + np.e))) / 2
    assert scores["val_accuracy"] == 0.5 and scores["val_loss"] == pytest.approx(expected, rel=1e-5)


def test_training_stops_once_a_trained_epoch_is_perfect_on_validation(tiny_bert, monkeypatch):
    """A perfect validation score can only be tied later, and ties keep the earlier epoch: the epochs after it
    would not change the kept model (a small easy set raised to 10 epochs by train.min_steps spent minutes on
    them). The untrained start does not count: a trained epoch that ties it is kept, so one is trained."""
    from types import SimpleNamespace

    from lightft.train import TrainState

    def stops(best_epoch: int, best_score: float, epoch: int = 2, processes: int = 1) -> bool:
        loop = SimpleNamespace(state=TrainState(best_epoch=best_epoch, best_score=best_score, epoch=epoch),
                               cfg=TrainConfig(epochs=5), main=False, selected_by="accuracy",
                               accelerator=SimpleNamespace(num_processes=processes), stopped_early=False)
        return _Loop.cannot_improve(loop) and loop.stopped_early

    assert stops(1, 1.0) and not stops(0, 1.0) and not stops(1, 0.99) and not stops(1, 1.0, epoch=6)
    # several processes follow the main one's decision, so none leaves the loop while another trains on
    import accelerate.utils

    monkeypatch.setattr(accelerate.utils, "broadcast_object_list", lambda objects, from_process: [False])
    assert not stops(1, 1.0, processes=2) and stops(1, 1.0, processes=1)
    names, ids, labels, tok, model = tiny_training_set(tiny_bert)
    cfg = TrainConfig(epochs=6, min_steps=0, batch_size=8, learning_rate=5e-3, precision="fp32", report_to=[])
    result = train_model(model, ids, labels, ids[:1], labels[:1], names, cfg, seed=0, pad_id=tok.pad_token_id)
    trained = [e["epoch"] for e in result.epochs if e["epoch"] > 0]
    assert result.epochs[-1]["val_accuracy"] == 1.0 and trained == list(range(1, result.best_epoch + 1))
    assert len(trained) < cfg.epochs and result.stopped_early and result.epochs_planned == cfg.epochs


@pytest.mark.parametrize(("metric", "multi", "kept"), [("auto", False, 2), ("auto", True, 1), ("accuracy", True, 2),
                                                      ("macro_f1", False, 1)])
def test_select_metric_auto_is_accuracy_for_single_label_and_macro_f1_for_multi_label(metric, multi, kept):
    """TREC seed 44: validation macro-F1, swung by a few texts of the rarest class, kept epoch 1 while epoch 2
    had the better accuracy (and the better test scores): single-label tasks select by accuracy by default."""
    from types import SimpleNamespace

    from lightft.train import TrainState, select_metric

    loop = SimpleNamespace(state=TrainState(), cfg=TrainConfig(select_metric=metric), model=torch.nn.Linear(2, 2),
                           accelerator=SimpleNamespace(unwrap_model=lambda m: m),
                           selected_by=select_metric(metric, multi))
    for epoch, (acc, f1) in enumerate([(0.854, 0.815), (0.935, 0.927), (0.943, 0.919)]):
        _Loop.keep_if_best(loop, epoch, {"val_accuracy": acc, "val_macro_f1": f1, "val_loss": 0.2})
    assert loop.state.best_epoch == kept


def test_select_metric_is_checked():
    from lightft.config import load_config
    from lightft.errors import ConfigError

    with pytest.raises(ConfigError, match="train.select_metric must be one of auto, accuracy, macro_f1"):
        load_config(None, ["data.source=x", "train.select_metric=f1"])


@pytest.mark.parametrize("multi", [False, True])
def test_label_smoothing_is_the_loss_trained_on(multi):
    """train.label_smoothing: single-label, torch's cross entropy with label_smoothing; multi-label, each 0/1
    target pulled towards 0.5 (with or without class weights, which take the same branch)."""
    from types import SimpleNamespace

    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]) if multi else torch.tensor([0, 2])
    seen = []
    loop = _Loop.__new__(_Loop)
    loop.cfg, loop.class_weights, loop.adaptive = TrainConfig(label_smoothing=0.2, max_grad_norm=0), None, None
    loop.model = lambda **batch: SimpleNamespace(logits=logits, loss=torch.tensor(-1.0))
    loop.accelerator = SimpleNamespace(backward=seen.append)
    loop.optimizer = SimpleNamespace(step=lambda: None, zero_grad=lambda set_to_none: None)
    loop.scheduler = SimpleNamespace(step=lambda: None)
    loop.train_step({"input_ids": torch.zeros(2, 3, dtype=torch.long), "labels": labels})
    fn = torch.nn.functional
    want = fn.binary_cross_entropy_with_logits(logits, labels * 0.8 + 0.1) if multi else \
        fn.cross_entropy(logits, labels, label_smoothing=0.2)
    assert seen[0].item() == pytest.approx(want.item())
    assert want.item() != pytest.approx((fn.binary_cross_entropy_with_logits(logits, labels) if multi else
                                         fn.cross_entropy(logits, labels)).item())  # the smoothing is felt
