"""Every Kafka consumer of the backend is made here, with what they all share.

A process holds eight consumers (view, router, delivery, ledger owner and reader, payloads,
partners, ebMS state), and each runs a background fetch routine in the event loop. What a
process costs while it carries little traffic is mostly those routines, so it is counted
per process, not per message: with three processes on a trickle it is what makes a message
dearer than with one (docs/kafka.md, "Partition-scoped state"; issue 29, goal 6).
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer

FETCH_ROUTINE_WAKE_MS = 1000
"""How often a consumer's fetch routine wakes with nothing to do (aiokafka's
``consumer_timeout_ms``, 200 by default). It wakes at once for what lets a new fetch go out
(a fetch or offset reset answered, records taken, a seek, an assignment, a resume, a metadata
update it asked for), so the timeout is a safety net. At 200 ms the eight routines woke
about 40 times a second in an idle process: 1000 cut the idle process's CPU from 2.55 to
2.05 % of a core (docs/benchmarks.md, "Goal 6 on a quiet machine")."""


def new_consumer(settings: dict[str, Any], **options: Any) -> AIOKafkaConsumer:
    """A consumer with the connection ``settings`` (``client_settings``) and ``options``."""
    return AIOKafkaConsumer(**settings, consumer_timeout_ms=FETCH_ROUTINE_WAKE_MS, **options)
