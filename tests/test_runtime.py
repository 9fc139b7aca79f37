"""Device-dependent defaults, thread settings and the allocator helper."""

import io
import os
import subprocess
import sys

import pytest
import torch

from lightft.config import load_config
from lightft.errors import ConfigError
from lightft.runtime import LOG_REDRAW_SECONDS, progress_bar, release_free_memory, resolve_eval_batch_size


def test_eval_batch_size_follows_the_device_unless_set():
    assert resolve_eval_batch_size(None, torch.device("cpu")) == 4
    assert resolve_eval_batch_size(None, torch.device("cuda")) == 256
    assert resolve_eval_batch_size(16, torch.device("cpu")) == 16
    assert load_config(None, ["data.source=x.csv"]).inference.batch_size is None
    with pytest.raises(ConfigError, match="inference.batch_size"):
        load_config(None, ["data.source=x.csv", "inference.batch_size=0"])


# Counts the threads the fast tokenizer's pool adds to a fresh process (Linux /proc), after set_threads(3).
TOKENIZER_THREADS = """
import os
from lightft.runtime import set_threads
set_threads(3)
from tokenizers import Tokenizer, models, pre_tokenizers
tok = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
before = len(os.listdir("/proc/self/task"))
tok.encode_batch(["a b a"] * 5000)
print(len(os.listdir("/proc/self/task")) - before)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through Linux /proc")
def test_num_threads_also_sizes_the_tokenizer_pool():
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAYON")} | {"TOKENIZERS_PARALLELISM": "true"}
    out = subprocess.run([sys.executable, "-c", TOKENIZER_THREADS], capture_output=True, text=True, check=True,
                         env=env).stdout
    assert int(out.split()[-1]) == 3  # rayon's pool, sized by RAYON_NUM_THREADS (not the 2 cores here)


def test_release_free_memory_gives_freed_heap_pages_back():
    import os
    import platform

    if platform.libc_ver()[0] != "glibc":
        release_free_memory()  # a no-op elsewhere
        pytest.skip("malloc_trim is glibc's")

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    blocks = [torch.ones(16 * 1024) for _ in range(2048)]  # 64 KiB each: from the heap, not mmap
    del blocks[::2]  # 64 MiB of holes between live blocks: glibc keeps them mapped
    before = rss()
    release_free_memory()
    assert before - rss() > 32 * 2**20


def test_reuse_freed_memory_applies_once_unless_the_user_set_malloc(monkeypatch):
    import platform

    from lightft.runtime import reuse_freed_memory

    reuse_freed_memory.cache_clear()
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert reuse_freed_memory() is False  # the user's glibc setting wins
    reuse_freed_memory.cache_clear()
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.setenv("LIGHTFT_MALLOC", "default")
    assert reuse_freed_memory() is False  # switched off
    reuse_freed_memory.cache_clear()
    monkeypatch.delenv("LIGHTFT_MALLOC")
    assert reuse_freed_memory() is (platform.libc_ver()[0] == "glibc")
    release_free_memory()  # trimming on demand still works afterwards


class _Stderr(io.StringIO):
    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_bars_redraw_rarely_where_stderr_is_a_log(monkeypatch, terminal):
    """A bar writing to a file or pipe redraws every LOG_REDRAW_SECONDS, not every 0.1 s: 1,000 updates 0.2 s
    apart (a fake clock) leave a handful of redraws in a log, and the terminal keeps tqdm's live bar."""
    err = _Stderr(terminal)
    monkeypatch.setattr(sys, "stderr", err)
    clock = iter(range(10**6))
    with progress_bar(total=1000, desc="work") as bar:
        assert bar.mininterval == (0.1 if terminal else LOG_REDRAW_SECONDS)
        bar._time = lambda: next(clock) * 0.2
        bar.last_print_t = bar.start_t = bar._time()
        for _ in range(1000):
            bar.update(1)
    redraws = err.getvalue().count("work:")
    assert redraws > 500 if terminal else 5 <= redraws <= 10  # 200 s of work: every 30 s, plus the first and last
    with progress_bar(total=1, mininterval=0.5) as bar:  # the caller's interval wins
        assert bar.mininterval == 0.5
