import subprocess
import sys

import numpy as np


def test_linear_imports_no_torch():
    """The TF-IDF baseline's process (baselines.in_background) imports only this module: it must start in about a
    second, not after torch and transformers (~10 s on the H100 of bench/README.md)."""
    code = "import sys, lightft.linear; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_tfidf_probabilities_cover_every_label_id():
    """A label id absent from the training texts gets probability 0 in its own column."""
    from lightft.linear import tfidf_classifier

    texts = ["market shares fell", "the match was won", "shares and market rose", "match won late"] * 2
    probs, params = tfidf_classifier(texts, [0, 2, 0, 2] * 2, ["market shares", "the match won"], num_labels=3)
    assert probs.shape == (2, 3) and params > 0
    np.testing.assert_allclose(probs.sum(1), 1.0)
    assert (probs[:, 1] == 0).all() and probs[0, 0] > 0.5 and probs[1, 2] > 0.5
