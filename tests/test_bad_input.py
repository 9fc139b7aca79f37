"""Hostile and messy input: one clear line, exit code 2, no traceback, and no complete-looking run directory."""

import json
from pathlib import Path

import pytest

from conftest import invoke, make_texts, tiny_run_config, write_config


def csv_file(path: Path, rows, header=("text", "label")) -> Path:
    import csv

    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def case_data(tmp: Path, name: str) -> tuple[Path, list[str], str]:
    """(data path, extra overrides, expected words in the error line) for one bad-input case."""
    good = make_texts(12)
    if name == "empty file":
        (tmp / "d.csv").write_text("", encoding="utf-8")
        return tmp / "d.csv", [], "empty"
    if name == "misnamed text column":
        return csv_file(tmp / "d.csv", good, ("words", "label")), [], "available columns: words, label"
    if name == "misnamed label column":
        return csv_file(tmp / "d.csv", good, ("text", "kind")), [], "no label column 'label'"
    if name == "test label never seen in training":
        test = csv_file(tmp / "t.csv", [("goal match", "weather")])
        return csv_file(tmp / "d.csv", good), [f"data.test={test}"], "weather"
    if name == "single class in training":
        return csv_file(tmp / "d.csv", [(t, "sport") for t, _ in good]), [], "single class"
    if name == "only whitespace texts":
        return csv_file(tmp / "d.csv", [("   ", "sport"), ("", "tech")]), [], "every text is empty"
    if name == "missing label":
        return csv_file(tmp / "d.csv", good + [("goal", "")]), [], "missing label"
    if name == "NaN label":
        (tmp / "d.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in good)
                                     + '{"text": "goal", "label": NaN}\n', encoding="utf-8")
        return tmp / "d.jsonl", [], "line 37: missing label"
    if name == "malformed CSV row":
        (tmp / "d.csv").write_text('text,label\n"goal",sport\n"a","b","c"\n', encoding="utf-8")
        return tmp / "d.csv", [], "line 3"
    if name == "malformed JSON line":
        (tmp / "d.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": \n', encoding="utf-8")
        return tmp / "d.jsonl", [], "line 2: malformed JSON"
    if name == "nonexistent path":
        return tmp / "nowhere.csv", [], "not found"
    if name == "folder without class subfolders":
        (tmp / "flat").mkdir()
        (tmp / "flat" / "a.txt").write_text("goal", encoding="utf-8")
        return tmp / "flat", [], "no class subfolders"
    if name == "unsupported file type":
        (tmp / "d.xlsx").write_bytes(b"PK")
        return tmp / "d.xlsx", [], "unsupported file type"
    raise ValueError(name)


DATA_CASES = ["empty file", "misnamed text column", "misnamed label column", "test label never seen in training",
              "single class in training", "only whitespace texts", "missing label", "NaN label", "malformed CSV row",
              "malformed JSON line", "nonexistent path", "folder without class subfolders", "unsupported file type"]


def assert_clean_failure(result, needle: str, run: Path) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and needle in last, last
    if (run / "run.json").exists():
        assert json.loads((run / "run.json").read_text())["status"] == "failed"
        assert not (run / "summary.json").exists()


@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data(tiny_bert, tmp_path, case):
    data, extra, needle = case_data(tmp_path, case)
    cfg = write_config(tmp_path, tiny_run_config(tiny_bert, data, tmp_path / "run", **{"data.test_size": 3,
                                                                                      "data.validation_size": 3}))
    assert_clean_failure(invoke("run", cfg, *extra), needle, tmp_path / "run")


@pytest.mark.parametrize("overrides,needle", [
    (["train.learning_rat=1"], "unknown config key 'train.learning_rat'"),
    (["train.epochs=three"], "'train.epochs' must be int"),
    (["method=lorax"], "unknown method 'lorax'"),
    (["peft.rank=4"], "peft.rank"),
    (["train.tune_threshold=true", "data.validation_size=0"], "needs a validation split"),
    (["data.test_size=0"], "no test split"),
    (["model.config_overrides.hidden_size=64"], "model.config_overrides.hidden_size: 64 changes the shape"),
    (["model.config_overrides.hidden_dropout_prob=abc"], "'hidden_dropout_prob' with value 'abc'"),
    (["model.config_overrides.hiden_dropout_prob=0.2"], "no such key (did you mean hidden_dropout_prob"),
    (["model.config_overrides.num_labels=7"], "the labels come from data"),
    (["seed=-1"], "seed must be between 0 and 2147483647, got -1"),
    (["seed=4294967295"], "seed must be between 0 and 2147483647"),
    (["train.weight_decay=-5"], "train.weight_decay must not be negative"),
    (["train.checkpoint_every=-3"], "'train.checkpoint_every' must be 0 (off) or more"),
    (["data.encoding_fallback=notacodec"], "unknown text encoding 'notacodec'"),
])
def test_bad_config(tiny_bert, class_folder, tmp_path, overrides, needle):
    cfg = write_config(tmp_path, tiny_run_config(tiny_bert, class_folder, tmp_path / "run"))
    assert_clean_failure(invoke("run", cfg, *overrides), needle, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # config errors stop before anything is written


def test_not_a_model(class_folder, tmp_path):
    (tmp_path / "notamodel").mkdir()
    (tmp_path / "notamodel" / "config.json").write_text("{}", encoding="utf-8")
    cfg = write_config(tmp_path, tiny_run_config(tmp_path / "notamodel", class_folder, tmp_path / "run"))
    assert_clean_failure(invoke("run", cfg), "cannot load", tmp_path / "run")


@pytest.mark.slow
def test_non_utf8_bytes_are_decoded_not_fatal(tiny_bert, tmp_path):
    rows = make_texts(12)
    text = "text,label\n" + "".join(f"{t},{y}\n" for t, y in rows)
    (tmp_path / "d.csv").write_bytes(text.encode("utf-8") + "caf\xe9 goal,sport\n".encode("latin-1"))
    cfg = write_config(tmp_path, tiny_run_config(tiny_bert, tmp_path / "d.csv", tmp_path / "run", **{
        "train.epochs": 1, "baselines.zero_shot": False, "baselines.linear_probe": False}))
    result = invoke("run", cfg)
    assert result.exit_code == 0, result.output
    assert "not valid UTF-8" in result.stderr


@pytest.mark.slow
def test_one_ten_megabyte_text(tiny_bert, tmp_path):
    rows = make_texts(12) + [(" ".join(["goal match"] * 1_000_000), "sport")]  # ~10 MB in one field
    path = csv_file(tmp_path / "d.csv", rows)
    assert path.stat().st_size > 10_000_000
    cfg = write_config(tmp_path, tiny_run_config(tiny_bert, path, tmp_path / "run", **{
        "train.epochs": 1, "baselines.zero_shot": False, "baselines.linear_probe": False}))
    result = invoke("run", cfg)
    assert result.exit_code == 0, result.output  # truncated to model.max_length like any other text


@pytest.mark.parametrize("head_labels", [2, 3])
def test_a_checkpoint_with_its_own_head_is_fine_tuned_with_a_head_for_the_data(tmp_path, class_folder, head_labels):
    """A classifier checkpoint (e.g. an SST-2 model) for a task with other labels: a head of another size is
    replaced with a warning, not a traceback; either way the head is trained and saved with the adapter."""
    import torch
    from transformers import BertForSequenceClassification

    from conftest import tiny_config, tiny_tokenizer

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    config = tiny_config("bert", len(tok))
    config.num_labels = head_labels
    folder = tmp_path / f"head{head_labels}"
    BertForSequenceClassification(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    labels = sorted(p.name for p in class_folder.iterdir() if p.is_dir())
    assert len(labels) == 3  # the class folder's labels
    cfg = write_config(tmp_path, tiny_run_config(folder, class_folder, tmp_path / "run"))
    result = invoke("train", cfg)
    assert result.exit_code == 0, result.output
    assert ("has its own classification head of another size" in result.output) == (head_labels != 3)
    saved = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert "classifier" in saved["modules_to_save"]
    result = invoke("predict", tmp_path / "run", "goal match team")  # the adapter reloads on that checkpoint
    assert result.exit_code == 0 and any(name in result.output for name in labels), result.output


def test_one_class_is_named_whatever_the_split_sizes(tiny_bert, tmp_path):
    data = tmp_path / "one.csv"
    data.write_text("text,label\n" + "".join(f"{t},food\n" for t, _ in make_texts(14)), encoding="utf-8")
    cfg = write_config(tmp_path, tiny_run_config(tiny_bert, data, tmp_path / "run", **{"data.test_size": 30,
                                                                                      "data.validation_size": 24}))
    assert_clean_failure(invoke("run", cfg), "the data has a single class ('food')", tmp_path / "run")


def test_a_fallback_encoding_that_cannot_decode_is_not_named_as_used(caplog):
    import logging

    from lightft.readers import decode_bytes

    with caplog.at_level(logging.WARNING, logger="lightft"):
        assert decode_bytes("caf\xe9".encode("latin-1"), "f.csv", "ascii") == "café"
    assert "decoded as latin-1 (not ascii" in caplog.text
