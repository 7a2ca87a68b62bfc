"""What a business rule is, how rules are registered, and helpers to read a message.

A rule is a plain function from a :class:`MessageContext` to findings, registered with its
official rule id, the messages it applies to, its control level and retourcode (iStandaarden
iWmo/iJw 3.2 regels). Rules only run on XSD-valid messages, so they may assume the structure
and types hold.
Element look-ups use local names (``{*}``) so one rule serves iWmo and iJw alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from lxml import etree

from gateway.report import Problem, Severity, line_of
from gateway.rules import catalogue
from gateway.standards import MessageType


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule violation at one element, before the rule's metadata is attached."""

    element: etree._Element | None
    message: str
    expected: str | None = None
    found: str | None = None


@dataclass(frozen=True, slots=True)
class MessageContext:
    """What a rule may look at: the message root, its type and the receiver's date."""

    root: etree._Element
    message: MessageType
    today: date
    xsd_versions: tuple[str | None, str | None] = (None, None)
    """(BasisschemaXsdVersie, BerichtXsdVersie) of the schema the message was validated with."""


Check = Callable[[MessageContext], Iterable[Finding]]


@dataclass(frozen=True, slots=True)
class Rule:
    """A check with its catalogue metadata: the data says what, the predicate says how."""

    id: str
    description: str
    messages: frozenset[str]
    """Message codes (``WMO301``, ``JW301``) this check runs on."""
    check: Check
    level: int = 2
    retourcode: str | None = "0001"
    severity: Severity = Severity.ERROR
    release: str = "3.2"
    """The release whose rule this is; it runs on messages of that release only…"""
    independent: bool = False
    """…unless it holds in every release (catalogue ``independent``)."""

    def applies_to(self, message: MessageType, release: str | None = None) -> bool:
        """Whether the check runs on a message type (of ``release``, when given)."""
        if message.code not in self.messages:
            return False
        return release is None or self.independent or release == self.release

    def run(self, ctx: MessageContext) -> Iterator[Problem]:
        for finding in self.check(ctx):
            el = finding.element
            yield Problem(
                rule=self.id,
                message=finding.message,
                path=element_path(el) if el is not None else None,
                line=line_of(el) if el is not None else None,
                expected=finding.expected,
                found=finding.found,
                level=self.level,
                retourcode=self.retourcode,
                severity=self.severity,
            )


RULES: list[Rule] = []
"""Every registered in-message rule, in registration order."""


def rule(rule_id: str, *, messages: Iterable[int] | None = None) -> Callable[[Check], Check]:
    """Register a check under its official rule id.

    Level, retourcode, severity, summary and the messages come from the rule catalogue
    (:mod:`gateway.rules.catalogue`); ``messages`` narrows a check to some of the catalogued
    message numbers when one rule id is checked by several predicates.
    """
    meta = catalogue.entry(rule_id)
    if meta.status is not catalogue.Status.RULE:
        raise catalogue.CatalogueError(f"{rule_id} is catalogued as {meta.status}, not as a rule")
    numbers = set(meta.numbers if messages is None else messages)
    if not numbers <= set(meta.numbers):
        raise catalogue.CatalogueError(
            f"{rule_id} is not catalogued for {sorted(numbers - set(meta.numbers))}"
        )
    codes = frozenset(f"{s.message_prefix}{n}" for s in meta.standards for n in numbers)

    def register(check: Check) -> Check:
        RULES.append(
            Rule(
                rule_id,
                meta.summary,
                codes,
                check,
                meta.level,
                meta.retourcode,
                meta.severity,
                meta.release,
                meta.independent,
            )
        )
        return check

    return register


# --- reading helpers --------------------------------------------------------------------------
#
# Every lxml look-up costs 1-3 µs whatever the method, and ~40 rules read the same few fields of
# the same classes. So within one rule run (``reading_cache``) each element's children and
# grandchildren are read once, in one pass, into a dict keyed by local path; deeper or
# multi-valued look-ups are cached per (element, path). Outside a run the helpers fall back to
# plain lxml calls, so they stay usable on their own.

_Fields = dict[str, etree._Element]
_cache: ContextVar[dict[object, object] | None] = ContextVar("rule_reading_cache", default=None)


@contextmanager
def reading_cache() -> Iterator[None]:
    """Memoise look-ups for the duration of one message's rule run."""
    token = _cache.set({})
    try:
        yield
    finally:
        _cache.reset(token)


@lru_cache(maxsize=512)
def _q(path: str) -> str:
    return "/".join(f"{{*}}{step}" for step in path.split("/"))


def _fields(el: etree._Element) -> _Fields:
    """Children and grandchildren of ``el`` by local path (first occurrence wins)."""
    out: _Fields = {}
    for child in el:
        tag = child.tag
        if not isinstance(tag, str):
            continue  # comment or processing instruction
        name = tag[tag.rfind("}") + 1 :]
        out.setdefault(name, child)
        for grandchild in child:
            gtag = grandchild.tag
            if isinstance(gtag, str):
                out.setdefault(f"{name}/{gtag[gtag.rfind('}') + 1 :]}", grandchild)
    return out


def first(el: etree._Element, path: str) -> etree._Element | None:
    cache = _cache.get()
    if cache is None:
        return el.find(_q(path))
    if path.count("/") <= 1:
        fields = cache.get(el)
        if fields is None:
            fields = cache[el] = _fields(el)
        return fields.get(path)  # type: ignore[attr-defined, no-any-return]
    key = (el, path)
    if key not in cache:
        cache[key] = el.find(_q(path))
    return cache[key]  # type: ignore[return-value]


def every(el: etree._Element, path: str) -> list[etree._Element]:
    cache = _cache.get()
    if cache is None:
        return el.findall(_q(path))
    key = ("all", el, path)
    found = cache.get(key)
    if found is None:
        found = cache[key] = el.findall(_q(path))
    return found  # type: ignore[return-value]


def text(el: etree._Element | None, path: str) -> str | None:
    if el is None:
        return None
    found = first(el, path)
    if found is None or found.text is None:
        return None
    return found.text.strip()


def as_date(el: etree._Element | None, path: str) -> date | None:
    """The date at ``path``; within a rule run parsed once, however many rules read it."""
    cache = _cache.get()
    key = ("date", el, path)
    if cache is not None and key in cache:
        return cache[key]  # type: ignore[return-value]
    value = text(el, path)
    parsed = date.fromisoformat(value) if value else None
    if cache is not None:
        cache[key] = parsed
    return parsed


def as_int(el: etree._Element | None, path: str) -> int | None:
    value = text(el, path)
    return int(value) if value is not None else None


def element_path(el: etree._Element) -> str:
    """Local-name path from below the root, e.g. ``Client/ToegewezenProducten/…[2]/Einddatum``."""
    steps: list[str] = []
    node: etree._Element | None = el
    while node is not None and node.getparent() is not None:
        parent = node.getparent()
        assert parent is not None
        name = etree.QName(node).localname
        position, count = _position(parent, node)
        steps.append(f"{name}[{position}]" if count > 1 else name)
        node = parent
    return "/".join(reversed(steps)) or "."


def _position(parent: etree._Element, node: etree._Element) -> tuple[int, int]:
    """(1-based position among same-tag siblings, how many there are). Within a rule run the
    positions of a parent's children are computed once, so a finding on each of n siblings
    costs n, not n² (a sibling scan per finding)."""
    cache = _cache.get()
    key = ("positions", parent, node.tag)
    table = cache.get(key) if cache is not None else None
    if table is None:
        same = [s for s in parent if s.tag == node.tag]
        table = {s: i + 1 for i, s in enumerate(same)}
        table[None] = len(same)  # type: ignore[index]
        if cache is not None:
            cache[key] = table
    positions: dict[etree._Element | None, int] = table  # type: ignore[assignment]
    return positions[node], positions[None]


def header(ctx: MessageContext) -> etree._Element:
    found = first(ctx.root, "Header")
    assert found is not None  # guaranteed by the XSD
    return found


def yyyymmdd(el: etree._Element | None, path: str) -> int | None:
    """A date as the number yyyymmdd: the official checks compare and add years this way
    (``translate(date, '-', '')``), which is exact where calendar arithmetic must guess
    (29 February, 31st of a shorter month)."""
    value = text(el, path)
    return int(value.replace("-", "")) if value else None
