"""A stored message as operators and partners see it (``Broker.view``): its metadata, its
deliveries, its history and its conversation. The shapes the read views return and the REST
API and the portal show."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """A stored message's metadata, as :class:`MessageView` shows it (no payload fields)."""

    id: str
    received_at: float
    kind: str
    zender: str
    ontvanger: str
    referentienummer: str
    cross_ref: str | None
    functie: str | None
    message_code: str | None
    heen_id: str | None
    retourcodes: str | None
    unlinked: bool
    """An answer whose reference named no message between its two parties."""


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One delivery of a message, as :class:`MessageView` shows it."""

    destination: str
    adapter: str
    copy: int
    """1 for a copy (an integer, as the REST API has always shown it)."""
    state: str
    attempts: int
    next_attempt_at: float | None
    last_error: str | None
    """The gateway's own words, never the partner's."""
    updated_at: float


@dataclass(frozen=True, slots=True)
class EventRow:
    """One entry of a message's history."""

    at: float
    event: str
    detail: str


@dataclass(frozen=True, slots=True)
class ConversationEntry:
    """A message of the same conversation (the heenbericht and its answers)."""

    id: str
    kind: str
    functie: str | None
    zender: str
    ontvanger: str
    received_at: float
    retourcodes: str | None


@dataclass(frozen=True, slots=True)
class MessageView:
    """A message as operators and partners see it: metadata, deliveries, history, conversation."""

    message: MessageSummary
    deliveries: tuple[DeliveryRow, ...] = ()
    events: tuple[EventRow, ...] = ()
    conversation: tuple[ConversationEntry, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """As the REST API and the portal show it (before its times are formatted): the
        message's fields, then its lists."""
        return {
            **dataclasses.asdict(self.message),
            "deliveries": [dataclasses.asdict(d) for d in self.deliveries],
            "events": [dataclasses.asdict(e) for e in self.events],
            "conversation": [dataclasses.asdict(c) for c in self.conversation],
        }
