"""A saved adapter reloads with plain transformers + peft: no lightft in the reloading process."""

import json
import subprocess
import sys

import pytest

from lightft.data import tokenize
from lightft.inference import predict_logits
from lightft.model import apply_method, load_classifier, load_tokenizer, save_model
from lightft.runtime import set_seed

from conftest import make_texts
from test_model import NAMES, quick_train

PLAIN_RELOAD = r"""
import json, sys
import torch
from peft import PeftConfig, PeftModel
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

adapter, base_path, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
config = AutoConfig.from_pretrained(adapter)                  # carries id2label / label2id
assert PeftConfig.from_pretrained(adapter).base_model_name_or_path
base = AutoModelForSequenceClassification.from_pretrained(base_path, config=config)
model = PeftModel.from_pretrained(base, adapter).eval()
tok = AutoTokenizer.from_pretrained(adapter)
with torch.inference_mode():
    enc = tok(texts, truncation=True, max_length=32, padding=True, return_tensors="pt")
    if getattr(config, "classifier_pooling", "cls") == "mean":
        # A mean-pooled head (README): masked mean of the encoder's states, L2-normalised, then the classifier.
        inner = model.get_base_model()
        states = getattr(inner, inner.base_model_prefix)(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)
        head = inner.classifier  # BERT: a Linear; RoBERTa/ELECTRA/MPNet: a head that reads position 0
        logits = head(pooled.unsqueeze(1)) if hasattr(head, "out_proj") else head(pooled)
    else:
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
labels = [model.config.id2label[int(i)] for i in logits.argmax(-1)]
assert "lightft" not in sys.modules
print(json.dumps({"labels": labels, "logits": logits.tolist()}))
"""


@pytest.mark.parametrize("pooling,arch", [("cls", "bert"), ("mean", "bert"), ("mean", "roberta")])
@pytest.mark.slow
def test_adapter_reloads_with_plain_peft(tiny_models, tmp_path, pooling, arch):
    from conftest import build_tiny_sentence_model

    tiny_bert = build_tiny_sentence_model(tiny_models, arch)
    set_seed(0)
    model, new_modules = load_classifier(str(tiny_bert), NAMES, pooling=pooling)
    model = apply_method(model, "lora", {"r": 4, "lora_alpha": 8}, new_modules)
    tok = load_tokenizer(str(tiny_bert))
    rows = make_texts(8)
    ids = tokenize([t for t, _ in rows], tok, 32)
    quick_train(model, ids, [NAMES.index(y) for _, y in rows], tok)
    save_model(model, tok, tmp_path / "adapter", str(tiny_bert))

    texts = [t for t, _ in rows[:10]]
    ours = predict_logits(model, tokenize(texts, tok, 32), tok.pad_token_id, precision="fp32", progress=False)
    out = subprocess.run([sys.executable, "-c", PLAIN_RELOAD, str(tmp_path / "adapter"), str(tiny_bert),
                          json.dumps(texts)], capture_output=True, text=True, check=True)
    plain = json.loads(out.stdout.strip().splitlines()[-1])
    assert plain["labels"] == [NAMES[i] for i in ours.argmax(axis=1)]
    assert max(abs(a - b) for ra, rb in zip(plain["logits"], ours.tolist(), strict=True)
               for a, b in zip(ra, rb, strict=True)) < 1e-5
