"""Process-wide tuning of the C allocator for a process that exists to hold data."""

from __future__ import annotations

import ctypes
import sys

__all__ = ["tune_allocator"]

# glibc's mallopt parameter number and its documented default value (128 KiB).
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 128 * 1024


def tune_allocator() -> bool:
    """Make glibc return freed large blocks (the store's hash tables) to the OS at once.

    glibc raises its mmap threshold after the first large free, after which every resized
    dict table lands on the heap and its freed predecessor stays in the process: a store held
    at its limit then uses up to ~200 bytes per small entry more than it counts. A fixed
    threshold keeps large blocks mmap'ed, so RSS follows ``used_bytes``. Process-wide: the
    store process calls it at startup; a library embedding the engine should not. Returns
    whether the setting was applied (False off glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))
