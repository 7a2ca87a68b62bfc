"""The event loop ``ggk serve`` runs on: uvloop when it is installed, asyncio's otherwise.

uvloop (libuv under asyncio's interface) runs the same code with less overhead per callback,
socket read and TLS record: the hot path is a few dozen of those per message. Setting
``GGK_EVENT_LOOP=asyncio`` in the environment keeps the standard loop (a comparison, or a
platform uvloop does not support).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None (asyncio's default) when unwanted or missing."""
    if os.environ.get("GGK_EVENT_LOOP", "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def name() -> str:
    """Which loop :func:`loop_factory` chooses, for the startup line."""
    return "asyncio" if loop_factory() is None else "uvloop"
