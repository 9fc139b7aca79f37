"""Shared fixtures: tiny tokenizers, tiny random models of each architecture, small synthetic datasets.

Everything is built here from configs, offline, in seconds; the real default model is used only by the
tests marked `integration`.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

# `make test` runs the suite in pytest-xdist workers (-n auto). Each worker gets its share of the cores, so
# torch's thread pools (and any subprocess a test starts, which inherits the environment) do not
# oversubscribe them: two 2-thread pools on 2 cores spin against each other and run slower than one.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(max(1, (os.cpu_count() or 1) // _WORKERS))


def pytest_configure(config: pytest.Config) -> None:
    if _WORKERS > 1:
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with the slowest tests first (the integration test, then by how many tests are marked slow), so
    xdist starts the long ones at once and the many quick files fill the end, instead of one long file running
    alone there. `make test` passes --no-loadscope-reorder: xdist's own order (most tests first) put the
    one-test integration file last."""
    def weight(item: pytest.Item) -> int:
        return 100 if item.get_closest_marker("integration") else 1 if item.get_closest_marker("slow") else 0

    per_file: dict[Path, int] = {}
    for item in items:
        per_file[item.path] = per_file.get(item.path, 0) + weight(item)
    items.sort(key=lambda item: -per_file[item.path])  # stable: order within a file kept


CLASS_WORDS = {
    "sport": ["goal", "match", "team", "coach", "league", "score"],
    "tech": ["chip", "software", "phone", "network", "robot", "data"],
    "politics": ["vote", "election", "minister", "party", "law", "tax"],
}
FILLER = ["the", "a", "of", "and", "to", "in", "is", "was", "on", "for", "with", "said", "new", "year"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_vocab() -> dict[str, int]:
    words = SPECIALS + FILLER + [w for ws in CLASS_WORDS.values() for w in ws]
    return {w: i for i, w in enumerate(words)}


def make_texts(n_per_class: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for label, words in CLASS_WORDS.items():
        for _ in range(n_per_class):
            n = rng.randint(6, 24)
            tokens = [rng.choice(words) if rng.random() < 0.5 else rng.choice(FILLER) for _ in range(n)]
            rows.append((" ".join(tokens), label))
    rng.shuffle(rows)
    return rows


def tiny_tokenizer():
    """A WordPiece tokenizer over ~35 words (transformers 5 takes the vocabulary as a dict)."""
    from transformers import BertTokenizer

    return BertTokenizer(vocab=make_vocab(), do_lower_case=True)


def tiny_config(arch: str, vocab_size: int):
    import transformers as tf

    common = dict(vocab_size=vocab_size, pad_token_id=0, max_position_embeddings=130)
    if arch == "bert":
        return tf.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             **common)
    if arch == "roberta":
        return tf.RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, **common)
    if arch == "xlm-roberta":
        return tf.XLMRobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64, **common)
    if arch == "distilbert":
        return tf.DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, **common)
    if arch == "deberta-v2":
        return tf.DebertaV2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, **common)
    if arch == "electra":
        return tf.ElectraConfig(embedding_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, **common)
    raise ValueError(arch)


ARCHITECTURES = ["bert", "roberta", "xlm-roberta", "distilbert", "deberta-v2", "electra"]


def build_tiny_model(root: Path, arch: str = "bert") -> Path:
    """Save a tiny random *encoder* (no classification head) with a tokenizer, like a Hub checkpoint."""
    import torch
    from transformers import AutoModel

    out = root / f"tiny-{arch}"
    if (out / "config.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    model = AutoModel.from_config(tiny_config(arch, len(tok)))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_tiny_sentence_model(root: Path, arch: str = "bert") -> Path:
    """A tiny encoder laid out like a sentence-transformers checkpoint that declares mean pooling (as the
    default model does), so ``model.pooling: auto`` gives it a mean-pooled head."""
    import json
    import shutil

    out = root / f"tiny-st-{arch}"
    if (out / "config.json").exists():
        return out
    shutil.copytree(build_tiny_model(root, arch), out)
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}))
    return out


@pytest.fixture(scope="session")
def tiny_sentence_bert(tiny_models: Path) -> Path:
    return build_tiny_sentence_model(tiny_models, "bert")


@pytest.fixture(scope="session")
def finished_mean_run(tiny_sentence_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete tiny run whose head is mean-pooled and starts from a linear probe (the default model's path)."""
    tmp = tmp_path_factory.mktemp("finished-mean")
    cfg = write_config(tmp, tiny_run_config(tiny_sentence_bert, write_class_folder(tmp / "corpus"), tmp / "run",
                                            name="tiny-mean"))
    result = invoke("run", cfg, "train.epochs=2")
    assert result.exit_code == 0, result.output
    return tmp / "run"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_bert(tiny_models: Path) -> Path:
    return build_tiny_model(tiny_models, "bert")


def write_class_folder(root: Path) -> Path:
    for i, (text, label) in enumerate(make_texts(20)):
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{i:03d}.txt").write_text(text, encoding="utf-8")
    return root


def data_cfg(source, **kw):
    """A DataConfig for the small test sets: 12 test and 6 validation texts unless given."""
    from lightft.config import DataConfig

    kw.setdefault("test_size", 12)
    kw.setdefault("validation_size", 6)
    return DataConfig(source=str(source), **kw)


def write_rows(path: Path, rows, fmt: str) -> Path:
    if fmt in ("csv", "tsv"):
        import csv

        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, delimiter="\t" if fmt == "tsv" else ",")
            w.writerow(["body", "topic"])
            w.writerows(rows)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps({"body": t, "topic": y}) + "\n" for t, y in rows), encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps([{"body": t, "topic": y} for t, y in rows]), encoding="utf-8")
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"body": [t for t, _ in rows], "topic": [y for _, y in rows]}), path)
    return path


@pytest.fixture()
def class_folder(tmp_path: Path) -> Path:
    return write_class_folder(tmp_path / "corpus")


def invoke(*args):
    """Run the lightft CLI in-process."""
    from typer.testing import CliRunner

    from lightft.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def write_config(tmp_path: Path, cfg: dict) -> Path:
    import yaml

    path = tmp_path / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def finished_run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One complete tiny `lightft run`, shared by the tests that only read it."""
    tmp = tmp_path_factory.mktemp("finished")
    cfg = write_config(tmp, tiny_run_config(tiny_bert, write_class_folder(tmp / "corpus"), tmp / "run"))
    result = invoke("run", cfg, "train.epochs=2")
    assert result.exit_code == 0, result.output
    return tmp / "run"


@pytest.fixture()
def csv_file(tmp_path: Path) -> Path:
    import csv

    path = tmp_path / "data.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(make_texts(20))
    return path


def tiny_run_config(model_dir: Path, data: Path, out: Path, **extra) -> dict:
    """A complete experiment config for the tiny model, as a dict (tests pass overrides by key)."""
    cfg = {
        "name": "tiny",
        "output_dir": str(out),
        "seed": 7,
        "model": {"name": str(model_dir), "max_length": 32},
        "data": {"source": str(data), "test_size": 12, "validation_size": 9},
        # min_steps 0: these tests check plumbing, and the default floor (120 steps) would train 10 epochs here
        "train": {"epochs": 2, "min_steps": 0, "batch_size": 8, "learning_rate": 5e-3, "precision": "fp32",
                  "log_every": 2},
    }
    for key, value in extra.items():
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return cfg


def table_labels(output: str) -> list[str]:
    """The label column of the table `lightft predict` prints for texts on the command line."""
    rows = [line.split("│")[1:-1] for line in output.splitlines() if line.startswith("│")]
    return [cells[1].strip() for cells in rows]
