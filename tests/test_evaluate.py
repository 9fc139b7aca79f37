"""lightft.evaluate's check for texts a run has seen (its seen_texts.json); the end-to-end evaluate verb is in
test_cli.py."""

import json

from lightft.data import text_digests


def write_seen(run, train, validation):
    run.mkdir(exist_ok=True)
    (run / "seen_texts.json").write_text(json.dumps({"train": text_digests(train),
                                                     "validation": text_digests(validation)}))


def test_seen_texts_are_counted_per_split_and_once_overall(tmp_path):
    from lightft.evaluate import seen_in_training

    write_seen(tmp_path, ["a b", "shared"], ["c", "shared"])  # data.duplicates: keep can put a text in both
    texts = ["a  b\n", "shared", "new", "c"]  # whitespace aside, as data.duplicates compares texts
    assert seen_in_training(tmp_path, texts) == {"train": 2, "validation": 2, "any": 3}
    assert seen_in_training(tmp_path, ["new"])["any"] == 0
    assert seen_in_training(tmp_path / "old-run", texts) == {}  # a run from before the file existed


def test_a_damaged_record_is_a_warning_not_a_failed_evaluation(tmp_path, caplog):
    from lightft.evaluate import seen_in_training

    for content in ("{not json", "[1, 2]", '{"train": 5}'):
        (tmp_path / "seen_texts.json").write_text(content)
        with caplog.at_level("WARNING"):
            assert seen_in_training(tmp_path, ["a"]) == {}
        assert "texts the run trained on are not looked for" in caplog.text
        caplog.clear()
