"""Data: labelled texts (read by ``lightft.readers``) to label ids, deterministic stratified splits, tokens.

Multi-label data (``data.task``): a label field that holds a list (JSON/JSONL/Parquet), or a string split by
``data.label_separator`` (CSV/TSV: ``"business|politics"``); an empty list or string is a text with no label.
Such labels become sorted tuples of label ids (``Split.labels``), and ``DataSplits.task`` says which kind.
Empty or whitespace-only texts are dropped with a warning that counts them; with ``data.duplicates: drop`` a
repeated text is kept once before the splits are drawn.
"""

from __future__ import annotations

import json
import logging
import numbers
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightft.config import DataConfig
from lightft.errors import DataError
from lightft.readers import Records, check_text, is_null, read_records
from lightft.runtime import progress_bar

log = logging.getLogger("lightft")


@dataclass
class Split:
    texts: list[str]
    labels: list[Any]  # label ids; multi-label: a sorted tuple of ids per text (possibly empty)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class DataSplits:
    label_names: list[str]
    train: Split
    validation: Split
    test: Split
    task: str = "single_label"  # or multi_label
    duplicates_dropped: int = 0  # rows dropped before splitting as repeats of another row's text (data.duplicates)

    @property
    def multi_label(self) -> bool:
        return self.task == "multi_label"

    def counts(self) -> dict[str, dict[str, int]]:
        """Texts per label in each split (multi-label: texts that carry the label)."""
        out = {}
        for name, split in (("train", self.train), ("validation", self.validation), ("test", self.test)):
            c = Counter(i for ids in split.labels for i in ids) if self.multi_label else Counter(split.labels)
            out[name] = {self.label_names[i]: c.get(i, 0) for i in range(len(self.label_names))}
        return out


# --------------------------------------------------------------------------------------------------------
# Labels


def _is_missing(value: Any) -> bool:
    return is_null(value) or (isinstance(value, str) and not value.strip())


def _as_label_key(value: Any) -> Any:
    """Integers (also "3", 3.0 or "3.0", as pandas writes an int column with gaps) stay ints; everything else
    is a stripped string."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    whole, dot, zeros = text.partition(".")
    digits = whole.removeprefix("-")
    coded = _as_number(whole) is not None  # "007" is a code, not the number 7
    if digits.isascii() and digits.isdecimal() and not coded and (not dot or (zeros and set(zeros) == {"0"})):
        return int(whole)
    return text


def _as_number(name: str) -> str | None:
    """"7" for a zero-padded code such as "007", else None: a name "01" still matches the label 1 (or "1"), as
    it did when such codes were read as numbers, so runs and configs from before keep their meaning."""
    digits = name.removeprefix("-")
    if len(digits) > 1 and digits[0] == "0" and digits.isascii() and digits.isdecimal():
        return str(int(name))
    return None


def detect_task(records: Records, task: str, separator: str | None, test: Records | None = None) -> str:
    """``single_label`` or ``multi_label`` for these rows (and the test data's) under ``data.task``: ``auto`` is
    multi-label where ``data.label_separator`` is set or a label field holds a list."""
    if task != "auto":
        return task
    if separator:
        return "multi_label"
    rows = records.labels + (test.labels if test is not None else [])
    return "multi_label" if any(isinstance(label, (list, tuple)) for label in rows) else "single_label"


def _zero_one(value: Any) -> bool:
    return isinstance(value, numbers.Number) and value in (0, 1)  # numbers.Number: numpy scalars too


def _looks_like_vector(label: Any) -> bool:
    """A list that reads as one 0/1 entry per label rather than label ids: True/False entries, 0.0/1.0 floats,
    a repeated 0 or 1 (ids do not repeat), or three or more 0/1 ints."""
    values = list(label)
    if not values or not all(map(_zero_one, values)):
        return False
    exact_ints = all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values)
    return not exact_ints or len(values) != len(set(values)) or len(values) >= 3


def _refuse_vector_column(records: Records) -> None:
    """Every label a list of the same length >= 2 holding only 0/1 values (``[1, 0]`` rows and ``[0, 1]`` rows):
    a one-hot column, which read as ids would give every text both labels."""
    lists = [label for label in records.labels if isinstance(label, (list, tuple))]
    if len(lists) != len(records.labels) or not lists:
        return
    if len({len(x) for x in lists}) == 1 and len(lists[0]) >= 2 and all(_zero_one(v) for x in lists for v in x):
        raise DataError(f"{records.where[0]}: every label is a list of {len(lists[0])} zeros and ones, like "
                        f"{list(lists[0])}: a 0/1 vector (one entry per label); lightft reads the list of a text's "
                        "label names or ids, e.g. [\"sport\", \"tech\"]")


def _label_set(label: Any, separator: str | None, where: str) -> tuple[Any, ...]:
    """A multi-label field as a tuple of label keys, first occurrence order, repeats dropped."""
    if isinstance(label, (list, tuple)):
        if _looks_like_vector(label):
            raise DataError(f"{where}: the label {list(label)[:6]} looks like a 0/1 vector (one entry per label); "
                            "lightft reads the list of a text's label names or ids, e.g. [\"sport\", \"tech\"]")
        parts = list(label)
    elif isinstance(label, str):
        parts = label.split(separator) if separator else [label]
        parts = [p for p in parts if p.strip()]
    else:
        parts = [label]
    keys = []
    for part in parts:
        if _is_missing(part) or isinstance(part, (list, tuple, dict)):
            raise DataError(f"{where}: label list holds {part!r}; each label must be a name or an id")
        if isinstance(part, str):
            check_text(part, f"{where} label")
        key = _as_label_key(part)
        if key not in keys:
            keys.append(key)
    return tuple(keys)


def clean_records(records: Records, task: str = "single_label", separator: str | None = None) -> Records:
    """Refuse missing labels (naming the row); drop empty texts with a count. Multi-label: each label becomes
    a tuple of label keys; an empty list or string is a text without labels (``None`` is still missing)."""
    multi = task == "multi_label"
    keep_texts, keep_labels, keep_where = [], [], []
    empty = 0
    for text, label, where in zip(records.texts, records.labels, records.where, strict=True):
        if is_null(label) or (not multi and _is_missing(label)):
            # Multi-label: a null (Parquet/JSON null, pandas' NaN for an empty CSV cell written on) is refused, not
            # read as "no labels": a forgotten label and a text with none look alike there, so say how to write one.
            raise DataError(f"{where}: missing label" + (
                " (a text with no labels is an empty list [] or an empty string, not null)" if multi else ""))
        if not multi and isinstance(label, (list, tuple, dict)):
            kind = "a list (several labels?), but the task is single-label" if isinstance(label, (list, tuple)) \
                else f"a {type(label).__name__}; a label is a name or an id"
            raise DataError(f"{where}: the label is {kind}" + (
                " (data.task: multi_label or auto reads lists as label sets)" if isinstance(label, (list, tuple))
                else ""))
        check_text(text, where)
        if isinstance(label, str) and not multi:
            check_text(label, f"{where} label")
        if not text.strip():
            empty += 1
            continue
        keep_texts.append(text)
        keep_labels.append(_label_set(label, separator, where) if multi else _as_label_key(label))
        keep_where.append(where)
    if multi:  # after the rows, so that a row which is a vector on its own is named first
        _refuse_vector_column(records)
    if empty:
        log.warning("dropped %d empty or whitespace-only text(s)", empty)
    if not keep_texts:
        raise DataError("no usable rows: every text is empty")
    return Records(keep_texts, keep_labels, keep_where, records.label_names)


def _text_key(text: str) -> str:
    return " ".join(text.split())


def text_digests(texts: list[str]) -> list[str]:
    """A short fingerprint of each text, whitespace aside (as ``data.duplicates`` compares them): a run records
    its training and validation texts' so that ``evaluate`` can say when its data holds texts the model saw,
    without keeping the texts themselves in the run directory."""
    import hashlib

    return [hashlib.sha256(_text_key(t).encode("utf-8")).hexdigest()[:16] for t in texts]


def data_fingerprint(splits: DataSplits) -> str:
    """One short fingerprint of what a run reads: the label names and every split's texts and labels, in order.
    A resumed run, sweep or curve compares it with the folder's, so that training does not continue on other
    data (a file edited between the interruption and --resume)."""
    import hashlib
    import json

    parts = {"labels": splits.label_names}
    for name in ("train", "validation", "test"):
        split = getattr(splits, name)
        parts[name] = [text_digests(split.texts), [list(x) if isinstance(x, tuple) else int(x) for x in split.labels]]
    return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()[:16]


def _label_key(label: Any) -> Any:
    return frozenset(label) if isinstance(label, tuple) else label


def drop_duplicate_texts(records: Records, also_in: Records | None = None) -> tuple[Records, int]:
    """``records`` without the rows whose text (whitespace aside) repeats an earlier row's, or occurs in
    ``also_in`` (a separate test set), and how many were dropped. A copy left on both sides of a split would be
    a test text the model was trained on, and a copy inside the test split would be scored twice; so each text
    is kept once, with its first row's label (a warning names repeats that carry another label)."""
    first: dict[str, int] = {}
    held = {_text_key(t) for t in also_in.texts} if also_in is not None else set()
    keep, conflicts, in_test = [], [], 0
    for i, text in enumerate(records.texts):
        key = _text_key(text)
        if key in held:
            in_test += 1
        elif key in first:
            j = first[key]
            if _label_key(records.labels[i]) != _label_key(records.labels[j]):
                conflicts.append(f"{records.where[i]} repeats {records.where[j]} with label "
                                 f"'{records.labels[i]}' instead of '{records.labels[j]}'")
        else:
            first[key] = i
            keep.append(i)
    dropped = len(records.texts) - len(keep)
    if conflicts:
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        log.warning("%s%s: the first row's label is kept; fix the data or set data.duplicates: keep",
                    conflicts[0], more)
    if dropped:
        log.info("dropped %d row(s) whose text repeats another row's%s (data.duplicates: drop)", dropped,
                 f", {in_test} of them found in the test set" if in_test else "")
    if not keep:
        raise DataError("no usable rows: every training text is also in the test set")
    return Records([records.texts[i] for i in keep], [records.labels[i] for i in keep],
                   [records.where[i] for i in keep], records.label_names), dropped


def label_names_for(records: Records, configured: list[str] | None) -> list[str]:
    if configured:
        return list(configured)
    if records.label_names:
        return list(records.label_names)
    values = {v for ls in records.labels for v in (ls if isinstance(ls, tuple) else (ls,))}
    if all(isinstance(v, int) for v in values):
        return [str(v) for v in sorted(values)]
    return sorted(str(v) for v in values)


def encode_labels(records: Records, names: list[str], configured: bool) -> list[Any]:
    """Map raw labels to ids: a string by its position in ``names``; an int is an id when the names came
    from config or a ClassLabel, else the int's own name. Multi-label rows (tuples) become sorted id tuples."""
    index = {n: i for i, n in enumerate(names)}
    for i, n in enumerate(names):  # a name spelled "1.0" is the label read as 1 (see _as_label_key), "01" too
        index.setdefault(str(_as_label_key(n)), i)
        index.setdefault(_as_number(n) or n, i)
    ints_are_ids = configured or records.label_names is not None
    classes = records.label_names  # a ClassLabel column: its ints are ids into these names
    as_name: list[tuple[int, str]] = []  # int labels matched to a name, and ints read as ids: never both
    as_id: list[tuple[int, str]] = []

    def one(label: Any, where: str) -> int:
        if classes is not None and isinstance(label, int) and 0 <= label < len(classes):
            if classes[label] in index:  # by name, whatever order data.labels or a run lists them in
                return index[classes[label]]
            if len(classes) == len(names):
                return label  # data.labels renames the ClassLabel's classes, position by position
        if str(label) not in index and isinstance(label, str) and _as_number(label) in index:
            return index[_as_number(label)]  # "01" in the data, "1" in a run's or the config's names
        if str(label) in index:  # a name match wins: configured names "1".."5" keep their meaning
            if isinstance(label, int) and not as_name:
                as_name.append((label, where))
            return index[str(label)]
        if isinstance(label, int) and ints_are_ids:
            if not 0 <= label < len(names):
                raise DataError(f"{where}: label id {label} is outside 0..{len(names) - 1}")
            if not as_id:
                as_id.append((label, where))
            if as_name:
                _refuse_mixed_ints(as_name[0], as_id[0], names)
            return label
        sep = next((c for c in "|;," if c in str(label)), None)
        hint = f" (several labels joined by '{sep}'? set data.label_separator, or --label-separator for evaluate)" \
            if sep and not any(sep in n for n in names) else ""
        raise DataError(f"{where}: label '{label}' is not one of the labels: {', '.join(names)}{hint}")

    encoded = [tuple(sorted({one(v, where) for v in label})) if isinstance(label, tuple) else one(label, where)
               for label, where in zip(records.labels, records.where, strict=True)]
    if as_id and as_name:
        _refuse_mixed_ints(as_name[0], as_id[0], names)
    if as_id and records.label_names is None:  # a ClassLabel column's ints are ids by definition
        log.warning("%s: integer labels are read as class ids (%s)", as_id[0][1].rsplit(" line ", 1)[0],
                    shown([f"{i} = {n}" for i, n in enumerate(names)], 5))
    return encoded


def _refuse_mixed_ints(by_name: tuple[int, str], by_id: tuple[int, str], names: list[str]) -> None:
    raise DataError(f"{by_id[1]}: label {by_id[0]} can only be read as a class id ({names[by_id[0]]}), while "
                    f"{by_name[1]}'s label {by_name[0]} is the class name '{by_name[0]}': a column holds either "
                    f"names ({shown(names, 6)}) or ids 0..{len(names) - 1}")


# --------------------------------------------------------------------------------------------------------
# Splits


def _count(size: int | float, n: int) -> int:
    return int(round(size * n)) if isinstance(size, float) else int(size)


def stratified_split(labels: list[int], size: int, seed: int, what: str) -> tuple[list[int], list[int]]:
    """Indices (rest, held_out) with ``size`` held out, class proportions kept (scikit-learn's stratified
    shuffle split, deterministic per seed).

    Rare classes appear in every split: a class with a single member stays on the remaining side, and a class
    with two or more that the proportional allocation left out of the held-out side gets one member there.
    """
    from sklearn.model_selection import train_test_split

    n = len(labels)
    if size <= 0:
        return list(range(n)), []
    if size >= n:
        raise DataError(f"{what} of {size} leaves nothing to train on ({n} documents in all)")
    counts = Counter(labels)
    singles = [i for i in range(n) if counts[labels[i]] < 2]
    pool = [i for i in range(n) if counts[labels[i]] >= 2]
    classes = sum(1 for k in counts.values() if k >= 2)
    if size < classes:  # a stratified draw holds out at least one text of each class
        log.warning("%s of %d is fewer than the %d classes with two or more texts: drawing %d, one of each",
                    what, size, classes, classes)
        size = classes
    if len(pool) - size < classes:
        raise DataError(f"{what} of {size}: {n} documents in {len(counts)} classes are too few to hold out one text "
                        f"of each class and keep one of each to train on; give more texts per class, or fewer "
                        f"classes")
    try:
        rest, held = train_test_split(pool, test_size=size, stratify=[labels[i] for i in pool], random_state=seed)
    except ValueError as exc:
        raise DataError(f"{what} of {size}: cannot split {n} documents by class ({exc})") from None
    rng = random.Random(seed)
    for c in sorted(c for c, k in counts.items() if k >= 2):
        if any(labels[i] == c for i in held):
            continue
        donor_class = Counter(labels[i] for i in held).most_common(1)[0][0]
        give = rng.choice([i for i in held if labels[i] == donor_class])
        take = rng.choice([i for i in rest if labels[i] == c])
        held = [i for i in held if i != give] + [take]
        rest = [i for i in rest if i != take] + [give]
    return sorted(rest + singles), sorted(held)


def _subset(texts: list[str], labels: list[int], idx: list[int]) -> Split:
    return Split([texts[i] for i in idx], [labels[i] for i in idx])


def _strata(labels: list[Any]) -> list[int]:
    """What a split is stratified by: the label id, or for a multi-label text its rarest label (-1: none), a
    common approximation of iterative stratification that keeps every label's share close in each split."""
    if not labels or not isinstance(labels[0], tuple):
        return labels
    freq = Counter(i for ids in labels for i in ids)
    return [min(ids, key=lambda i: (freq[i], i)) if ids else -1 for ids in labels]


def _refuse_label_per_text(labels: list[int], cfg: DataConfig, dropped: int) -> None:
    """Refuse a label column with more distinct values than half its rows: most classes would have a single
    text, so nothing can be learnt or tested; usually a text, id or score column named as the label."""
    k, n = len(set(labels)), len(labels)
    if n >= 10 and k > n / 2:
        after = f" (after dropping {dropped} repeated texts: data.duplicates)" if dropped else ""
        raise DataError(f"{n} texts{after} carry {k} different labels in column '{cfg.label_column}': a class needs "
                        f"several texts to learn from. Is '{cfg.label_column}' a text, id or score column? Set "
                        "data.label_column (and data.text_column) to the columns of the labels and the texts")


def _split_indices(strata: list[int], cfg: DataConfig, seed: int, held_out: bool
                   ) -> tuple[list[int], list[int], list[int]]:
    """(train, validation, test) row indices: test held out (when ``held_out``), then validation, then the
    optional training subset, each stratified by ``strata``."""
    n = len(strata)
    pool, held = list(range(n)), []
    if held_out:
        if _count(cfg.test_size, n) <= 0:
            raise DataError(f"data.test_size {cfg.test_size} of {n} texts holds out none to test on: give a larger "
                            "fraction or a count (data.test_size=K), or a separate data.test")
        pool, held = stratified_split(strata, _count(cfg.test_size, n), seed, "data.test_size")
    rest, val = stratified_split([strata[i] for i in pool], _count(cfg.validation_size, len(pool)), seed + 1,
                                 "data.validation_size")
    train_idx = [pool[i] for i in rest]
    if cfg.train_samples is not None and cfg.train_samples > len(train_idx):
        log.warning("data.train_samples is %d but %d texts are left for training after the test and validation "
                    "splits: training on all %d", cfg.train_samples, len(train_idx), len(train_idx))
    if cfg.train_samples is not None and cfg.train_samples < len(train_idx):
        sub = [strata[i] for i in train_idx]
        _, keep = stratified_split(sub, cfg.train_samples, seed + 2, "data.train_samples")
        counts = Counter(sub)  # a class with one training text stays (stratified_split leaves it on the other side)
        train_idx = [train_idx[i] for i in sorted(set(keep) | {i for i, c in enumerate(sub) if counts[c] == 1})]
    return train_idx, [pool[i] for i in val], held


def _cover_labels(labels: list[Any], train: list[int], others: list[list[int]]) -> None:
    """Multi-label: move one text into ``train`` (from validation, then test) for every label that the split
    by rarest label left with no training text, so each label the data has is learnt (in place)."""
    seen = {i for r in train for i in labels[r]}
    for other in others:
        for r in list(other):
            if set(labels[r]) - seen:
                other.remove(r)
                train.append(r)
                seen |= set(labels[r])
    train.sort()


def shown(items: list[str], limit: int = 12) -> str:
    """``items`` joined for a log line: the first ``limit`` and a count of the rest (77 intents stay one line)."""
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


# Fewer training texts than this for a class and its scores rest on a handful of texts (warned, not refused).
FEW_EXAMPLES = 5


def _warn_about_labels(names: list[str], train: Split, multi: bool) -> None:
    """Warnings on the label set: classes without (or with very few) training texts, and names that differ
    only in case or spacing, which are separate classes ("Tech" vs "tech": a typo in the data, usually)."""
    counts = Counter(i for ids in train.labels for i in ids) if multi else Counter(train.labels)
    kind = "labels" if multi else "classes"
    missing = [names[i] for i in range(len(names)) if not counts[i]]
    if missing:
        log.warning("%s with no training examples: %s", kind, shown(missing))
    few = [f"{names[i]} ({counts[i]})" for i in range(len(names)) if 0 < counts[i] < FEW_EXAMPLES]
    if few:
        log.warning("%s with fewer than %d training examples: %s; the model can hardly learn them, and their "
                    "test scores rest on a text or two", kind, FEW_EXAMPLES, shown(few))
    alike: dict[str, list[str]] = {}
    for name in names:
        alike.setdefault(" ".join(str(name).split()).casefold(), []).append(str(name))
    for group in (g for g in alike.values() if len(g) > 1):
        log.warning("labels %s differ only in case or spacing and are separate classes; make them one in the "
                    "data if they mean the same", ", ".join(repr(n) for n in group))
    if not multi:
        _warn_if_joined(names)


def _warn_if_joined(names: list[str]) -> None:
    """Warn when single-label class names look like several labels joined by a separator: a name whose parts
    are all class names too ("billing,bug" beside "billing" and "bug"), or two names that are the same parts
    in another order ("billing,bug" and "bug,billing")."""
    plain = {n.strip() for n in names}
    for sep in "|;,":
        parts = {n: frozenset(p.strip() for p in n.split(sep)) for n in names if sep in n}
        orders = Counter(parts.values())
        joined = [n for n, ps in parts.items() if ps <= plain or orders[ps] > 1]
        if joined:
            log.warning("labels such as %s look like several labels joined by '%s', each read as one class; for a "
                        "multi-label task set data.label_separator='%s'", ", ".join(repr(n) for n in joined[:3]),
                        sep, sep)
            return


def _warn_unused_test_split(cfg: DataConfig) -> None:
    """A training run on a saved DatasetDict draws its test split from ``data.split``: name the folder's own
    test split that it leaves out (here, not in the reader, which ``evaluate --split`` shares)."""
    path = Path(cfg.source).expanduser()
    if cfg.test is not None or cfg.split == cfg.test_split or not (path / "dataset_dict.json").is_file():
        return
    try:
        splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
    except (OSError, ValueError, AttributeError):
        return  # the reader has already named a damaged folder
    if cfg.test_split in splits:
        log.warning("%s also has a '%s' split, which this run leaves out: its test split is drawn from '%s'; "
                    "set data.test to the same folder to evaluate on '%s'", path, cfg.test_split, cfg.split,
                    cfg.test_split)


def load_splits(cfg: DataConfig, seed: int) -> DataSplits:
    """Read the data and make deterministic stratified train/validation/test splits. The text and label
    columns read (a default name may resolve to an alias: ``pick_columns``) are written back into ``cfg``."""
    raw = read_records(cfg.source, cfg, cfg.split)
    raw_test = read_records(cfg.test, cfg, cfg.test_split) if cfg.test else None
    _warn_unused_test_split(cfg)
    # Recorded in the config, so that the run's config.yaml (and predict, which reads its text column) names the
    # columns read; not where a separate test file resolved to other names, which the config could not re-read.
    if raw.columns is not None and (raw_test is None or raw_test.columns in (None, raw.columns)):
        cfg.text_column, cfg.label_column = raw.columns
    task = detect_task(raw, cfg.task, cfg.label_separator, raw_test)
    records = clean_records(raw, task, cfg.label_separator)
    test_records = clean_records(raw_test, task, cfg.label_separator) if raw_test is not None else None
    dropped = 0
    if cfg.duplicates == "drop":
        rows = len(records.texts)
        records, dropped = drop_duplicate_texts(records, test_records)
        if dropped > rows / 2:
            log.warning("%d of %d texts in column '%s' repeat an earlier one and were dropped (data.duplicates: drop):"
                        " is '%s' the text column?", dropped, rows, cfg.text_column, cfg.text_column)
    configured = bool(cfg.labels)
    names = label_names_for(records, cfg.labels)
    labels = encode_labels(records, names, configured)
    texts = records.texts
    if task != "multi_label" and raw_test is None and raw.columns is not None:  # a column named as the label
        _refuse_label_per_text(labels, cfg, dropped)
    if task != "multi_label" and labels and len(set(labels)) == 1:  # said before a split size is blamed for it
        raise DataError(f"the data has a single class ('{names[labels[0]]}'); need at least two")
    train_idx, val_idx, held = _split_indices(_strata(labels), cfg, seed, raw_test is None)
    if task == "multi_label":
        _cover_labels(labels, train_idx, [val_idx, held])
    if test_records is not None:
        try:
            test_labels = encode_labels(test_records, names, configured)
        except DataError as exc:
            raise DataError(f"{exc} (labels in the test data must also occur in the training data)") from None
        test = Split(test_records.texts, test_labels)
    else:
        test = _subset(texts, labels, held)
    validation = _subset(texts, labels, val_idx)
    train = _subset(texts, labels, train_idx)

    multi = task == "multi_label"
    def ids_of(split: Split) -> set[int]:
        return {i for ids in split.labels for i in ids} if multi else set(split.labels)

    present = ids_of(train)
    if not multi and len(present) < 2:
        where = "the data has" if len(set(labels)) == 1 else "the training split has"
        raise DataError(f"{where} a single class ('{names[train.labels[0]]}'); need at least two")
    if multi and not present:
        raise DataError("no text of the training split carries a label")
    unseen = sorted({names[y] for y in ids_of(test)} - {names[y] for y in present})
    if unseen:
        raise DataError(f"labels in the test split never seen in training: {', '.join(unseen)}")
    _warn_about_labels(names, train, multi)
    untested = [names[i] for i in sorted(present - ids_of(test))] if len(test) else []
    if untested:
        where = f"the test data ({cfg.test})" if test_records is not None else "the test split"
        kind = "labels" if multi else "classes"
        log.warning("%s with no examples in %s: %s; the test scores cannot measure them (macro-F1 averages the "
                    "%s present or predicted)", kind, where, shown(untested), kind)
    if multi:
        log.info("multi-label task: %d labels, %.2f labels per training text", len(names),
                 sum(map(len, train.labels)) / max(len(train), 1))
    return DataSplits(names, train, validation, test, task, dropped)


# --------------------------------------------------------------------------------------------------------
# Tokenization


def tokenize(texts: list[str], tokenizer: Any, max_length: int, truncation: str = "head",
             desc: str = "tokenizing", progress: bool = True) -> list[list[int]]:
    """Token ids per text, unpadded (batches are padded to their own longest text later).

    ``head`` keeps the first ``max_length`` tokens. ``head_tail`` keeps the first three quarters and the last
    quarter of the budget, a cheap way to see how a long article ends (Sun et al., 2019).
    """
    if truncation not in ("head", "head_tail"):  # windows: lightft.windows.tokenize_texts
        raise ValueError(f"data.tokenize keeps one window per text; truncation '{truncation}' is not one")
    out: list[list[int]] = []
    chunk = 256
    # A token never spans more than ~100 characters (WordPiece and BPE cap word length), so characters far
    # beyond max_length * 100 can never be kept: cut them before tokenizing, or a 10 MB text takes a minute.
    limit = max_length * 100
    bar = progress_bar(total=len(texts), desc=desc, unit="doc", leave=False, disable=not progress or len(texts) < 64)
    for start in range(0, len(texts), chunk):
        batch = texts[start:start + chunk]
        if truncation == "head":
            batch = [t[:limit] for t in batch]
        else:
            batch = [t if len(t) <= 2 * limit else t[:limit] + " " + t[-limit:] for t in batch]
        if truncation == "head":
            enc = tokenizer(batch, truncation=True, max_length=max_length, padding=False)
            out.extend(enc["input_ids"])
        else:
            enc = tokenizer(batch, truncation=False, padding=False, return_special_tokens_mask=True)
            for ids, special in zip(enc["input_ids"], enc["special_tokens_mask"], strict=True):
                out.append(_head_tail(ids, special, max_length))
        bar.update(len(batch))
    bar.close()
    return out


def _head_tail(ids: list[int], special: list[int], max_length: int) -> list[int]:
    """Cut the middle of ``ids`` (special tokens at both ends kept) down to ``max_length``."""
    if len(ids) <= max_length:
        return ids
    lead = next((i for i, s in enumerate(special) if not s), len(ids))
    trail = next((i for i, s in enumerate(reversed(special)) if not s), 0)
    body = ids[lead: len(ids) - trail]
    budget = max_length - lead - trail
    tail = budget // 4
    return ids[:lead] + body[: budget - tail] + body[len(body) - tail:] + ids[len(ids) - trail:]
