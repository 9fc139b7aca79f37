"""Long texts as windows: every token read once or more, windows aggregated alike in every path."""

import numpy as np
import pytest

from lightft.windows import aggregate, split, tokenize_texts, unread_texts

from conftest import invoke, tiny_run_config, write_class_folder, write_config


def test_split_covers_the_whole_text_in_bounded_windows():
    ids = [101] + list(range(1000, 1050)) + [102]  # [CLS] 50 tokens [SEP]
    special = [1] + [0] * 50 + [1]
    windows = split(ids, special, max_length=12, stride=5, max_windows=100)
    assert all(len(w) <= 12 and w[0] == 101 and w[-1] == 102 for w in windows)
    body = [w[1:-1] for w in windows]
    assert body[0][0] == 1000 and body[-1][-1] == 1049  # starts at the start, ends at the end
    assert set(t for b in body for t in b) == set(range(1000, 1050))
    assert [b[0] for b in body[:3]] == [1000, 1005, 1010]
    assert split(ids[:8], special[:7] + [1], 12, 5, 100) == [ids[:8]]  # short: one window, unchanged
    capped = split(ids, special, 12, 5, max_windows=3)
    assert len(capped) == 3 and capped[0] == windows[0] and capped[-1] == windows[-1]


def test_aggregate_mean_and_max_per_text():
    values = np.array([[1.0, 0.0], [3.0, -2.0], [5.0, 5.0]], dtype=np.float32)
    owner = np.array([0, 0, 1])
    np.testing.assert_allclose(aggregate(values, owner, "mean"), [[2.0, -1.0], [5.0, 5.0]])
    np.testing.assert_allclose(aggregate(values, owner, "max"), [[3.0, 0.0], [5.0, 5.0]])
    assert aggregate(values, None) is values


def test_tokenize_texts_windows_owner(tiny_bert):
    from lightft.model import load_tokenizer

    tok = load_tokenizer(str(tiny_bert))
    enc = tokenize_texts(["goal " * 30, "vote law", "chip " * 12], tok, max_length=10, truncation="windows",
                         stride=4)
    assert enc.texts == 3 and len(enc.ids) == len(enc.owner) > 3
    assert sorted(set(enc.owner.tolist())) == [0, 1, 2] and (np.diff(enc.owner) >= 0).all()
    assert enc.per_input(["a", "b", "c"]) == [["a", "b", "c"][i] for i in enc.owner]
    assert tokenize_texts(["vote law"], tok, 10).owner is None


@pytest.mark.parametrize("aggregation", ["mean", "max"])
@pytest.mark.slow
def test_a_windowed_run_predicts_serves_and_exports_alike(tiny_sentence_bert, tmp_path, aggregation):
    from lightft.export import OnnxClassifier, export_onnx
    from lightft.inference import predict_logits, softmax
    from lightft.predict import Classifier
    from lightft.serve import AdapterServer

    cfg = write_config(tmp_path, tiny_run_config(
        tiny_sentence_bert, write_class_folder(tmp_path / "corpus"), tmp_path / "run", name="windows",
        **{"model.truncation": "windows", "model.max_length": 10, "model.window_stride": 4,
           "model.window_aggregation": aggregation, "train.epochs": 1}))
    result = invoke("run", cfg)
    assert result.exit_code == 0, result.output
    texts = ["goal match team coach league score the of and " * 3, "vote law", "chip software phone " * 5]
    clf = Classifier.from_run(tmp_path / "run", precision="fp32")
    enc = clf.tokenize(texts)
    assert len(enc.ids) > len(texts)
    per_window = predict_logits(clf.model, enc.ids, clf.pad_id, precision="fp32", progress=False)
    want = softmax(aggregate(per_window, enc.owner, aggregation))
    np.testing.assert_allclose(clf.predict_proba(texts), want, atol=1e-5)

    served = AdapterServer({"w": tmp_path / "run"}, precision="fp32").classify("w", texts)
    got = np.array([[x["probabilities"][n] for n in clf.label_names] for x in served])
    np.testing.assert_allclose(got, want, atol=1e-4)

    export_onnx(tmp_path / "run", tmp_path / "onnx")
    np.testing.assert_allclose(OnnxClassifier(tmp_path / "onnx").predict_proba(texts), want, atol=1e-3)
    if aggregation == "mean":  # the merged export reads the head only, and export says so
        result = invoke("export", tmp_path / "run", "--merged", tmp_path / "merged")
        assert result.exit_code == 0 and "reads long texts as windows" in result.output


def test_spread_keeps_at_most_n_windows_per_text_first_included():
    from lightft.windows import Tokenized, spread

    tok = Tokenized([[i] for i in range(9)], np.array([0, 0, 0, 0, 0, 1, 2, 2, 2]))
    one, rows = spread(tok, 1)
    assert rows.tolist() == [0, 5, 6] and one.owner.tolist() == [0, 1, 2] and one.ids == [[0], [5], [6]]
    two, rows = spread(tok, 2)
    assert rows.tolist() == [0, 4, 5, 6, 8]  # first and last of each text with more than two
    assert spread(tok, 5) == (tok, None) and spread(tok, None) == (tok, None)
    short = Tokenized([[1], [2]])  # head truncation: nothing to spread
    assert spread(short, 1) == (short, None)


def test_auto_truncation_reads_windows_only_where_most_tokens_would_be_unread(tiny_bert):
    from transformers import AutoTokenizer

    from lightft.windows import resolve_truncation

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    long, short = ["goal match " * 40] * 3, ["vote law"] * 3
    assert resolve_truncation("auto", long, tok, 16)[0] == "windows"
    assert resolve_truncation("auto", short, tok, 16) == ("head", 0.0)
    # a few long texts among many short ones: most tokens are still in the long texts
    assert resolve_truncation("auto", long + short * 9, tok, 16)[0] == "windows"
    assert resolve_truncation("auto", long, tok, 512)[0] == "head"
    assert resolve_truncation("head_tail", long, tok, 16)[0] == "head_tail"
    with pytest.raises(ValueError, match="auto"):
        tokenize_texts(long, tok, 16, "auto")


def test_unread_share_reads_a_bounded_prefix_on_a_sample(tiny_bert):
    from transformers import AutoTokenizer

    from lightft.windows import unread_share, window_reach

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    huge = "goal " * 200_000  # 200,002 tokens; only ~100x the windows' reach in characters is tokenized
    assert window_reach(16, None, 4) == 8 * 3 + 16
    assert unread_share([huge], tok, 16, reach=40) == pytest.approx(1 - 16 / 802)  # 4,000 characters read
    assert unread_share([huge], tok, 16) == pytest.approx(1 - 16 / 200_002)
    # an evenly spread sample of the list: first and last kept
    texts = ["goal " * 30] + ["vote"] * 50 + ["goal " * 30]
    assert unread_share(texts, tok, 16, sample=2) == pytest.approx(unread_share(texts[:1], tok, 16))


@pytest.mark.slow
def test_auto_run_records_windows_and_trains_on_head_windows_only(tiny_sentence_bert, tmp_path):
    import json

    import yaml

    corpus = write_class_folder(tmp_path / "corpus")
    for f in corpus.rglob("*.txt"):  # every text ~3x longer than a window: most tokens beyond the head
        f.write_text(" ".join([f.read_text(encoding="utf-8")] * 3), encoding="utf-8")
    cfg = write_config(tmp_path, tiny_run_config(
        tiny_sentence_bert, corpus, tmp_path / "run", name="auto",
        **{"model.truncation": "auto", "model.max_length": 8, "train.epochs": 1, "train.windows_per_text": 1}))
    result = invoke("run", cfg)
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"]["truncation"] == "windows"  # the decision, so predict/serve/export read alike
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["truncation"] == "windows"
    # one window per training text (train.windows_per_text 1; the default is 2): as many optimizer steps as head
    # truncation
    texts = json.loads((tmp_path / "run" / "summary.json").read_text())["train_samples"]
    steps = json.loads((tmp_path / "run" / "training.json").read_text())["steps"]
    assert steps[-1]["step"] == -(-texts // 8)
    # resuming with the same (auto) config is the same config
    from lightft.config import load_config, save_config
    from lightft.experiment import preflight

    again = load_config(cfg)
    preflight(again)
    assert save_config(again) == (tmp_path / "run" / "config.yaml").read_text()


@pytest.mark.parametrize("aggregation", ["mean", "max"])
def test_probe_start_with_windows_is_the_text_level_probe(tiny_sentence_bert, aggregation):
    """Mean-aggregated windows: the classifier starts as a regression fitted on each text's mean window
    features, so the start's text logits are that probe's (the report's probe on long documents), not a
    probe of head windows. Max aggregation is not linear: the start stays a per-window probe."""
    from types import SimpleNamespace

    import torch

    from lightft.config import Config
    from lightft.experiment import start_head_from_probe
    from lightft.heads import head_inputs
    from lightft.inference import predict_logits, softmax
    from lightft.linear import logistic_regression
    from lightft.model import load_classifier
    from lightft.windows import Tokenized, spread

    labels_text = [0, 1, 0, 1, 1, 0]
    rng = np.random.default_rng(0)
    owner = np.repeat(np.arange(6), [3, 1, 2, 4, 1, 3])
    enc = Tokenized([[2, *rng.integers(5, 30, 6).tolist(), 3] for _ in owner], owner)
    cfg = Config()
    cfg.model.window_aggregation = aggregation
    model, _ = load_classifier(str(tiny_sentence_bert), ["a", "b"], pooling="mean")
    model.eval()
    prep = SimpleNamespace(enc={"train": enc}, splits=SimpleNamespace(train=SimpleNamespace(labels=labels_text)),
                           train_features={}, device=torch.device("cpu"), pad_id=0, precision="fp32")
    heads, rows = spread(enc, 1)
    assert start_head_from_probe(cfg, prep, model, heads, rows)

    features = head_inputs(model, enc.ids, 0, 8, "fp32")
    got = softmax(aggregate(predict_logits(model, enc.ids, 0, precision="fp32", progress=False), owner, aggregation))
    if aggregation == "mean":
        want = logistic_regression(cfg.seed).fit(aggregate(features, owner, "mean"), labels_text)
        np.testing.assert_allclose(got, want.predict_proba(aggregate(features, owner, "mean")), atol=1e-4)
    else:  # fitted on the head windows training reads, each with its text's label
        want = logistic_regression(cfg.seed).fit(features[rows], heads.per_input(labels_text))
        np.testing.assert_allclose(softmax(predict_logits(model, heads.ids, 0, precision="fp32", progress=False)),
                                   want.predict_proba(features[rows]), atol=1e-4)


def test_cut_keeps_the_closing_token_and_leaves_short_inputs_alone():
    from lightft.windows import cut

    ids = [[101, 5, 6, 7, 8, 102], [101, 5, 102]]
    assert cut(ids, None) is ids and cut(ids, 6) is ids
    assert cut(ids, 4) == [[101, 5, 6, 102], [101, 5, 102]]


def test_unread_texts_tokenizes_only_texts_without_a_letter_or_digit(tiny_bert):
    """The same answer as tokenizing every text, from a scan for most: only the texts with no letter or digit
    in what tokenizing keeps (max_length * 100 characters) are tokenized."""
    from lightft.model import load_tokenizer

    tok = load_tokenizer(str(tiny_bert))
    texts = ["goal match", "\u200b\u2060", "\x01\x02", "!!!", "\u0301\u0301", "\u2603", "\u200b" * 900 + "goal",
             "\u200b" * 3300 + "goal"]  # the last one's word lies past 32 * 100 characters: never read
    seen: list[list[str]] = []

    def tokenize(some):
        seen.append(list(some))
        return tokenize_texts(some, tok, 32, "head", None, 8, progress=False)

    everything = tokenize_texts(texts, tok, 32, "head", None, 8, progress=False).unread(len(texts), tok)
    assert unread_texts(texts, tokenize, tok, 32) == everything == [1, 2, 4, 7]
    assert seen == [[texts[i] for i in (1, 2, 3, 4, 5, 7)]]  # no text with a letter or digit in reach

