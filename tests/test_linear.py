import subprocess
import sys

import numpy as np
import pytest


def test_linear_imports_no_torch():
    """The TF-IDF baseline's process (baselines.in_background) imports only this module: it must start in about a
    second, not after torch and transformers (~10 s on the H100 of bench/README.md)."""
    code = "import sys, lightft.linear; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_tfidf_probabilities_cover_every_label_id():
    """A label id absent from the training texts gets probability 0 in its own column."""
    from lightft.linear import tfidf_classifier

    texts = ["market shares fell", "the match was won", "shares and market rose", "match won late"] * 2
    probs, params = tfidf_classifier(texts, [0, 2, 0, 2] * 2, ["market shares", "the match won"], num_labels=3)
    assert probs.shape == (2, 3) and params > 0
    np.testing.assert_allclose(probs.sum(1), 1.0)
    assert (probs[:, 1] == 0).all() and probs[0, 0] > 0.5 and probs[1, 2] > 0.5


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


@pytest.fixture
def fit_threads(monkeypatch) -> list[list[int]]:
    """The BLAS libraries' thread counts at the start of every LogisticRegression fit made in the test."""
    from sklearn.linear_model import LogisticRegression

    seen: list[list[int]] = []
    real_fit = LogisticRegression.fit

    def recording_fit(self, *args, **kwargs):
        seen.append(_blas_threads())
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", recording_fit)
    return seen


def test_every_regression_fits_with_blas_on_one_thread(fit_threads):
    """lbfgs's small matrix products ran 6-9x slower on the default BLAS threads (bench/linear_threads.py): the
    probe, the probe start (heads.init_head_from_probe), one-vs-rest and the TF-IDF pipeline all fit through
    linear.fit, which holds BLAS to one thread for the fit and gives the threads back after it."""
    from threadpoolctl import threadpool_limits

    from lightft import linear

    rng = np.random.default_rng(0)
    emb, labels = rng.normal(size=(40, 8)).astype(np.float32), [0, 1, 2, 3] * 10
    with threadpool_limits(limits=2, user_api="blas"):  # as on a machine of several cores, even on one
        linear.linear_probe(emb, labels, emb[:5], num_labels=4)
        linear.linear_probe(emb, [(0,), (1, 2), (), (3,)] * 10, emb[:5], num_labels=4)  # multi-label: one-vs-rest
        linear.tfidf_classifier(["market shares fell", "the match was won"] * 4, [0, 1] * 4, ["the match"], 2)
        after = _blas_threads()
    assert len(fit_threads) == 1 + 4 + 1
    assert all(threads and set(threads) == {1} for threads in fit_threads), fit_threads
    assert after and set(after) == {2}  # given back after each fit


def test_probe_start_fits_with_blas_on_one_thread(fit_threads):
    import torch
    from threadpoolctl import threadpool_limits

    from lightft.heads import init_head_from_probe

    model = torch.nn.Module()
    model.classifier = torch.nn.Linear(8, 3)
    features = np.random.default_rng(1).normal(size=(30, 8)).astype(np.float32)
    with threadpool_limits(limits=2, user_api="blas"):
        init_head_from_probe(model, features, [0, 1, 2] * 10, seed=0)
    assert len(fit_threads) == 1 and fit_threads[0] and set(fit_threads[0]) == {1}
