"""Model cards in every adapter and merged export, and `lightft push`."""

import json
from pathlib import Path

import pytest
import yaml

from conftest import invoke


def fake_run(root, labels=("sport", "tech"), name="news", model="sentence-transformers/all-MiniLM-L6-v2"):
    """The files a complete run's card is built from, without training anything."""
    (root / "metrics").mkdir(parents=True)
    (root / "adapter").mkdir()
    (root / "adapter" / "adapter_config.json").write_text("{}")  # a PEFT adapter folder
    metrics = {"accuracy": 0.9, "macro_f1": 0.88, "ece": 0.05, "trainable_params": 1000,
               "ci95": {"accuracy": [0.85, 0.95], "macro_f1": [0.8, 0.93]}}
    (root / "metrics" / "finetuned.json").write_text(json.dumps(metrics))
    (root / "metrics" / "tfidf.json").write_text(json.dumps({**metrics, "accuracy": 0.8}))
    (root / "metrics" / "comparisons.json").write_text(json.dumps({"tfidf": {"p_value": 0.01}}))
    (root / "summary.json").write_text(json.dumps({
        "name": name, "model": model, "method": "lora", "pooling": "mean", "head_init": "linear_probe",
        "truncation": "head", "labels": list(labels), "trainable_params": 1000, "total_params": 22_000_000,
        "train_samples": 100, "validation_samples": 20, "test_samples": 50, "best_epoch": 2, "train_seconds": 10.0,
        "precision": "bf16", "device": "cpu", "max_length": 384}))
    (root / "labels.json").write_text(json.dumps({"labels": list(labels),
                                                  "counts": {"train": {n: 50 for n in labels}}}))
    (root / "config.yaml").write_text(yaml.safe_dump({"seed": 42, "data": {"source": "ag_news"},
                                                      "peft": {"r": 8}, "train": {"epochs": 2}}))
    return root


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_card_has_hub_metadata_results_and_labels(tmp_path):
    from huggingface_hub import ModelCard

    from lightft.card import write_model_card

    run = fake_run(tmp_path / "run")
    path = write_model_card(run, run / "adapter")
    card = ModelCard.load(path)  # the Hub's own parser reads it
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert card.data.library_name == "peft" and card.data.pipeline_tag == "text-classification"
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == {"accuracy": 0.9, "macro_f1": 0.88} and card.data.eval_results[0].dataset_name == "ag_news"
    text = path.read_text()
    assert "| 0 | sport | 50 |" in text and "| 1 | tech | 50 |" in text
    assert "0.9000 \\[0.850, 0.950\\]" in text and "0.01" in text  # results with intervals and McNemar p
    assert "Intended use and limitations" in text and "PeftModel.from_pretrained" in text


def test_card_mentions_intervals_only_when_there_are_some(tmp_path):
    from lightft.card import model_card

    run = fake_run(tmp_path / "run")
    for key in ("finetuned", "tfidf"):  # evaluation.bootstrap_resamples 0: metrics without ci95
        path = run / "metrics" / f"{key}.json"
        path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "ci95"}))
    text = model_card(run)
    assert "bootstrap" not in text and "95% CI" not in text and "| 0.9000 |" in text
    assert "95% bootstrap intervals in brackets" in model_card(fake_run(tmp_path / "with"))
    summary = json.loads((run / "summary.json").read_text())  # a run stopped by a perfect validation epoch
    (run / "summary.json").write_text(json.dumps({**summary, "epochs_trained": 1, "epochs_planned": 10,
                                                  "stopped_early": True}))
    assert "Training: 1 epoch of the 10 planned (a trained epoch was perfect" in model_card(run)


def test_card_escapes_dataset_strings_and_hides_local_paths(tmp_path):
    from lightft.card import model_card

    run = fake_run(tmp_path / "run", labels=("a|b", "<script>alert(1)</script>"), name="x|y",
                   model=str(tmp_path))  # a local folder: not a Hub id
    card = model_card(run)
    assert "base_model" not in front_matter(card) and str(tmp_path) not in card
    assert "<script>" not in card
    rows = [line for line in card.splitlines() if line.startswith("| 0 |") or line.startswith("| 1 |")]
    assert len(rows) == 2 and all(row.count(" | ") == 2 for row in rows)  # '|' in a label is escaped


def test_a_run_writes_its_card_in_the_adapter(finished_mean_run):
    from huggingface_hub import ModelCard

    card = ModelCard.load(finished_mean_run / "adapter" / "README.md")
    summary = json.loads((finished_mean_run / "summary.json").read_text())
    assert "Model Card for Model ID" not in card.text  # PEFT's empty placeholder is replaced
    assert card.data.library_name == "peft" and card.data.base_model is None  # the tiny model is a local folder
    assert {r.metric_type: r.metric_value for r in card.data.eval_results}["accuracy"] == \
        summary["finetuned"]["accuracy"]
    for name in summary["labels"]:
        assert f"| {name} |" in card.text
    epochs = summary["epochs_trained"]  # what ran, not just the config (a perfect validation epoch stops early)
    ran = f"Training: {epochs} epoch{'s' if epochs != 1 else ''}"
    planned = f"{ran} of the {summary['epochs_planned']} planned"
    assert f"{ran}," in card.text or summary["stopped_early"] and planned in card.text


def test_the_card_states_the_epochs_trained_when_min_steps_raised_them(tmp_path):
    from lightft.card import model_card

    run = fake_run(tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "epochs_trained": 4}))  # config says 2
    assert "Training: 4 epochs," in model_card(run)


def test_a_prompt_tuned_mean_head_card_says_to_load_it_with_lightft(tmp_path):
    from lightft.card import model_card

    run = fake_run(tmp_path / "run")
    assert "virtual tokens" not in model_card(run)  # LoRA: the README's pooling lines reproduce it
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "method": "prompt_tuning"}))
    assert "prepends virtual tokens that this mean head averages" in model_card(run)


@pytest.mark.slow
def test_merged_export_gets_its_own_card(finished_run, finished_mean_run, tmp_path):
    from huggingface_hub import ModelCard

    from lightft.export import export_merged

    for run, library in ((finished_run, "transformers"), (finished_mean_run, "sentence-transformers")):
        out = export_merged(run, tmp_path / library)
        card = ModelCard.load(out / "README.md")
        assert card.data.library_name == library and "## How to use" in card.text
        assert ("pipeline(" if library == "transformers" else "SentenceTransformer(") in card.text
        # transformers' pipeline would give this folder a new, untrained classifier: no tag that offers it
        assert card.data.pipeline_tag == ("text-classification" if library == "transformers" else None)


def test_push_uploads_the_adapter_with_its_card(finished_mean_run, monkeypatch):
    import huggingface_hub

    calls = {}

    class FakeApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, **kwargs):
            calls["repo"] = (repo_id, kwargs["private"])
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, repo_id, folder_path, **kwargs):
            calls["folder"] = folder_path

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    result = invoke("push", finished_mean_run, "me/news-lora", "--private", "--token", "t0k")
    assert result.exit_code == 0, result.output
    assert calls == {"token": "t0k", "repo": ("me/news-lora", True), "folder": str(finished_mean_run / "adapter")}
    assert "https://huggingface.co/me/news-lora" in result.output


def test_push_without_the_hub_is_one_line(finished_mean_run, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    result = invoke("push", finished_mean_run, "me/news-lora", "--token", "t0k")
    assert result.exit_code == 2
    assert "cannot push to the Hugging Face Hub repository me/news-lora" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_full_model_folders_get_a_transformers_card_and_paths_stay_private(tmp_path):
    from lightft.card import model_card, write_model_card

    run = fake_run(tmp_path / "run", model="mymodels/bert-ft")  # a run from before summary said hub or local
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["source"] = "/home/alice/private/customers.csv"
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "adapter" / "adapter_config.json").unlink()  # method full/head save a whole model there
    card = (write_model_card(run, run / "adapter")).read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "transformers" and "PeftModel" not in card and "peft" not in meta["tags"]
    assert "/home/alice" not in card and "customers" in card
    summary = json.loads((run / "summary.json").read_text())
    summary.update(base_model_hub_id=None, data_name="customers")  # what a run records today
    (run / "summary.json").write_text(json.dumps(summary))
    card = model_card(run, "transformers")
    assert "base_model" not in front_matter(card) and "huggingface.co/mymodels" not in card


def test_push_replaces_a_placeholder_card(finished_mean_run, tmp_path, monkeypatch):
    import shutil

    import huggingface_hub

    run = tmp_path / "run"
    shutil.copytree(finished_mean_run, run)
    (run / "adapter" / "README.md").write_text("# Model Card for Model ID\n")  # what PEFT writes
    uploaded = {}

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **kwargs):
            return repo_id

        def upload_folder(self, repo_id, folder_path, **kwargs):
            uploaded["card"] = (Path(folder_path) / "README.md").read_text()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert invoke("push", run, "me/x").exit_code == 0
    assert "Model Card for Model ID" not in uploaded["card"] and "library_name: peft" in uploaded["card"]
