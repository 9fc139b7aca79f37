"""Multi-label classification end to end: label sets read from lists or separated strings, sigmoid + BCE,
per-label thresholds tuned on validation, metrics and baselines, and the same scores from predict, serve,
plain transformers/peft, the merged export and ONNX."""

import csv
import json
import random
import subprocess
import sys

import numpy as np
import pytest
import yaml

from lightft.config import DataConfig, load_config
from lightft.data import load_splits
from lightft.errors import ConfigError, DataError
from lightft.inference import Decision, to_predictions
from lightft.metrics import compute_multilabel_metrics, tune_label_thresholds

from conftest import CLASS_WORDS, FILLER, invoke, tiny_run_config, write_config

TOPICS = list(CLASS_WORDS)


def make_multilabel(n: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """Texts made of the words of 0, 1 or 2 topics; their labels are those topics."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topics = rng.sample(TOPICS, [1, 1, 2, 2, 0][i % 5])
        words = [w for t in topics for w in CLASS_WORDS[t]]
        tokens = [rng.choice(words) if words and rng.random() < 0.5 else rng.choice(FILLER)
                  for _ in range(rng.randint(8, 20))]
        rows.append((" ".join(tokens), sorted(topics)))
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps({"text": t, "label": ls}) + "\n" for t, ls in rows), encoding="utf-8")
    return path


def write_csv(path, rows, sep="|"):
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows((t, sep.join(ls)) for t, ls in rows)
    return path


# ---- data -------------------------------------------------------------------------------------------------


def test_lists_make_a_multi_label_task(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", make_multilabel(120))
    splits = load_splits(DataConfig(source=str(path), test_size=20, validation_size=20), seed=1)
    assert splits.task == "multi_label" and splits.label_names == sorted(TOPICS)
    assert all(isinstance(ls, tuple) for ls in splits.train.labels)
    assert any(len(ls) == 2 for ls in splits.train.labels) and any(len(ls) == 0 for ls in splits.train.labels)
    counts = splits.counts()["train"]
    assert sum(counts.values()) == sum(len(ls) for ls in splits.train.labels)
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 120


def test_separated_strings_and_the_task_setting(tmp_path):
    rows = make_multilabel(100)
    path = write_csv(tmp_path / "d.csv", rows)
    multi = load_splits(DataConfig(source=str(path), label_separator="|", test_size=20), seed=0)
    assert multi.task == "multi_label"
    texts = dict(rows_to_lookup(rows))
    for text, ids in zip(multi.test.texts, multi.test.labels, strict=True):
        assert [multi.label_names[i] for i in ids] == texts[text]
    # Without a separator an empty label is a missing one; data.task: multi_label reads it as "no label".
    with pytest.raises(DataError, match=r"d.csv line \d+: missing label"):
        load_splits(DataConfig(source=str(path), test_size=20), seed=0)
    forced = load_splits(DataConfig(source=str(path), test_size=20, task="multi_label"), seed=0)
    assert forced.task == "multi_label" and any(len(n.split("|")) == 2 for n in forced.label_names)


def rows_to_lookup(rows):
    return [(t, ls) for t, ls in rows]


def test_a_list_label_in_a_single_label_task_is_one_line(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", make_multilabel(30))
    with pytest.raises(DataError, match=r"d.jsonl line \d+: the label is a list .*single-label"):
        load_splits(DataConfig(source=str(path), task="single_label", test_size=5), seed=0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a b", "label": ["sport", null]}\n' * 10, encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl line 1: label list holds None"):
        load_splits(DataConfig(source=str(bad), test_size=2), seed=0)
    bad.write_text('{"text": "a b", "label": ["sport"]}\n' * 9 + '{"text": "c d", "label": null}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl line 10: missing label \(a text with no labels is an empty list"):
        load_splits(DataConfig(source=str(bad), test_size=2), seed=0)


def test_vectors_separators_and_labels_that_cannot_be_read(tmp_path):
    vectors = tmp_path / "v.jsonl"
    vectors.write_text('{"text": "a b", "label": [0, 1, 0, 1]}\n' * 10, encoding="utf-8")
    with pytest.raises(DataError, match=r"v.jsonl line 1: the label \[0, 1, 0, 1\] looks like a 0/1 vector"):
        load_splits(DataConfig(source=str(vectors), test_size=2), seed=0)
    for row in ("[0.0, 1.0]", "[true, false]", "[0, 0]"):  # floats, bools, a repeated id: entries, not ids
        vectors.write_text(f'{{"text": "a b", "label": {row}}}\n' * 10, encoding="utf-8")
        with pytest.raises(DataError, match="looks like a 0/1 vector"):
            load_splits(DataConfig(source=str(vectors), test_size=2), seed=0)
    # [1, 0] and [0, 1] rows alone could be ids; a whole column of equal-length 0/1 lists is one-hot.
    vectors.write_text('{"text": "a b", "label": [1, 0]}\n{"text": "c d", "label": [0, 1]}\n' * 10, encoding="utf-8")
    with pytest.raises(DataError, match="every label is a list of 2 zeros and ones"):
        load_splits(DataConfig(source=str(vectors), test_size=2), seed=0)
    ids = tmp_path / "ids.jsonl"  # lists of ids that are not all the same length are label sets
    ids.write_text('{"text": "a b", "label": [1, 0]}\n{"text": "c d", "label": [1]}\n'
                   '{"text": "e f", "label": [0]}\n' * 10, encoding="utf-8")
    assert load_splits(DataConfig(source=str(ids), test_size=6, duplicates="keep"), seed=0).multi_label
    # An explicit separator makes the task multi-label even where no row has two labels.
    path = write_csv(tmp_path / "one.csv", [(t, ls[:1]) for t, ls in make_multilabel(60)])
    assert load_splits(DataConfig(source=str(path), label_separator="|", test_size=10), seed=0).multi_label
    cfg = load_config(None, ["data.source=x", "data.label_separator=|"])  # `|` is taken as typed, not YAML
    assert cfg.data.label_separator == "|"
    with pytest.raises(ConfigError, match="single_label task"):
        load_config(None, ["data.source=x", "data.label_separator=|", "data.task=single_label"])
    with pytest.raises(ConfigError, match="'Q&A' contains data.label_separator"):
        load_config(None, ["data.source=x", "data.label_separator=&", "data.labels=[Q&A, other]"])


def test_every_label_gets_training_texts(tmp_path):
    """Splits stratified by each text's rarest label can leave a label with no training text; one text that
    carries it moves to training (from validation first, then test)."""
    from lightft.data import _cover_labels

    labels = [(0,), (0,), (0, 1), (1, 2), (2,)]
    train, val, test = [0, 1], [2], [3, 4]
    _cover_labels(labels, train, [val, test])
    assert train == [0, 1, 2, 3] and val == [] and test == [4]  # label 1 from validation, label 2 from test
    rows = [(f"goal match text {i}", ["sport"]) for i in range(40)]
    rows += [(f"vote tax text {i}", ["politics", "tech"]) for i in range(3)] + [("chip data", ["tech"])] * 2
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    for seed in range(6):
        splits = load_splits(DataConfig(source=str(path), test_size=12, validation_size=8), seed=seed)
        assert {splits.label_names[i] for ids in splits.train.labels for i in ids} == {"politics", "sport", "tech"}


def test_config_checks():
    with pytest.raises(ConfigError, match="data.task must be one of"):
        load_config(None, ["data.source=x", "data.task=multi"])
    with pytest.raises(ConfigError, match="tune_threshold is for binary"):
        load_config(None, ["data.source=x", "data.task=multi_label", "train.tune_threshold=true"])
    with pytest.raises(ConfigError, match="label_separator"):
        load_config(None, ["data.source=x", "data.label_separator=' '"])


# ---- metrics and decisions --------------------------------------------------------------------------------


def test_multilabel_macro_f1_leaves_out_a_label_no_text_has_and_none_predicts():
    """As single-label: a perfect model scores 1, not (k-1)/k, when the test split lacks one label."""
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    m = compute_multilabel_metrics(y, y, list("abc"), bootstrap=20, seed=0)
    assert m["macro_f1"] == 1.0 and m["per_class"]["c"]["support"] == 0 and m["ci95"]["macro_f1"] == [1.0, 1.0]
    wrong = y.copy()
    wrong[0, 2] = 1  # predicting the absent label brings it into the average, with F1 0
    assert compute_multilabel_metrics(y, wrong, list("abc"))["macro_f1"] == pytest.approx((1 + 1 + 0) / 3)


def test_multilabel_metrics_match_scikit_learn():
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, (200, 4)), rng.integers(0, 2, (200, 4))
    m = compute_multilabel_metrics(y, p, list("abcd"), rng.random((200, 4)), bootstrap=50, seed=1)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, p))
    assert m["macro_f1"] == pytest.approx(f1_score(y, p, average="macro", zero_division=0))
    assert m["micro_f1"] == pytest.approx(f1_score(y, p, average="micro", zero_division=0))
    assert m["hamming_loss"] == pytest.approx(hamming_loss(y, p))
    assert m["per_class"]["a"]["support"] == int(y[:, 0].sum())
    lo, hi = m["ci95"]["micro_f1"]
    assert lo <= m["micro_f1"] <= hi and "macro_roc_auc" in m


def test_label_thresholds_and_decision():
    # label x: six positives scored 0.3-0.35, six negatives under 0.25; label y: no positive, nothing to tune on
    y = np.array([[1, 0]] * 6 + [[0, 0]] * 6)
    probs = np.column_stack([[0.3, 0.31, 0.32, 0.33, 0.34, 0.35, 0.1, 0.12, 0.14, 0.16, 0.18, 0.2],
                             np.linspace(0.9, 0.6, 12)])
    cut = tune_label_thresholds(y, probs)
    assert cut[0] == pytest.approx(0.25) and cut[1] == 0.5  # between the top negative and the lowest positive
    decision = Decision(multi_label=True, thresholds=tuple(cut))
    assert decision.decide(probs[[0, 5, 6, 11]]).tolist() == [[1, 1], [1, 1], [0, 1], [0, 1]]
    # One validation positive scored 0.05: F1 would be maximal at 0.05, giving the label to nearly every text.
    rare = np.array([[1]] + [[0]] * 11)
    assert tune_label_thresholds(rare, np.full((12, 1), 0.04) + rare * 0.01) == [0.5]
    again = Decision.from_json(decision.to_json(["x", "y"]), ["x", "y"], "decision.json")
    assert again == decision
    fallback = Decision(multi_label=True, thresholds=(0.5, 0.5), at_least_one=True)  # every text had a label
    assert fallback.decide(np.array([[0.1, 0.2], [0.7, 0.6]])).tolist() == [[0, 1], [1, 1]]
    assert Decision.from_json(fallback.to_json(["x", "y"]), ["x", "y"], "d") == fallback
    preds = to_predictions(np.array([[0.1, 0.2]]), ["x", "y"], Decision(multi_label=True))
    assert preds[0].labels == [] and preds[0].label is None and preds[0].to_json()["labels"] == []
    with pytest.raises(ValueError, match="a threshold between 0 and 1 for each label"):
        Decision.from_json({"task": "multi_label", "thresholds": {"x": 2}}, ["x", "y"], "decision.json")


# ---- a run, and every way of using it ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def multilabel_run(tiny_bert, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multilabel")
    data = write_jsonl(tmp / "topics.jsonl", make_multilabel(150))
    cfg = tiny_run_config(tiny_bert, data, tmp / "run", name="multi")
    cfg["data"].update(test_size=30, validation_size=30)
    result = invoke("run", write_config(tmp, cfg), "train.epochs=3")
    assert result.exit_code == 0, result.output
    return tmp / "run"


@pytest.mark.slow
def test_run_reports_multilabel_metrics(multilabel_run):
    run = multilabel_run
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "multi_label"
    assert {"finetuned", "tfidf", "linear_probe", "zero_shot", "baseline"} <= set(summary)
    assert "micro_f1" in summary["finetuned"] and "hamming_loss" in summary["finetuned"]
    # TF-IDF one-vs-rest reads the topic words: a check that the per-label regressions are wired right.
    assert summary["tfidf"]["micro_f1"] > 0.8
    decision = json.loads((run / "decision.json").read_text())
    assert decision["task"] == "multi_label" and decision["chosen_on"] == "validation"
    assert set(decision["thresholds"]) == set(TOPICS)
    assert decision["at_least_one"] is False  # some training texts have no label
    for baseline in ("tfidf", "linear_probe", "zero_shot"):  # tuned on validation like the fine-tuned model
        assert set(json.loads((run / "metrics" / f"{baseline}.json").read_text())["thresholds"]) == set(TOPICS)
    assert "thresholds" not in json.loads((run / "metrics" / "baseline.json").read_text())
    metrics = json.loads((run / "metrics" / "finetuned.json").read_text())
    assert metrics["thresholds"] == decision["thresholds"] and "confusion_matrix" not in metrics
    assert set(metrics["ci95"]) >= {"accuracy", "macro_f1", "micro_f1"}
    report = (run / "report.md").read_text()
    assert "subset accuracy" in report and "Hamming loss" in report
    card = (run / "adapter" / "README.md").read_text()
    assert "multi_label_classification" in card and "Micro-F1" in card and "several labels or none" in card
    assert metrics["at_least_one"] is False
    config = json.loads((run / "adapter" / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"


@pytest.mark.slow
def test_compare_shows_the_task_and_micro_f1(multilabel_run, finished_run, tmp_path):
    result = invoke("compare", multilabel_run, finished_run, "-o", tmp_path / "cmp.md")
    assert result.exit_code == 0, result.output
    table = (tmp_path / "cmp.md").read_text()
    assert "multi\\_label" in table or "multi_label" in table
    micro = json.loads((multilabel_run / "summary.json").read_text())["finetuned"]["micro_f1"]
    assert f"{micro:.4f}" in table and (tmp_path / "cmp.png").is_file()
    # other data and labels: the scores are not on the same texts, and compare says so
    assert "note: These runs were not tested on the same texts (data: " in result.output
    assert "(data: topics vs corpus; test texts: 30 vs 12" in table  # in the order the runs were given


@pytest.mark.slow
def test_predict_returns_label_sets(multilabel_run, tmp_path):
    from lightft.predict import Classifier

    clf = Classifier.from_run(multilabel_run, precision="fp32")
    texts = ["goal match team coach goal", "vote election chip software vote", "the of and a"]
    probs = clf.predict_proba(texts)
    assert probs.shape == (3, len(TOPICS)) and not np.allclose(probs.sum(1), 1.0)  # sigmoids, not a softmax
    preds = clf.predict(texts)
    cut = dict(zip(clf.label_names, clf.decision.thresholds, strict=True))
    for pred in preds:
        assert pred.labels == sorted((n for n, p in pred.probabilities.items() if p >= cut[n]),
                                     key=lambda n: -pred.probabilities[n])

    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(texts)]
    inp = tmp_path / "in.csv"
    with inp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, ["id", "text"])
        writer.writeheader()
        writer.writerows(rows)
    result = invoke("predict", multilabel_run, "-i", inp, "-o", tmp_path / "out.csv", "--probabilities", "--quiet")
    assert result.exit_code == 0, result.output
    with (tmp_path / "out.csv").open(encoding="utf-8") as fh:
        out = list(csv.DictReader(fh))
    assert [r["pred_labels"] for r in out] == ["|".join(p.labels) for p in preds]
    assert "pred_score" not in out[0] and "pred_prob_sport" in out[0]

    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = invoke("predict", multilabel_run, "-i", tmp_path / "in.jsonl", "-o", tmp_path / "out.jsonl", "--quiet")
    assert result.exit_code == 0, result.output
    got = [json.loads(line)["pred_labels"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert got == [p.labels for p in preds]

    metrics_file = tmp_path / "metrics.json"
    data = sorted(multilabel_run.parent.glob("*.jsonl"))[0]
    result = invoke("evaluate", multilabel_run, "--data", data, "-o", metrics_file)
    assert result.exit_code == 0, result.output
    assert "subset accuracy" in result.output and "micro_f1" in json.loads(metrics_file.read_text())


PLAIN = r"""
import json, sys
import torch
from peft import PeftModel
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, pipeline

adapter, base_path, merged, texts = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
config = AutoConfig.from_pretrained(adapter)
model = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(base_path, config=config),
                                  adapter).eval()
tok = AutoTokenizer.from_pretrained(adapter)
with torch.inference_mode():
    enc = tok(texts, truncation=True, max_length=32, padding=True, return_tensors="pt")
    peft_probs = torch.sigmoid(model(**enc).logits).tolist()
pipe = pipeline("text-classification", model=merged, top_k=None, truncation=True)
pipe_probs = [{r["label"]: r["score"] for r in rows} for rows in pipe(texts)]
assert "lightft" not in sys.modules
print(json.dumps({"peft": peft_probs, "pipeline": pipe_probs, "problem_type": config.problem_type}))
"""


@pytest.mark.slow
def test_plain_peft_merged_pipeline_and_onnx_give_the_same_scores(multilabel_run, tmp_path):
    from lightft.export import OnnxClassifier
    from lightft.predict import Classifier

    texts = ["goal match team coach goal", "vote election chip software vote", "the of and a"]
    ours = Classifier.from_run(multilabel_run, precision="fp32").predict_proba(texts)
    merged = tmp_path / "merged"
    assert invoke("export", multilabel_run, "--merged", merged).exit_code == 0
    base = yaml.safe_load((multilabel_run / "config.yaml").read_text())["model"]["name"]
    proc = subprocess.run([sys.executable, "-c", PLAIN, str(multilabel_run / "adapter"), base, str(merged),
                           json.dumps(texts)], capture_output=True, text=True, check=True)
    plain = json.loads(proc.stdout)
    names = Classifier.from_run(multilabel_run, precision="fp32").label_names
    assert plain["problem_type"] == "multi_label_classification"
    np.testing.assert_allclose(plain["peft"], ours, atol=1e-5)
    np.testing.assert_allclose([[row[n] for n in names] for row in plain["pipeline"]], ours, atol=1e-5)

    onnx = tmp_path / "onnx"
    assert invoke("export", multilabel_run, "--onnx", onnx).exit_code == 0
    clf = OnnxClassifier(onnx)
    np.testing.assert_allclose(clf.predict_proba(texts), ours, atol=1e-4)
    assert clf.decision == Classifier.from_run(multilabel_run, precision="fp32").decision
    assert [p.labels for p in clf.predict(texts)] == \
        [p.labels for p in Classifier.from_run(multilabel_run, precision="fp32").predict(texts)]


@pytest.mark.slow
def test_serve_returns_label_sets(multilabel_run, finished_run):
    from lightft.serve import AdapterServer

    server = AdapterServer({"topics": multilabel_run, "single": finished_run}, precision="fp32")
    multi = server.classify("topics", ["goal match team coach", "the of and"])
    assert all("labels" in r and set(r["probabilities"]) == set(TOPICS) for r in multi)
    single = server.classify("single", ["goal match team coach"])
    assert "labels" not in single[0] and isinstance(single[0]["label"], str)


def test_curve_refuses_multilabel_data_in_one_line(tiny_bert, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", make_multilabel(60))
    cfg = write_config(tmp_path, tiny_run_config(tiny_bert, data, tmp_path / "run", name="c"))
    result = invoke("curve", cfg, "--budgets", "2,all", "--seeds", "1")
    assert result.exit_code != 0 and "single-label tasks only" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_mean_pooled_head_trains_multilabel_and_exports_logits(tiny_sentence_bert, tmp_path):
    """The default model's path: a mean-pooled head (BCE in its own forward), started from one probe per label;
    its merged export (a sentence-transformers folder) gives the logits whose sigmoids lightft reports."""
    from sentence_transformers import SentenceTransformer

    from lightft.predict import Classifier

    data = write_jsonl(tmp_path / "topics.jsonl", make_multilabel(120, seed=3))
    cfg = tiny_run_config(tiny_sentence_bert, data, tmp_path / "run", name="multi-mean")
    cfg["data"].update(test_size=24, validation_size=24)
    result = invoke("run", write_config(tmp_path, cfg), "train.class_weighted_loss=true")
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "multi_label" and summary["pooling"] == "mean"
    training = json.loads((run / "training.json").read_text())
    assert training["epochs"][0]["epoch"] == 0  # the one-vs-rest probe start, scored on validation

    texts = ["goal match team coach goal", "vote election chip software vote", "the of and a"]
    ours = Classifier.from_run(run, precision="fp32").predict_proba(texts)
    assert invoke("export", run, "--merged", tmp_path / "st").exit_code == 0
    logits = SentenceTransformer(str(tmp_path / "st"), device="cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), ours, atol=1e-4)


def test_label_names_holding_the_csv_join_are_refused_for_csv_output(tmp_path):
    """A CSV field joins a text's labels with '|'; a label named 'a|b' would make the output ambiguous."""
    from types import SimpleNamespace

    from lightft.errors import LightftError
    from lightft.predict import FileJob

    classifier = SimpleNamespace(label_names=["news|politics", "sport"],
                                 decision=Decision(multi_label=True, thresholds=[0.5, 0.5]))
    (tmp_path / "in.csv").write_text("text\nhello\n", encoding="utf-8")
    with pytest.raises(LightftError, match=r"news\|politics.*JSONL or Parquet"):
        FileJob(classifier, tmp_path / "in.csv", tmp_path / "out.csv")
    (tmp_path / "in.jsonl").write_text('{"text": "hello"}\n', encoding="utf-8")
    FileJob(classifier, tmp_path / "in.jsonl", tmp_path / "out.jsonl")  # a list per text: nothing to join


def test_card_describes_the_at_least_one_fallback():
    """Where every training text had a label, predict/serve give a text its best label: the card must say so,
    since the merged and sentence-transformers exports carry no decision.json."""
    from lightft.card import _multi_label_note

    summary = {"task": "multi_label", "pooling": "cls"}
    tuned = {"thresholds": {"a": 0.4, "b": 0.6}, "at_least_one": True}
    note = _multi_label_note(summary, tuned, "transformers")
    assert "highest-scoring label" in note and "a 0.400, b 0.600" in note and "or none" not in note
    assert "several labels or none" in _multi_label_note(summary, {**tuned, "at_least_one": False}, "peft")


@pytest.mark.slow
def test_one_label_a_text_has_or_not(tiny_bert, tmp_path):
    """A single label (a comment is toxic or not) is a multi-label task of one label: config and run accept it."""
    rows = [(t, [lab for lab in ls if lab == TOPICS[0]]) for t, ls in make_multilabel(120, seed=3)]
    data = write_jsonl(tmp_path / "one.jsonl", rows)
    cfg = tiny_run_config(tiny_bert, data, tmp_path / "run", name="one")
    cfg["data"].update(test_size=30, validation_size=30, labels=[TOPICS[0]], task="multi_label")
    result = invoke("run", write_config(tmp_path, cfg))
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["task"] == "multi_label" and summary["labels"] == [TOPICS[0]]
    with pytest.raises(ConfigError, match="data.task: multi_label"):
        load_config(None, ["data.source=x", f"data.labels=[{TOPICS[0]}]"])
