"""Every supported architecture: train briefly, save, reload, identical logits and label names."""

import json

import numpy as np
import pytest

from lightft.config import DEFAULT_LORA, TrainConfig
from lightft.data import tokenize
from lightft.errors import ConfigError, LightftError
from lightft.inference import predict_logits
from lightft.methods import build_peft_config
from lightft.model import (
    apply_method,
    count_parameters,
    label_names_of,
    load_classifier,
    load_saved_model,
    load_tokenizer,
    resolve_model_path,
    save_model,
)
from lightft.runtime import set_seed
from lightft.train import train_model

from conftest import ARCHITECTURES, build_tiny_model, make_texts

NAMES = ["politics", "sport", "tech"]
NEW_MODULES = {
    "bert": ["classifier"],
    "roberta": ["classifier"],
    "xlm-roberta": ["classifier"],
    "distilbert": ["classifier", "pre_classifier"],
    "deberta-v2": ["classifier", "pooler"],
    "electra": ["classifier"],
}


def encoded(model_dir, n=8):
    tok = load_tokenizer(str(model_dir))
    rows = make_texts(n)
    ids = tokenize([t for t, _ in rows], tok, 32)
    return tok, ids, [NAMES.index(y) for _, y in rows]


def quick_train(model, ids, labels, tok):
    cfg = TrainConfig(epochs=1, min_steps=0, batch_size=8, learning_rate=1e-2, precision="fp32", warmup_ratio=0.0)
    return train_model(model, ids, labels, ids[:6], labels[:6], NAMES, cfg, seed=0, pad_id=tok.pad_token_id)


@pytest.mark.parametrize("section", [DEFAULT_LORA, {"r": 4, "lora_alpha": 8}], ids=["default", "query-value"])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_train_save_reload_identical_logits(tiny_models, tmp_path, arch, section):
    """The default LoRA (every linear layer) and PEFT's per-architecture targets, on each architecture: the
    layers lightft adds (classifier, DistilBERT's pre-classifier, DeBERTa's pooler) are trained whole, never
    adapted, and come back from the adapter."""
    model_dir = build_tiny_model(tiny_models, arch)
    set_seed(0)
    model, new_modules = load_classifier(str(model_dir), NAMES)
    assert new_modules == NEW_MODULES[arch]
    initial = {k: v.clone() for k, v in model.state_dict().items() if k.split(".")[0] in new_modules}
    model = apply_method(model, "lora", dict(section), new_modules)
    adapted = [name for name, _ in model.named_modules() if name.endswith("lora_A")]
    assert adapted and not [n for n in adapted if any(f".{m}." in f".{n}" for m in new_modules)]
    trainable, total = count_parameters(model)
    assert 0 < trainable < total
    tok, ids, labels = encoded(model_dir)
    quick_train(model, ids, labels, tok)
    before = predict_logits(model, ids, tok.pad_token_id, precision="fp32", progress=False)

    save_model(model, tok, tmp_path / "adapter", str(model_dir))
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert not list((tmp_path / "adapter").glob("*.bin"))
    to_save = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["modules_to_save"]
    assert "classifier" in to_save and len(to_save) == len(set(to_save))  # each module listed once
    reloaded = load_saved_model(tmp_path / "adapter", str(model_dir))
    after = predict_logits(reloaded, ids, tok.pad_token_id, precision="fp32", progress=False)
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-6)
    assert label_names_of(reloaded) == NAMES

    # The newly initialised layers were trained and came back from the adapter, not re-randomised.
    state = reloaded.get_base_model().state_dict()
    saved = {k.replace(".modules_to_save.default.", "."): v for k, v in state.items() if "modules_to_save" in k}
    assert set(initial) <= set(saved)
    changed = [k for k, v in initial.items() if not np.allclose(saved[k].numpy(), v.numpy())]
    assert changed, "newly initialised layers did not train"


@pytest.mark.parametrize("method,section", [("full", {}), ("head", {}), ("ia3", {}), ("loha", {"r": 2})])
def test_other_methods_save_and_reload(tiny_bert, tmp_path, method, section):
    set_seed(0)
    model, new_modules = load_classifier(str(tiny_bert), NAMES)
    model = apply_method(model, method, section, new_modules)
    trainable, total = count_parameters(model)
    if method == "full":
        assert trainable == total
    if method == "head":
        assert trainable == sum(p.numel() for n, p in model.named_parameters() if n.startswith("classifier"))
    tok, ids, labels = encoded(tiny_bert)
    quick_train(model, ids, labels, tok)
    before = predict_logits(model, ids, tok.pad_token_id, precision="fp32", progress=False)
    save_model(model, tok, tmp_path / "m", str(tiny_bert))
    reloaded = load_saved_model(tmp_path / "m", str(tiny_bert))
    after = predict_logits(reloaded, ids, tok.pad_token_id, precision="fp32", progress=False)
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-6)
    assert label_names_of(reloaded) == NAMES


def test_baseline_head_is_seeded(tiny_bert):
    _, ids, _ = encoded(tiny_bert)
    outs = []
    for _ in range(2):
        set_seed(5)
        model, _ = load_classifier(str(tiny_bert), NAMES)
        outs.append(predict_logits(model, ids, 0, precision="fp32", progress=False))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_dora_and_rslora_are_lora_flags():
    assert build_peft_config("dora", {}).use_dora is True
    assert build_peft_config("rslora", {"r": 4}).use_rslora is True
    with pytest.raises(ConfigError):
        build_peft_config("adaption_prompt", {})


def test_not_a_model(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    with pytest.raises(LightftError, match="cannot load"):
        load_classifier(str(tmp_path / "junk"), NAMES)


def test_default_model_resolves_offline():
    from pathlib import Path

    path = Path(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"))
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def test_saving_an_adapter_asks_the_hub_nothing(tiny_bert, tmp_path, monkeypatch):
    """The adapter records the base model's Hub id; PEFT's embedding check would look that id up on the Hub at
    every save (a network call, and a warning offline). lightft never changes the embeddings, so it is skipped."""
    import warnings

    import peft.utils.save_and_load as peft_save

    def no_hub(*args, **kwargs):
        raise AssertionError(f"Hub request while saving: {args}")

    monkeypatch.setattr(peft_save, "check_file_exists_on_hf_hub", no_hub)
    set_seed(0)
    model, new_modules = load_classifier(str(tiny_bert), NAMES)
    model = apply_method(model, "lora", dict(DEFAULT_LORA), new_modules)
    tok, _, _ = encoded(tiny_bert)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_model(model, tok, tmp_path / "adapter", "sentence-transformers/all-MiniLM-L6-v2")
    assert not [w for w in caught if "config file" in str(w.message)]
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_pickle_checkpoints_are_refused_unless_allowed(tiny_bert, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_bert, pickled)
    weights = pickled / "model.safetensors"
    torch.save(load_file(weights), pickled / "pytorch_model.bin")
    weights.unlink()
    with pytest.raises(LightftError, match="--allow-pickle"):
        load_classifier(str(pickled), NAMES)
    model, _ = load_classifier(str(pickled), NAMES, allow_pickle=True)
    assert model.config.num_labels == 3


def test_every_reload_uses_the_base_revision_the_run_trained_on(finished_mean_run, tmp_path, monkeypatch):
    """``model.revision`` is honoured when a run is reloaded for predict/evaluate, export and serve, so inference
    never silently runs on other base weights than training did."""
    import shutil

    import transformers
    import yaml

    from lightft.export import export_merged
    from lightft.predict import Classifier
    from lightft.serve import AdapterServer

    run = tmp_path / "run"
    shutil.copytree(finished_mean_run, run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["model"]["revision"] = "v1.0"  # a local folder ignores it; the point is that it is passed on
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    seen: list[str | None] = []
    for cls in (transformers.AutoModelForSequenceClassification, transformers.AutoModel):
        real = cls.from_pretrained.__func__

        def spy(klass, name, *args, _real=real, **kwargs):
            if str(name) == cfg["model"]["name"]:  # the base model (not e.g. an export's staged encoder)
                seen.append(kwargs.get("revision"))
            return _real(klass, name, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    Classifier.from_run(run, precision="fp32")
    assert seen == ["v1.0"]
    export_merged(run, tmp_path / "merged")
    assert seen[1:] == ["v1.0"]
    AdapterServer({"a": run}, precision="fp32")
    assert seen[2:] == ["v1.0"]


def test_a_target_modules_regex_that_does_not_compile_is_one_line(tiny_bert):
    model, new_modules = load_classifier(str(tiny_bert), NAMES)
    with pytest.raises(LightftError, match=r"not a valid regular expression .*\[query, value\]"):
        apply_method(model, "lora", {"r": 4, "target_modules": "query["}, new_modules)


def test_prompt_tuning_without_num_virtual_tokens_says_so():
    with pytest.raises(ConfigError, match="needs peft.num_virtual_tokens"):
        build_peft_config("prompt_tuning", {})
    assert build_peft_config("prompt_tuning", {"num_virtual_tokens": 4}).num_virtual_tokens == 4


def test_a_sweep_gives_every_prompt_method_its_virtual_tokens():
    from lightft.config import Config, method_config

    for method in ("prompt_tuning", "prefix_tuning", "p_tuning"):
        section = method_config(Config(), method, 10).peft
        assert build_peft_config(method, section).num_virtual_tokens == 20, method


def test_a_vocabulary_that_cannot_read_the_texts_is_named(caplog):
    import logging

    from transformers import BertTokenizer, BertTokenizerFast

    from lightft.model import _DENSE_SCRIPTS, _ENGLISH, vocabulary_fit, warn_about_vocabulary

    from conftest import SPECIALS, tiny_tokenizer

    english = [text for text, _ in make_texts(20)]  # words of the tiny vocabulary: read whole
    unknown, per_token = vocabulary_fit(english, tiny_tokenizer())
    assert unknown == 0 and per_token > 3
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces = SPECIALS + letters + ["##" + c for c in letters]
    known = ["the", "central", "bank", "raised", "interest", "rates", "again", "on", "tuesday", ",", "citing",
             "persistent", "inflation", "in", "services", "."]  # model.py's English reference sentence, whole
    spelled = BertTokenizer(vocab={w: i for i, w in enumerate(pieces + known)})
    with caplog.at_level(logging.WARNING, logger="lightft"):
        warn_about_vocabulary(english, spelled, "spelled")  # the data's words split into letters
        assert "splits the training texts into 1.0 characters per token" in caplog.text
        caplog.clear()
        # a character-level tokenizer, and Han characters (one token each in any BERT vocabulary that has them),
        # are not "split into letters"
        letters_only = BertTokenizer(vocab={w: i for i, w in enumerate(pieces)})
        assert np.isnan(vocabulary_fit(english, letters_only)[1])
        probe = _DENSE_SCRIPTS["\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"]
        han = BertTokenizer(vocab={w: i for i, w in enumerate(SPECIALS + list(probe) + ["##" + c for c in probe])})
        unknown, per_token = vocabulary_fit(["中央银行 中央"] * 3, han)  # a Chinese vocabulary: Han left out
        assert unknown == 0 and np.isnan(per_token)
        assert vocabulary_fit(["中央银行 中央"] * 3, letters_only)[0] == 1.0  # one that lacks them: unknown
        warn_about_vocabulary(["中央银行 中央"] * 3 + english, letters_only, "letters")
        assert caplog.text == ""
        warn_about_vocabulary(["สวัสดีครับ ธนาคาร " + t for t in english], tiny_tokenizer(), "tiny")
        assert "% of the training texts' tokens are unknown to tiny's vocabulary" in caplog.text
        caplog.clear()
        warn_about_vocabulary(english, tiny_tokenizer(), "tiny")
    assert caplog.text == ""
    # a fast tokenizer names what an unknown token stood for: emoji are not a language the model lacks
    fast = BertTokenizerFast(vocab={w: i for i, w in enumerate(pieces + known)})
    unknown, per_token = vocabulary_fit(["the bank raised rates 😍🔥 🎉"] * 3, fast)
    assert unknown == 0 and per_token > 3
    assert vocabulary_fit(["the bank Ωμέγα"] * 3, fast)[0] == 1 / 3
    # a byte-level BPE never says "unknown": Chinese through an English one is two to three bytes a token
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(english + [_ENGLISH] * 20, vocab_size=1000, show_progress=False)
    byte_level = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer)
    assert vocabulary_fit(english, byte_level)[1] > 3 and vocabulary_fit(["中央银行 中央"] * 3, byte_level)[1] < 1


def test_a_language_the_vocabulary_splits_into_pieces_is_named(caplog):
    """German through an English WordPiece passes the unknown-token and characters-per-token checks (words
    become 3-letter pieces, not letters): the share of words held whole names it."""
    import logging

    from transformers import BertTokenizerFast

    from lightft.model import warn_about_vocabulary, whole_word_share

    from conftest import make_vocab, tiny_tokenizer

    pieces = ["reg", "##ier", "##ung", "ver", "##tra", "##gen", "wir", "##tsch", "##aft"]
    vocab = {w: i for i, w in enumerate([*make_vocab(), *pieces])}
    fast = BertTokenizerFast(vocab=vocab)
    english = [text for text, _ in make_texts(40)]  # the tiny vocabulary's own words: read whole
    german = ["regierung vertragen wirtschaft regierung vertragen"] * 60
    assert whole_word_share(english, fast) > 0.9 and whole_word_share(german, fast) == 0.0
    assert np.isnan(whole_word_share(german[:10], fast))  # 50 words: too few to say
    assert whole_word_share(german, tiny_tokenizer()) == 0.0  # one unknown token a word is not read whole
    with caplog.at_level(logging.WARNING, logger="lightft"):
        warn_about_vocabulary(english, fast, "tiny")
        assert caplog.text == ""
        warn_about_vocabulary(german, fast, "tiny")
    assert "tiny's vocabulary holds only 0% of the training texts' words of four or more letters whole" in caplog.text
