"""PNG plots for the run directory (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    # Label and run names come from the data: "$...$" in one must be text, not a (possibly invalid) formula.
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def _log_x(ax: Any, xs: list[float]) -> None:
    """A log x axis whose ticks read as plain text (1, 10, 100, 1k, 1M): with text.parse_math off (above),
    matplotlib's default log ticks would print as the raw "$\\mathdefault{10^{5}}$"."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    def plain(x: float, _pos: int) -> str:
        for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if x >= div:
                return f"{x / div:g}{unit}"
        return f"{x:g}"

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(plain))
    # within one power of ten no major tick is in view: label the minor ones instead
    narrow = bool(xs) and max(xs) < 10 * min(xs)
    ax.xaxis.set_minor_formatter(FuncFormatter(plain) if narrow else NullFormatter())


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.replace(path)
    _plt().close(fig)
    return path


def learning_curves(training: dict[str, Any], path: Path) -> Path:
    """Training loss per logging step, and validation accuracy / macro-F1 per epoch."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    steps = training.get("steps", [])
    ax1.plot([s["step"] for s in steps], [s["loss"] for s in steps], marker=".", color="tab:blue")
    ax1.set_xlabel("optimizer step")
    ax1.set_ylabel("training loss (running mean in epoch)")
    ax1.set_title("Training loss")
    epochs = [e for e in training.get("epochs", []) if "val_accuracy" in e]
    if epochs:
        x = [e["epoch"] for e in epochs]
        ax2.plot(x, [e["val_accuracy"] for e in epochs], marker="o", label="accuracy")
        ax2.plot(x, [e["val_macro_f1"] for e in epochs], marker="s", label="macro-F1")
        best = training.get("best_epoch")
        if best is not None:
            ax2.axvline(best, color="grey", linestyle=":", label=f"kept (epoch {best})")
        ax2.set_xticks(x)
        ax2.legend(loc="lower right")
    ax2.set_xlabel("epoch")
    ax2.set_title("Validation")
    return _save(fig, path)


# Above this many classes a confusion matrix shows colours only: a number per cell is unreadable there, and
# drawing k*k texts on a figure that grew with k took ~1 min a plot at 77 classes (5 plots per run).
ANNOTATED_CLASSES = 20


def confusion_matrices(metrics: dict[str, Any], title: str, path: Path) -> Path:
    """Counts and row-normalised (recall per class) side by side; with many classes, colours without numbers
    on a figure of bounded size (the numbers are in metrics/<model>.json)."""
    plt = _plt()
    cm = np.asarray(metrics["confusion_matrix"], dtype=float)
    names = metrics["labels"]
    k = len(names)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    annotate = k <= ANNOTATED_CLASSES
    size = max(4.0, 0.6 * k + 2) if annotate else min(16.0, 6 + 0.12 * k)
    ticks = 8 if annotate else max(3.0, min(8.0, 400 / k))  # points: k names still fit along an axis
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size), layout="constrained")
    for ax, data, sub, fmt in ((axes[0], cm, "counts", "{:.0f}"), (axes[1], norm, "row-normalised", "{:.2f}")):
        image = ax.imshow(data, cmap="Blues", vmin=0)
        ax.set_xticks(range(k), names, rotation=45 if annotate else 90, ha="right" if annotate else "center",
                      fontsize=ticks)
        ax.set_yticks(range(k), names, fontsize=ticks)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{title}: {sub}")
        if not annotate:
            fig.colorbar(image, ax=ax, shrink=0.6)
            continue
        top = data.max() or 1
        for i in range(k):
            for j in range(k):
                ax.text(j, i, fmt.format(data[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if data[i, j] > top / 2 else "black")
    return _save(fig, path)


def accuracy_vs_params(points: list[dict[str, Any]], path: Path, title: str = "Accuracy vs trainable parameters",
                       size_key: str | None = None) -> Path:
    """One point per model: test accuracy against trainable parameters (log scale; 0 drawn at 1)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    sizes = None
    if size_key:
        raw = np.array([max(p.get(size_key) or 0, 0) for p in points], dtype=float)
        sizes = 30 + 300 * raw / (raw.max() or 1)
    xs = [max(p.get("trainable_params") or 0, 1) for p in points]
    ys = [p["accuracy"] for p in points]
    ax.scatter(xs, ys, s=sizes if sizes is not None else 50, alpha=0.75)
    for x, y, p in zip(xs, ys, points, strict=True):
        ax.annotate(p["name"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    _log_x(ax, xs)
    ax.set_xlabel("trainable parameters (log; 0 shown at 1)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def tune_trials(rows: list[dict[str, Any]], path: Path, metric: str) -> Path:
    """`lightft tune`: each trial's validation score (pruned trials: their value when pruned, hollow), and the best
    finished trial so far."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    done = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    pruned = [r for r in rows if r["state"] == "pruned" and r["value"] is not None]
    ax.scatter([r["trial"] for r in done], [r["value"] for r in done], label="finished", zorder=3)
    if pruned:
        ax.scatter([r["trial"] for r in pruned], [r["value"] for r in pruned], facecolors="none", edgecolors="grey",
                   label="pruned", zorder=3)
    if done:
        best, xs, ys = -np.inf, [], []
        for r in done:
            best = max(best, r["value"])
            xs.append(r["trial"])
            ys.append(best)
        ax.step(xs, ys, where="post", color="C1", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.set_title("lightft tune")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def learning_curve(summary: list[dict[str, Any]], path: Path, all_per_class: float) -> Path:
    """`lightft curve`: mean test accuracy (95% interval as error bars) vs labelled examples per class, log x;
    zero-shot, which learns from no labels, as a dashed line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for model in dict.fromkeys(e["model"] for e in summary):
        points = sorted((all_per_class if e["budget"] == "all" else float(e["budget"]), e)
                        for e in summary if e["model"] == model)
        if model == "zero_shot":
            ax.axhline(points[0][1]["accuracy"], color="grey", linestyle="--", label="zero-shot")
            continue
        xs = [x for x, _ in points]
        ys = [e["accuracy"] for _, e in points]
        err = [[e["accuracy"] - e["accuracy_ci95"][0] for _, e in points],
               [e["accuracy_ci95"][1] - e["accuracy"] for _, e in points]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=model.replace("_", " "))
    ax.set_xscale("log")
    # Ticks at the budgets themselves, as plain text (math text is off for data-borne labels, which would
    # print the log axis's default 10^k labels as raw TeX).
    budgets = sorted({all_per_class if e["budget"] == "all" else float(e["budget"])
                      for e in summary if e["model"] != "zero_shot"})
    ax.set_xticks(budgets, [f"all (~{x:.0f})" if x == all_per_class else f"{x:g}" for x in budgets])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xlabel("labelled training examples per class (log)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Learning curve")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)
