"""Settings a run decides from its model before it starts (lightft.experiment.resolve_model_defaults)."""

import pytest

from lightft.config import DEFAULT_MAX_LENGTH, load_config
from lightft.errors import ConfigError
from lightft.experiment import resolve_model_defaults
from lightft.model import position_limit

from conftest import (
    ARCHITECTURES,
    invoke,
    tiny_config,
    tiny_run_config,
    tiny_tokenizer,
    write_class_folder,
    write_config,
)


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


@pytest.mark.parametrize("train_length", [8, 64])
def test_train_max_length_cuts_training_inputs_only(tiny_bert, tmp_path, monkeypatch, train_length):
    import lightft.train

    seen = {}
    original = lightft.train.train_model

    def spy(model, train_ids, train_labels, val_ids, *args, **kwargs):
        seen.update(train=max(map(len, train_ids)), val=max(map(len, val_ids)), pad_cap=kwargs["max_length"],
                    closing={x[-1] for x in train_ids})
        return original(model, train_ids, train_labels, val_ids, *args, **kwargs)

    monkeypatch.setattr(lightft.train, "train_model", spy)
    cfg = write_config(tmp_path, tiny_run_config(tiny_bert, write_class_folder(tmp_path / "corpus"),
                                                 tmp_path / "run", **{"train.max_length": train_length,
                                                                      "train.epochs": 1}))
    result = invoke("run", cfg)
    assert result.exit_code == 0, result.output
    if train_length == 8:
        assert seen["train"] == seen["pad_cap"] == 8 < seen["val"] <= 32  # validation reads model.max_length
    else:  # longer than model.max_length (32): nothing to cut, and padding never passes the model's length
        assert seen["train"] <= seen["pad_cap"] == 32
    assert seen["closing"] == {tiny_tokenizer().sep_token_id}  # each input still ends with [SEP]


def test_texts_with_no_word_for_tfidf_leave_that_baseline_out_not_the_run(tiny_bert, tmp_path):
    """Codes or numbers as texts give TF-IDF no vocabulary; the run goes on with the other models."""
    import json

    data = tmp_path / "codes.csv"
    data.write_text("text,label\n" + "".join(f"{i},{'ab'[i % 2]}\n" for i in range(100, 160)), encoding="utf-8")
    cfg = write_config(tmp_path, tiny_run_config(tiny_bert, data, tmp_path / "run", **{"train.epochs": 1}))
    result = invoke("run", cfg)
    assert result.exit_code == 0, result.output
    assert "TF-IDF baseline left out: no word of two or more characters" in result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "tfidf" not in summary and {"linear_probe", "finetuned"} <= set(summary)
    assert "TF-IDF" not in (tmp_path / "run" / "report.md").read_text()
