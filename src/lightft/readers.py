"""Reading labelled texts from every supported spec into ``Records``: texts, labels as found, and where each
row came from (for error messages). ``lightft.data`` maps the labels to ids and splits them.

Specs (``data.source`` / ``data.test``):
  * a folder with one subfolder per class holding ``.txt`` files (the BBC News layout);
  * a ``.csv`` / ``.tsv`` / ``.json`` / ``.jsonl`` / ``.parquet`` file;
  * a folder written by ``datasets``' ``save_to_disk`` (a Dataset or a DatasetDict);
  * a Hugging Face Hub dataset id (``owner/name``), read with ``datasets.load_dataset``.

Texts that are not valid UTF-8 are decoded with ``data.encoding_fallback`` (cp1252 by default, which is a
superset of Latin-1's printable range; bytes it cannot map fall back to Latin-1), with a warning naming the
file.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightft.config import QUOTINGS, DataConfig
from lightft.errors import DataError, MissingColumnError

log = logging.getLogger("lightft")

TEXT_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet")
# Where the configured column ('text' / 'label', the defaults) is absent, the one column of these names (any case)
# is read instead, with a warning: what public datasets call them (SST-2's sentence, Kaggle BBC's Text/Category).
TEXT_ALIASES = ("text", "sentence", "review", "content", "document", "body", "article", "message", "comment",
                "tweet", "question", "utterance", "abstract")
LABEL_ALIASES = ("label", "labels", "category", "class", "sentiment", "target", "topic", "intent", "emotion")
_DEFAULT_COLUMNS = {"text": ("text", TEXT_ALIASES), "label": ("label", LABEL_ALIASES)}


@dataclass
class Records:
    """Raw rows of one data source: texts and their labels as found (strings or ints)."""

    texts: list[str]
    labels: list[Any]
    where: list[str]  # for error messages: "file.csv line 12", "sport/199.txt"
    label_names: list[str] | None = None  # from a datasets ClassLabel feature, when there is one
    columns: tuple[str, str] | None = None  # the text and label columns read (None: class folders)


def decode_bytes(raw: bytes, where: str, fallback: str = "cp1252") -> str:
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # Excel's "Unicode text", Windows tools
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DataError(f"{where}: starts as UTF-16 but byte {exc.start} is not; save it as UTF-8") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        try:
            text, used = raw.decode(fallback), fallback
        except (UnicodeDecodeError, LookupError):  # latin-1 decodes any byte: the warning names what was used
            text, used = raw.decode("latin-1"), f"latin-1 (not {fallback}: it cannot decode every byte)"
        log.warning("%s is not valid UTF-8 (byte %d); decoded as %s", where, exc.start, used)
        return text


def _read_text_file(path: Path, fallback: str) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    return decode_bytes(raw, str(path), fallback)


def _is_saved_dataset(path: Path) -> bool:
    return any((path / n).is_file() for n in ("dataset_info.json", "state.json", "dataset_dict.json"))


def read_records(spec: str, cfg: DataConfig, split: str) -> Records:
    """Read one data spec into Records, with clear errors for every way it can be wrong."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if _is_saved_dataset(path):
            return _read_saved_dataset(path, cfg, split)
        return _read_class_folders(path, cfg.encoding_fallback)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".csv", ".tsv"):
            rows = _read_csv(path, cfg.encoding_fallback, "\t" if suffix == ".tsv" else ",", cfg.quoting)
        elif suffix == ".jsonl":
            rows = read_jsonl(path, cfg.encoding_fallback)
        elif suffix == ".json":
            rows = _read_json(path, cfg.encoding_fallback)
        elif suffix == ".parquet":
            rows = _read_parquet(path)
        else:
            raise DataError(f"{path}: unsupported file type '{suffix}'; use one of {', '.join(TEXT_SUFFIXES)}")
        return _records_from_rows(rows, str(path), cfg)
    if _looks_like_hub_id(spec):
        return _read_hub(spec, cfg, split)
    where = "" if path.is_absolute() else f"; a relative path is read from the current folder, {Path.cwd()}"
    raise DataError(f"data not found: {spec} (no such file or folder{where})")


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return (
        0 < len(parts) <= 2
        and all(parts)
        and not spec.startswith((".", "~"))
        and Path(spec).suffix.lower() not in TEXT_SUFFIXES
    )


def _read_class_folders(root: Path, fallback: str) -> Records:
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    texts, labels, where = [], [], []
    for class_dir in classes:
        for file in sorted(class_dir.glob("*.txt")):
            texts.append(_read_text_file(file, fallback))
            labels.append(class_dir.name)
            where.append(str(file))
    if not texts:
        raise DataError(
            f"{root}: no class subfolders with .txt files; expected {root}/<class>/<doc>.txt "
            "or a data file (.csv, .tsv, .json, .jsonl, .parquet)"
        )
    return Records(texts, labels, where)


def csv_quoting(quoting: str, delimiter: str) -> int:
    if quoting not in QUOTINGS:
        raise DataError(f"data.quoting must be one of {', '.join(QUOTINGS)}, got '{quoting}'")
    if quoting == "auto":
        quoting = "none" if delimiter == "\t" else "minimal"
    return csv.QUOTE_NONE if quoting == "none" else csv.QUOTE_MINIMAL


def warn_if_quoted(record: list[str], where: str) -> str:
    """Warn (and return the field) when a field of a record read without quote processing looks RFC
    4180-quoted: its quotes stay in the text, which the model then reads. "" (no warning) otherwise."""
    field = next((f for f in record if len(f) > 1 and f[0] == f[-1] == '"' and '""' in f), "")
    if field:
        log.warning("%s: a field looks RFC 4180-quoted (%s...); .tsv files are read without quote processing, so "
                    "its quotes stay in the text; set data.quoting: minimal (--quoting minimal for "
                    "predict/evaluate) if the file is quoted", where, field[:40])
    return field


def quote_split(record: list[str], width: int) -> bool:
    """Whether a record read without quote processing may be a quoted one split apart: more fields than the
    header (a quoted delimiter), or fewer with a field that opens a quote (a quoted line break)."""
    return len(record) > width or any(f.startswith('"') for f in record)


def refuse_other_delimiter(header: list[str], path: Path, delimiter: str) -> None:
    """A header read as one column that holds another delimiter: a semicolon-separated "CSV" (spreadsheets in
    many locales write them), or a tab-separated .csv."""
    one = header[0] if len(header) == 1 else ""
    other = next((c for c in ";\t|," if c != delimiter and c in one), None)
    if other:
        raise DataError(f"{path} line 1: the header is one column, {header[0][:60]!r}: the file looks "
                        f"separated by {other!r}, but {path.suffix or 'this'} files are read with "
                        f"{delimiter!r}; save it comma-separated as .csv or tab-separated as .tsv")


def _read_csv(path: Path, fallback: str, delimiter: str, quoting: str = "auto") -> list[tuple[str, dict[str, Any]]]:
    """Every record of a CSV/TSV file as (where, row). The header names the fields; each record must have
    exactly that many fields, every header name must be unique, and a quote that is never closed fails naming
    its line, so the rows read are always the file's records. ``quoting``: ``minimal`` (RFC 4180 quotes),
    ``none`` (a quote is an ordinary character, as in most real-world TSVs) or ``auto`` (``none`` for a tab
    delimiter, else ``minimal``)."""
    mode = csv_quoting(quoting, delimiter)
    text = _read_text_file(path, fallback)
    csv.field_size_limit(1 << 30)  # fields over the default 131,072 characters are valid
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True, quoting=mode)
    rows = []
    start = 1
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: the file is empty")
        header = [h.strip() for h in header]
        refuse_other_delimiter(header, path, delimiter)
        # Columns without a name are never read (no config can name them): spreadsheets' trailing empty columns
        # ("text,label,,") and pandas' index column (",text,label").
        duplicates = sorted({h for h in header if h and header.count(h) > 1})
        if duplicates:
            raise DataError(f"{path} line 1: the header names column '{duplicates[0]}' more than once")
        start = reader.line_num + 1
        quoted_hint = ""
        for record in reader:
            line = reader.line_num
            if not record:
                start = line + 1
                continue
            if len(record) != len(header):
                where = f"line {start}" if start == line else f"lines {start}-{line}"
                raise DataError(
                    f"{path} {where}: {len(record)} fields where the header has {len(header)}"
                    + (" (a quote opened on the first of these lines spans them)" if start != line else "")
                    + ("; if quotes here enclose fields, set data.quoting: minimal (--quoting minimal for "
                       "predict/evaluate)" if mode == csv.QUOTE_NONE and quote_split(record, len(header)) else "")
                )
            if mode == csv.QUOTE_NONE and quoting == "auto" and not quoted_hint:
                quoted_hint = warn_if_quoted(record, f"{path} line {start}")
            rows.append((f"{path} line {start}", {h: v for h, v in zip(header, record, strict=True) if h}))
            start = line + 1
    except csv.Error as exc:
        hint = (" (a quote opened on this line is never closed; for unquoted data set data.quoting: none, or "
                "--quoting none for predict/evaluate)"
                if "end of data" in str(exc) else "")
        raise DataError(f"{path} line {start}: malformed CSV ({exc}){hint}") from None
    return rows


def _parse_json(text: str, where: str, name_line: bool = False) -> Any:
    """``json.loads(text)``, or a one-line DataError at ``where`` (plus the failing line when ``name_line``:
    a whole-file JSON document spans many lines, a JSONL record is one)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = f"{where} line {exc.lineno}" if name_line else where
        raise DataError(f"{at}: malformed JSON ({exc.msg})") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply") from None


def read_jsonl(path: Path, fallback: str) -> list[tuple[str, dict[str, Any]]]:
    """One JSON object per line. Lines end at \\n only: U+2028 and other Unicode line breaks are valid inside
    JSON strings and do not end a record."""
    text = _read_text_file(path, fallback)
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        obj = _parse_json(line, f"{path} line {number}")
        if not isinstance(obj, dict):
            raise DataError(f"{path} line {number}: expected a JSON object, got {type(obj).__name__}")
        rows.append((f"{path} line {number}", obj))
    return rows


def check_text(text: str, where: str) -> str:
    """``text``, or a one-line DataError when it cannot be encoded as UTF-8 (a lone surrogate, e.g. from a
    JSON escape \\ud800 or undecodable bytes in a command-line argument)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(f"{where}: not valid Unicode text (lone surrogate U+{ord(text[exc.start]):04X} at "
                        f"character {exc.start + 1})") from None
    return text


def _read_json(path: Path, fallback: str) -> list[tuple[str, dict[str, Any]]]:
    text = _read_text_file(path, fallback)
    if not text.strip():
        return []
    obj = _parse_json(text, str(path), name_line=True)
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    if isinstance(obj, dict) and obj and all(isinstance(v, list) and v and isinstance(v[0], dict)
                                             for v in obj.values()):
        raise DataError(f"{path}: the JSON object holds lists of records under {', '.join(map(repr, obj))}, i.e. "
                        "splits, not columns: save the training rows and the test rows as files of their own and "
                        "name them in data.source and data.test")
    if isinstance(obj, dict) and obj and all(isinstance(v, list) for v in obj.values()):
        keys = list(obj)  # columnar: {"text": [...], "label": [...]}; every column must have every row
        lengths = {k: len(v) for k, v in obj.items()}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"'{k}' {n}" for k, n in lengths.items())
            raise DataError(f"{path}: the columns have different lengths ({detail}); each needs one value per row")
        obj = [dict(zip(keys, vals, strict=True)) for vals in zip(*obj.values(), strict=True)]
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise DataError(f"{path}: expected a list of objects (or {{\"data\": [...]}}) with text and label fields")
    return [(f"{path} record {i + 1}", r) for i, r in enumerate(obj)]


def _read_parquet(path: Path) -> list[tuple[str, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    return [(f"{path} row {i + 1}", r) for i, r in enumerate(table.to_pylist())]


def not_text(value: Any) -> str | None:
    """The type name of a field that is no text (a dict, list or bool; None and numbers are text), else None."""
    if value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool)):
        return None
    return type(value).__name__


def _text_of(value: Any, where: str, column: str) -> str:
    """A text field as a string: a number reads as its digits, a missing value as empty (dropped later with a
    warning); a nested object or list is refused rather than trained on as its Python repr."""
    kind = not_text(value)
    if kind is not None:
        raise DataError(f"{where}: text column '{column}' holds a {kind}, not a text (choose another column with "
                        "data.text_column, or flatten the field)")
    return "" if is_null(value) else str(value)


def _records_from_rows(rows: list[tuple[str, dict[str, Any]]], source: str, cfg: DataConfig) -> Records:
    if not rows:
        raise DataError(f"{source}: the file holds no rows")
    text_column, label_column = pick_columns(list(rows[0][1].keys()), source, cfg)
    texts, labels, where = [], [], []
    for loc, row in rows:
        if text_column not in row or label_column not in row:
            raise DataError(f"{loc}: missing field '{text_column}' or '{label_column}'")
        texts.append(_text_of(row[text_column], loc, text_column))
        labels.append(row[label_column])
        where.append(loc)
    return Records(texts, labels, where, columns=(text_column, label_column))


def named_like(columns: list[Any], aliases: tuple[str, ...], taken: set[str] | None = None) -> list[str]:
    """The ``columns`` whose name is one of ``aliases`` in any case, less those ``taken``, in file order."""
    return [c for c in columns if isinstance(c, str) and c.strip().lower() in aliases and c not in (taken or set())]


def pick_columns(columns: list[Any], source: str, cfg: DataConfig) -> tuple[str, str]:
    """The text and label columns to read: the configured ones, or, where a default name ('text', 'label') is
    absent, the one column named like it (TEXT_ALIASES / LABEL_ALIASES, any case, not the other role's column),
    with a warning. Another missing name, no such column, or two candidates is a MissingColumnError that lists
    the columns."""
    picked: list[str] = []
    for role, configured in (("text", cfg.text_column), ("label", cfg.label_column)):
        default, aliases = _DEFAULT_COLUMNS[role]
        if configured in columns:
            picked.append(configured)
            continue
        taken = {cfg.label_column, *picked}  # never the column the other role reads
        found = named_like(columns, aliases, taken) if configured == default else []
        if len(found) == 1:
            log.warning("%s: no %s column '%s'; reading '%s' as the %s (data.%s_column, or evaluate's --%s-column, "
                        "chooses another)", source, role, configured, found[0], role, role, role)
            picked.append(found[0])
            continue
        which = f"; '{found[0]}' and '{found[1]}' could each be it" if found else ""
        raise MissingColumnError(
            f"{source}: no {role} column '{configured}'{which}; available columns: {', '.join(map(str, columns))} "
            f"(set data.{role}_column; evaluate: --{role}-column)"
        )
    return picked[0], picked[1]


def _dataset_to_records(ds: Any, source: str, cfg: DataConfig) -> Records:
    text_column, label_column = pick_columns(list(ds.column_names), source, cfg)
    feature = ds.features[label_column]
    feature = getattr(feature, "feature", feature)  # Sequence(ClassLabel): a multi-label column's names
    names = list(feature.names) if hasattr(feature, "names") else None
    texts = [_text_of(t, f"{source} row {i + 1}", text_column) for i, t in enumerate(ds[text_column])]
    labels = list(ds[label_column])
    return Records(texts, labels, [f"{source} row {i + 1}" for i in range(len(texts))], names,
                   (text_column, label_column))


def _read_saved_dataset(path: Path, cfg: DataConfig, split: str) -> Records:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises many types for a damaged folder
        raise DataError(f"{path}: not a readable saved dataset ({exc})") from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(f"{path}: no split '{split}'; available splits: {', '.join(ds)}")
        ds = ds[split]
    return _dataset_to_records(ds, f"{path}[{split}]", cfg)


def _read_hub(dataset_id: str, cfg: DataConfig, split: str) -> Records:
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:  # network, auth and missing-split errors all land here
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"cannot load Hub dataset '{dataset_id}' split '{split}': {first}") from None
    return _dataset_to_records(ds, f"{dataset_id}[{split}]", cfg)


def is_null(value: Any) -> bool:
    """None or a float NaN: a field with no value (JSON null, pandas' NaN for a gap)."""
    return value is None or (isinstance(value, float) and math.isnan(value))
