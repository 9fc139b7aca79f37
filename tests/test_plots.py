"""Plots stay readable and cheap whatever the number of classes."""

import struct
from pathlib import Path

import numpy as np
import pytest

from lightft import plots


def png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])  # the IHDR chunk
    return width, height


@pytest.mark.parametrize("k", [5, 77])
def test_confusion_matrix_numbers_only_where_they_can_be_read(tmp_path, monkeypatch, k):
    import matplotlib.axes

    texts = []
    original = matplotlib.axes.Axes.text
    monkeypatch.setattr(matplotlib.axes.Axes, "text",
                        lambda self, *a, **kw: texts.append(a) or original(self, *a, **kw))
    rng = np.random.default_rng(0)
    cm = np.diag(rng.integers(10, 30, k)) + rng.integers(0, 2, (k, k))
    metrics = {"confusion_matrix": cm.tolist(), "labels": [f"intent_number_{i}" for i in range(k)]}
    out = plots.confusion_matrices(metrics, "fine-tuned", tmp_path / "cm.png")
    width, height = png_size(out)
    if k <= plots.ANNOTATED_CLASSES:
        assert len(texts) == 2 * k * k  # counts and row-normalised, one number per cell
    else:
        assert texts == [] and width < 4000 and height < 2000  # ~60 s and 3 MB a plot before, at 77 classes
