"""Reports: the Markdown report of a run, the terminal summary table, and comparisons across runs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from lightft import rundir
from lightft.errors import LightftError

MODEL_TITLES = {
    "baseline": "pre-trained (untrained head)",
    "zero_shot": "zero-shot (label embeddings)",
    "tfidf": "TF-IDF + logistic regression",
    "linear_probe": "linear probe (frozen embeddings)",
    "finetuned": "fine-tuned",
}
MODEL_KEYS = list(MODEL_TITLES)


def _duplicates_note(summary: dict[str, Any]) -> str:
    n = summary.get("duplicates_dropped") or 0  # absent in runs written before data.duplicates
    return f" ({n:,} repeated text{'s' if n != 1 else ''} dropped before splitting)" if n else ""


_SELECTED_BY = {"accuracy": "accuracy", "macro_f1": "macro-F1"}  # summary.json's selected_by, in words


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# Characters with a meaning in Markdown inline text (Python-Markdown's backslash escapes, and the tables
# extension's `|`): code spans, emphasis, links and images, table cells. `<`, `>` and `&` become entities.
_MD_BACKSLASHED = set("\\`*_[]|")
_MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}


def md_text(value: Any) -> str:
    """``value`` as literal Markdown inline text, safe inside a table cell: HTML is shown, never rendered (no
    element, no script), Markdown syntax is shown as typed, ``|`` does not end the cell, and line breaks (which
    would end the table row) become spaces. Every string that comes from a dataset or a run directory (texts,
    label names, run and model names) goes through this before it enters a report."""
    text = " ".join(str(value).split())
    return "".join(_MD_ENTITIES.get(ch) or ("\\" + ch if ch in _MD_BACKSLASHED else ch) for ch in text)


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(md_text(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(md_text(_fmt(c)) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _ci(m: dict[str, Any], key: str) -> str:
    ci = m.get("ci95", {}).get(key)
    return f"{m[key]:.4f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{m[key]:.4f}"


def _multi_label(evaluations: dict[str, dict[str, Any]]) -> bool:
    return any(m.get("task") == "multi_label" for m in evaluations.values())


def model_rows(evaluations: dict[str, dict[str, Any]], comparisons: dict[str, Any]) -> list[list[Any]]:
    """One row per model; multi-label: subset accuracy, macro-F1, micro-F1 and Hamming loss instead of ECE."""
    rows = []
    for key, m in evaluations.items():
        p = comparisons.get(key, {}).get("p_value")
        middle = [_ci(m, "micro_f1"), m.get("hamming_loss")] if m.get("task") == "multi_label" else [m.get("ece")]
        rows.append([MODEL_TITLES.get(key, key), _ci(m, "accuracy"), _ci(m, "macro_f1"), *middle,
                     m.get("trainable_params"), "–" if p is None else f"{p:.2g}"])
    return rows


def model_header(evaluations: dict[str, dict[str, Any]]) -> list[str]:
    if _multi_label(evaluations):
        return ["model", "subset accuracy", "macro-F1", "micro-F1", "Hamming loss", "trainable params", "McNemar p"]
    return ["model", "accuracy", "macro-F1", "ECE", "trainable params", "McNemar p"]


def baselines_ahead(scores: dict[str, dict[str, Any]], p_values: dict[str, float | None],
                    multi_label: bool = False) -> list[str]:
    """One sentence per model that scored above the fine-tuned one on the test split (accuracy or macro-F1, as
    the report prints them: 4 decimals), so that a user never misses that a baseline was the better classifier
    for their data. McNemar's test counts texts one model gets right and the other wrong, so its verdict is
    given only where the baseline's accuracy is the higher."""
    tuned = scores.get("finetuned")
    if not tuned:
        return []
    kind = "subset accuracy" if multi_label else "accuracy"
    lines = []
    for key, m in scores.items():
        more_right = round(m.get("accuracy", 0), 4) > round(tuned["accuracy"], 4)
        if key == "finetuned" or not (more_right or round(m.get("macro_f1", 0), 4) > round(tuned["macro_f1"], 4)):
            continue
        p = p_values.get(key)
        if not more_right:
            verdict = f"; its {kind} is not the higher, so it is ahead on the average over labels only"
        elif p is None:
            verdict = ""
        else:
            verdict = f"; McNemar p {p:.3g}: " + (
                "a significant difference, so this baseline is the better classifier for these texts" if p < 0.05
                else "a difference chance explains on this many texts")
        lines.append(f"{MODEL_TITLES.get(key, key)} scored above the fine-tuned model on the test split ({kind} "
                     f"{m['accuracy']:.4f} vs {tuned['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f} vs "
                     f"{tuned['macro_f1']:.4f}{verdict}).")
    return lines


def run_report_markdown(summary: dict[str, Any], evaluations: dict[str, dict[str, Any]],
                        training: dict[str, Any], comparisons: dict[str, Any]) -> str:
    resamples = next((m["ci95"]["resamples"] for m in evaluations.values() if "ci95" in m), None)
    parts = [
        f"# lightft run: {md_text(summary['name'])}",
        "",
        f"Model {md_text(summary['model'])}, method {md_text(summary['method'])}: "
        f"{_fmt(summary['trainable_params'])} of "
        f"{_fmt(summary['total_params'])} parameters trained "
        f"({100 * summary['trainable_params'] / summary['total_params']:.2f}%). "
        f"Data: {summary['train_samples']:,} train / {summary['validation_samples']:,} validation / "
        f"{summary['test_samples']:,} test documents{_duplicates_note(summary)}. "
        f"Training took {summary['train_seconds']:.0f} s "
        f"on {md_text(summary['device'])} ({md_text(summary['precision'])}); epoch {summary['best_epoch']} was kept "
        f"(best validation {_SELECTED_BY.get(summary.get('selected_by'), 'score')}).",
        "",
        "## Test results",
        "",
        "Every model was evaluated once on the same test split. "
        + (f"Brackets: 95% bootstrap confidence interval ({resamples} resamples, seeded). " if resamples else "")
        + small_test_note(summary["test_samples"])
        + ("Multi-label: subset accuracy counts a text right when its whole label set is; macro-F1 averages "
           "the labels' F1, micro-F1 pools every label decision; Hamming loss is the share of wrong label "
           "decisions; thresholds: each label's, tuned on validation for every model that learns from data "
           "(0.5 for the untrained pre-trained head). "
           "McNemar p: exact test of the fine-tuned model against that model on the same texts (whole sets)."
           if _multi_label(evaluations) else
           "ECE: expected calibration error (15 bins). McNemar p: exact test of the fine-tuned model against "
           "that model on the same texts."),
        "",
        md_table(model_header(evaluations), model_rows(evaluations, comparisons)),
    ]
    notes = [md_text(f"{MODEL_TITLES.get(k, k)}: {m['note']}.") for k, m in evaluations.items() if m.get("note")]
    notes += [md_text(line) for line in baselines_ahead(
        evaluations, {k: c.get("p_value") for k, c in comparisons.items()}, _multi_label(evaluations))]
    if notes:
        parts += ["", *notes]
    cut = evaluations.get("finetuned", {}).get("threshold")
    if cut:
        parts += ["", md_text(f"Fine-tuned decision: '{cut['positive_label']}' when its probability reaches "
                              f"{cut['value']:.4f} (tuned on validation); its test F1 {cut['positive_f1']:.4f}, "
                              f"{cut['positive_f1_argmax']:.4f} with argmax.")]
    if "baseline" in evaluations and "finetuned" in evaluations:
        gain = evaluations["finetuned"]["accuracy"] - evaluations["baseline"]["accuracy"]
        kind = "subset accuracy" if _multi_label(evaluations) else "accuracy"
        parts += ["", f"Fine-tuning changed test {kind} by {gain:+.4f} over the pre-trained model."]
    epochs = training.get("epochs", [])
    if epochs:
        parts += ["", "## Training", "",
                  md_table(["epoch", "train loss", "validation subset accuracy at 0.5" if _multi_label(evaluations)
                            else "validation accuracy", "validation macro-F1"],
                            [[e["epoch"], e["train_loss"], e.get("val_accuracy"), e.get("val_macro_f1")]
                             for e in epochs])]
    for key, m in evaluations.items():
        parts += ["", f"## Per class: {md_text(MODEL_TITLES.get(key, key))}", "",
                  md_table(["class", "precision", "recall", "F1", "support"],
                            [[name, c["precision"], c["recall"], c["f1"], c["support"]]
                             for name, c in m["per_class"].items()])]
        if "confusion_matrix" in m:
            parts += ["", "Confusion matrix (rows: true, columns: predicted):", "",
                      md_table(["", *m["labels"]], [[m["labels"][i], *row]
                                                     for i, row in enumerate(m["confusion_matrix"])])]
    for key, comp in comparisons.items():
        changed = comp.get("changed", {})
        rows = [["wrong → right", r["true"], r["before"], r["after"], r["text"]]
                for r in changed.get("wrong_to_right", [])]
        rows += [["right → wrong", r["true"], r["before"], r["after"], r["text"]]
                 for r in changed.get("right_to_wrong", [])]
        if not rows:
            continue
        parts += ["", f"## Predictions that changed: {md_text(MODEL_TITLES.get(key, key))} → fine-tuned", "",
                  f"{len(changed['wrong_to_right'])} fixed, {len(changed['right_to_wrong'])} broken"
                  + (" (first 20 of each shown)" if len(rows) > 40 else "") + ".", "",
                  md_table(["change", "true", "before", "after", "text"],
                            [r for r in rows if r[0].startswith("wrong")][:20]
                            + [r for r in rows if r[0].startswith("right")][:20])]
    return "\n".join(parts) + "\n"


def print_run_summary(run_dir: Path) -> None:
    """The table printed at the end of ``lightft run``."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    summary = rundir.read_json(run_dir / "summary.json")
    table = Table(title=escape(f"{summary['name']}: {summary['model']} + {summary['method']}"))
    multi = summary.get("task") == "multi_label"
    columns = ("model", "subset accuracy", "macro-F1", "micro-F1", "trainable params") if multi else \
        ("model", "accuracy", "macro-F1", "trainable params")
    for col in columns:
        table.add_column(col, justify="left" if col == "model" else "right")
    for key in MODEL_KEYS:
        if key in summary:
            s = summary[key]
            scores = [_ci(s, "accuracy"), _ci(s, "macro_f1")] + ([_ci(s, "micro_f1")] if multi else [])
            table.add_row(MODEL_TITLES[key], *scores, _fmt(s.get("trainable_params")))
    console = Console()
    console.print(table)
    for line in baselines_ahead({k: summary[k] for k in MODEL_KEYS if isinstance(summary.get(k), dict)},
                                {k: summary[k].get("mcnemar_p_vs_finetuned") for k in MODEL_KEYS
                                 if isinstance(summary.get(k), dict)}, multi):
        console.print(escape(line), style="yellow")
    console.print(escape(f"training {summary['train_seconds']:.0f} s, whole run {summary['total_seconds']:.0f} s; "
                         f"run directory: {run_dir}"))


# Multi-label runs: "acc" is subset accuracy, and micro-F1 is filled in (empty for single-label runs).
COMPARE_COLUMNS = ["run", "task", "model", "method", "trainable params", "baseline acc", "baseline F1",
                   "fine-tuned acc", "fine-tuned F1", "fine-tuned micro-F1", "train s"]


def read_summaries(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """Each complete run's summary.json (an incomplete run is refused), read once for the table and caveat."""
    for run_dir in run_dirs:
        rundir.require_complete(run_dir)
    return [rundir.read_json(Path(run_dir) / "summary.json") for run_dir in run_dirs]


def compare_rows(run_dirs: list[Path], summaries: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for run_dir, s in zip(run_dirs, summaries, strict=True):
        base = s.get("baseline", {})
        fine = s.get("finetuned", {})
        rows.append([s.get("name", Path(run_dir).name), s.get("task", "single_label"), s.get("model"),
                     s.get("method"), s.get("trainable_params"), base.get("accuracy"), base.get("macro_f1"),
                     fine.get("accuracy"), fine.get("macro_f1"), fine.get("micro_f1"),
                     None if s.get("train_seconds") is None else f"{float(s['train_seconds']):.1f}"])
    names = [row[0] for row in rows]
    for row, run_dir in zip(rows, run_dirs, strict=True):  # runs of one config: told apart by their folders
        if names.count(row[0]) > 1:
            row[0] = f"{row[0]} ({Path(run_dir).name})"
    return rows


def compare_caveat(run_dirs: list[Path], summaries: list[dict[str, Any]]) -> str | None:
    """A sentence when the runs were not scored on the same test texts (another data set, test size or label
    set): their numbers then do not compare one to one. None when they were (as far as summary.json says)."""
    keys = {"data": "data_name", "test texts": "test_samples", "labels": "labels", "split seed": "seed"}
    seen: dict[str, list[str]] = {key: [] for key in keys}  # per key, each run's value in the order given
    for run_dir, summary in zip(run_dirs, summaries, strict=True):
        s = {**summary, "seed": summary.get("seed", _run_seed(Path(run_dir)))}
        for key, field in keys.items():
            value = s.get(field)
            seen[key].append("?" if value is None else ", ".join(map(str, value)) if isinstance(value, list)
                             else str(value))
    # a value an older run did not record ("?") is not a difference; the values stay in the runs' order, so
    # "data: bbc vs tiny; test texts: 900 vs 24" reads run by run
    differ = [f"{key}: {_differing(values)}" for key, values in seen.items() if len(set(values) - {"?"}) > 1]
    if not differ:
        return None
    listed = "; ".join(differ)
    if len(listed) > 300:  # a cut says so, at a word, rather than ending mid-value
        listed = listed[:300].rsplit(" ", 1)[0] + " …"
    return f"These runs were not tested on the same texts ({listed}): their scores do not compare one to one."


def _differing(values: list[str]) -> str:
    """One key's values, run by run for up to four runs ("bbc vs tiny"); for more, each distinct value once
    with how many runs had it, so twenty runs do not make a sentence of twenty values."""
    if len(values) <= 4:
        return " vs ".join(values)
    counts = Counter(v for v in values if v != "?")  # a value an older run did not record is no difference
    return ", ".join(f"{value} ({n} runs)" if n > 1 else value for value, n in counts.items())


def _run_seed(run_dir: Path) -> int | None:
    """The seed the run's splits were drawn with (its config.yaml), None when it cannot be read."""
    try:
        from lightft.config import load_run_config

        return load_run_config(run_dir).seed
    except Exception:  # noqa: BLE001 - a caveat is a courtesy: an odd config only leaves the seed out
        return None


def compare_markdown(rows: list[list[Any]], caveat: str | None = None) -> str:
    note = f"{md_text(caveat)}\n\n" if caveat else ""
    return "# lightft comparison\n\n" + note + md_table(COMPARE_COLUMNS, rows) + "\n"


# The terminal table's shorter headers; the Markdown file keeps COMPARE_COLUMNS.
_COMPARE_SHORT = {"trainable params": "trainable", "baseline acc": "base acc", "baseline F1": "base F1",
                  "fine-tuned acc": "tuned acc", "fine-tuned F1": "tuned F1", "fine-tuned micro-F1": "tuned µF1"}


def print_compare(rows: list[list[Any]]) -> None:
    """The comparison at a terminal's width: a column no run fills (micro-F1 when every run is single-label) is
    left out, one every run shares (task, model, method) goes to the caption, a model is shown by its last name
    part where that still tells the runs apart, and numbers never wrap or get cut. Where the table still does
    not fit, each run gets a block of its own."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table, box

    model = COMPARE_COLUMNS.index("model")
    short = [Path(str(r[model])).name if r[model] else r[model] for r in rows]
    distinct = len(set(short)) == len({str(r[model]) for r in rows})
    shown = [[short[n] if i == model and distinct else c for i, c in enumerate(r)] for n, r in enumerate(rows)]
    shared = {i for i, col in enumerate(COMPARE_COLUMNS)
              if col in ("task", "model", "method") and len({str(r[i]) for r in rows}) == 1}
    keep = [i for i in range(len(COMPARE_COLUMNS))
            if i not in shared and (i == 0 or any(r[i] is not None for r in rows))]
    texts = {i for i, col in enumerate(COMPARE_COLUMNS) if col in ("run", "task", "model", "method")}
    caption = ", ".join(f"{COMPARE_COLUMNS[i]} {_fmt(shown[0][i])}" for i in sorted(shared))
    console = Console()
    table = Table(title="lightft runs", caption=escape(f"every run: {caption}") if caption else None,
                  box=box.SIMPLE_HEAD)
    for i in keep:
        col = COMPARE_COLUMNS[i]
        text = i in texts
        table.add_column(_COMPARE_SHORT.get(col, col), justify="left" if text else "right", overflow="fold",
                         no_wrap=not text, min_width=min(max(len(_fmt(r[i])) for r in shown), 12) if text else None)
    for row in shown:
        table.add_row(*[escape(_fmt(row[i])) for i in keep])
    with console.capture() as captured:  # rendered first: rich narrows columns it cannot fit, cutting numbers
        console.print(table)
    rendered = captured.get()
    if all(_fmt(r[i]) in rendered for r in shown for i in keep if i not in texts):
        print(rendered, end="")  # as rendered for this terminal (its colour codes included)
        return
    for row in shown:  # too many differing columns for one line a run: one block a run
        block = Table(title=escape(_fmt(row[0])), box=box.SIMPLE, show_header=False)
        block.add_column(overflow="fold")
        block.add_column(overflow="fold")
        for i in keep[1:]:
            block.add_row(COMPARE_COLUMNS[i], escape(_fmt(row[i])))
        console.print(block)
    if caption:
        console.print(escape(f"every run: {caption}"))


# --------------------------------------------------------------------------------------------------------
# Plots and the self-contained HTML report

HTML_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #1b1f24; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #d0d7de; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f5f7; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
code { background: #f3f5f7; padding: 0 0.25em; border-radius: 3px; }
"""


REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def markdown_to_html(md_text: str, base_dir: Path, title: str) -> str:
    """Render Markdown to one HTML file with every local image inlined as a data URI (no network needed)."""
    import base64
    import html
    import re

    import markdown

    body = markdown.markdown(md_text, extensions=["tables"])

    root = base_dir.resolve()

    def inline(match: re.Match) -> str:
        src = html.unescape(match.group(2))
        path = (base_dir / src).resolve()
        if src.startswith(("data:", "http:", "https:")) or not path.is_relative_to(root) or not path.is_file() \
                or path.suffix.lower() != ".png":
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'{match.group(1)}data:image/png;base64,{data}{match.group(3)}'

    body = re.sub(r'(<img[^>]*\ssrc=")([^"]+)(")', inline, body)
    # Defence in depth beside the escaping: the page may show inline styles and data: images, nothing else
    # (no script, no network), wherever it is opened or served.
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{REPORT_CSP}\">"
            f"<title>{html.escape(title)}</title><style>{HTML_STYLE}</style></head><body>\n{body}\n</body></html>\n")


def write_run_reports(out: Path, summary: dict[str, Any], evaluations: dict[str, dict[str, Any]],
                      training: dict[str, Any], comparisons: dict[str, Any]) -> None:
    """report.md and report.html with the run's plots (PNG files under plots/)."""
    from lightft import plots

    plots.learning_curves(training, out / "plots" / "learning_curves.png")
    confusion = [k for k, m in evaluations.items() if "confusion_matrix" in m]  # single-label only
    for key in confusion:
        plots.confusion_matrices(evaluations[key], MODEL_TITLES.get(key, key), out / "plots" / f"confusion_{key}.png")
    points = [{"name": MODEL_TITLES.get(k, k), "accuracy": m["accuracy"], "trainable_params": m["trainable_params"]}
              for k, m in evaluations.items()]
    plots.accuracy_vs_params(points, out / "plots" / "accuracy_vs_params.png")

    md = run_report_markdown(summary, evaluations, training, comparisons)
    figures = ["", "## Plots", "", "![Accuracy vs trainable parameters](plots/accuracy_vs_params.png)", "",
               "![Learning curves](plots/learning_curves.png)", ""]
    figures += [f"![Confusion matrix: {MODEL_TITLES.get(k, k)}](plots/confusion_{k}.png)\n" for k in confusion]
    md += "\n".join(figures)
    rundir.atomic_write_text(out / "report.md", md)
    rundir.atomic_write_text(out / "report.html", markdown_to_html(md, out, f"lightft run: {summary['name']}"))


# Below this many test texts the report says how coarse the scores are.
SMALL_TEST_SPLIT = 100


def small_test_note(n: int) -> str:
    """A sentence for a test split under SMALL_TEST_SPLIT texts: one text is a big step, and a perfect score's
    bootstrap interval is a single point (no resample can hold an error the model never made), so it gives the
    exact binomial bound instead (Clopper-Pearson, one-sided 97.5%: 0.025 ** (1/n))."""
    if not 0 < n < SMALL_TEST_SPLIT:
        return ""
    return (f"**A small test split**: {n} texts, so one text moves accuracy by {100 / n:.1f} points, and a model "
            f"that gets every text right has an interval of a single point; its true accuracy is only known to be "
            f"above {0.025 ** (1 / n):.3f} (97.5% confidence, exact binomial). More test texts narrow every "
            "interval. ")


def refuse_inside_run(path: Path) -> None:
    """Refuse an output path inside a lightft run directory: a comparison must never replace a run's files
    (e.g. ``compare -o RUN/report.md``)."""
    rundir.refuse_inside_run(path, "comparison")


def check_compare_output(md_path: Path, overwrite: bool = False) -> None:
    """Refuse, before any work, a comparison written into a run directory or over a folder, or over files
    that exist (the Markdown, HTML or PNG it writes) unless ``overwrite``: ``-o data.csv`` once replaced a
    user's data with Markdown."""
    refuse_inside_run(md_path)
    twins = (md_path, md_path.with_suffix(".html"), md_path.with_suffix(".png"))
    for twin in twins:
        if twin.is_dir():
            raise LightftError(f"cannot write {twin}: it is a folder")
    existing = [str(t) for t in twins if t.exists()]
    if existing and not overwrite:
        raise LightftError(f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                           "pass --overwrite to replace (compare writes FILE, and FILE.html and FILE.png beside it)")


def write_compare_reports(rows: list[list[Any]], md_path: Path, caveat: str | None = None,
                          overwrite: bool = False) -> Path:
    """compare.md (+ accuracy-vs-parameters PNG beside it) and a self-contained HTML twin; returns the HTML."""
    from lightft import plots

    md_path = Path(md_path)
    check_compare_output(md_path, overwrite)
    png = md_path.with_suffix(".png")
    acc, params = COMPARE_COLUMNS.index("fine-tuned acc"), COMPARE_COLUMNS.index("trainable params")
    points = [{"name": str(r[0]), "accuracy": r[acc], "trainable_params": r[params]} for r in rows
              if r[acc] is not None]
    plots.accuracy_vs_params(points, png, "Fine-tuned accuracy vs trainable parameters")
    md = compare_markdown(rows, caveat) + f"\n![Accuracy vs trainable parameters]({png.name})\n"
    rundir.atomic_write_text(md_path, md)
    html_path = md_path.with_suffix(".html")
    rundir.atomic_write_text(html_path, markdown_to_html(md, md_path.parent, "lightft comparison"))
    return html_path
