"""The event loop ``ggk serve`` runs on: asyncio's own, or uvloop when asked for.

``GGK_EVENT_LOOP=uvloop`` in the environment (with the ``uvloop`` extra installed) runs the
same code on libuv, with less overhead per callback, socket read and TLS record. It is not
the default: measured side by side on the shared 2-core machine of round 3 (five alternating
pairs, docs/benchmarks.md "Round 3: the lean hot path") it bought no CPU per message beyond
the noise, and a second loop implementation is one more thing to trust with TLS.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable


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


def name() -> str:
    """Which loop :func:`loop_factory` chooses."""
    return "asyncio" if loop_factory() is None else "uvloop"
