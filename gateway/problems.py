"""HTTP refusals as problem documents (RFC 9457), strict query parameters, and the
middleware that turns anything unforeseen into a bare 500 instead of a traceback.

An application may answer the middleware's refusals in its own form for some paths (the SOAP
endpoint answers with Fo03 faults, never with JSON): see ``REFUSAL_FORM``."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

log = structlog.get_logger("ggk.server")

ACCEPTED_ENCODINGS = frozenset({"", "identity", "gzip", "deflate"})
"""Request Content-Encodings decoded (within the size limit); anything else is a 400."""

CLIENT_CLOSED = 499
"""The status logged for a request whose client closed the connection before its answer."""

RefusalForm = Callable[[web.Request, int, str], web.Response | None]
"""(request, status, title) → the refusal in the form its path speaks, or None: a problem."""
REFUSAL_FORM: web.AppKey[RefusalForm] = web.AppKey("refusal_form")


def problem(status: int, title: str, **extra: Any) -> web.Response:
    """An ``application/problem+json`` answer; ``extra`` adds members such as ``code``."""
    return web.json_response(
        {"status": status, "title": title, **extra},
        status=status,
        content_type="application/problem+json",
        headers={"WWW-Authenticate": 'Bearer realm="ggk-gateway"'} if status == 401 else None,
    )


class BadParameter(Exception):
    """A query parameter that cannot be used; answered as a 400 problem document."""


_INTEGER = re.compile(r"[0-9]{1,19}")
"""A query integer as the OpenAPI document's serialisation writes one (no sign, no spaces, no
other digits than 0-9: ``str.isdigit`` would let '²' through to ``int``, which refuses it)."""
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
"""A query number as JSON writes one (``float`` alone would also take '1_0', ' 1' or 'inf')."""


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw) or not low <= int(raw) <= high:
        raise BadParameter(f"{name} is a whole number from {low} to {high}")
    return int(raw)


def query_float(request: web.Request, name: str, default: float, low: float, high: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    value = float(raw) if _NUMBER.fullmatch(raw) and len(raw) <= 64 else math.nan
    if not (math.isfinite(value) and low <= value <= high):
        raise BadParameter(f"{name} is a number from {low:g} to {high:g}")
    return value


@web.middleware
async def problems_not_tracebacks(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every refusal is a 4xx problem document and anything unforeseen a bare 500: never a
    traceback (which could quote a header, and with it a token) in an answer or the log."""
    if "\x00" in request.path or "\x00" in request.query_string:
        return _refusal(request, 400, "NUL in the request target")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ACCEPTED_ENCODINGS:
        return _refusal(
            request, 400, "unsupported Content-Encoding; send identity, gzip or deflate"
        )
    try:
        return await handler(request)
    except BadParameter as exc:
        return problem(400, str(exc))
    except web.HTTPException:
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        # a client hanging up mid-body is caught where bodies are read (a 499 there); a
        # reset here is the gateway's own outbound connection failing: a 500 like any other
        # the path is the caller's text: bounded, like the access log's
        log.error("request.failed", path=request.path[:200], error=type(exc).__name__)
        return _refusal(request, 500, "internal error; the operator can find it in the log")


def _refusal(request: web.Request, status: int, title: str) -> web.Response:
    """The middleware's refusal in the form of the request's path (``REFUSAL_FORM``)."""
    form = request.config_dict.get(REFUSAL_FORM)
    answer = form(request, status, title) if form is not None else None
    return answer if answer is not None else problem(status, title)
