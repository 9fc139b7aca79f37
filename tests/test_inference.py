"""Inference: the fp32 recheck of close decisions and the attention kernel lever."""

import numpy as np
import pytest


def test_close_decisions_are_rechecked_in_fp32(tiny_bert):
    from lightft.data import tokenize
    from lightft.inference import predict_logits
    from lightft.model import load_classifier, load_tokenizer
    from lightft.runtime import set_seed

    from conftest import make_texts

    set_seed(0)
    model, _ = load_classifier(str(tiny_bert), ["a", "b", "c"])
    tok = load_tokenizer(str(tiny_bert))
    ids = tokenize([t for t, _ in make_texts(5)], tok, 32)
    fp32 = predict_logits(model, ids, tok.pad_token_id, precision="fp32", progress=False)
    bf16 = predict_logits(model, ids, tok.pad_token_id, precision="bf16", progress=False)
    rechecked = predict_logits(model, ids, tok.pad_token_id, precision="bf16", progress=False, recheck_margin=1e9)
    assert not np.array_equal(bf16, fp32)  # bf16 rounding is visible ...
    np.testing.assert_array_equal(rechecked, fp32)  # ... and every row within the margin is fp32 again


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert"])
def test_eager_inference_attention_matches_and_is_restored(arch, tiny_models):
    from lightft.data import tokenize
    from lightft.inference import predict_logits
    from lightft.model import load_classifier, load_tokenizer
    from lightft.runtime import set_seed

    from conftest import build_tiny_model, make_texts

    path = build_tiny_model(tiny_models, arch)
    set_seed(0)
    model, _ = load_classifier(str(path), ["a", "b", "c"])
    ids = tokenize([t for t, _ in make_texts(4)], load_tokenizer(str(path)), 32)
    before = model.config._attn_implementation
    assert before == "sdpa"  # so "eager" below is a real switch
    seen = []
    model.register_forward_pre_hook(lambda m, _: seen.append(m.config._attn_implementation))
    default = predict_logits(model, ids, 0, 3, "fp32", progress=False)
    eager = predict_logits(model, ids, 0, 3, "fp32", progress=False, attention="eager")
    same = predict_logits(model, ids, 0, 3, "fp32", progress=False, attention="default")
    np.testing.assert_allclose(eager, default, atol=1e-5)
    np.testing.assert_array_equal(same, default)
    assert model.config._attn_implementation == before
    n = len(seen) // 3  # batches per call
    assert seen == ["sdpa"] * n + ["eager"] * n + ["sdpa"] * n


@pytest.mark.slow
def test_every_way_to_run_a_classifier_is_one_predictor(finished_mean_run, tmp_path):
    """A run directory, its ONNX export and the adapter in a server are the same ``Predictor``: same
    probabilities and labels, and predict_file takes any of them."""
    import csv

    from lightft.export import OnnxClassifier, export_onnx
    from lightft.inference import Predictor
    from lightft.predict import Classifier, predict_file
    from lightft.serve import AdapterServer

    texts = ["goal match team coach", "vote law tax party", "chip software data the of"]
    clf = Classifier.from_run(finished_mean_run, precision="fp32")
    export_onnx(finished_mean_run, tmp_path / "onnx")
    predictors = [clf, OnnxClassifier(tmp_path / "onnx"),
                  AdapterServer({"a": finished_mean_run}, precision="fp32").predictor("a")]
    want = clf.predict_proba(texts)
    for predictor in predictors:
        assert isinstance(predictor, Predictor)
        np.testing.assert_allclose(predictor.predict_proba(texts), want, atol=1e-3)
        assert [p.label for p in predictor.predict(texts)] == [p.label for p in clf.predict(texts)]
    source = tmp_path / "in.csv"
    source.write_text("text\n" + "\n".join(texts) + "\n", encoding="utf-8")
    assert predict_file(predictors[2], source, tmp_path / "out.csv").rows == 3
    with open(tmp_path / "out.csv", encoding="utf-8") as f:
        assert [r["pred_label"] for r in csv.DictReader(f)] == [p.label for p in clf.predict(texts)]


def test_multilabel_decisions_near_their_threshold_are_rechecked(tiny_bert):
    """Multi-label: a text is close where a label's logit is near that label's threshold (``boundaries``), not
    where two labels are near each other."""
    from lightft.data import tokenize
    from lightft.inference import Decision, predict_logits
    from lightft.model import load_classifier, load_tokenizer
    from lightft.runtime import set_seed

    from conftest import make_texts

    set_seed(0)
    model, _ = load_classifier(str(tiny_bert), ["a", "b", "c"], multi_label=True)
    tok = load_tokenizer(str(tiny_bert))
    ids = tokenize([t for t, _ in make_texts(5)], tok, 32)
    fp32 = predict_logits(model, ids, tok.pad_token_id, precision="fp32", progress=False)
    bf16 = predict_logits(model, ids, tok.pad_token_id, precision="bf16", progress=False)
    changed = np.flatnonzero((bf16 != fp32).any(1))
    assert len(changed)  # bf16 rounding is visible
    row = changed[0]
    # Thresholds at row's own fp32 scores: that row sits on every boundary, so it is recomputed in fp32 even
    # with a margin far below any gap between its labels.
    decision = Decision(multi_label=True, thresholds=tuple(1 / (1 + np.exp(-fp32[row].astype(np.float64)))))
    boundaries = decision.boundaries(3)
    np.testing.assert_allclose(boundaries, fp32[row], atol=1e-5)
    out = predict_logits(model, ids, tok.pad_token_id, precision="bf16", progress=False, recheck_margin=0.05,
                         boundaries=boundaries)
    np.testing.assert_array_equal(out[row], fp32[row])
    far = np.abs(bf16 - boundaries).min(1) >= 0.05
    np.testing.assert_array_equal(out[far], bf16[far])  # clear decisions keep their bf16 logits
