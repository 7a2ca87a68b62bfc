"""Validation problems and reports: what went wrong, where, and what it maps to.

A :class:`Problem` is an error *value*; nothing in the validation path raises for bad input.
Each problem carries the control level of the standard (iStandaarden iWmo/iJw 3.2,
controleniveaus) and the code the receiver would answer with: level 1 (XSD) has no retourcode
and becomes StUF055 in a Fo01; level 2 (in-message rules) is retourcode 0001; levels 3/4 carry
their rule's own code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from lxml import etree

from gateway.standards import MessageType


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


def line_of(el: etree._Element) -> int | None:
    """The source line of an element (lxml-stubs type it loosely)."""
    line = el.sourceline
    return line if isinstance(line, int) else None


STUF_SCHEMA_ERROR = "StUF055"
"""StUF foutcode for a payload that does not conform to the sector model's schema."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding about one place in a document."""

    rule: str
    message: str
    path: str | None = None
    line: int | None = None
    expected: str | None = None
    found: str | None = None
    level: int = 1
    retourcode: str | None = None
    severity: Severity = Severity.ERROR

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        return data


@dataclass(slots=True)
class ValidationReport:
    """Everything known about one validated document."""

    source: str
    message: MessageType | None = None
    namespace: str | None = None
    envelope: str | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity is Severity.WARNING]

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def retourcodes(self) -> list[str]:
        """Distinct retourcodes of the errors, in order of appearance (levels 2-4 only)."""
        seen: dict[str, None] = {}
        for problem in self.errors:
            if problem.retourcode:
                seen.setdefault(problem.retourcode, None)
        return list(seen)

    @property
    def level(self) -> int | None:
        """The lowest control level that failed; None when valid."""
        return min((p.level for p in self.errors), default=None)

    def describe_message(self) -> str:
        if self.message is None:
            return "unidentified message"
        m = self.message
        return f"{m.standard.label} {m.code} ({m.name})"

    def to_dict(self) -> dict[str, Any]:
        m = self.message
        return {
            "source": self.source,
            "valid": self.valid,
            "envelope": self.envelope,
            "namespace": self.namespace,
            "message": None
            if m is None
            else {
                "code": m.code,
                "standard": m.standard.value,
                "name": m.name,
                "kind": m.kind.value,
                "berichtcode": m.bericht_code,
            },
            "level": self.level,
            "retourcodes": self.retourcodes,
            "problems": [p.to_dict() for p in self.problems],
        }
