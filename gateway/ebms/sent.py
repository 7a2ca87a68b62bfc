"""What the outbound MSH has sent and how the partner answered.

A reliable message is resent byte-identically until an Acknowledgment comes: the same MessageId,
Timestamp and TimeToLive. The first attempt records its Timestamp here, so every later attempt
(after a restart too) builds the identical message; the partner's Acknowledgment or
MessageError, which may arrive on another request or after the attempt gave up waiting, is
recorded against the MessageId and ends the delivery at its next attempt. Kept in the ebMS state
file of the data folder (gateway/broker/sqlite_ebms.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

ACKNOWLEDGED = "acknowledged"


@dataclass(frozen=True, slots=True)
class Sent:
    message_id: str
    cpaid: str
    timestamp: str
    outcome: str | None
    """``acknowledged``, ``error:<errorCode>``, or None while unanswered."""
    receipt: list[tuple[str, str]] | None = None
    """(URI, DigestValue) of what we signed, when the CPA asks a signed acknowledgment: the
    references that acknowledgment must repeat. None: any acknowledgment will do."""


class SentLog(Protocol):
    """Where the outbound MSH keeps what it sent (gateway/broker/sqlite_ebms.py)."""

    def first_attempt(self, message_id: str, cpaid: str, timestamp: str) -> Sent:
        """The record of ``message_id``: created now, or as the first attempt left it."""
        ...

    def expect_receipt(self, message_id: str, references: list[tuple[str, str]]) -> None:
        """What a signed acknowledgment of ``message_id`` must repeat."""
        ...

    def get(self, message_id: str) -> Sent | None: ...

    def answer(self, message_id: str, cpaid: str, outcome: str) -> bool:
        """Record the partner's answer to a message we sent under ``cpaid``; False when there
        is no such unanswered message (an unknown or repeated signal)."""
        ...

    def close(self) -> None: ...
