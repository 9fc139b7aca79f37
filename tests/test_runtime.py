"""Device-dependent defaults, thread settings and the allocator helper."""

import os
import subprocess
import sys

import pytest
import torch

from lightft.config import load_config
from lightft.errors import ConfigError
from lightft.runtime import release_free_memory, resolve_eval_batch_size


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
