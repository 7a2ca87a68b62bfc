"""Cross-message rules (iStandaarden iWmo/iJw 3.2, controleniveau 3): rules that compare a
message with earlier ones.

They need a memory of what was seen, behind the :class:`StateStore` protocol so the gateway
can keep it in its store (gateway/broker/sqlite_state.py on SQLite) while tests use
:class:`MemoryStateStore`.
The one a routing gateway must enforce itself is TR056: BerichtIdentificatie/Identificatie is
unique per message type for the sending party (retourcode 9056).

Checking and recording are separate calls: ``validate`` only asks (``seen``); the gateway
records (``remember``) in the same transaction that durably accepts the message, and
``remember`` is atomic so two concurrent submissions cannot both win.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from lxml import etree

from gateway.identify import parties
from gateway.report import Problem
from gateway.standards import Kind, MessageType


@dataclass(frozen=True, slots=True)
class IdentificatieKey:
    """TR056's key: who sent which message type under which Identificatie."""

    sender: str
    message_code: str
    identificatie: str


class StateStore(Protocol):
    def seen(self, key: IdentificatieKey) -> bool:
        """Whether this key was recorded before."""
        ...

    def remember(self, key: IdentificatieKey) -> bool:
        """Record the key; False (and nothing changed) when it was already there."""
        ...


class MemoryStateStore:
    """A process-local store for tests and one-off validation runs."""

    def __init__(self) -> None:
        self._keys: set[IdentificatieKey] = set()
        self._lock = threading.Lock()

    def seen(self, key: IdentificatieKey) -> bool:
        return key in self._keys

    def remember(self, key: IdentificatieKey) -> bool:
        with self._lock:
            if key in self._keys:
                return False
            self._keys.add(key)
            return True


def identificatie_key(root: etree._Element, message: MessageType) -> IdentificatieKey | None:
    """The TR056 key of a message; for a retour its own IdentificatieRetour and its sender.

    A retour's header is a copy of the heen header, so its sender is Header/Ontvanger.
    """
    found = parties(root, message)
    if found is None or not found.sender or not found.identificatie:
        return None
    return IdentificatieKey(found.sender, message.code, found.identificatie)


def check_unique_identificatie(
    root: etree._Element, message: MessageType, store: StateStore
) -> list[Problem]:
    """TR056 (level 3, retourcode 9056): has this sender used this Identificatie before?

    Heenberichten only: the rule lists them, and a retour's IdentificatieRetour is not in it.
    """
    if message.kind is Kind.RETOUR:
        return []
    key = identificatie_key(root, message)
    if key is None or not store.seen(key):
        return []
    return [
        Problem(
            "TR056",
            f"{key.sender} already sent a {key.message_code} with Identificatie "
            f"{key.identificatie}",
            path="Header/BerichtIdentificatie/Identificatie",
            expected="an Identificatie not used before by this sender for this message type",
            found=key.identificatie,
            level=3,
            retourcode="9056",
        )
    ]
