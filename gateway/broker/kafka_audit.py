"""The cluster's audit trail read as audit records, and an operator's act appended to it.

On the Kafka backend the audit trail is the ``events`` and ``audit`` topics themselves
(:mod:`gateway.broker.kafka_ledger` chains them); no process keeps a copy. ``ggk audit
search`` and ``ggk audit export`` therefore read the topics: each record becomes the audit
record the embedded backend would have written for it (an accepted message, a delivery's new
state, a history event, an act that belongs to no message), with its position in Kafka
(``events:3:1204``) where the embedded backend shows a sequence number. A search reads the
whole trail; its cost grows with the cluster's history (a plan for an index is in
docs/kafka.md).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from gateway.audit import CLEAR_FIELDS, AuditEvent, names_partner
from gateway.broker import kafka_records as rec
from gateway.broker.kafka_ledger import read_partition, source_partitions, trail_reader
from gateway.keyring import Keyring

_Meta = tuple[str, str, str, str]
"""What a message's later records need of it: referentienummer, zender, ontvanger, functie."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One audit record of the cluster: where it is in Kafka, when, what."""

    position: str
    at: float
    event: AuditEvent

    def row(self) -> dict[str, Any]:
        """The clear fields, as ``ggk audit search`` shows them."""
        return {
            "seq": self.position,
            "at": self.at,
            **{name: getattr(self.event, name) for name in CLEAR_FIELDS},
        }

    def exported(self) -> dict[str, Any]:
        """Everything, the sealed parts opened, as ``ggk audit export`` writes it."""
        secret = dict(self.event.secret)
        if self.event.bsns:
            secret["bsn"] = sorted(set(self.event.bsns))
        return {**self.row(), "secret": secret or None}

    def matches(
        self,
        *,
        message: str | None = None,
        bsn: str | None = None,
        partner: str | None = None,
        since: float | None = None,
    ) -> bool:
        """Every given criterion holds (as the embedded backend's search)."""
        event = self.event
        return (
            (not message or message in (event.object, event.referentienummer))
            and (not bsn or bsn in event.bsns)
            and (not partner or names_partner(event, partner))
            and (since is None or self.at >= since)
        )


async def entries(
    settings: dict[str, Any], prefix: str, keyring: Keyring, *, open_secrets: bool
) -> AsyncIterator[Entry]:
    """Every audit record of the cluster, partition by partition, in each partition's order;
    with ``open_secrets`` the sealed parts (BSNs, payload digest, details) opened."""
    consumer = trail_reader(settings)
    await consumer.start()
    try:
        # a message's later records are in the same partition (keyed by its id)
        for tp in await source_partitions(consumer, prefix):
            messages: dict[str, _Meta] = {}
            async for record in read_partition(consumer, tp):
                entry = _entry(record, keyring if open_secrets else None, messages)
                if entry is not None:
                    yield entry
    finally:
        await consumer.stop()


def _entry(
    record: ConsumerRecord[bytes, bytes], keyring: Keyring | None, messages: dict[str, _Meta]
) -> Entry | None:
    position = f"{record.topic.rsplit('.', 1)[-1]}:{record.partition}:{record.offset}"
    try:
        return _read_entry(record, position, keyring, messages)
    except (rec.RecordError, KeyError, TypeError, ValueError) as exc:
        # not an audit record this version can read: shown as such, never skipped silently
        event = AuditEvent(action="unreadable_record", outcome=type(exc).__name__)
        return Entry(position, float(record.timestamp) / 1000, event)


def _read_entry(
    record: ConsumerRecord[bytes, bytes],
    position: str,
    keyring: Keyring | None,
    messages: dict[str, _Meta],
) -> Entry | None:
    meta, blob = rec.unframe(record.value)
    kind = meta.get("t")
    if kind == "message":
        message, _, at = rec.read_message(keyring, meta, blob)
        messages[message.id] = (
            message.referentienummer,
            message.zender,
            message.ontvanger,
            message.functie or "",
        )
        event = AuditEvent(
            action="accepted",
            object=message.id,
            referentienummer=message.referentienummer,
            zender=message.zender,
            ontvanger=message.ontvanger,
            functie=message.functie or "",
            actor=message.actor,
            origin=message.origin,
            outcome="accepted",
            bsns=message.bsns,
            secret={"payload_sha256": message.payload_digest} if keyring else {},
        )
        return Entry(position, at, event)
    if kind in ("delivery", "event"):
        ref, zender, ontvanger, functie = messages.get(meta["message_id"], ("", "", "", ""))
        event = AuditEvent(
            action=str(meta["event"]),
            object=str(meta["message_id"]),
            referentienummer=ref,
            zender=zender,
            ontvanger=ontvanger,
            functie=functie,
            actor=str(meta.get("actor", "")),
            origin=str(meta.get("origin", "")),
            outcome=str(meta.get("outcome") or meta.get("detail", "")),
        )
        return Entry(position, float(meta["at"]), event)
    if kind == "audit":
        if keyring is not None:
            event, at = rec.read_audit(keyring, meta)
            return Entry(position, at, event)
        return Entry(position, float(meta["at"]), AuditEvent(**meta["event"]))
    return None  # ebMS answers shared between processes: not audit records


async def search(
    settings: dict[str, Any],
    prefix: str,
    keyring: Keyring,
    *,
    limit: int,
    **criteria: Any,
) -> list[dict[str, Any]]:
    """The earliest ``limit`` records matching every criterion (see :meth:`Entry.matches`);
    the sealed parts are opened only for a BSN search (the BSNs are sealed in the records)."""
    opened = bool(criteria.get("bsn"))
    found = [
        e
        async for e in entries(settings, prefix, keyring, open_secrets=opened)
        if e.matches(**criteria)
    ]
    found.sort(key=lambda e: e.at)
    return [e.row() for e in found[:limit]]


async def append_act(
    settings: dict[str, Any], prefix: str, keyring: Keyring, event: AuditEvent, at: float
) -> None:
    """An operator's act (a key rotation, a decrypted export) on ``<prefix>.audit``,
    acknowledged by the cluster before the command reports success."""
    producer = AIOKafkaProducer(**settings, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        value = rec.audit_record(keyring, event, at, uuid.uuid4().hex)
        await producer.send_and_wait(f"{prefix}.audit", value, key=b"audit")
    finally:
        await producer.stop()
