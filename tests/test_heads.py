"""Heads: pooling chosen from the checkpoint, the mean-pooled head's maths, the probe start, save/reload."""

import json

import numpy as np
import pytest
import torch

from lightft.data import tokenize
from lightft.errors import LightftError
from lightft.heads import head_inputs, init_head_from_probe, mean_pool, pooling_of, resolve_pooling
from lightft.inference import predict_logits
from lightft.model import apply_method, load_classifier, load_saved_model, load_tokenizer, save_model
from lightft.runtime import set_seed

from conftest import build_tiny_model, build_tiny_sentence_model, make_texts
from test_model import NAMES, encoded, quick_train


def test_auto_pooling_follows_the_checkpoint(tiny_bert, tiny_sentence_bert, tiny_models):
    plain, _ = load_classifier(str(tiny_bert), NAMES, pooling="auto")
    sentence, new = load_classifier(str(tiny_sentence_bert), NAMES, pooling="auto")
    assert pooling_of(plain) == "cls" and pooling_of(sentence) == "mean"
    assert sentence.config.classifier_pooling == "mean" and "pooler" not in new
    # DistilBERT's head has a pre-classifier that reads [CLS]: auto falls back, explicit mean is refused.
    distil = build_tiny_sentence_model(tiny_models, "distilbert")
    model, _ = load_classifier(str(distil), NAMES, pooling="auto")
    assert pooling_of(model) == "cls"
    with pytest.raises(LightftError, match="mean is not supported"):
        load_classifier(str(distil), NAMES, pooling="mean")
    assert resolve_pooling("cls", sentence, str(tiny_sentence_bert)) == "cls"


def test_mean_head_is_the_masked_mean_and_ignores_padding(tiny_sentence_bert):
    set_seed(0)
    model, _ = load_classifier(str(tiny_sentence_bert), NAMES, pooling="auto")
    model.eval()
    tok, ids, _ = encoded(tiny_sentence_bert)
    short, long = ids[0][:5], ids[1]
    batch = torch.zeros(2, len(long), dtype=torch.long)
    mask = torch.zeros_like(batch)
    batch[0, :5], mask[0, :5] = torch.tensor(short), 1
    batch[1], mask[1] = torch.tensor(long), 1
    with torch.inference_mode():
        logits = model(input_ids=batch, attention_mask=mask).logits
        alone = model(input_ids=batch[:1, :5], attention_mask=mask[:1, :5]).logits
        states = model.bert(input_ids=batch[:1, :5]).last_hidden_state
        want = model.classifier(torch.nn.functional.normalize(states.mean(1), dim=-1))
    assert torch.allclose(logits[0], alone[0], atol=1e-5)  # padding does not move the mean
    assert torch.allclose(alone, want, atol=1e-5)
    assert torch.allclose(mean_pool(states, None).norm(dim=-1), torch.ones(1))


@pytest.mark.parametrize("binary", [False, True])
def test_probe_start_reproduces_the_logistic_regression(tiny_sentence_bert, binary):
    from lightft.inference import softmax
    from lightft.linear import logistic_regression

    names = NAMES[:2] if binary else NAMES
    tok = load_tokenizer(str(tiny_sentence_bert))
    rows = [(t, y) for t, y in make_texts(10) if y in names]
    ids = tokenize([t for t, _ in rows], tok, 32)
    labels = [names.index(y) for _, y in rows]
    set_seed(0)
    model, _ = load_classifier(str(tiny_sentence_bert), names, pooling="auto")
    features = head_inputs(model, ids, tok.pad_token_id, 4, "fp32")
    assert features.shape == (len(ids), 32)
    init_head_from_probe(model, features, labels, seed=0)
    probs = softmax(predict_logits(model, ids, tok.pad_token_id, precision="fp32", progress=False, workers=1))
    want = logistic_regression(0).fit(features, labels).predict_proba(features)
    assert np.abs(probs - want).max() < 1e-4
    # a softer start: the same decisions, the regression's logits divided by the temperature
    logits = predict_logits(model, ids, tok.pad_token_id, precision="fp32", progress=False, workers=1)
    init_head_from_probe(model, features, labels, seed=0, temperature=4.0)
    soft = predict_logits(model, ids, tok.pad_token_id, precision="fp32", progress=False, workers=1)
    np.testing.assert_allclose(soft, logits / 4.0, atol=1e-4)
    assert softmax(soft).max(1).mean() < probs.max(1).mean()


def test_the_activation_of_a_dense_head_is_found_by_running_it():
    """Heads hard-code tanh (RoBERTa), keep an activation (ELECTRA: gelu) or read config.hidden_act (ConvBERT)."""
    from transformers import (
        ConvBertConfig,
        ConvBertForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    from lightft.heads import dense_head_activation

    small = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
             "vocab_size": 50}
    roberta = RobertaForSequenceClassification(RobertaConfig(**small, num_labels=3))
    assert isinstance(dense_head_activation(roberta.classifier), torch.nn.Tanh)
    for act, want in (("gelu", "none"), ("gelu_new", "tanh")):
        conv = ConvBertForSequenceClassification(ConvBertConfig(**small, embedding_size=16, hidden_act=act,
                                                                num_labels=3))
        found = dense_head_activation(conv.classifier)
        assert isinstance(found, torch.nn.GELU) and found.approximate == want


@pytest.mark.parametrize("arch", ["roberta", "electra"])
def test_a_dense_head_starts_as_the_probe_on_what_its_out_proj_reads(tiny_models, arch):
    """RoBERTa-style heads (dense -> tanh/gelu -> out_proj) under mean pooling: dense becomes the identity and
    out_proj the regression, so the untrained model already gives the probe's probabilities (it started random
    before). [CLS] pooling: the next test."""
    from lightft.heads import probe_activation, probe_layer, supports_probe_init
    from lightft.inference import softmax
    from lightft.linear import logistic_regression

    set_seed(0)
    pooling, model_dir = "mean", build_tiny_sentence_model(tiny_models, arch)
    model, _ = load_classifier(str(model_dir), NAMES, pooling="auto")
    assert pooling_of(model) == pooling and supports_probe_init(model)
    tok, ids, labels = encoded(model_dir, n=10)
    layer = probe_layer(model)
    assert layer is model.classifier.out_proj and probe_activation(model) is not None
    features = head_inputs(model, ids, tok.pad_token_id, 4, "fp32", layer=layer)
    init_head_from_probe(model, features, labels, seed=0, layer=layer)
    probs = softmax(predict_logits(model, ids, tok.pad_token_id, precision="fp32", progress=False, workers=1))
    want = logistic_regression(0).fit(features, labels).predict_proba(features)
    assert np.abs(probs - want).max() < 1e-4
    # the cached pooled vectors (the probe baseline's) through the activation are those features
    from lightft.baselines import embed

    pooled = torch.from_numpy(embed(model.base_model, ids, tok.pad_token_id, "mean", 4, "fp32"))
    np.testing.assert_allclose(probe_activation(model)(pooled).numpy(), features, atol=1e-5)


@pytest.mark.parametrize("arch", ["roberta", "electra"])
def test_a_cls_dense_head_starts_as_the_probe_on_its_standardised_cls_states(tiny_models, arch):
    """Under [CLS] pooling the dense layer becomes the standardisation of the training texts' [CLS] states,
    scaled into the activation's near-linear range (tanh, gelu), and out_proj the regression on what it then
    reads: the untrained model gives the probe's probabilities, and a plain reload keeps them."""
    from lightft.heads import calibrate_dense, probe_activation, probe_layer, supports_probe_init
    from lightft.inference import softmax
    from lightft.linear import logistic_regression

    set_seed(0)
    model_dir = build_tiny_model(tiny_models, arch)
    model, _ = load_classifier(str(model_dir), NAMES, pooling="auto")
    assert pooling_of(model) == "cls" and supports_probe_init(model)
    tok, ids, labels = encoded(model_dir, n=10)
    layer = probe_layer(model)
    dense_before = model.classifier.dense.weight.clone()
    assert layer is model.classifier.out_proj and torch.equal(dense_before, model.classifier.dense.weight)
    states = head_inputs(model, ids, tok.pad_token_id, 4, "fp32", layer=model.classifier.dense)
    features = calibrate_dense(model, states, probe_activation(model))
    if arch == "roberta":  # tanh(z / 2) of standardised z: none saturated
        assert (np.abs(features) > 0.99).mean() == 0 and features.std() > 0.05
    else:  # gelu(z + 3): around 3, where gelu is nearly the identity
        assert abs(features.mean() - 3) < 0.2
    np.testing.assert_allclose(features, head_inputs(model, ids, tok.pad_token_id, 4, "fp32", layer=layer),
                               atol=1e-5)  # what out_proj reads is what calibrate_dense returned
    init_head_from_probe(model, features, labels, seed=0, layer=layer)
    probs = softmax(predict_logits(model, ids, tok.pad_token_id, precision="fp32", progress=False, workers=1))
    want = logistic_regression(0).fit(features, labels).predict_proba(features)
    assert np.abs(probs - want).max() < 1e-4


@pytest.mark.parametrize("arch", ["bert", "roberta", "xlm-roberta", "electra"])
def test_mean_head_trains_saves_and_reloads_identically(tiny_models, tmp_path, arch):
    model_dir = build_tiny_sentence_model(tiny_models, arch)
    set_seed(0)
    model, new_modules = load_classifier(str(model_dir), NAMES, pooling="auto")
    assert pooling_of(model) == "mean"
    model = apply_method(model, "lora", {"r": 4, "lora_alpha": 8}, new_modules)
    tok, ids, labels = encoded(model_dir)
    quick_train(model, ids, labels, tok)
    save_model(model, tok, tmp_path / "adapter", str(model_dir))
    saved = json.loads((tmp_path / "adapter" / "config.json").read_text())
    assert saved["classifier_pooling"] == "mean"
    before = predict_logits(model, ids, tok.pad_token_id, precision="fp32", progress=False)
    reloaded = load_saved_model(tmp_path / "adapter", str(model_dir))
    assert pooling_of(reloaded) == "mean"
    after = predict_logits(reloaded, ids, tok.pad_token_id, precision="fp32", progress=False)
    np.testing.assert_allclose(before, after, atol=1e-5)
    # The [CLS]-only last layer would drop the states the mean reads: it must leave this model alone.
    pruned = predict_logits(reloaded, ids, tok.pad_token_id, precision="fp32", progress=False, cls_only=True)
    np.testing.assert_allclose(pruned, after, atol=1e-5)


def test_cls_models_keep_the_architectures_head(tiny_models):
    model_dir = build_tiny_model(tiny_models, "bert")
    model, new_modules = load_classifier(str(model_dir), NAMES, pooling="auto")
    assert pooling_of(model) == "cls" and "forward" not in vars(model)


def test_the_mean_head_does_not_train_or_save_an_unused_pooler(tmp_path):
    """DeBERTa's pooler sits beside its classifier; the mean head never calls it, so it is neither trained nor
    saved (it would get no gradient: dead weights in the adapter, and DDP's unused-parameter error)."""
    from lightft.model import head_modules, load_classifier

    mean, _ = load_classifier(str(build_tiny_sentence_model(tmp_path, "deberta-v2")), ["a", "b"], pooling="auto")
    assert head_modules(mean) == ["classifier"]
    cls, _ = load_classifier(str(build_tiny_model(tmp_path, "deberta-v2")), ["a", "b"], pooling="cls")
    assert head_modules(cls) == ["classifier", "pooler"]
