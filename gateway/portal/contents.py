"""A stored message made readable: its payload decoded by its own schema into typed values.

The portal's message page shows the receiver what a message says (a date as a date, an
amount as a number) instead of only offering the XML for download. xmlschema does the work
it is made for: it decodes the payload by the message's XSD (the same files the gateway
validates with, ``schemas/``) into a nested dict of typed values, which :func:`fields` turns
into labelled rows for the template.

Safe by construction: the bytes are parsed by the hardened parser first
(gateway/xmlsafe.py: size limit, no DTD, entities or network, depth limit); xmlschema gets
that lxml tree, never bytes or a URL; the schemas are loaded with ``defuse="always"`` and
``allow="sandbox"`` (no file outside the schema's folder, no network). Only payloads up to
:data:`MAX_BYTES` are decoded and at most :data:`MAX_FIELDS` values shown, so a page stays
small and the work bounded.
"""

from __future__ import annotations

import datetime
import threading
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import xmlschema
from elementpath.datatypes import AbstractDateTime, Date, Duration
from lxml import etree

from gateway import envelope as env
from gateway.schemas import SchemaRegistry
from gateway.xmlsafe import ParseLimits, UnsafeXml, parse_untrusted

MAX_BYTES = 256 * 1024
"""Payloads larger than this are not decoded for the page (a 1 MB declaratie is downloaded)."""
MAX_FIELDS = 2000
"""Values shown at most; the rest is summarised in one line."""


@dataclass(frozen=True, slots=True)
class Field:
    """One element of the payload: a value with its type, or a group of fields."""

    name: str
    value: str | None = None
    kind: str = ""
    """What the schema made of the value: ``datum``, ``geheel getal``, ``decimaal``, ..."""
    children: tuple[Field, ...] = ()


@dataclass(frozen=True, slots=True)
class Contents:
    """The readable payload, or why there is none (``note``, Dutch: shown to clerks)."""

    fields: tuple[Field, ...] = ()
    note: str | None = None


class Reader:
    """Decodes payloads by the registry's schemas; each xmlschema schema built once."""

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self._registry = registry
        self._schemas: dict[Path, xmlschema.XMLSchema10] = {}
        self._lock = threading.Lock()

    @property
    def registry(self) -> SchemaRegistry:
        if self._registry is None:  # the project's own XSDs, found on first use
            self._registry = SchemaRegistry()
        return self._registry

    def envelope(self, data: bytes) -> Contents:
        """The payload of a stored StUF-GGk envelope, decoded."""
        if len(data) > MAX_BYTES * 2:  # base64 makes the payload 4/3 of itself
            return _TOO_LARGE
        try:
            envelope = env.parse(parse_untrusted(data, _LIMITS))
        except (UnsafeXml, env.EnvelopeError):
            return Contents(note="De envelop kan niet worden gelezen.")
        if not envelope.payload or not envelope.payload_is_xml:
            return Contents(note="Dit bericht heeft geen XML-inhoud om te tonen.")
        return self.payload(envelope.payload)

    def payload(self, data: bytes) -> Contents:
        """An iWmo/iJw payload decoded by its schema into typed fields."""
        if len(data) > MAX_BYTES:
            return _TOO_LARGE
        try:
            root = parse_untrusted(data, _LIMITS)
        except UnsafeXml:
            return Contents(note="De inhoud is geen leesbare XML.")
        described = self.registry.file_for(etree.QName(root).namespace or "")
        if described is None:
            return Contents(note="Voor deze inhoud is geen schema bekend.")
        # the parsed tree, wrapped so that nothing it names is ever fetched
        source = xmlschema.XMLResource(root, allow="none", defuse="always")
        result = self._schema(described.path).decode(
            source,
            validation="lax",
            datetime_types=True,
            decimal_type=Decimal,
            strip_namespaces=True,
        )
        # lax: (data, errors); the payload passed the stricter libxml2 check when accepted
        decoded = result[0] if isinstance(result, tuple) else result
        budget = [MAX_FIELDS]
        shown = tuple(fields(decoded, budget)) if isinstance(decoded, dict) else ()
        note = None if budget[0] >= 0 else f"Alleen de eerste {MAX_FIELDS} waarden worden getoond."
        return Contents(shown, note)

    def _schema(self, path: Path) -> xmlschema.XMLSchema10:
        with self._lock:
            schema = self._schemas.get(path)
            if schema is None:
                schema = xmlschema.XMLSchema10(str(path), allow="sandbox", defuse="always")
                self._schemas[path] = schema
            return schema


_LIMITS = ParseLimits(max_bytes=MAX_BYTES * 2)
_TOO_LARGE = Contents(note="Dit bericht is te groot om hier te tonen; download het.")


def fields(decoded: dict[str, Any], budget: list[int]) -> list[Field]:
    """The decoded dict as fields in document order; ``budget[0]`` counts values left."""
    out: list[Field] = []
    for name, value in decoded.items():
        if name.startswith("@xmlns") or name == "@xsi:schemaLocation":
            continue
        label = name.lstrip("@")
        for item in value if isinstance(value, list) else [value]:
            if budget[0] <= 0:
                budget[0] = -1
                return out
            if isinstance(item, dict):
                out.append(Field(label, children=tuple(fields(item, budget))))
            else:
                budget[0] -= 1
                out.append(Field(label, *_typed(item)))
    return out


def _typed(value: Any) -> tuple[str | None, str]:
    """A decoded value as text and the name of its type (Dutch, for clerks)."""
    if value is None:
        return None, "leeg"
    if isinstance(value, bool):
        return ("ja" if value else "nee"), "ja/nee"
    if isinstance(value, int):
        return str(value), "geheel getal"
    if isinstance(value, Decimal | float):
        return str(value), "decimaal"
    if isinstance(value, AbstractDateTime):
        return str(value), "datum" if isinstance(value, Date) else "tijdstip"
    if isinstance(value, Duration | datetime.timedelta):
        return str(value), "duur"
    return str(value), "tekst"
