"""`lightft serve`: one copy of the base model in memory, many LoRA adapters, each with its own head and labels.

How the sharing works: the base encoder (e.g. ``BertModel``) is loaded once and wrapped by PEFT; every run's
LoRA weights are added to it under the run's name, and every layer a run trained inside the encoder (e.g.
BERT's pooler) becomes a per-adapter copy through PEFT's ``modules_to_save``. Each run keeps its own
classification head (any number of labels) in a small "shell" classifier whose encoder attribute points at
the shared encoder. A request switches the active adapter and runs that shell; a lock serialises the switch.

Requests are batched: the server collects requests for ``batch_window_ms``, groups texts by adapter and runs
one forward pass per group. Batching changes no label; probabilities agree with unbatched ones within 1e-5 in
fp32 and within 1e-2 under bf16, whose kernels depend on the batch's shape (decisions closer than
``inference.recheck_margin`` are recomputed in fp32). A request that fails inside a batch is retried alone, so one
client's text fails only that client's request.

In front of the app, ``_Guard`` checks the API key, counts the body's bytes as they arrive (chunked bodies
too) with a deadline, and adds the security headers (CSP, nosniff) to every response.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import html
import ipaddress
import json
import logging
import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from lightft import rundir
from lightft.errors import LightftError, RunDirError
from lightft.methods import LORA_FAMILY

PAD_MULTIPLE = 32  # served batches are padded to a multiple of this many tokens
log = logging.getLogger("lightft.serve")


@dataclass
class Adapter:
    name: str
    run_dir: Path
    label_names: list[str]
    shell: Any  # a sequence classifier whose encoder is the shared one
    max_length: int
    truncation: str  # head, head_tail or windows (lightft.windows)
    inference: dict[str, Any]
    decision: Any  # inference.Decision: argmax, a binary threshold, or per-label thresholds (multi-label)
    batch_size: int  # texts per forward pass: the run's inference.batch_size (resolved for this device)
    metrics: dict[str, Any] = field(default_factory=dict)
    window_stride: int | None = None
    max_windows: int = 8
    key: str = ""  # the PEFT adapter (module) name: "adapter0", ...; names may hold dots, module names may not


class TextError(LightftError):
    """A text the model cannot read (no tokens); the request that sent it gets a 422, no other request."""


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    mismatch = [line for line in lines if line.startswith("size mismatch")]  # torch's load_state_dict
    return (mismatch or lines or [type(exc).__name__])[0][:300]


@contextlib.contextmanager
def _reading(name: str, path: Path) -> Any:
    """Any failure to read a run's file becomes one line naming the adapter and the file."""
    try:
        yield
    except LightftError as exc:
        raise RunDirError(f"adapter '{name}': {exc}") from None
    except Exception as exc:  # a damaged or foreign file: corrupt safetensors, bad JSON/YAML, wrong shapes
        raise RunDirError(f"adapter '{name}': cannot use {path}: {_first_line(exc)}") from None


def _read_configs(runs: dict[str, Path]) -> dict[str, Any]:
    """Each run's config, after checking it is complete, LoRA-family, and on the one shared base model."""
    from lightft.config import load_run_config

    configs = {}
    for name, path in runs.items():
        check_adapter_name(name)
        with _reading(name, path / "run.json"):
            rundir.require_complete(path)
        with _reading(name, path / "config.yaml"):
            configs[name] = load_run_config(path)
        if configs[name].method not in LORA_FAMILY:
            raise LightftError(f"run '{name}' ({path}) used method '{configs[name].method}'; serve shares one "
                               f"base model between LoRA-family adapters ({', '.join(LORA_FAMILY)})")
    bases = {(cfg.model.name, cfg.model.revision) for cfg in configs.values()}
    if len(bases) > 1:
        detail = ", ".join(f"{n}: {c.model.name}" + (f"@{c.model.revision}" if c.model.revision else "")
                           for n, c in configs.items())
        raise LightftError(f"the runs use different base models ({detail}); serve one base model per server")
    return configs


def _one_tokenizer(runs: dict[str, Path], trust_remote_code: bool) -> Any:
    """The first run's tokenizer, which must be every run's (one tokenizer serves all)."""
    from transformers import AutoTokenizer

    (first_name, first_path), *others = runs.items()
    with _reading(first_name, first_path / "adapter"):
        tokenizer = AutoTokenizer.from_pretrained(first_path / "adapter", trust_remote_code=trust_remote_code)
        # transformers builds an empty tokenizer (special tokens only) when the files are missing
        if len(tokenizer) <= len(set(tokenizer.all_special_ids)):
            raise LightftError("no tokenizer in it (tokenizer.json or the vocabulary file is missing)")
    for name, path in others:
        with _reading(name, path / "adapter"):
            other = AutoTokenizer.from_pretrained(path / "adapter", trust_remote_code=trust_remote_code)
            if other.get_vocab() != tokenizer.get_vocab():
                raise LightftError(f"its tokenizer differs from adapter '{first_name}''s (missing or "
                                   f"changed tokenizer files); serve it on its own")
    return tokenizer


def _empty_shell(name: str, adapter_dir: Path, trust_remote_code: bool) -> tuple[Any, list[str]]:
    """The run's classifier class built on the meta device (its own encoder is never materialised), pooling as
    its config records, and its label names."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from lightft.heads import apply_recorded_pooling

    with _reading(name, adapter_dir / "config.json"):
        config = AutoConfig.from_pretrained(adapter_dir, trust_remote_code=trust_remote_code)
        label_names = [str(config.id2label[i]) for i in range(config.num_labels)]
        with torch.device("meta"):
            shell = AutoModelForSequenceClassification.from_config(config)
        apply_recorded_pooling(shell)  # a mean-pooled head pools the shared encoder's states itself
    return shell, label_names


def _load_head(shell: Any, head_weights: dict[str, Any], label_names: list[str], adapter_dir: Path) -> None:
    head_modules = {k.split(".")[0] for k in head_weights}
    if not head_modules:
        raise LightftError("it holds no classification head")
    for module_name in head_modules:
        module = getattr(shell, module_name).to_empty(device="cpu")
        sub = {k[len(module_name) + 1:]: v for k, v in head_weights.items() if k.startswith(module_name + ".")}
        try:
            module.load_state_dict(sub)
        except RuntimeError as exc:  # most often: config.json's label map is not the head's size
            raise LightftError(f"its head does not fit the {len(label_names)} labels of "
                               f"{adapter_dir / 'config.json'}: {_first_line(exc)}") from None


def _decision(name: str, decision: Path, label_names: list[str], multi_label: bool) -> Any:
    """How the run's probabilities become labels (``predict.read_decision``)."""
    from lightft.predict import read_decision

    with _reading(name, decision):
        return read_decision(decision, label_names, multi_label)


class AdapterServer:
    """The shared base model and its adapters; ``classify`` is the one entry point for inference."""

    def __init__(self, runs: dict[str, Path], precision: str = "auto", trust_remote_code: bool = False) -> None:
        """``trust_remote_code`` comes from the command line only: a run directory is data (it may have been
        downloaded), so nothing in it can switch on code execution by itself."""
        from transformers import AutoModel

        from lightft.model import _quiet_transformers, resolve_model_path
        from lightft.runtime import resolve_device

        _quiet_transformers()
        if not runs:
            raise LightftError("give at least one run directory to serve")
        runs = {name: Path(path) for name, path in runs.items()}
        configs = _read_configs(runs)
        first = next(iter(configs.values()))
        self.base_name, self.revision = first.model.name, first.model.revision
        self.device = resolve_device()
        self.precision = precision
        self.trust_remote_code = trust_remote_code
        self.tokenizer = _one_tokenizer(runs, trust_remote_code)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        first_name = next(iter(runs))
        with _reading(first_name, Path(self.base_name)):
            encoder = AutoModel.from_pretrained(resolve_model_path(self.base_name), revision=self.revision,
                                                use_safetensors=True, trust_remote_code=trust_remote_code)
        if len(self.tokenizer) > encoder.get_input_embeddings().num_embeddings:
            raise RunDirError(f"adapter '{first_name}': its tokenizer has {len(self.tokenizer)} tokens but the base "
                              f"model {self.base_name} only {encoder.get_input_embeddings().num_embeddings}")
        self.adapters: dict[str, Adapter] = {}
        self.shared: Any = encoder  # the PEFT model around it once the first adapter is attached
        self.lock = threading.Lock()
        for number, (name, path) in enumerate(runs.items()):
            self.adapters[name] = self._add_adapter(f"adapter{number}", name, path, configs[name])
        self.shared.to(self.device).eval()

    def _add_adapter(self, key: str, name: str, path: Path, cfg: Any) -> Adapter:
        """Attach one run's adapter to the shared encoder under PEFT name ``key`` (the public name is only a
        dictionary key) and build its shell: a classifier whose encoder is the shared one and whose head is
        the run's."""
        from lightft.config import inference_options
        from lightft.model import is_multi_label
        from lightft.runtime import resolve_eval_batch_size

        adapter_dir = path / "adapter"
        shell, label_names = _empty_shell(name, adapter_dir, self.trust_remote_code)
        encoder_weights, head_weights = self._attach(key, name, adapter_dir, shell.base_model_prefix)
        setattr(shell, shell.base_model_prefix, self.shared.base_model.model)
        with _reading(name, adapter_dir / "adapter_model.safetensors"):
            _load_head(shell, head_weights, label_names, adapter_dir)
        shell.to(self.device).eval()
        with _reading(name, path / "summary.json"):
            summary = rundir.read_json(path / "summary.json")
            metrics = {k: summary[k] for k in ("finetuned", "baseline") if k in summary}
        return Adapter(
            name=name, run_dir=path, label_names=label_names,
            shell=shell, max_length=cfg.model.max_length, truncation=cfg.model.truncation,
            inference=inference_options(cfg),
            decision=_decision(name, path / "decision.json", label_names, is_multi_label(shell)),
            batch_size=resolve_eval_batch_size(cfg.inference.batch_size, self.device),
            metrics=metrics, window_stride=cfg.model.window_stride, max_windows=cfg.model.max_windows,
            key=key,
        )

    def _attach(self, key: str, name: str, adapter_dir: Path, prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Load the adapter's encoder weights into the shared PEFT model as adapter ``key``; returns them and the
        head's weights (by module name in the shell)."""
        from peft import PeftConfig, get_peft_model, set_peft_model_state_dict
        from safetensors.torch import load_file

        with _reading(name, adapter_dir / "adapter_model.safetensors"):
            weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
        inside = f"base_model.model.{prefix}."
        encoder_weights = {"base_model.model." + k[len(inside):]: v for k, v in weights.items()
                           if k.startswith(inside)}
        head_weights = {k[len("base_model.model."):]: v for k, v in weights.items() if not k.startswith(inside)}
        with _reading(name, adapter_dir / "adapter_config.json"):
            peft_config = PeftConfig.from_pretrained(adapter_dir)
        peft_config.task_type = None
        # PEFT saves `all-linear` as the matched modules' full names in the classifier (`bert.encoder....`); the
        # shared model is the bare encoder, where the same modules are named without that prefix.
        targets = peft_config.target_modules
        if isinstance(targets, (list, set, tuple)):
            cut = f"{prefix}."
            peft_config.target_modules = {t[len(cut):] if t.startswith(cut) else t for t in targets}
        inner = {k[len("base_model.model."):].split(".")[0] for k in encoder_weights if "lora_" not in k}
        peft_config.modules_to_save = sorted(inner) or None
        with _reading(name, adapter_dir / "adapter_model.safetensors"):
            if not self.adapters:
                self.shared = get_peft_model(self.shared, peft_config, adapter_name=key)
            else:
                self.shared.add_adapter(key, peft_config)
            result = set_peft_model_state_dict(self.shared, encoder_weights, adapter_name=key)
            if result.unexpected_keys:
                raise LightftError(f"it does not fit the base model {self.base_name} "
                                   f"(e.g. {result.unexpected_keys[0]})")
        return encoder_weights, head_weights

    def classify(self, adapter: str, texts: list[str]) -> list[dict[str, Any]]:
        """Label, score and all class probabilities for each text (multi-label: also ``labels``, the predicted
        set), the JSON of /v1/classify."""
        from lightft.inference import to_predictions

        a = self.adapters[adapter]
        return [p.to_json() for p in to_predictions(self.probabilities(adapter, texts), a.label_names, a.decision)]

    def probabilities(self, adapter: str, texts: list[str]) -> Any:
        """Class probabilities of ``adapter`` for each text (multi-label: each label's); a text with no tokens to
        read is a ``TextError``."""
        from lightft.windows import UNREAD_REASON

        a = self.adapters[adapter]
        enc = self.tokenize(adapter, texts)
        unread = enc.unread(len(texts), self.tokenizer)
        if unread:
            raise TextError(f"{', '.join(f'texts[{i}]' for i in unread)} {UNREAD_REASON}")
        return a.decision.probabilities(self._logits(a, enc.ids, enc.owner))

    def tokenize(self, adapter: str, texts: list[str]) -> Any:
        """``texts`` as ``adapter``'s model reads them (its max_length, truncation and windows)."""
        from lightft.windows import tokenize_texts

        a = self.adapters[adapter]
        return tokenize_texts(texts, self.tokenizer, a.max_length, a.truncation, a.window_stride, a.max_windows,
                              progress=False)

    def predictor(self, adapter: str) -> AdapterPredictor:
        """One served adapter as an ``inference.Predictor`` (what predict, evaluate and the benches take)."""
        return AdapterPredictor(self, adapter)

    def _logits(self, a: Adapter, ids: list[list[int]], owner: Any = None) -> Any:
        from lightft.inference import predict_logits

        # Lengths padded to multiples of PAD_MULTIPLE: the set of batch shapes is bounded (and all seen in the
        # warm-up), so per-shape kernel caches stop growing and memory stays flat under any traffic. The lock
        # makes switching the shared encoder's adapter and running it one step. One worker: the batcher
        # already runs inference on one dedicated thread, which keeps the heap to one arena.
        with self.lock:
            self.shared.set_adapter(a.key)
            return predict_logits(a.shell, ids, self.pad_id, a.batch_size, self.precision, progress=False,
                                  owner=owner, boundaries=a.decision.boundaries(len(a.label_names)),
                                  **{**a.inference, "workers": 1, "pad_multiple_of": PAD_MULTIPLE,
                                     "max_length": a.max_length})

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


class AdapterPredictor:
    """An adapter of a running ``AdapterServer`` behind the ``inference.Predictor`` interface."""

    def __init__(self, server: AdapterServer, adapter: str) -> None:
        if adapter not in server.adapters:
            raise LightftError(f"unknown adapter {adapter!r}; available: {', '.join(server.adapters)}")
        self.server, self.adapter = server, adapter
        self.label_names = server.adapters[adapter].label_names
        self.decision = server.adapters[adapter].decision

    def predict_proba(self, texts: list[str], progress: bool = False) -> Any:
        return self.server.probabilities(self.adapter, texts)

    def unread(self, texts: list[str]) -> list[int]:
        from lightft.windows import unread_texts

        return unread_texts(texts, lambda some: self.server.tokenize(self.adapter, some), self.server.tokenizer,
                            self.server.adapters[self.adapter].max_length)

    def predict(self, texts: list[str], progress: bool = False) -> list[Any]:
        from lightft.inference import to_predictions

        return to_predictions(self.predict_proba(texts), self.label_names, self.decision)


class ClassifyRequest(BaseModel):
    adapter: str | None = Field(None, description="Adapter name, as listed by GET /v1/adapters; may be left out "
                                                 "when the server has one adapter.")
    texts: list[str] = Field(description="Texts to classify (at most --max-texts).")


@dataclass
class Limits:
    max_texts: int = 64  # texts per request
    max_chars: int = 20_000  # characters per text
    max_body_bytes: int = 1_000_000  # request body
    batch_window_ms: float = 5.0  # how long the server waits to batch concurrent requests
    warm_up: bool = True  # run every batch shape once before serving (steady memory, no slow first request)
    body_timeout_s: float = 30.0  # the whole request body must arrive within this time, or 408

    def check(self) -> None:
        """One line for a limit that makes no sense (zero texts, negative sizes, not a number)."""
        for name in ("max_texts", "max_chars", "max_body_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LightftError(f"--{name.replace('_', '-')} must be a whole number of at least 1, not {value}")
        if not (math.isfinite(self.batch_window_ms) and 0 <= self.batch_window_ms <= 10_000):
            raise LightftError(f"--batch-window-ms must be between 0 and 10000, not {self.batch_window_ms}")
        if not (math.isfinite(self.body_timeout_s) and 0 < self.body_timeout_s <= 3600):
            raise LightftError(f"--body-timeout-s must be above 0 and at most 3600, not {self.body_timeout_s}")


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
                try:
                    await self._serve(adapter, [(ts, f) for ts, f in requests if not f.done()])
                except Exception as exc:  # the batcher never dies: every later request would wait forever
                    log.exception("batch for adapter %r failed", adapter)
                    for _, future in requests:
                        if not future.done():
                            future.set_exception(exc)

    async def _serve(self, adapter: str, requests: list[tuple[list[str], asyncio.Future]]) -> None:
        """One forward pass for the group; if it fails, each request alone, so that one request's text (or a
        bug it triggers) fails that request only."""
        loop = asyncio.get_running_loop()
        if not requests:
            return
        texts = [t for ts, _ in requests for t in ts]
        try:
            results = await loop.run_in_executor(self.executor, self._guarded, self.server.classify, adapter, texts)
        except Exception as exc:
            if len(requests) == 1:
                if not requests[0][1].done():
                    requests[0][1].set_exception(exc)
                return
            for ts, future in requests:
                try:
                    alone = await loop.run_in_executor(self.executor, self._guarded, self.server.classify,
                                                       adapter, ts)
                except Exception as exc_alone:
                    if not future.done():
                        future.set_exception(exc_alone)
                else:
                    if not future.done():
                        future.set_result(alone)
            return
        start = 0
        for ts, future in requests:
            if not future.done():
                future.set_result(results[start:start + len(ts)])
            start += len(ts)


# Security headers. The pages that show run content (reports: dataset texts and label names) get a policy that
# runs no script at all and sandboxes the document (no access to the API's origin even if markup slipped
# through); the report needs only its inline <style> and data: images. The page at / runs exactly its own
# script (pinned by hash). /docs and /redoc load Swagger UI and ReDoc from the jsDelivr CDN and show only the
# schema generated from this code, so they get framing and base-URI limits but may load those scripts.
REPORT_CSP = ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; base-uri 'none'; "
              "form-action 'none'; frame-ancestors 'none'; sandbox")
DOCS_CSP = "base-uri 'none'; object-src 'none'; frame-ancestors 'none'"


def _csp_hash(page: str, tag: str) -> str:
    body = re.search(f"<{tag}>(.*?)</{tag}>", page, re.S).group(1)
    return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"


def _json_bytes(data: Any) -> bytes:
    """JSON that never fails on what a client sent: lone surrogates are escaped, not encoded."""
    return json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _short(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[:limit] + "..."


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Guard:
    """Pure ASGI middleware in front of the app. It checks the API key (before reading anything), reads the body
    itself while counting bytes (a chunked body has no Content-Length to trust: over the limit is a 413 the
    moment it is exceeded, a body that has not arrived within ``body_timeout_s`` a 408), and adds the security
    headers to every response. The app then gets the body, at most ``max_body_bytes``, from memory."""

    def __init__(self, app: Any, limits: Limits, api_key: str | None, docs_paths: set[str],
                 index_csp: str) -> None:
        self.app, self.limits, self.docs_paths, self.index_csp = app, limits, docs_paths, index_csp
        self.key_digest = hashlib.sha256(api_key.encode()).digest() if api_key else None

    def _authorised(self, scope: dict[str, Any]) -> bool:
        given = next((v for k, v in scope.get("headers", []) if k.lower() == b"authorization"), b"")
        scheme, _, token = given.partition(b" ")
        # hashed first so that the comparison takes the same time whatever the length of the guess
        return scheme.lower() == b"bearer" and hmac.compare_digest(hashlib.sha256(token.strip()).digest(),
                                                                   self.key_digest)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        csp = self.index_csp if path == "/" else DOCS_CSP if path in self.docs_paths else REPORT_CSP

        async def send_secured(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                ours = {b"content-security-policy", b"x-content-type-options", b"referrer-policy"}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in ours]
                headers += [(b"content-security-policy", csp.encode()), (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer")]
                message = {**message, "headers": headers}
            await send(message)

        async def refuse(status: int, error: str, extra: list[tuple[bytes, bytes]] = ()) -> None:
            body = _json_bytes({"error": error})
            await send_secured({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"), *extra]})
            await send_secured({"type": "http.response.body", "body": body})

        if self.key_digest is not None and path.startswith("/v1/") and not self._authorised(scope):
            await refuse(401, "this server needs an API key: send the header 'Authorization: Bearer KEY'",
                         [(b"www-authenticate", b'Bearer realm="lightft"')])
            return
        limit = self.limits.max_body_bytes
        length = next((v for k, v in scope.get("headers", []) if k.lower() == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > limit):
            await refuse(413, f"request body over {limit} bytes")
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.body_timeout_s
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:
                await refuse(408, f"request body not received within {self.limits.body_timeout_s:g} s")
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await refuse(413, f"request body over {limit} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # only http.disconnect is left to come

        await self.app(scope, replay, send_secured)


def _error_handlers(app: Any, json_response: Any) -> None:
    """Every error is a JSON ``{"error": one line}``; what the client sent is never echoed back."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as AnyHTTPException  # routing's 404/405 too

    @app.exception_handler(AnyHTTPException)
    async def http_error(_: Request, exc: AnyHTTPException) -> Any:
        return json_response({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Any:
        # what the client sent is not echoed back (it may be a megabyte, or not encodable)
        detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(x) for x in first["loc"] if x != "body") or "body"
        sent = request.headers.get("content-type", "")
        if where == "body" and request.method == "POST" and "json" not in sent.lower():
            # FastAPI reads a body without a JSON content-type as a string: say what to send, not "not a dict"
            error = f"body: send JSON with the header 'Content-Type: application/json' (got {sent[:60] or 'none'!r})"
            return json_response({"error": error, "detail": detail}, status_code=422)
        if first.get("type") == "json_invalid":  # FastAPI's loc is ("body", offset): "33: JSON decode error"
            offset = next((x for x in first["loc"] if isinstance(x, int)), None)
            at = f" at character {offset + 1}" if offset is not None else ""
            why = str((exc.errors()[0].get("ctx") or {}).get("error", ""))[:80]  # e.g. "Expecting ',' delimiter"
            return json_response({"error": f"body: not valid JSON{at}{f' ({why})' if why else ''}",
                                  "detail": detail}, status_code=422)
        return json_response({"error": f"{where}: {first['msg']}", "detail": detail}, status_code=422)

    @app.exception_handler(Exception)
    async def crashed(_: Request, exc: Exception) -> Any:
        log.error("internal error: %s", _first_line(exc), exc_info=exc)
        return json_response({"error": "internal error; the server's log has the details"}, status_code=500)


def _check_texts(texts: list[str], limits: Limits) -> None:
    """A request's texts within the limits and readable, else the HTTP error that names the text."""
    from fastapi import HTTPException

    if not texts:
        raise HTTPException(422, "texts is empty")
    if len(texts) > limits.max_texts:
        raise HTTPException(413, f"{len(texts)} texts; at most {limits.max_texts} per request")
    for i, text in enumerate(texts):
        if len(text) > limits.max_chars:
            raise HTTPException(413, f"texts[{i}] has {len(text)} characters; at most {limits.max_chars} (the "
                                     "server's --max-chars)")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate (JSON allows "\ud800"; text does not)
            raise HTTPException(422, f"texts[{i}] is not valid Unicode text: {exc.reason} at character "
                                     f"{exc.start}") from None
        if not text.strip():
            raise HTTPException(422, f"texts[{i}] is empty or whitespace-only; training drops such texts, "
                                     f"so there is no label to give")


def create_app(server: AdapterServer, limits: Limits | None = None, api_key: str | None = None) -> Any:
    """The FastAPI app: /v1/classify, /v1/adapters, /healthz, the page at / and OpenAPI docs at /docs.

    With ``api_key``, every /v1/ endpoint needs ``Authorization: Bearer <api_key>`` (401 otherwise)."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import HTMLResponse, JSONResponse

    class SafeJSON(JSONResponse):
        def render(self, content: Any) -> bytes:
            return _json_bytes(content)

    limits = limits or Limits()
    limits.check()
    if api_key is not None and not api_key.strip():
        raise LightftError("the API key is empty")
    batcher = _Batcher(server, limits.batch_window_ms, limits.warm_up)

    @contextlib.asynccontextmanager
    async def lifespan(_: Any):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="lightft", version="1", lifespan=lifespan, default_response_class=SafeJSON,
                  description="Text classification with LoRA adapters sharing one base model."
                  + (" Every /v1/ endpoint needs the header `Authorization: Bearer <key>`." if api_key else ""))

    _error_handlers(app, SafeJSON)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ok", "adapters": len(server.adapters)}
        if api_key is None:  # the base model's name can be a local path; not told to anyone without a key
            out["base_model"] = server.base_name
        return out

    @app.get("/v1/adapters")
    def adapters() -> dict[str, Any]:
        return {"adapters": server.describe()}

    @app.post("/v1/classify")
    async def classify(body: ClassifyRequest) -> dict[str, Any]:
        name = body.adapter
        if name is None:
            if len(server.adapters) != 1:
                raise HTTPException(422, f"name the adapter: this server has {len(server.adapters)} "
                                         f"({', '.join(server.adapters)})")
            name = next(iter(server.adapters))
        if name not in server.adapters:  # names are only looked up, never used as paths
            raise HTTPException(404, f"unknown adapter {_short(name)!r}; available: {', '.join(server.adapters)}")
        _check_texts(body.texts, limits)
        try:
            results = await batcher.submit(name, body.texts)
        except TextError as exc:
            raise HTTPException(422, str(exc)) from None
        return {"adapter": name, "results": results}

    @app.get("/v1/adapters/{name}/report", response_class=HTMLResponse, response_model=None)
    def report(name: str) -> HTMLResponse:
        adapter = server.adapters.get(name)
        if adapter is None:
            raise HTTPException(404, f"unknown adapter {_short(name)!r}")
        page = adapter.run_dir / "report.html"
        if not page.is_file():
            raise HTTPException(404, f"run of adapter {_short(name)!r} has no report.html")
        return HTMLResponse(page.read_text(encoding="utf-8", errors="replace"))

    @app.get("/", response_class=HTMLResponse, response_model=None)
    def index() -> HTMLResponse:
        options = "".join(f'<option value="{html.escape(n)}">{html.escape(n)}</option>' for n in server.adapters)
        return HTMLResponse(INDEX_HTML.replace("{options}", options).replace(
            "{key}", KEY_FIELD if api_key else '<a id="report" href="#" target="_blank">comparison report</a>'))

    docs = {p for p in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url) if p}
    app.add_middleware(_Guard, limits=limits, api_key=api_key, docs_paths=docs, index_csp=INDEX_CSP)
    return app


KEY_FIELD = '<label>API key <input id="key" type="password" autocomplete="off"></label>'
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
{key}</p>
<textarea id="text" placeholder="Paste a text to classify"></textarea>
<p><button id="go">Classify</button> <span id="error"></span></p>
<h2 id="label"></h2><div id="bars"></div>
<script>
const $ = (id) => document.getElementById(id);
function setReport() {
  if ($("report")) $("report").href = "/v1/adapters/" + encodeURIComponent($("adapter").value) + "/report";
}
$("adapter").addEventListener("change", setReport); setReport();
$("go").addEventListener("click", async () => {
  $("error").textContent = ""; $("bars").innerHTML = ""; $("label").textContent = "";
  const headers = {"Content-Type": "application/json"};
  if ($("key")) headers["Authorization"] = "Bearer " + $("key").value;
  const r = await fetch("/v1/classify", {method: "POST", headers: headers,
    body: JSON.stringify({adapter: $("adapter").value, texts: [$("text").value]})});
  const data = await r.json();
  if (!r.ok) { $("error").textContent = data.error || JSON.stringify(data); return; }
  const res = data.results[0];
  $("label").textContent = res.labels !== undefined
    ? (res.labels.length ? res.labels.join(", ") : "(no label)")
    : res.label + " (" + (100 * res.score).toFixed(1) + "%)";
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
# The page runs its own script and style only, pinned by hash; fetch goes to this server only.
INDEX_CSP = (f"default-src 'none'; script-src {_csp_hash(INDEX_HTML, 'script')}; "
             f"style-src {_csp_hash(INDEX_HTML, 'style')}; connect-src 'self'; img-src 'self' data:; "
             "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def check_adapter_name(name: str) -> None:
    """Any printable name without '/' (it is part of the report's URL); dots are fine (``sms.v2``)."""
    if not name or len(name) > 200 or "/" in name or not name.isprintable():
        raise LightftError(f"adapter name {name!r} is empty, longer than 200 characters, or holds '/' or a "
                           f"control character; use name=RUN_DIR")


def parse_runs(specs: list[str]) -> dict[str, Path]:
    """``RUN_DIR`` (named after its folder) or ``name=RUN_DIR``."""
    runs: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec).name or Path(spec).resolve().name, spec
        check_adapter_name(name)
        if name in runs:
            raise LightftError(f"adapter name '{name}' is given twice; use name=RUN_DIR")
        runs[name] = Path(path)
    return runs
