"""Keep freed memory in the process for reuse (glibc's malloc on Linux).

Explanations allocate and free the same large buffers again and again: the activations of
a chunk of perturbed images, integrated gradients' batch of path points. By default glibc
gives freed memory at the top of its heap back to the kernel once more than its trim
threshold is free, and serves large blocks with fresh mappings, so the next allocation
faults its pages in again. On lesion-64's bundle that cost about 10% (nine processes each
way: median 267 against 233 ms; integrated gradients 36 to 63 ms against 30 to 40;
benchmarks/RESULTS.md). PyTorch's CPU tuning guide suggests jemalloc or tcmalloc for the
same reason; `mallopt` asks the C library already loaded.

The settings are process-wide. The price is that the process keeps up to
TRIM_THRESHOLD_BYTES of freed heap instead of returning it.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

# mallopt's parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

# Blocks up to this size come from the heap, never fresh mappings (the largest value glibc
# accepts on 64-bit systems; setting it also stops glibc's own adjustment of it).
MMAP_THRESHOLD_BYTES = 32 * 1024**2
TRIM_THRESHOLD_BYTES = 1024**3  # freed heap kept before any is given back
TOP_PAD_BYTES = 64 * 1024**2  # extra heap asked for whenever the heap grows

_SETTINGS = (
    (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
    (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
    (M_TOP_PAD, TOP_PAD_BYTES),
)


def keep_freed_memory() -> bool:
    """Ask malloc to keep freed memory for reuse; False where it cannot (not glibc)."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        log.info("not glibc: freed memory is managed by the C library's defaults")
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return all(mallopt(option, value) == 1 for option, value in _SETTINGS)
