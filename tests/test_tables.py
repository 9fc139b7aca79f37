"""lightft.tables: streamed readers (every record, its number and line, or a one-line error) and atomic part
writers whose merge is the file one writer would have written."""

import csv
import json

import pytest

from lightft.errors import DataError
from lightft.tables import TableReader, TableWriter, json_line


def test_csv_records_spanning_lines_keep_numbers_and_lines(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('id,text\n1,"two\nlines"\n\n2,plain\n3,a,b\n', encoding="utf-8")
    reader = TableReader(path)
    rows = list(reader.rows())
    assert reader.fields == ["id", "text"] and reader.count() == len(rows) == 3
    assert [(r.number, r.where.split(" ", 1)[1], r.values, r.error) for r in rows[:2]] == [
        (1, "lines 2-3", {"id": "1", "text": "two\nlines"}, None), (2, "line 5", {"id": "2", "text": "plain"}, None)]
    assert rows[2].error.startswith("3 fields where the header has 2") and rows[2].where.endswith("line 6")


def test_a_latin1_field_is_decoded_alone_with_a_warning(tmp_path, caplog):
    path = tmp_path / "in.csv"
    path.write_bytes("id,text\n1,caf\u00e9 ok\n2,".encode() + "na\u00efve".encode("latin-1") + b"\n")
    with caplog.at_level("WARNING", logger="lightft"):
        rows = list(TableReader(path).rows())
    assert [r.values["text"] for r in rows] == ["caf\u00e9 ok", "na\u00efve"]
    assert "line 3 is not valid UTF-8" in caplog.text


def test_unclosed_quote_is_one_line_naming_where_it_opened(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('text\na\n"b\nc\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 3: malformed CSV"):
        TableReader(path).count()


def test_jsonl_bom_blank_lines_and_bad_lines(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "a"}\n\n[1]\n{"text": "b", "k": 2}\n{oops\n')
    reader = TableReader(path)
    rows = list(reader.rows())
    assert reader.count() == len(rows) == 4 and reader.fields == ["text", "k"]
    assert [r.error is None for r in rows] == [True, False, True, False]
    assert rows[1].where.endswith("line 3") and "JSON object" in rows[1].error


def test_parquet_rows_and_duplicate_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["a", "b", "c"], "n": [1, 2, 3]}), tmp_path / "ok.parquet", row_group_size=2)
    reader = TableReader(tmp_path / "ok.parquet")
    assert reader.count() == 3 and [r.values["n"] for r in reader.rows()] == [1, 2, 3]
    table = pa.Table.from_arrays([pa.array(["a"]), pa.array(["b"])], names=["text", "text"])
    pq.write_table(table, tmp_path / "dup.parquet")
    with pytest.raises(DataError, match="'text' more than once"):
        TableReader(tmp_path / "dup.parquet")


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_parts_merge_to_one_file_in_order(tmp_path, fmt):
    import pyarrow as pa

    schema = pa.schema([pa.field("id", pa.string()), pa.field("pred_label", pa.string())])
    writer = TableWriter(fmt, ["id", "pred_label"], schema=schema if fmt == "parquet" else None)
    parts = []
    for k in range(3):
        parts.append(tmp_path / f"part-{k}.{fmt}")
        writer.write_part(parts[-1], [{"id": f"{k}-{i}", "pred_label": "x,y" if i else "z"} for i in range(2)])
    out = tmp_path / f"out.{fmt}"
    writer.merge(parts, out, scratch=tmp_path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        ids = pq.read_table(out).column("id").to_pylist()
    elif fmt == "jsonl":
        ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    else:
        ids = [r["id"] for r in csv.DictReader(out.open(newline=""), delimiter="\t" if fmt == "tsv" else ",")]
    assert ids == [f"{k}-{i}" for k in range(3) for i in range(2)]
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_lone_surrogate_is_written_escaped():
    assert json_line({"id": "a\ud800"}) == '{"id": "a\\ud800"}\n'
    assert json_line({"id": "caf\u00e9"}) == '{"id": "caf\u00e9"}\n'


def test_utf16_input_and_unnamed_columns(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(",text,,\r\n0,caf\u00e9,,\r\n1,b,,\r\n".encode("utf-16"))  # pandas' index, Excel's trailing
    rows = list(TableReader(path).rows())
    assert [r.values for r in rows] == [{"text": "caf\u00e9"}, {"text": "b"}]


def test_a_semicolon_separated_csv_is_named(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("id;text\n1;a\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 1: the header is one column, 'id;text': the file looks separated by ';'"):
        TableReader(path)
