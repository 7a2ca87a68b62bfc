"""The broker interface: the durable heart of the gateway, behind which SQLite and Kafka sit.

A message is *accepted* in one durable step together with one delivery record per
destination; only then does the caller get its Bv03. Deliveries move
pending → inflight (leased) → delivered | retry (scheduled) | dead, or are held in a
partner's inbox until acknowledged. A lease that runs out (a worker died) makes the delivery
claimable again, so a crash never strands a message.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from gateway.audit import AuditEvent
    from gateway.broker.message_view import MessageView
    from gateway.figures import Fact
    from gateway.stats import RawFigures, Scope


class StorageError(Exception):
    """The store could not durably record something (disk full, I/O error)."""


class PayloadUnreadable(StorageError):
    """A stored message's payload cannot be found or read back (its Kafka record was deleted
    or is damaged; not a Kafka that is down, which is a plain :class:`StorageError`): trying
    again will not help."""


class ReencryptionStopped(StorageError):
    """Re-encrypting the stored payloads stopped partway: ``done`` of ``total`` hold the
    active key (committed); the rest keep the key they had, which still opens them."""

    def __init__(self, done: int, total: int, cause: str) -> None:
        super().__init__(f"stopped after {done} of {total} payloads: {cause}")
        self.done = done
        self.total = total


class DeliveryState(StrEnum):
    PENDING = "pending"
    INFLIGHT = "inflight"
    RETRY = "retry"
    DELIVERED = "delivered"
    DEAD = "dead"
    INBOX = "inbox"


@dataclass(frozen=True, slots=True)
class PlannedDelivery:
    destination: str
    adapter: str
    copy: bool
    held: bool
    """True for inbox deliveries: stored as 'inbox' and never pushed."""


@dataclass(frozen=True, slots=True)
class NewMessage:
    """Everything stored about an accepted message (no payload fields in the clear)."""

    id: str
    kind: str
    zender: str
    zender_applicatie: str
    ontvanger: str
    referentienummer: str
    cross_ref: str | None
    functie: str | None
    message_code: str | None
    identificatie: str | None
    payload_sender: str | None
    digest: str
    envelope: bytes
    bv03_ref: str
    bv03_tijdstip: str
    heen_id: str | None = None
    retourcodes: str | None = None
    deliveries: tuple[PlannedDelivery, ...] = ()
    actor: str = ""
    origin: str = ""
    bsns: tuple[str, ...] = ()
    """The payload's BSNs: only ever stored encrypted, and as keyed pseudonyms."""
    payload_digest: str = ""
    facts: tuple[Fact, ...] = ()
    """Beleidsinformatie of the payload (gateway/figures.py): pseudonymous, no BSN."""


@dataclass(frozen=True, slots=True)
class AcceptOutcome:
    """``accepted``, ``duplicate`` (same content again: same Bv03), ``conflict`` (same
    zender+referentienummer, other content: StUF016) or ``tr056`` (Identificatie reused)."""

    status: str
    message_id: str
    bv03_ref: str
    bv03_tijdstip: str


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed delivery, leased to one worker."""

    delivery_id: int
    message_id: str
    destination: str
    adapter: str
    attempts: int
    referentienummer: str
    functie: str
    envelope: bytes


class DirectDeliveries(Protocol):
    """Free delivery workers an accept may hand its deliveries to straight away
    (gateway/delivery.py): stored as in flight under a lease, in the accept's own commit, so
    no claim has to find them again and nothing is decrypted for them."""

    def reserve(self, destinations: Sequence[str]) -> float | None:
        """Workers for deliveries to ``destinations`` (a lease in seconds), or None: store
        them as due, for the workers to claim."""
        ...

    def release(self, destinations: Sequence[str]) -> None:
        """Give back what :meth:`reserve` granted (the message was not stored)."""
        ...

    def hand_over(self, jobs: Sequence[Job]) -> None:
        """The reserved deliveries, committed: start them."""
        ...


@dataclass(frozen=True, slots=True)
class DestinationQueue:
    """Deliveries to one partner that are not finished: how many, and how old the oldest."""

    destination: str
    waiting: int
    oldest_received_at: float | None
    dead: int


@dataclass(frozen=True, slots=True)
class OpsSnapshot:
    """What an operator's dashboard reads from the store at scrape time."""

    queues: tuple[DestinationQueue, ...]
    overdue: int
    store_bytes: int
    last_checkpoint_at: float | None


@dataclass(frozen=True, slots=True)
class MessageRef:
    """A stored message a conversation lookup found: enough to link an answer to it
    (``kind`` and ``functie`` only from :meth:`ReadViews.find_conversation`)."""

    id: str
    zender: str
    ontvanger: str
    referentienummer: str
    kind: str | None = None
    functie: str | None = None


@dataclass(frozen=True, slots=True)
class SentItem:
    """A message a partner sent, as its Sent list shows it."""

    id: str
    kind: str
    functie: str | None
    ontvanger: str
    referentienummer: str
    received_at: float
    bv03_ref: str
    states: str | None
    """Its deliveries' states, comma-separated."""
    retour: str | None
    """The newest retour's functie and retourcodes."""


@dataclass(frozen=True, slots=True)
class ArchiveQuery:
    """Which received messages a partner's archive lists (each filter optional): received
    from ``since`` up to ``until`` (epoch seconds), of message type ``functie`` (``JW301``),
    in ``status`` (``inbox``: waiting, ``delivered``: acknowledged), older than the row
    ``before`` (the previous page's last ``cursor``: keyset paging, newest first)."""

    since: float | None = None
    until: float | None = None
    functie: str | None = None
    status: str | None = None
    before: int | None = None


@dataclass(frozen=True, slots=True)
class ArchiveItem:
    """A message a partner received, waiting or acknowledged; ``cursor`` pages the list."""

    cursor: int
    id: str
    kind: str
    functie: str | None
    zender: str
    referentienummer: str
    received_at: float
    state: str
    """Its delivery to this partner: ``inbox`` (waiting) or ``delivered`` (acknowledged)."""
    retour: str | None
    """The newest retour to it (functie and retourcodes), for a heenbericht."""


@dataclass(frozen=True, slots=True)
class RefusalItem:
    """A refused submission (Fo03) of a partner."""

    at: float
    functie: str
    referentienummer: str
    code: str


@dataclass(frozen=True, slots=True)
class InboxItem:
    """A message waiting in a partner's inbox; ``cursor`` pages the list."""

    cursor: int
    id: str
    kind: str
    functie: str | None
    zender: str
    referentienummer: str
    cross_ref: str | None
    received_at: float
    unlinked: bool
    """A retour whose reference to its heenbericht was not checked (lenient conversations)."""

    def to_dict(self) -> dict[str, Any]:
        """As the REST API shows it (before its times are formatted)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A delivery that failed for good; ``cursor`` pages the list."""

    cursor: int
    id: str
    referentienummer: str
    functie: str | None
    zender: str
    destination: str
    attempts: int
    last_error: str | None
    """The gateway's own words, never the partner's."""
    updated_at: float

    def to_dict(self) -> dict[str, Any]:
        """As the REST API shows it (before its times are formatted)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class OverdueMessage:
    """A heenbericht still unanswered after the overdue period."""

    id: str
    functie: str | None
    zender: str
    ontvanger: str
    referentienummer: str
    received_at: float

    def to_dict(self) -> dict[str, Any]:
        """As the REST API shows it (before its times are formatted)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """An audit record's clear fields (gateway/audit.py CLEAR_FIELDS), as a search finds it;
    the sealed part (BSNs, details) stays sealed."""

    seq: int | str
    """The record's place: a sequence number on the embedded backend, a Kafka position
    (``events:3:1204``) on the cluster."""
    at: float
    action: str
    object: str
    referentienummer: str
    zender: str
    ontvanger: str
    functie: str
    actor: str
    origin: str
    outcome: str

    def to_dict(self) -> dict[str, Any]:
        """As ``ggk audit search`` shows a record."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """What one audit checkpoint signed: the heads of ``heads`` chains (one on the embedded
    backend, one per owned partition on Kafka), covering ``records`` audit records."""

    heads: int
    records: int


@dataclass(frozen=True, slots=True)
class StoreFacts:
    """What a store file holds, for a backup's manifest and a restore's report."""

    messages: int
    audit_records: int
    audit_head: str | None
    """The newest audit record's hash (the chain's head), None when there is none."""


@dataclass(frozen=True, slots=True)
class DeliveryCounts:
    """How many deliveries are in each state (see :class:`DeliveryState`)."""

    pending: int = 0
    inflight: int = 0
    retry: int = 0
    delivered: int = 0
    dead: int = 0
    inbox: int = 0

    def to_dict(self) -> dict[str, int]:
        """The states that have deliveries, by name (what the metrics publish)."""
        return {state: n for state, n in dataclasses.asdict(self).items() if n}


@dataclass(frozen=True, slots=True)
class DeliveryHealth:
    """How deliveries to one destination fare, as the operator's Queues page shows it."""

    last_delivered_at: float | None
    retrying: int
    last_failure_at: float | None
    last_error: str | None
    """The newest error of the retried or dead deliveries: the gateway's own words, never
    the partner's."""

    def to_dict(self) -> dict[str, Any]:
        """As the portal's queue rows merge it in."""
        return dataclasses.asdict(self)


class Lifecycle(Protocol):
    """Starting and stopping a backend; ``wake`` tells the delivery workers work may be due."""

    wake: asyncio.Event
    """Set whenever new work may be due; delivery workers wait on it."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...


class MessageStore(Protocol):
    """Accepting a message with its deliveries in one durable step, and retention."""

    async def accept(self, message: NewMessage) -> AcceptOutcome: ...
    async def purge(self, older_than: float) -> int: ...


class DeliveryQueue(Protocol):
    """Deliveries to push: claimed under a lease, then settled; dead ones replayed."""

    async def claim(
        self, limit: int, lease_seconds: float, per_destination: int | None = None
    ) -> list[Job]: ...
    async def delivered(self, job: Job) -> None: ...
    async def retry(self, job: Job, error: str, at: float) -> None: ...
    async def dead(self, job: Job, error: str) -> None: ...
    async def next_due(self) -> float | None: ...
    async def replay(
        self,
        *,
        message_id: str | None = None,
        dead_only: bool = True,
        since: float | None = None,
        partner: str | None = None,
        actor: str = "",
    ) -> int: ...


class PartnerInbox(Protocol):
    """Deliveries held for a partner to fetch (the ``inbox`` adapter) and acknowledge."""

    async def inbox(self, partner: str, limit: int, after: int = 0) -> list[InboxItem]:
        """Up to ``limit`` waiting messages whose ``cursor`` is past ``after`` (paging)."""
        ...

    async def inbox_envelope(self, partner: str, message_id: str) -> bytes | None: ...
    async def ack(self, partner: str, message_id: str) -> bool: ...
    async def received(self, partner: str, query: ArchiveQuery, limit: int) -> list[ArchiveItem]:
        """Messages delivered to ``partner``'s inbox, waiting or acknowledged, newest first,
        filtered by ``query`` (the portal's archive)."""
        ...

    async def message_envelope(self, message_id: str, viewer: str | None) -> bytes | None:
        """The envelope of a message ``viewer`` sent or received (None: an operator), for
        reading it; None when there is none for that viewer, or retention purged it."""
        ...


class ReadViews(Protocol):
    """What operators, partners and the ingress look up: conversations, lists, one message."""

    async def find_conversation(
        self,
        referentienummer: str,
        *,
        zender: str,
        ontvanger: str,
        kinds: tuple[str, ...] = ("Di01", "Du01"),
    ) -> MessageRef | None:
        """The message of one of ``kinds`` that ``zender`` sent to ``ontvanger`` under
        ``referentienummer`` (the one a retour or Fo01 from ``ontvanger`` may refer to), or
        None, the same None whether no such reference exists or it belongs to another pair."""
        ...

    async def find_heen(
        self, payload_sender: str, message_code: str, identificatie: str, *, ontvanger: str
    ) -> MessageRef | None:
        """The Di01 of that payload header, if it was addressed to ``ontvanger``."""
        ...

    async def stored_envelope(self, message_id: str) -> bytes | None:
        """The envelope of a stored message that retention has not purged (None otherwise):
        for the gateway's own comparisons at accept (gateway/pairing.py), never shown to a
        partner; the caller found ``message_id`` with a lookup limited to one pair."""
        ...

    async def view(self, message_id: str, viewer: str | None = None) -> MessageView | None:
        """A message as ``viewer`` may see it (None: an operator, everything); a partner
        sees only messages it sent or received, and only those in the conversation."""
        ...

    async def delivery_health(self, destinations: list[str]) -> dict[str, DeliveryHealth]:
        """Per destination: when a delivery last succeeded, how many are being retried, the
        newest failure and its error."""
        ...

    async def sent(self, partner: str, limit: int) -> list[SentItem]:
        """The newest ``limit`` messages ``partner`` sent: Bv03, delivery states, newest
        retour (functie and retourcodes)."""
        ...

    async def refusals(self, partner: str, limit: int) -> list[RefusalItem]:
        """The newest ``limit`` refusals (Fo03s) of ``partner``'s submissions."""
        ...

    async def dead_letters(
        self, partner: str | None, limit: int, after: int = 0
    ) -> list[DeadLetter]: ...
    async def overdue(self, older_than: float, limit: int) -> list[OverdueMessage]: ...


class AuditTrail(Protocol):
    """The encrypted, hash-chained audit records and their signed checkpoints."""

    async def audit_event(self, event: AuditEvent, *, refused_by: str | None = None) -> None:
        """An audit record that belongs to no stored message. ``refused_by``: the
        authenticated partner whose submission this refusal answers; the refusal (code,
        functie, referentienummer) joins that partner's own list (the portal's Sent page)."""
        ...

    async def audit_search(
        self,
        *,
        message: str | None = None,
        bsn: str | None = None,
        partner: str | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[AuditRecord]:
        """Audit records matching every criterion, oldest first (a BSN by its pseudonym on
        the embedded backend; on Kafka the whole trail is read)."""
        ...

    async def checkpoint(self) -> SignedCheckpoint | None:
        """Sign the heads of the audit chains, so nothing before them can be cut off
        unnoticed; None when there was nothing new to sign."""
        ...


class Figures(Protocol):
    """Counts for operators and beleidsinformatie: what the metrics and reports read."""

    async def counts(self) -> DeliveryCounts:
        """Deliveries per state, over every destination."""
        ...

    async def figures(self, scope: Scope) -> RawFigures:
        """The beleidsinformatie facts of ``scope``, counted (gateway/stats.py publishes)."""
        ...

    async def ops_snapshot(self, overdue_before: float) -> OpsSnapshot:
        """Queues per destination, overdue heenberichten (received before ``overdue_before``
        and unanswered), store size and the newest signed audit checkpoint."""
        ...


class Sessions(Protocol):
    """Portal sessions signed out before they expire, honoured by every process."""

    async def revoke_session(self, nonce: str, expires: float) -> None:
        """A portal session signed out before ``expires``: from now on no process honours a
        cookie carrying ``nonce`` (on Kafka: returns once this process's view has it, and
        every other process applies it as its view reads on)."""
        ...

    def session_revoked(self, nonce: str) -> bool:
        """Whether the session of ``nonce`` was signed out: in memory, checked on every
        portal page."""
        ...

    def signins_paused(self) -> float:
        """How long a new portal sign-in must wait: 0.0 normally; while the signed-out
        sessions held in memory are at capacity, the seconds until the soonest of them
        expires (a live revocation is never forgotten to make room: gateway/broker/
        revocations.py)."""
        ...


@runtime_checkable
class HandsOver(Protocol):
    """A backend whose accept can hand its deliveries straight to free workers of this
    process (the embedded store; on Kafka another process may deliver them)."""

    direct: DirectDeliveries | None
    """The workers to hand to (set when the delivery service is made)."""


@runtime_checkable
class SharedAnswers(Protocol):
    """A backend several processes share (Kafka): an ebMS answer may reach another process than
    the one that sent the message, so it is passed on through the backend."""

    ebms_answer_listener: Callable[[str, str, str], None] | None
    """Given every ebMS answer any process shared (ref, cpaid, outcome)."""

    async def share_ebms_answer(self, ref: str, cpaid: str, outcome: str) -> None: ...


class Broker(
    Lifecycle,
    MessageStore,
    DeliveryQueue,
    PartnerInbox,
    ReadViews,
    AuditTrail,
    Figures,
    Sessions,
    Protocol,
):
    """A whole backend: every role together. The server holds one; a caller that needs only
    one role types its parameter with that role's protocol (the delivery workers a
    :class:`DeliveryQueue`, the portal's sign-out :class:`Sessions`, ...)."""
