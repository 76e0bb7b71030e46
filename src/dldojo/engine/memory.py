"""Keep freed memory in the process instead of handing it back to the OS after every training step.

glibc's malloc serves every block above its mmap threshold (at most 32 MiB) with a fresh `mmap` and
returns it with `munmap` when freed. A CPU training step allocates and frees activations of that size
many times (airbench at batch 2000: 2000×64×32×32 bf16 = 262 MB per map), so every step page-faults
the same memory in again and the kernel zeroes it: on 2 cores, 20 % of a step's CPU time was system
time at batch 2000 and 14 % at batch 512 (`benchmarks/train_step_speed.py`, airbench94). `mallopt(M_MMAP_MAX,
0)` serves large blocks from the heap and `mallopt(M_TRIM_THRESHOLD, huge)` keeps the heap's freed top, so
after the first steps nothing is faulted again: 364 → 470 train img/s at batch 2000, 427 → 457 at batch
512, system time 0 (transparent huge pages, `THP_MEM_ALLOC_ENABLE=1`, were slower). The cost: the process
keeps its peak memory until it exits. Set DLDOJO_MALLOC=system to leave malloc as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameter numbers (malloc.h)
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the two mallopt settings once per process (Linux / glibc only); True when they are in force."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("DLDOJO_MALLOC", "").lower() == "system" or not sys.platform.startswith("linux"):
        return _applied
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return _applied
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied
