"""The route table: which destinations a message gets, or why it is refused.

Rules are evaluated in order. Each matches on message code, standard, sender kind and receiver
(all optional; an absent field matches anything) and does one of: ``deliver`` (to the
message's own receiver), ``copy`` (to extra partners, e.g. CAK for the eigen bijdrage), or
``reject`` (with a StUF/GGk foutcode). A rule with ``final = true`` stops evaluation when it
matches. No destination at the end is a rejection with ``IB102`` (no routing known).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from gateway.tables import Table, UnknownKey
from routing.partners import PartnerKind


class Action(StrEnum):
    DELIVER = "deliver"
    COPY = "copy"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class RouteRule:
    name: str
    action: Action
    messages: frozenset[str] = frozenset()
    standard: str | None = None
    sender_kind: PartnerKind | None = None
    receiver: str | None = None
    copy_to: tuple[str, ...] = ()
    reject_code: str = "IB234"
    reject_reason: str = "message refused by route"
    final: bool = False

    def matches(self, msg: RoutedMessage) -> bool:
        return (
            (not self.messages or msg.functie in self.messages)
            and (self.standard is None or msg.standard == self.standard)
            and (self.sender_kind is None or msg.sender_kind is self.sender_kind)
            and (self.receiver is None or msg.receiver == self.receiver)
        )


@dataclass(frozen=True, slots=True)
class RoutedMessage:
    """What routing looks at: never the payload's personal data."""

    functie: str
    standard: str | None
    sender: str
    sender_kind: PartnerKind
    receiver: str


@dataclass(frozen=True, slots=True)
class Destination:
    partner: str
    copy: bool = False
    rule: str = ""


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    reason: str
    rule: str = ""


@dataclass
class RouteTable:
    rules: list[RouteRule] = field(default_factory=list)

    @classmethod
    def default(cls) -> RouteTable:
        return cls([RouteRule("deliver to the addressee", Action.DELIVER)])

    @classmethod
    def from_config(cls, entries: list[dict[str, Any]], source: str = "config") -> RouteTable:
        rules = []
        for i, raw in enumerate(entries):
            try:
                entry = Table(raw, f"{source}: route #{i + 1}")
                kind = entry.get("sender_kind")
                rules.append(
                    RouteRule(
                        name=str(entry.get("name", f"route #{i + 1}")),
                        action=Action(entry["action"]),
                        messages=frozenset(str(m).upper() for m in entry.get("messages", [])),
                        standard=entry.get("standard"),
                        sender_kind=PartnerKind(kind) if kind else None,
                        receiver=entry.get("receiver"),
                        copy_to=tuple(str(p) for p in entry.get("copy_to", [])),
                        reject_code=str(entry.get("reject_code", "IB234")),
                        reject_reason=str(entry.get("reject_reason", "message refused by route")),
                        final=bool(entry.get("final", False)),
                    )
                )
                entry.done()  # a misspelt key is refused, naming the nearest known one
            except UnknownKey:
                raise
            except (KeyError, ValueError) as exc:
                raise ValueError(f"{source}: route #{i + 1}: bad or missing {exc}") from None
        return cls(rules)

    @classmethod
    def load(cls, path: Path) -> RouteTable:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        root = Table(data, str(path))
        routes = root.get("route", [])
        root.done()
        return cls.from_config(routes, str(path))

    def route(self, msg: RoutedMessage) -> list[Destination] | Refusal:
        destinations: dict[str, Destination] = {}
        for rule in self.rules:
            if not rule.matches(msg):
                continue
            if rule.action is Action.REJECT:
                return Refusal(rule.reject_code, rule.reject_reason, rule.name)
            if rule.action is Action.DELIVER:
                destinations.setdefault(msg.receiver, Destination(msg.receiver, False, rule.name))
            else:
                for partner in rule.copy_to:
                    if partner not in (msg.sender, msg.receiver):
                        destinations.setdefault(partner, Destination(partner, True, rule.name))
            if rule.final:
                break
        if not any(not d.copy for d in destinations.values()):
            return Refusal("IB102", f"no route for {msg.functie} to {msg.receiver}")
        return list(destinations.values())
