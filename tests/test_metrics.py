import numpy as np
import pytest

from lightft.metrics import (
    bootstrap_ci,
    changed_predictions,
    compute_metrics,
    expected_calibration_error,
    fast_macro_f1,
    mcnemar_exact,
    tune_threshold,
)


def test_metrics_basic():
    m = compute_metrics([0, 1, 2, 2], [0, 1, 1, 2], ["a", "b", "c"])
    assert m["accuracy"] == 0.75
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert m["per_class"]["c"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}


def test_fast_macro_f1_matches_sklearn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    assert fast_macro_f1(t, p, 4) == pytest.approx(f1_score(t, p, average="macro"))


def test_macro_f1_leaves_out_a_class_neither_in_the_split_nor_predicted():
    # "c" has no test example and no prediction: a perfect model scores 1, not 2/3
    m = compute_metrics([0, 1, 1], [0, 1, 1], ["a", "b", "c"])
    assert m["macro_f1"] == 1.0 and m["per_class"]["c"]["support"] == 0
    assert fast_macro_f1(np.array([0, 1, 1]), np.array([0, 1, 1]), 3) == 1.0
    # predicted but absent from the split: a false positive, so it counts (F1 0)
    wrong = compute_metrics([0, 1, 1], [0, 1, 2], ["a", "b", "c"])
    assert wrong["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert fast_macro_f1(np.array([0, 1, 1]), np.array([0, 1, 2]), 3) == pytest.approx(wrong["macro_f1"])


def test_bootstrap_ci_brackets_the_estimate_and_is_seeded():
    rng = np.random.default_rng(1)
    t = rng.integers(0, 3, 500)
    p = np.where(rng.random(500) < 0.8, t, (t + 1) % 3)
    ci = bootstrap_ci(t, p, 3, 500, seed=3)
    acc = (t == p).mean()
    assert ci["accuracy"][0] < acc < ci["accuracy"][1]
    assert ci["accuracy"][1] - ci["accuracy"][0] < 0.1
    assert ci == bootstrap_ci(t, p, 3, 500, seed=3)
    m = compute_metrics(t, p, ["a", "b", "c"], bootstrap=200, seed=0)
    assert m["ci95"]["resamples"] == 200 and len(m["ci95"]["macro_f1"]) == 2


def test_mcnemar_exact():
    y = np.zeros(30, dtype=int)
    a = np.zeros(30, dtype=int)  # a always right
    b = np.array([1] * 10 + [0] * 20)  # b wrong on 10
    r = mcnemar_exact(y, a, b)
    assert r["only_a_right"] == 10 and r["only_b_right"] == 0
    assert r["p_value"] == pytest.approx(2 * 0.5**10)
    assert mcnemar_exact(y, a, a)["p_value"] == 1.0


def test_ece():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    assert expected_calibration_error(np.array([0, 0, 0, 1]), probs) == pytest.approx(0.5 * 0.1 + 0.5 * 0.1)
    assert expected_calibration_error(np.array([0, 0]), np.array([[1.0, 0.0], [1.0, 0.0]])) == 0


def test_changed_predictions():
    out = changed_predictions(["x " * 200, "b", "c"], np.array([0, 1, 1]), np.array([1, 1, 0]),
                              np.array([0, 0, 1]), ["n", "p"])
    assert [r["index"] for r in out["wrong_to_right"]] == [0, 2]
    assert [r["index"] for r in out["right_to_wrong"]] == [1]
    assert out["wrong_to_right"][0]["text"].endswith("…")


def test_the_tuned_threshold_is_the_middle_of_the_best_range_not_its_top():
    # every threshold in (0.1, 0.85] separates the two positives: the middle, not 0.85, which the next
    # positive scored 0.8 would miss
    y, p = np.array([0, 0, 0, 1, 1]), np.array([0.01, 0.02, 0.1, 0.85, 0.9])
    assert tune_threshold(y, p) == pytest.approx(0.475)
    assert ((p >= tune_threshold(y, p)) == y.astype(bool)).all()
    # a plateau down to the lowest score: down to 0
    assert tune_threshold(np.array([1, 1]), np.array([0.3, 0.6])) == pytest.approx(0.15)
