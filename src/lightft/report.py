"""Reports: the Markdown report of a run, the terminal summary table, and comparisons across runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightft import rundir

MODEL_TITLES = {"baseline": "pre-trained (untrained head)", "finetuned": "fine-tuned"}


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def model_rows(evaluations: dict[str, dict[str, Any]]) -> list[list[Any]]:
    return [
        [MODEL_TITLES.get(key, key), m["accuracy"], m["macro_f1"], m.get("trainable_params"), m.get("n")]
        for key, m in evaluations.items()
    ]


def run_report_markdown(summary: dict[str, Any], evaluations: dict[str, dict[str, Any]],
                        epochs: list[dict[str, Any]]) -> str:
    parts = [
        f"# lightft run: {summary['name']}",
        "",
        f"Model `{summary['model']}`, method `{summary['method']}`: {_fmt(summary['trainable_params'])} of "
        f"{_fmt(summary['total_params'])} parameters trained "
        f"({100 * summary['trainable_params'] / summary['total_params']:.2f}%). "
        f"Data: {summary['train_samples']:,} train / {summary['validation_samples']:,} validation / "
        f"{summary['test_samples']:,} test documents. Training took {summary['train_seconds']:.0f} s "
        f"on {summary['device']} ({summary['precision']}); epoch {summary['best_epoch']} was kept "
        "(best on validation).",
        "",
        "## Test results",
        "",
        "Every model was evaluated once on the same test split.",
        "",
        _md_table(["model", "accuracy", "macro-F1", "trainable params", "test docs"], model_rows(evaluations)),
    ]
    if "baseline" in evaluations and "finetuned" in evaluations:
        gain = evaluations["finetuned"]["accuracy"] - evaluations["baseline"]["accuracy"]
        parts += ["", f"Fine-tuning changed test accuracy by {gain:+.4f}."]
    if epochs:
        parts += ["", "## Training", "",
                  _md_table(["epoch", "train loss", "validation accuracy", "validation macro-F1"],
                            [[e["epoch"], e["train_loss"], e.get("val_accuracy"), e.get("val_macro_f1")]
                             for e in epochs])]
    for key, m in evaluations.items():
        parts += ["", f"## Per class: {MODEL_TITLES.get(key, key)}", "",
                  _md_table(["class", "precision", "recall", "F1", "support"],
                            [[name, c["precision"], c["recall"], c["f1"], c["support"]]
                             for name, c in m["per_class"].items()]),
                  "", "Confusion matrix (rows: true, columns: predicted):", "",
                  _md_table(["", *m["labels"]], [[m["labels"][i], *row]
                                                 for i, row in enumerate(m["confusion_matrix"])])]
    return "\n".join(parts) + "\n"


def print_run_summary(run_dir: Path) -> None:
    """The table printed at the end of ``lightft run``."""
    from rich.console import Console
    from rich.table import Table

    summary = rundir.read_json(run_dir / "summary.json")
    table = Table(title=f"{summary['name']}: {summary['model']} + {summary['method']}")
    for col in ("model", "accuracy", "macro-F1", "trainable params"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for key in ("baseline", "finetuned"):
        if key in summary:
            params = summary["total_params"] if key == "baseline" else summary["trainable_params"]
            table.add_row(MODEL_TITLES[key], _fmt(summary[key]["accuracy"]), _fmt(summary[key]["macro_f1"]),
                          _fmt(params) if key == "finetuned" else "0 (untrained head)")
    console = Console()
    console.print(table)
    console.print(f"training {summary['train_seconds']:.0f} s, whole run {summary['total_seconds']:.0f} s; "
                  f"run directory: {run_dir}")


COMPARE_COLUMNS = ["run", "model", "method", "trainable params", "baseline acc", "baseline F1",
                   "fine-tuned acc", "fine-tuned F1", "train s"]


def compare_rows(run_dirs: list[Path]) -> list[list[Any]]:
    rows = []
    for run_dir in run_dirs:
        rundir.require_complete(run_dir)
        s = rundir.read_json(Path(run_dir) / "summary.json")
        base = s.get("baseline", {})
        fine = s.get("finetuned", {})
        rows.append([s.get("name", Path(run_dir).name), s.get("model"), s.get("method"), s.get("trainable_params"),
                     base.get("accuracy"), base.get("macro_f1"), fine.get("accuracy"), fine.get("macro_f1"),
                     s.get("train_seconds")])
    return rows


def compare_markdown(rows: list[list[Any]]) -> str:
    return "# lightft comparison\n\n" + _md_table(COMPARE_COLUMNS, rows) + "\n"


def print_compare(rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="lightft runs")
    for col in COMPARE_COLUMNS:
        table.add_column(col, justify="left" if col in ("run", "model", "method") else "right")
    for row in rows:
        table.add_row(*[_fmt(c) for c in row])
    Console().print(table)
