import json
import logging

import pytest

from lightft.data import _warn_unused_test_split, load_splits, stratified_split, tokenize
from lightft.errors import DataError
from lightft.readers import read_records

from conftest import data_cfg as cfg
from conftest import make_texts, write_rows


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
    from lightft.data import encode_labels
    from lightft.readers import Records

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


def test_empty_texts_are_dropped_with_count(tmp_path, caplog):
    rows = make_texts(8) + [("   ", "sport"), ("", "tech")]
    path = write_rows(tmp_path / "d.csv", rows, "csv")
    with caplog.at_level(logging.WARNING, logger="lightft"):
        splits = load_splits(cfg(path, text_column="body", label_column="topic", test_size=6,
                                 validation_size=3), 0)
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 24
    assert any("dropped 2 empty" in r.message for r in caplog.records)


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


def test_missing_label_names_the_row(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": null}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"d.jsonl line 2: missing label"):
        load_splits(cfg(path), 0)


def test_single_class_in_training(tmp_path):
    path = write_rows(tmp_path / "d.csv", [(f"text {i}", "sport") for i in range(20)], "csv")
    with pytest.raises(DataError, match=r"the data has a single class \(.sport.\)"):
        load_splits(cfg(path, text_column="body", label_column="topic", test_size=4, validation_size=2), 0)
    with pytest.raises(DataError, match=r"the data has a single class"):  # two names configured, one in the data
        load_splits(cfg(path, text_column="body", label_column="topic", test_size=4, validation_size=2,
                        labels=["sport", "tech"]), 0)


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
