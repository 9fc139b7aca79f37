"""`lightft serve`: one copy of the base model in memory, many LoRA adapters, each with its own head and labels.

How the sharing works: the base encoder (e.g. ``BertModel``) is loaded once and wrapped by PEFT; every run's
LoRA weights are added to it under the run's name, and every layer a run trained inside the encoder (e.g.
BERT's pooler) becomes a per-adapter copy through PEFT's ``modules_to_save``. Each run keeps its own
classification head (any number of labels) in a small "shell" classifier whose encoder attribute points at
the shared encoder. A request switches the active adapter and runs that shell; a lock serialises the switch.

Requests are batched: the server collects requests for ``batch_window_ms``, groups texts by adapter and runs
one forward pass per group. Results do not depend on batching (inference is per text).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from lightft import rundir
from lightft.errors import LightftError

LORA_FAMILY = ("lora", "dora", "rslora")
PAD_MULTIPLE = 32  # served batches are padded to a multiple of this many tokens


@dataclass
class Adapter:
    name: str
    run_dir: Path
    label_names: list[str]
    shell: Any  # a sequence classifier whose encoder is the shared one
    max_length: int
    truncation: str  # head, head_tail or windows (lightft.windows)
    inference: dict[str, Any]
    threshold: float | None
    batch_size: int  # texts per forward pass: the run's train.eval_batch_size (resolved for this device)
    metrics: dict[str, Any] = field(default_factory=dict)
    window_stride: int | None = None
    max_windows: int = 8


class AdapterServer:
    """The shared base model and its adapters; ``classify`` is the one entry point for inference."""

    def __init__(self, runs: dict[str, Path], precision: str = "auto") -> None:
        import torch
        from peft import PeftConfig, get_peft_model, set_peft_model_state_dict
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

        from lightft.config import inference_options, load_run_config
        from lightft.heads import apply_recorded_pooling
        from lightft.model import _quiet_transformers, resolve_model_path
        from lightft.runtime import resolve_device, resolve_eval_batch_size

        _quiet_transformers()
        if not runs:
            raise LightftError("give at least one run directory to serve")
        configs = {}
        for name, path in runs.items():
            rundir.require_complete(path)
            configs[name] = load_run_config(path)
            if configs[name].method not in LORA_FAMILY:
                raise LightftError(f"run '{name}' ({path}) used method '{configs[name].method}'; serve shares one "
                                   f"base model between LoRA-family adapters ({', '.join(LORA_FAMILY)})")
        bases = {cfg.model.name for cfg in configs.values()}
        if len(bases) > 1:
            detail = ", ".join(f"{n}: {c.model.name}" for n, c in configs.items())
            raise LightftError(f"the runs use different base models ({detail}); serve one base model per server")
        self.base_name = bases.pop()
        self.device = resolve_device()
        self.precision = precision
        first = next(iter(configs.values()))
        self.tokenizer = AutoTokenizer.from_pretrained(next(iter(runs.values())) / "adapter")
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        encoder = AutoModel.from_pretrained(resolve_model_path(self.base_name), use_safetensors=True,
                                            trust_remote_code=first.model.trust_remote_code)
        self.adapters: dict[str, Adapter] = {}
        self.shared: Any = None
        self.lock = threading.Lock()
        for name, path in runs.items():
            cfg = configs[name]
            adapter_dir = path / "adapter"
            config = AutoConfig.from_pretrained(adapter_dir)
            with torch.device("meta"):  # the shell's own encoder is never materialised
                shell = AutoModelForSequenceClassification.from_config(config)
            apply_recorded_pooling(shell)  # a mean-pooled head pools the shared encoder's states itself
            prefix = shell.base_model_prefix
            weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
            inside = f"base_model.model.{prefix}."
            encoder_weights = {"base_model.model." + k[len(inside):]: v for k, v in weights.items()
                               if k.startswith(inside)}
            head_weights = {k[len("base_model.model."):]: v for k, v in weights.items() if not k.startswith(inside)}
            peft_config = PeftConfig.from_pretrained(adapter_dir)
            peft_config.task_type = None
            inner = {k[len("base_model.model."):].split(".")[0] for k in encoder_weights if "lora_" not in k}
            peft_config.modules_to_save = sorted(inner) or None
            if self.shared is None:
                self.shared = get_peft_model(encoder, peft_config, adapter_name=name)
            else:
                self.shared.add_adapter(name, peft_config)
            result = set_peft_model_state_dict(self.shared, encoder_weights, adapter_name=name)
            if result.unexpected_keys:
                raise LightftError(f"adapter '{name}' does not fit the base model (e.g. {result.unexpected_keys[0]})")
            setattr(shell, prefix, self.shared.base_model.model)
            head_modules = {k.split(".")[0] for k in head_weights}
            for module_name in head_modules:
                module = getattr(shell, module_name).to_empty(device="cpu")
                sub = {k[len(module_name) + 1:]: v for k, v in head_weights.items() if k.startswith(module_name + ".")}
                module.load_state_dict(sub)
            shell.to(self.device).eval()
            summary = rundir.read_json(path / "summary.json")
            decision = path / "decision.json"
            self.adapters[name] = Adapter(
                name=name, run_dir=path, label_names=[config.id2label[i] for i in range(config.num_labels)],
                shell=shell, max_length=cfg.model.max_length, truncation=cfg.model.truncation,
                inference=inference_options(cfg),
                threshold=rundir.read_json(decision)["threshold"] if decision.is_file() else None,
                batch_size=resolve_eval_batch_size(cfg.train.eval_batch_size, self.device),
                metrics={k: summary[k] for k in ("finetuned", "baseline") if k in summary},
                window_stride=cfg.model.window_stride, max_windows=cfg.model.max_windows,
            )
        self.shared.to(self.device).eval()

    def classify(self, adapter: str, texts: list[str]) -> list[dict[str, Any]]:
        """Label, score and all class probabilities for each text."""
        from lightft.evaluate import apply_threshold, softmax
        from lightft.windows import tokenize_texts

        a = self.adapters[adapter]
        enc = tokenize_texts(texts, self.tokenizer, a.max_length, a.truncation, a.window_stride, a.max_windows,
                             progress=False)
        probs = softmax(self._logits(a, enc.ids, enc.owner))
        out = []
        for row, best in zip(probs, apply_threshold(probs, a.threshold), strict=True):
            out.append({"label": a.label_names[best], "score": float(row[best]),
                        "probabilities": {n: float(p) for n, p in zip(a.label_names, row, strict=True)}})
        return out

    def _logits(self, a: Adapter, ids: list[list[int]], owner: Any = None) -> Any:
        from lightft.evaluate import predict_logits

        # Lengths padded to multiples of PAD_MULTIPLE: the set of batch shapes is bounded (and all seen in the
        # warm-up), so per-shape kernel caches stop growing and memory stays flat under any traffic. The lock
        # makes switching the shared encoder's adapter and running it one step. One worker: the batcher
        # already runs inference on one dedicated thread, which keeps the heap to one arena.
        with self.lock:
            self.shared.set_adapter(a.name)
            return predict_logits(a.shell, ids, self.pad_id, a.batch_size, self.precision, progress=False,
                                  pad_multiple_of=PAD_MULTIPLE, max_length=a.max_length, owner=owner,
                                  **{**a.inference, "workers": 1})

    def warm_up(self) -> None:
        """Run every batch shape the server can run (each batch size up to the adapter's, each padded length)
        before serving, so the first requests are not slow and memory is at its steady level from the start."""
        from lightft.data import tokenize

        for a in self.adapters.values():
            long_ids = tokenize(["warm up " * a.max_length], self.tokenizer, a.max_length, progress=False)[0]
            for length in range(PAD_MULTIPLE, a.max_length + PAD_MULTIPLE, PAD_MULTIPLE):
                for size in range(1, a.batch_size + 1):
                    self._logits(a, [long_ids[:length]] * size)

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": a.name, "labels": a.label_names, "base_model": self.base_name, "metrics": a.metrics,
                 "max_length": a.max_length, "has_report": (a.run_dir / "report.html").is_file()}
                for a in self.adapters.values()]


class ClassifyRequest(BaseModel):
    adapter: str = Field(description="Adapter name, as listed by GET /v1/adapters.")
    texts: list[str] = Field(description="Texts to classify (at most --max-texts).")


@dataclass
class Limits:
    max_texts: int = 64  # texts per request
    max_chars: int = 20_000  # characters per text
    max_body_bytes: int = 1_000_000  # request body
    batch_window_ms: float = 5.0  # how long the server waits to batch concurrent requests
    warm_up: bool = True  # run every batch shape once before serving (steady memory, no slow first request)


class _Batcher:
    """Collects requests for a short window and runs them grouped by adapter on one inference thread.

    One thread, not the event loop's default pool: torch already uses every core inside a forward pass, and
    each extra thread would get a glibc arena of its own that keeps its peak allocation for good."""

    def __init__(self, server: AdapterServer, window_ms: float, warm_up: bool = True) -> None:
        self.server = server
        self.window = window_ms / 1000
        self.warm_up = warm_up
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        self.executor: Any = None

    async def start(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lightft-inference")
        if self.warm_up:
            await asyncio.get_running_loop().run_in_executor(self.executor, self._guarded, self.server.warm_up)
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.executor:
            self.executor.shutdown(wait=True)

    @staticmethod
    def _guarded(fn: Any, *args: Any) -> Any:
        from lightft.runtime import release_free_memory

        try:
            return fn(*args)
        finally:
            release_free_memory()

    async def submit(self, adapter: str, texts: list[str]) -> list[dict[str, Any]]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((adapter, texts, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            deadline = loop.time() + self.window
            while (left := deadline - loop.time()) > 0:
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            groups: dict[str, list[tuple[list[str], asyncio.Future]]] = {}
            for adapter, texts, future in items:
                groups.setdefault(adapter, []).append((texts, future))
            for adapter, requests in groups.items():
                texts = [t for ts, _ in requests for t in ts]
                try:
                    results = await loop.run_in_executor(self.executor, self._guarded, self.server.classify,
                                                         adapter, texts)
                except Exception as exc:  # reported to every waiting request, never swallowed
                    for _, future in requests:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                start = 0
                for ts, future in requests:
                    if not future.done():
                        future.set_result(results[start:start + len(ts)])
                    start += len(ts)


def create_app(server: AdapterServer, limits: Limits | None = None) -> Any:
    """The FastAPI app: /v1/classify, /v1/adapters, /healthz, the page at / and OpenAPI docs at /docs."""
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import HTMLResponse, JSONResponse

    limits = limits or Limits()
    batcher = _Batcher(server, limits.batch_window_ms, limits.warm_up)

    @contextlib.asynccontextmanager
    async def lifespan(_: Any):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="lightft", version="1", lifespan=lifespan,
                  description="Text classification with LoRA adapters sharing one base model.")

    @app.middleware("http")
    async def cap_body(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limits.max_body_bytes):
            return JSONResponse({"error": f"request body over {limits.max_body_bytes} bytes"}, status_code=413)
        return await call_next(request)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "adapters": len(server.adapters), "base_model": server.base_name}

    @app.get("/v1/adapters")
    def adapters() -> dict[str, Any]:
        return {"adapters": server.describe()}

    @app.post("/v1/classify")
    async def classify(body: ClassifyRequest) -> dict[str, Any]:
        if body.adapter not in server.adapters:  # names are only looked up, never used as paths
            raise HTTPException(404, f"unknown adapter '{body.adapter}'; available: {', '.join(server.adapters)}")
        if not body.texts:
            raise HTTPException(422, "texts is empty")
        if len(body.texts) > limits.max_texts:
            raise HTTPException(413, f"{len(body.texts)} texts; at most {limits.max_texts} per request")
        for i, text in enumerate(body.texts):
            if len(text) > limits.max_chars:
                raise HTTPException(413, f"texts[{i}] has {len(text)} characters; at most {limits.max_chars}")
        results = await batcher.submit(body.adapter, body.texts)
        return {"adapter": body.adapter, "results": results}

    @app.get("/v1/adapters/{name}/report", response_class=HTMLResponse)
    def report(name: str) -> HTMLResponse:
        adapter = server.adapters.get(name)
        if adapter is None:
            raise HTTPException(404, f"unknown adapter '{name}'")
        page = adapter.run_dir / "report.html"
        if not page.is_file():
            raise HTTPException(404, f"run of adapter '{name}' has no report.html")
        return HTMLResponse(page.read_text(encoding="utf-8"))

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        options = "".join(f'<option value="{html.escape(n)}">{html.escape(n)}</option>' for n in server.adapters)
        return HTMLResponse(INDEX_HTML.replace("{options}", options))

    return app


INDEX_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>lightft</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 760px; margin: 2em auto; padding: 0 1em; color: #1b1f24; }
textarea { width: 100%; height: 8em; font: inherit; } select, button { font: inherit; padding: .3em .6em; }
.bar { background: #2f6fde; height: 1.1em; border-radius: 3px; } .row { display: flex; gap: .6em; margin: .3em 0; }
.name { width: 12em; } .track { flex: 1; background: #eef1f5; border-radius: 3px; }
.p { width: 4em; text-align: right; }
#error { color: #b00020; }
</style></head><body>
<h1>lightft</h1>
<p><label>Adapter <select id="adapter">{options}</select></label>
<a id="report" href="#" target="_blank">comparison report</a></p>
<textarea id="text" placeholder="Paste a text to classify"></textarea>
<p><button id="go">Classify</button> <span id="error"></span></p>
<h2 id="label"></h2><div id="bars"></div>
<script>
const $ = (id) => document.getElementById(id);
function setReport() { $("report").href = "/v1/adapters/" + encodeURIComponent($("adapter").value) + "/report"; }
$("adapter").addEventListener("change", setReport); setReport();
$("go").addEventListener("click", async () => {
  $("error").textContent = ""; $("bars").innerHTML = ""; $("label").textContent = "";
  const r = await fetch("/v1/classify", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({adapter: $("adapter").value, texts: [$("text").value]})});
  const data = await r.json();
  if (!r.ok) { $("error").textContent = data.error || JSON.stringify(data.detail); return; }
  const res = data.results[0];
  $("label").textContent = res.label + " (" + (100 * res.score).toFixed(1) + "%)";
  for (const [name, p] of Object.entries(res.probabilities).sort((a, b) => b[1] - a[1])) {
    const row = document.createElement("div"); row.className = "row";
    row.innerHTML = '<span class="name"></span><span class="track"><div class="bar"></div></span>'
      + '<span class="p"></span>';
    row.querySelector(".name").textContent = name;
    row.querySelector(".bar").style.width = (100 * p).toFixed(1) + "%";
    row.querySelector(".p").textContent = (100 * p).toFixed(1) + "%";
    $("bars").appendChild(row);
  }
});
</script></body></html>
"""


def parse_runs(specs: list[str]) -> dict[str, Path]:
    """``RUN_DIR`` (named after its folder) or ``name=RUN_DIR``."""
    runs: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec).name, spec
        if not name or name in runs:
            raise LightftError(f"adapter name '{name}' is empty or given twice; use name=RUN_DIR")
        runs[name] = Path(path)
    return runs
