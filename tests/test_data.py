import json
import logging
from pathlib import Path

import pytest

from lightft.config import DataConfig
from lightft.data import _warn_unused_test_split, load_splits, read_records, stratified_split, tokenize
from lightft.errors import DataError

from conftest import make_texts


def cfg(source, **kw) -> DataConfig:
    kw.setdefault("test_size", 12)
    kw.setdefault("validation_size", 6)
    return DataConfig(source=str(source), **kw)


def test_class_folders(class_folder):
    splits = load_splits(cfg(class_folder), seed=1)
    assert splits.label_names == ["politics", "sport", "tech"]  # sorted folder names
    assert len(splits.test) == 12 and len(splits.validation) == 6 and len(splits.train) == 42
    assert set(splits.test.labels) == {0, 1, 2}  # stratified: every class in every split


def test_configured_labels_fix_ids(class_folder):
    splits = load_splits(cfg(class_folder, labels=["tech", "sport", "politics"]), seed=1)
    assert splits.label_names == ["tech", "sport", "politics"]
    texts = dict(zip(splits.train.texts, splits.train.labels, strict=True))
    assert all(texts[t] == 0 for t in texts if "software" in t and "vote" not in t and "goal" not in t)


def test_splits_are_deterministic_and_disjoint(class_folder):
    a = load_splits(cfg(class_folder, train_samples=20), seed=3)
    b = load_splits(cfg(class_folder, train_samples=20), seed=3)
    c = load_splits(cfg(class_folder, train_samples=20), seed=4)
    assert a.train.texts == b.train.texts and a.test.texts == b.test.texts
    assert a.test.texts != c.test.texts
    assert len(a.train) == 20
    assert not set(a.train.texts) & set(a.test.texts)
    assert not set(a.validation.texts) & set(a.test.texts)


def test_stratified_split_proportions_and_rare_classes():
    labels = [0] * 90 + [1] * 10
    rest, held = stratified_split(labels, 20, seed=0, what="x")
    assert len(held) == 20 and sorted(rest + held) == list(range(100))
    assert sum(labels[i] for i in held) == 2
    rare = [0] * 98 + [1] * 2
    rest, held = stratified_split(rare, 10, seed=0, what="x")
    assert 1 in [rare[i] for i in held] and 1 in [rare[i] for i in rest]


def write_rows(path: Path, rows, fmt: str) -> Path:
    if fmt in ("csv", "tsv"):
        import csv

        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, delimiter="\t" if fmt == "tsv" else ",")
            w.writerow(["body", "topic"])
            w.writerows(rows)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps({"body": t, "topic": y}) + "\n" for t, y in rows), encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps([{"body": t, "topic": y} for t, y in rows]), encoding="utf-8")
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"body": [t for t, _ in rows], "topic": [y for _, y in rows]}), path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl", "parquet"])
def test_file_formats_with_column_mapping(tmp_path, fmt):
    path = write_rows(tmp_path / f"d.{fmt}", make_texts(10), fmt)
    splits = load_splits(cfg(path, text_column="body", label_column="topic", test_size=6, validation_size=3), 0)
    assert splits.label_names == ["politics", "sport", "tech"]
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 30


def test_saved_dataset_with_class_label(tmp_path):
    import datasets

    rows = make_texts(8)
    names = ["politics", "sport", "tech"]
    ds = datasets.Dataset.from_dict(
        {"text": [t for t, _ in rows], "label": [names.index(y) for _, y in rows]},
        features=datasets.Features({"text": datasets.Value("string"),
                                    "label": datasets.ClassLabel(names=names)}),
    )
    datasets.DatasetDict({"train": ds, "test": ds.select(range(6))}).save_to_disk(str(tmp_path / "saved"))
    splits = load_splits(cfg(tmp_path / "saved", test=str(tmp_path / "saved"), validation_size=3), 0)
    assert splits.label_names == names
    assert len(splits.test) == 6 and len(splits.train) == 15  # 24 - the 6 test texts - 3 for validation


def test_int_labels_with_configured_names(tmp_path):
    rows = [(t, ["politics", "sport", "tech"].index(y)) for t, y in make_texts(8)]
    path = write_rows(tmp_path / "d.jsonl", rows, "jsonl")
    splits = load_splits(cfg(path, text_column="body", label_column="topic", labels=["p", "s", "t"],
                             test_size=6, validation_size=3), 0)
    assert splits.label_names == ["p", "s", "t"]


def test_labels_written_as_whole_floats_are_the_same_ints_in_every_format(tmp_path):
    """pandas writes an int column with gaps as 1.0, 2.0 in a CSV; Parquet keeps ints: the same classes."""
    rows = [(t, ["politics", "sport", "tech"].index(y)) for t, y in make_texts(8)]
    as_csv = write_rows(tmp_path / "d.csv", [(t, f"{y}.0") for t, y in rows], "csv")
    as_parquet = write_rows(tmp_path / "d.parquet", rows, "parquet")
    for path in (as_csv, as_parquet):
        splits = load_splits(cfg(path, text_column="body", label_column="topic", test_size=6, validation_size=3), 0)
        assert splits.label_names == ["0", "1", "2"]
    # data.labels spelled as the file spells them keep their order: "2.0" first is id 0
    spelled = load_splits(cfg(as_csv, text_column="body", label_column="topic", test_size=6, validation_size=3,
                              labels=["2.0", "1.0", "0.0"]), 0)
    texts = dict(zip(spelled.train.texts, spelled.train.labels, strict=True))
    assert all(texts[t] == 2 - y for t, y in rows if t in texts)
    assert load_splits(cfg(write_rows(tmp_path / "sup.csv", [(t, "²") for t, _ in rows[:12]] + [
        (t, "x") for t, _ in rows[12:]], "csv"), text_column="body", label_column="topic", test_size=4,
        validation_size=2), 0).label_names == ["x", "²"]  # not a number, and no traceback
    odd = write_rows(tmp_path / "odd.csv", [(t, f"{y}.5") for t, y in rows], "csv")  # not whole: names as given
    assert load_splits(cfg(odd, text_column="body", label_column="topic", test_size=6, validation_size=3),
                       0).label_names == ["0.5", "1.5", "2.5"]


def test_a_label_that_joins_several_suggests_the_separator():
    from lightft.data import Records, encode_labels

    with pytest.raises(DataError, match=r"f line 2: label 'x\|y' is not one of the labels: x, y \(several labels "
                                        r"joined by '\|'\? set data.label_separator"):
        encode_labels(Records(["a"], ["x|y"], ["f line 2"]), ["x", "y"], True)


def test_separate_test_file_and_unseen_test_label(tmp_path):
    train = write_rows(tmp_path / "train.csv", make_texts(8), "csv")
    test = write_rows(tmp_path / "test.csv", make_texts(2, seed=5), "csv")
    splits = load_splits(cfg(train, test=str(test), text_column="body", label_column="topic",
                             validation_size=3), 0)
    assert len(splits.test) == 6 and len(splits.train) == 21
    odd = write_rows(tmp_path / "odd.csv", [("some text", "weather")], "csv")
    with pytest.raises(DataError, match="weather"):
        load_splits(cfg(train, test=str(odd), text_column="body", label_column="topic", validation_size=3), 0)


def test_a_class_missing_from_the_test_data_is_named(tmp_path, caplog):
    train = write_rows(tmp_path / "train.csv", make_texts(8), "csv")
    test = write_rows(tmp_path / "test.csv", [r for r in make_texts(3, seed=5) if r[1] != "tech"], "csv")
    with caplog.at_level(logging.WARNING, logger="lightft"):
        load_splits(cfg(train, test=str(test), text_column="body", label_column="topic", validation_size=3), 0)
    assert any("no examples in the test data" in r.message and str(test) in r.message and "tech" in r.message
               and "sport" not in r.message for r in caplog.records)


def test_repeated_texts_are_kept_once_before_splitting(tmp_path, caplog):
    rows = make_texts(8)
    repeats = [(rows[0][0] + "  ", rows[0][1]), (" ".join(rows[1][0].split()), rows[1][1]), rows[2]]
    other = "tech" if rows[3][1] != "tech" else "sport"
    path = write_rows(tmp_path / "d.csv", rows + repeats + [(rows[3][0], other)], "csv")
    with caplog.at_level(logging.INFO, logger="lightft"):
        splits = load_splits(cfg(path, text_column="body", label_column="topic", test_size=6, validation_size=3), 0)
    texts = [" ".join(t.split()) for t in splits.train.texts + splits.validation.texts + splits.test.texts]
    assert len(texts) == len(set(texts)) == 24 and splits.duplicates_dropped == 4
    # the repeat with another label is named (row and the row it repeats); the first row's label is kept
    assert any("d.csv line 29 repeats " in r.message and "d.csv line 5 with label" in r.message
               and f"'{other}'" in r.message for r in caplog.records)
    kept = {" ".join(t.split()): y for t, y in zip(texts, splits.train.labels + splits.validation.labels
                                                  + splits.test.labels, strict=True)}
    assert splits.label_names[kept[" ".join(rows[3][0].split())]] == rows[3][1]
    every = load_splits(cfg(path, text_column="body", label_column="topic", test_size=6, validation_size=3,
                            duplicates="keep"), 0)
    assert len(every.train) + len(every.validation) + len(every.test) == 28 and every.duplicates_dropped == 0


def test_training_rows_that_are_in_the_separate_test_set_are_dropped(tmp_path):
    rows = make_texts(8)
    train = write_rows(tmp_path / "train.csv", rows, "csv")
    test = write_rows(tmp_path / "test.csv", rows[:5] + make_texts(1, seed=5), "csv")
    splits = load_splits(cfg(train, test=str(test), text_column="body", label_column="topic", validation_size=3), 0)
    assert len(splits.test) == 8 and splits.duplicates_dropped == 5
    assert not {t for t, _ in rows[:5]} & set(splits.train.texts + splits.validation.texts)
    everything = write_rows(tmp_path / "all.csv", rows, "csv")
    with pytest.raises(DataError, match="every training text is also in the test set"):
        load_splits(cfg(train, test=str(everything), text_column="body", label_column="topic", validation_size=3), 0)


def test_non_utf8_file_is_decoded_with_warning(class_folder, caplog):
    bad = class_folder / "sport" / "999.txt"
    bad.write_bytes("caf\xe9 goal match".encode("latin-1"))
    with caplog.at_level(logging.WARNING, logger="lightft"):
        records = read_records(str(class_folder), DataConfig(source=str(class_folder)), "train")
    assert "café goal match" in records.texts
    assert any("999.txt" in r.message and "UTF-8" in r.message for r in caplog.records)


def test_empty_texts_are_dropped_with_count(tmp_path, caplog):
    rows = make_texts(8) + [("   ", "sport"), ("", "tech")]
    path = write_rows(tmp_path / "d.csv", rows, "csv")
    with caplog.at_level(logging.WARNING, logger="lightft"):
        splits = load_splits(cfg(path, text_column="body", label_column="topic", test_size=6,
                                 validation_size=3), 0)
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 24
    assert any("dropped 2 empty" in r.message for r in caplog.records)


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


def test_rare_classes_labels_alike_and_too_many_train_samples_are_warned(tmp_path, caplog):
    rows = make_texts(10) + [(f"odd text number {i}", "Sport ") for i in range(8)]
    rows += [(f"rare thing {i}", "rare") for i in range(4)]
    path = write_rows(tmp_path / "d.csv", rows, "csv")
    with caplog.at_level(logging.WARNING, logger="lightft"):
        splits = load_splits(cfg(path, text_column="body", label_column="topic", test_size=5, validation_size=5,
                                 train_samples=500), 0)
    messages = " | ".join(r.message for r in caplog.records)
    assert "fewer than 5 training examples: " in messages and "rare (" in messages
    assert "labels 'Sport', 'sport' differ only in case" in messages  # the space is stripped on reading
    assert f"data.train_samples is 500 but {len(splits.train)} texts are left" in messages
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lightft"):
        load_splits(cfg(write_rows(tmp_path / "ok.csv", make_texts(20), "csv"), text_column="body",
                        label_column="topic"), 0)
    assert not caplog.records  # a clean data set: no warning


def test_a_semicolon_separated_csv_is_named_as_such(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_text("text;label\ngoal match;sport\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"excel.csv line 1: the header is one column, 'text;label': the file "
                                        r"looks separated by ';'"):
        load_splits(cfg(path), 0)


def test_missing_label_names_the_row(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": null}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"d.jsonl line 2: missing label"):
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


def test_single_class_in_training(tmp_path):
    path = write_rows(tmp_path / "d.csv", [(f"text {i}", "sport") for i in range(20)], "csv")
    with pytest.raises(DataError, match="single class"):
        load_splits(cfg(path, text_column="body", label_column="topic", test_size=4, validation_size=2), 0)


def test_tokenize_head_and_head_tail():
    from conftest import tiny_tokenizer

    tok = tiny_tokenizer()
    text = " ".join(["goal"] * 30 + ["vote"] * 10)
    head = tokenize([text], tok, 18, "head")[0]
    both = tokenize([text], tok, 18, "head_tail")[0]
    assert len(head) == len(both) == 18
    vote = tok.convert_tokens_to_ids("vote")
    assert vote not in head and both[-2] == vote
    assert head[0] == both[0] == tok.cls_token_id and both[-1] == tok.sep_token_id


# ---- data nobody here has seen: shapes a spreadsheet, pandas or a label-coding scheme produce ----

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


def test_a_test_fraction_that_rounds_to_nothing_is_refused(csv_file):
    with pytest.raises(DataError, match=r"data.test_size 0.004 of 60 texts holds out none .*data.test"):
        load_splits(cfg(csv_file, test_size=0.004), 0)


def test_split_sizes_below_the_class_count_hold_out_one_of_each(tmp_path, caplog):
    path = tmp_path / "many.csv"
    path.write_text("text,label\n" + "".join(f"text {c} number {i},c{c}\n" for c in range(12) for i in range(4)),
                    encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="lightft"):
        splits = load_splits(cfg(path, test_size=0.2, validation_size=0.1), 0)  # 10 and 4 texts for 12 classes
    assert len(set(splits.test.labels)) == len(set(splits.validation.labels)) == 12
    assert "data.test_size of 10 is fewer than the 12 classes" in caplog.text
    path.write_text("text,label\n" + "".join(f"text {c} number {i},c{c}\n" for c in range(12) for i in range(2)),
                    encoding="utf-8")
    with pytest.raises(DataError, match="too few to hold out one text of each class"):
        load_splits(cfg(path, test_size=0.2, validation_size=0.1), 0)


def test_a_label_column_with_a_value_per_text_is_refused(csv_file, tmp_path, caplog):
    with pytest.raises(DataError, match="60 texts carry 60 different labels in column 'text'"):
        load_splits(cfg(csv_file, label_column="text"), 0)
    swapped = tmp_path / "swapped.csv"  # the columns the other way round: repeats of 3 label names as texts
    swapped.write_text("label,text\n" + "".join(f"{t},{y}\n" for t, y in make_texts(20)), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="lightft"), pytest.raises(DataError):
        load_splits(cfg(swapped), 0)
    assert "57 of 60 texts in column 'text' repeat an earlier one" in caplog.text


def test_label_codes_with_leading_zeros_stay_names(tmp_path):
    path = tmp_path / "codes.csv"
    rows = make_texts(8)
    codes = {"politics": "007", "sport": "07", "tech": "7"}
    path.write_text("text,label\n" + "".join(f"{t},{codes[y]}\n" for t, y in rows), encoding="utf-8")
    splits = load_splits(cfg(path), 0)
    assert splits.label_names == ["007", "07", "7"]


def test_integer_labels_are_names_or_ids_never_both(tmp_path, caplog):
    from lightft.data import clean_records, encode_labels

    path = tmp_path / "d.csv"
    path.write_text("text,label\na,0\nb,2\nc,1\n", encoding="utf-8")
    records = clean_records(read_records(str(path), cfg(path), "train"))
    with pytest.raises(DataError, match=r"line 2: label 0 can only be read as a class id .* line 3's label 2 is "
                                        r"the class name '2'"):
        encode_labels(records, ["1", "2", "3"], configured=True)  # a 1..5 run scored on 0..4 labels
    with caplog.at_level(logging.WARNING, logger="lightft"):
        assert encode_labels(records, ["neg", "pos", "mixed"], configured=True) == [0, 2, 1]
    assert "integer labels are read as class ids (0 = neg, 1 = pos, 2 = mixed)" in caplog.text


def test_class_names_that_join_labels_are_warned_about(tmp_path, caplog):
    path = tmp_path / "joined.csv"
    names = ["billing", "bug", "billing,bug", "bug,billing"]
    rows = "".join(f'text {i} {n.replace(",", " ")},"{n}"\n' for n in names for i in range(6))
    path.write_text("text,label\n" + rows, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="lightft"):
        load_splits(cfg(path, test_size=4, validation_size=4), 0)
    assert "look like several labels joined by ','" in caplog.text and "data.label_separator=','" in caplog.text


def test_json_split_by_split_and_an_unused_saved_test_split_are_named(tmp_path, caplog):
    import datasets

    rows = [{"text": t, "label": y} for t, y in make_texts(4)]
    path = tmp_path / "splits.json"
    path.write_text(json.dumps({"train": rows, "test": rows[:3]}), encoding="utf-8")
    with pytest.raises(DataError, match="lists of records under 'train', 'test', i.e. splits"):
        read_records(str(path), cfg(path), "train")
    ds = datasets.Dataset.from_list(rows)
    datasets.DatasetDict({"train": ds, "test": ds.select(range(3))}).save_to_disk(str(tmp_path / "saved"))
    with caplog.at_level(logging.WARNING, logger="lightft"):
        read_records(str(tmp_path / "saved"), cfg(tmp_path / "saved"), "train")  # evaluate --split train reads so
    assert "leaves out" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="lightft"):
        _warn_unused_test_split(cfg(tmp_path / "saved", test=str(tmp_path / "saved")))  # the test split is read
        assert "leaves out" not in caplog.text
        _warn_unused_test_split(cfg(tmp_path / "saved"))  # a training run that draws its test split from train
    assert "also has a 'test' split, which this run leaves out" in caplog.text


def test_numeric_class_label_names_and_zero_padded_codes_keep_their_meaning(tmp_path):
    import datasets

    from lightft.data import clean_records, encode_labels

    # a ClassLabel column holds ids into its own names, even when those names are numbers
    ds = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 4, 2]}, features=datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["1", "2", "3", "4", "5"])}))
    ds.save_to_disk(str(tmp_path / "stars"))
    records = clean_records(read_records(str(tmp_path / "stars"), cfg(tmp_path / "stars"), "train"))
    assert encode_labels(records, ["1", "2", "3", "4", "5"], configured=False) == [0, 4, 2]
    assert encode_labels(records, ["5", "4", "3", "2", "1"], configured=True) == [4, 0, 2]  # by name
    # "01" in the data and "1" in a run's names (or the other way round) are the same label
    path = tmp_path / "codes.csv"
    path.write_text("text,label\na,01\nb,02\nc,1\n", encoding="utf-8")
    records = clean_records(read_records(str(path), cfg(path), "train"))
    assert encode_labels(records, ["1", "2"], configured=True) == [0, 1, 0]


def test_a_training_subset_keeps_a_class_with_one_text(tmp_path):
    path = tmp_path / "rare.csv"
    path.write_text("text,label\n" + "".join(f"text {c} {i},{c}\n" for c in "ab" for i in range(40))
                    + "the one rare text,rare\n", encoding="utf-8")
    splits = load_splits(cfg(path, test_size=10, validation_size=10, train_samples=20), 0)
    assert "rare" in {splits.label_names[y] for y in splits.train.labels}
