"""report.html renders in a real browser: the comparison table and every plot (headless Chromium)."""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (CI installs it; `apt-get install chromium` to run this here)",
)
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def rendered(html: Path) -> dict:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium is required in CI"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page()
        page.goto(html.resolve().as_uri())
        page.wait_for_load_state("load")
        info = page.evaluate("""() => ({
            images: Array.from(document.images).map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0,
                                                           w: i.getBoundingClientRect().width})),
            headers: Array.from(document.querySelectorAll('table th')).map(th => th.textContent.trim()),
            cells: Array.from(document.querySelectorAll('table td')).map(td => td.textContent.trim()),
        })""")
        browser.close()
    return info


@needs_browser
def test_run_report_renders_table_and_every_plot(finished_run):
    info = rendered(finished_run / "report.html")
    pngs = sorted((finished_run / "plots").glob("*.png"))
    assert len(info["images"]) == len(pngs) >= 4
    assert all(img["ok"] and img["w"] > 50 for img in info["images"]), info["images"]
    assert {"model", "accuracy", "macro-F1", "McNemar p"} <= set(info["headers"])
    assert "fine-tuned" in info["cells"] and "TF-IDF + logistic regression" in info["cells"]


@needs_browser
def test_compare_report_renders(finished_run, tmp_path):
    from conftest import invoke

    assert invoke("compare", finished_run, "--output", tmp_path / "cmp.md").exit_code == 0
    info = rendered(tmp_path / "cmp.html")
    assert len(info["images"]) == 1 and info["images"][0]["ok"]
    assert "fine-tuned acc" in info["headers"] and "tiny" in info["cells"]


def test_the_report_lists_models_in_the_consoles_order():
    from lightft.experiment import _REPORT_RANK
    from lightft.report import MODEL_KEYS

    assert list(_REPORT_RANK) == MODEL_KEYS  # not the order the baselines happened to finish in


def test_the_report_names_the_metric_that_kept_the_epoch(finished_run):
    """summary.json's selected_by (train.select_metric resolved: accuracy for this single-label run) is what
    report.md says picked the kept epoch; training.json records it too."""
    import json

    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["selected_by"] == "accuracy"
    assert json.loads((finished_run / "training.json").read_text())["selected_by"] == "accuracy"
    assert f"epoch {summary['best_epoch']} was kept (best validation accuracy)" in \
        (finished_run / "report.md").read_text()
