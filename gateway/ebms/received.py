"""What the inbound MSH has received: MessageIds and the signal each was answered with.

Duplicate elimination needs, per MessageId, the content it came with and the answer it got: a
resend (the sender lost our acknowledgment) gets the *same* stored signal again and is never
accepted twice; the same MessageId with other content is refused. Rows are written only after
the message is durably accepted, so a crash in between makes the resend go through acceptance
again, where the StUF duplicate check (zender + referentienummer) finds it: still exactly one
accepted message. Kept in the ebMS state file
of the data folder (gateway/broker/sqlite_ebms.py).

Rows are keyed by (partner, MessageId): a MessageId is unique per sending MSH (ebMS 2.0
6.4.1), not across partners. Keyed by MessageId alone, one partner could learn whether
another had used a MessageId (MessageError against Acknowledgment), take a MessageId before
its owner, and, with identical payload bytes, be sent the other's stored signal. Now another
partner's MessageId is simply unknown, and a stored answer is only replayed under the CPA it
was made for (:mod:`gateway.ebms.inbound`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Received:
    partner: str
    """The partner (registry id) whose CPA it came under: the key, with the MessageId."""
    message_id: str
    cpaid: str
    digest: str
    answer: bytes | None
    """The signal sent back (Acknowledgment or MessageError); None for best effort."""
    received_at: float


class ReceivedLog(Protocol):
    """Where the inbound MSH keeps what it received (gateway/broker/sqlite_ebms.py)."""

    def get(self, partner: str, message_id: str) -> Received | None:
        """What ``partner`` sent as ``message_id`` (another partner's is never returned)."""
        ...

    def remember(
        self, partner: str, message_id: str, cpaid: str, digest: str, answer: bytes | None
    ) -> Received:
        """Record a message and its answer; a concurrent first writer wins and is returned."""
        ...

    def forget_before(self, moment: float) -> int:
        """Drop entries older than the longest resend window (PersistDuration)."""
        ...

    def close(self) -> None: ...
