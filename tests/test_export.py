"""Export parity: the merged model loads with transformers.pipeline, keeps label names, and matches the adapter."""

import csv
import json

import numpy as np
import pytest
import torch
import yaml

from lightft.model import label_names_of, load_saved_model

from conftest import (
    build_tiny_sentence_model,
    invoke,
    table_labels,
    tiny_run_config,
    write_class_folder,
    write_config,
)


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

    pipe = pipeline("text-classification", model=str(out), truncation=True)  # as the model card says
    labels = [r["label"] for r in pipe(texts)]
    assert set(labels) <= set(names) and names != ["LABEL_0", "LABEL_1", "LABEL_2"]
    assert labels == [names[i] for i in a.argmax(1)]
    # the export's tokenizer cuts where the run did (max_length 32), not at the base model's limit
    assert tok.model_max_length == 32
    long = " ".join(["goal match team"] * 20 + ["vote election minister"] * 20)
    with torch.inference_mode():
        enc = tok([long], truncation=True, max_length=32, return_tensors="pt")
        want = torch.softmax(unmerged(**enc).logits, -1)[0].max().item()
    assert pipe(long)[0]["score"] == pytest.approx(want, abs=1e-4)

    # evaluate scores the export with its own head and label order, as it scores the run: a file with two of the
    # three labels must not become a two-class problem with a new head (or ids in the file's sorted order)
    data = tmp_path / "two.csv"
    data.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in [
        ("goal match team", "sport"), ("coach team goal", "sport"), ("chip software phone", "tech"),
        ("data phone chip", "tech")]), encoding="utf-8")
    scores = {}
    for target in (finished_run, out):
        result = invoke("evaluate", target, "--data", data, "-o", tmp_path / "m.json", "--overwrite")
        assert result.exit_code == 0, result.output
        scores[target] = json.loads((tmp_path / "m.json").read_text())
    assert scores[out]["target_kind"] == "checkpoint (its own head)"
    assert scores[out]["accuracy"] == scores[finished_run]["accuracy"]


def test_merged_export_of_a_mean_head_is_a_sentence_transformer(finished_mean_run, tmp_path):
    """The mean-pooled head has no transformers class: its merged export is a sentence-transformers folder whose
    embeddings are the unmerged adapter's logits, with the label names in config.json."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoConfig, AutoTokenizer

    out = tmp_path / "merged-st"
    result = invoke("export", finished_mean_run, "--merged", out)
    assert result.exit_code == 0, result.output
    assert "sentence-transformers" in result.output and "not for transformers.pipeline" in result.output
    assert (out / "modules.json").is_file() and not list(out.rglob("*.bin"))
    assert "new, untrained classifier" in (out / "README.md").read_text(encoding="utf-8")  # the card warns too

    texts = ["goal match team coach", "vote election minister the", "chip software phone data", "the of and"]
    base = yaml.safe_load((finished_mean_run / "config.yaml").read_text())["model"]["name"]
    unmerged = load_saved_model(finished_mean_run / "adapter", base)
    names = label_names_of(unmerged)
    tok = AutoTokenizer.from_pretrained(out)
    with torch.inference_mode():
        enc = tok(texts, truncation=True, max_length=32, padding=True, return_tensors="pt")
        want = unmerged(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.numpy()
    got = SentenceTransformer(str(out), device="cpu").encode(texts, convert_to_numpy=True)
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4
    result = invoke("evaluate", out, "--data", tmp_path / "nowhere.csv")  # not a pre-trained model's folder
    assert result.exit_code == 2 and "sentence-transformers export of a fine-tuned mean-pooled head" in result.output
    config = AutoConfig.from_pretrained(out)
    assert [config.id2label[i] for i in range(len(names))] == names


@pytest.mark.parametrize("arch", ["roberta", "electra"])
def test_a_mean_pooled_dense_head_exports_and_starts_from_the_probe(tiny_models, tmp_path, arch):
    """RoBERTa-style heads (dense -> tanh/gelu -> out_proj) under mean pooling: the run starts from the probe
    (epoch 0 scores it), and the sentence-transformers export and the ONNX graph give the adapter's logits."""
    from sentence_transformers import SentenceTransformer

    from lightft.export import OnnxClassifier
    from lightft.predict import Classifier

    model_dir = build_tiny_sentence_model(tiny_models, arch)
    cfg = write_config(tmp_path, tiny_run_config(model_dir, write_class_folder(tmp_path / "corpus"), tmp_path / "run",
                                                 **{"train.epochs": 1, "baselines.zero_shot": False,
                                                    "baselines.tfidf": False, "evaluation.bootstrap_resamples": 0}))
    result = invoke("run", cfg)
    assert result.exit_code == 0, result.output
    assert "classifier starts from a linear probe on the frozen mean-pooled features" in result.output
    texts = ["goal match team coach", "vote election minister the", "chip software phone data", "the of and"]
    want = Classifier.from_run(tmp_path / "run", precision="fp32").predict_proba(texts)
    assert invoke("export", tmp_path / "run", "--merged", tmp_path / "st").exit_code == 0
    got = SentenceTransformer(str(tmp_path / "st"), device="cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(got), -1).numpy(), want, atol=1e-4)
    assert invoke("export", tmp_path / "run", "--onnx", tmp_path / "onnx").exit_code == 0
    np.testing.assert_allclose(OnnxClassifier(tmp_path / "onnx").predict_proba(texts), want, atol=1e-3)


def test_export_refuses_incomplete_run_and_existing_folder(finished_run, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    result = invoke("export", finished_run, "--merged", tmp_path / "taken")
    assert result.exit_code == 2 and "not empty" in result.stderr
    result = invoke("export", tmp_path, "--merged", tmp_path / "m")
    assert result.exit_code == 2 and "not a lightft run" in result.stderr


@pytest.mark.parametrize("run", ["finished_run", "finished_mean_run"])
@pytest.mark.slow
def test_onnx_export_parity_int8_and_predict(run, request, tmp_path):
    """For both heads: the graph holds the pooling, so onnxruntime alone gives the PyTorch logits."""
    import onnxruntime as ort

    finished_run = request.getfixturevalue(run)
    from lightft.config import load_run_config
    from lightft.data import load_splits
    from lightft.export import OnnxClassifier
    from lightft.inference import predict_logits
    from lightft.predict import Classifier

    out = tmp_path / "onnx"
    result = invoke("export", finished_run, "--onnx", out, "--int8")
    assert result.exit_code == 0, result.output
    refused = invoke("evaluate", out, "--data", tmp_path / "nowhere.csv")
    assert refused.exit_code == 2 and "is an ONNX export, which evaluate does not read" in refused.output
    assert "int8: test accuracy" in result.output
    assert (out / "model.onnx").is_file() and (out / "model_int8.onnx").is_file()

    cfg = load_run_config(finished_run)
    test = load_splits(cfg.data, cfg.seed).test
    torch_clf = Classifier.from_run(finished_run, precision="fp32")
    ids = [torch_clf.tokenizer(t, truncation=True, max_length=cfg.model.max_length)["input_ids"] for t in test.texts]
    want = predict_logits(torch_clf.model, ids, torch_clf.pad_id, precision="fp32", progress=False)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])  # onnxruntime only
    got = np.concatenate([session.run(["logits"], {"input_ids": np.array([x]), "attention_mask": np.ones((1, len(x)),
                                                                                                         dtype=np.int64)})[0]
                          for x in ids])
    assert np.abs(got - want).max() <= 1e-3
    assert (got.argmax(1) == want.argmax(1)).all()

    report = json.loads((out / "export.json").read_text())["int8"]
    assert report["test_documents"] == len(test.texts) and report["speedup"] > 0
    assert report["fp32"]["accuracy"] == pytest.approx(float((want.argmax(1) == np.asarray(test.labels)).mean()))
    assert report["accuracy_change"] == pytest.approx(report["int8"]["accuracy"] - report["fp32"]["accuracy"])
    # the int8 graph computes the same model: probabilities close to fp32's (accuracy alone cannot say so here:
    # the tiny [CLS] model is nearly uniform, so int8 rounding flips its argmax on a third of 12 texts)
    fp32, int8 = (OnnxClassifier(out, f).predict_proba(test.texts) for f in ("model.onnx", "model_int8.onnx"))
    assert np.abs(int8 - fp32).max() <= 0.05

    texts = ["goal match team", "vote law tax"]
    result = invoke("predict", out, *texts)
    assert result.exit_code == 0, result.output
    assert table_labels(result.output) == [p.label for p in OnnxClassifier(out).predict(texts)]
    # the streaming file predict runs either graph
    src = tmp_path / "in.csv"
    src.write_text("id,text\n1,goal match team\n2,vote law tax\n", encoding="utf-8")
    for graph, extra in (("model.onnx", ()), ("model_int8.onnx", ("--int8",))):
        dest = tmp_path / f"{graph}.csv"
        result = invoke("predict", out, "-i", src, "-o", dest, "--probabilities", *extra)
        assert result.exit_code == 0, result.output
        rows = list(csv.DictReader(dest.open(encoding="utf-8")))
        want = OnnxClassifier(out, graph).predict(texts)
        assert [r["pred_label"] for r in rows] == [p.label for p in want]
        assert [float(r["pred_score"]) for r in rows] == pytest.approx([p.score for p in want], abs=2e-6)
    assert invoke("predict", finished_run, "goal", "--int8").exit_code == 2  # a run directory has no int8 graph
    # the export records the run's text column, which predict --input reads as it does from a run
    meta = json.loads((out / "lightft_onnx.json").read_text())
    assert meta["text_column"] == "text"
    (out / "lightft_onnx.json").write_text(json.dumps({**meta, "text_column": "body"}))
    (tmp_path / "body.csv").write_text("id,body\n1,goal match team\n", encoding="utf-8")
    assert invoke("predict", out, "-i", tmp_path / "body.csv", "-o", tmp_path / "body-out.csv").exit_code == 0


def test_int8_without_the_runs_data_fails_before_any_export_work(finished_run, tmp_path):
    import shutil

    run = tmp_path / "moved"
    shutil.copytree(finished_run, run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["data"]["source"] = "corpus/not-here.csv"  # relative: read from the folder export runs in
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    result = invoke("export", run, "--onnx", tmp_path / "onnx", "--int8")
    assert result.exit_code == 2, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert "--int8 scores both graphs on the run's test split" in line and "corpus/not-here.csv" in line, line
    assert "run export from the folder the run was started in" in line
    assert not (tmp_path / "onnx").exists()

