"""Model cards that travel with the weights, and publishing an adapter to the Hugging Face Hub.

``lightft run``/``train`` write ``adapter/README.md`` in the Hub's model-card format (YAML metadata: base
model, library, pipeline tag, tags and the test results as ``model-index``; then labels, results with
intervals, training settings, intended use and limitations, how to load it), built with
``huggingface_hub.ModelCard`` from ``templates/model_card.md``. The merged export gets its own card.
``push`` uploads an adapter folder with ``huggingface_hub``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightft import rundir
from lightft.errors import LightftError
from lightft.report import MODEL_KEYS, md_table, md_text, model_header, model_rows

TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"

USAGE = {
    "mean-head": """```bash
pip install lightft
lightft predict RUN_DIR "a text to classify"
```

Its head reads the L2-normalised mean of the token states (`classifier_pooling: mean` in `config.json`),
which `AutoModelForSequenceClassification` alone does not compute; lightft's README, "Loading an adapter
without lightft", shows the pooling in a few lines of plain `transformers`.""",
    "peft": """```bash
pip install lightft
lightft predict RUN_DIR "a text to classify"      # or: lightft serve name=RUN_DIR
```

With plain `transformers` + `peft` (no lightft): load the base model with this folder's `config.json`
(label names), then `PeftModel.from_pretrained(model, THIS_FOLDER)`; lightft's README, "Loading an adapter
without lightft", has the code, including the mean-pooled head (`classifier_pooling: mean` in
`config.json`).""",
    "transformers": """```python
from transformers import pipeline

# truncation=True: keep each text's first model_max_length tokens (the run's max_length; a run that read
# head+tail or windows read long texts differently); without it a text past 512 tokens fails
classify = pipeline("text-classification", model="THIS_FOLDER", truncation=True)
classify("a text to classify")
```""",
    "sentence-transformers": """```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("THIS_FOLDER")
logits = model.encode(["a text to classify"])   # one score per label; labels in config.json (id2label)
```""",
}


def _looks_local(name: str) -> bool:
    """Path-like (absolute, relative, home, a file name or deeper than owner/name) or present on this disk."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).suffix.lower() in (
        ".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt") or Path(name).exists()


def hub_id(name: str) -> str | None:
    """``name`` where it names a Hub repository, None where it is a local folder or file (never shown)."""
    return None if _looks_local(name) else name


def data_name(source: str) -> str:
    """A short name for ``data.source`` that names no local path: a file's stem (its folder's name when the
    stem says nothing, as in ``long/data.csv``), a folder's name, or a Hub dataset id as is."""
    path = Path(source)
    if path.is_file():
        return path.resolve().parent.name if path.stem.lower() in ("data", "train", "dataset", "all") else path.stem
    return path.resolve().name if _looks_local(source) else source


def _read_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    import yaml

    summary = rundir.read_json(run_dir / "summary.json")
    labels = rundir.read_json(run_dir / "labels.json")
    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    evaluations = {}
    for key in MODEL_KEYS:
        path = run_dir / "metrics" / f"{key}.json"
        if path.is_file():
            evaluations[key] = rundir.read_json(path)
    comparisons_file = run_dir / "metrics" / "comparisons.json"
    comparisons = rundir.read_json(comparisons_file) if comparisons_file.is_file() else {}
    return summary, labels, config, {"evaluations": evaluations, "comparisons": comparisons}


def model_card(run_dir: Path, library: str = "peft") -> str:
    """The model card of a complete (or just finished) run, for its adapter (``library`` peft) or for its
    merged export (``transformers`` or ``sentence-transformers``)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    run_dir = Path(run_dir)
    summary, labels, config, scores = _read_run(run_dir)
    evaluations = scores["evaluations"]
    tuned = evaluations.get("finetuned", {})
    base = str(summary["model"])
    # decided when the run was made (summary.json); runs from before: by the look of the name
    hub_base = summary["base_model_hub_id"] if "base_model_hub_id" in summary else hub_id(base)
    dataset = str(config.get("data", {}).get("source", "data"))
    dataset_name = summary.get("data_name") or data_name(dataset)
    results = [EvalResult(task_type="text-classification", dataset_type=dataset_name, dataset_name=dataset_name,
                          dataset_split="test", metric_type=metric, metric_name=title, metric_value=tuned[metric])
               for metric, title in (("accuracy", "Subset accuracy" if "micro_f1" in tuned else "Accuracy"),
                                     ("macro_f1", "Macro-F1"), ("micro_f1", "Micro-F1")) if metric in tuned]
    data = ModelCardData(
        # No pipeline tag on the sentence-transformers folder: transformers' pipeline would load it with a new,
        # untrained classifier, and a Hub widget offered by the tag would call that.
        base_model=hub_base, library_name=library,
        pipeline_tag=None if library == "sentence-transformers" else "text-classification",
        tags=["text-classification", "lightft", str(summary["method"])] + (["peft"] if library == "peft" else []),
        model_name=str(summary["name"]), eval_results=results or None,
    )
    counts = labels.get("counts", {}).get("train", {})
    artefact = {"peft": "This folder is a PEFT adapter with its classification head and label names.",
                "transformers": "This folder is a complete transformers checkpoint (an adapter, if the run had "
                                "one, folded into the base weights).",
                "sentence-transformers": "This folder is the merged model as a sentence-transformers pipeline "
                                         "whose output is the label scores. Its classifier reads the mean of "
                                         "the token states, which `AutoModelForSequenceClassification` cannot "
                                         "express: `transformers.pipeline(\"text-classification\")` would load "
                                         "it with a new, untrained classifier, so use the code below."}[library]
    train = config.get("train", {})
    has_intervals = any("ci95" in m for m in evaluations.values())  # none with evaluation.bootstrap_resamples 0
    return ModelCard.from_template(
        data, template_path=str(TEMPLATE), model_name=md_text(summary["name"]), labels=summary["labels"],
        base_model_link=f"[{hub_base}](https://huggingface.co/{hub_base})" if hub_base else
        f"`{md_text(Path(base).name)}` (a local folder)",
        multi_label=summary.get("task") == "multi_label",
        method_name={"lora": "LoRA"}.get(str(summary["method"]), f"`{summary['method']}`"),
        artefact_line=artefact,
        label_rows=[{"id": i, "name": md_text(name), "train": counts.get(name, "")}
                    for i, name in enumerate(summary["labels"])],
        intervals=has_intervals,
        results_table=md_table([h + " [95% CI]" if has_intervals and h in ("accuracy", "subset accuracy",
                                                                            "macro-F1", "micro-F1")
                                else "McNemar p vs fine-tuned" if h == "McNemar p" else h
                                for h in model_header(evaluations)],
                               model_rows(evaluations, scores["comparisons"])),
        data_source=md_text(dataset_name), seed=config.get("seed"), method=summary["method"],
        trainable_params=f"{summary['trainable_params']:,}", total_params=f"{summary['total_params']:,}",
        peft=json.dumps(config.get("peft", {})), pooling=summary.get("pooling"), head_init=summary.get("head_init"),
        truncation=summary.get("truncation"), max_length=summary.get("max_length"),
        epochs=summary.get("epochs_trained", train.get("epochs")),
        batch_size=summary.get("batch_size") or train.get("batch_size"),
        stopped_early=summary.get("stopped_early", False), epochs_planned=summary.get("epochs_planned"),
        learning_rate=train.get("learning_rate"),
        precision=summary.get("precision"), best_epoch=summary.get("best_epoch"),
        train_seconds=summary.get("train_seconds"), device=summary.get("device"),
        train_samples=summary.get("train_samples"), validation_samples=summary.get("validation_samples"),
        test_samples=summary.get("test_samples"),
        usage=(USAGE["mean-head"] if library == "transformers" and summary.get("pooling") == "mean"
               else USAGE[library]) + _multi_label_note(summary, tuned, library) + _threshold_note(tuned)
        + _prompt_note(summary.get("method", ""), summary.get("pooling")),
    ).content


def _prompt_note(method: str, pooling: str | None) -> str:
    """Virtual prompt tokens under a mean head: the plain-transformers pooling recipe leaves them out."""
    if pooling != "mean" or method not in ("prompt_tuning", "p_tuning"):
        return ""
    return (f"\n\n`{method}` prepends virtual tokens that this mean head averages with the text's; the README's "
            "plain-`transformers` pooling lines leave them out and give other scores: load this run with lightft.")


def _threshold_note(tuned: dict[str, Any]) -> str:
    """A binary model with a tuned threshold: argmax of the scores is not its decision."""
    cut = tuned.get("threshold")
    if not cut:
        return ""
    return (f"\n\nDecision: '{md_text(cut['positive_label'])}' when its probability (softmax of the two logits) "
            f"reaches {cut['value']:.4f}, a threshold tuned on the validation split; not argmax.")


def _multi_label_note(summary: dict[str, Any], tuned: dict[str, Any], library: str) -> str:
    """How a multi-label model's scores become labels, for this artefact, with the thresholds tuned on
    validation."""
    if summary.get("task") != "multi_label":
        return ""
    cut = tuned.get("thresholds") or {}
    listed = ", ".join(f"{md_text(n)} {t:.3f}" for n, t in cut.items())
    scores = {
        "transformers": "`pipeline(\"text-classification\", model=THIS_FOLDER, top_k=None, truncation=True)` "
                        "returns every label's sigmoid score",
        "sentence-transformers": "apply a sigmoid to each of `encode()`'s outputs (they are the labels' logits)",
        "peft": "apply a sigmoid to each of the classifier's logits",
    }[library]
    if library == "transformers" and summary.get("pooling") == "mean":
        scores = "apply a sigmoid to each of the classifier's logits"
    fallback = ("several labels; one that reaches no threshold gets its highest-scoring label (every training "
                "text had a label)" if tuned.get("at_least_one") else "several labels or none")
    return ("\n\nMulti-label (`problem_type: multi_label_classification`): each label has its own score; "
            f"{scores}. A text gets every label whose score reaches that label's threshold, so it may get "
            f"{fallback}. Thresholds chosen on the validation split: {listed or '0.5 each'}.")


def write_model_card(run_dir: Path, folder: Path, library: str | None = None) -> Path:
    """Write ``folder/README.md`` (replacing PEFT's empty placeholder card in an adapter folder). ``library``
    None: ``peft`` for a PEFT adapter folder, ``transformers`` for the full model that ``method: full`` or
    ``head`` saves."""
    folder = Path(folder)
    if library is None:
        library = "peft" if (folder / "adapter_config.json").is_file() else "transformers"
    path = folder / "README.md"
    rundir.atomic_write_text(path, model_card(run_dir, library))
    return path


def push(run_dir: Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload a complete run's adapter folder (weights, config with label names, tokenizer, model card) to the
    Hub repository ``repo_id``; returns its URL. One-line errors when the Hub cannot be reached."""
    from huggingface_hub import HfApi

    run_dir = Path(run_dir)
    rundir.require_complete(run_dir)
    adapter = run_dir / "adapter"
    write_model_card(run_dir, adapter)  # runs from before cards hold PEFT's empty placeholder
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(repo_id=repo_id, folder_path=str(adapter), repo_type="model",
                          commit_message=f"lightft: adapter of run {run_dir.name}")
    except Exception as exc:  # noqa: BLE001 - offline, auth, network and Hub errors all become one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise LightftError(f"cannot push to the Hugging Face Hub repository {repo_id}: {first[:300]}") from None
    return str(url)
