"""Reading every data spec (lightft.readers): formats, encodings, columns and the errors that name the row."""

import logging

import pytest

from lightft.config import DataConfig
from lightft.data import load_splits
from lightft.errors import DataError
from lightft.readers import read_records

from conftest import data_cfg as cfg
from conftest import make_texts, write_rows


def test_class_folders(class_folder):
    splits = load_splits(cfg(class_folder), seed=1)
    assert splits.label_names == ["politics", "sport", "tech"]  # sorted folder names
    assert len(splits.test) == 12 and len(splits.validation) == 6 and len(splits.train) == 42
    assert set(splits.test.labels) == {0, 1, 2}  # stratified: every class in every split


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl", "parquet"])
def test_file_formats_with_column_mapping(tmp_path, fmt):
    path = write_rows(tmp_path / f"d.{fmt}", make_texts(10), fmt)
    splits = load_splits(cfg(path, text_column="body", label_column="topic", test_size=6, validation_size=3), 0)
    assert splits.label_names == ["politics", "sport", "tech"]
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 30


def test_non_utf8_file_is_decoded_with_warning(class_folder, caplog):
    bad = class_folder / "sport" / "999.txt"
    bad.write_bytes("caf\xe9 goal match".encode("latin-1"))
    with caplog.at_level(logging.WARNING, logger="lightft"):
        records = read_records(str(class_folder), DataConfig(source=str(class_folder)), "train")
    assert "café goal match" in records.texts
    assert any("999.txt" in r.message and "UTF-8" in r.message for r in caplog.records)


def test_missing_column_lists_available(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("words,kind\n" + "".join(f"{t},{y}\n" for t, y in make_texts(3)), encoding="utf-8")
    with pytest.raises(DataError, match=r"no text column 'text'; available columns: words, kind"):
        load_splits(cfg(path), 0)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "saved"])
def test_default_columns_resolve_to_the_one_column_named_like_them(tmp_path, fmt, caplog):
    """A dataset whose columns are called e.g. Text/Category (Kaggle's BBC) or sentence/label (SST-2) runs
    without data.text_column: the one alias present is read, with a warning, and recorded in the config."""
    rows = make_texts(8)
    if fmt == "saved":
        import datasets

        datasets.Dataset.from_dict({"Text": [t for t, _ in rows], "Category": [y for _, y in rows]}).save_to_disk(
            str(tmp_path / "saved"))
        path = tmp_path / "saved"
    else:
        path = write_rows(tmp_path / f"d.{fmt}", rows, fmt)  # body / topic
    data = cfg(path)
    with caplog.at_level(logging.WARNING, logger="lightft"):
        splits = load_splits(data, 0)
    assert splits.label_names == ["politics", "sport", "tech"] and len(splits.train) == 24 - 12 - 6
    expected = ("Text", "Category") if fmt == "saved" else ("body", "topic")
    assert (data.text_column, data.label_column) == expected
    assert f"reading '{expected[0]}' as the text" in caplog.text


def test_a_guessed_column_is_never_the_other_roles_and_a_test_file_of_other_names_is_not_recorded(tmp_path):
    topic = tmp_path / "topic.csv"  # the user's text column is itself a label alias: not read as the label too
    topic.write_text("topic,y\n" + "".join(f"{t},{y}\n" for t, y in make_texts(3)), encoding="utf-8")
    with pytest.raises(DataError, match=r"no label column 'label'; available columns: topic, y"):
        load_splits(cfg(topic, text_column="topic"), 0)
    source, test = tmp_path / "s.csv", tmp_path / "t.csv"
    source.write_text("sentence,label\n" + "".join(f"{t},{y}\n" for t, y in make_texts(8)), encoding="utf-8")
    test.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in make_texts(2)), encoding="utf-8")
    data = cfg(source, test=str(test), validation_size=3)
    load_splits(data, 0)
    assert data.text_column == "text"  # each file resolves its own; the config re-reads both as it is
    test_sentence = tmp_path / "t2.csv"
    test_sentence.write_text("sentence,label\n" + "".join(f"unseen {t},{y}\n" for t, y in make_texts(2)),
                             encoding="utf-8")
    same = cfg(source, test=str(test_sentence), validation_size=3)
    load_splits(same, 0)
    assert same.text_column == "sentence"


def test_columns_a_user_named_or_two_candidates_are_not_guessed(tmp_path):
    path = write_rows(tmp_path / "d.csv", make_texts(3), "csv")  # body / topic
    with pytest.raises(DataError, match=r"no text column 'words'; available columns: body, topic"):
        load_splits(cfg(path, text_column="words"), 0)
    two = tmp_path / "two.csv"
    two.write_text("sentence,review,label\n" + "".join(f"{t},{t},{y}\n" for t, y in make_texts(3)),
                   encoding="utf-8")
    with pytest.raises(DataError, match=r"no text column 'text'; 'sentence' and 'review' could each be it"):
        load_splits(cfg(two), 0)


def test_malformed_rows_name_the_line(tmp_path):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text('text,label\n"ok",sport\n"too","many",fields\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.csv line 3"):
        load_splits(cfg(bad_csv), 0)
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text('{"text": "a", "label": "x"}\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl line 2: malformed JSON"):
        load_splits(cfg(bad_jsonl), 0)


DEEP = "[" * 100_000 + "]" * 100_000  # past the JSON parser's recursion limit


@pytest.mark.parametrize(("name", "content", "message"), [
    ("bad.json", '[{"text": "a", "label": "x"},\n {"text": oops}]', r"bad.json line 2: malformed JSON \(Expecting"),
    ("deep.json", DEEP, r"deep.json: JSON nested too deeply"),
    ("deep.jsonl", '{"text": "a", "label": "x"}\n' + DEEP, r"deep.jsonl line 2: JSON nested too deeply"),
])
def test_json_errors_name_the_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_splits(cfg(path), 0)


def test_a_text_field_that_is_an_object_is_refused_and_a_null_or_nan_one_is_empty(tmp_path):
    nested = tmp_path / "nested.jsonl"
    nested.write_text('{"text": "a b", "label": "x"}\n{"text": {"content": "c d"}, "label": "y"}\n',
                      encoding="utf-8")
    with pytest.raises(DataError, match=r"nested.jsonl line 2: text column 'text' holds a dict, not a text"):
        load_splits(cfg(nested), 0)
    path = tmp_path / "d.jsonl"  # NaN, as pandas' to_json of a text column with gaps can write, and null
    path.write_text('{"text": "a b", "label": "x"}\n{"text": NaN, "label": "y"}\n{"text": null, "label": "y"}\n',
                    encoding="utf-8")
    assert read_records(str(path), DataConfig(), "train").texts == ["a b", "", ""]  # empty: dropped with a count


def test_a_semicolon_separated_csv_is_named_as_such(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_text("text;label\ngoal match;sport\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"excel.csv line 1: the header is one column, 'text;label': the file "
                                        r"looks separated by ';'"):
        load_splits(cfg(path), 0)


def test_bad_sources(tmp_path):
    with pytest.raises(DataError, match=r"not found: .*nope.csv \(no such file or folder\)$"):
        load_splits(cfg(tmp_path / "nope.csv"), 0)
    with pytest.raises(DataError, match="a relative path is read from the current folder"):
        load_splits(cfg("data/nope.csv"), 0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class subfolders"):
        load_splits(cfg(tmp_path / "empty"), 0)
    (tmp_path / "e.csv").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        load_splits(cfg(tmp_path / "e.csv"), 0)


def test_utf16_with_bom_is_read(tmp_path):
    path = tmp_path / "d.csv"
    rows = make_texts(4)
    path.write_bytes(("text,label\r\n" + "".join(f"{t},{y}\r\n" for t, y in rows)).encode("utf-16"))
    assert read_records(str(path), cfg(path), "train").texts == [t for t, _ in rows]


def test_unnamed_columns_are_skipped(tmp_path):
    rows = make_texts(4)
    trailing = tmp_path / "excel.csv"  # a spreadsheet's empty trailing columns
    trailing.write_text("text,label,,\n" + "".join(f"{t},{y},,\n" for t, y in rows), encoding="utf-8")
    indexed = tmp_path / "pandas.csv"  # pandas' to_csv writes its index as an unnamed first column
    indexed.write_text(",text,label\n" + "".join(f"{i},{t},{y}\n" for i, (t, y) in enumerate(rows)), encoding="utf-8")
    for path in (trailing, indexed):
        records = read_records(str(path), cfg(path), "train")
        assert records.texts == [t for t, _ in rows] and records.labels == [y for _, y in rows]


def test_a_quoted_line_break_in_a_tsv_hints_at_quoting(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text('text\tlabel\n"two\nlines"\tsport\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2: 1 fields where the header has 2; .*data.quoting: minimal"):
        read_records(str(path), cfg(path), "train")
