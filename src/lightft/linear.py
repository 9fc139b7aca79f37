"""Logistic regressions on fixed features (scikit-learn): the TF-IDF and linear-probe baselines, and the probe
start of a fine-tuned head (``heads.init_head_from_probe``), all fit the same regression.

This module imports no torch: on a GPU the TF-IDF baseline fits in a fresh process while the model trains
(``baselines.in_background``), and a child that imported torch and transformers first spent ~10 s of a
~45 s run before its regression started (bench/README.md, issue 14)."""

from __future__ import annotations

from typing import Any

import numpy as np

from lightft.metrics import is_label_sets, multi_hot


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))


def logistic_regression(seed: int) -> Any:
    """The regression the probe start fits, shared by the TF-IDF and linear-probe baselines (fit it with
    ``fit``)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000, C=10.0, random_state=seed)


def fit(model: Any, features: Any, y: Any) -> Any:
    """``model.fit(features, y)`` with the BLAS libraries (OpenBLAS, MKL) on one thread. lbfgs evaluates the
    loss and gradient with small matrix products (1,000 x 384 by 384 x 5 for BBC), where every thread wakes
    and waits at each product: on this 2-core CPU, quiet, the BBC probe's fit took 0.72-0.82 s with the
    default threads and 0.08-0.12 s on one; on a 16-core H100 host 29 ms per gradient, 3.5 s for the probe and
    the probe start (bench/linear_threads.py, bench/README.md). Torch's own thread pool is left alone."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return model.fit(features, y)


def one_vs_rest(features: Any, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Multi-label probe: one logistic regression per label on ``features`` (``y``: an (n, k) 0/1 matrix), as
    (weight (k, dim), bias (k,)): each label's sigmoid(w.x + b) is its regression's probability. A label every
    text (or none) carries gets a constant bias of +20 (-20)."""
    k, dim = y.shape[1], features.shape[1]
    weight, bias = np.zeros((k, dim), dtype=np.float32), np.zeros(k, dtype=np.float32)
    for j in range(k):
        if y[:, j].min() == y[:, j].max():
            bias[j] = 20.0 if y[0, j] else -20.0
            continue
        clf = fit(logistic_regression(seed), features, y[:, j])
        weight[j], bias[j] = clf.coef_[0], clf.intercept_[0]
    return weight, bias


class NoVocabulary(ValueError):
    """The training texts give TF-IDF no feature: no word of two or more characters in two or more texts."""


def tfidf_classifier(train_texts: list[str], train_labels: list[Any], test_texts: list[str], num_labels: int,
                     seed: int = 0) -> tuple[np.ndarray, int]:
    """Test probabilities of TF-IDF (word 1-2-grams) + logistic regression, and its parameter count. Raises
    ``NoVocabulary`` where the texts have no word to weigh (numbers, single characters)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    try:
        features = vectorizer.fit_transform(train_texts)
    except ValueError as exc:  # "empty vocabulary" or "After pruning, no terms remain"
        raise NoVocabulary("no word of two or more characters occurs in two or more training texts "
                           f"(scikit-learn: {exc})") from None
    if is_label_sets(train_labels):
        weight, bias = one_vs_rest(features, multi_hot(train_labels, num_labels), seed)
        return sigmoid(vectorizer.transform(test_texts) @ weight.T + bias), int(weight.size + bias.size)
    pipe = make_pipeline(vectorizer, logistic_regression(seed))
    fit(pipe, train_texts, train_labels)
    params = int(pipe[-1].coef_.size + pipe[-1].intercept_.size)
    return _full_proba(pipe, pipe.predict_proba(test_texts), num_labels), params


def linear_probe(train_emb: np.ndarray, train_labels: list[Any], test_emb: np.ndarray, num_labels: int,
                 seed: int = 0) -> tuple[np.ndarray, int]:
    """Test probabilities of a logistic regression on frozen embeddings, and its parameter count."""
    if is_label_sets(train_labels):
        weight, bias = one_vs_rest(train_emb, multi_hot(train_labels, num_labels), seed)
        return sigmoid(test_emb @ weight.T + bias), int(weight.size + bias.size)
    clf = fit(logistic_regression(seed), train_emb, train_labels)
    return _full_proba(clf, clf.predict_proba(test_emb), num_labels), int(clf.coef_.size + clf.intercept_.size)


def _full_proba(model: Any, proba: np.ndarray, num_labels: int) -> np.ndarray:
    """Probabilities over every label id (a class absent from training gets 0)."""
    full = np.zeros((proba.shape[0], num_labels), dtype=np.float64)
    full[:, np.asarray(model.classes_)] = proba
    return full
