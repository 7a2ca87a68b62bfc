"""The shapes of the REST API's parameters, defined once for the OpenAPI document and the
handlers alike: what the document calls valid the server takes, and what it refuses the server
refuses with a 400 problem document, before any store is asked.

A shape is a pattern plus a maximum length. Patterns use only ASCII classes, fixed repeats
and alternation, which mean the same in ECMA-262 (JSON Schema's dialect, anchored with ``^``
and ``$``) and in Python's ``re`` (matched with ``fullmatch``, so a trailing newline is not
let through as ``$`` would).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.problems import BadParameter
from routing.partners import PARTNER_ID


@dataclass(frozen=True, slots=True)
class Shape:
    """A string parameter's pattern (unanchored) and maximum length, with the sentence a
    refusal names it by."""

    pattern: str
    max_length: int
    says: str
    _compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", re.compile(self.pattern))

    def fits(self, value: str) -> bool:
        return len(value) <= self.max_length and self._compiled.fullmatch(value) is not None

    def schema(self, **extra: Any) -> dict[str, Any]:
        """The JSON Schema of a string of this shape."""
        return {
            "type": "string",
            "pattern": f"^({self.pattern})$",
            "maxLength": self.max_length,
            "description": self.says,
            **extra,
        }

    def checked(self, name: str, value: str | None) -> str | None:
        """``value`` when it fits (None stays None), else a 400 naming ``name``."""
        if value is not None and not self.fits(value):
            raise BadParameter(f"{name} is {self.says}")
        return value


UUID4 = Shape(
    "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
    36,
    "a lower-case UUID v4, as the envelope's referentienummer and crossRefnummer",
)
MESSAGE_ID = Shape("[0-9a-f]{32}", 32, "a message id: 32 lower-case hexadecimal digits")
MESSAGE = Shape(
    f"{MESSAGE_ID.pattern}|{UUID4.pattern}",
    36,
    "a message id (32 lower-case hexadecimal digits) or its referentienummer (a lower-case "
    "UUID v4)",
)
PARTNER = Shape(
    PARTNER_ID.pattern,
    40,
    "a partner id: a letter or digit, then up to 39 letters, digits, '.', '_' or '-' "
    "(a gemeentecode, an AGB-code, CAK)",
)
MONTH = Shape("[0-9]{4}-(0[1-9]|1[0-2])", 7, "a month, YYYY-MM")
BASE64 = Shape(
    "([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?",
    2**31 - 1,
    "base64 (RFC 4648, with padding, no line breaks)",
)
"""The JSON form's payload; its size is bounded by the message limit (413), not by a shape."""


def path_id(request: web.Request, shape: Shape) -> str:
    """The ``{id}`` of the path, refused (400) unless it has ``shape``."""
    value = request.match_info["id"]
    shape.checked("id", value)
    return value


def query(request: web.Request, name: str, shape: Shape) -> str | None:
    """Query parameter ``name`` (None when absent), refused (400) unless it has ``shape``. An
    empty value is a value: the document's patterns refuse it, so the server does too."""
    return shape.checked(name, request.query.get(name))
