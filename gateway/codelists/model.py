"""What a code list is: entries (code, name, validity) and where the list came from.

Immutable on purpose: one loaded set of lists is shared by every request and every rule run,
so nothing may change it after loading (a new set is loaded and swapped in whole).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Entry:
    """One code of a list. ``begin``/``end`` bound its validity (both days included); None
    means unbounded: the official lists date few codes, and an undated code is valid always."""

    code: str
    name: str
    begin: date | None = None
    end: date | None = None
    details: Mapping[str, str] = field(default_factory=lambda: _EMPTY, compare=False)
    """The source's other columns (retourcode: TR-regel, Berichttypen; Fo01: Toelichting)."""

    def valid_on(self, day: date) -> bool:
        return (self.begin is None or self.begin <= day) and (self.end is None or day <= self.end)


@dataclass(frozen=True, slots=True)
class Source:
    """Where a list came from, so an operator can tell which version a verdict used."""

    origin: str
    """``bundled`` (shipped in the package) or the drop-in file's path."""
    repository: str | None = None
    path: str | None = None
    commit: str | None = None
    url: str | None = None
    version: str | None = None
    date: date | None = None

    def describe(self) -> str:
        """One line: version, date, origin and provenance."""
        parts = [self.version or "version unknown"]
        if self.date is not None:
            parts.append(self.date.isoformat())
        parts.append(self.origin)
        if self.repository and self.path:
            at = f"@{self.commit[:12]}" if self.commit else ""
            parts.append(f"from {self.repository}{at}:{self.path}")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class CodeList:
    """One list: its official id, the element type it codes, and its entries by code."""

    name: str
    """This project's unique name: ``ijw-JZ020``, ``iwmo-WMO757``, ``gemeentecodes``,
    ``iwmo-productcodes-11`` (the product codes of one category)."""
    id: str
    title: str
    standard: str | None
    """``iwmo``, ``ijw``, or None for a list both standards share (CBS, Fo01)."""
    datatype: str | None
    """The XSD type whose values it lists (``LDT_ProductCategorie``), when known."""
    category: str | None
    """For a product code list: the ProductCategorie its codes belong to."""
    source: Source
    entries: tuple[Entry, ...]
    by_code: Mapping[str, Entry] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )

    @classmethod
    def build(
        cls,
        *,
        name: str,
        id: str,
        title: str,
        standard: str | None,
        datatype: str | None,
        category: str | None,
        source: Source,
        entries: tuple[Entry, ...],
    ) -> CodeList:
        index = MappingProxyType({e.code: e for e in entries})
        return cls(name, id, title, standard, datatype, category, source, entries, index)

    def entry(self, code: str) -> Entry | None:
        return self.by_code.get(code)
