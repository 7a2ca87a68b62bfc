"""The rule catalogue: every official iWmo/iJw 3.2 content rule as data (``catalogue.toml``).

The catalogue is the one place that says what a rule is (id, control level, retourcode, the
messages and elements it concerns) and how the gateway treats it (checked by the rule engine,
by the XSD, with the gateway's own state, or left to the receiver with the reason). The rule
engine takes a registered check's metadata from here, so a retourcode or a message list cannot
drift between the code, ``ggk rules list`` and ``docs/rules.md``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources

from gateway.report import Severity
from gateway.standards import Standard

ALL_MESSAGES = (301, 302, 305, 306, 307, 308, 315, 316, 317, 318, 319, 320, 323, 325)


class Status(StrEnum):
    """How the gateway treats a rule."""

    RULE = "rule"
    """Checked by the rule engine on every XSD-valid message."""
    XSD = "xsd"
    """Enforced by the XSD (control level 1)."""
    GATEWAY = "gateway"
    """Checked by the gateway with state it keeps itself."""
    RECEIVER = "receiver"
    """Needs the receiver's administration; the receiver answers with the retourcode."""
    EXTERNAL = "external"
    """Needs a list outside the message flow that the gateway does not hold."""


RECEIVER_HOW = (
    "Needs the receiver's administration (assignments, starts, stops, earlier claims); the "
    "gateway routes the message and the receiver answers with the retourcode."
)


@dataclass(frozen=True, slots=True)
class Entry:
    """One official rule and how the gateway treats it."""

    id: str
    summary: str
    level: int
    retourcode: str | None
    numbers: tuple[int, ...]
    standards: tuple[Standard, ...]
    elements: tuple[str, ...]
    status: Status
    how: str
    note: str
    severity: Severity
    release: str = "3.2"
    """The release this entry is of (``3.2``); the catalogue is keyed by standard and release."""
    independent: bool = False
    """Holds in every release: the only kind a message of a release without rules gets."""

    @property
    def releases(self) -> tuple[str, ...]:
        """``iWmo 3.2``, ``iJw 3.2``: the standards and release the entry belongs to."""
        return tuple(f"{s.label} {self.release}" for s in self.standards)

    @property
    def kind(self) -> str:
        """``TR``, ``CS``, ``CD``, ``RS`` or ``IV``: the official rule family."""
        return self.id[:2]

    @property
    def messages(self) -> tuple[str, ...]:
        """Message codes (``WMO301``, ``JW301``, …) the rule applies to."""
        return tuple(
            f"{standard.message_prefix}{number}"
            for standard in self.standards
            for number in self.numbers
        )

    def as_dict(self) -> dict[str, object]:
        """The entry as plain JSON-ready data (``ggk rules list --json``)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "summary": self.summary,
            "level": self.level,
            "retourcode": self.retourcode,
            "messages": list(self.messages),
            "elements": list(self.elements),
            "status": self.status.value,
            "how": self.how,
            "note": self.note,
            "severity": self.severity.value,
            "release": self.release,
            "releases": list(self.releases),
            "independent": self.independent,
        }


class CatalogueError(ValueError):
    """The catalogue file contradicts itself (a packaging or editing mistake)."""


def _entry(raw: dict[str, object], release: str) -> Entry:
    rule_id = str(raw["id"])
    status = Status(str(raw["status"]))
    numbers = tuple(int(n) for n in raw.get("messages", ALL_MESSAGES))  # type: ignore[attr-defined]
    standards = tuple(
        Standard(s)
        for s in raw.get("standards", [s.value for s in Standard])  # type: ignore[attr-defined]
    )
    how = str(raw.get("how", ""))
    if status is Status.RECEIVER and not how:
        how = RECEIVER_HOW
    if status in (Status.GATEWAY, Status.EXTERNAL) and not how:
        raise CatalogueError(f"{rule_id}: status {status} needs a 'how'")
    unknown = set(numbers) - set(ALL_MESSAGES)
    if unknown:
        raise CatalogueError(f"{rule_id}: unknown messages {sorted(unknown)}")
    return Entry(
        id=rule_id,
        summary=str(raw["summary"]),
        level=int(raw["level"]),  # type: ignore[call-overload]
        retourcode=str(raw["retourcode"]) if "retourcode" in raw else None,
        numbers=numbers,
        standards=standards,
        elements=tuple(str(e) for e in raw.get("elements", ())),  # type: ignore[attr-defined]
        status=status,
        how=how,
        note=str(raw.get("note", "")),
        severity=Severity(str(raw.get("severity", Severity.ERROR.value))),
        release=release,
        independent=bool(raw.get("independent", False)),
    )


@cache
def catalogue() -> dict[str, Entry]:
    """Every catalogued rule by id, in the file's order."""
    text = resources.files("gateway.rules").joinpath("catalogue.toml").read_text("utf-8")
    data = tomllib.loads(text)
    release = str(data.get("release", ""))
    if not release:
        raise CatalogueError("the catalogue names no release")
    entries: dict[str, Entry] = {}
    for raw in data["rule"]:
        entry = _entry(raw, release)
        if entry.id in entries:
            raise CatalogueError(f"{entry.id} is catalogued twice")
        entries[entry.id] = entry
    return entries


def entry(rule_id: str) -> Entry:
    """The catalogue entry of one rule id; a KeyError names an uncatalogued id."""
    try:
        return catalogue()[rule_id]
    except KeyError:
        raise CatalogueError(f"{rule_id} is not in the rule catalogue") from None


def for_message(code: str) -> list[Entry]:
    """The rules that concern one message code (``WMO301``), in catalogue order."""
    wanted = code.upper()
    return [e for e in catalogue().values() if wanted in e.messages]


@cache
def by_release() -> dict[tuple[Standard, str], dict[str, Entry]]:
    """The catalogue keyed by (standard, release): the rules of ``iWmo 3.2``, of ``iJw 3.2``."""
    keyed: dict[tuple[Standard, str], dict[str, Entry]] = {}
    for e in catalogue().values():
        for standard in e.standards:
            keyed.setdefault((standard, e.release), {})[e.id] = e
    return keyed


def has_rules(standard: Standard, release: str) -> bool:
    """Whether the catalogue knows the rules of a standard's release (``3.2``; a 3.2.x
    onderhoudsrelease keeps the namespace and so is ``3.2``)."""
    return (standard, release) in by_release()


def known_releases() -> list[str]:
    """``iJw 3.2``, ``iWmo 3.2``: the releases whose rules the gateway checks."""
    return sorted(f"{s.label} {r}" for s, r in by_release())
