"""The CLI verbs end to end on a tiny model: run, train, predict, evaluate, compare, and user errors."""

import csv
import json

import pytest
import yaml

from conftest import invoke, table_labels, tiny_run_config, write_config


def test_run_writes_a_complete_self_describing_directory(finished_run):
    run = finished_run
    for name in ["config.yaml", "labels.json", "summary.json", "report.md", "environment.json", "training.json",
                 "metrics/baseline.json", "metrics/finetuned.json", "adapter/adapter_model.safetensors",
                 "adapter/adapter_config.json", "adapter/config.json", "report.html", "metrics/comparisons.json",
                 "metrics/tfidf.json", "metrics/zero_shot.json", "metrics/linear_probe.json",
                 "plots/learning_curves.png", "plots/confusion_finetuned.png", "plots/accuracy_vs_params.png"]:
        assert (run / name).is_file(), name
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    summary = json.loads((run / "summary.json").read_text())
    for key in ["model", "method", "trainable_params", "total_params", "train_seconds"]:
        assert key in summary
    for model in ["baseline", "finetuned"]:
        assert 0 <= summary[model]["accuracy"] <= 1 and 0 <= summary[model]["macro_f1"] <= 1
    assert summary["trainable_params"] < summary["total_params"]
    # Where the time went (bench/README.md's phase tables): every phase of the run, adding up to about its total.
    phases = summary["phases"]
    assert list(phases)[-8:] == ["checks and data", "baselines", "training", "validation",
                                 "model set-up and probe start", "test evaluation", "save", "card and report"]
    assert all(sec >= 0 for sec in phases.values()) and phases["training"] > 0 and phases["validation"] > 0
    # total_seconds runs from the data's tokenising to the save (the checks and reading before it are not in it)
    inside = sum(sec for name, sec in phases.items() if name not in ("start-up", "checks and data", "card and report"))
    assert inside - 1 <= summary["total_seconds"] <= inside + phases["checks and data"] + 1, json.dumps(phases)
    labels = json.loads((run / "labels.json").read_text())["labels"]
    assert json.loads((run / "adapter/config.json").read_text())["id2label"] == {str(i): n for i, n in
                                                                                 enumerate(labels)}
    env = json.loads((run / "environment.json").read_text())
    assert env["python"] and env["packages"]["torch"] and "git_commit" in env
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["train"]["epochs"] == 2 and resolved["name"] == "tiny"
    metrics = json.loads((run / "metrics/finetuned.json").read_text())
    assert set(metrics["per_class"]) == set(labels) and len(metrics["confusion_matrix"]) == len(labels)
    assert "| fine-tuned |" in (run / "report.md").read_text()
    assert "ci95" in metrics and "ece" in metrics
    assert list((run / "tensorboard").rglob("events.out.tfevents.*")), "no TensorBoard event file"
    comparisons = json.loads((run / "metrics/comparisons.json").read_text())
    assert set(comparisons) == {"baseline", "tfidf", "zero_shot", "linear_probe"}
    assert 0 <= comparisons["tfidf"]["p_value"] <= 1 and "wrong_to_right" in comparisons["tfidf"]["changed"]
    html = (run / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html and "src=\"plots/" not in html


@pytest.mark.slow
def test_run_is_deterministic(finished_run, tiny_bert, class_folder, tmp_path):
    cfg = write_config(tmp_path, tiny_run_config(tiny_bert, class_folder, tmp_path / "again"))
    assert invoke("run", cfg, "train.epochs=2").exit_code == 0
    a = json.loads((finished_run / "metrics/finetuned.json").read_text())
    b = json.loads((tmp_path / "again/metrics/finetuned.json").read_text())
    assert a["accuracy"] == b["accuracy"] and a["confusion_matrix"] == b["confusion_matrix"]


def test_predict_texts_and_files(finished_run, tmp_path):
    from lightft.predict import Classifier

    texts = ["the goal of the match", "vote for the party"]
    result = invoke("predict", finished_run, *texts)
    assert result.exit_code == 0, result.output
    (tmp_path / "texts.csv").write_text("text\ngoal\n", encoding="utf-8")  # a file given as a text argument
    refused = invoke("predict", finished_run, tmp_path / "texts.csv")
    assert refused.exit_code == 2 and "is the file" in refused.output and "--input" in refused.output
    # `--overwrite true` reads 'true' as a text to classify: with --input that is refused, alone it is named
    both = invoke("predict", finished_run, "-i", tmp_path / "texts.csv", "-o", tmp_path / "o.csv", "true")
    assert both.exit_code == 2 and "not both" in both.output and "'true' was read as a text" in both.output
    assert not (tmp_path / "o.csv").exists()
    assert "flags take no value" in invoke("predict", finished_run, "false", "goal").output
    assert "flags take no value" not in invoke("predict", finished_run, "no", "goal").output  # a real answer
    flag_first = invoke("predict", "-i", tmp_path / "texts.csv", "-o", tmp_path / "o.csv", "true", finished_run)
    assert flag_first.exit_code == 2 and "'true' was read as RUN_DIR" in flag_first.output
    assert table_labels(result.output) == [p.label for p in Classifier.from_run(finished_run).predict(texts)]

    src = tmp_path / "in.csv"
    src.write_text("id,text\n1,goal match team\n2,\"software, chip\"\n", encoding="utf-8")
    assert invoke("predict", finished_run, "--input", src, "--output", tmp_path / "out.csv").exit_code == 0
    rows = list(csv.DictReader((tmp_path / "out.csv").open(encoding="utf-8")))
    assert [list(r) for r in rows] == [["id", "pred_label", "pred_score"]] * 2  # the id, not the text
    assert [r["id"] for r in rows] == ["1", "2"]
    want = Classifier.from_run(finished_run).predict(["goal match team", "software, chip"])
    assert [r["pred_label"] for r in rows] == [p.label for p in want]
    assert invoke("predict", finished_run, "-i", src, "-o", tmp_path / "p.csv", "--probabilities").exit_code == 0
    rows = list(csv.DictReader((tmp_path / "p.csv").open(encoding="utf-8")))
    assert {"pred_prob_politics", "pred_prob_sport", "pred_prob_tech"} <= set(rows[0])
    assert abs(sum(float(rows[0][f"pred_prob_{n}"]) for n in ("politics", "sport", "tech")) - 1) < 1e-4

    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "goal match", "k": 1}\n{"text": "vote law"}\n', encoding="utf-8")
    assert invoke("predict", finished_run, "-i", src, "-o", tmp_path / "out.jsonl", "--probabilities",
                  "--keep-columns").exit_code == 0
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert out[0]["k"] == 1 and set(out[0]["pred_probabilities"]) == {"politics", "sport", "tech"}
    assert invoke("predict", finished_run, "-i", src, "-o", tmp_path / "rows.jsonl").exit_code == 0
    out = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [o["row"] for o in out] == [1, 2] and set(out[0]) == {"row", "pred_label", "pred_score"}


def test_evaluate_run_and_pretrained_model(finished_run, tiny_bert, class_folder, tmp_path):
    out = tmp_path / "m.json"
    result = invoke("evaluate", finished_run, "--data", class_folder, "--output", out)
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["n"] == 60 and metrics["target_kind"] == "run"
    # The run was trained on this corpus: the texts of its training and validation splits are counted and named
    # in a warning, as the metrics overstate the model on new text (its test split's are not counted).
    labels = json.loads((finished_run / "labels.json").read_text())["counts"]
    seen = metrics["seen_in_training"]
    want = {split: sum(labels[split].values()) for split in ("train", "validation")}
    assert seen == want | {"any": sum(want.values())}, (seen, labels)
    assert f"{seen['any']} of its 60 texts were seen by the run" in result.output
    result = invoke("evaluate", tiny_bert, "--data", class_folder, "-o", out)  # an earlier evaluate's: replaced
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["target_kind"].startswith("pretrained")
    # label names of another kind of head (a NER checkpoint's) are not the classes: a new head, as before
    import shutil

    ner = shutil.copytree(tiny_bert, tmp_path / "ner")
    config = json.loads((ner / "config.json").read_text())
    config.update(architectures=["BertForTokenClassification"], id2label={"0": "O", "1": "B-PER"})
    (ner / "config.json").write_text(json.dumps(config))
    result = invoke("evaluate", ner, "--data", class_folder, "-o", out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["target_kind"].startswith("pretrained")
    keep = tmp_path / "keep.json"  # a file of the user's: kept unless --overwrite
    keep.write_text('{"mine": 1}')
    result = invoke("evaluate", finished_run, "--data", class_folder, "-o", keep)
    assert result.exit_code == 2 and "exists; pass --overwrite" in result.output and "mine" in keep.read_text()
    assert invoke("evaluate", finished_run, "--data", class_folder, "-o", keep, "--overwrite").exit_code == 0
    assert json.loads(keep.read_text())["n"] == 60
    # A separator would be ignored by a single-label run ("a|b" read as one unknown label): one line instead.
    result = invoke("evaluate", finished_run, "--data", class_folder, "--label-separator", "|")
    assert result.exit_code != 0 and "--label-separator is for multi-label models" in result.output
    assert "Traceback" not in result.output
    # --labels and --max-length shape a bare model's head and input; a run would silently ignore them
    result = invoke("evaluate", finished_run, "--data", class_folder, "--max-length", "16")
    assert result.exit_code == 2 and "--max-length: for a model name or path only" in result.output
    result = invoke("evaluate", tiny_bert, "--data", class_folder, "--labels", "sport,sport,tech")
    assert result.exit_code == 2 and "--labels names 'sport' more than once" in result.output
    (tmp_path / "odd" / "adapter").mkdir(parents=True)
    result = invoke("evaluate", tmp_path / "odd", "--data", class_folder)
    assert result.exit_code == 2 and "neither a lightft run directory" in result.output
    # A mistyped run directory is named before the data is read (not a tokenizer or column error later)
    result = invoke("evaluate", tmp_path / "runs" / "tickts", "--data", tmp_path / "no-data.csv")
    assert result.exit_code == 2 and f"run directory or model folder not found: {tmp_path}" in result.output
    result = invoke("evaluate", "no-such-owner-x/tickts", "--data", tmp_path / "no-data.csv")
    assert result.exit_code == 2 and "no run directory or model folder 'no-such-owner-x/tickts' here, and cannot " \
        "load" in result.output and "Traceback" not in result.output


def test_evaluate_reads_a_runs_own_columns(finished_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    saved = (run / "config.yaml").read_text(encoding="utf-8")
    (run / "config.yaml").write_text(saved.replace("text_column: text\n", "text_column: body\n"), encoding="utf-8")
    names = json.loads((run / "labels.json").read_text())["labels"]
    rows = [("goal match team", names[0]), ("tax vote law", names[1]), ("chip phone data", names[-1])]
    renamed, usual = tmp_path / "renamed.csv", tmp_path / "usual.csv"
    renamed.write_text("body,label\n" + "".join(f"{t},{y}\n" for t, y in rows), encoding="utf-8")
    usual.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows), encoding="utf-8")
    for data in (renamed, usual):  # the run's column where the data has it, else the usual 'text'
        result = invoke("evaluate", run, "--data", data, "-o", tmp_path / "m.json")
        assert result.exit_code == 0, result.output
        metrics = json.loads((tmp_path / "m.json").read_text())
        assert metrics["n"] == 3 and "seen_in_training" not in metrics  # texts the run never saw: no warning
        assert "were seen by the run" not in result.output
    result = invoke("evaluate", run, "--data", renamed, "--text-column", "nope")
    assert result.exit_code == 2 and "no text column 'nope'" in result.output


@pytest.mark.slow
def test_compare_and_train(finished_run, tiny_bert, class_folder, tmp_path):
    cfg = write_config(tmp_path, tiny_run_config(tiny_bert, class_folder, tmp_path / "full", method="full",
                                                 name="tiny-full"))
    result = invoke("train", cfg)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "full/metrics/baseline.json").exists()
    assert_one = invoke("sweep", cfg, "--methods", "lora,ia3,lora")
    assert assert_one.exit_code == 2 and "--methods names lora more than once" in assert_one.output
    result = invoke("compare", finished_run, tmp_path / "full", "--output", tmp_path / "cmp.md")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "cmp.md").read_text()
    assert "tiny-full" in text and "| tiny |" in text and "lora" in text
    assert "not tested on the same texts" not in result.output + text  # same data, split and labels
    # two runs of one config are told apart by their folders
    result = invoke("compare", finished_run, finished_run, "--output", tmp_path / "same.md")
    assert result.exit_code == 0, result.output
    assert f"| tiny ({finished_run.name}) |" in (tmp_path / "same.md").read_text()
    assert (tmp_path / "cmp.png").is_file() and "data:image/png" in (tmp_path / "cmp.html").read_text()
    import shutil  # the same data split with another seed: other test texts, and compare says so

    shutil.copytree(finished_run, tmp_path / "reseeded")
    config = (tmp_path / "reseeded" / "config.yaml").read_text()
    assert "\nseed: 7\n" in config
    (tmp_path / "reseeded" / "config.yaml").write_text(config.replace("\nseed: 7\n", "\nseed: 8\n"))
    result = invoke("compare", finished_run, tmp_path / "reseeded")
    assert result.exit_code == 0 and "not tested on the same texts (split seed: 7 vs 8)" in result.output


def test_compare_never_replaces_a_file_without_overwrite(finished_run, tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("text,label\nhello,a\n")
    result = invoke("compare", finished_run, "-o", data)
    assert_user_error(result, "data.csv already exists; pass --overwrite")
    assert data.read_text() == "text,label\nhello,a\n" and not data.with_suffix(".html").exists()
    (tmp_path / "cmp.png").write_bytes(b"not a plot")  # a twin that exists is refused too
    assert_user_error(invoke("compare", finished_run, "-o", tmp_path / "cmp.md"), "cmp.png already exists")
    result = invoke("compare", finished_run, "-o", tmp_path / "cmp.md", "--overwrite")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cmp.png").read_bytes().startswith(b"\x89PNG") and (tmp_path / "cmp.md").is_file()


def test_compare_names_differences_run_by_run(finished_run, tmp_path):
    import json
    import shutil

    shutil.copytree(finished_run, tmp_path / "other")
    summary = json.loads((tmp_path / "other" / "summary.json").read_text())
    ours = summary["test_samples"]
    summary |= {"data_name": "zzz-other", "test_samples": ours + 1000}
    (tmp_path / "other" / "summary.json").write_text(json.dumps(summary))
    result = invoke("compare", tmp_path / "other", finished_run)  # the other run first: its values come first
    original = json.loads((finished_run / "summary.json").read_text())["data_name"]
    assert f"data: zzz-other vs {original}; test texts: {ours + 1000} vs {ours}" in result.output


def assert_user_error(result, needle):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    err = result.stderr.strip().splitlines()
    assert err[-1].startswith("error:") and needle in err[-1], err


def test_user_errors_are_one_line(tiny_bert, class_folder, tmp_path):
    cfg = write_config(tmp_path, tiny_run_config(tiny_bert, class_folder, tmp_path / "r"))
    assert_user_error(invoke("run", cfg, "train.epoch=3"), "train.epoch")
    assert_user_error(invoke("run", tmp_path / "nope.yaml"), "not found")
    assert_user_error(invoke("run", cfg, "data.source=/nonexistent/data"), "/nonexistent/data")
    assert_user_error(invoke("run", cfg, "model.name=" + str(class_folder)), "holds no config.json")
    assert_user_error(invoke("run", cfg, "model.name=" + str(tmp_path / "no" / "model")), "no such folder")
    assert_user_error(invoke("predict", tmp_path / "nowhere", "text"), "not found")
    assert_user_error(invoke("compare", tmp_path), "not a lightft run")


def test_failed_run_is_never_complete(tiny_bert, class_folder, tmp_path):
    cfg = write_config(tmp_path, tiny_run_config(tiny_bert, class_folder, tmp_path / "bad"))
    # A model folder that is not a model is refused before the folder is touched; a failure during the run
    # (here: LoRA targets that do not exist) leaves a run marked failed.
    result = invoke("run", cfg, "model.name=" + str(class_folder))
    assert result.exit_code == 2 and not (tmp_path / "bad").exists()
    result = invoke("run", cfg, "peft.target_modules=[nope]")
    assert result.exit_code == 2
    marker = json.loads((tmp_path / "bad/run.json").read_text())
    assert marker["status"] == "failed" and "cannot be applied" in marker["reason"]
    assert not (tmp_path / "bad/summary.json").exists()
    assert_user_error(invoke("predict", tmp_path / "bad", "goal"), "incomplete run")
    assert_user_error(invoke("compare", tmp_path / "bad"), "incomplete run")


def test_help_explains_every_verb():
    result = invoke("--help")
    for verb in ["run", "train", "evaluate", "predict", "compare", "sweep", "tune", "curve", "export", "serve", "push"]:
        assert verb in result.output
    assert "key.sub=value" in invoke("run", "--help").output


def test_training_verbs_take_the_model_trust_flags(tiny_bert, class_folder, tmp_path):
    """--trust-remote-code / --allow-pickle on the verbs that load a model by config are the model.* keys they
    stand for (and so are repeated in a resume hint)."""
    from lightft.cli import _load

    cfg_path = write_config(tmp_path, tiny_run_config(tiny_bert, class_folder, tmp_path / "run"))
    cfg, every = _load(cfg_path, ["train.epochs=1"], allow_pickle=False, trust_remote_code=True)
    assert cfg.model.trust_remote_code and not cfg.model.allow_pickle and cfg.train.epochs == 1
    assert every == ["train.epochs=1", "model.trust_remote_code=true"]
    assert not _load(cfg_path, None)[0].model.trust_remote_code
    for verb in ["run", "train", "sweep", "tune", "curve"]:
        shown = invoke(verb, "--help").output
        assert "--trust-remote-code" in shown and "--allow-pickle" in shown, verb


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_keeping_its_finished_methods(tiny_bert, class_folder, tmp_path, monkeypatch):
    """Ctrl-C while the second method trains: --resume keeps the first (its row, adapter and metrics as written)
    and trains the second; without --resume the folder is refused instead of emptied."""
    from lightft import experiment

    cfg = write_config(tmp_path, tiny_run_config(tiny_bert, class_folder, tmp_path / "unused", name="sw",
                                                 **{"train.epochs": 1, "evaluation.bootstrap_resamples": 0}))
    out, real, trained = tmp_path / "sweep", experiment.finetune, []

    def interrupted_lora(mcfg, *a, **k):
        trained.append(mcfg.method)
        if mcfg.method == "lora" and len(trained) == 2:
            raise KeyboardInterrupt
        return real(mcfg, *a, **k)

    monkeypatch.setattr(experiment, "finetune", interrupted_lora)
    result = invoke("sweep", cfg, "--methods", "head,lora", "-o", out)
    assert result.exit_code == 130 and f"--methods head,lora --resume {out}" in result.output, result.output
    head_row = json.loads((out / "leaderboard.json").read_text())["methods"]
    assert [r["method"] for r in head_row] == ["head"]
    assert_user_error(invoke("sweep", cfg, "--methods", "head,lora", "-o", out), "--resume")
    trained.clear()
    (out / "methods/ia3").mkdir()  # a kill's leftover of a method the resumed sweep does not name
    (out / "methods/loha").mkdir()  # finished, but its summary.json is damaged: never deleted
    (out / "methods/loha/run.json").write_text('{"status": "complete"}')
    (out / "methods/loha/summary.json").write_text("{")
    result = invoke("sweep", cfg, "--methods", "lora", "--resume", out)  # head is finished work: kept all the same
    assert result.exit_code == 0, result.output
    assert trained == ["lora"] and "head finished in the earlier sweep" in result.output
    assert sorted(p.name for p in (out / "methods").iterdir()) == ["head", "loha", "lora"]
    rows = json.loads((out / "leaderboard.json").read_text())["methods"]
    assert rows[0] == head_row[0] and rows[1]["method"] == "lora" and rows[1]["status"] == "ok"
    assert (out / "methods/lora/metrics/finetuned.json").is_file()
    assert "| head |" in (out / "leaderboard.md").read_text()
    # each method's folder is a run that predict, evaluate, export and serve load
    result_of_predict = invoke("predict", out / "methods/lora", "goal match team").output
    assert len(table_labels(result_of_predict)) == 1, result_of_predict
    result = invoke("evaluate", out / "methods/head", "--data", class_folder, "-o", tmp_path / "m.json")
    assert result.exit_code == 0 and "were seen by the run" in result.output, result.output
    result = invoke("export", out / "methods/lora", "--merged", tmp_path / "merged")
    assert result.exit_code == 0, result.output
    from lightft.serve import AdapterServer

    served = AdapterServer({"lora": out / "methods/lora"}, precision="fp32").predictor("lora")
    assert [p.label for p in served.predict(["goal match team"])] == table_labels(result_of_predict)
    assert_user_error(invoke("sweep", cfg, "--methods", "head,lora", "--resume", out), "already complete")


@pytest.mark.slow
def test_sweep_writes_leaderboard_and_reports_failures(tiny_bert, class_folder, tmp_path):
    cfg = write_config(tmp_path, tiny_run_config(tiny_bert, class_folder, tmp_path / "unused", name="sw",
                                                 **{"train.epochs": 1, "evaluation.bootstrap_resamples": 50}))
    methods = "lora,dora,rslora,adalora,ia3,loha,lokr,vera,prompt_tuning,prefix_tuning,full,head"
    result = invoke("sweep", cfg, "--methods", methods, "-o", tmp_path / "sweep", "peft.target_modules=[nope]")
    assert result.exit_code == 0, result.output
    board = json.loads((tmp_path / "sweep/leaderboard.json").read_text())
    rows = {r["method"]: r for r in board["methods"]}
    assert list(rows) == methods.split(",")
    # LoRA-family methods inherit the bad target_modules from the config and fail with a reason; the rest run.
    assert rows["lora"]["status"] == "failed" and "No modules were targeted" in rows["lora"]["reason"]
    # transformers 5 dropped BERT's past-key-values path, which prefix tuning needs: reported, not fatal.
    assert rows["prefix_tuning"]["status"] == "ok" or "past key values" in rows["prefix_tuning"]["reason"]
    for m in ["adalora", "ia3", "loha", "lokr", "vera", "prompt_tuning", "full", "head"]:
        assert rows[m]["status"] == "ok", (m, rows[m])
        assert rows[m]["adapter_bytes"] > 0 and rows[m]["docs_per_second"] > 0 and 0 <= rows[m]["accuracy"] <= 1
    assert rows["head"]["trainable_params"] < rows["lora"].get("trainable_params", 10**9)
    board = (tmp_path / "sweep/leaderboard.md").read_text()
    assert (tmp_path / "sweep/pareto.png").is_file() and "## Failed" in board
    assert "| head |" in board and " MB (whole model) |" in board.split("| head |")[1].splitlines()[0]
    assert " MB (whole model) |" not in board.split("| ia3 |")[1].splitlines()[0]
    assert json.loads((tmp_path / "sweep/run.json").read_text())["status"] == "complete"


def test_a_sweep_where_no_method_trains_fails_in_one_line(tiny_bert, class_folder, tmp_path):
    from test_hostile import assert_one_line

    cfg = write_config(tmp_path, tiny_run_config(tiny_bert, class_folder, tmp_path / "unused", name="sw",
                                                 **{"train.epochs": 1, "evaluation.bootstrap_resamples": 0}))
    result = invoke("sweep", cfg, "--methods", "lora", "-o", tmp_path / "sweep", "peft.target_modules=[nope]")
    assert_one_line(result, "no method trained (lora: ")
    board = (tmp_path / "sweep/leaderboard.md").read_text()
    assert "## Failed" in board and "pareto.png" not in board  # no plot was drawn, none is linked
    assert json.loads((tmp_path / "sweep/run.json").read_text())["status"] == "failed"
    assert_one_line(invoke("sweep", cfg, "--methods", ",", "-o", tmp_path / "none"), "names no method")


@pytest.mark.slow
def test_two_runs_with_different_precision_in_one_process(tiny_bert, class_folder, tmp_path):
    for precision in ("fp32", "bf16"):
        cfg = write_config(tmp_path, tiny_run_config(tiny_bert, class_folder, tmp_path / precision, name=precision,
                                                     **{"train.precision": precision, "train.epochs": 1}))
        result = invoke("train", cfg)
        assert result.exit_code == 0, result.output


def test_commands_tokenize_on_every_core_unless_told_otherwise(monkeypatch):
    """A lightft command lets fast tokenizers use every core (on an H100's 16-core host, one thread made predict
    3.95x slower, bench/README.md); a user's own TOKENIZERS_PARALLELISM is kept."""
    import os

    from lightft.cli import _setup_logging

    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    _setup_logging()
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true"
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    _setup_logging()
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"


def test_library_warnings_are_not_labelled_as_lightfts():
    import logging

    from lightft.cli import _SourceFormatter

    def line(name: str, path: str = "/x/y.py") -> str:
        record = logging.LogRecord(name, logging.WARNING, path, 1, "a note", None, None)
        return _SourceFormatter("%(message)s").format(record)

    assert line("lightft") == "lightft: a note" and line("lightft.data") == "lightft: a note"
    assert line("accelerate.utils.other") == "accelerate.utils.other (warning): a note"
    onnx = "/venv/lib/python3.11/site-packages/onnxruntime/quantization/quantize.py"  # logging.warning(...) on root
    assert line("root", onnx) == "onnxruntime (warning): a note" and line("root") == "y (warning): a note"
    assert line("root", "/usr/lib/python3/dist-packages/onnxruntime/q.py") == "onnxruntime (warning): a note"
