"""The topic layout of the Kafka backend, and creating it (``ggk kafka init``).

Topics (``<prefix>`` defaults to ``ggk``):

- ``<prefix>.accepted``: every accepted message, keyed by its receiver;
- ``<prefix>.deliver.<adapter>``: one per adapter kind, keyed by receiver, so one receiver's
  deliveries stay in one partition and keep their order;
- ``<prefix>.retry.<seconds>s``: delayed retries, one topic per backoff step;
- ``<prefix>.dlq``: dead letters, kept until replayed;
- ``<prefix>.audit``: the audit log; one partition, because its hash chain needs one order;
- ``<prefix>.events``: keyed by message id: every message and every change of its deliveries,
  from which each gateway process keeps its local view (status, inbox, dead letters); with
  ``audit``, the cluster's audit trail (chained by the ledger).
  Not compacted: a process joining later reads the whole history.
- ``<prefix>.ledger``: signed heads of the per-partition audit chains over ``events`` and
  ``audit`` (gateway/broker/kafka_ledger.py); compacted, keyed by source partition.
- ``<prefix>.sessions``: portal sign-outs (revoked session nonces, each with its session's
  expiry), keyed by nonce, one partition; kept ``SESSIONS_RETENTION_MS``, a little over a
  session's life: a revocation is worthless once its session expired, so a partner signing
  out again and again cannot grow it without bound, and each process reads it whole at start.
- ``<prefix>.partners``: the partner file as changed by ``ggk partners`` or the portal, whole
  and signed, one key; compacted (only the newest matters); every process follows it
  (gateway/broker/kafka_partners.py).
- ``<prefix>.ebms``: the ebMS MSH's state shared by every process (received MessageIds with
  their answers, first-attempt Timestamps, expected receipt references, partners' answers;
  gateway/broker/kafka_ebms.py); keyed by MessageId, read whole by every process, kept
  ``EBMS_RETENTION_MS`` (longer than any resend window), not compacted: the first record of a
  key must win, and compaction keeps the last.

Topics that carry envelopes allow records up to 32 MiB (the gateway accepts 25 MB messages).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from gateway import transports

ADAPTERS = tuple(transports.BUILT_IN)
"""A ``deliver.<adapter>`` topic per built-in adapter (plug-ins share ``deliver.http``)."""
RETRY_DELAYS = (10, 60, 600, 3600)
WEEK_MS = 7 * 24 * 3600 * 1000
SESSIONS_RETENTION_MS = 30 * 60 * 1000
"""How long a sign-out is kept on ``sessions``: a portal session lives 20 minutes
(gateway/portal/session.py SESSION_SECONDS), plus 10 minutes for clocks that disagree."""
EBMS_RETENTION_MS = 45 * 24 * 3600 * 1000
"""How long the ebMS state records are kept: past the longest time a received MessageId is
remembered (a resend window of at most 30 days, gateway/ebms/cpa.py MAX_RESEND_WINDOW, plus
the Timestamp window's skew) and the longest a message we send lives."""
SESSIONS_SEGMENT_MS = 5 * 60 * 1000
"""Kafka deletes whole segments only: a segment is closed every 5 minutes, so a sign-out is
gone within retention + segment + the broker's retention check (5 minutes by default)."""


def pushed() -> tuple[str, ...]:
    """The built-in adapters whose deliveries are pushed: each that does not hold its
    messages (``Adapter.holds``, the inbox)."""
    return tuple(a for a in ADAPTERS if not transports.holds(a))


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    partitions: int
    replication: int
    config: dict[str, str] = field(default_factory=dict)


def plan(
    prefix: str = "ggk",
    *,
    partitions: int = 12,
    replication: int = 3,
    retry_delays: tuple[int, ...] = RETRY_DELAYS,
) -> list[Topic]:
    """Every topic the backend needs, with partitions and replication."""
    if partitions < 1 or replication < 1:
        raise ValueError("partitions and replication must be at least 1")
    durable = {"min.insync.replicas": str(min(2, replication)), "max.message.bytes": str(32 << 20)}
    topics = [
        Topic(
            f"{prefix}.accepted", partitions, replication, {**durable, "retention.ms": str(WEEK_MS)}
        )
    ]
    topics += [
        Topic(f"{prefix}.deliver.{adapter}", partitions, replication, durable)
        for adapter in ADAPTERS
    ]
    topics += [
        Topic(f"{prefix}.retry.{seconds}s", partitions, replication, durable)
        for seconds in retry_delays
    ]
    topics.append(
        Topic(f"{prefix}.dlq", partitions, replication, {**durable, "retention.ms": "-1"})
    )
    topics.append(Topic(f"{prefix}.audit", 1, replication, {**durable, "retention.ms": "-1"}))
    topics.append(
        Topic(f"{prefix}.events", partitions, replication, {**durable, "retention.ms": "-1"})
    )
    # the signed heads of the audit chains: only the newest per source partition matters
    compacted = {"cleanup.policy": "compact", "segment.ms": str(3600 * 1000)}
    topics.append(Topic(f"{prefix}.ledger", 1, replication, {**durable, **compacted}))
    expiring = {
        "cleanup.policy": "delete",
        "retention.ms": str(SESSIONS_RETENTION_MS),
        "segment.ms": str(SESSIONS_SEGMENT_MS),
    }
    topics.append(Topic(f"{prefix}.sessions", 1, replication, {**durable, **expiring}))
    topics.append(Topic(f"{prefix}.partners", 1, replication, {**durable, **compacted}))
    kept = {"cleanup.policy": "delete", "retention.ms": str(EBMS_RETENTION_MS)}
    topics.append(Topic(f"{prefix}.ebms", partitions, replication, {**durable, **kept}))
    return topics


async def create(
    bootstrap_servers: str, topics: list[Topic], settings: dict[str, Any] | None = None
) -> tuple[list[str], list[str]]:
    """Create what is missing; returns (created, already there). Safe to run again.
    ``settings``: TLS/SASL client settings (see ``gateway.broker.kafka.client_settings``)."""
    admin = AIOKafkaAdminClient(**{"bootstrap_servers": bootstrap_servers, **(settings or {})})
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        if missing:
            # another process may create them at the same moment: that is fine
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(t.name, t.partitions, t.replication, topic_configs=t.config)
                        for t in missing
                    ]
                )
        return [t.name for t in missing], sorted(t.name for t in topics if t.name in existing)
    finally:
        await admin.close()


async def partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    """The partitions of ``topic``, empty when it does not exist (a consumer's metadata knows
    only the topics it asked about: refreshed once)."""
    found: set[int] | None = consumer.partitions_for_topic(topic)
    if not found:
        await consumer._client.force_metadata_update()
        found = consumer.partitions_for_topic(topic)
    return found or set()
