"""Settings a run decides from its model before it starts (lightft.experiment.resolve_model_defaults)."""

import pytest

from lightft.config import DEFAULT_MAX_LENGTH, load_config
from lightft.errors import ConfigError
from lightft.experiment import resolve_model_defaults
from lightft.model import position_limit

from conftest import ARCHITECTURES, tiny_config


def config(*overrides: str):
    return load_config(None, ["data.source=x", *overrides])


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_empty_max_length_becomes_the_models_limit_and_attention_dropout_zero(arch):
    model_config = tiny_config(arch, 50)  # 130 positions (RoBERTa-style offsets leave 128)
    cfg = config()
    assert cfg.model.max_length is None and cfg.model.config_overrides == {}
    resolve_model_defaults(cfg, model_config)
    assert cfg.model.max_length == position_limit(model_config) < DEFAULT_MAX_LENGTH
    has_key = hasattr(model_config, "attention_probs_dropout_prob")
    assert has_key == (arch != "distilbert")  # DistilBERT names it attention_dropout: left as it is
    assert cfg.model.config_overrides == ({"attention_probs_dropout_prob": 0.0} if has_key else {})


def test_a_model_with_more_positions_is_read_at_most_512_tokens():
    model_config = tiny_config("bert", 50)
    model_config.max_position_embeddings = 4096
    cfg = config()
    resolve_model_defaults(cfg, model_config)
    assert cfg.model.max_length == DEFAULT_MAX_LENGTH == 512


def test_what_the_user_set_is_kept():
    cfg = config("model.max_length=64", "model.config_overrides={attention_probs_dropout_prob: 0.1}")
    resolve_model_defaults(cfg, tiny_config("bert", 50))
    assert cfg.model.max_length == 64
    assert cfg.model.config_overrides == {"attention_probs_dropout_prob": 0.1}


def test_a_window_stride_too_long_for_the_decided_length_is_one_line():
    cfg = config("model.window_stride=200")  # fine until max_length is decided: 130 positions here
    with pytest.raises(ConfigError, match="window_stride must be between 1 and model.max_length - 2"):
        resolve_model_defaults(cfg, tiny_config("bert", 50))
