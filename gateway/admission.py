"""Admission of request bodies: memory for bodies is a budget, not a free-for-all.

Reading a body costs its size in memory, and parsing it more. Every caller's body is
reserved against one byte budget (``[limits] inflight_body_mb``) before a byte is read; a
request that does not fit waits its turn (bounded by ``body_timeout``) with its bytes left in
the kernel's socket buffers, so six parallel 23 MiB bodies cost what the budget allows and
not six times their size. Unauthenticated callers never get this far: the server refuses
their bodies unread.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import http_exceptions, web
from multidict import MultiDictProxy


class BudgetExhausted(Exception):
    """The body could not be admitted in time (the gateway is busy with large bodies)."""


class BodyBudget:
    """A byte semaphore: reserve ``n`` bytes, release them when the request is done."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def reserve(self, size: int, timeout: float) -> AsyncIterator[None]:
        """Hold ``size`` bytes (at most the whole budget) for the duration of the block."""
        size = max(0, min(size, self.capacity))
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.in_use + size <= self.capacity), timeout
                )
            except TimeoutError:
                raise BudgetExhausted from None
            self.in_use += size
        try:
            yield
        finally:
            async with self._changed:
                self.in_use -= size
                self._changed.notify_all()


class BodyTooLarge(Exception):
    """The decoded body is larger than the limit."""


class BadEncoding(Exception):
    """The body is not what its Content-Encoding says."""


_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def decode_body(data: bytes, encoding: str, limit: int) -> bytes:
    """Undo a ``gzip``/``deflate`` Content-Encoding, producing at most ``limit`` bytes.

    The server does not decompress on its own: a 48 KB gzip bomb would otherwise be expanded
    in the connection's buffers before any limit applies. Here the output is cut at
    ``limit + 1`` bytes, so a bomb costs at most the limit.
    """
    if encoding in ("", "identity"):
        return data
    try:
        inflater = zlib.decompressobj(_WBITS[encoding])
        out = inflater.decompress(data, limit + 1)
    except (KeyError, zlib.error):
        raise BadEncoding(encoding) from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge
    if not inflater.eof:
        raise BadEncoding(encoding)
    return out


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a form was not read: the HTTP status and the gateway's own words for it."""

    status: int
    reason: str


Form = MultiDictProxy[Any]


@contextlib.asynccontextmanager
async def admitted_form(
    request: web.Request, budget: BodyBudget, limit: int, timeout: float
) -> AsyncIterator[Form | Refusal]:
    """A posted form (urlencoded or multipart), read within the one body budget: at most
    ``limit`` bytes as told by Content-Length before a byte is read (411 without one, 413
    above it: browsers always send it), reserved against the budget while the caller holds
    the form (503 when it stays full), and received within ``timeout`` (408: a browser that
    trickles its body must not hold a handler, an upload slot or budget). A form is a few
    KB; only the upload form may be as large as a message. Any refusal leaves the body
    unread: the caller answers and closes the connection."""
    length = request.content_length
    if request.headers.get("Transfer-Encoding") or length is None:
        yield Refusal(411, "a form needs a Content-Length")
        return
    if length > limit:
        yield Refusal(413, f"the form is larger than {limit:,} bytes")
        return
    if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        yield Refusal(415, "a form is not sent compressed")
        return
    try:
        async with budget.reserve(length, timeout):
            try:
                form = await asyncio.wait_for(request.post(), timeout)
            except TimeoutError:
                yield Refusal(408, "the form was not received in time")
                return
            except web.HTTPRequestEntityTooLarge:
                yield Refusal(413, f"the form is larger than {limit:,} bytes")
                return
            except (ValueError, web.RequestPayloadError, http_exceptions.HttpProcessingError):
                yield Refusal(400, "the form could not be read")
                return
            yield form
    except BudgetExhausted:
        yield Refusal(503, "the gateway is busy with large messages; try again in a moment")
