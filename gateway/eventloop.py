"""The event loop ``ggk serve`` runs on: asyncio's own, or uvloop when asked for; and how
often a thread must hand the interpreter lock back to it.

``GGK_EVENT_LOOP=uvloop`` in the environment (with the ``uvloop`` extra installed) runs the
same code on libuv, with less overhead per callback, socket read and TLS record. It is not
the default: measured side by side on the shared 2-core machine of round 3 (five alternating
pairs, docs/benchmarks.md "Round 3: the lean hot path") it bought no CPU per message beyond
the noise, and a second loop implementation is one more thing to trust with TLS.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable

GIL_SWITCH_MS = 0.5
"""How long (ms) a thread of ``ggk serve`` may hold the interpreter lock while another waits
for it; Python's default is 5 ms.

Why: the event loop shares the lock with the threads that prepare a large message for the
store (gateway/broker/sqlite_prepared.py) and run the SQLite writer. When a 1 MB declaratie
is accepted, those threads have some 10 ms of Python to do, and at 5 ms a turn the loop
waited up to 5 ms for each step of every small message arriving meanwhile: those messages
were the Bv03 p99 at 100 msg/s (docs/benchmarks.md, "Turns of 0.5 ms"). At 0.5 ms the loop
gets the lock back ten times as soon; four alternating pairs at saturation showed no CPU
cost beyond the noise (a forced hand-over costs a few µs, at most 2,000 a second)."""

GIL_SWITCH_RANGE = (0.1, 50.0)
"""Values ``GGK_GIL_SWITCH_MS`` may take."""


class UnknownLoop(ValueError):
    """``GGK_EVENT_LOOP`` names a loop that is not available."""


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop constructor ``GGK_EVENT_LOOP`` asks for; None: asyncio's default."""
    wanted = os.environ.get("GGK_EVENT_LOOP", "").strip().lower()
    if wanted in ("", "asyncio"):
        return None
    if wanted != "uvloop":
        raise UnknownLoop(f"GGK_EVENT_LOOP={wanted[:20]!r}: use asyncio or uvloop")
    try:
        import uvloop
    except ImportError:
        raise UnknownLoop(
            "GGK_EVENT_LOOP=uvloop, but uvloop is not installed (pip install 'ggk-gateway[uvloop]')"
        ) from None
    return uvloop.new_event_loop


class BadSwitchInterval(ValueError):
    """``GGK_GIL_SWITCH_MS`` is not a number of milliseconds in :data:`GIL_SWITCH_RANGE`."""


def gil_switch_ms() -> float:
    """The switch interval ``GGK_GIL_SWITCH_MS`` asks for (ms); :data:`GIL_SWITCH_MS` when
    it is not set. For measuring: Python's own 5 ms is ``GGK_GIL_SWITCH_MS=5``."""
    wanted = os.environ.get("GGK_GIL_SWITCH_MS", "").strip()
    if not wanted:
        return GIL_SWITCH_MS
    low, high = GIL_SWITCH_RANGE
    try:
        value = float(wanted)
    except ValueError:
        value = -1.0
    if not low <= value <= high:  # also NaN
        raise BadSwitchInterval(
            f"GGK_GIL_SWITCH_MS={wanted[:20]!r}: a number of milliseconds from {low:g} to {high:g}"
        )
    return value


def shorten_gil_turns() -> float:
    """Set the interpreter's switch interval to :func:`gil_switch_ms`; returns it (ms). Called
    by ``ggk serve`` before it starts, and only there: tests and tools keep Python's own."""
    ms = gil_switch_ms()
    sys.setswitchinterval(ms / 1000)
    return ms


def name() -> str:
    """Which loop :func:`loop_factory` chooses."""
    return "asyncio" if loop_factory() is None else "uvloop"
