"""Classification heads: how the encoder's token states become logits, and where the head starts from.

Pooling (``model.pooling``):

* ``cls``: the architecture's own head (BERT: the [CLS] state through the pooler, then the classifier).
  Loads with plain ``AutoModelForSequenceClassification``.
* ``mean``: the masked mean of the last token states, L2-normalised, then dropout and the architecture's
  classifier. That is the sentence embedding a sentence-transformers checkpoint (such as the default
  model) was trained to produce; its [CLS] pooler was never trained at all. The model stays the same
  ``*ForSequenceClassification`` object (PEFT, Accelerate, saving and serving are unchanged); only its
  ``forward`` pools differently, and ``config.json`` records ``classifier_pooling: mean``. Plain
  ``transformers`` cannot express this head, so ``lightft export --merged`` writes a sentence-transformers
  folder for it and the ONNX graph contains the pooling (README, "Loading an adapter without lightft").
* ``auto``: ``mean`` when the checkpoint says it was trained for mean pooling (sentence-transformers'
  ``1_Pooling/config.json``) and the head can read a pooled vector, else ``cls``.

Head start (``train.head_init``): ``linear_probe`` fits a logistic regression on the frozen model's head
inputs for the training split and starts the classifier from it (LP-FT, Kumar et al., ICLR 2022): training
then adapts features under a head that is already right, instead of distorting them to fit a random head.
"""

from __future__ import annotations

import json
import logging
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger("lightft")

# Where a run records how its head pools the token states: config.json's `classifier_pooling` (the name
# ModernBERT's config uses for the same choice). Absent or "cls": the architecture's own head.
POOLING_KEY = "classifier_pooling"


def declared_pooling(name_or_path: str, revision: str | None = None) -> str | None:
    """``mean``/``cls`` as a sentence-transformers checkpoint declares in ``1_Pooling/config.json``, else None.

    A local folder is read directly; a Hub id is asked for that one small file (None when offline)."""
    local = Path(name_or_path) / "1_Pooling" / "config.json"
    path: Path | None = local if local.is_file() else None
    if path is None and not Path(name_or_path).exists():
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(name_or_path, "1_Pooling/config.json", revision=revision))
        except Exception:  # noqa: BLE001 - not a sentence-transformers repo, offline, private: no declaration
            return None
    if path is None:
        return None
    try:
        pooling = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if pooling.get("pooling_mode_mean_tokens"):
        return "mean"
    if pooling.get("pooling_mode_cls_token"):
        return "cls"
    return None


def _head_kind(model: Any) -> str | None:
    """``linear``: a Linear classifier over the pooled vector (BERT); ``features``: a head that reads the first
    position of the states it is given (RoBERTa, XLM-R, ELECTRA, MPNet); None: neither (mean pooling unsupported)."""
    head = getattr(model, "classifier", None)
    hidden = getattr(model.config, "hidden_size", None)
    if isinstance(head, torch.nn.Linear) and head.in_features == hidden and not hasattr(model, "pre_classifier") \
            and hasattr(model, "dropout"):
        return "linear"
    if hasattr(head, "dense") and hasattr(head, "out_proj"):
        return "features"
    return None


def resolve_pooling(pooling: str, model: Any, name_or_path: str, revision: str | None = None) -> str:
    """``cls`` or ``mean`` for ``model`` (see the module docstring); explicit ``mean`` on a head that cannot read a
    pooled vector is an error."""
    from lightft.errors import LightftError

    if pooling == "cls":
        return "cls"
    supported = _head_kind(model) is not None
    if pooling == "mean":
        if not supported:
            raise LightftError(f"model.pooling: mean is not supported for {type(model).__name__}; use cls or auto")
        return "mean"
    if supported and declared_pooling(name_or_path, revision) == "mean":
        return "mean"
    return "cls"


def pooling_of(model: Any) -> str:
    """The pooling of a loaded classifier (PEFT-wrapped or not): ``mean`` or ``cls``."""
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(target.config, POOLING_KEY, None) or "cls"


def mean_pool(states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Masked mean over the sequence, L2-normalised, in fp32 (what sentence-transformers' Pooling(mean) +
    Normalize compute)."""
    states = states.float()
    if attention_mask is None:
        pooled = states.mean(1)
    else:
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def _mean_head_forward(self: Any, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                       token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                       inputs_embeds: torch.Tensor | None = None, **_: Any) -> Any:
    """``forward`` of a ``*ForSequenceClassification`` model whose head reads the mean-pooled states."""
    from transformers.modeling_outputs import SequenceClassifierOutput

    encoder = getattr(self, self.base_model_prefix)
    extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
    states = encoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                     return_dict=True, **extra).last_hidden_state
    pooled = mean_pool(states, attention_mask).to(states.dtype)
    if _head_kind(self) == "features":
        logits = self.classifier(pooled.unsqueeze(1))  # these heads read position 0 of what they get
    else:
        logits = self.classifier(self.dropout(pooled))
    loss = None
    if labels is not None and self.config.problem_type == "multi_label_classification":
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())
    elif labels is not None:
        loss = torch.nn.functional.cross_entropy(logits.float().view(-1, self.num_labels), labels.view(-1))
    return SequenceClassifierOutput(loss=loss, logits=logits)


def install_pooling(model: Any, pooling: str) -> None:
    """Make ``model`` (a plain ``*ForSequenceClassification``) pool as ``pooling`` says and record it in its
    config, which is saved with the adapter and read back by ``apply_recorded_pooling``."""
    if pooling == "mean":
        model.forward = types.MethodType(_mean_head_forward, model)
    setattr(model.config, POOLING_KEY, pooling)


def apply_recorded_pooling(model: Any) -> None:
    """Reinstall the pooling a saved config records (on a reloaded or served classifier)."""
    pooling = getattr(model.config, POOLING_KEY, None) or "cls"
    if pooling == "mean":
        install_pooling(model, "mean")


def dense_head_activation(head: Any) -> torch.nn.Module | None:
    """The activation a dense -> activation -> out_proj head applies between its layers, as a torch module
    (Tanh for RoBERTa, XLM-R, MPNet; GELU for ELECTRA, ConvBERT), found by running the head itself on a few
    vectors: heads hard-code it, keep it as an attribute or read config.hidden_act, so no attribute says it for
    all. None when no candidate reproduces the head (then no probe start and no export is attempted)."""
    candidates = [torch.nn.Tanh(), torch.nn.GELU(), torch.nn.GELU(approximate="tanh"), torch.nn.ReLU(),
                  torch.nn.SiLU()]
    dim = head.dense.in_features
    x = 3 * torch.randn(8, dim, generator=torch.Generator().manual_seed(0))  # wide enough to tell GELUs apart
    training = head.training
    head.eval()
    try:
        with torch.no_grad():
            x = x.to(head.dense.weight)  # its dtype and device (the model may already sit on a GPU)
            want = head(x.unsqueeze(1)).double()
            errors = [float((head.out_proj(act(head.dense(x))).double() - want).abs().max()) for act in candidates]
    finally:
        head.train(training)
    best = int(np.argmin(errors))
    scale = float(want.abs().max()) or 1.0
    return candidates[best] if errors[best] <= 1e-5 * scale else None


def probe_layer(model: Any) -> torch.nn.Linear:
    """The Linear layer a probe start sets. A Linear classifier (BERT, DeBERTa, DistilBERT's last layer) is it.
    A dense -> activation -> out_proj head (RoBERTa, XLM-R, ELECTRA, MPNet) gets out_proj, after its dense layer
    is set so that out_proj reads a linear view of the pooled vector: under mean pooling the identity here (the
    normalised mean, entries of ~0.05, passes tanh almost unchanged), under [CLS] pooling ``calibrate_dense``
    (a raw [CLS] state's large entries would saturate tanh). A regression on what out_proj then reads sets it
    exactly, and the model at the start is that probe, in the architecture's own head (exports unchanged)."""
    head = model.classifier
    if isinstance(head, torch.nn.Linear):
        return head
    if pooling_of(model) == "mean":
        with torch.no_grad():
            head.dense.weight.copy_(torch.eye(head.dense.out_features, head.dense.in_features))
            head.dense.bias.zero_()
    return head.out_proj


# Where each activation is close to linear, as (scale, shift) of a standardised input: tanh(z / 2) is within 8%
# of z / 2 for |z| < 1, and GELU/SiLU/ReLU(z + 3) are within 1-15% of z + 3 for z > -2 (ReLU: exact above -3).
_NEAR_LINEAR = {torch.nn.Tanh: (0.5, 0.0), torch.nn.GELU: (1.0, 3.0), torch.nn.SiLU: (1.0, 3.0),
                torch.nn.ReLU: (1.0, 3.0)}


def calibrate_dense(model: Any, states: np.ndarray, activation: torch.nn.Module) -> np.ndarray:
    """A [CLS]-pooled dense -> activation -> out_proj head: set dense to the per-dimension standardisation of
    the training texts' [CLS] ``states`` (its inputs), scaled and shifted into the activation's near-linear
    range, and return what out_proj then reads for them (``activation``: the head's, ``probe_activation``): a
    linear probe on those is a probe on the standardised [CLS] states, as one on the raw ones would be after
    scaling.

    A dimension whose mean dwarfs its spread (the steady outlier dimensions of some checkpoints, or a constant
    one) is scaled by at most 32 / |mean| and 100 / the median spread: under bf16 its input keeps ~3 significant
    digits, and standardising it fully would turn that rounding into unit-size noise the probe never saw."""
    head = model.classifier
    scale, shift = _NEAR_LINEAR[type(activation)]
    x = torch.from_numpy(np.asarray(states, dtype=np.float32))
    mean, std = x.mean(dim=0), x.std(dim=0)
    spread = torch.sqrt(std**2 + (mean / 32) ** 2).clamp(min=float(std.median()) / 100 + 1e-12)
    weight = scale / spread
    bias = shift - mean * weight
    with torch.no_grad():
        head.dense.weight.copy_(torch.diag(weight).to(head.dense.weight))
        head.dense.bias.copy_(bias.to(head.dense.bias))
    return activation(x * weight + bias).numpy()


def probe_activation(model: Any) -> torch.nn.Module | None:
    """What ``probe_layer``'s layer reads is this of the pooled vector (None: the pooled vector itself)."""
    head = model.classifier
    return None if isinstance(head, torch.nn.Linear) else dense_head_activation(head)


@torch.inference_mode()
def head_inputs(model: Any, encodings: list[list[int]], pad_id: int, batch_size: int, precision: str,
                attention: str | None = None, layer: torch.nn.Module | None = None) -> np.ndarray:
    """What the classifier layer (or ``layer``, e.g. ``probe_layer``'s) reads for each text (its input,
    dropout off), in input order: the pooled vector for BERT-style heads. One worker, so the hook sees batches
    in the order they are yielded."""
    from lightft.inference import forward_batches, put_rows

    captured: list[torch.Tensor] = []
    hook = (layer or model.classifier).register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    out: np.ndarray | None = None
    try:
        for idx, _, _ in forward_batches(model, encodings, pad_id, batch_size, precision, "head inputs (train)",
                                         attention=attention):
            out = put_rows(out, idx, captured.pop().float().reshape(len(idx), -1).cpu().numpy(), len(encodings))
    finally:
        hook.remove()
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def init_head_from_probe(model: Any, features: np.ndarray, labels: list[Any], seed: int,
                         temperature: float = 1.0, layer: torch.nn.Linear | None = None) -> float:
    """Set ``model``'s Linear classifier (or ``layer``) to a logistic regression fitted on ``features`` (that
    layer's inputs for the training texts); returns the probe's training accuracy. The softmax of the new
    logits equals the regression's probabilities (at ``temperature`` 1; else the softmax of its logits /
    ``temperature``). Multi-label (``labels`` are id tuples): one regression per label (``one_vs_rest``), each
    label's sigmoid its regression's probability; the accuracy is subset accuracy at 0.5."""
    head = layer if layer is not None else model.classifier
    k, dim = head.out_features, features.shape[1]
    from lightft.linear import fit, logistic_regression, one_vs_rest
    from lightft.metrics import is_label_sets, multi_hot

    if is_label_sets(labels):
        y = multi_hot(labels, k)
        weight, bias = one_vs_rest(features, y, seed)
        accuracy = float(((features @ weight.T + bias >= 0) == y.astype(bool)).all(1).mean())
    else:
        y = np.asarray(labels)
        clf = fit(logistic_regression(seed), features, y)  # the linear-probe baseline's regression
        weight, bias = np.zeros((k, dim), dtype=np.float32), np.zeros(k, dtype=np.float32)
        classes = np.asarray(clf.classes_)
        if len(classes) == 2 and clf.coef_.shape[0] == 1:  # binary: one score z, softmax([-z/2, z/2]) = sigmoid(z)
            weight[classes[0]], weight[classes[1]] = -clf.coef_[0] / 2, clf.coef_[0] / 2
            bias[classes[0]], bias[classes[1]] = -clf.intercept_[0] / 2, clf.intercept_[0] / 2
        else:
            weight[classes], bias[classes] = clf.coef_, clf.intercept_
        absent = np.setdiff1d(np.arange(k), classes)
        if len(absent):  # a class with no training text: never predicted by the start, as by the probe
            bias[absent] = bias[classes].min() - 20.0
        accuracy = float(clf.score(features, y))
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight / temperature))
        head.bias.copy_(torch.from_numpy(bias / temperature))
    return accuracy


def supports_probe_init(model: Any) -> bool:
    """A Linear classifier, or a dense -> activation -> out_proj head whose activation is known (and, under
    [CLS] pooling, has a near-linear range ``calibrate_dense`` uses, on a square dense layer): ``probe_layer``."""
    head = getattr(model, "classifier", None)
    if isinstance(head, torch.nn.Linear):
        return True
    if _head_kind(model) != "features":
        return False
    activation = dense_head_activation(head)
    if pooling_of(model) == "mean":
        return activation is not None
    return type(activation) in _NEAR_LINEAR and head.dense.in_features == head.dense.out_features
