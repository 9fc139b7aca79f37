"""The ``lightft`` command: a thin layer over one library function per verb.

User errors print one line (``error: ...``) and exit with code 2; Ctrl-C exits with 130.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from lightft.errors import LightftError
from lightft.rundir import is_main_process
from lightft.sweep import DEFAULT_METHODS

log = logging.getLogger("lightft")

app = typer.Typer(
    name="lightft",
    help="Lightweight fine-tuning of Transformer encoders for text classification: measure the pre-trained "
    "model, adapt it with LoRA (or another PEFT method), and show how much better it got.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # a docstring's line breaks join into paragraphs, as in Markdown
    add_completion=False,
)


@app.callback()
def _process_setup() -> None:
    """Process-wide settings belong to the program, not to library calls: the glibc allocator setting
    (``runtime.reuse_freed_memory``) is applied here, once, before any command runs."""
    from lightft.runtime import reuse_freed_memory

    reuse_freed_memory()

OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(help="Config overrides as key.sub=value, e.g. train.epochs=5 peft.r=16 (values are YAML).",
                   show_default=False),
]
ConfigArg = Annotated[Path, typer.Argument(help="YAML experiment config, e.g. configs/bbc-news.yaml.")]
AllowPickleOpt = Annotated[bool, typer.Option(
    "--allow-pickle", help="Also read pickle (.bin) checkpoints. Off by default: unpickling can run code.")]
TrustRemoteCodeOpt = Annotated[bool, typer.Option(
    "--trust-remote-code", help="Let transformers import Python code shipped with the model or run (auto_map). "
    "Off by default: a run directory is data, and its own config never turns this on.")]
TrustModelCodeOpt = Annotated[bool, typer.Option(
    "--trust-remote-code", help="Let transformers import Python code shipped with the model (auto_map), as "
    "model.trust_remote_code: true does. Off by default.")]
ResumeOpt = Annotated[Path | None, typer.Option(
    "--resume", help="Continue an interrupted run directory of this same config from its last checkpoint.")]
OverwriteRunOpt = Annotated[bool, typer.Option(
    "--overwrite", help="Replace a complete (or resumable) run in the output folder. Without it such a folder "
    "is never emptied.")]
OverwriteStudyOpt = Annotated[bool, typer.Option(
    "--overwrite", help="Replace a complete or interrupted sweep or curve in the output folder (an interrupted "
    "one with finished results is otherwise refused, so that --resume can keep them).")]
ResumeStudyOpt = Annotated[Path | None, typer.Option(
    "--resume", help="Continue an interrupted sweep or curve folder of this same config: what it finished (a "
    "method; a budget and seed) is kept, the rest is trained.")]
OutputDirOpt = Annotated[
    Path | None, typer.Option("--output-dir", "-o", help="Run directory to write (default: runs/NAME, the config's "
                                                          "name).")
]


class _SourceFormatter(logging.Formatter):
    """lightft's own lines as ``lightft: ...``; a library's warning under the library's name, so that its advice
    (onnxruntime's on an image-classification example, say) is not read as lightft's."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.name == "lightft" or record.name.startswith("lightft."):
            return f"lightft: {message}"
        source = record.name
        if source == "root":  # logged with logging.warning(...): name the package the call came from
            parts = Path(record.pathname).parts
            packages = [i for i, part in enumerate(parts) if part in ("site-packages", "dist-packages")]
            source = parts[packages[-1] + 1] if packages and packages[-1] + 1 < len(parts) else record.module
        return f"{source} ({record.levelname.lower()}): {message}"


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_SourceFormatter("%(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("lightft").setLevel(logging.INFO)  # libraries stay at WARNING (accelerate logs each save)
    # Libraries' advice to "train this model" and similar is noise here; lightft reports what matters.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(transformers|peft|torch|accelerate)")
    # Fast tokenizers encode a batch on every core. lightft never forks (its one helper process is spawned) and
    # never tokenizes while a model computes, so the threads compete with nothing; saying "true" also silences
    # the tokenizers library's warning at a fork (on the 16-core host of bench/README.md's H100, tokenising
    # the BBC splits took ~3 s on one thread).
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Report LightftError as one line with exit code 2, and Ctrl-C with exit code 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _setup_logging()
        try:
            return func(*args, **kwargs)
        except LightftError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _load(config: Path, overrides: list[str] | None, allow_pickle: bool = False,
          trust_remote_code: bool = False) -> tuple[Any, list[str]]:
    """The config with the overrides, and the flags as the overrides they stand for (model.allow_pickle,
    model.trust_remote_code), so that a resume hint repeats them."""
    from lightft.config import load_config

    flags = [f"model.{key}=true" for key, on in (("allow_pickle", allow_pickle),
                                                 ("trust_remote_code", trust_remote_code)) if on]
    every = [*(overrides or []), *flags]
    return load_config(config, every), every


def _experiment(cfg: Any, verb: str, config: Path, overrides: list[str] | None, output_dir: Path | None,
                resume: Path | None, with_baselines: bool, overwrite: bool = False) -> Path:
    """Run the experiment; on Ctrl-C during training say, on one line, how to resume (exit 130)."""
    import shlex

    from lightft.experiment import default_output_dir, run_experiment
    from lightft.train import TrainingInterrupted

    try:
        return run_experiment(cfg, output_dir, with_baselines=with_baselines, command=verb, resume=resume,
                              overwrite=overwrite)
    except TrainingInterrupted as exc:
        out = resume or output_dir or default_output_dir(cfg)
        again = shlex.join(["lightft", verb, str(config), *(overrides or []), "--resume", str(out)])
        typer.echo(f"{exc}; checkpoint saved. Resume with: {again}", err=True)
        raise typer.Exit(130) from None


@app.command()
@user_errors
def run(config: ConfigArg, overrides: OverridesArg = None, output_dir: OutputDirOpt = None,
        allow_pickle: AllowPickleOpt = False, trust_remote_code: TrustModelCodeOpt = False,
        resume: ResumeOpt = None, overwrite: OverwriteRunOpt = False) -> None:
    """Run the whole experiment: baseline, LoRA fine-tune, test evaluation, comparison report.

    Writes a self-describing run directory (config, labels, adapter, metrics, summary, report)."""
    from lightft.report import print_run_summary

    cfg, overrides = _load(config, overrides, allow_pickle, trust_remote_code)
    out = _experiment(cfg, "run", config, overrides, output_dir, resume, with_baselines=True, overwrite=overwrite)
    if is_main_process():
        print_run_summary(out)


@app.command()
@user_errors
def train(config: ConfigArg, overrides: OverridesArg = None, output_dir: OutputDirOpt = None,
        allow_pickle: AllowPickleOpt = False, trust_remote_code: TrustModelCodeOpt = False,
        resume: ResumeOpt = None, overwrite: OverwriteRunOpt = False) -> None:
    """Fine-tune and evaluate only the adapted model (no baselines)."""
    from lightft.report import print_run_summary

    cfg, overrides = _load(config, overrides, allow_pickle, trust_remote_code)
    out = _experiment(cfg, "train", config, overrides, output_dir, resume, with_baselines=False,
                      overwrite=overwrite)
    if is_main_process():
        print_run_summary(out)


@app.command()
@user_errors
def evaluate(
    target: Annotated[str, typer.Argument(help="A run directory, or a model name/path (evaluated with a fresh, "
                                               "untrained head).")],
    data: Annotated[str, typer.Option("--data", help="Labelled data: folder of CLASS/*.txt, CSV/TSV/JSON/"
                                                     "JSONL/Parquet file, saved dataset or Hub id.")],
    text_column: Annotated[str | None, typer.Option(help="Column holding the text (default: a run's own "
                                                   "data.text_column where the data has it, else 'text').",
                                                   show_default=False)] = None,
    label_column: Annotated[str | None, typer.Option(help="Column holding the label (default: a run's own "
                                                    "data.label_column where the data has it, else 'label').",
                                                    show_default=False)] = None,
    split: Annotated[str, typer.Option(help="Split to read from a Hub dataset or saved DatasetDict.")] = "test",
    labels: Annotated[str | None, typer.Option(help="Comma-separated label names fixing the ids (model "
                                                    "targets only).")] = None,
    max_length: Annotated[int | None, typer.Option(
        help="Tokens per text (model targets; runs use their own). Default: the model's limit, at most 512.",
        show_default=False)] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the metrics JSON (an earlier "
                                         "evaluate's metrics there are replaced; any other file only with "
                                         "--overwrite).")] = Path("metrics.json"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --output even if it is not an "
                                            "earlier evaluate's metrics.")] = False,
    quoting: QuotingOpt = "auto",
    label_separator: Annotated[str | None, typer.Option(
        help="Multi-label data written as one string per text, e.g. '|' for 'business|politics' (as "
             "data.label_separator).")] = None,
    allow_pickle: AllowPickleOpt = False,
    trust_remote_code: TrustRemoteCodeOpt = False,
) -> None:
    """Evaluate a run or a pre-trained model on labelled data; print metrics and write them as JSON.
    Multi-label (a multi-label run, or label lists in the data): accuracy is subset accuracy."""
    from lightft.evaluate import evaluate_target
    from lightft.rundir import atomic_write_json, check_writable_file, refuse_inside_run

    _check_quoting(quoting)
    if max_length is not None and max_length < 8:
        raise LightftError(f"--max-length must be at least 8 tokens, got {max_length}")
    refuse_inside_run(output, "metrics")  # never a run's own summary.json or metrics/
    check_writable_file(output, "--output", overwrite=overwrite or _earlier_metrics(output))
    metrics = evaluate_target(target, data, text_column=text_column, label_column=label_column, split=split,
                              labels=labels.split(",") if labels else None, max_length=max_length, quoting=quoting,
                              label_separator=label_separator, allow_pickle=allow_pickle,
                              trust_remote_code=trust_remote_code)
    atomic_write_json(output, metrics | {"written_by": EVALUATE_MARK})
    micro = f", micro-F1 {metrics['micro_f1']:.4f}" if "micro_f1" in metrics else ""
    kind = "subset accuracy" if "micro_f1" in metrics else "accuracy"
    typer.echo(f"{target} on {data}: {kind} {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}{micro} "
               f"({metrics['n']} texts); metrics written to {output}")


EVALUATE_MARK = "lightft evaluate"  # metrics files evaluate writes say so, and only they are replaced unasked


def _earlier_metrics(path: Path) -> bool:
    """Whether ``path`` holds metrics an earlier evaluate wrote (replaced without asking, as a re-run would)."""
    import json

    if not path.is_file() or path.stat().st_size > 10_000_000:
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and data.get("written_by") == EVALUATE_MARK


QuotingOpt = Annotated[str, typer.Option(
    help="Quotes in .csv/.tsv input: auto (RFC 4180 for .csv, none for .tsv), minimal (RFC 4180) or none (a "
         "quote is an ordinary character), as data.quoting.")]


def _check_quoting(quoting: str) -> None:
    from lightft.config import QUOTINGS

    if quoting not in QUOTINGS:
        raise LightftError(f"--quoting must be one of {', '.join(QUOTINGS)}, got '{quoting}'")


@app.command()
@user_errors
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A complete run directory (or an exported ONNX folder).")],
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to classify.", show_default=False)] = None,
    input: Annotated[Path | None, typer.Option("--input", "-i", help="CSV/TSV/JSONL/Parquet file of texts, read "
                                               "in chunks (memory does not grow with the file).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output file, same format as --input, "
                                                "written as the job goes.")] = None,
    # defaults in help are in parentheses, so they read apart from typer's own "[default: ...]"
    text_column: Annotated[str | None, typer.Option(
        help="Column of --input holding the text (default: the run's data.text_column when --input has it, "
             "else 'text').", show_default=False)] = None,
    id_column: Annotated[str | None, typer.Option(help="Column of --input carried into the output to identify "
                                                  "each row (default: 'id' if the input has it, else the row "
                                                  "number as 'row').",
                                                  show_default=False)] = None,
    probabilities: Annotated[bool, typer.Option("--probabilities", help="Add every class probability "
                                                "(pred_prob_LABEL; JSONL: pred_probabilities).")] = False,
    keep_columns: Annotated[bool, typer.Option("--keep-columns", help="Carry every input column into the output, "
                                               "not just the id.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first row that cannot be classified "
                                         "(checked before any work) instead of writing it to OUTPUT's "
                                         "errors file (OUTPUT.errors.jsonl).")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted predict of the same input "
                                         "and settings from its last finished chunk.")] = False,
    chunk_size: Annotated[int, typer.Option(help="Rows per chunk: the unit of memory, of progress kept "
                                            "on interruption, and of sharding across processes.")] = 1024,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="With an ONNX folder: run its int8 graph "
                                       "(`lightft export --onnx OUT --int8`).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --output (and its errors "
                                            "file, and an interrupted predict's chunks).")] = False,
    quoting: QuotingOpt = "auto",
    allow_pickle: AllowPickleOpt = False,
    trust_remote_code: TrustRemoteCodeOpt = False,
) -> None:
    """Classify texts given on the command line, or a whole file with --input/--output.

    A file is streamed: each chunk's predictions are written as it ends, an interrupted job continues with
    --resume, rows that cannot be classified go to OUTPUT.errors.jsonl with their row number and reason,
    and `accelerate launch --multi_gpu --num_processes N -m lightft predict ...` shards the chunks across N processes
    (GPUs or CPU processes) into one output in input order. The output has the id column (or `row`),
    pred_label and pred_score (a multi-label run: pred_labels, the set). RUN_DIR may also be a folder written
    by `lightft export --onnx`."""
    from lightft.predict import check_predict_paths, predict_file
    from lightft.runtime import process_shard

    if bool(input) != bool(output):
        raise LightftError("--input and --output go together")
    _check_predict_texts(run_dir, texts, input)
    _check_quoting(quoting)
    shard = process_shard()
    if input and output:
        check_predict_paths(input, output, overwrite, resume)
    clf = _classifier(run_dir, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, device=shard.device,
                      int8=int8)
    if input and output:
        text_column = text_column or _input_text_column(clf, input, quoting)
        done = predict_file(clf, input, output, text_column, overwrite=overwrite, quoting=quoting, resume=resume,
                            progress=not quiet, id_column=id_column, keep_columns=keep_columns,
                            probabilities=probabilities, strict=strict, chunk_size=chunk_size,
                            model_id=_model_identity(run_dir, int8), shard=shard)
        if shard.index == 0:
            rows = "row" if done.skipped == 1 else "rows"
            skipped = f"; {done.skipped} {rows} could not be classified: {done.errors}" if done.skipped else ""
            resumed = f" ({done.resumed} done before --resume)" if done.resumed else ""
            typer.echo(f"classified {done.rows} row{'' if done.rows == 1 else 's'}{resumed}; written to {output}"
                       f"{skipped}")
    if texts and shard.index == 0:
        from lightft.predict import warn_if_unread

        warn_if_unread(clf, texts, "the texts given")
        _print_predictions(clf, texts)


_FLAG_WORDS = {"true", "false"}  # what a user types after a flag by habit ("no" or "yes" can be a real text)


def _check_predict_texts(run_dir: Path, texts: list[str] | None, input: Path | None) -> None:
    """Texts on the command line or a file, not both; a text that names a file, or reads like a flag's value
    (`--overwrite true`), is a mistake a user makes, named before any model is loaded."""
    from lightft.predict import check_predict_text
    from lightft.readers import TEXT_SUFFIXES

    if str(run_dir).strip().lower() in _FLAG_WORDS and not run_dir.exists():  # `-o out.csv --overwrite true RUN`
        raise LightftError(f"run directory not found: {run_dir} (a flag takes no value: '{run_dir}' was read as "
                           "RUN_DIR)")
    if not texts and not input:
        raise LightftError("give texts to classify, or --input FILE --output FILE")
    flag_values = [t for t in texts or [] if t.strip().lower() in _FLAG_WORDS]
    hint = f" (a flag takes no value: '{flag_values[0]}' was read as a text)" if flag_values else ""
    if texts and input:
        raise LightftError(f"give texts on the command line or --input FILE, not both: {len(texts)} text "
                           f"argument{'s' if len(texts) > 1 else ''} came with --input{hint}")
    if flag_values:
        log.warning("text argument '%s' is classified as a text; if it was meant for a flag, flags take no value "
                    "(--quiet, not --quiet %s)", flag_values[0], flag_values[0])
    for i, text in enumerate(texts or [], start=1):
        check_predict_text(text, f"text argument {i}")
        if Path(text).suffix.lower() in TEXT_SUFFIXES and os.path.isfile(text):  # isfile: False on any OSError
            raise LightftError(f"text argument {i} is the file {text}: classify a file's texts with --input "
                               f"{text} --output OUT")


def _print_predictions(clf: Any, texts: list[str]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table()
    table.add_column("text")
    table.add_column("label")
    for name in clf.label_names:
        table.add_column(escape(name), justify="right")
    from lightft.windows import UNREAD_REASON

    unread = clf.unread(texts)
    if unread:
        raise LightftError(f"text argument {unread[0] + 1} {UNREAD_REASON}")
    for text, pred in zip(texts, clf.predict(texts), strict=True):
        short = text if len(text) <= 60 else text[:57] + "..."
        label = pred.label if pred.labels is None else (", ".join(pred.labels) or "(none)")
        table.add_row(escape(short), escape(label), *[f"{pred.probabilities[n]:.3f}" for n in clf.label_names])
    Console().print(table)


def _model_identity(path: Path, int8: bool) -> str:
    """The model a predict job used, for its resume manifest: the folder, and the size and modification time
    of its weights (an adapter trained again in place, or the int8 graph instead of fp32, is another model)."""
    if (path / "model.onnx").is_file():
        files = [path / ("model_int8.onnx" if int8 else "model.onnx")]
    else:
        files = sorted((path / "adapter").glob("*.safetensors"))
    stamps = [f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files if f.is_file()]
    return f"{path.resolve()}|{';'.join(stamps)}"


def _input_text_column(clf: Any, input_path: Path, quoting: str) -> str:
    """The column predict reads when --text-column is not given: the one the model was trained on (a run's
    data.text_column, which an ONNX export records too) when the input has it, else 'text', else the one column
    named like a text (``readers.TEXT_ALIASES``, as training reads), with a warning."""
    from lightft.readers import TEXT_ALIASES, named_like
    from lightft.tables import TableReader

    fields = TableReader(input_path, quoting).fields
    column = getattr(clf, "text_column", "text")
    if column in fields or "text" in fields:
        return column if column in fields else "text"
    found = named_like(fields, TEXT_ALIASES)
    if len(found) == 1:
        missing = " or ".join(f"'{c}'" for c in dict.fromkeys((column, "text")))
        log.warning("%s: no column %s; reading '%s' as the text (--text-column to choose another)",
                    input_path, missing, found[0])
        return found[0]
    return "text"  # predict_file names the missing column and the ones there are


def _classifier(path: Path, *, trust_remote_code: bool = False, allow_pickle: bool = False, device: Any = None,
                int8: bool = False) -> Any:
    """A run directory's classifier, or an exported ONNX folder's (``int8``: its quantised graph)."""
    if (path / "model.onnx").is_file():
        from lightft.export import OnnxClassifier

        if int8 and not (path / "model_int8.onnx").is_file():
            raise LightftError(f"{path} has no model_int8.onnx; export it with `lightft export RUN --onnx OUT --int8`")
        return OnnxClassifier(path, "model_int8.onnx" if int8 else "model.onnx")
    if int8:
        raise LightftError("--int8 runs an ONNX export's int8 graph; RUN_DIR is not an ONNX export folder")
    from lightft.predict import Classifier

    return Classifier.from_run(path, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, device=device)


@app.command()
@user_errors
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories to put side by side.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Also write the comparison as Markdown (FILE.md) with a plot (FILE.png) and a "
        "self-contained FILE.html.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace FILE, FILE.html and FILE.png where "
                                            "they exist. Without it an existing file is never replaced.")] = False,
) -> None:
    """Side-by-side table of finished runs, built from their run directories alone."""
    from lightft.report import (
        check_compare_output,
        compare_caveat,
        compare_rows,
        print_compare,
        read_summaries,
        write_compare_reports,
    )

    if output:
        check_compare_output(output, overwrite)  # before the table is printed
    summaries = read_summaries(run_dirs)
    rows, caveat = compare_rows(run_dirs, summaries), compare_caveat(run_dirs, summaries)
    print_compare(rows)
    if caveat:
        typer.echo(f"note: {caveat}")
    if output:
        html = write_compare_reports(rows, output, caveat, overwrite)
        typer.echo(f"written to {output} and {html}")


@contextlib.contextmanager
def _resume_hint(verb: str, config: Path, args: list[str], output_dir: Path | None, resume: Path | None,
                 cfg: Any) -> Iterator[None]:
    """Ctrl-C in a sweep or curve: one line with the command that continues it (exit 130)."""
    import shlex

    from lightft.experiment import study_dir
    from lightft.rundir import MARKER

    try:
        yield
    except KeyboardInterrupt:
        out = study_dir(cfg, verb, output_dir, resume)
        if not (out / MARKER).is_file():  # stopped before the folder was started: nothing to continue
            raise
        again = shlex.join(["lightft", verb, str(config), *args, "--resume", str(out)])
        typer.echo(f"interrupted. Continue with: {again}", err=True)
        raise typer.Exit(130) from None


@app.command()
@user_errors
def sweep(
    config: ConfigArg,
    overrides: OverridesArg = None,
    methods: Annotated[str, typer.Option(help="Comma-separated methods (PEFT methods, full, head); default: "
                                         "every method lightft sweeps.", show_default=False)] = ",".join(
        DEFAULT_METHODS),
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "-o", help="Output folder (default: "
                                                    "runs/NAME-sweep, NAME the config's name).")] = None,
    overwrite: OverwriteStudyOpt = False,
    resume: ResumeStudyOpt = None,
    allow_pickle: AllowPickleOpt = False,
    trust_remote_code: TrustModelCodeOpt = False,
) -> None:
    """Fine-tune once per method on one tokenised dataset; write a leaderboard and a Pareto plot.

    Output goes to runs/NAME-sweep/ (NAME: the config's name) unless --output-dir is given."""
    from lightft.methods import available_methods
    from lightft.sweep import run_sweep

    cfg, overrides = _load(config, overrides, allow_pickle, trust_remote_code)
    chosen = [m.strip().lower() for m in methods.split(",") if m.strip()]
    if not chosen:
        raise LightftError("--methods names no method; e.g. --methods lora,ia3")
    twice = sorted({m for m in chosen if chosen.count(m) > 1})
    if twice:
        raise LightftError(f"--methods names {', '.join(twice)} more than once")
    unknown = [m for m in chosen if m not in available_methods()]
    if unknown:
        raise LightftError(f"unknown method(s): {', '.join(unknown)}; choose from {', '.join(available_methods())}")
    with _resume_hint("sweep", config, [*(overrides or []), "--methods", ",".join(chosen)], output_dir, resume,
                      cfg):
        out = run_sweep(cfg, chosen, output_dir, overwrite=overwrite, resume=resume)
    typer.echo((out / "leaderboard.md").read_text(encoding="utf-8"))
    typer.echo(f"leaderboard: {out / 'leaderboard.md'} and {out / 'leaderboard.html'}")


@app.command()
@user_errors
def tune(
    config: ConfigArg,
    overrides: OverridesArg = None,
    trials: Annotated[int, typer.Option("--trials", "-n", help="Finished trials the study should hold; run "
                                        "again with the same folder to continue or extend it.")] = 20,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "-o", help="Study folder (default: "
                                                    "runs/NAME-tune, NAME the config's name).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start the study in the folder afresh.")] = False,
    allow_pickle: AllowPickleOpt = False,
    trust_remote_code: TrustModelCodeOpt = False,
) -> None:
    """Search hyperparameters with Optuna, scored on the validation split only; write the best as a config.

    The search space is the config's `tune.space` (dotted keys, e.g. train.learning_rate: {low: 1e-4, high:
    2e-3, log: true}; peft.r: {choices: [4, 8, 16]}), by default LoRA's rank, alpha, dropout, the learning rate
    and the epochs. Hopeless trials are pruned after an epoch; the study is kept in OUT/study.db, so an
    interrupted tune continues with the same command. Then: `lightft run OUT/best.yaml` scores the test split."""
    from lightft.tune import run_tune

    cfg, _ = _load(config, overrides, allow_pickle, trust_remote_code)
    out = run_tune(cfg, trials, output_dir, overwrite=overwrite)
    typer.echo((out / "trials.md").read_text(encoding="utf-8"))
    typer.echo(f"best config: {out / 'best.yaml'}  (run it: lightft run {out / 'best.yaml'})")


@app.command()
@user_errors
def curve(
    config: ConfigArg,
    overrides: OverridesArg = None,
    budgets: Annotated[str, typer.Option(help="Labelled training examples per class to try, comma-separated; "
                                         "'all' is the whole training split.")] = "8,16,32,64,128,all",
    seeds: Annotated[int, typer.Option(help="Subsets (and training seeds) per budget.")] = 3,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "-o", help="Output folder (default: "
                                                    "runs/NAME-curve, NAME the config's name).")] = None,
    overwrite: OverwriteStudyOpt = False,
    resume: ResumeStudyOpt = None,
    allow_pickle: AllowPickleOpt = False,
    trust_remote_code: TrustModelCodeOpt = False,
) -> None:
    """How many labels do I need? Fine-tune and train the baselines at growing label budgets.

    Every budget and seed is scored on the same test split; the splits are tokenised and the frozen
    embeddings computed once. Writes curve.csv/json, a table with 95% intervals (curve.md/html) and
    curve.png, and prints the smallest budget within 1 point of the full-data fine-tuned accuracy."""
    from lightft.curve import parse_budgets, run_curve

    chosen = parse_budgets(budgets)
    cfg, overrides = _load(config, overrides, allow_pickle, trust_remote_code)
    with _resume_hint("curve", config, [*(overrides or []), "--budgets", budgets, "--seeds", str(seeds)],
                      output_dir, resume, cfg):
        out = run_curve(cfg, chosen, seeds, output_dir, overwrite=overwrite, resume=resume)
    typer.echo((out / "curve.md").read_text(encoding="utf-8"))
    typer.echo(f"curve: {out / 'curve.md'}, {out / 'curve.html'} and {out / 'curve.png'}")


@app.command()
@user_errors
def export(
    run_dir: Annotated[Path, typer.Argument(help="A complete run directory.")],
    merged: Annotated[Path | None, typer.Option("--merged", help="Folder for the merged model: the adapter folded "
                                                "into the base weights. The architecture's own head: a transformers "
                                                "checkpoint for transformers.pipeline; a mean-pooled head: a "
                                                "sentence-transformers folder whose embeddings are the logits."
                                                )] = None,
    onnx: Annotated[Path | None, typer.Option("--onnx", help="Folder for an ONNX graph + tokenizer, runnable with "
                                              "onnxruntime alone; `lightft predict` accepts it.")] = None,
    int8: Annotated[bool, typer.Option("--int8", help="With --onnx: also a dynamically quantised int8 graph, "
                                       "with its accuracy change and speed-up on the test split.")] = False,
    allow_pickle: AllowPickleOpt = False,
    trust_remote_code: TrustRemoteCodeOpt = False,
) -> None:
    """Export a run's model for use without lightft: merged transformers checkpoint and/or ONNX."""
    from lightft.export import export_merged, export_onnx

    if not merged and not onnx:
        raise LightftError("give --merged OUT and/or --onnx OUT")
    if int8 and not onnx:
        raise LightftError("--int8 goes with --onnx")
    if merged:
        out = export_merged(run_dir, merged, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
        if (out / "modules.json").is_file():  # a mean-pooled head is exported as a sentence-transformers folder
            typer.echo(f"merged model written to {out} (mean-pooled head: a sentence-transformers folder); "
                       f"logits = SentenceTransformer('{out}').encode(texts), label names in {out}/config.json; "
                       "not for transformers.pipeline, which would give it a new, untrained classifier (for "
                       "that, train with model.pooling=cls)")
        else:
            typer.echo(f"merged model written to {out}; load it with "
                       f"transformers.pipeline('text-classification', model='{out}')")
        from lightft.config import load_run_config

        truncation = load_run_config(run_dir).model.truncation
        if truncation in ("windows", "head_tail"):  # the export reads the head of a text, as its loaders do
            typer.echo(f"note: this run reads long texts as {truncation.replace('_', '+')}; the merged model's "
                       "loaders read only the first model.max_length tokens, so on long texts their answers can "
                       "differ from lightft's (export --onnx keeps lightft's reading with `lightft predict`)")
    if onnx:
        report = export_onnx(run_dir, onnx, int8, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
        typer.echo(f"ONNX model written to {onnx / 'model.onnx'}")
        if "int8" in report:
            q = report["int8"]
            typer.echo(f"int8: test accuracy {q['int8']['accuracy']:.4f} vs fp32 {q['fp32']['accuracy']:.4f} "
                       f"({q['accuracy_change']:+.4f}), {q['speedup']:.2f}x the fp32 graph's docs/s "
                       f"({q['test_documents']} test documents)")


@app.command()
@user_errors
def push(
    run_dir: Annotated[Path, typer.Argument(help="A complete run directory; its adapter/ folder is uploaded.")],
    repo_id: Annotated[str, typer.Argument(help="Hub repository, e.g. your-name/bbc-news-lora (created if "
                                                "missing).")],
    private: Annotated[bool, typer.Option("--private", help="Create the repository as private.")] = False,
    token: Annotated[str | None, typer.Option(envvar="HF_TOKEN", show_default=False,
                                              help="Hub token with write access (default: HF_TOKEN or the "
                                                   "token `hf auth login` saved).")] = None,
) -> None:
    """Upload a run's adapter (weights, label names, tokenizer and model card) to the Hugging Face Hub."""
    from lightft.card import push as push_adapter

    url = push_adapter(run_dir, repo_id, private=private, token=token)
    typer.echo(f"pushed {run_dir / 'adapter'} to {url}")


@app.command()
@user_errors
def serve(
    run_dirs: Annotated[list[str], typer.Argument(help="Runs to serve: RUN_DIR (named after its folder) or "
                                                       "name=RUN_DIR. They must share one base model.")],
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps the server on this machine.")] = (
        "127.0.0.1"),
    port: Annotated[int, typer.Option(help="Port to listen on (1-65535).")] = 8000,
    api_key: Annotated[str | None, typer.Option(
        envvar="LIGHTFT_API_KEY", show_default=False,
        help="Require 'Authorization: Bearer KEY' on every /v1/ endpoint (401 otherwise). Set it whenever "
             "--host is reachable from other machines.")] = None,
    max_texts: Annotated[int, typer.Option(help="Texts per request, at most.")] = 64,
    max_chars: Annotated[int, typer.Option(help="Characters per text, at most.")] = 20_000,
    max_body_bytes: Annotated[int, typer.Option(help="Request body size, at most (chunked bodies too).")] = (
        1_000_000),
    body_timeout_s: Annotated[float, typer.Option(help="Seconds a request body may take to arrive (408 "
                                                       "after).")] = 30.0,
    keep_alive_s: Annotated[float, typer.Option(help="Seconds an idle connection is kept open.")] = 5.0,
    max_connections: Annotated[int, typer.Option(help="Concurrent connections and requests, at most (503 "
                                                      "beyond).")] = 256,
    batch_window_ms: Annotated[float, typer.Option(help="How long to collect concurrent requests into one "
                                                        "batch.")] = 5.0,
    warm_up: Annotated[bool, typer.Option(help="Run every batch shape once before serving, so memory is at its "
                                               "steady level and the first requests are not slow.")] = True,
    threads: Annotated[int | None, typer.Option(
        help="CPU threads for the model's matrix products (default: torch's, one per core). On a machine shared "
             "with other work, 1 keeps a request from waiting on a busy core.", show_default=False)] = None,
    trust_remote_code: Annotated[bool, typer.Option(
        "--trust-remote-code", help="Let the base model or the runs import their own Python code. Off by "
                                    "default: a run directory's files never switch it on.")] = False,
) -> None:
    """Serve many adapters on one copy of the base model: a JSON API, OpenAPI docs at /docs, a page at /."""
    import math

    import uvicorn

    from lightft.serve import AdapterServer, Limits, create_app, is_loopback, parse_runs

    # everything that can be checked is checked before the model is loaded
    limits = Limits(max_texts, max_chars, max_body_bytes, batch_window_ms, warm_up, body_timeout_s)
    limits.check()
    if not 1 <= port <= 65535:
        raise LightftError(f"--port must be between 1 and 65535, not {port}")
    if not (math.isfinite(keep_alive_s) and 0 < keep_alive_s <= 3600):
        raise LightftError(f"--keep-alive-s must be above 0 and at most 3600, not {keep_alive_s}")
    if max_connections < 1:
        raise LightftError(f"--max-connections must be at least 1, not {max_connections}")
    if threads is not None and threads < 1:
        raise LightftError(f"--threads must be at least 1, not {threads}")
    if api_key is not None and not api_key.strip():
        raise LightftError("--api-key (or LIGHTFT_API_KEY) is empty")
    _check_bindable(host, port)
    runs = parse_runs(run_dirs)
    if not is_loopback(host) and api_key is None:
        typer.echo(f"warning: serving on {host} without --api-key: anyone who can reach this address can use "
                   "the API and read the runs' reports", err=True)
    from lightft.runtime import set_threads

    set_threads(threads)
    server = AdapterServer(runs, trust_remote_code=trust_remote_code)
    app_ = create_app(server, limits, api_key=api_key)
    auth = "; API key required on /v1/" if api_key else ""
    shown = f"[{host}]" if ":" in host else host  # an IPv6 address goes in brackets in a URL
    typer.echo(f"serving {', '.join(server.adapters)} on http://{shown}:{port} (docs at /docs{auth})", err=True)
    uvicorn.run(app_, host=host, port=port, log_level="warning", timeout_keep_alive=keep_alive_s,
                limit_concurrency=max_connections)


def _check_bindable(host: str, port: int) -> None:
    """Bind ``host:port`` once and let go, before any model is loaded: a port in use (or one that needs root)
    is one line and exit code 2 here, not "serving ... on" followed by uvicorn's error and exit code 3."""
    import errno
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError) as exc:
        raise LightftError(f"--host {host!r} is not an address this machine can bind ({exc})") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a closed port's TIME_WAIT
        if family == socket.AF_INET6:  # is no obstacle, a listener is; and IPv6 only, as asyncio's create_server
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # binds it (an IPv4 listener is no clash)
        try:
            probe.bind(address)
        except OSError as exc:
            why = ("the port is in use by another program; choose another --port" if exc.errno == errno.EADDRINUSE
                   else exc.strerror or str(exc))
            raise LightftError(f"cannot serve on {host}:{port}: {why}") from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
