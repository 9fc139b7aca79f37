"""A run killed mid-epoch (SIGKILL) or stopped with Ctrl-C resumes and ends exactly like an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors import safe_open

from conftest import invoke, tiny_run_config, write_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tiny_bert, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    from conftest import make_texts

    data = tmp / "data.csv"
    data.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in make_texts(350, seed=3)), encoding="utf-8")
    overrides = {"train.epochs": 2, "train.batch_size": 8, "train.checkpoint_every": 10,
                 "data.test_size": 60, "data.validation_size": 30, "evaluation.bootstrap_resamples": 0}
    configs = {}
    for name in ("straight", "killed", "ctrlc"):
        cfg = tiny_run_config(tiny_bert, data, tmp / name, name=name, **overrides)
        configs[name] = write_config(tmp, cfg)
    assert invoke("train", configs["straight"]).exit_code == 0
    return tmp, configs


def start(cfg: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lightft", "train", str(cfg)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TQDM_DISABLE": "1"})


def wait_for_mid_epoch_checkpoint(run: Path, proc: subprocess.Popen, min_step: int = 20) -> dict:
    state_file = run / "checkpoint" / "trainer_state.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        assert proc.poll() is None, "training ended before it could be interrupted"
        try:
            state = json.loads(state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            state = None
        if state and state["step"] >= min_step and state["epoch"] == 1:
            return state
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


def same_result(a: Path, b: Path) -> None:
    ma, mb = (json.loads((r / "metrics/finetuned.json").read_text()) for r in (a, b))
    assert ma["accuracy"] == mb["accuracy"] and ma["confusion_matrix"] == mb["confusion_matrix"]
    ta, tb = (json.loads((r / "training.json").read_text()) for r in (a, b))
    assert [e["val_accuracy"] for e in ta["epochs"]] == [e["val_accuracy"] for e in tb["epochs"]]
    assert [round(s["loss"], 6) for s in ta["steps"]] == [round(s["loss"], 6) for s in tb["steps"]]
    assert json.loads((b / "run.json").read_text())["status"] == "complete"
    assert not (b / "checkpoint").exists()


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume(setup):
    tmp, configs = setup
    proc = start(configs["killed"])
    wait_for_mid_epoch_checkpoint(tmp / "killed", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((tmp / "killed/run.json").read_text())["status"] == "running"  # it never got to say
    with safe_open(str(tmp / "killed/checkpoint/model.safetensors"), "pt") as f:  # trained weights only
        assert all("lora_" in k or "modules_to_save" in k for k in f.keys()) and len(f.keys()) > 0
    assert invoke("predict", tmp / "killed", "goal").exit_code == 2  # refused: not complete
    before = json.loads((tmp / "killed/checkpoint/trainer_state.json").read_text())["elapsed_seconds"]
    result = invoke("train", configs["killed"], "--resume", tmp / "killed")
    assert result.exit_code == 0, result.output
    assert "states loaded" not in result.output + result.stderr and "weights loaded" not in result.output
    same_result(tmp / "straight", tmp / "killed")
    summary = json.loads((tmp / "killed/summary.json").read_text())  # the whole run counts the killed process's
    assert summary["total_seconds"] >= summary["train_seconds"] > 0  # training too
    training = json.loads((tmp / "killed/training.json").read_text())
    assert training["resumed_seconds"] == pytest.approx(before) and before > 0  # counted in total_seconds
    assert summary["total_seconds"] - before >= summary["phases"]["training"]


@pytest.mark.slow
def test_ctrl_c_checkpoints_and_says_how_to_resume(setup):
    tmp, configs = setup
    proc = start(configs["ctrlc"])
    wait_for_mid_epoch_checkpoint(tmp / "ctrlc", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert "Resume with: lightft train" in last and "--resume" in last and "Traceback" not in err
    assert json.loads((tmp / "ctrlc/run.json").read_text())["status"] == "interrupted"
    result = invoke("train", configs["ctrlc"], "--resume", tmp / "ctrlc")
    assert result.exit_code == 0, result.output
    same_result(tmp / "straight", tmp / "ctrlc")


def test_resume_refuses_a_different_config(setup, tmp_path):
    import shutil

    tmp, configs = setup
    result = invoke("train", configs["straight"], "--resume", tmp / "straight")
    assert result.exit_code == 2 and "already complete" in result.output
    stopped = tmp_path / "stopped"  # the same run, as if it had been interrupted
    shutil.copytree(tmp / "straight", stopped)
    marker = json.loads((stopped / "run.json").read_text())
    (stopped / "run.json").write_text(json.dumps(marker | {"status": "interrupted"}))
    result = invoke("train", configs["straight"], "train.epochs=5", "--resume", stopped)
    assert result.exit_code == 2
    assert "train.epochs: " in result.output and "-> 5" in result.output  # names what differs
    result = invoke("train", configs["straight"], "--resume", stopped, "-o", tmp_path / "elsewhere")
    assert result.exit_code == 2 and "names another" in result.output
    # the same config on other data (a file edited between the interruption and --resume): refused
    labels = json.loads((stopped / "labels.json").read_text())
    assert len(labels["data_fingerprint"]) == 16
    (stopped / "labels.json").write_text(json.dumps(labels | {"data_fingerprint": "0" * 16}))
    result = invoke("train", configs["straight"], "--resume", stopped)
    assert result.exit_code == 2 and "the data differs from what it was started on" in result.output
    # a folder written before the fingerprint: its recorded training texts are compared
    (stopped / "labels.json").write_text(json.dumps({k: v for k, v in labels.items() if k != "data_fingerprint"}))
    seen = json.loads((stopped / "seen_texts.json").read_text())
    (stopped / "seen_texts.json").write_text(json.dumps(seen | {"train": seen["train"][1:]}))
    result = invoke("train", configs["straight"], "--resume", stopped)
    assert result.exit_code == 2 and "the data differs" in result.output
    for command, needle in (("sweep", "written by lightft sweep, not train"),
                            ("run", "written by lightft run, not train")):  # run's baselines would be lost
        marker["command"] = command
        (stopped / "run.json").write_text(json.dumps(marker | {"status": "interrupted"}))
        result = invoke("train", configs["straight"], "--resume", stopped)
        assert result.exit_code == 2 and needle in result.output
