"""`accelerate launch --multi_gpu --num_processes 2 -m lightft train` trains with DDP (gloo) on a CPU machine.

With Accelerate 1.x, `--cpu --num_processes 2` starts a single process unless an MPI hostfile is configured;
`--multi_gpu` goes through torchrun, and on a machine without CUDA each process runs on the CPU with gloo.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_run_config, write_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_process_ddp_writes_one_complete_run(tiny_bert, class_folder, tmp_path):
    cfg = write_config(tmp_path, tiny_run_config(tiny_bert, class_folder, tmp_path / "ddp",
                                                 **{"train.epochs": 2, "evaluation.bootstrap_resamples": 0}))
    launcher = Path(sys.executable).parent / "accelerate"
    proc = subprocess.run(
        [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
         "no", "--dynamo_backend", "no", "-m", "lightft", "train", str(cfg)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env={"TQDM_DISABLE": "1", **os.environ},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [p.parent for p in tmp_path.rglob("run.json")] == [tmp_path / "ddp"]  # one run, by the main process
    assert json.loads((tmp_path / "ddp/run.json").read_text())["status"] == "complete"
    summary = json.loads((tmp_path / "ddp/summary.json").read_text())
    assert summary["train_samples"] == 39
    assert json.loads((tmp_path / "ddp/training.json").read_text())["num_processes"] == 2
    env = json.loads((tmp_path / "ddp/environment.json").read_text())
    assert env["packages"]["accelerate"]

    import numpy as np

    from lightft.config import load_run_config
    from lightft.data import load_splits
    from lightft.predict import Classifier

    # the saved adapter is the model that was scored: reloading it reproduces the test accuracy, which is
    # well above chance (3 classes)
    cfg = load_run_config(tmp_path / "ddp")
    test = load_splits(cfg.data, cfg.seed).test
    probs = Classifier.from_run(tmp_path / "ddp", precision="fp32").predict_proba(test.texts)
    accuracy = float((probs.argmax(1) == np.asarray(test.labels)).mean())
    assert accuracy == pytest.approx(summary["finetuned"]["accuracy"])
    assert accuracy > 0.5, accuracy
