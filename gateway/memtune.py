"""Fewer glibc malloc arenas for ``ggk serve``: resident memory that stays flat (issue 29, goal 7).

glibc gives every thread that allocates its own malloc arena, up to eight per core. The
gateway parses and validates in threads (``asyncio.to_thread``: large bodies, envelopes,
beleidsinformatie) and SQLite writes in another; each thread's arena keeps the freed pages of
the large documents it once held, fragmented, and the resident set creeps up for a long time
before it levels off. Python's own heap stays flat meanwhile (tracemalloc, benchmarks/soak.py):
the growth is in the arenas. Two arenas serve a process whose threads mostly wait on the GIL
as well as sixteen.

Called by ``ggk serve`` before any thread starts; an operator's ``MALLOC_ARENA_MAX`` wins. A
no-op where the C library is not glibc.

Even in two arenas, glibc returns freed pages to the kernel only from the top of the heap: a
1 MB declaratie parsed between long-lived objects leaves its pages resident. ``trim`` (glibc's
``malloc_trim(0)``) gives them back; the maintenance loop calls it once a checkpoint interval
(a minute by default). One call on a gateway after ten minutes at load released 17 MiB of its
194 MiB resident set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8
"""mallopt parameter number (glibc malloc.h)."""
ARENAS = 2


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def trim() -> bool:
    """Return the heap's free pages to the kernel (glibc ``malloc_trim(0)``); True when some
    memory was released, False when none was or this is not glibc. Takes milliseconds."""
    libc = _libc()
    function = getattr(libc, "malloc_trim", None) if libc is not None else None
    if function is None:
        return False
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return bool(function(0))


def limit_arenas(arenas: int = ARENAS) -> bool:
    """``mallopt(M_ARENA_MAX, arenas)`` unless ``MALLOC_ARENA_MAX`` is set; True when done."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is None:  # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))
