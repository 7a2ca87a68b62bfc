"""Work per message must not grow with the history.

Every statement the per-message paths run (accept, claim, an attempt's outcome, status, inbox,
acknowledge, the Kafka view applying an event) must be planned on an index that narrows it to
that message: never a scan of a growing table, never a walk of every delivery a receiver ever
had. What a metrics scrape, the overdue list and the hourly retention run read must not scan
the history either. Checked on SQLite's own plans for the statements actually run (traced on a real file), not
on copies of them in this file. The defect this guards against was real: with an equality on
both ``message_id`` and ``destination`` the planner took ``deliveries_destination`` and each
delivery update of the Kafka view, each acknowledgement and each partner's status read walked
all of that receiver's deliveries.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from aiokafka.structs import ConsumerRecord

from gateway.broker import kafka_records as rec
from gateway.broker.base import ArchiveQuery
from gateway.broker.kafka import KafkaBroker
from gateway.broker.sqlite import SqliteBroker
from gateway.config import KafkaConfig
from gateway.keyring import Keyring
from kit.harness import stored_message

KEYS = Keyring.generate()
RECEIVER = "12345678"

GROWING = (
    "messages",
    "deliveries",
    "events",
    "facts",
    "refusals",
    "kafka_payloads",
    "kafka_rounds",
)
"""Tables that grow with every message: a per-message statement must never scan them."""


def _traced(broker: SqliteBroker, statements: list[str]) -> None:
    for db in (broker._write_db, broker._read_db):
        assert db is not None
        db.set_trace_callback(statements.append)


def _per_message(statements: list[str]) -> list[str]:
    """The data statements (not transactions, savepoints, pragmas or the schema)."""
    keep = re.compile(r"\s*(SELECT|UPDATE|DELETE|INSERT|WITH)\b", re.IGNORECASE)
    return sorted({s for s in statements if keep.match(s) and "sqlite_master" not in s})


def _plan(db: sqlite3.Connection, statement: str) -> list[str]:
    return [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + statement)]


def _faults(db: sqlite3.Connection, statements: list[str]) -> list[str]:
    found = []
    for statement in statements:
        plan = _plan(db, statement)
        for step in plan:
            scanned = re.match(r"SCAN (\w+)", step)
            if scanned and _table(statement, scanned.group(1)) in GROWING:
                found.append(f"{step}: {statement[:160]}")
            names_one_message = re.search(r"\bmessage_id\s*=|\bm\.id\s*=\s*'", statement)
            if names_one_message and re.search(r"USING (COVERING )?INDEX deliveries_dest", step):
                found.append(f"{step}: {statement[:160]}")
    return found


def _table(statement: str, name: str) -> str:
    """The table behind ``name`` (itself, or the table it aliases in ``statement``)."""
    aliased = re.search(rf"\b(\w+)\s+(?:AS\s+)?{name}\b", statement)
    if aliased and aliased.group(1) in GROWING:
        return aliased.group(1)
    return name


async def _history(broker: SqliteBroker, first: int, count: int) -> None:
    """``count`` delivered messages to the same receiver: the history a bad plan would walk."""
    for n in range(first, first + count):
        await broker.accept(stored_message(n))
    while jobs := await broker.claim(100, 30, per_destination=100):
        for job in jobs:
            await broker.delivered(job)


async def test_embedded_per_message_statements_use_a_narrowing_index(tmp_path: Path) -> None:
    broker = SqliteBroker(tmp_path / "b.sqlite", KEYS)
    await broker.start()
    try:
        await _history(broker, 0, 50)
        statements: list[str] = []
        _traced(broker, statements)
        await _history(broker, 1000, 3)  # accept, claim, delivered
        await broker.accept(stored_message(2000, held=True))
        await broker.accept(stored_message(2001))
        retried, *_ = await broker.claim(10, 30)
        await broker.retry(retried, "503 from the receiver", 0.0)
        dead, *_ = await broker.claim(10, 30)
        await broker.dead(dead, "gone")
        # an operator's replay: the ids it selects, then each chunk's check of them
        assert await broker.replay(dead_only=True) == 1
        assert await broker.view("m2000", viewer=RECEIVER) is not None
        assert await broker.view("m1000", viewer="0150") is not None
        assert await broker.view("m1001") is not None
        assert [m.id for m in await broker.inbox(RECEIVER, 10)] == ["m2000"]
        assert await broker.inbox_envelope(RECEIVER, "m2000") is not None
        assert await broker.ack(RECEIVER, "m2000") is True
        await broker.sent("0150", 10)
        await broker.delivery_health([RECEIVER])
        # what every metrics scrape reads, the operator's overdue list, the hourly retention
        await broker.counts()
        await broker.ops_snapshot(0.0)
        await broker.overdue(0.0, 10)
        await broker.purge(0.0)
        checked = _per_message(statements)
        assert len(checked) >= 10, checked  # the trace saw the paths above
        with sqlite3.connect(tmp_path / "b.sqlite") as db:
            assert _faults(db, checked) == []
    finally:
        await broker.close()


def _record(offset: int, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="ggk.events",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value),
        headers=(),
    )


def _events(first: int, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    """What the router and the delivery loop write to ``events`` for ``count`` messages that
    were delivered: the message, then its delivery's new state."""
    records = []
    for n in range(first, first + count):
        message = stored_message(n)
        records.append(_record(2 * n, rec.message_record(KEYS, message, 1.0)))
        delivered = {
            "t": "delivery",
            "message_id": message.id,
            "destination": RECEIVER,
            "state": "delivered",
            "attempts": 1,
            "round": 0,
            "at": 2.0,
            "event": "delivered",
            "detail": f"{RECEIVER} attempt 1",
        }
        records.append(_record(2 * n + 1, rec.frame(delivered)))
    return records


async def test_kafka_view_applies_an_event_without_walking_the_history(tmp_path: Path) -> None:
    view = SqliteBroker(tmp_path / "view.sqlite", KEYS, audit_enabled=False)
    await view.start()
    kafka = KafkaBroker(KafkaConfig(bootstrap="127.0.0.1:9"), view, node="plans")
    try:
        await kafka.local_view.create()

        async def apply(records: list[ConsumerRecord[bytes, bytes]]) -> None:
            await kafka.apply_records(records, {})

        await apply(_events(0, 50))
        statements: list[str] = []
        _traced(view, statements)
        await apply(_events(1000, 3))
        checked = _per_message(statements)
        assert any(s.startswith("UPDATE deliveries") for s in checked), checked
        with sqlite3.connect(tmp_path / "view.sqlite") as db:
            assert _faults(db, checked) == []
    finally:
        await view.close()


async def test_the_archive_pages_a_partners_deliveries_on_an_index(tmp_path: Path) -> None:
    """The portal's archive (received messages, waiting and acknowledged, filtered, newest
    first, keyset paged) walks the partner's own deliveries in id order: no scan, no sort of
    everything it ever received; reading one message's envelope is one row."""
    broker = SqliteBroker(tmp_path / "b.sqlite", KEYS)
    await broker.start()
    try:
        for n in range(40):
            await broker.accept(stored_message(n, held=True))
        for n in range(0, 40, 2):
            assert await broker.ack(RECEIVER, f"m{n}") is True
        statements: list[str] = []
        _traced(broker, statements)
        every = await broker.received(RECEIVER, ArchiveQuery(), 10)
        assert [m.id for m in every] == [f"m{n}" for n in range(39, 29, -1)]
        nxt = await broker.received(RECEIVER, ArchiveQuery(before=every[-1].cursor), 10)
        assert [m.id for m in nxt] == [f"m{n}" for n in range(29, 19, -1)]
        done = await broker.received(
            RECEIVER, ArchiveQuery(status="delivered", functie="WMO301", since=0.0, until=9e9), 5
        )
        assert [m.id for m in done] == ["m38", "m36", "m34", "m32", "m30"]
        assert {m.state for m in done} == {"delivered"}
        assert await broker.received("0150", ArchiveQuery(), 10) == []
        assert await broker.message_envelope("m3", RECEIVER) is not None
        assert await broker.message_envelope("m3", "0150") is not None  # its sender
        assert await broker.message_envelope("m3", "99999999") is None
        checked = _per_message(statements)
        with sqlite3.connect(tmp_path / "b.sqlite") as db:
            assert _faults(db, checked) == []
            # the outer query's steps (parent 0): a retour's own lookup may sort its few rows
            plans = [
                row[3]
                for s in checked
                if "d.destination" in s and "d.state IN" in s
                for row in db.execute("EXPLAIN QUERY PLAN " + s)
                if row[1] == 0
            ]
        assert plans and not [p for p in plans if "TEMP B-TREE" in p], plans
        assert any("deliveries_destination_id" in p for p in plans), plans
    finally:
        await broker.close()
