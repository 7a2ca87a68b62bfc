"""Reading a request body within the gateway's limits: the partner's share of the memory
budget, the size limit and the minimum body rate (gateway/admission.py); and parsing large
inputs off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import aiohttp.http_exceptions
import structlog
from aiohttp import web

from gateway.admission import (
    ABANDONED,
    DISCONNECTED,
    BadEncoding,
    BodyTooLarge,
    BudgetExhausted,
    Decoder,
    Reservation,
    abandoned,
    paced,
)
from gateway.eventloop import short_turns
from gateway.metrics import (
    BODY_BUDGET_WAITS,
)
from gateway.offload import LARGE_PAYLOAD_BYTES
from gateway.web.answers import body_refusal, too_large
from gateway.web.identify import identify
from gateway.web.wiring import SOAP_ALLOWANCE, Gateway

log = structlog.get_logger("ggk.server")


T = TypeVar("T")


async def off_loop(gw: Gateway, large: bool, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a thread when the input is large (at most LARGE_PARSES at once, more
    would only fight over the GIL), inline otherwise: parsing megabytes must not stall the
    loop that answers health checks and other partners."""
    if not large:
        return fn(*args)
    async with gw.large_parses:
        return await asyncio.to_thread(fn, *args)


BODY_STEP = 256 * 1024
"""How much a body's reservation grows by at a time when its size is not known up front
(chunked, or gzip/deflate: the decoded size counts): few grants for a large body, little
held beyond what has arrived."""


async def _read_growing(
    request: web.Request, reservation: Reservation, limit: int, encoding: str
) -> bytes:
    """The body, read as it arrives with ``reservation`` grown to cover what is kept (the
    decoded bytes of an encoded body, plus the piece being decoded), refused (413) as soon
    as it passes ``limit`` bytes, encoded or decoded. Growing waits for room in the
    partner's share and the budget, bounded by the caller's pace."""
    decoder = None if encoding in ("", "identity") else Decoder(encoding, limit)
    kept: list[bytes] = []
    received = size = 0
    async for chunk in request.content.iter_chunked(BODY_STEP):
        received += len(chunk)
        if received > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=received)
        if decoder is None:
            size = received
            await reservation.cover(size, BODY_STEP)
            kept.append(chunk)
            continue
        more, data = True, chunk
        while more:
            await reservation.cover(size + BODY_STEP + len(chunk), BODY_STEP)
            out, more = decoder.feed(data, BODY_STEP)
            data = b""
            size += len(out)
            kept.append(out)
    if decoder is not None:
        decoder.finish()
    return b"".join(kept)


def _holder(request: web.Request, gw: Gateway) -> str:
    """Whose share of the body budget a request draws on: its partner, the operator, or (an
    ebMS peer in loopback test mode) its address."""
    identity = identify(request, gw)
    if identity.partner is not None:
        return identity.partner.id
    return "operator" if identity.admin else f"peer {request.remote}"


@contextlib.asynccontextmanager
async def admitted(
    request: web.Request, gw: Gateway, limit: int | None = None
) -> AsyncIterator[bytes | web.Response]:
    """The body of an authenticated request, read within its partner's share of the memory
    budget (503 when it stays full), bounded in size (413, told by Content-Length before
    anything is read) and in time (408: a client that trickles its body, or sends it slower
    than ``min_body_rate`` after ``body_grace``, must not hold a handler or budget). A client
    that hangs up mid-body is one log line and a 499 nobody receives, not a 500.
    ``limit``: a smaller size than a message's (the admin API's small JSON bodies)."""
    limit = gw.config.max_message_bytes + SOAP_ALLOWANCE if limit is None else limit
    length = request.content_length
    if length is not None and length > limit:
        response = too_large(request, gw)
        response.force_close()
        yield response
        return
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    # the hot path: a plain body of known length is reserved at once and read in one go;
    # a chunked or encoded one (whose decoded size nobody told) grows its reservation
    known = length is not None and encoding in ("", "identity")
    timeout = gw.config.body_timeout
    try:
        reserve = length if known and length is not None else min(BODY_STEP, limit)
        async with gw.admission.bodies.reserve(_holder(request, gw), reserve, timeout) as held:
            try:
                read = request.read() if known else _read_growing(request, held, limit, encoding)
                data = await paced(read, request.content, gw.admission.pace(timeout))
            except web.HTTPRequestEntityTooLarge:
                yield too_large(request, gw)
                return
            except TimeoutError:
                if held.waiting:  # it was waiting for room to grow, not for its client
                    yield _busy(request, gw)
                    return
                log.warning("request.body_timeout", peer=request.remote, path=request.path)
                yield body_refusal(request, gw, 408, "request body not received in time")
                return
            except DISCONNECTED:
                abandoned(request)
                yield web.Response(status=ABANDONED, reason="Client Closed Request")
                return
            except (web.RequestPayloadError, aiohttp.http_exceptions.HttpProcessingError):
                yield body_refusal(request, gw, 400, "the request body could not be read (framing)")
                return
            except BodyTooLarge:
                yield too_large(request, gw)
                return
            except BadEncoding:
                yield body_refusal(request, gw, 400, f"the request body is not valid {encoding}")
                return
            # a large body: threads hand the interpreter lock to the loop more often until
            # it is answered, so the small messages meanwhile are not held (eventloop.py)
            with short_turns(gw.large_turn_ms if len(data) > LARGE_PAYLOAD_BYTES else None):
                yield data
    except BudgetExhausted:
        yield _busy(request, gw)


def _busy(request: web.Request, gw: Gateway) -> web.Response:
    """503: the body's room in the budget did not come in time."""
    log.warning("request.body_budget_full", peer=request.remote, path=request.path)
    BODY_BUDGET_WAITS.inc()
    return body_refusal(
        request, gw, 503, "the gateway is busy with large messages; try again later"
    )
