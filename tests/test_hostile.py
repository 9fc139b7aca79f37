"""Hostile input, as an attacker or a careless user would give it (issue 12).

Every case must end in correct behaviour or one line (``error: ...``, exit code 2), never a traceback, never
code run that nobody asked for, and never lost data. ``HOSTILE_CASES`` counts the cases this file tries.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_report import BROWSER_ARGS, CHROMIUM, needs_browser  # one browser setup for every test

from conftest import invoke, make_texts, tiny_run_config, write_config


def assert_one_line(result, needle: str = "") -> str:
    """Exit code 2, no traceback, the last stderr line an ``error:`` naming ``needle``."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and needle in last, last
    return last


@pytest.fixture()
def run_copy(finished_run, tmp_path) -> Path:
    """A copy of the shared finished run that a test may damage or booby-trap."""
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    return out


def set_run_config(run: Path, **model_keys) -> None:
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["model"].update(model_keys)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))


# --------------------------------------------------------------------------------------------------------
# 1. A run directory never runs code by itself

def plant_remote_code(folder: Path, marker: Path) -> None:
    """Python files in ``folder`` that write ``marker`` when imported, wired in through auto_map."""
    (folder / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import BertConfig, BertTokenizer\n"
        "class EvilConfig(BertConfig):\n    pass\n"
        "class EvilTokenizer(BertTokenizer):\n    pass\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig"}
    (folder / "config.json").write_text(json.dumps(config))
    tok = folder / "tokenizer_config.json"
    if tok.is_file():
        tok_cfg = json.loads(tok.read_text())
        tok_cfg["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
        tok.write_text(json.dumps(tok_cfg))


VERBS = {
    "predict": lambda run, tmp: ("predict", run, "goal match"),
    "evaluate": lambda run, tmp: ("evaluate", run, "--data", tmp / "d.csv", "-o", tmp / "m.json"),
    "export": lambda run, tmp: ("export", run, "--merged", tmp / "merged"),
}


def labelled_csv(tmp: Path) -> Path:
    rows = "".join(f"{t},{y}\n" for t, y in make_texts(3))
    (tmp / "d.csv").write_text("text,label\n" + rows, encoding="utf-8")
    return tmp / "d.csv"


@pytest.mark.parametrize("verb", list(VERBS))
@pytest.mark.slow
def test_remote_code_in_a_run_needs_the_command_line_opt_in(run_copy, tmp_path, verb):
    marker = tmp_path / "pwned"
    plant_remote_code(run_copy / "adapter", marker)
    set_run_config(run_copy, trust_remote_code=True, allow_pickle=True)  # the run asks; it is not obeyed
    labelled_csv(tmp_path)
    result = invoke(*VERBS[verb](run_copy, tmp_path))
    assert not marker.exists(), "a run directory's own config turned on remote code"
    assert result.exit_code in (0, 2) and "Traceback" not in result.output, result.output
    # The opt-in is what runs it (proves the trap is real).
    shutil.rmtree(tmp_path / "merged", ignore_errors=True)
    invoke(*VERBS[verb](run_copy, tmp_path), "--trust-remote-code")
    assert marker.exists()


def test_model_name_pointing_into_the_run_runs_no_code(run_copy, tiny_bert, tmp_path):
    marker = tmp_path / "pwned"
    base = run_copy / "base"
    shutil.copytree(tiny_bert, base)
    plant_remote_code(base, marker)
    set_run_config(run_copy, name=str(base), trust_remote_code=True)
    result = invoke("predict", run_copy, "goal match")
    assert not marker.exists()
    assert result.exit_code in (0, 2) and "Traceback" not in result.output, result.output


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).write_text, ("ran",))


@pytest.mark.parametrize("verb", list(VERBS))
def test_pickle_adapter_is_refused_without_allow_pickle(run_copy, tmp_path, verb):
    import pickle

    marker = tmp_path / "pwned"
    (run_copy / "adapter" / "adapter_model.safetensors").unlink()
    (run_copy / "adapter" / "adapter_model.bin").write_bytes(pickle.dumps({"w": _Payload(str(marker))}))
    set_run_config(run_copy, allow_pickle=True)  # the run's own config does not count
    labelled_csv(tmp_path)
    assert_one_line(invoke(*VERBS[verb](run_copy, tmp_path)), "adapter_model.bin")
    assert not marker.exists()


def test_pickle_adapter_loads_with_allow_pickle(run_copy):
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(run_copy / "adapter" / "adapter_model.safetensors"))
    (run_copy / "adapter" / "adapter_model.safetensors").unlink()
    torch.save(weights, run_copy / "adapter" / "adapter_model.bin")
    assert_one_line(invoke("predict", run_copy, "goal match"), "--allow-pickle")
    result = invoke("predict", run_copy, "goal match", "--allow-pickle")
    assert result.exit_code == 0, result.output


def test_library_loaders_take_the_opt_in_as_keywords(run_copy, tmp_path):
    from lightft.errors import LightftError
    from lightft.model import load_saved_model
    from lightft.predict import Classifier

    marker = tmp_path / "pwned"
    plant_remote_code(run_copy / "adapter", marker)
    set_run_config(run_copy, trust_remote_code=True)
    try:
        Classifier.from_run(run_copy)
    except LightftError:
        pass
    assert not marker.exists()
    with pytest.raises(LightftError):
        load_saved_model(run_copy / "adapter", "unused", trust_remote_code=True)
    assert marker.exists()


# --------------------------------------------------------------------------------------------------------
# 7. Damaged run files: one line from predict, evaluate and export

def damage(run: Path, how: str, tiny_bert: Path) -> str:
    """Damage ``run`` in one way; returns words the error line must contain."""
    adapter = run / "adapter"
    if how == "missing safetensors":
        (adapter / "adapter_model.safetensors").unlink()
        return "adapter_model.safetensors"
    if how == "truncated safetensors":
        data = (adapter / "adapter_model.safetensors").read_bytes()
        (adapter / "adapter_model.safetensors").write_bytes(data[: len(data) // 2])
        return "cannot load"
    if how == "garbage safetensors":
        (adapter / "adapter_model.safetensors").write_bytes(b"\x00" * 64)
        return "cannot load"
    if how == "label map larger than the head":
        config = json.loads((adapter / "config.json").read_text())
        config["id2label"] = {str(i): f"c{i}" for i in range(5)}
        config["label2id"] = {f"c{i}": i for i in range(5)}
        (adapter / "config.json").write_text(json.dumps(config))
        return "cannot load"
    if how == "label map smaller than the head":
        config = json.loads((adapter / "config.json").read_text())
        config["id2label"] = {"0": "a", "1": "b"}
        config["label2id"] = {"a": 0, "b": 1}
        (adapter / "config.json").write_text(json.dumps(config))
        return "cannot load"
    if how == "invalid config.yaml":
        (run / "config.yaml").write_text("model: [unclosed\n")
        return "not valid YAML"
    if how == "binary config.yaml":
        (run / "config.yaml").write_bytes(b"\x00\xff\xfe binary")
        return "config.yaml"
    if how == "config.yaml not a mapping":
        (run / "config.yaml").write_text("- a\n- b\n")
        return "mapping"
    if how == "config.yaml unknown key":
        (run / "config.yaml").write_text((run / "config.yaml").read_text() + "extra_key: 1\n")
        return "extra_key"
    if how == "model.name is not a model":
        (run / "notamodel").mkdir()
        set_run_config(run, name=str(run / "notamodel"))
        return "cannot load"
    if how == "adapter config.json not JSON":
        (adapter / "config.json").write_text("{not json")
        return "cannot load"
    if how == "adapter_config.json not JSON":
        (adapter / "adapter_config.json").write_text("{not json")
        return "cannot load"
    if how == "run.json not JSON":
        (run / "run.json").write_text("{")
        return "run.json"
    if how == "decision.json without threshold":
        (run / "decision.json").write_text("{}")
        return "decision.json"
    if how == "tokenizer.json garbage":
        (adapter / "tokenizer.json").write_text("{garbage")
        return "tokenizer"
    raise ValueError(how)


DAMAGES = ["missing safetensors", "truncated safetensors", "garbage safetensors", "label map larger than the head",
           "label map smaller than the head", "invalid config.yaml", "binary config.yaml",
           "config.yaml not a mapping", "config.yaml unknown key", "model.name is not a model",
           "adapter config.json not JSON", "adapter_config.json not JSON", "run.json not JSON",
           "decision.json without threshold", "tokenizer.json garbage"]


@pytest.mark.parametrize("verb", ["predict", "evaluate", "export"])
@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_run_is_one_line(run_copy, tiny_bert, tmp_path, how, verb):
    if how == "decision.json without threshold" and verb == "export":
        pytest.skip("a merged export does not read the decision threshold")
    needle = damage(run_copy, how, tiny_bert)
    labelled_csv(tmp_path)
    assert_one_line(invoke(*VERBS[verb](run_copy, tmp_path)), needle)
    assert not (tmp_path / "merged").exists()


# --------------------------------------------------------------------------------------------------------
# 2. Dataset strings in report.md / report.html are text, never markup


HOSTILE_TEXTS = [
    '<img src=x onerror="window.__xss=1">',
    "<script>window.__xss=2</script>",
    '"><svg onload=window.__xss=3>',
    "[click](javascript:window.__xss=4)",
    "![secret](../../../../etc/hostname)",
    "a | b | c",
    "`code` **bold** _under_ \\| \\\\",
    "line one\nline two\r\n| x | y |",
    "&lt;img src=x onerror=window.__xss=5&gt;",
    '<a href="javascript:window.__xss=6">x</a>',
    "<style>body{display:none}</style>",
    "$\\frac{1}{$ math",
    "<iframe src=javascript:window.__xss=7>",
]
HOSTILE_LABELS = ["<b onmouseover=window.__xss=8>x</b>", "a|b", "$x^{$", "`tick`"]


def hostile_report(out: Path) -> None:
    """A run report written from hostile texts and label names in every place a string goes."""
    import numpy as np

    from lightft import report
    from lightft.metrics import changed_predictions, compute_metrics

    names = HOSTILE_LABELS
    n = len(HOSTILE_TEXTS)
    y = np.arange(n) % len(names)
    before = (y + 1) % len(names)  # every text wrong before, right after: all of them in the changed table
    evaluations = {key: {**compute_metrics(y, pred, names), "model": key, "trainable_params": 10, "total_params": 100}
                   for key, pred in (("baseline", before), ("finetuned", y))}
    comparisons = {"baseline": {"p_value": 0.5, "changed": changed_predictions(HOSTILE_TEXTS, y, before, y, names)}}
    summary = {"name": '<img src=x onerror="window.__xss=9">', "model": "m`|<b>", "method": "lora",
               "trainable_params": 10, "total_params": 100, "train_samples": n, "validation_samples": 0,
               "test_samples": n, "train_seconds": 1.0, "device": "cpu", "precision": "fp32", "best_epoch": 1}
    training = {"epochs": [{"epoch": 1, "train_loss": 0.5, "val_accuracy": 1.0, "val_macro_f1": 1.0}],
                "log": [], "best_epoch": 1}
    report.write_run_reports(out, summary, evaluations, training, comparisons)


@pytest.mark.parametrize("text", HOSTILE_TEXTS + HOSTILE_LABELS)
def test_markdown_escaping_keeps_each_string_one_literal_cell(text):
    import markdown

    from lightft.report import md_table

    html = markdown.markdown(md_table(["a", "b"], [["x", text]]), extensions=["tables"])
    for tag in ("<img", "<script", "<svg", "<a ", "<iframe", "<style", "<b ", "<code", "<strong", "<em"):
        assert tag not in html, html
    assert html.count("<td>") == 2, html  # `|` and line breaks do not add cells or rows


def test_report_markdown_has_no_live_markup(tmp_path):
    hostile_report(tmp_path)
    import re

    md = (tmp_path / "report.md").read_text()
    for needle in ("<img", "<script", "<svg", "<iframe"):
        assert needle not in md, needle
    links = re.findall(r"(?<!\\)\]\(([^)]*)\)", md)  # unescaped ](target): only the report's own plots
    assert links and all(t.startswith("plots/") for t in links), links
    page = (tmp_path / "report.html").read_text()
    assert "Content-Security-Policy" in page
    assert page.count("<img") == page.count('<img alt="') == page.count('src="data:image/png;base64,')
    for tag in ("<script", "<svg", "<iframe", "<a ", "<b ", "<code"):
        assert tag not in page, tag


@needs_browser
@pytest.mark.slow
def test_report_with_hostile_strings_runs_no_script_in_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    hostile_report(tmp_path)
    pngs = len(list((tmp_path / "plots").glob("*.png")))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page()
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto((tmp_path / "report.html").resolve().as_uri())
        page.wait_for_load_state("load")
        for el in page.query_selector_all("td, th, h1"):  # hover everything: onmouseover must not fire either
            el.hover()
        info = page.evaluate("""() => ({
            xss: window.__xss === undefined ? null : window.__xss,
            images: document.images.length,
            dangerous: document.querySelectorAll('script, svg, iframe, style ~ style, a, b, code').length,
            cells: Array.from(document.querySelectorAll('td')).map(td => td.textContent),
            rows: Array.from(document.querySelectorAll('tr')).map(tr => tr.children.length),
            title: document.querySelector('h1').textContent,
        })""")
        browser.close()
    assert info["xss"] is None and not dialogs
    assert info["images"] == pngs and info["dangerous"] == 0
    for text in HOSTILE_TEXTS:
        assert " ".join(text.split()) in info["cells"], text  # shown literally, whitespace folded
    assert set(HOSTILE_LABELS) <= set(info["cells"])
    assert info["title"] == 'lightft run: <img src=x onerror="window.__xss=9">'


# --------------------------------------------------------------------------------------------------------
# 3. A typo never deletes a finished run; one writer per run directory

def finished_copy_config(finished_run: Path, tmp_path: Path, tiny_bert: Path, class_folder: Path) -> Path:
    shutil.copytree(finished_run, tmp_path / "run")
    return write_config(tmp_path, tiny_run_config(tiny_bert, class_folder, tmp_path / "run"))


@pytest.mark.parametrize("override,needle", [
    ("data.source=typo", "dataset 'typo'"),
    ("data.source=/nonexistent/data.csv", "not found"),
    ("model.name=/nonexistent/model", "cannot load"),
    ("model.max_length=4096", "positions for 130 tokens"),
    ("data.labels=[a, b]", "not one of the labels"),
    (None, "complete run; pass --overwrite"),
])
def test_a_typo_keeps_the_finished_run(finished_run, tiny_bert, class_folder, tmp_path, override, needle):
    cfg = finished_copy_config(finished_run, tmp_path, tiny_bert, class_folder)
    before = sorted(str(p.relative_to(tmp_path / "run")) for p in (tmp_path / "run").rglob("*"))
    # Even with --overwrite a typo is caught before the finished run is touched (without it, the cheap
    # "complete run" check answers first).
    assert_one_line(invoke("run", cfg, *([override, "--overwrite"] if override else [])), needle)
    after = sorted(str(p.relative_to(tmp_path / "run")) for p in (tmp_path / "run").rglob("*"))
    assert after == before
    assert json.loads((tmp_path / "run/run.json").read_text())["status"] == "complete"


def test_overwrite_replaces_a_complete_run(finished_run, tiny_bert, class_folder, tmp_path):
    from lightft import rundir

    shutil.copytree(finished_run, tmp_path / "run")
    rundir.check_output_dir(tmp_path / "run", overwrite=True)  # allowed
    (tmp_path / "run" / "checkpoint").mkdir()
    info = json.loads((tmp_path / "run/run.json").read_text())
    (tmp_path / "run/run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    with pytest.raises(rundir.RunDirError, match="--resume"):
        rundir.check_output_dir(tmp_path / "run")  # a resumable run is not thrown away either


LOCK_HOLDER = """
import sys, time
from pathlib import Path
from lightft import rundir
with rundir.run_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_writer_is_refused_and_a_dead_ones_lock_is_stale(tiny_bert, class_folder, tmp_path):
    from lightft import rundir

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        cfg = write_config(tmp_path, tiny_run_config(tiny_bert, class_folder, out))
        assert_one_line(invoke("run", cfg), f"another lightft process (pid {holder.pid})")
        with pytest.raises(rundir.RunDirError, match="being written"):
            with rundir.run_lock(out):
                pass
    finally:
        holder.kill()  # SIGKILL: no clean-up; the lock file stays behind
        holder.wait()
    assert (out / rundir.LOCK).exists()
    with rundir.run_lock(out):  # the dead process's lock is stale: taken over
        assert (out / rundir.LOCK).read_text().strip() == str(os.getpid())
    assert not (out / rundir.LOCK).exists()


# --------------------------------------------------------------------------------------------------------
# 4. predict never destroys data

def test_predict_refuses_output_equal_to_input(finished_run, tmp_path):
    src = tmp_path / "labelled.csv"
    src.write_text("text,label\ngoal match,sport\nvote law,politics\n", encoding="utf-8")
    original = src.read_bytes()
    assert_one_line(invoke("predict", finished_run, "-i", src, "-o", src), "is the --input file")
    assert_one_line(invoke("predict", finished_run, "-i", src, "-o", tmp_path / "." / "labelled.csv",
                           "--overwrite"), "is the --input file")
    (tmp_path / "link.csv").symlink_to(src)
    assert_one_line(invoke("predict", finished_run, "-i", tmp_path / "link.csv", "-o", src, "--overwrite"),
                    "is the --input file")
    assert src.read_bytes() == original


def test_predict_keeps_input_columns_and_needs_overwrite(finished_run, tmp_path):
    import csv

    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text("text,label,score\ngoal match,sport,1\nvote law,politics,2\n", encoding="utf-8")
    keep = ("--keep-columns", "--probabilities")
    assert invoke("predict", finished_run, "-i", src, "-o", out, *keep).exit_code == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["label"] for r in rows] == ["sport", "politics"] and [r["score"] for r in rows] == ["1", "2"]
    assert {"pred_label", "pred_score", "pred_prob_sport"} <= set(rows[0])
    before = out.read_bytes()
    assert_one_line(invoke("predict", finished_run, "-i", src, "-o", out), "--overwrite")
    assert out.read_bytes() == before
    assert invoke("predict", finished_run, "-i", src, "-o", out, "--overwrite").exit_code == 0
    # An input that already has a prediction column is refused, not overwritten.
    assert_one_line(invoke("predict", finished_run, "-i", out, "-o", tmp_path / "again.csv", *keep), "pred_label")


@pytest.mark.parametrize("where", ["a folder", "inside a file", "a folder for evaluate"])
def test_unusable_output_path_is_one_line(finished_run, class_folder, tmp_path, where):
    src = tmp_path / "in.csv"
    src.write_text("text\ngoal match\n", encoding="utf-8")
    (tmp_path / "afile").write_text("x")
    if where == "a folder":
        assert_one_line(invoke("predict", finished_run, "-i", src, "-o", tmp_path), "is a folder")
    elif where == "inside a file":
        assert_one_line(invoke("predict", finished_run, "-i", src, "-o", tmp_path / "afile" / "o.csv"),
                        "not a folder")
    else:
        assert_one_line(invoke("evaluate", finished_run, "--data", class_folder, "-o", tmp_path), "is a folder")


def test_export_onto_an_existing_file_is_one_line(finished_run, tmp_path):
    (tmp_path / "out").write_text("precious")
    assert_one_line(invoke("export", finished_run, "--merged", tmp_path / "out"), "is a file")
    assert (tmp_path / "out").read_text() == "precious"
    assert_one_line(invoke("export", finished_run, "--merged", finished_run / "merged"), "inside the run")


# --------------------------------------------------------------------------------------------------------
# 5. Every record is read, or the read fails naming the line (one reader for training and predict)

SMS_TSV = ('label\ttext\nham\tGo until jurong point\nham\t"Wen u miss someone..." gdeve..\n'
           'spam\tFree entry "win\nham\tOk lar...\nspam\tURGENT! "call" now"\nham\tsee you\n')


def predict_rows(finished_run: Path, path: Path, tmp_path: Path, *extra) -> tuple[int, list[str]]:
    out = tmp_path / ("out" + path.suffix)
    result = invoke("predict", finished_run, "-i", path, "-o", out, *extra)
    return result, (out.read_text(encoding="utf-8").split("\n") if out.exists() else [])


def test_tsv_has_no_quote_processing_by_default(finished_run, tmp_path):
    import csv

    src = tmp_path / "sms.tsv"
    src.write_text(SMS_TSV, encoding="utf-8")
    result, _ = predict_rows(finished_run, src, tmp_path, "--keep-columns")
    assert result.exit_code == 0, result.output
    assert "classified 6 rows" in result.output
    rows = list(csv.reader((tmp_path / "out.tsv").open(encoding="utf-8", newline=""), delimiter="\t",
                           quoting=csv.QUOTE_NONE))
    assert [r[1] for r in rows[1:]] == [line.split("\t")[1] for line in SMS_TSV.splitlines()[1:]]
    # The same file trains: the training reader is the same reader.
    from lightft.config import DataConfig
    from lightft.readers import read_records

    assert len(read_records(str(src), DataConfig(source=str(src)), "train").texts) == 6


@pytest.mark.parametrize("name,content,needle", [
    ("unbalanced.csv", 'text,label\na,x\n"b,y\nc,z\nd,w\n', "line 3"),
    ("extra.csv", "text,label\na,x\nb,y,EXTRA\nc,z\n", "line 3: 3 fields"),
    ("short.csv", "text,label\na,x\nb\nc,z\n", "line 3: 1 fields"),
    ("duplicate.csv", "text,label,text\na,x,b\n", "'text' more than once"),
    ("extra.tsv", "text\tlabel\na\tx\nb\ty\tz\n", "line 3"),
    ("notobject.jsonl", '{"text": "a"}\n[1, 2]\n', "line 2"),
    ("broken.jsonl", '{"text": "a"}\n{"text": \n', "line 2"),
    ("surrogate.jsonl", '{"text": "a"}\n{"text": "x\\ud800y"}\n', "line 2: not valid Unicode"),
    ("notext.jsonl", '{"text": "a"}\n{"body": "b"}\n', "line 2: no field 'text'"),
    ("empty.jsonl", '{"text": "a"}\n{"text": "  \\n\\t "}\n', "line 2: the text is empty or whitespace-only"),
    ("empty.csv", "text,label\na,x\n,y\n", "line 3: the text is empty or whitespace-only"),
])
def test_predict_reader_fails_naming_the_line(finished_run, tmp_path, name, content, needle):
    src = tmp_path / name
    src.write_text(content, encoding="utf-8")
    result, _ = predict_rows(finished_run, src, tmp_path, "--strict")
    assert_one_line(result, needle)
    assert not (tmp_path / ("out" + src.suffix)).exists() and not list(tmp_path.glob("*.partial"))


def test_columnar_json_of_unequal_columns_fails(tmp_path):
    from lightft.config import DataConfig
    from lightft.errors import DataError
    from lightft.readers import read_records

    src = tmp_path / "cols.json"
    src.write_text(json.dumps({"text": [f"t{i}" for i in range(60)], "label": ["a", "b"] * 20}))
    with pytest.raises(DataError, match="'text' 60, 'label' 40"):
        read_records(str(src), DataConfig(source=str(src)), "train")


def test_long_fields_and_unicode_line_breaks_are_valid(finished_run, tmp_path):
    long_text = "goal " * 40_000  # 200,000 characters: over csv's default field limit
    src = tmp_path / "long.csv"
    src.write_text(f'text\n"{long_text}"\nvote\n', encoding="utf-8")
    result, _ = predict_rows(finished_run, src, tmp_path)
    assert result.exit_code == 0 and "classified 2 rows" in result.output, result.output

    src = tmp_path / "seps.jsonl"
    texts = ["goal\u2028match", "vote\u2029law\x85x\x0cy\x1cz", "tech"]
    src.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    result, _ = predict_rows(finished_run, src, tmp_path, "--keep-columns")
    assert result.exit_code == 0 and "classified 3 rows" in result.output, result.output
    # predict reads its own output back: same rows, same texts
    result = invoke("predict", finished_run, "-i", tmp_path / "out.jsonl", "-o", tmp_path / "again.jsonl",
                    "--keep-columns")
    assert_one_line(result, "pred_label")  # ... and refuses to shadow its own prediction columns
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text(encoding="utf-8").split("\n") if x]
    assert [r["text"] for r in rows] == texts


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_argument_gets_no_label(finished_run, text):
    assert_one_line(invoke("predict", finished_run, "goal", text), "text argument 2: the text is empty")


@pytest.mark.parametrize("text", ["\udcff", "a\ud800b", "\udfff tail"])
def test_lone_surrogate_argument_is_one_line(finished_run, text):
    assert_one_line(invoke("predict", finished_run, "goal", text), "not valid Unicode")


def test_lone_surrogate_in_training_data_is_one_line(tiny_bert, tmp_path):
    rows = "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in make_texts(12))
    (tmp_path / "d.jsonl").write_text(rows + '{"text": "goal \\udc80", "label": "sport"}\n', encoding="utf-8")
    cfg = write_config(tmp_path, tiny_run_config(tiny_bert, tmp_path / "d.jsonl", tmp_path / "run"))
    assert_one_line(invoke("run", cfg), "line 37: not valid Unicode")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------------------
# 6. Config bombs and binary configs

def alias_bomb(levels: int = 9) -> str:
    text = 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for i in range(1, levels):
        text += f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n"
    return text


@pytest.mark.parametrize("kind", ["file", "config_overrides", "override", "recursive", "deep", "binary",
                                  "latin-1", "run config.yaml"])
def test_config_bombs_and_binary_are_one_line(tiny_bert, class_folder, tmp_path, finished_run, kind):
    import yaml

    base = yaml.safe_dump(tiny_run_config(tiny_bert, class_folder, tmp_path / "run"))
    cfg = tmp_path / "c.yaml"
    extra: list[str] = []
    needle = "alias"
    if kind == "file":
        cfg.write_text(alias_bomb() + base)
    elif kind == "config_overrides":
        cfg.write_text(alias_bomb() + base.replace("model:\n", "model:\n  config_overrides: {x: *a8}\n", 1))
    elif kind == "override":
        cfg.write_text(base)
        extra = ["model.config_overrides=" + "{" + alias_bomb().replace("\n", ", ").rstrip(", ") + "}"]
    elif kind == "recursive":
        cfg.write_text(base + "evaluation: &e {bootstrap_resamples: *e}\n")
        needle = "refers to itself"
    elif kind == "deep":
        cfg.write_text(base + "x: " + "[" * 20_000 + "]" * 20_000 + "\n")
        needle = "nested too deeply"
    elif kind == "binary":
        cfg.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)))
        needle = "binary"
    elif kind == "latin-1":
        cfg.write_bytes(base.encode() + "name: caf\xe9\n".encode("latin-1"))
        needle = "not UTF-8"
    else:
        run = tmp_path / "copy"
        shutil.copytree(finished_run, run)
        (run / "config.yaml").write_text(alias_bomb() + (run / "config.yaml").read_text())
        start = time.perf_counter()
        assert_one_line(invoke("predict", run, "goal"), "alias")
        assert time.perf_counter() - start < 30
        return
    start = time.perf_counter()
    assert_one_line(invoke("run", cfg, *extra), needle)
    assert time.perf_counter() - start < 30
    assert not (tmp_path / "run").exists()


def test_max_length_options_that_make_no_sense(finished_run, class_folder, tiny_bert, tmp_path):
    assert_one_line(invoke("evaluate", finished_run, "--data", class_folder, "--max-length", "0",
                           "-o", tmp_path / "m.json"), "--max-length must be at least 8")
    assert_one_line(invoke("evaluate", tiny_bert, "--data", class_folder, "--max-length", "4096",
                           "-o", tmp_path / "m.json"), "positions for 130 tokens")


# --------------------------------------------------------------------------------------------------------
# 8. Smaller: compare into a run, file modes, a corrupted RNG state on resume

@pytest.mark.parametrize("target", ["report.md", "plots/cmp.md", "new/cmp.md"])
def test_compare_never_writes_into_a_run(finished_run, target):
    report = (finished_run / "report.md").read_bytes()
    assert_one_line(invoke("compare", finished_run, "-o", finished_run / target), "inside the run directory")
    assert (finished_run / "report.md").read_bytes() == report and not (finished_run / "new").exists()


def test_evaluate_and_predict_never_write_into_a_run(finished_run, class_folder, tmp_path):
    summary = (finished_run / "summary.json").read_bytes()
    assert_one_line(invoke("evaluate", finished_run, "--data", class_folder, "-o", finished_run / "summary.json"),
                    "inside the run directory")
    src = tmp_path / "in.csv"
    src.write_text("text\ngoal match\n", encoding="utf-8")
    assert_one_line(invoke("predict", finished_run, "-i", src, "-o", finished_run / "metrics" / "p.csv",
                           "--overwrite"), "inside the run directory")
    assert (finished_run / "summary.json").read_bytes() == summary
    assert not (finished_run / "metrics" / "p.csv").exists()


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    from lightft import rundir

    old = os.umask(umask)
    try:
        rundir.atomic_write_json(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == mode


def test_saved_weights_follow_the_umask(finished_run, tmp_path):
    from lightft import rundir
    from lightft.export import export_merged

    want = 0o666 & ~rundir.current_umask()  # safetensors itself writes 0600 whatever the umask
    weights = list((finished_run / "adapter").glob("*.safetensors"))
    assert weights and all(p.stat().st_mode & 0o777 == want for p in weights)
    out = export_merged(finished_run, tmp_path / "merged")
    assert all(p.stat().st_mode & 0o777 == want for p in out.rglob("*") if p.is_file())


def test_corrupted_rng_state_on_resume_warns(tmp_path, caplog):
    import logging

    from accelerate import Accelerator

    from lightft.train import _load_state

    accelerator = Accelerator(cpu=True)
    accelerator.save_state(str(tmp_path / "ck"), safe_serialization=True)
    with caplog.at_level(logging.WARNING, logger="lightft"):
        _load_state(accelerator, tmp_path / "ck")
    assert "RNG state" not in caplog.text  # a sound checkpoint: no warning
    (tmp_path / "ck" / "random_states_0.pkl").write_bytes(b"not a pickle")
    with caplog.at_level(logging.WARNING, logger="lightft"):
        _load_state(accelerator, tmp_path / "ck")
    assert "RNG state" in caplog.text and "missing or corrupted" in caplog.text


def test_predict_reads_a_quoted_tsv_with_quoting_minimal(finished_run, tmp_path):
    src = tmp_path / "q.tsv"  # as Python's csv module or pandas write a tab inside a text
    src.write_text('text\tid\n"goal\tmatch"\t1\nvote\t2\n', encoding="utf-8")
    assert_one_line(invoke("predict", finished_run, "-i", src, "-o", tmp_path / "a.tsv", "--strict"),
                    "--quoting minimal")
    result = invoke("predict", finished_run, "-i", src, "-o", tmp_path / "b.tsv", "--quoting", "minimal")
    assert result.exit_code == 0 and "classified 2 rows" in result.output, result.output
    assert_one_line(invoke("predict", finished_run, "x", "--quoting", "rfc"), "--quoting must be one of")


def test_a_long_string_aliased_many_times_is_refused_before_it_expands(tmp_path):
    from lightft.config import safe_yaml
    from lightft.errors import ConfigError

    # 300 x 300 = 90,000 nodes (under the node bound) of a 2,000-character string: 180 MB once expanded
    text = f'a0: &a0 "{"x" * 2000}"\n' + "a1: &a1 [" + ", ".join(["*a0"] * 300) + "]\n" + \
        "a2: [" + ", ".join(["*a1"] * 300) + "]\n"
    with pytest.raises(ConfigError, match="characters"):
        safe_yaml(text, "bomb.yaml")
    assert safe_yaml('a: &a "x"\nb: [*a, *a]\n', "ok.yaml") == {"a": "x", "b": ["x", "x"]}


def test_a_quoted_tsv_read_literally_warns(tmp_path, caplog):
    import logging

    from lightft.config import DataConfig
    from lightft.readers import read_records

    src = tmp_path / "q.tsv"
    src.write_text('text\tlabel\n"He said ""hi"""\tx\nplain\ty\n', encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="lightft"):
        records = read_records(str(src), DataConfig(source=str(src)), "train")
    assert records.texts[0] == '"He said ""hi"""' and "looks RFC 4180-quoted" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lightft"):
        records = read_records(str(src), DataConfig(source=str(src), quoting="minimal"), "train")
    assert records.texts[0] == 'He said "hi"' and "quoted" not in caplog.text
    # predict's streaming reader warns the same way, once per file
    from lightft.tables import TableReader

    src.write_text(src.read_text() + '"again ""x"""\tz\n', encoding="utf-8")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lightft"):
        rows = list(TableReader(src).rows())
    assert rows[0].values["text"] == '"He said ""hi"""' and caplog.text.count("looks RFC 4180-quoted") == 1
    assert "q.tsv line 2" in caplog.text
