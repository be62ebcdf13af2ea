"""The ``kenshin`` process's malloc settings.

glibc gives each thread that allocates its own malloc arena (up to 8 per core). The big numpy
arrays a day's sweep works on are freed in one arena and cannot be reused by another, so with
two sweep passes side by side, the store's writer and the differences each in their own thread,
the process held 4.6 GiB at its peak for a 1,000,000-meter day where two arenas held 3.7 GiB
(``kenshin simulate --meters 1000000``, measured 2026-12-06; the 100,000-meter day also faulted
fewer fresh pages in and ran no slower). The command therefore caps the arenas at two before any
thread starts, as ``MALLOC_ARENA_MAX=2`` would; a value the user set in the environment wins.
"""

from __future__ import annotations

import ctypes
import os
import sys

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's <malloc.h>


def cap_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Let glibc's malloc keep at most ``arenas`` arenas in this process; True when it was set
    here (False: not glibc, or ``MALLOC_ARENA_MAX`` is set in the environment and glibc read it
    at start). Call it before threads start: an arena, once made, stays."""
    if arenas < 1:
        raise ValueError("at least one malloc arena")
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a libc without mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))
