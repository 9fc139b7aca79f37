"""`lightft tune` (issue 15, part 2): an Optuna study scored on validation only, pruned, resumable, whose best
config `lightft run` takes as is."""

import csv
import json

import pytest
import yaml
from test_hostile import assert_one_line

from conftest import invoke, tiny_run_config, write_config

SPACE = {"train.learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}, "peft.r": {"choices": [2, 4]},
         "train.epochs": {"low": 1, "high": 2}}


def tune_config(tiny_bert, class_folder, tmp_path, **extra):
    cfg = tiny_run_config(tiny_bert, class_folder, tmp_path / "run", **{"tune.space": SPACE,
                                                                        "tune.startup_trials": 1, **extra})
    return write_config(tmp_path, cfg)


@pytest.mark.slow
def test_a_three_trial_study_runs_resumes_and_its_best_config_runs(tiny_bert, class_folder, tmp_path, monkeypatch):
    import optuna

    cfg = tune_config(tiny_bert, class_folder, tmp_path)
    out = tmp_path / "study"
    result = invoke("tune", cfg, "--trials", "2", "-o", out)
    assert result.exit_code == 0, result.output
    first = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["trial"] for r in first] == ["0", "1"]
    assert {"train.learning_rate", "peft.r", "train.epochs", "value", "state"} <= set(first[0])

    # another config in the same folder would mix its trials into this study's best.yaml: refused, named
    assert_one_line(invoke("tune", cfg, "train.batch_size=4", "--trials", "3", "-o", out),
                    "holds a study of another config (train.batch_size: ")
    result = invoke("tune", cfg, "--trials", "3", "-o", out)  # the same study, one more trial
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == 3 and rows[:2] == first  # earlier trials kept as they were
    finished = [r for r in rows if r["state"] in ("complete", "pruned")]
    assert len(finished) == 3
    for name in ("trials.md", "trials.html", "trials.png", "best.yaml", "tune.json", "study.db"):
        assert (out / name).is_file(), name

    with monkeypatch.context() as m:  # a complete study is not tokenised again, only reported
        m.setattr("lightft.experiment.prepare", lambda *a, **k: pytest.fail("prepare called"))
        result = invoke("tune", cfg, "--trials", "3", "-o", out)
        assert result.exit_code == 0 and "already has 3 finished trials" in result.output, result.output

    summary = json.loads((out / "tune.json").read_text())
    best = summary["best"]
    assert best["value"] == best["val_macro_f1"]  # tune.metric at the epoch training kept
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}")
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):  # the last report is the value
        assert trial.intermediate_values[max(trial.intermediate_values)] == trial.value
    assert best["value"] == max(float(r["value"]) for r in rows if r["state"] == "complete")
    assert 0 <= best["tie_break"] <= 1  # the other validation metric at the epoch that gave the value
    assert "test" not in json.dumps(summary)  # validation only: nothing of the test split is read here
    assert not (out / "metrics").exists() and not (out / "summary.json").exists()

    tuned = yaml.safe_load((out / "best.yaml").read_text())
    assert tuned["train"]["learning_rate"] == pytest.approx(best["params"]["train.learning_rate"])
    assert tuned["peft"]["r"] == best["params"]["peft.r"] and tuned["train"]["epochs"] == best["params"]["train.epochs"]
    tuned["output_dir"] = str(tmp_path / "best-run")
    (tmp_path / "best.yaml").write_text(yaml.safe_dump(tuned))
    result = invoke("run", tmp_path / "best.yaml", "baselines.zero_shot=false", "evaluation.bootstrap_resamples=0")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "best-run/run.json").read_text())["status"] == "complete"


def test_an_interrupted_trial_runs_again(tiny_bert, class_folder, tmp_path):
    import optuna

    from lightft.config import load_config
    from lightft.tune import open_study

    cfg = load_config(tune_config(tiny_bert, class_folder, tmp_path))
    (tmp_path / "study").mkdir()
    study = open_study(cfg, tmp_path / "study")
    dead = study.ask()  # a trial whose process died: RUNNING for ever
    dead.suggest_float("train.learning_rate", 1e-3, 1e-2, log=True)
    again = open_study(cfg, tmp_path / "study")
    states = [t.state for t in again.get_trials(deepcopy=False)]
    assert states[0] == optuna.trial.TrialState.FAIL and states[1] == optuna.trial.TrialState.WAITING
    retry = again.ask()  # the queued trial comes next, with the dead trial's values
    assert retry.suggest_float("train.learning_rate", 1e-3, 1e-2, log=True) == dead.params["train.learning_rate"]
    from lightft.tune import KILLED_NOTE, trial_rows

    assert trial_rows(again)[0]["note"] == KILLED_NOTE  # trials.md says why it failed


def test_a_continued_study_draws_new_values_the_same_for_the_same_history(tmp_path):
    """Each `lightft tune` process opens the study afresh: a sampler seeded by `seed` alone replayed the first
    process's random draws, so extending a study re-ran the trials it had."""
    import shutil

    from lightft.config import Config
    from lightft.tune import open_study

    cfg = Config(name="t")
    cfg.data.source = "x"
    first, copy = tmp_path / "first", tmp_path / "copy"
    first.mkdir()

    def draw(study):
        trial = study.ask()
        value = trial.suggest_float("train.learning_rate", 1e-4, 1e-2, log=True)
        study.tell(trial, 0.5)
        return value

    drawn = [draw(open_study(cfg, first))]
    shutil.copytree(first, copy)
    drawn.append(draw(open_study(cfg, first)))  # a second process extends the study
    assert drawn[1] != drawn[0]
    assert draw(open_study(cfg, copy)) == drawn[1]  # the same history draws the same


def test_a_trial_cut_off_by_ctrl_c_says_so_shows_no_value_and_runs_again(tmp_path, monkeypatch):
    """trials.md showed such a trial as `| 0 | fail | 0.7121 | ...` with no note: a score from the epochs before the
    cut, as if its result, and Optuna's failed state kept it from the run again that the interrupted tune promises."""
    import optuna

    from lightft.config import Config
    from lightft.tune import _trial, _write_reports, open_study

    def finetune(cfg, prep, log_dir, on_epoch):
        record = {"epoch": 1, "val_accuracy": 0.8, "val_macro_f1": 0.7121}
        on_epoch(record, record)
        raise KeyboardInterrupt

    monkeypatch.setattr("lightft.experiment.finetune", finetune)
    cfg = Config(name="t")
    cfg.data.source = "x"
    cfg.model.name = "tiny"
    study = open_study(cfg, tmp_path)
    space = {"train.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}}
    with pytest.raises(KeyboardInterrupt):
        study.optimize(lambda t: _trial(cfg, None, t, space), n_trials=1, catch=(Exception,))
    _write_reports(cfg, study, tmp_path)
    cut = next(r for r in csv.DictReader((tmp_path / "trials.csv").open()) if r["trial"] == "0")
    assert cut["state"] == "fail" and cut["value"] == "" and cut["note"].startswith("interrupted (Ctrl-C)")
    row = next(line for line in (tmp_path / "trials.md").read_text().splitlines() if line.startswith("| 0 |"))
    assert "0.7121" not in row and "interrupted (Ctrl-C)" in row
    again = open_study(cfg, tmp_path)  # the next `lightft tune` runs the cut trial's values first
    assert [t.state for t in again.trials] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING]
    retry = again.ask()
    assert retry.suggest_float("train.learning_rate", 1e-4, 1e-2, log=True) == again.trials[0].params[
        "train.learning_rate"]


def test_a_pruned_trial_stops_training(tiny_bert, class_folder, tmp_path):
    import optuna

    from lightft.tune import epoch_reporter

    class Trial:
        reported: list = []

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return len(self.reported) >= 2

        def set_user_attr(self, key, value):
            setattr(self, key, value)

    trial = Trial()
    report = epoch_reporter(trial, "macro_f1")
    first = {"epoch": 1, "val_accuracy": 0.8, "val_macro_f1": 0.5}
    report(first, first)
    # epoch 2 scores a higher macro-F1 but training keeps epoch 1 (train.select_metric: accuracy): the trial's
    # value so far is still epoch 1's
    with pytest.raises(optuna.TrialPruned, match=r"epoch 2: validation macro_f1 0.5000 \(epoch 1, the one kept\)"):
        report({"epoch": 2, "val_accuracy": 0.7, "val_macro_f1": 0.6}, first)
    assert trial.reported == [(1, 0.5), (2, 0.5)] and trial.best_epoch == 1


def test_a_trials_value_is_its_kept_epochs_metric(monkeypatch):
    """The value is tune.metric at the epoch training keeps (train.select_metric's pick, the model `lightft run
    best.yaml` keeps), not the highest tune.metric of any epoch."""
    from types import SimpleNamespace

    import optuna

    from lightft.config import Config
    from lightft.tune import _trial

    epochs = [{"epoch": 0, "val_accuracy": 0.5, "val_macro_f1": 0.4},
              {"epoch": 1, "val_accuracy": 0.9, "val_macro_f1": 0.6},  # kept: the best accuracy
              {"epoch": 2, "val_accuracy": 0.8, "val_macro_f1": 0.7}]  # the best macro-F1, not kept
    monkeypatch.setattr("lightft.experiment.finetune", lambda *a, **k: (None, SimpleNamespace(
        epochs=epochs, best_epoch=1), 0, 0))
    cfg = Config()
    cfg.data.source = "x"
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda t: _trial(cfg, None, t, {"train.epochs": {"low": 2, "high": 2}}), n_trials=1)
    (trial,) = study.trials
    assert trial.value == 0.6 and trial.user_attrs["best_epoch"] == 1
    assert trial.user_attrs["val_macro_f1"] == 0.6 and trial.user_attrs["tie_break"] == 0.9


@pytest.mark.parametrize("space,needle", [
    ({"train.lr": {"low": 1e-4, "high": 1e-3}}, "unknown config key 'train.lr'"),
    ({"data.train_samples": {"low": 10, "high": 20}}, "leave the tokenised data unchanged"),
    ({"model.max_length": {"choices": [16, 32]}}, "leave the tokenised data unchanged"),
    ({"train.learning_rate": {"low": 1e-2, "high": 1e-4}}, "low <= high"),
    ({"train.learning_rate": {"low": 0, "high": 1e-3, "log": True}}, "log scale needs low > 0"),
    ({"peft.r": {"choices": []}}, "non-empty list"),
    ({"peft.r": [4, 8]}, "must be a mapping"),
    ({"train.epochs": {"low": 1, "high": 3, "sigma": 2}}, "unknown key 'sigma'"),
    ({"train.epochs": {"choices": [1, 0]}}, "train.epochs"),
    ({"train.epochs": {"low": 1, "high": 3, "step": 0}}, "tune.space.train.epochs: step must be a number above 0"),
    ({"train.epochs": {"low": 1, "high": 3, "step": -1}}, "step must be a number above 0, got -1"),
    ({"train.learning_rate": {"low": 1e-4, "high": 1e-3, "log": True, "step": 1e-4}}, "step and log: true"),
    ({"peft.r": {"choices": [0, 4]}}, "peft.r must be at least 1"),  # LoraConfig takes 0; wrapping the model not
    ({"model.config_overrides.hiden_dropout_prob": {"low": 0.0, "high": 0.2}}, "no such key"),
    ({"model.config_overrides.hidden_size": {"choices": [32, 64]}}, "hidden_size: 64 changes the shape"),
])
def test_a_bad_search_space_is_one_line(tiny_bert, class_folder, tmp_path, space, needle):
    cfg = tune_config(tiny_bert, class_folder, tmp_path, **{"tune.space": space})
    assert_one_line(invoke("tune", cfg, "--trials", "1", "-o", tmp_path / "study"), needle)
    assert not (tmp_path / "study").exists()


def test_a_trial_whose_values_cannot_be_drawn_records_why():
    """Drawing the values is part of the trial: a space Optuna refuses (one the config check let through) fails
    the trial with a reason naming the key, as a training error does, not with an empty note."""
    import optuna

    from lightft.config import Config
    from lightft.tune import _trial

    cfg = Config()
    cfg.data.source = "x"
    study = optuna.create_study(direction="maximize")
    space = {"train.epochs": {"low": 1, "high": 3, "step": 0}}
    study.optimize(lambda t: _trial(cfg, None, t, space), n_trials=1, catch=(Exception,))
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs["error"].startswith("tune.space.train.epochs: ")


def test_tune_needs_a_validation_split(tiny_bert, class_folder, tmp_path):
    cfg = tune_config(tiny_bert, class_folder, tmp_path, **{"data.validation_size": 0})
    assert_one_line(invoke("tune", cfg, "--trials", "1", "-o", tmp_path / "study"), "validation_size")


def test_default_space_fits_the_method():
    from lightft.config import Config
    from lightft.tune import search_space

    assert set(search_space(Config())) == {"train.learning_rate", "train.epochs", "peft.r", "peft.lora_alpha",
                                           "peft.lora_dropout"}
    assert set(search_space(Config(method="ia3", peft={}))) == {"train.learning_rate", "train.epochs"}


def test_a_trial_that_sets_epochs_trains_exactly_those():
    """train.min_steps would raise every epochs choice to the same number on a small training set."""
    from lightft.config import Config
    from lightft.tune import trial_config

    cfg = Config()
    cfg.data.source = "x"
    cfg.train.min_steps = 120
    assert trial_config(cfg, {"train.epochs": 3}).train.min_steps == 0
    assert trial_config(cfg, {"train.learning_rate": 1e-4}).train.min_steps == 120
    assert trial_config(cfg, {"train.epochs": 3, "train.min_steps": 60}).train.min_steps == 60
    cfg.train.small_batch_size = 8
    assert trial_config(cfg, {"train.batch_size": 32}).train.small_batch_size is None  # the trial's batch size
    assert trial_config(cfg, {"train.learning_rate": 1e-4}).train.small_batch_size == 8


def test_method_can_be_tuned_across_peft_families():
    """A trial of another family gets that method's own section, not the config's LoRA r and alpha."""
    from lightft.config import Config
    from lightft.errors import ConfigError
    from lightft.tune import trial_config

    cfg = Config()
    cfg.data.source = "x"
    ia3 = trial_config(cfg, {"method": "ia3"})
    assert ia3.method == "ia3" and "r" not in ia3.peft and "lora_alpha" not in ia3.peft
    assert trial_config(cfg, {"method": "dora"}).peft["r"] == cfg.peft["r"]  # same family: the config's section
    with pytest.raises(ConfigError, match="method adalora needs a schedule"):
        trial_config(cfg, {"method": "adalora"})


def test_ties_go_to_the_better_other_metric_then_the_faster_trial():
    from types import SimpleNamespace

    from lightft.tune import best_trial

    def trial(number, value, f1, seconds):
        return SimpleNamespace(number=number, value=value, user_attrs={"val_macro_f1": f1, "seconds": seconds})

    a, b, c, d = trial(0, 0.97, 0.96, 50.0), trial(1, 0.98, 0.97, 90.0), trial(2, 0.98, 0.975, 120.0), \
        trial(3, 0.98, 0.975, 60.0)
    assert best_trial([a, b, c, d], "accuracy") is d  # tied on accuracy; c and d lead on macro-F1; d is faster
    assert best_trial([a, b, c], "accuracy") is c
    assert best_trial([a], "accuracy") is a and best_trial([], "accuracy") is None
    c.user_attrs["tie_break"] = 0.99  # the other metric at the epoch that gave the value, where recorded
    assert best_trial([a, b, c, d], "accuracy") is c
