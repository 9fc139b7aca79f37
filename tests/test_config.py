from pathlib import Path

import pytest
import yaml

from lightft.config import DEFAULT_LORA, Config, load_config, parse_overrides, save_config
from lightft.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "configs").glob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_there_are_shipped_configs():
    names = {p.name for p in SHIPPED}
    assert {"bbc-news.yaml", "bbc-news-bert-base.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_config_validates(path: Path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("#")
    assert f"lightft run configs/{path.name}" in path.read_text(encoding="utf-8")


def test_bbc_config_matches_the_experiment():
    cfg = load_config(ROOT / "configs" / "bbc-news.yaml")
    assert cfg.data.labels == ["tech", "business", "sport", "entertainment", "politics"]
    assert cfg.data.test_size == 900 and cfg.data.train_samples == 1000 and cfg.data.duplicates == "drop"
    assert cfg.method == "lora" and cfg.model.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert cfg.data.source == "../shared/data/bbc"
    assert cfg.model.pooling == "auto" and cfg.train.head_init == "linear_probe"


def test_the_bbc_config_is_the_default_settings():
    """bench/README.md measured other datasets with configs/bbc-news.yaml, only its data section replaced; a
    user's config that names only its data must get exactly those settings."""
    from lightft.experiment import resolve_model_defaults
    from lightft.model import check_model_config

    bbc = load_config(ROOT / "configs" / "bbc-news.yaml")
    default = load_config(None, ["data.source=x"])
    for cfg in (bbc, default):
        resolve_model_defaults(cfg, check_model_config(cfg.model.name, cfg.model.max_length))
    assert default.model.max_length == bbc.model.max_length == 512
    assert default.model.config_overrides == {"attention_probs_dropout_prob": 0.0}
    mine, theirs = bbc.to_dict(), default.to_dict()
    for key in ("name", "data"):
        mine.pop(key), theirs.pop(key)
    assert mine == theirs


def test_defaults_and_name_from_file(tmp_path):
    cfg = load_config(write(tmp_path, "data: {source: x}\n"))
    assert cfg.name == "exp"
    assert cfg.method == "lora"
    assert cfg.peft == {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all-linear"}
    assert cfg.train.epochs == Config().train.epochs


def test_unknown_key_names_key_and_allowed_keys(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "data: {source: x}\ntrain: {epoch: 3}\n"))
    msg = str(err.value)
    assert "'train.epoch'" in msg and "epochs" in msg and "batch_size" in msg


def test_wrong_type_names_key(tmp_path):
    with pytest.raises(ConfigError, match=r"'train.batch_size' must be int"):
        load_config(write(tmp_path, "data: {source: x}\ntrain: {batch_size: many}\n"))
    with pytest.raises(ConfigError, match=r"'model.trust_remote_code' must be bool"):
        load_config(write(tmp_path, "data: {source: x}\nmodel: {trust_remote_code: 1}\n"))


def test_int_and_exponent_accepted_for_float(tmp_path):
    cfg = load_config(write(tmp_path, "data: {source: x}\ntrain: {learning_rate: 1}\n"))
    assert cfg.train.learning_rate == 1.0 and isinstance(cfg.train.learning_rate, float)
    cfg = load_config(write(tmp_path, "data: {source: x}\ntrain: {learning_rate: 1e-3}\n"), ["train.weight_decay=2e-2"])
    assert cfg.train.learning_rate == 0.001 and cfg.train.weight_decay == 0.02


def test_overrides_are_yaml_values(tmp_path):
    cfg = load_config(write(tmp_path, "data: {source: x}\n"),
                      ["train.epochs=5", "data.labels=[b, a]", "peft.r=16", "model.revision=main"])
    assert cfg.train.epochs == 5
    assert cfg.data.labels == ["b", "a"]
    assert cfg.peft["r"] == 16
    assert cfg.model.revision == "main"


def test_override_unknown_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'train.nope'"):
        load_config(write(tmp_path, "data: {source: x}\n"), ["train.nope=1"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_overrides(["train.epochs"])
    with pytest.raises(ConfigError, match=r"config key 'train' must be a section of settings .*got 3"):
        load_config(write(tmp_path, "data: {source: x}\n"), ["train=3"])  # no class names in the message


def test_peft_section_goes_to_peft_class(tmp_path):
    with pytest.raises(ConfigError, match=r"peft.rank.*LoraConfig.*lora_alpha"):
        load_config(write(tmp_path, "data: {source: x}\npeft: {rank: 8}\n"))
    cfg = load_config(write(tmp_path, "data: {source: x}\nmethod: ia3\npeft: {}\n"))
    assert cfg.method == "ia3"


def test_another_method_without_a_peft_section_gets_its_own_defaults(tmp_path):
    """The default `peft:` section holds LoRA's fields; `method: ia3` alone must not inherit them."""
    assert load_config(write(tmp_path, "data: {source: x}\nmethod: ia3\n")).peft == {}
    assert load_config(write(tmp_path, "data: {source: x}\nmethod: dora\n")).peft == DEFAULT_LORA
    with pytest.raises(ConfigError, match="peft.r"):  # a section given for another method is still checked
        load_config(write(tmp_path, "data: {source: x}\nmethod: ia3\npeft: {r: 8}\n"))


def test_unknown_method_lists_choices(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown method 'lorax'.*lora"):
        load_config(write(tmp_path, "data: {source: x}\nmethod: lorax\n"))


@pytest.mark.parametrize("text,match", [
    ("train: {precision: fp8}\n", "train.precision"),
    ("data: {source: x, test_size: 1.5}\n", "data.test_size"),
    ("data: {source: x, test_size: 0}\n", "no test split"),
    ("train: {epochs: 0}\n", "train.epochs"),
    ("train: {min_steps: -1}\n", "train.min_steps"),
    ("model: {truncation: middle}\n", "model.truncation"),
    ("model: {inference_attention: flash}\n", "inference.attention must be one of auto, default"),
    ("train: {inference_workers: 0}\n", "inference.workers"),
    ("model: {pooling: max}\n", "model.pooling must be auto, cls or mean"),
    ("train: {head_init: zeros}\n", "train.head_init must be linear_probe or random"),
    ("train: {head_init_temperature: 0}\n", "train.head_init_temperature must be positive"),
    ("train: {label_smoothing: 1.0}\n", r"train.label_smoothing must be in \[0, 1\)"),
    ("train: {max_length: 4}\n", "train.max_length must be at least 8 tokens"),
    ("model: {max_length: 4}\n", "model.max_length must be at least 8 tokens"),
])
def test_incompatible_or_out_of_range_values(tmp_path, text, match):
    if "source" not in text:
        text = "data: {source: x}\n" + text
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, text))


def test_missing_source_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="data.source"):
        load_config(write(tmp_path, "seed: 1\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "data: [unclosed\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_a_finished_run_loads_without_its_training_tracker(tmp_path, monkeypatch):
    import importlib.util

    import yaml

    from lightft import config as config_module
    from lightft.config import load_config, load_run_config, save_config
    from lightft.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(config_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    data = {"data": {"source": str(tmp_path)}, "train": {"report_to": ["wandb"]}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="wandb, which is not installed"):
        load_config(tmp_path / "cfg.yaml")  # training needs it
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(data))
    cfg = load_run_config(run)  # predict/serve/export do not
    assert cfg.train.report_to == ["wandb"] and "wandb" in save_config(cfg)


def test_inference_keys_from_before_the_move_still_load(tmp_path, caplog):
    """Runs and configs written when these keys lived under train/model load as the `inference` section."""
    from lightft.config import MOVED_KEYS

    text = ("data: {source: x}\ntrain: {eval_batch_size: 8, recheck_margin: 0.5, inference_workers: 1,\n"
            "  sort_by_length_for_inference: false}\nmodel: {inference_attention: eager, cls_only_last_layer: false,\n"
            "  cast_weights_once: false, merge_adapter: false}\n")
    with caplog.at_level("WARNING", logger="lightft"):
        cfg = load_config(write(tmp_path, text))
    assert (cfg.inference.batch_size, cfg.inference.recheck_margin, cfg.inference.workers) == (8, 0.5, 1)
    assert not cfg.inference.sort_by_length and cfg.inference.attention == "eager"
    assert not (cfg.inference.cls_only_last_layer or cfg.inference.cast_weights_once or cfg.inference.merge_adapter)
    assert sum("is now 'inference." in r.message for r in caplog.records) == len(MOVED_KEYS)
    # saved in the new layout; an override in the old spelling still works
    assert "inference:\n" in save_config(cfg) and "eval_batch_size" not in save_config(cfg)
    assert load_config(write(tmp_path, "data: {source: x}\n"), ["train.eval_batch_size=2"]).inference.batch_size == 2
    # the old spelling on the command line still overrides the new key in the file
    both = write(tmp_path, "data: {source: x}\ninference: {batch_size: 4}\n")
    assert load_config(both, ["train.eval_batch_size=2"]).inference.batch_size == 2


def test_config_differences_name_the_dotted_keys():
    from lightft.config import Config, config_differences

    a = Config()
    b = Config()
    b.train.batch_size, b.seed = 8, 7
    assert config_differences(a, a) == []
    assert config_differences(a, b) == ["seed: 42 -> 7", "train.batch_size: 16 -> 8"]


def test_an_override_list_that_is_not_yaml_is_refused():
    from lightft.config import parse_overrides

    with pytest.raises(ConfigError, match=r"override 'peft.target_modules=\[query': the value is not valid YAML"):
        parse_overrides(["peft.target_modules=[query"])
    assert parse_overrides(["a.b=query["]) == [("a.b", "query[")]  # not a list: a string, as before


def test_a_search_space_written_1e_4_reads_as_a_number():
    from lightft.config import check_tune_spec

    spec = yaml.safe_load("{low: 1e-4, high: 2e-3, log: true}")  # YAML 1.1: strings, as `lightft tune --help` writes
    assert spec["low"] == "1e-4"
    check_tune_spec("train.learning_rate", spec)
    assert spec == {"low": 1e-4, "high": 2e-3, "log": True}
    for low in ("small", "nan", "-inf"):
        with pytest.raises(ConfigError, match="needs numbers"):
            check_tune_spec("train.learning_rate", {"low": low, "high": 1e-3})


def test_a_search_space_step_must_be_positive_and_not_on_a_log_scale():
    """Optuna refuses these only when a trial draws its values: every trial would fail alike."""
    from lightft.config import check_tune_spec

    check_tune_spec("train.epochs", {"low": 1, "high": 5, "step": 2})
    check_tune_spec("train.learning_rate", {"low": 1e-4, "high": 1e-3, "step": "1e-4"})  # YAML 1.1 string
    for step in (0, -1, 0.0, "big", None, True, float("inf")):
        with pytest.raises(ConfigError, match="tune.space.train.epochs: step must be a number above 0"):
            check_tune_spec("train.epochs", {"low": 1, "high": 5, "step": step})
    with pytest.raises(ConfigError, match="step and log: true do not go together"):
        check_tune_spec("train.learning_rate", {"low": 1e-4, "high": 1e-3, "log": True, "step": 1e-4})


def test_label_names_read_as_numbers_or_booleans(tmp_path):
    cfg = load_config(write(tmp_path, "data: {source: x}\n"), ["data.labels=['1', '01', '3']"])
    assert cfg.data.labels == ["1", "01", "3"]
    with pytest.raises(ConfigError, match=r"'data.labels\[0\]' must be a string, got the number 1: quote it"):
        load_config(write(tmp_path, "data: {source: x, labels: [01, 02, 010]}\n"))  # YAML 1.1: 010 is octal 8
    with pytest.raises(ConfigError, match=r"'data.labels\[0\]' must be a string, got False: .* quote the name"):
        load_config(write(tmp_path, "data: {source: x, labels: [no, yes]}\n"))
    with pytest.raises(ConfigError, match=r"'data.labels\[0\]' must be str, got \['a'\]"):
        load_config(write(tmp_path, "data: {source: x, labels: [[a], b]}\n"))
