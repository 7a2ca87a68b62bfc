"""The event loop ``ggk serve`` runs on: asyncio's own, or uvloop when asked for; and how
often a thread must hand the interpreter lock back to it while a large request is handled.

``GGK_EVENT_LOOP=uvloop`` in the environment (with the ``uvloop`` extra installed) runs the
same code on libuv, with less overhead per callback, socket read and TLS record. It is not
the default: measured side by side on the shared 2-core machine of round 3 (five alternating
pairs, docs/benchmarks.md "Round 3: the lean hot path") it bought no CPU per message beyond
the noise, and a second loop implementation is one more thing to trust with TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Iterator

GIL_SWITCH_MS = 0.5
"""How long (ms) a thread may hold the interpreter lock while another waits for it, while a
request with a large body is being handled (:func:`short_turns`); Python's default is 5 ms.

Why: the event loop shares the lock with the threads that build a large message's answer from
its reader (gateway/readers.py), prepare it for the store (gateway/broker/sqlite_prepared.py)
and write it. For a 1 MB declaratie that is some 10 ms of Python, and at 5 ms a turn the
loop waited up to 5 ms for each step of every small message arriving meanwhile: those
messages were the Bv03 p99 at 100 msg/s (docs/benchmarks.md, "Turns of half a millisecond").
Only while such a request is handled (its delivery later runs at 5 ms; it is one request to
a receiver, on the loop itself): a short interval costs forced hand-overs between the loop
and the store's threads (up to 2,000 a second), a few per cent of CPU at saturation at most,
within the noise of the measurements, and small messages alone do not need it."""

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
    it is not set. For measuring: Python's own 5 ms throughout is ``GGK_GIL_SWITCH_MS=5``."""
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


class _Turns:
    """The process's switch interval is one setting: short while any request with a large
    body is handled (a count of them, changed on the event loop only), Python's own
    otherwise. The first block to start sets the short value (one gateway per process: one
    value); the last to end restores what the first found, over any change made meanwhile."""

    def __init__(self) -> None:
        self.held = 0
        self.normal = sys.getswitchinterval()


_TURNS = _Turns()


@contextlib.contextmanager
def short_turns(ms: float | None) -> Iterator[None]:
    """While the block runs, threads hand the interpreter lock back every ``ms``
    milliseconds (None: leave it as it is). Nested and overlapping blocks are counted; the
    last to end restores the interval the first found."""
    if ms is None:
        yield
        return
    if _TURNS.held == 0:
        _TURNS.normal = sys.getswitchinterval()
        sys.setswitchinterval(ms / 1000)
    _TURNS.held += 1
    try:
        yield
    finally:
        _TURNS.held -= 1
        if _TURNS.held == 0:
            sys.setswitchinterval(_TURNS.normal)


def name() -> str:
    """Which loop :func:`loop_factory` chooses."""
    return "asyncio" if loop_factory() is None else "uvloop"
