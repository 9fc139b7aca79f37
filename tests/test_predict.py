"""`lightft predict --input/--output` on a corpus (issue 16): streamed in chunks, resumable after any kill,
bad rows set aside, sharded across processes by Accelerate, memory flat in the input's size."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_hostile import assert_one_line

from conftest import invoke

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["goal", "match", "team", "vote", "law", "tax", "chip", "software", "phone", "party", "score", "market"]


def write_corpus(path: Path, n: int, seed: int = 0, words: tuple[int, int] = (3, 12)) -> Path:
    import random

    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text"])
        for i in range(n):
            writer.writerow([f"doc{i}", " ".join(rng.choice(WORDS) for _ in range(rng.randint(*words)))])
    return path


def lightft_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "lightft", *map(str, args)]


def child_env(**extra) -> dict[str, str]:
    return {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", **extra}


def test_output_carries_the_id_and_the_library_predictions(finished_run, tmp_path):
    from lightft.predict import Classifier

    src = write_corpus(tmp_path / "in.csv", 30)
    out = tmp_path / "out.csv"
    result = invoke("predict", finished_run, "-i", src, "-o", out, "--chunk-size", "7", "--probabilities")
    assert result.exit_code == 0, result.output
    assert "classified 30 rows" in result.output
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    texts = [r["text"] for r in csv.DictReader(src.open(encoding="utf-8"))]
    want = Classifier.from_run(finished_run).predict(texts)
    assert [r["id"] for r in rows] == [f"doc{i}" for i in range(30)]  # input order across 5 chunks
    assert [r["pred_label"] for r in rows] == [p.label for p in want]
    assert [float(r["pred_prob_sport"]) for r in rows] == pytest.approx([p.probabilities["sport"] for p in want],
                                                                         abs=2e-6)
    assert not (tmp_path / "out.csv.partial").exists() and not (tmp_path / "out.csv.errors.jsonl").exists()
    assert not list(tmp_path.glob(".*"))  # no temporary or half-removed folder left beside the output


def test_texts_mostly_beyond_what_the_model_reads_get_a_warning(finished_run, tmp_path, caplog):
    """The tiny run reads 32 tokens of each text (head): texts ~10x that long are classified from their
    first tenth, which predict says once; texts within max_length, or windows that reach every token, say nothing."""
    from lightft.predict import Classifier, warn_if_unread

    clf = Classifier.from_run(finished_run)
    long_text = " ".join(["goal match team"] * 100)
    with caplog.at_level("WARNING", logger="lightft"):
        assert warn_if_unread(clf, [long_text] * 3, "in.csv") > 0.8
        assert "in.csv: about 89%" in caplog.text and "the first 32 tokens" in caplog.text
        caplog.clear()
        assert warn_if_unread(clf, ["goal match team"], "short") == 0.0 and not caplog.text
        clf.truncation, clf.window_stride, clf.max_windows = "windows", 16, 32  # reach 16 * 31 + 32 = 528 tokens
        assert warn_if_unread(clf, [long_text], "windows") < 0.5 and not caplog.text
        clf.max_windows = 2  # reach 48 of ~302 tokens
        assert warn_if_unread(clf, [long_text], "windows") > 0.8 and "larger model.max_windows" in caplog.text
    src = tmp_path / "long.csv"
    src.write_text("text\n" + "".join(f"{long_text}\n" for _ in range(5)), encoding="utf-8")
    result = invoke("predict", finished_run, "-i", src, "-o", tmp_path / "out.csv", "--chunk-size", "2")
    assert result.exit_code == 0 and result.output.count("beyond what the model reads") == 1, result.output


def test_a_nan_text_is_empty_as_in_training():
    from lightft.predict import text_problem

    assert text_problem({"text": float("nan")}, "text") == "field 'text' is empty (NaN)"
    assert text_problem({"text": 1.5}, "text") is None  # numbers are text, as in training


def test_bad_rows_go_to_the_errors_file_with_row_and_reason(finished_run, tmp_path):
    src = tmp_path / "in.jsonl"
    lines = ['{"id": 1, "text": "goal match"}', '{"id": 2, "text": null}', '{"id": 3, "body": "x"}',
             '{"id": 4, "text": ["a"]}', "{broken", '{"id": 6, "text": "   "}', '{"id": 7, "text": "x\\ud800"}',
             "[1, 2]", '{"id": 9, "text": "vote law"}', '{"id": 10, "text": 42}']
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = invoke("predict", finished_run, "-i", src, "-o", out, "--chunk-size", "3")
    assert result.exit_code == 0, result.output
    assert "classified 3 rows" in result.output and "7 rows could not be classified" in result.output
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == [1, 9, 10]
    errors = [json.loads(x) for x in (tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()]
    assert [e["row"] for e in errors] == [2, 3, 4, 5, 6, 7, 8]
    reasons = [e["reason"] for e in errors]
    for row, needle in zip([2, 3, 4, 5, 6, 7, 8], ["empty (null)", "no field 'text'", "not a text", "malformed JSON",
                                                   "empty or whitespace-only", "not valid Unicode", "JSON object"],
                           strict=True):
        assert needle in reasons[row - 2], (row, reasons)
    assert errors[3]["where"].endswith("line 5")
    # --strict keeps the stop-at-the-first-bad-row behaviour, before any output is written
    assert_one_line(invoke("predict", finished_run, "-i", src, "-o", tmp_path / "s.jsonl", "--strict"),
                    "line 2: field 'text' is empty")
    assert not (tmp_path / "s.jsonl").exists() and not (tmp_path / "s.jsonl.partial").exists()


def test_texts_that_give_the_model_no_tokens_get_no_label(finished_run, tmp_path):
    """Only zero-width or control characters: the tokenizer keeps nothing but [CLS] [SEP], so any label would be
    the head's prior. serve answers 422; predict names the argument, or sets the row aside."""
    assert_one_line(invoke("predict", finished_run, "goal match", "\u200b\u200b"),
                    "text argument 2 gives the model no tokens to read")
    src = tmp_path / "in.csv"
    src.write_text("id,text\n1,goal match\n2,\u200b\u2060\n3,\x01\x02\n4,vote law\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    result = invoke("predict", finished_run, "-i", src, "-o", out)
    assert result.exit_code == 0, result.output
    assert [line.split(",")[0] for line in out.read_text().splitlines()[1:]] == ["1", "4"]
    errors = [json.loads(x) for x in (tmp_path / "out.csv.errors.jsonl").read_text().splitlines()]
    assert [e["row"] for e in errors] == [2, 3] and all("no tokens to read" in e["reason"] for e in errors)
    assert_one_line(invoke("predict", finished_run, "-i", src, "-o", tmp_path / "s.csv", "--strict"),
                    "line 3: the text gives the model no tokens to read")
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "s.csv.partial").exists()  # refused before any work


def test_a_csv_row_of_the_wrong_width_is_set_aside(finished_run, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("id,text\n1,goal match\n2,vote,law\n3,chip phone\n", encoding="utf-8")
    result = invoke("predict", finished_run, "-i", src, "-o", tmp_path / "out.csv")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in csv.DictReader((tmp_path / "out.csv").open())] == ["1", "3"]
    (error,) = [json.loads(x) for x in (tmp_path / "out.csv.errors.jsonl").read_text().splitlines()]
    assert error["row"] == 2 and error["where"].endswith("line 3") and "3 fields" in error["reason"]


def test_existing_output_or_unfinished_job_is_refused(finished_run, tmp_path):
    src = write_corpus(tmp_path / "in.csv", 5)
    out = tmp_path / "out.csv"
    out.write_text("precious")
    assert_one_line(invoke("predict", finished_run, "-i", src, "-o", out), "--overwrite")
    assert out.read_text() == "precious"
    out.unlink()
    (tmp_path / "out.csv.partial").mkdir()
    assert_one_line(invoke("predict", finished_run, "-i", src, "-o", out), "--resume")
    out.write_text("an earlier output")  # a killed --overwrite: the old output beside the new job's chunks
    assert_one_line(invoke("predict", finished_run, "-i", src, "-o", out),
                    "an interrupted predict that was replacing it: continue that one with --resume")
    out.unlink()
    (tmp_path / "out.csv.partial").rmdir()
    (tmp_path / "out.csv.errors.jsonl").write_text("{}\n")
    assert_one_line(invoke("predict", finished_run, "-i", src, "-o", out), "out.csv.errors.jsonl exists")
    assert invoke("predict", finished_run, "-i", src, "-o", out, "--overwrite").exit_code == 0
    assert not (tmp_path / "out.csv.errors.jsonl").exists()  # the stale errors file went with the replaced output
    assert_one_line(invoke("predict", finished_run, "-i", src, "-o", out, "--resume"), "no unfinished predict")
    assert_one_line(invoke("predict", finished_run, "-i", src, "-o", tmp_path / "out.jsonl"), "input's format")
    (tmp_path / "f.csv.partial").write_text("x")
    assert_one_line(invoke("predict", finished_run, "-i", src, "-o", tmp_path / "f.csv", "--overwrite"), "is a file")


def test_odd_records_are_handled_not_fatal(finished_run, tmp_path):
    src = tmp_path / "in.jsonl"  # a BOM-only first line, a lone surrogate in a carried id, a shadowing field
    src.write_bytes(b"\xef\xbb\xbf\n" + "\n".join([
        '{"id": "a\\ud800", "text": "goal match"}', '{"id": "b", "text": "vote law", "pred_label": "x"}',
        '{"id": "c", "text": "chip phone"}']).encode() + b"\n")
    out = tmp_path / "out.jsonl"
    result = invoke("predict", finished_run, "-i", src, "-o", out, "--chunk-size", "2")
    assert result.exit_code == 0 and "classified 3 rows" in result.output, result.output
    assert [json.loads(x)["id"] for x in out.read_text(encoding="utf-8").splitlines()] == ["a\ud800", "b", "c"]
    # A carried field that a prediction would replace: refused for the whole file when the columns (the first
    # 100 records' keys) show it, else that record goes to the errors file.
    assert_one_line(invoke("predict", finished_run, "-i", src, "-o", tmp_path / "k.jsonl", "--keep-columns"),
                    "already has a column 'pred_label'")
    late = tmp_path / "late.jsonl"
    late.write_text("".join(json.dumps({"text": "goal match"}) + "\n" for _ in range(100))
                    + json.dumps({"text": "vote", "pred_label": "x"}) + "\n", encoding="utf-8")
    result = invoke("predict", finished_run, "-i", late, "-o", tmp_path / "keep.jsonl", "--keep-columns")
    assert result.exit_code == 0 and "1 row could not be classified" in result.output, result.output
    (error,) = [json.loads(x) for x in (tmp_path / "keep.jsonl.errors.jsonl").read_text().splitlines()]
    assert error["row"] == 101 and "'pred_label' would be replaced" in error["reason"]


def test_a_removal_cut_short_is_cleared_and_never_resumable(finished_run, tmp_path, monkeypatch):
    import shutil

    from lightft import predict

    src = write_corpus(tmp_path / "in.csv", 6)
    out = tmp_path / "out.csv"
    real_rmtree = shutil.rmtree
    monkeypatch.setattr(predict.shutil, "rmtree", lambda *a, **k: None)  # killed while removing the parts
    assert invoke("predict", finished_run, "-i", src, "-o", out, "--chunk-size", "2").exit_code == 0
    trash = tmp_path / ".out.csv.partial.removing"
    assert trash.is_dir() and not (tmp_path / "out.csv.partial").exists()  # renamed first: nothing to resume
    assert_one_line(invoke("predict", finished_run, "-i", src, "-o", out, "--resume"), "no unfinished predict")
    monkeypatch.setattr(predict.shutil, "rmtree", real_rmtree)
    assert invoke("predict", finished_run, "-i", src, "-o", out, "--overwrite").exit_code == 0
    assert not trash.exists()


def test_a_second_predict_on_the_same_output_is_refused(finished_run, tmp_path):
    from lightft import rundir

    src = write_corpus(tmp_path / "in.csv", 4)
    with rundir.file_lock(tmp_path / ".out.csv.lock", "held"):  # as a running predict holds it
        assert_one_line(invoke("predict", finished_run, "-i", src, "-o", tmp_path / "out.csv", "--overwrite"),
                        "being written by another lightft predict")
    assert invoke("predict", finished_run, "-i", src, "-o", tmp_path / "out.csv").exit_code == 0
    assert not (tmp_path / ".out.csv.lock").exists()


def test_resume_refuses_chunks_of_another_input(finished_run, tmp_path):
    from lightft.predict import Classifier, FileJob

    src = write_corpus(tmp_path / "in.csv", 20)
    job = FileJob(Classifier.from_run(finished_run), src, tmp_path / "out.csv", chunk_size=5)
    job.start(20, resume=False, overwrite=False)
    write_corpus(src, 21)  # the input changed since the chunks were written
    assert_one_line(invoke("predict", finished_run, "-i", src, "-o", tmp_path / "out.csv", "--resume",
                           "--chunk-size", "5"), "belongs to another predict")


@pytest.mark.slow
def test_a_killed_predict_resumes_to_exactly_the_uninterrupted_output(finished_run, tmp_path):
    src = write_corpus(tmp_path / "in.csv", 1000)  # 200 chunks: room to be killed after 5
    args = ("predict", finished_run, "-i", src, "--chunk-size", "5", "--quiet", "--probabilities")
    subprocess.run(lightft_cmd(*args, "-o", tmp_path / "whole.csv"), check=True, env=child_env(), timeout=600)

    out, partial = tmp_path / "out.csv", tmp_path / "out.csv.partial"
    proc = subprocess.Popen(lightft_cmd(*args, "-o", out), env=child_env(), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(list(partial.glob("part-*.csv"))) < 5 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "finished before it could be killed"
    done = len(list(partial.glob("part-*.csv")))
    assert 5 <= done < 200 and not out.exists()
    assert_one_line(invoke("predict", *args[1:], "-o", out), "--resume")  # no silent restart
    resumed = subprocess.run(lightft_cmd(*args, "-o", out, "--resume"), env=child_env(), capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"({done * 5} done before --resume)" in resumed.stdout
    assert out.read_bytes() == (tmp_path / "whole.csv").read_bytes()  # none lost, none twice
    assert not partial.exists()


def test_parquet_in_parquet_out(finished_run, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lightft.predict import Classifier

    texts = ["goal match team", "vote law tax", None, "chip phone software"]
    pq.write_table(pa.table({"key": pa.array([10, 11, 12, 13], pa.int64()), "text": texts}), tmp_path / "in.parquet")
    result = invoke("predict", finished_run, "-i", tmp_path / "in.parquet", "-o", tmp_path / "out.parquet",
                    "--id-column", "key", "--probabilities", "--chunk-size", "2")
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.schema.field("key").type == pa.int64() and table.schema.field("pred_score").type == pa.float64()
    assert table.column("key").to_pylist() == [10, 11, 13]
    want = Classifier.from_run(finished_run).predict([t for t in texts if t])
    assert table.column("pred_label").to_pylist() == [p.label for p in want]
    assert json.loads((tmp_path / "out.parquet.errors.jsonl").read_text())["row"] == 3
    assert_one_line(invoke("predict", finished_run, "-i", tmp_path / "in.parquet", "-o", tmp_path / "x.parquet",
                           "--id-column", "nope"), "no id column 'nope'")


def test_progress_bar_and_quiet(finished_run, tmp_path):
    src = write_corpus(tmp_path / "in.csv", 10)
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    loud = subprocess.run(lightft_cmd("predict", finished_run, "-i", src, "-o", tmp_path / "a.csv"), env=env,
                          capture_output=True, text=True, timeout=300)
    assert loud.returncode == 0 and "rows/s" in loud.stderr and "10/10" in loud.stderr, loud.stderr[-1000:]
    quiet = subprocess.run(lightft_cmd("predict", finished_run, "-i", src, "-o", tmp_path / "b.csv", "-q"), env=env,
                           capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0 and "rows/s" not in quiet.stderr, quiet.stderr[-1000:]


PEAK_RSS = ("import resource, runpy, sys\n"
            "try:\n    runpy.run_module('lightft', run_name='__main__')\n"
            "finally:\n    print('peak_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_input(finished_run, tmp_path):
    # 4x the rows, ~1 KB each: the whole-file predict this replaced grew by 15% from 4,000 to 16,000 such rows
    peaks = {}
    for n in (2_500, 10_000):
        src = write_corpus(tmp_path / f"in{n}.csv", n, words=(100, 300))
        proc = subprocess.run([sys.executable, "-c", PEAK_RSS, "predict", str(finished_run), "-i", str(src), "-o",
                               str(tmp_path / f"out{n}.csv"), "--quiet", "--keep-columns"], env=child_env(),
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-2000:]
        peaks[n] = int(proc.stderr.split("peak_kib")[-1].split()[0])
    assert peaks[10_000] <= 1.15 * peaks[2_500], peaks


@pytest.mark.slow
def test_two_processes_write_the_single_process_output(finished_run, tmp_path):
    """`accelerate launch --num_processes 2 -m lightft predict`: each CPU process (gloo) takes every other
    chunk; the main process merges them into the output one process writes."""
    src = write_corpus(tmp_path / "in.csv", 300)
    args = ("predict", finished_run, "-i", src, "--chunk-size", "16", "--probabilities", "--quiet")
    subprocess.run(lightft_cmd(*args, "-o", tmp_path / "one.csv"), check=True, env=child_env(), timeout=600)
    launcher = Path(sys.executable).parent / "accelerate"
    proc = subprocess.run(
        [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
         "no", "--dynamo_backend", "no", "-m", "lightft", *map(str, args), "-o", str(tmp_path / "two.csv")],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=child_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("classified 300 rows") == 1  # reported once, by the main process
    assert (tmp_path / "two.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()
    assert not (tmp_path / "two.csv.partial").exists()


def test_the_runs_text_column_is_read_and_the_output_folder_is_made(finished_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    saved = (run / "config.yaml").read_text(encoding="utf-8")
    assert "text_column: text\n" in saved
    (run / "config.yaml").write_text(saved.replace("text_column: text\n", "text_column: body\n"), encoding="utf-8")
    src = tmp_path / "in.csv"
    src.write_text("id,body\na,goal match team\nb,tax vote law\n", encoding="utf-8")
    out = tmp_path / "new" / "folder" / "out.csv"  # does not exist yet
    result = invoke("predict", run, "-i", src, "-o", out)
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in csv.DictReader(out.open(encoding="utf-8"))] == ["a", "b"]
    # an input with the usual 'text' column still reads it
    plain = write_corpus(tmp_path / "plain.csv", 3)
    assert invoke("predict", run, "-i", plain, "-o", tmp_path / "plain-out.csv").exit_code == 0
    # neither: the one column named like a text (as training reads it), with a warning
    review = tmp_path / "review.csv"
    review.write_text("id,Review\na,goal match team\n", encoding="utf-8")
    result = invoke("predict", run, "-i", review, "-o", tmp_path / "review-out.csv")
    assert result.exit_code == 0 and "reading 'Review' as the text" in result.output, result.output
