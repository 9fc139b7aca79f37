"""`lightft curve` (issue 15, part 4): models at label budgets over seeds, on one test split, with the splits
tokenised and the frozen embeddings computed once."""

import csv
import json

import numpy as np
import pytest
from test_hostile import assert_one_line

from conftest import invoke, tiny_run_config, write_config


def test_budgets_parse_and_refuse_nonsense():
    from lightft.curve import parse_budgets
    from lightft.errors import LightftError

    assert parse_budgets("16, all,8,8") == [8, 16, None]
    for bad in ("0", "eight", "", "-4"):
        with pytest.raises(LightftError):
            parse_budgets(bad)


def test_stratified_subset_takes_per_class_and_all_of_a_small_class():
    from lightft.curve import stratified_subset

    labels = [0] * 10 + [1] * 3 + [2] * 7
    idx = stratified_subset(labels, 4, seed=1)
    assert sorted(np.bincount([labels[i] for i in idx]).tolist()) == [3, 4, 4]
    assert idx == stratified_subset(labels, 4, seed=1) != stratified_subset(labels, 4, seed=2)
    assert stratified_subset(labels, None, 0) == list(range(20))


def test_subset_of_windows_keeps_each_texts_windows():
    from lightft.curve import subset_tokenized
    from lightft.windows import Tokenized

    tok = Tokenized([[1], [2], [3], [4], [5]], np.array([0, 0, 1, 2, 2]))
    sub, rows = subset_tokenized(tok, [0, 2])
    assert sub.ids == [[1], [2], [4], [5]] and sub.owner.tolist() == [0, 0, 1, 1] and rows.tolist() == [0, 1, 3, 4]


@pytest.mark.slow
def test_curve_end_to_end_reuses_tokens_and_embeddings(tiny_bert, class_folder, tmp_path, monkeypatch):
    from lightft import baselines, experiment
    from lightft.windows import tokenize_texts

    calls = {"embed": 0, "tokenize": 0}
    real_embed = baselines.embed

    def counting_embed(*a, **k):
        calls["embed"] += 1
        return real_embed(*a, **k)

    def counting_tokenize(*a, **k):
        calls["tokenize"] += 1
        return tokenize_texts(*a, **k)

    monkeypatch.setattr(baselines, "embed", counting_embed)
    monkeypatch.setattr("lightft.windows.tokenize_texts", counting_tokenize)
    cfg = write_config(tmp_path, tiny_run_config(tiny_bert, class_folder, tmp_path / "run", **{"train.epochs": 1}))
    out = tmp_path / "curve"
    result = invoke("curve", cfg, "--budgets", "3,all", "--seeds", "2", "-o", out)
    assert result.exit_code == 0, result.output
    assert calls["tokenize"] == 3 and calls["embed"] == 3  # train/validation/test once; train, test, labels once
    assert experiment  # imported so the patched names are the ones `prepare` looks up

    rows = list(csv.DictReader((out / "curve.csv").open()))
    learned = [r for r in rows if r["model"] != "zero_shot"]
    assert {(r["budget"], r["seed"], r["model"]) for r in learned} == {
        (b, s, m) for b in ("3", "all") for s in ("7", "8") for m in ("finetuned", "linear_probe", "tfidf")}
    assert {r["train_texts"] for r in learned if r["budget"] == "3"} == {"9"}  # 3 per class, 3 classes
    assert [(r["budget"], r["model"]) for r in rows].count(("0", "zero_shot")) == 1  # no labels: scored once

    data = json.loads((out / "curve.json").read_text())
    assert {r["train_texts"] for r in learned if r["budget"] == "all"} == {str(data["train_texts"])}
    tuned_all = [e for e in data["summary"] if e["model"] == "finetuned" and e["budget"] == "all"][0]
    accs = [float(r["accuracy"]) for r in learned if r["model"] == "finetuned" and r["budget"] == "all"]
    assert tuned_all["accuracy"] == pytest.approx(np.mean(accs))
    lo, hi = tuned_all["accuracy_ci95"]
    assert lo <= tuned_all["accuracy"] <= hi
    assert data["within_1_point_of_all"] in ("3", "all")
    for name in ("curve.md", "curve.html", "curve.png", "run.json"):
        assert (out / name).is_file()
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert "within 1 point" in result.output
    assert all(0 <= e["accuracy_ci95"][0] <= e["accuracy_ci95"][1] <= 1 for e in data["summary"])


def test_curve_refuses_bad_budgets_and_no_validation(tiny_bert, class_folder, tmp_path):
    cfg = write_config(tmp_path, tiny_run_config(tiny_bert, class_folder, tmp_path / "run"))
    assert_one_line(invoke("curve", cfg, "--budgets", "8,lots", "-o", tmp_path / "c"), "'lots'")
    assert_one_line(invoke("curve", cfg, "data.validation_size=0", "-o", tmp_path / "c"), "validation_size")
    assert not (tmp_path / "c").exists()


def test_a_budget_as_large_as_every_class_is_all(caplog):
    import logging
    from types import SimpleNamespace

    from lightft.curve import _within_the_data

    splits = SimpleNamespace(train=SimpleNamespace(labels=[0] * 50 + [1] * 40 + [2] * 45))
    with caplog.at_level(logging.WARNING, logger="lightft"):
        assert _within_the_data([8, 50, 60, None], splits) == [8, None]
    assert any("--budgets 50,60" in r.message and "at most 50" in r.message for r in caplog.records)
    assert _within_the_data([8, 49], splits) == [8, 49]


def test_no_budget_is_enough_when_only_all_was_run():
    from lightft.curve import enough_labels

    only_all = [{"budget": "all", "model": "finetuned", "accuracy": 0.9}]
    assert enough_labels(only_all) is None
    assert enough_labels(only_all + [{"budget": "8", "model": "finetuned", "accuracy": 0.85}]) == "all"


@pytest.mark.slow
def test_an_interrupted_curve_resumes_keeping_its_finished_subsets(tiny_bert, class_folder, tmp_path, monkeypatch):
    """Ctrl-C in the second (budget, seed) subset: the first's rows are kept by --resume (not trained again), the
    rest are trained; without --resume the folder is refused rather than emptied, and another config is refused."""
    from lightft import curve

    cfg = write_config(tmp_path, tiny_run_config(tiny_bert, class_folder, tmp_path / "run", **{"train.epochs": 1}))
    out = tmp_path / "curve"
    real, calls = curve._one_subset, []

    def interrupted_second(*a, **k):
        calls.append(a[3:5])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(curve, "_one_subset", interrupted_second)
    result = invoke("curve", cfg, "--budgets", "3,all", "--seeds", "1", "-o", out)
    assert result.exit_code == 130 and f"--resume {out}" in result.output, result.output
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    first = json.loads((out / "curve.json").read_text())["rows"]
    assert_one_line(invoke("curve", cfg, "--budgets", "3,all", "--seeds", "1", "-o", out), "--resume")
    assert_one_line(invoke("curve", cfg, "train.epochs=2", "--budgets", "3,all", "--seeds", "1", "--resume", out),
                    "differs")
    calls.clear()
    result = invoke("curve", cfg, "--budgets", "3,all", "--seeds", "1", "--resume", out)
    assert result.exit_code == 0, result.output
    assert calls == [(None, 0)]  # only budget 'all' was trained again
    rows = json.loads((out / "curve.json").read_text())["rows"]
    assert [r for r in rows if r["budget"] == 3] == [r for r in first if r["budget"] == 3]
    assert {(r["budget"], r["model"]) for r in rows if r["model"] == "finetuned"} == {(3, "finetuned"),
                                                                                      ("all", "finetuned")}
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert_one_line(invoke("curve", cfg, "--resume", out), "already complete")


def test_a_damaged_curve_json_keeps_nothing_and_says_so(tmp_path, caplog):
    from lightft.curve import finished_subsets

    row = {"budget": 3, "seed": 7, "model": "finetuned", "train_texts": 9, "accuracy": 0.5, "macro_f1": 0.4}
    (tmp_path / "curve.json").write_text(json.dumps({"rows": [row, row | {"model": "tfidf"},
                                                              row | {"budget": "all", "model": "tfidf"},
                                                              row | {"seed": [1]}, 5]}))
    # the finished subset (3, 7) is kept with its rows; 'all' had no fine-tuned row yet; malformed rows are not
    assert finished_subsets(tmp_path) == {("3", 7): [row, row | {"model": "tfidf"}]}
    for content in ("{not json", '{"rows": 5}', "[1]"):
        (tmp_path / "curve.json").write_text(content)
        with caplog.at_level("WARNING"):
            assert finished_subsets(tmp_path) == {}
        assert "none of its results can be kept" in caplog.text
        caplog.clear()
