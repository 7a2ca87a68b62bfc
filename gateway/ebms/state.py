"""The MSH's state as one thing the inbound and outbound sides share: received and sent records.

On the embedded backend it is the ``ebms.sqlite`` file of the process
(gateway/broker/sqlite_ebms.py); on Kafka every process keeps the same records, read from the
cluster (gateway/broker/kafka_ebms.py), so a resend, an Acknowledgment or a signed receipt is
judged the same whichever process the partner's MSH reaches. Opened by
:func:`gateway.broker.factory.open_msh_state`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from gateway.ebms.received import ReceivedLog
from gateway.ebms.sent import SentLog


class MshState(Protocol):
    @property
    def received(self) -> ReceivedLog: ...

    @property
    def sent(self) -> SentLog: ...

    @property
    def shared(self) -> bool:
        """True when several processes keep these records together (Kafka): an answer
        recorded by one is seen by all, and ``on_settled`` tells this process of it."""
        ...

    on_settled: Callable[[str], None] | None
    """Called in the event loop with the MessageId of a sent message whose answer another
    process recorded (the waiting attempt here ends at once)."""

    async def start(self) -> None:
        """Ready to answer: on Kafka, every record there was at start is read."""
        ...

    async def close(self) -> None: ...
