"""Export parity: the merged model loads with transformers.pipeline, keeps label names, and matches the adapter."""

import numpy as np
import torch
import yaml

from lightft.model import label_names_of, load_saved_model

from conftest import invoke


def test_merged_export_matches_unmerged_adapter(finished_run, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    out = tmp_path / "merged"
    result = invoke("export", finished_run, "--merged", out)
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    assert not (out / "adapter_config.json").exists()

    texts = ["goal match team coach", "vote election minister the", "chip software phone data", "the of and"]
    base = yaml.safe_load((finished_run / "config.yaml").read_text())["model"]["name"]
    unmerged = load_saved_model(finished_run / "adapter", base)  # the PEFT adapter on the base, not merged
    names = label_names_of(unmerged)
    tok = AutoTokenizer.from_pretrained(out)
    merged = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.inference_mode():
        enc = tok(texts, truncation=True, max_length=32, padding=True, return_tensors="pt")
        a = unmerged(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.numpy()
        b = merged(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.numpy()
    assert np.abs(a - b).max() <= 1e-4
    assert (a.argmax(1) == b.argmax(1)).all()

    pipe = pipeline("text-classification", model=str(out))
    labels = [r["label"] for r in pipe(texts)]
    assert set(labels) <= set(names) and names != ["LABEL_0", "LABEL_1", "LABEL_2"]
    assert labels == [names[i] for i in a.argmax(1)]


def test_export_refuses_incomplete_run_and_existing_folder(finished_run, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    result = invoke("export", finished_run, "--merged", tmp_path / "taken")
    assert result.exit_code == 2 and "not empty" in result.stderr
    result = invoke("export", tmp_path, "--merged", tmp_path / "m")
    assert result.exit_code == 2 and "not a lightft run" in result.stderr
