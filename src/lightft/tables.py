"""Tables read and written in chunks, so that `lightft predict --input/--output` holds one chunk of a corpus in
memory, never the corpus.

A reader yields the file's records one by one (CSV/TSV through the csv module, JSONL line by line, Parquet
by record batch), each with its record number (1-based, data records only) and where it is in the file. A
file that cannot be read at all (missing, no header, a quote never closed) fails with one line; a single
record that cannot be read (a wrong number of fields, a line that is not a JSON object) is a `Row` with an
``error``, so the caller decides whether it stops the job (``--strict``) or goes to the errors file.

Parts are the unit of progress: each chunk's output is written to its own file under a temporary name and
renamed into place, so a part either exists whole or not at all, whatever kills the process; merging the
parts in chunk order gives the output file.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lightft.errors import DataError
from lightft.readers import csv_quoting, quote_split, refuse_other_delimiter, warn_if_quoted
from lightft.rundir import replace_atomically

log = logging.getLogger("lightft")

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet"}


@dataclass
class Row:
    number: int                      # 1-based record number among the file's data records
    where: str                       # "<file> line 7" (CSV/TSV/JSONL) or "<file> row 7" (Parquet)
    values: dict[str, Any]           # field -> value ({} when the record itself could not be read)
    error: str | None = None         # why the record cannot be read (None: it was read)


def table_format(path: Path, what: str = "--input") -> str:
    """csv, tsv, jsonl or parquet, from the file name; anything else is one line."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise DataError(f"{what} {path}: predict reads and writes .csv, .tsv, .jsonl or .parquet, "
                        f"not '{Path(path).suffix or '(no suffix)'}'")
    return fmt


class TableReader:
    """The records of one CSV/TSV/JSONL/Parquet file, streamed. ``fields`` is known after construction (the
    CSV header, the Parquet schema, or the keys of the first JSONL record)."""

    def __init__(self, path: Path, quoting: str = "auto", fallback: str = "cp1252") -> None:
        self.path = Path(path)
        self.format = table_format(self.path)
        self.quoting = quoting
        self.fallback = fallback
        self._warned = False
        if not self.path.is_file():
            raise DataError(f"input file not found: {self.path}")
        self.delimiter = "\t" if self.format == "tsv" else ","
        self.mode = csv_quoting(quoting, self.delimiter) if self.format in ("csv", "tsv") else None
        self.parquet_schema: Any = self._parquet().schema_arrow if self.format == "parquet" else None
        self.fields = self._read_fields()

    # ---- opening ------------------------------------------------------------------------------------------
    def _open_text(self) -> IO[str]:
        # Undecodable bytes survive as lone surrogates and are re-decoded field by field (``_text``), so one
        # Latin-1 field does not make the whole corpus unreadable.
        try:
            raw = self.path.open("rb")
        except OSError as exc:
            raise DataError(f"{self.path}: cannot read ({exc.strerror})") from None
        if raw.peek(2)[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):  # Excel's "Unicode text"
            return io.TextIOWrapper(raw, encoding="utf-16", errors="replace", newline="")
        return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")

    def _parquet(self) -> Any:
        import pyarrow.parquet as pq

        try:
            # Small reads, no pre-buffering: otherwise a whole row group (pandas and pyarrow write up to a
            # million rows per group) is loaded to yield the first batch.
            return pq.ParquetFile(self.path, buffer_size=1 << 20, pre_buffer=False)
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise DataError(f"{self.path}: not a readable Parquet file ({exc})") from None

    def _csv_reader(self, fh: IO[str]) -> Any:
        csv.field_size_limit(1 << 30)  # fields over the default 131,072 characters are valid
        return csv.reader(fh, delimiter=self.delimiter, strict=True, quoting=self.mode)

    def _read_fields(self) -> list[str]:
        if self.format == "parquet":
            names = list(self.parquet_schema.names)
            duplicates = sorted({h for h in names if names.count(h) > 1})
            if duplicates:
                raise DataError(f"{self.path}: the schema names column '{duplicates[0]}' more than once")
            return names
        if self.format == "jsonl":
            # JSON objects need not share keys: the fields are those of the first 100 readable objects.
            fields: dict[str, None] = {}
            seen = 0
            for row in self._jsonl_rows():
                if not row.error:
                    fields.update(dict.fromkeys(row.values))
                    seen += 1
                    if seen == 100:
                        break
            if not seen:
                raise DataError(f"{self.path}: the file holds no readable JSON object")
            return list(fields)
        with self._open_text() as fh:
            try:
                header = next(self._csv_reader(fh), None)
            except csv.Error as exc:
                raise DataError(f"{self.path} line 1: malformed header ({exc})") from None
        if not header:
            raise DataError(f"{self.path}: the file is empty")
        header = [self._text(h, 1).strip() for h in header]
        refuse_other_delimiter(header, self.path, self.delimiter)
        duplicates = sorted({h for h in header if h and header.count(h) > 1})  # unnamed ones are never read
        if duplicates:
            raise DataError(f"{self.path} line 1: the header names column '{duplicates[0]}' more than once")
        return header

    def _text(self, value: str, line: int) -> str:
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            pass
        if not self._warned:
            self._warned = True
            log.warning("%s line %d is not valid UTF-8; such fields are decoded as %s", self.path, line,
                        self.fallback)
        raw = value.encode("utf-8", "surrogateescape")
        try:
            return raw.decode(self.fallback)
        except (UnicodeDecodeError, LookupError):
            return raw.decode("latin-1")

    # ---- reading ------------------------------------------------------------------------------------------
    def rows(self) -> Iterator[Row]:
        """Every record, in file order."""
        if self.format == "parquet":
            yield from self._parquet_rows()
        elif self.format == "jsonl":
            yield from self._jsonl_rows()
        else:
            yield from self._csv_rows()

    def count(self) -> int:
        """How many records ``rows`` yields, read cheaply (the Parquet footer; JSONL lines; the CSV parser
        without building rows). A CSV quote that is never closed fails here, before any work."""
        if self.format == "parquet":
            return int(self._parquet().metadata.num_rows)
        if self.format == "jsonl":
            with self.path.open("rb") as fh:  # the same lines _jsonl_rows reads as records
                return sum(1 for n, line in enumerate(fh) if (line.removeprefix(b"\xef\xbb\xbf") if n == 0
                                                                 else line).strip())
        n = 0
        with self._open_text() as fh:
            reader = self._csv_reader(fh)
            start = 2
            try:
                next(reader, None)
                start = reader.line_num + 1
                for record in reader:
                    n += bool(record)
                    start = reader.line_num + 1
            except csv.Error as exc:
                raise self._csv_error(exc, start) from None
        return n

    def _csv_error(self, exc: csv.Error, line: int) -> DataError:
        hint = (" (a quote opened on this line is never closed; for unquoted data use --quoting none)"
                if "end of data" in str(exc) else "")
        return DataError(f"{self.path} line {line}: malformed CSV ({exc}){hint}")

    def _csv_rows(self) -> Iterator[Row]:
        header, width = self.fields, len(self.fields)
        with self._open_text() as fh:
            reader = self._csv_reader(fh)
            number, start, quoted = 0, 2, ""
            try:
                next(reader, None)
                start = reader.line_num + 1
                for record in reader:
                    line = reader.line_num
                    if not record:
                        start = line + 1
                        continue
                    number += 1
                    where = f"{self.path} line {start}" if start == line else f"{self.path} lines {start}-{line}"
                    if len(record) != width:
                        hint = ("; if quotes enclose fields here, use --quoting minimal"
                                if self.mode == csv.QUOTE_NONE and quote_split(record, width) else "")
                        yield Row(number, where, {}, f"{len(record)} fields where the header has {width}{hint}")
                    else:
                        if self.mode == csv.QUOTE_NONE and self.quoting == "auto" and not quoted:
                            quoted = warn_if_quoted(record, where)  # once a file, as training's reader does
                        yield Row(number, where, {k: self._text(v, start) for k, v in zip(header, record,
                                                                                          strict=True) if k})
                    start = line + 1
            except csv.Error as exc:
                raise self._csv_error(exc, start) from None

    def _jsonl_rows(self) -> Iterator[Row]:
        # Records end at \n only: U+2028 and other Unicode line breaks are valid inside JSON strings.
        number = 0
        try:
            fh = self.path.open("rb")
        except OSError as exc:
            raise DataError(f"{self.path}: cannot read ({exc.strerror})") from None
        with fh:
            for line_no, raw in enumerate(fh, start=1):
                if line_no == 1:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")
                if not raw.strip():
                    continue
                number += 1
                where = f"{self.path} line {line_no}"
                line = self._text(raw.decode("utf-8", "surrogateescape"), line_no)
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield Row(number, where, {}, f"malformed JSON ({exc.msg})")
                    continue
                except RecursionError:
                    yield Row(number, where, {}, "JSON nested too deeply")
                    continue
                if not isinstance(obj, dict):
                    yield Row(number, where, {}, f"expected a JSON object, got {type(obj).__name__}")
                    continue
                yield Row(number, where, obj)

    def _parquet_rows(self) -> Iterator[Row]:
        number = 0
        batches = self._parquet().iter_batches(batch_size=1024)
        while True:
            try:
                batch = next(batches, None)
            except Exception as exc:  # a damaged page: pyarrow raises OSError, ArrowInvalid, ...
                raise DataError(f"{self.path}: unreadable after row {number} ({exc})") from None
            if batch is None:
                return
            for values in batch.to_pylist():
                number += 1
                yield Row(number, f"{self.path} row {number}", values)


# ---- parts ----------------------------------------------------------------------------------------------

def json_line(record: dict[str, Any]) -> str:
    """One JSONL line; a value holding a lone surrogate (a JSON input's ``\\ud800`` escape, carried through)
    is written escaped, as it was read, since it has no UTF-8 encoding."""
    line = json.dumps(record, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(record)
    return line + "\n"


def write_text_atomically(path: Path, text: str) -> None:
    """``text`` (UTF-8) at ``path``, whole or not at all (synced), from any process."""
    replace_atomically(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8", newline=""), sync=True)


class TableWriter:
    """Writes records of fixed ``columns`` in one format; ``schema`` (a pyarrow schema) for Parquet."""

    def __init__(self, fmt: str, columns: list[str], quoting: str = "auto", schema: Any = None) -> None:
        self.format = fmt
        self.columns = columns
        self.schema = schema
        delimiter = "\t" if fmt == "tsv" else ","
        # Written as it was read: an unquoted TSV stays unquoted, so quotes inside texts come back unchanged.
        self.unquoted = fmt == "tsv" and quoting in ("auto", "none")
        self.dialect = {"delimiter": delimiter, "quoting": csv.QUOTE_NONE if self.unquoted else csv.QUOTE_MINIMAL,
                        "quotechar": None if self.unquoted else '"', "lineterminator": "\r\n"}

    def _csv_lines(self, records: list[dict[str, Any]], header: bool) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, **self.dialect)
        try:
            if header:
                writer.writeheader()
            writer.writerows(records)
        except csv.Error as exc:  # a label name with a tab or newline cannot go into an unquoted TSV
            raise DataError(f"cannot write an unquoted TSV ({exc}); use --quoting minimal or a .csv output") from None
        return buf.getvalue()

    def write_part(self, path: Path, records: list[dict[str, Any]]) -> None:
        """One chunk's records, without a header, atomically."""
        if self.format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pylist(records, schema=self.schema)
            replace_atomically(path, lambda tmp: pq.write_table(table, tmp), sync=True)
            return
        if self.format == "jsonl":
            text = "".join(json_line(r) for r in records)
        else:
            text = self._csv_lines(records, header=False)
        write_text_atomically(path, text)

    def merge(self, parts: list[Path], output: Path, scratch: Path | None = None) -> None:
        """The parts, in order, as one file with a header (CSV/TSV) at ``output``, atomically (the temporary
        file in ``scratch``); one part in memory at a time."""
        if self.format == "parquet":
            import pyarrow.parquet as pq

            def write(tmp: Path) -> None:
                with pq.ParquetWriter(tmp, self.schema) as writer:
                    for part in parts:
                        writer.write_table(pq.read_table(part, schema=self.schema))
        else:
            def write(tmp: Path) -> None:
                with tmp.open("wb") as out:
                    if self.format != "jsonl":
                        out.write(self._csv_lines([], header=True).encode("utf-8"))
                    for part in parts:
                        with part.open("rb") as src:
                            shutil.copyfileobj(src, out, 1 << 20)
        replace_atomically(output, write, scratch, sync=True)
