"""node/memtune.py: memory freed below a block still in use goes back to
the system only when the node trims (limits.malloc_trim_interval_s)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from node.memtune import trimmer

# In a fresh process: 64 MiB in 4 KiB blocks from the heap (below the mmap
# threshold a node sets), written so that their pages are resident, then
# one more block on top of them, then the 64 MiB freed.  The heap cannot
# shrink past the block on top: the freed pages stay in RssAnon until trimmed.
SCRIPT = """
import ctypes, json
from node.memtune import fix_mmap_threshold, trimmer

def rss_anon_mb():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
assert fix_mmap_threshold(256 * 1024)
blocks = [libc.malloc(4096) for _ in range(16384)]
for b in blocks:
    ctypes.memset(b, 1, 4096)
top = libc.malloc(4096)
ctypes.memset(top, 1, 4096)
for b in blocks:
    libc.free(b)
freed = rss_anon_mb()
released = trimmer()()
print(json.dumps({"freed": freed, "trimmed": rss_anon_mb(), "released": released}))
"""

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")


@glibc
def test_trim_hands_back_memory_freed_below_a_block_in_use() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         check=True)
    got = json.loads(out.stdout)
    assert got["released"] == 1
    # Freed but still resident: the 64 MiB, give or take the interpreter.
    assert got["freed"] - got["trimmed"] >= 48, got


@glibc
def test_trimmer_is_there_on_glibc() -> None:
    trim = trimmer()
    assert trim is not None
    assert trim() in (0, 1)
