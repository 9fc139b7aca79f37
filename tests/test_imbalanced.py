"""Rare positive class (5%): class weights, ROC/PR-AUC, and a threshold tuned on validation."""

import json
import random

import pytest

from conftest import FILLER, invoke, table_labels, tiny_run_config, write_config


def imbalanced_csv(path, n=600, positive_rate=0.05, seed=0):
    """'spam' texts carry spam words more often than 'ham' texts: a ranking signal, rare positives."""
    rng = random.Random(seed)
    spam_words, ham_words = ["tax", "vote", "law"], ["goal", "match", "chip", "phone", "data", "team"]
    lines = ["text,label"]
    for i in range(n):
        spam = i < int(n * positive_rate)
        words = [rng.choice(FILLER) for _ in range(rng.randint(8, 16))]
        for _ in range(3):
            p = 0.5 if spam else 0.1
            words.insert(rng.randrange(len(words)), rng.choice(spam_words if rng.random() < p else ham_words))
        lines.append(f"{' '.join(words)},{'spam' if spam else 'ham'}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_tuned_threshold_beats_argmax_on_rare_positives(tiny_bert, tmp_path):
    data = imbalanced_csv(tmp_path / "spam.csv")
    cfg = tiny_run_config(tiny_bert, data, tmp_path / "run", **{
        "data.labels": ["ham", "spam"], "data.test_size": 200, "data.validation_size": 160,
        "train.tune_threshold": True, "train.epochs": 3, "method": "full", "train.learning_rate": 1e-3,
        "evaluation.bootstrap_resamples": 0})
    result = invoke("run", write_config(tmp_path, cfg))
    assert result.exit_code == 0, result.output
    assert "the more frequent class" not in result.output + result.stderr
    run = tmp_path / "run"
    labels = json.loads((run / "labels.json").read_text())["counts"]
    assert all(labels[split]["spam"] > 0 for split in ("train", "validation", "test"))
    metrics = json.loads((run / "metrics/finetuned.json").read_text())
    assert 0 <= metrics["roc_auc"] <= 1 and 0 <= metrics["pr_auc"] <= 1
    t = metrics["threshold"]
    assert t["positive_label"] == "spam" and 0 < t["value"] < 1
    assert t["positive_f1"] > t["positive_f1_argmax"]
    assert json.loads((run / "decision.json").read_text())["chosen_on"] == "validation"
    assert f"reaches {t['value']:.4f} (tuned on validation)" in (run / "report.md").read_text(encoding="utf-8")
    assert f"reaches {t['value']:.4f}, a threshold tuned" in (run / "adapter/README.md").read_text(encoding="utf-8")
    # predict uses the tuned threshold too
    from lightft.predict import Classifier

    texts = ["tax vote law the of", "goal match team the", "spam spam offer", "the of and"]
    out = invoke("predict", run, *texts)
    assert out.exit_code == 0, out.output
    probs = Classifier.from_run(run).predict_proba(texts)
    assert table_labels(out.output) == ["spam" if p >= t["value"] else "ham" for p in probs[:, 1]]


@pytest.mark.slow
def test_too_few_validation_positives_leave_the_decision_argmax(tiny_bert, tmp_path):
    data = imbalanced_csv(tmp_path / "spam.csv", n=200)  # 10 spam: 2 in a 40-text validation split
    cfg = tiny_run_config(tiny_bert, data, tmp_path / "run", **{
        "data.labels": ["ham", "spam"], "data.test_size": 40, "data.validation_size": 40,
        "train.tune_threshold": True, "train.epochs": 1, "baselines.zero_shot": False,
        "baselines.linear_probe": False, "evaluation.bootstrap_resamples": 0})
    result = invoke("run", write_config(tmp_path, cfg))
    assert result.exit_code == 0, result.output
    assert "fewer than 5 of one of them to tune a threshold on" in result.output + result.stderr
    run = tmp_path / "run"
    assert not (run / "decision.json").exists()
    assert "threshold" not in json.loads((run / "metrics/finetuned.json").read_text())


def test_tuning_the_more_frequent_class_is_warned_with_the_order_that_tunes_the_other(tiny_bert, tmp_path):
    data = imbalanced_csv(tmp_path / "spam.csv", n=200, positive_rate=0.25)
    cfg = tiny_run_config(tiny_bert, data, tmp_path / "run", **{
        "data.labels": ["spam", "ham"], "data.test_size": 40, "data.validation_size": 40,
        "train.tune_threshold": True, "train.epochs": 1, "baselines.zero_shot": False,
        "baselines.linear_probe": False, "baselines.tfidf": False, "evaluation.bootstrap_resamples": 0})
    result = invoke("train", write_config(tmp_path, cfg))
    assert result.exit_code == 0, result.output
    assert "tunes 'ham' (label id 1), the more frequent class here" in result.output + result.stderr
    assert "data.labels=[ham,spam]" in result.output + result.stderr


@pytest.mark.slow
def test_class_weighted_loss_runs(tiny_bert, tmp_path):
    data = imbalanced_csv(tmp_path / "spam.csv", n=200)
    cfg = tiny_run_config(tiny_bert, data, tmp_path / "run", **{
        "data.test_size": 40, "data.validation_size": 40, "train.class_weighted_loss": True, "train.epochs": 1,
        "baselines.zero_shot": False, "baselines.linear_probe": False})
    result = invoke("train", write_config(tmp_path, cfg))
    assert result.exit_code == 0, result.output
