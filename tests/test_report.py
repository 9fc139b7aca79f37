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


def test_a_baseline_ahead_of_the_fine_tuned_model_is_said_in_words(finished_run, tmp_path, capsys):
    """A baseline above the fine-tuned model gets a sentence with McNemar's verdict (report.md and the
    console); models behind it get none."""
    import json

    from lightft.report import MODEL_TITLES, baselines_ahead, print_run_summary

    scores = {"finetuned": {"accuracy": 0.97, "macro_f1": 0.96}, "tfidf": {"accuracy": 0.98, "macro_f1": 0.95},
              "linear_probe": {"accuracy": 0.96, "macro_f1": 0.96}}
    lines = baselines_ahead(scores, {"tfidf": 0.01, "linear_probe": 1.0})
    assert lines == ["TF-IDF + logistic regression scored above the fine-tuned model on the test split (accuracy "
                     "0.9800 vs 0.9700, macro-F1 0.9500 vs 0.9600; McNemar p 0.01: a significant difference, so "
                     "this baseline is the better classifier for these texts)."]
    assert "chance explains" in baselines_ahead(scores, {"tfidf": 0.5})[0]
    assert "McNemar p 0.0496: a significant" in baselines_ahead(scores, {"tfidf": 0.0496})[0]
    # ahead on macro-F1 only: McNemar (right/wrong texts) says nothing for it; a 1e-9 edge is a tie
    f1_only = {"finetuned": {"accuracy": 0.90, "macro_f1": 0.70}, "tfidf": {"accuracy": 0.85, "macro_f1": 0.72},
               "linear_probe": {"accuracy": 0.90 + 1e-9, "macro_f1": 0.70}}
    assert baselines_ahead(f1_only, {"tfidf": 0.001, "linear_probe": 1.0}) == [
        "TF-IDF + logistic regression scored above the fine-tuned model on the test split (accuracy 0.8500 vs "
        "0.9000, macro-F1 0.7200 vs 0.7000; its accuracy is not the higher, so it is ahead on the average over "
        "labels only)."]
    assert baselines_ahead({"finetuned": scores["finetuned"], "linear_probe": scores["linear_probe"]}, {}) == []
    # the console reads summary.json alone: a copy of the tiny run's with TF-IDF put ahead
    summary = json.loads((finished_run / "summary.json").read_text())
    summary["tfidf"].update(accuracy=summary["finetuned"]["accuracy"] + 0.01, mcnemar_p_vs_finetuned=0.5)
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    print_run_summary(tmp_path)
    printed = " ".join(capsys.readouterr().out.split())
    assert "TF-IDF + logistic regression scored above the fine-tuned model" in printed
    assert "McNemar p 0.5: a difference chance explains" in printed
    # report.md says it for whichever model of the tiny run is ahead, and for no other
    report = " ".join((finished_run / "report.md").read_text().split())
    summary = json.loads((finished_run / "summary.json").read_text())
    for key in ("tfidf", "linear_probe"):
        ahead = any(round(summary[key][m], 4) > round(summary["finetuned"][m], 4) for m in ("accuracy", "macro_f1"))
        assert (f"{MODEL_TITLES[key]} scored above the fine-tuned model" in report) == ahead


def test_the_compare_table_reads_at_80_columns(capsys, monkeypatch):
    """Numbers are never cut to 0.3…; an empty column (micro-F1 of single-label runs) is left out, and what every
    run shares (task, model, method) is said once under the table."""
    from lightft.report import print_compare

    monkeypatch.setenv("COLUMNS", "80")
    row = ["a long run name (runs/a-long-folder-name)", "single_label", "/opt/models/all-MiniLM-L6-v2", "lora",
           339_460, 0.31666, 0.26451, 0.98333, 0.98329, None, "156.8"]
    print_compare([row, [*row[:4], 339_460, None, None, 1.0, 1.0, None, "17.9"]])
    out = capsys.readouterr().out
    assert all(n in out for n in ("339,460", "0.3167", "0.2645", "0.9833", "1.0000", "156.8", "17.9"))
    assert "…" not in out and "µF1" not in out and max(len(line) for line in out.splitlines()) <= 80
    assert "every run: task single_label, model all-MiniLM-L6-v2, method lora" in out
    # models that share a last name part stay whole; runs differing in everything get a block each
    print_compare([row, [*row[:2], "org-b/all-MiniLM-L6-v2", *row[3:]]])
    out = capsys.readouterr().out
    assert "org-b/all-MiniLM-L6-v2" in out and "every run: task single_label, method lora" in out
    other = ["second", "multi_label", "bert-base-uncased", "ia3", 12_339_460, None, None, 0.5, 0.6, 0.7, "17.9"]
    print_compare([row, other])
    out = capsys.readouterr().out
    assert all(n in out for n in ("12,339,460", "0.3167", "0.7000", "156.8", "17.9", "multi_label", "ia3"))
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 80 and "every run" not in out


def test_a_small_test_split_is_called_coarse_with_the_exact_bound_for_a_perfect_score():
    from lightft.report import small_test_note

    note = small_test_note(24)
    assert "24 texts, so one text moves accuracy by 4.2 points" in note
    assert "above 0.858 (97.5% confidence, exact binomial)" in note  # 0.025 ** (1/24): the Clopper-Pearson bound
    assert small_test_note(900) == "" and small_test_note(0) == ""



def test_the_compare_caveat_stays_a_sentence_for_many_runs(tmp_path):
    from lightft.report import compare_caveat

    summaries = [{"data_name": "bbc" if i % 2 else "news", "test_samples": 900, "labels": ["tech", "business"],
                  "seed": 42} for i in range(20)]
    caveat = compare_caveat([tmp_path / f"run{i}" for i in range(20)], summaries)
    # twenty runs: each distinct value once with its count, not twenty values joined by "vs"
    assert "(data: news (10 runs), bbc (10 runs)):" in caveat and " vs " not in caveat
    for i, summary in enumerate(summaries):
        summary["data_name"] = f"a-data-set-of-its-own-{i}"
    caveat = compare_caveat([tmp_path / f"run{i}" for i in range(20)], summaries)
    assert caveat.endswith(" …): their scores do not compare one to one.")  # a long list is cut at a word
    assert "a-data-set-of-its-own-1," in caveat and "own-19" not in caveat
    two = compare_caveat([tmp_path / "a", tmp_path / "b"], [{**summaries[0], "test_samples": 24}, summaries[1]])
    assert "(data: a-data-set-of-its-own-0 vs a-data-set-of-its-own-1; test texts: 24 vs 900):" in two
