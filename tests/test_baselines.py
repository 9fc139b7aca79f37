"""The embedding baselines: one pass gives the pre-trained head's logits and the same embeddings as the encoder."""

import numpy as np
import pytest

from conftest import ARCHITECTURES, build_tiny_model, make_texts


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_one_pass_gives_head_logits_and_encoder_embeddings(arch, tiny_models):
    from lightft.baselines import embed
    from lightft.data import tokenize
    from lightft.inference import predict_logits
    from lightft.model import load_classifier, load_tokenizer
    from lightft.runtime import set_seed

    path = build_tiny_model(tiny_models, arch)
    set_seed(0)
    model, _ = load_classifier(str(path), ["a", "b", "c"])
    ids = tokenize([t for t, _ in make_texts(4)], load_tokenizer(str(path)), 32)
    emb, logits = embed(model, ids, 0, "mean", 5, "fp32", with_logits=True)
    np.testing.assert_allclose(logits, predict_logits(model, ids, 0, 5, "fp32", progress=False), atol=1e-6)
    np.testing.assert_allclose(emb, embed(model.base_model, ids, 0, "mean", 5, "fp32"), atol=1e-6)
    assert emb.shape == (len(ids), model.config.hidden_size if arch != "distilbert" else model.config.dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)


def test_tfidf_fits_beside_training_on_an_accelerator_with_the_same_scores(tmp_path):
    """On an accelerator the TF-IDF baseline fits in a spawned process while the model trains, and is recorded
    afterwards; its probabilities equal the inline fit's (CPU), and nothing is recorded before it finishes."""
    from types import SimpleNamespace

    import torch

    from lightft.config import load_config
    from lightft.data import load_splits
    from lightft.experiment import _baselines, start_tfidf

    from conftest import write_class_folder

    cfg = load_config(None, [f"data.source={write_class_folder(tmp_path / 'data')}", "data.test_size=0.3",
                             "data.validation_size=0", "baselines.pretrained=false", "baselines.zero_shot=false",
                             "baselines.linear_probe=false"])
    splits = load_splits(cfg.data, cfg.seed)
    recorded = {}

    def record(key, probs, *rest):
        recorded.setdefault(key, []).append(probs)

    # meta stands in for an accelerator: only its type is read. "early": started by run_experiment before tokenising.
    for device, early in (("cpu", False), ("meta", False), ("meta", True)):
        device = torch.device(device)
        prep = SimpleNamespace(splits=splits, enc=None, pad_id=0, precision="fp32", device=device)
        started = start_tfidf(cfg, splits, device) if early else None
        assert (started is None) == (not early)
        before = len(recorded.get("tfidf", []))
        later = _baselines(cfg, prep, record, started)
        assert len(later) == (device.type != "cpu")
        assert len(recorded.get("tfidf", [])) == before + (device.type == "cpu")  # an accelerator's: after training
        for finish in later:
            finish()
    inline, background, early = recorded["tfidf"]
    np.testing.assert_allclose(inline, background)
    np.testing.assert_allclose(inline, early)
    assert start_tfidf(cfg, splits, torch.device("cpu")) is None  # on CPU it fits inline, in _baselines


def test_background_work_falls_back_to_running_here(monkeypatch):
    """Where no process can be spawned, the work runs when its result is asked for; an error of the work itself
    surfaces as it would inline (here, after the spawned attempt failed the same way)."""
    import multiprocessing

    from lightft.baselines import in_background

    with pytest.raises(ValueError, match="invalid literal"):
        in_background(int, "not a number")()

    def refuse(method):
        raise OSError("no /dev/shm")

    monkeypatch.setattr(multiprocessing, "get_context", refuse)
    assert in_background(int, "42")() == 42


def test_cancel_ends_the_background_process():
    """A run that failed does not wait at exit for a TF-IDF fit it will never use: cancel() ends the process."""
    import time

    from lightft.baselines import in_background

    work = in_background(time.sleep, 60)
    assert work.processes and all(p.is_alive() for p in work.processes)
    work.cancel()  # returns once the process is gone
    assert not any(p.is_alive() for p in work.processes)
    assert all(p.exitcode is not None for p in work.processes)


def test_a_failed_run_cancels_the_tfidf_fit_it_started(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from lightft import experiment
    from lightft.config import load_config

    from conftest import write_class_folder

    cfg = load_config(None, [f"data.source={write_class_folder(tmp_path / 'data')}", "data.test_size=0.3",
                             "data.validation_size=0.2"])
    cancelled = []
    fit = SimpleNamespace(cancel=lambda: cancelled.append(True))
    monkeypatch.setattr(experiment, "start_tfidf", lambda *_: fit)
    monkeypatch.setattr(experiment, "preflight", lambda cfg: None)

    def fail(*args):
        raise RuntimeError("training failed")

    monkeypatch.setattr(experiment, "_run", fail)
    with pytest.raises(RuntimeError, match="training failed"):
        experiment.run_experiment(cfg, output_dir=tmp_path / "run")
    assert len(cancelled) == 1
    assert "failed" in (tmp_path / "run" / "run.json").read_text()
