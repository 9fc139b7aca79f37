"""Device-dependent defaults and the allocator helper."""

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
