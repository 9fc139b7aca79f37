"""Long texts as overlapping windows: every token is read, and the windows' outputs are aggregated per text.

``model.truncation: windows`` splits a text longer than ``model.max_length`` into windows of at most
``max_length`` tokens (special tokens included) whose starts are ``model.window_stride`` tokens apart, at most
``model.max_windows`` per text (evenly spread over the text when there would be more). Each window is run
through the model like a short text; the text's logits are the mean (``model.window_aggregation: mean``, the
default: every window votes with its confidence) or the element-wise max (``max``: the strongest evidence for
each class wins) of its windows' logits. Training reads ``train.windows_per_text`` windows of each text (2 by
default: the first and the last, so training costs twice what head truncation costs), each with its text's label;
validation, the test evaluation, predict, serve and the ONNX predictor read every window and aggregate the
same way. ``model.truncation: auto`` picks windows only where head truncation would leave most of the
training split's tokens unread (``resolve_truncation``). Embeddings for the baselines
are the mean of the windows' embeddings.

Texts are kept as flat lists of windows plus ``owner`` (the text each window belongs to), so batching,
padding and every inference lever stay as they are for short texts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lightft.runtime import progress_bar


@dataclass
class Tokenized:
    """Token ids per model input, and per input the text it came from (None: one input per text)."""

    ids: list[list[int]]
    owner: np.ndarray | None = None

    @property
    def texts(self) -> int:
        return len(self.ids) if self.owner is None else (int(self.owner.max()) + 1 if len(self.owner) else 0)

    def per_input(self, values: list[Any]) -> list[Any]:
        """Per-text values (labels) repeated for each of the text's windows."""
        return list(values) if self.owner is None else [values[i] for i in self.owner]

    def unread(self, n: int, tokenizer: Any) -> list[int]:
        """Which of the ``n`` texts give the model nothing to read: every token of every window is a special
        one ([CLS], [SEP], padding; an unknown token counts as read), as for a text of only control or
        zero-width characters. Such a text would get the head's prior as a confident-looking label, and
        training never sees one (empty texts are dropped), so predict and serve refuse it."""
        content_free = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
        read = [False] * n
        for ids, owner in zip(self.ids, range(len(self.ids)) if self.owner is None else self.owner, strict=True):
            read[int(owner)] = read[int(owner)] or any(t not in content_free for t in ids)
        return [i for i, ok in enumerate(read) if not ok]


def unread_texts(texts: list[str], tokenize: Callable[[list[str]], Tokenized], tokenizer: Any,
                 max_length: int) -> list[int]:
    """``Tokenized.unread`` of ``texts``, tokenizing only the texts that could be unread. A letter or digit
    among the characters tokenizing keeps (the first ``max_length * 100``: data.tokenize's cut) always
    becomes a token or [UNK], which counts as read (checked on all 133,547 alphanumeric code points with the
    default model's WordPiece; byte-level BPE has a token for every byte), so a scan settles nearly every text,
    and predict does not tokenize each chunk twice."""
    maybe = [i for i, t in enumerate(texts) if not any(c.isalnum() for c in t[:max_length * 100])]
    if not maybe:
        return []
    return [maybe[j] for j in tokenize([texts[i] for i in maybe]).unread(len(maybe), tokenizer)]


class ReadsAsTrained:
    """``tokenize`` and ``unread`` for a predictor that keeps the run's reading settings as attributes
    (``tokenizer``, ``max_length``, ``truncation``, ``window_stride``, ``max_windows``): ``predict.Classifier``
    and ``export.OnnxClassifier`` read texts alike."""

    tokenizer: Any
    max_length: int
    truncation: str
    window_stride: int | None
    max_windows: int

    def tokenize(self, texts: list[str], progress: bool = False) -> Tokenized:
        """Model inputs for ``texts``, as the run was trained (one per text, or windows of long texts)."""
        return tokenize_texts(texts, self.tokenizer, self.max_length, self.truncation, self.window_stride,
                              self.max_windows, progress=progress)

    def unread(self, texts: list[str]) -> list[int]:
        """Indices of ``texts`` that give the model no tokens to read (``unread_texts``)."""
        return unread_texts(texts, self.tokenize, self.tokenizer, self.max_length)


# serve's 422 and predict's errors file say this of a text that Tokenized.unread names
UNREAD_REASON = ("gives the model no tokens to read (only whitespace, control or zero-width characters); training "
                 "drops such texts, so there is no label to give")


def split(ids: list[int], special: list[int], max_length: int, stride: int, max_windows: int) -> list[list[int]]:
    """Windows of ``ids`` (a whole text with its special tokens), each at most ``max_length`` long and carrying
    the text's leading and trailing special tokens."""
    if len(ids) <= max_length:
        return [ids]
    lead = next((i for i, s in enumerate(special) if not s), len(ids))
    trail = next((i for i, s in enumerate(reversed(special)) if not s), 0)
    head, body, tail = ids[:lead], ids[lead:len(ids) - trail], ids[len(ids) - trail:]
    size = max_length - lead - trail
    starts = list(range(0, max(len(body) - size, 0) + 1, stride))
    if starts[-1] + size < len(body):
        starts.append(len(body) - size)  # the last window ends at the text's end
    if len(starts) > max_windows:  # evenly spread, first and last kept
        starts = [starts[round(i * (len(starts) - 1) / (max_windows - 1))] for i in range(max_windows)] \
            if max_windows > 1 else starts[:1]
    return [head + body[s:s + size] + tail for s in starts]


def tokenize_windows(texts: list[str], tokenizer: Any, max_length: int, stride: int, max_windows: int,
                     desc: str = "tokenizing", progress: bool = True) -> Tokenized:
    ids: list[list[int]] = []
    owner: list[int] = []
    # As in data.tokenize: no token is longer than ~100 characters, so text beyond what the windows can
    # reach is never read.
    limit = window_reach(max_length, stride, max_windows) * 100
    chunk = 256
    bar = progress_bar(total=len(texts), desc=desc, unit="doc", leave=False, disable=not progress or len(texts) < 64)
    for start in range(0, len(texts), chunk):
        batch = [t[:limit] for t in texts[start:start + chunk]]
        enc = tokenizer(batch, truncation=False, padding=False, return_special_tokens_mask=True)
        for i, (row, special) in enumerate(zip(enc["input_ids"], enc["special_tokens_mask"], strict=True)):
            for window in split(row, special, max_length, stride, max_windows):
                ids.append(window)
                owner.append(start + i)
        bar.update(len(batch))
    bar.close()
    return Tokenized(ids, np.asarray(owner, dtype=np.int64))


def aggregate(values: np.ndarray, owner: np.ndarray | None, how: str = "mean") -> np.ndarray:
    """Per-text rows from per-window rows: mean or element-wise max over each text's windows."""
    if owner is None or len(values) == 0:
        return values
    n = int(owner.max()) + 1
    if how == "max":
        out = np.full((n, values.shape[1]), -np.inf, dtype=values.dtype)
        np.maximum.at(out, owner, values)
        return out
    out = np.zeros((n, values.shape[1]), dtype=np.float64)
    np.add.at(out, owner, values)
    return (out / np.bincount(owner, minlength=n)[:, None]).astype(values.dtype)


def tokenize_texts(texts: list[str], tokenizer: Any, max_length: int, truncation: str = "head",
                   stride: int | None = None, max_windows: int = 8, desc: str = "tokenizing",
                   progress: bool = True) -> Tokenized:
    """Model inputs for ``texts`` as ``model.truncation`` says: one per text (``head``, ``head_tail``), or
    overlapping windows (``windows``; ``stride`` None = half of ``max_length``)."""
    from lightft.data import tokenize

    if truncation == "auto":
        raise ValueError("model.truncation auto is decided on the training split first (windows.resolve_truncation)")
    if truncation == "windows":
        return tokenize_windows(texts, tokenizer, max_length, stride or max(max_length // 2, 1), max_windows,
                                desc, progress)
    return Tokenized(tokenize(texts, tokenizer, max_length, truncation, desc, progress))


# model.truncation auto: windows when head truncation would leave more than this share of the training split's
# tokens unread. BBC News at 512 tokens loses 18% (29% at 384, where windows measured no better and cost ~2x
# at inference); UN General Debate speeches lose 89% (windows: 0.778 -> 0.962 accuracy). bench/README.md.
AUTO_WINDOWS_UNREAD_SHARE = 0.5
# The decision is an estimate on at most this many training texts, so preflight stays cheap on big data.
AUTO_SAMPLE = 2000


def spread_sample(texts: list[str], sample: int) -> list[str]:
    """At most ``sample`` of ``texts``, spread evenly over the list (the first and the last included):
    deterministic, and not only the head of a file sorted by class or by length."""
    if len(texts) <= max(sample, 1):
        return texts
    return [texts[round(i * (len(texts) - 1) / (sample - 1))] for i in range(sample)] if sample > 1 else texts[:1]


def unread_share(texts: list[str], tokenizer: Any, max_length: int, reach: int | None = None,
                 sample: int = AUTO_SAMPLE) -> float:
    """The share of ``texts``' tokens (special tokens included) that head truncation at ``max_length`` drops,
    estimated on at most ``sample`` texts spread evenly over the list (deterministic). ``reach``: the most
    tokens of a text windows could read; a text is tokenized only up to ~100x that many characters (no token
    is longer), so a 10 MB text costs what a few long ones cost and still counts as mostly unread."""
    texts = spread_sample(texts, sample)
    cut = None if reach is None else reach * 100
    total = unread = 0
    for start in range(0, len(texts), 256):
        batch = [t[:cut] for t in texts[start:start + 256]]
        for row in tokenizer(batch, truncation=False, padding=False)["input_ids"]:
            total += len(row)
            unread += max(len(row) - max_length, 0)
    return unread / total if total else 0.0


def resolve_truncation(truncation: str, texts: list[str], tokenizer: Any, max_length: int,
                       reach: int | None = None) -> tuple[str, float]:
    """``truncation`` with ``auto`` decided on ``texts`` (the training split), and the unread share it saw;
    ``reach``: the most tokens of a text windows could read (``window_reach``)."""
    if truncation != "auto":
        return truncation, float("nan")
    share = unread_share(texts, tokenizer, max_length, reach)
    return ("windows" if share > AUTO_WINDOWS_UNREAD_SHARE else "head"), share


def window_reach(max_length: int, stride: int | None, max_windows: int) -> int:
    """The most tokens of one text that ``max_windows`` windows ``stride`` apart read."""
    return (stride or max(max_length // 2, 1)) * (max_windows - 1) + max_length


def spread(tok: Tokenized, per_text: int | None) -> tuple[Tokenized, np.ndarray | None]:
    """At most ``per_text`` windows of each text (evenly spread over its windows, the first kept), and the rows
    of ``tok`` they are (None: all of them)."""
    if tok.owner is None or per_text is None or len(tok.owner) == 0:
        return tok, None
    rows: list[int] = []
    starts = np.flatnonzero(np.r_[True, tok.owner[1:] != tok.owner[:-1]])
    ends = np.r_[starts[1:], len(tok.owner)]
    for a, b in zip(starts, ends, strict=True):
        k = b - a
        if k <= per_text:
            rows.extend(range(a, b))
        else:
            rows.extend(a + (round(i * (k - 1) / (per_text - 1)) if per_text > 1 else 0) for i in range(per_text))
    if len(rows) == len(tok.owner):
        return tok, None
    index = np.asarray(rows, dtype=np.int64)
    return Tokenized([tok.ids[i] for i in index], tok.owner[index]), index


def cut(ids: list[list[int]], max_length: int | None) -> list[list[int]]:
    """Inputs longer than ``max_length`` keep their first ``max_length - 1`` tokens and their last (the closing
    special token, e.g. [SEP]); ``ids`` itself when none is longer (or ``max_length`` is None)."""
    if max_length is None or all(len(x) <= max_length for x in ids):
        return ids
    return [x if len(x) <= max_length else [*x[:max_length - 1], x[-1]] for x in ids]


def tokenizing_options(model_cfg: Any) -> dict[str, Any]:
    """``tokenize_texts`` keyword arguments of a ``ModelConfig``."""
    return {"max_length": model_cfg.max_length, "truncation": model_cfg.truncation,
            "stride": model_cfg.window_stride, "max_windows": model_cfg.max_windows}
