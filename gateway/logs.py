"""Structured JSON logging with structlog, for our events and every library's records.

Log events carry message ids, referentienummers, codes and timings. Payloads and BSNs are
never passed to a logger; as a second line of defence every line, ours and those of aiohttp,
aiokafka and asyncio (tracebacks included, rendered to text first), passes the same
redaction: fields whose names suggest personal data or secrets are removed, and bearer
tokens and nine-digit numbers (BSN-shaped) are blanked inside any text.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

SENSITIVE_KEYS = frozenset(
    {"bsn", "payload", "envelope", "body", "token", "password", "authorization", "secret"}
)
_SCRUB = re.compile(
    r"(?i)\b(?P<word>bearer|token|authorization)(?P<sep>[\s:=\"']+)[A-Za-z0-9._~+/=-]{8,}"
    r"|(?<![0-9A-Za-z])[0-9]{9}(?![0-9A-Za-z])"
)


def _scrubbed(match: re.Match[str]) -> str:
    if match.group("word"):
        return f"{match.group('word')}{match.group('sep')}[removed]"
    return "[9 digits removed]"


def redact_text(text: str) -> str:
    """Blank credentials and BSN-shaped numbers inside free text (library messages,
    tracebacks): one pass over the text."""
    return _SCRUB.sub(_scrubbed, text)


def drop_sensitive(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key.lower() in SENSITIVE_KEYS:
            event[key] = "[removed]"
        elif isinstance(event[key], str):
            event[key] = redact_text(event[key])
    return event


def summarise_exception(
    _: Any, __: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A library's exception as its type and first line, not a traceback: a stack of frames
    says nothing to an operator's log shipper, and its locals or messages can quote request
    headers (a token) or content."""
    exc_info = event.pop("exc_info", None)
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if isinstance(exc_info, tuple) and exc_info[1] is not None:
        error = exc_info[1]
        first_line = str(error).splitlines()[0] if str(error) else ""
        event["error"] = f"{type(error).__name__}: {first_line}"[:300]
    return event


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure(level: str = "INFO", stream: Any = None) -> None:
    """Our events and the standard library's records (aiohttp, aiokafka, asyncio), one JSON
    object a line, all through :func:`drop_sensitive`."""
    out = stream or sys.stderr
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*_shared_processors(), structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                summarise_exception,
                drop_sensitive,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.format_exc_info,
            drop_sensitive,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
