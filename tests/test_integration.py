"""`lightft run` end to end with the real default model on a small slice of the real BBC News corpus."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lightft.cli import app

ROOT = Path(__file__).resolve().parents[1]
BBC = ROOT.parent / "shared" / "data" / "bbc"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not BBC.is_dir(), reason="the BBC corpus is not at ../shared/data/bbc"),
]


@pytest.mark.slow
def test_bbc_slice_end_to_end(tmp_path):
    out = tmp_path / "bbc-slice"
    result = CliRunner().invoke(app, [
        "run", str(ROOT / "configs" / "bbc-news.yaml"), "-o", str(out),
        f"data.source={BBC}", "data.test_size=100", "data.validation_size=50", "data.train_samples=200",
        "model.max_length=64", "model.truncation=head",  # headline + first lines: fast; auto would read windows
        "train.min_steps=39",  # 13 batches an epoch: the floor raises 2 epochs to 3 (the shipped 120 would give 10)
    ], catch_exceptions=False)  # otherwise training as the shipped config says (from the probe start)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert summary["test_samples"] == 100 and summary["train_samples"] == 200
    assert summary["epochs_trained"] == 3
    assert summary["finetuned"]["accuracy"] > summary["baseline"]["accuracy"] + 0.3
    assert summary["finetuned"]["macro_f1"] > summary["baseline"]["macro_f1"]
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    adapter_cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert json.loads((out / "adapter" / "config.json").read_text())["id2label"]["0"] == "tech"
