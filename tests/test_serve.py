"""lightft serve: adapters with different label sets on one base model, limits, batching, and the web page."""

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lightft.errors import LightftError
from lightft.predict import Classifier
from lightft.serve import AdapterServer, Limits, create_app, parse_runs

from conftest import build_tiny_model, invoke, make_texts, tiny_run_config, write_class_folder, write_config


@pytest.fixture(scope="module")
def binary_run(tiny_bert, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("binary")
    rows = [(t, "spam" if y == "politics" else "ham") for t, y in make_texts(20)]
    (tmp / "d.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows), encoding="utf-8")
    cfg = write_config(tmp, tiny_run_config(tiny_bert, tmp / "d.csv", tmp / "run", name="spam", **{
        "train.epochs": 1, "baselines.zero_shot": False, "baselines.linear_probe": False}))
    assert invoke("run", cfg).exit_code == 0
    return tmp / "run"


@pytest.fixture(scope="module")
def client(finished_run, binary_run):
    from fastapi.testclient import TestClient

    server = AdapterServer({"topics": finished_run, "spam": binary_run}, precision="fp32")
    with TestClient(create_app(server, Limits(max_texts=4, max_chars=200, max_body_bytes=5000))) as c:
        yield c


@pytest.mark.slow
def test_adapters_share_one_base_and_keep_their_labels(client, finished_run, binary_run):
    info = client.get("/v1/adapters").json()["adapters"]
    assert {a["name"]: len(a["labels"]) for a in info} == {"topics": 3, "spam": 2}
    assert len({a["base_model"] for a in info}) == 1 and "finetuned" in info[0]["metrics"]
    assert client.get("/healthz").json()["status"] == "ok"
    texts = ["goal match team", "vote law tax minister"]
    for name, run in (("topics", finished_run), ("spam", binary_run)):
        r = client.post("/v1/classify", json={"adapter": name, "texts": texts})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        reference = Classifier.from_run(run, precision="fp32").predict(texts)
        assert [x["label"] for x in results] == [p.label for p in reference]
        got = np.array([[x["probabilities"][n] for n in sorted(x["probabilities"])] for x in results])
        want = np.array([[p.probabilities[n] for n in sorted(p.probabilities)] for p in reference])
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_concurrent_requests_are_batched_with_unbatched_results(client):
    texts = [t for t, _ in make_texts(4, seed=9)]
    single = [client.post("/v1/classify", json={"adapter": a, "texts": [t]}).json()["results"][0]
              for a, t in zip(["topics", "spam"] * 6, texts, strict=True)]
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(client.post, "/v1/classify", json={"adapter": a, "texts": [t]})
                   for a, t in zip(["topics", "spam"] * 6, texts, strict=True)]
        together = [f.result().json()["results"][0] for f in futures]
    assert [x["label"] for x in together] == [x["label"] for x in single]
    for a, b in zip(together, single, strict=True):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)


def test_inference_runs_warmed_up_on_one_thread_with_bounded_shapes(finished_run):
    """Every batch shape is run before the first request, all on one thread (one malloc arena), and served
    batches only take those shapes: lengths padded to multiples of PAD_MULTIPLE."""
    from fastapi.testclient import TestClient

    from lightft.serve import PAD_MULTIPLE

    server = AdapterServer({"topics": finished_run}, precision="fp32")
    adapter = server.adapters["topics"]
    calls, shapes, original = [], [], server._logits

    def spy(a, ids, owner=None):
        calls.append(threading.current_thread().name)
        return original(a, ids, owner)

    server._logits = spy
    hook = adapter.shell.register_forward_pre_hook(lambda _m, _a, kw: shapes.append(tuple(kw["input_ids"].shape)),
                                                   with_kwargs=True)
    with TestClient(create_app(server)) as c, ThreadPoolExecutor(4) as pool:
        warm = set(shapes)
        buckets = -(-adapter.max_length // PAD_MULTIPLE)
        assert len(warm) == buckets * adapter.batch_size  # every (batch size, padded length), before any request
        texts = [" ".join(["goal", "vote", "film", "tax"] * k) for k in range(1, 9)]
        for r in pool.map(lambda t: c.post("/v1/classify", json={"adapter": "topics", "texts": [t, t[:9]]}), texts):
            assert r.status_code == 200
    hook.remove()
    assert set(shapes) <= warm and all(n % PAD_MULTIPLE == 0 or n == adapter.max_length for _, n in shapes)
    assert set(calls) == {calls[0]} and calls[0].startswith("lightft-inference")


@pytest.mark.parametrize("body,status,needle", [
    ({"adapter": "nope", "texts": ["a"]}, 404, "unknown adapter"),
    ({"adapter": "topics", "texts": ["a"] * 5}, 413, "at most 4"),
    ({"adapter": "topics", "texts": ["x" * 201]}, 413, "texts[0]"),
    ({"adapter": "topics", "texts": []}, 422, "empty"),
    ({"adapter": "topics"}, 422, "texts"),
    ({"adapter": "topics", "texts": "goal"}, 422, "texts"),
    ({"adapter": "../../etc", "texts": ["a"]}, 404, "unknown adapter"),
    ({"texts": ["a"]}, 422, "name the adapter: this server has 2 (topics, spam)"),
])
def test_bad_requests_get_clear_4xx(client, body, status, needle):
    r = client.post("/v1/classify", json=body)
    assert r.status_code == status and needle in r.text


def test_a_server_of_one_adapter_needs_no_name(finished_run):
    from fastapi.testclient import TestClient

    with TestClient(create_app(AdapterServer({"topics": finished_run}, precision="fp32"), Limits())) as c:
        r = c.post("/v1/classify", json={"texts": ["goal match team"]})
    assert r.status_code == 200 and r.json()["adapter"] == "topics" and len(r.json()["results"]) == 1


def test_body_size_cap_and_garbage(client):
    r = client.post("/v1/classify", content=b"{" + b" " * 6000 + b"}", headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = client.post("/v1/classify", content=b"not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert client.get("/v1/adapters/nope/report").status_code == 404


@pytest.mark.slow
def test_runs_on_different_base_models_are_refused(finished_run, tiny_models, tmp_path, class_folder):
    other = build_tiny_model(tiny_models, "electra")
    cfg = write_config(tmp_path, tiny_run_config(other, class_folder, tmp_path / "e", name="e", **{
        "train.epochs": 1, "baselines.zero_shot": False, "baselines.linear_probe": False}))
    assert invoke("run", cfg).exit_code == 0
    with pytest.raises(LightftError, match="different base models"):
        AdapterServer({"a": finished_run, "b": tmp_path / "e"})
    with pytest.raises(LightftError, match="given twice"):
        parse_runs([f"a={finished_run}", f"a={finished_run}"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_web_page_classifies_in_a_real_browser(finished_run, binary_run):
    import uvicorn
    from test_report import BROWSER_ARGS, CHROMIUM, needs_browser

    if needs_browser.args[0]:
        pytest.skip(needs_browser.kwargs["reason"])
    port = _free_port()
    app = create_app(AdapterServer({"topics": finished_run, "spam": binary_run}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.select_option("#adapter", "spam")
            page.fill("#text", "vote law tax minister")
            page.click("#go")
            # a selector, not wait_for_function: that evaluates a string, which the page's CSP forbids
            page.wait_for_selector("#bars .row:nth-child(2)", timeout=20000)
            label = page.text_content("#label")
            href = page.get_attribute("#report", "href")
            report = page.context.request.get(f"http://127.0.0.1:{port}{href}")
            report_ok, report_text = report.ok, report.text()
            browser.close()
        assert label.split(" ")[0] in {"ham", "spam"}
        assert report_ok and "lightft run" in report_text
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.slow
def test_a_mean_pooled_and_a_cls_adapter_share_one_base(finished_mean_run, tiny_sentence_bert, tmp_path):
    """Each adapter keeps its own head: the mean-pooled run and a [CLS] run on the same base give, served
    side by side, what each gives alone."""
    cfg = write_config(tmp_path, tiny_run_config(
        tiny_sentence_bert, write_class_folder(tmp_path / "corpus"), tmp_path / "run", name="cls-head",
        **{"model.pooling": "cls", "train.epochs": 1, "baselines.zero_shot": False,
           "baselines.linear_probe": False, "baselines.tfidf": False}))
    assert invoke("run", cfg).exit_code == 0
    server = AdapterServer({"mean": finished_mean_run, "cls": tmp_path / "run"}, precision="fp32")
    texts = ["goal match team", "vote law tax minister", "chip data robot network"]
    for name, run in (("mean", finished_mean_run), ("cls", tmp_path / "run"), ("mean", finished_mean_run)):
        served = server.classify(name, texts)
        alone = Classifier.from_run(run, precision="fp32").predict(texts)
        assert [x["label"] for x in served] == [p.label for p in alone]
        for x, p in zip(served, alone, strict=True):
            assert x["probabilities"] == pytest.approx(p.probabilities, abs=1e-4)
