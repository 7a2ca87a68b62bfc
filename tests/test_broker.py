"""The SQLite broker on a real file: group commit, leases, fencing, duplicates, replay."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from gateway import demo
from gateway.broker import sqlite_audit, sqlite_deferred
from gateway.broker.base import Job, NewMessage, PlannedDelivery, StorageError
from gateway.broker.kafka import KafkaBroker
from gateway.broker.sqlite import SqliteBroker
from gateway.broker.sqlite_prepared import is_large
from gateway.broker.sqlite_view import LocalView, ViewWrite
from gateway.config import ConfigError, DeliveryConfig, GatewayConfig
from gateway.config import check as check_config
from gateway.config import load as load_config
from gateway.delivery import DeliveryService, backoff
from gateway.figures import Fact, FactKind
from gateway.keyring import Keyring
from gateway.metrics import REGISTRY
from gateway.server import build
from gateway.stats import Scope
from kit.gateway import eventually
from kit.harness import free_port, start_sink, stored_message
from routing.partners import PartnerRegistry

KEYS = Keyring.generate()


async def test_group_commit_many_accepts_in_few_transactions(tmp_path: Path) -> None:
    broker = SqliteBroker(tmp_path / "b.sqlite", KEYS)
    await broker.start()
    applied: list[int] = []
    original = broker._apply

    def counting(ops: list, durable: bool = True) -> list:  # type: ignore[type-arg]
        applied.append(len(ops))
        return original(ops, durable)

    broker._apply = counting  # type: ignore[method-assign]
    commits = REGISTRY.get_sample_value("ggk_sqlite_commit_operations_count") or 0.0
    outcomes = await asyncio.gather(*(broker.accept(stored_message(i)) for i in range(300)))
    assert {o.status for o in outcomes} == {"accepted"}
    assert sum(applied) == 300 and len(applied) < 30, applied
    # ggk_sqlite_commit_operations: one observation per group commit, of its size
    assert REGISTRY.get_sample_value("ggk_sqlite_commit_operations_count") == commits + len(applied)
    assert (await broker.counts()).to_dict() == {"pending": 300}
    await broker.close()


async def test_only_accepts_wait_for_the_disk(tmp_path: Path) -> None:
    """An accept's commit is on disk before its Bv03 (synchronous=FULL); a delivery's claim
    and outcome alone do not wait for the disk (NORMAL: lost only in a power failure, which
    means the delivery is made again); a group holding both waits."""
    broker = SqliteBroker(tmp_path / "b.sqlite", KEYS)
    await broker.start()
    commits: list[tuple[int, bool]] = []
    original = broker._apply

    def recording(ops: list, durable: bool = True) -> list:  # type: ignore[type-arg]
        commits.append((len(ops), durable))
        return original(ops, durable)

    broker._apply = recording  # type: ignore[method-assign]

    def setting(db: sqlite3.Connection) -> int:
        return int(db.execute("PRAGMA synchronous").fetchone()[0])

    assert (await broker.accept(stored_message(1))).status == "accepted"
    [job] = await broker.claim(10, 30.0)
    await broker.delivered(job)
    assert commits == [(1, True), (1, False), (1, False)]
    full, normal = 2, 1
    assert await broker.write(setting, durable=False) == normal
    assert await broker.write(setting) == full
    together = await asyncio.gather(broker.write(setting, durable=False), broker.write(setting))
    assert list(together) == [full, full]
    assert (await broker.counts()).to_dict() == {"delivered": 1}
    await broker.close()


async def test_the_wal_starts_over_under_steady_writes_and_reads(tmp_path: Path) -> None:
    """Commits one after another while reads go on: the checkpointer copies the WAL back,
    yet SQLite starts it over only at a write that finds every frame copied, a moment steady
    load never gives; the WAL grew without end (30 GB in 21 minutes at 100 msg/s). The
    writer now catches up itself when it is long, and the WAL starts over."""
    path = tmp_path / "b.sqlite"
    broker = SqliteBroker(path, KEYS)
    broker.checkpoint_interval = 0.02
    broker.wal_restart_frames = 100
    await broker.start()
    reading = True

    async def reads() -> None:
        while reading:
            await broker.counts()

    caught_up = REGISTRY.get_sample_value(WRITER_CHECKPOINTS, {"by": "writer"}) or 0.0
    reader = asyncio.create_task(reads())
    for n in range(400):
        await asyncio.gather(*(broker.accept(stored_message(n * 4 + i)) for i in range(4)))
    reading = False
    await reader
    assert (await broker.counts()).to_dict() == {"pending": 1600}
    wal = path.with_name(path.name + "-wal").stat().st_size  # its longest, at the end
    await broker.close()
    # 400 commits of ~30 pages each: ~50 MB if the WAL never started over
    assert wal < 8 * 1024 * 1024, wal
    # the writer's catch-ups are in ggk_sqlite_checkpoint_seconds{by="writer"}
    assert (REGISTRY.get_sample_value(WRITER_CHECKPOINTS, {"by": "writer"}) or 0.0) > caught_up


WRITER_CHECKPOINTS = "ggk_sqlite_checkpoint_seconds_count"


async def test_duplicate_conflict_and_tr056(tmp_path: Path) -> None:
    broker = SqliteBroker(tmp_path / "b.sqlite", KEYS)
    await broker.start()
    assert (await broker.accept(stored_message(1))).status == "accepted"
    again = await broker.accept(stored_message(1))
    assert (again.status, again.bv03_ref) == ("duplicate", "bv-1")
    assert (await broker.accept(stored_message(1, digest="other"))).status == "conflict"
    reused = dataclasses.replace(
        stored_message(2), identificatie="ID1"
    )  # new ref, same Identificatie
    assert (await broker.accept(reused)).status == "tr056"
    assert (await broker.counts()).to_dict() == {"pending": 1}  # nothing stored for either refusal
    await broker.close()


async def test_tr056_concerns_heenberichten_only(tmp_path: Path) -> None:
    """A retour (Du01) reusing an IdentificatieRetour is not refused: TR056 lists heen only."""
    broker = SqliteBroker(tmp_path / "b.sqlite", KEYS)
    await broker.start()

    def retour(n: int) -> NewMessage:
        return dataclasses.replace(
            stored_message(n),
            kind="Du01",
            functie="WMO302",
            message_code="WMO302",
            identificatie="R1",
        )

    assert (await broker.accept(retour(1))).status == "accepted"
    assert (await broker.accept(retour(2))).status == "accepted"
    await broker.close()


async def test_expired_lease_is_claimed_again_and_stale_worker_is_fenced(tmp_path: Path) -> None:
    now = [1000.0]
    broker = SqliteBroker(tmp_path / "b.sqlite", KEYS, clock=lambda: now[0])
    await broker.start()
    await broker.accept(stored_message(1))
    (job,) = await broker.claim(10, lease_seconds=30)
    assert await broker.claim(10, lease_seconds=30) == []  # leased
    now[0] += 31  # the worker died; its lease ran out
    (again,) = await broker.claim(10, lease_seconds=30)
    assert again.attempts == 2
    await broker.delivered(job)  # the stale worker reports late: ignored
    assert (await broker.counts()).to_dict() == {"inflight": 1}
    await broker.delivered(again)
    assert (await broker.counts()).to_dict() == {"delivered": 1}
    await broker.close()


async def test_survives_reopen_and_replays_dead_letters(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    broker = SqliteBroker(path, KEYS)
    await broker.start()
    await broker.accept(stored_message(1))
    (job,) = await broker.claim(1, 30)
    await broker.dead(job, "HTTP 400")
    await broker.close()
    broker = SqliteBroker(path, KEYS)
    await broker.start()
    assert [d.last_error for d in await broker.dead_letters(None, 10)] == ["HTTP 400"]
    assert await broker.replay(dead_only=True, actor="test") == 1
    (job,) = await broker.claim(1, 30)
    assert job.attempts == 1 and job.message_id == "m1"
    view = await broker.view("ref-1")
    assert view is not None and [e.event for e in view.events][-1] == "replayed"
    await broker.close()


async def test_a_replay_goes_in_chunks_and_skips_what_was_made_again_meanwhile(
    tmp_path: Path,
) -> None:
    """Five dead letters in chunks of two: three commits, every delivery replayed and audited
    once. A second replay, in which one delivery of the second chunk is claimed by a worker
    after the replay read the ids: that chunk leaves it alone, so it is not made due twice."""
    broker = SqliteBroker(tmp_path / "b.sqlite", KEYS)
    await broker.start()
    commits: list[int] = []
    write = broker.write

    async def counted(op: Callable[[sqlite3.Connection], Any], **kw: Any) -> Any:
        if len(commits) == 4:  # the second replay's second chunk: a worker was first
            await write(taken_meanwhile)
        result = await write(op, **kw)
        commits.append(result)
        return result

    def taken_meanwhile(db: sqlite3.Connection) -> None:
        third = db.execute("SELECT id FROM deliveries ORDER BY id LIMIT 1 OFFSET 2").fetchone()
        db.execute("UPDATE deliveries SET state = 'inflight' WHERE id = ?", (third[0],))

    try:
        for n in range(1, 6):
            await broker.accept(stored_message(n))
        for job in await broker.claim(5, 30):
            await broker.dead(job, "HTTP 400")
        broker.write = counted  # type: ignore[method-assign]
        assert await broker.replay(dead_only=True, actor="test", chunk=2) == 5
        assert commits == [2, 2, 1]
        assert (await broker.counts()).to_dict() == {"pending": 5}
        for n in range(1, 6):
            view = await broker.view(f"ref-{n}")
            assert view is not None
            assert [e.event for e in view.events].count("replayed") == 1
        broker.write = write  # type: ignore[method-assign]
        for job in await broker.claim(5, 30):
            await broker.dead(job, "HTTP 400")
        broker.write = counted  # type: ignore[method-assign]
        assert await broker.replay(dead_only=True, actor="test", chunk=2) == 4
        assert commits[3:] == [2, 1, 1]
        assert (await broker.counts()).to_dict() == {"pending": 4, "inflight": 1}
    finally:
        broker.write = write  # type: ignore[method-assign]
        await broker.close()


@pytest.mark.parametrize("apart", [1.0, 0.0], ids=["one-second-apart", "all-at-once"])
async def test_retention_purges_in_chunks_past_a_message_still_in_flight(
    tmp_path: Path, apart: float
) -> None:
    """Of seven messages, one is still being delivered; the other six are done. In chunks of
    two, all six are purged (each audited) and the one in flight keeps its payload, also
    when every message came in at the same moment (each chunk starts at the last one's
    time, so the ones at that time are read again and the purged ones left out)."""
    now = [1_000_000.0]
    broker = SqliteBroker(tmp_path / "b.sqlite", KEYS, clock=lambda: now[0])
    await broker.start()
    try:
        for n in range(0, 7):
            await broker.accept(stored_message(n))
            now[0] += apart
        jobs = sorted(await broker.claim(7, 3600), key=lambda job: job.message_id)
        for job in jobs[1:]:
            await broker.delivered(job)
        now[0] += 40 * 86400
        assert await broker.purge(now[0] - 30 * 86400, chunk=2) == 6
        assert await broker.purge(now[0] - 30 * 86400, chunk=2) == 0
        kept = await broker.read("SELECT id FROM messages WHERE purged_at IS NULL")
        assert [row["id"] for row in kept] == ["m0"]
        for n in range(1, 7):
            view = await broker.view(f"m{n}")
            assert view is not None and view.events[-1].event == "payload_purged"
        # the writer keeps its statement journals in memory (sqlite_core.py)
        assert await broker.write(lambda db: db.execute("PRAGMA temp_store").fetchone()[0]) == 2
    finally:
        await broker.close()


async def test_inbox_hold_and_ack(tmp_path: Path) -> None:
    broker = SqliteBroker(tmp_path / "b.sqlite", KEYS)
    await broker.start()
    await broker.accept(stored_message(1, held=True))
    assert await broker.claim(10, 30) == []  # held deliveries are never pushed
    assert [m.id for m in await broker.inbox("12345678", 10)] == ["m1"]
    assert await broker.inbox_envelope("0150", "m1") is None
    assert await broker.ack("0150", "m1") is False
    assert await broker.ack("12345678", "m1") is True
    assert await broker.inbox("12345678", 10) == []
    await broker.close()


def test_backoff_grows_exponentially_with_jitter_and_cap() -> None:
    assert backoff(1, 1.0, 300, rng=lambda: 1.0) == 1.0
    assert backoff(4, 1.0, 300, rng=lambda: 1.0) == 8.0
    assert backoff(4, 1.0, 300, rng=lambda: 0.0) == 4.0
    assert backoff(20, 1.0, 300, rng=lambda: 1.0) == 300.0
    waits = {backoff(3, 1.0, 300) for _ in range(50)}
    assert len(waits) > 1 and all(2.0 <= w <= 4.0 for w in waits)


def test_plain_http_only_on_loopback_and_sane_delivery_settings(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    with pytest.raises(ConfigError, match="loopback"):
        check_config(GatewayConfig(path=path, plain_http=True, host="0.0.0.0"))
    with pytest.raises(ConfigError, match="tls"):
        check_config(GatewayConfig(path=path, plain_http=False, tls=None))
    check_config(GatewayConfig(path=path, plain_http=True, host="127.0.0.1"))
    with pytest.raises(ConfigError, match="max_attempts"):
        check_config(
            GatewayConfig(path=path, plain_http=True, delivery=DeliveryConfig(max_attempts=0))
        )
    for wrong in (DeliveryConfig(per_receiver=0), DeliveryConfig(concurrency=8, per_receiver=9)):
        with pytest.raises(ConfigError, match="per_receiver"):
            check_config(GatewayConfig(path=path, plain_http=True, delivery=wrong))


def test_a_number_that_is_not_one_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    demo.init(tmp_path / "gw", port=free_port())
    config = tmp_path / "gw" / "gateway.toml"
    text = config.read_text()
    assert "min_cell = 5" in text
    for wrong, why in (
        ('"many"', "many"),
        ("0", "min_cell"),
        ("2", "min_cell"),
        ("1001", "min_cell"),
    ):
        config.write_text(text.replace("min_cell = 5", f"min_cell = {wrong}"))
        with pytest.raises(ConfigError, match=why):
            load_config(config)
    config.write_text(text.replace("port = ", 'port = "eighty" #', 1))
    with pytest.raises(ConfigError, match="eighty"):
        load_config(config)


async def test_one_process_per_database_and_leases_recovered_on_start(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    first = SqliteBroker(path, KEYS)
    await first.start()
    await first.accept(stored_message(1))
    await first.claim(1, lease_seconds=3600)  # then the process "dies" holding the lease
    second = SqliteBroker(path, KEYS)
    with pytest.raises(StorageError, match="another gateway process"):
        await second.start()
    await first.close()
    third = SqliteBroker(path, KEYS)
    await third.start()
    (job,) = await third.claim(1, 30)  # due at once, not after the hour-long lease
    assert job.attempts == 2
    view = await third.view("m1")
    assert view is not None and "lease_recovered" in [e.event for e in view.events]
    await third.close()


async def test_unreadable_payload_is_dead_lettered_alone(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    broker = SqliteBroker(path, KEYS)
    await broker.start()
    await broker.accept(stored_message(1))
    await broker.close()
    lost = Keyring.generate()  # the data key of m1's payload is gone (same chain key)
    lost.pseudonym_key = KEYS.pseudonym_key
    broker = SqliteBroker(path, lost)
    await broker.start()
    await broker.accept(stored_message(2))
    (job,) = await broker.claim(10, 30)
    assert job.message_id == "m2"
    (dead,) = await broker.dead_letters(None, 10)
    assert dead.id == "m1" and "not in the keyring" in (dead.last_error or "")
    await broker.close()


@pytest.mark.slow
async def test_with_every_slot_busy_the_delivery_loop_waits_instead_of_polling(
    tmp_path: Path,
) -> None:
    """A partner that holds our request (an ebMS partner before its Acknowledgment, a slow
    endpoint) occupies the only slot while the next delivery is due: the loop must wait for the
    slot, not read the schedule over and over (it did: 0.7 of a core while waiting)."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def holding(request: web.Request) -> web.Response:
        await request.read()
        arrived.set()
        await release.wait()
        return web.Response(status=204)

    runner, port = await start_sink(holding)
    partners_file = one_receiver(tmp_path, port)
    broker = SqliteBroker(tmp_path / "b.sqlite", KEYS)
    await broker.start()
    for n in (1, 2):
        await broker.accept(stored_message(n))
    reads = 0
    original = broker.next_due

    async def counting() -> float | None:
        nonlocal reads
        reads += 1
        return await original()

    broker.next_due = counting  # type: ignore[method-assign]
    service = DeliveryService(
        broker, PartnerRegistry.load(partners_file), DeliveryConfig(concurrency=1)
    )
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(arrived.wait(), 15)
        before = reads
        await asyncio.sleep(1.5)  # the poll interval is 1 s: one or two reads, not thousands
        assert reads - before <= 3, reads - before
        release.set()
        await _delivered(broker, 2)
        assert (await broker.counts()).to_dict() == {"delivered": 2}
    finally:
        release.set()
        await _stopped(service, task)
        await broker.close()
        await runner.cleanup()


def one_receiver(directory: Path, port: int) -> Path:
    """A partners.toml with one receiver, 12345678, delivered to over HTTP at ``port``."""
    partners_file = directory / "partners.toml"
    partners_file.write_text(
        '[[partner]]\nid = "12345678"\nname = "Zorg"\nkind = "aanbieder"\n'
        f'[partner.delivery]\nadapter = "http"\nurl = "http://127.0.0.1:{port}/http"\n'
    )
    return partners_file


async def _delivered(broker: SqliteBroker, count: int) -> None:
    """Until ``count`` deliveries are recorded (just after the partner's answer), at most 15 s."""
    for _ in range(300):
        if (await broker.counts()).delivered == count:
            return
        await asyncio.sleep(0.05)


async def _stopped(service: DeliveryService, task: asyncio.Task[None]) -> None:
    await service.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _to(n: int, destination: str) -> NewMessage:
    return dataclasses.replace(
        stored_message(n), deliveries=(PlannedDelivery(destination, "http", False, False),)
    )


async def test_claims_keep_at_most_the_cap_in_flight_per_receiver(tmp_path: Path) -> None:
    """A receiver with a backlog at the head of the queue gets its cap; the others behind it
    are claimed in the same call, and nothing more for it until one of its deliveries ends."""
    broker = SqliteBroker(tmp_path / "b.sqlite", KEYS)
    await broker.start()
    for n in range(30):  # the oldest 30 are all for X
        await broker.accept(_to(n, "X"))
    for n in range(30, 34):
        await broker.accept(_to(n, f"R{n}"))
    first = await broker.claim(10, 30, per_destination=3)
    assert sorted(j.destination for j in first) == ["R30", "R31", "R32", "R33", "X", "X", "X"]
    assert await broker.claim(10, 30, per_destination=3) == []  # X at its cap, the rest done
    await broker.delivered(next(j for j in first if j.destination == "X"))
    (again,) = await broker.claim(10, 30, per_destination=3)
    assert again.destination == "X" and again.message_id == "m3"  # the next oldest of X
    await broker.close()


async def test_a_receiver_that_hangs_holds_its_cap_and_the_others_are_delivered(
    tmp_path: Path,
) -> None:
    """12345678 accepts our requests and never answers; its backlog is older than 87654321's
    message. With four slots and two per receiver, 87654321 is still delivered at once."""
    arrived, end = asyncio.Event(), asyncio.Event()
    hanging = 0

    async def never(request: web.Request) -> web.Response:
        nonlocal hanging
        await request.read()
        hanging += 1
        await end.wait()  # the test's end; the adapter's timeout is a minute
        return web.Response(status=204)

    async def answers(request: web.Request) -> web.Response:
        await request.read()
        arrived.set()
        return web.Response(status=204)

    slow_runner, slow_port = await start_sink(never)
    fast_runner, fast_port = await start_sink(answers)
    partners_file = tmp_path / "partners.toml"
    partners_file.write_text(
        "".join(
            f'[[partner]]\nid = "{partner}"\nname = "Zorg"\nkind = "aanbieder"\n'
            f'[partner.delivery]\nadapter = "http"\nurl = "http://127.0.0.1:{port}/http"\n'
            for partner, port in (("12345678", slow_port), ("87654321", fast_port))
        )
    )
    broker = SqliteBroker(tmp_path / "b.sqlite", KEYS)
    await broker.start()
    for n in range(5):
        await broker.accept(_to(n, "12345678"))
    await broker.accept(_to(5, "87654321"))
    service = DeliveryService(
        broker,
        PartnerRegistry.load(partners_file),
        DeliveryConfig(concurrency=4, per_receiver=2, timeout=60),
    )
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(arrived.wait(), 15)
        await _delivered(broker, 1)
        assert (await broker.counts()).to_dict() == {"delivered": 1, "inflight": 2, "pending": 3}
        assert hanging == 2  # its cap, not every slot
    finally:
        end.set()
        await _stopped(service, task)
        await broker.close()
        await slow_runner.cleanup()
        await fast_runner.cleanup()


async def test_an_accept_hands_its_deliveries_to_free_workers_without_a_claim(
    tmp_path: Path,
) -> None:
    """With workers free and nothing older due, an accept stores its delivery in flight and
    a worker starts it at once: no claim finds it, nothing is decrypted for it. A receiver
    at its ``per_receiver`` gets the next one stored due instead, claimed when a slot frees."""
    received: list[bytes] = []
    release = asyncio.Event()

    async def answers(request: web.Request) -> web.Response:
        received.append(await request.read())
        if len(received) == 4:  # the fourth waits: its receiver is at its cap meanwhile
            await release.wait()
        return web.Response(status=204)

    runner, port = await start_sink(answers)
    partners_file = one_receiver(tmp_path, port)
    broker = SqliteBroker(tmp_path / "b.sqlite", KEYS)
    await broker.start()
    claims = 0
    original = broker.claim

    async def counting(
        limit: int, lease_seconds: float, per_destination: int | None = None
    ) -> list[Job]:
        nonlocal claims
        claims += 1
        return await original(limit, lease_seconds, per_destination)

    broker.claim = counting  # type: ignore[method-assign]
    # no poll in the test's time: a claim comes from a wake-up only
    config = DeliveryConfig(concurrency=4, per_receiver=1, poll_interval=60)
    partners = PartnerRegistry.load(partners_file)
    service = DeliveryService(broker, partners, config, wake=broker.wake)  # as wired
    broker.direct = service
    task = asyncio.create_task(service.run())
    try:
        while service.reserve([]) is None:  # until the workers looked: nothing is due
            await asyncio.sleep(0.01)
        looked = claims
        for n in range(1, 4):
            envelope = f"<e>{n}</e>".encode()
            await broker.accept(dataclasses.replace(stored_message(n), envelope=envelope))
            await _delivered(broker, n)
            assert received[-1] == envelope
        assert claims == looked, "handed over, not claimed"
        assert (await broker.counts()).to_dict() == {"delivered": 3}
        again = await broker.accept(stored_message(1))  # a duplicate: the workers given back
        assert again.status == "duplicate" and service._reserved == 0
        attempts = await broker.read("SELECT DISTINCT attempts, lease_until FROM deliveries")
        assert [tuple(row) for row in attempts] == [(1, None)]
        await broker.accept(stored_message(4))  # handed over; its receiver holds it
        while len(received) < 4:
            await asyncio.sleep(0.01)
        await broker.accept(stored_message(5))  # its receiver is at its cap: stored due
        assert (await broker.counts()).to_dict() == {"delivered": 3, "inflight": 1, "pending": 1}
        release.set()
        await _delivered(broker, 5)
        assert claims > looked and received[-1] == stored_message(5).envelope
    finally:
        release.set()
        await _stopped(service, task)
        await broker.close()
        await runner.cleanup()


async def test_a_backlog_drains_while_every_worker_is_busy(tmp_path: Path) -> None:
    """A replayed backlog fills every slot of workers that had found nothing due: each
    finished attempt must still wake the claim loop (it waited for the next poll, here a
    minute, when the hand-over stopped those wake-ups)."""

    async def answers(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(0.02)
        return web.Response(status=204)

    runner, port = await start_sink(answers)
    partners_file = one_receiver(tmp_path, port)
    broker = SqliteBroker(tmp_path / "b.sqlite", KEYS)
    await broker.start()
    for n in range(12):
        await broker.accept(stored_message(n))
    for job in await broker.claim(12, 30):
        await broker.dead(job, "for the test")
    config = DeliveryConfig(concurrency=2, per_receiver=2, poll_interval=60)
    partners = PartnerRegistry.load(partners_file)
    service = DeliveryService(broker, partners, config, wake=broker.wake)  # as wired
    broker.direct = service
    task = asyncio.create_task(service.run())
    try:
        while service.reserve([]) is None:  # the workers looked: nothing is due
            await asyncio.sleep(0.01)
        assert await broker.replay(dead_only=True) == 12
        await _delivered(broker, 12)
        assert (await broker.counts()).to_dict() == {"delivered": 12}
    finally:
        await _stopped(service, task)
        await broker.close()
        await runner.cleanup()


async def test_a_retry_sooner_than_the_poll_is_made_on_time(tmp_path: Path) -> None:
    """The workers found nothing due and take hand-overs; the one delivery fails once and is
    due again a fraction of a second later. Its attempt's end must wake the claim loop: it
    slept until the next poll (here a minute), and a CPA's RetryInterval slot was missed."""
    answered: list[int] = []

    async def answers(request: web.Request) -> web.Response:
        await request.read()
        answered.append(503 if not answered else 204)
        return web.Response(status=answered[-1])

    runner, port = await start_sink(answers)
    broker = SqliteBroker(tmp_path / "b.sqlite", KEYS)
    await broker.start()
    config = DeliveryConfig(concurrency=2, per_receiver=2, poll_interval=60, backoff_base=0.2)
    service = DeliveryService(
        broker, PartnerRegistry.load(one_receiver(tmp_path, port)), config, wake=broker.wake
    )
    broker.direct = service
    task = asyncio.create_task(service.run())
    try:
        while service.reserve([]) is None:  # the workers looked: nothing is due
            await asyncio.sleep(0.01)
        await broker.accept(stored_message(1))  # handed straight to a worker
        await _delivered(broker, 1)
        assert answered == [503, 204]
    finally:
        await _stopped(service, task)
        await broker.close()
        await runner.cleanup()


def _retour(n: int, heen: str) -> NewMessage:
    return dataclasses.replace(
        stored_message(n), kind="Du01", functie="WMO302", heen_id=heen, identificatie=None
    )


def _as_an_earlier_version_left_it(path: Path, counts_per_state: bool) -> None:
    """Undo what answered_at and the delivery counts added to the file; with
    ``counts_per_state``, leave counts per state only, as db59f4e kept them."""
    with sqlite3.connect(path) as db:
        for trigger in ("deliveries_counted", "deliveries_recounted", "deliveries_uncounted"):
            db.execute(f"DROP TRIGGER {trigger}")
        db.execute("DROP TABLE delivery_counts")
        if counts_per_state:
            db.executescript(
                "CREATE TABLE delivery_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL) "
                "WITHOUT ROWID; INSERT INTO delivery_counts (state, n) SELECT state, COUNT(*) "
                "FROM deliveries GROUP BY state; CREATE TRIGGER deliveries_counted AFTER INSERT "
                "ON deliveries BEGIN INSERT INTO delivery_counts (state, n) VALUES (NEW.state, 1) "
                "ON CONFLICT (state) DO UPDATE SET n = n + 1; END;"
            )
        else:
            db.execute("DROP INDEX messages_unanswered")
            db.execute("ALTER TABLE messages DROP COLUMN answered_at")


@pytest.mark.parametrize("counts_per_state", [False, True], ids=["no-counts", "per-state"])
async def test_a_file_from_before_is_upgraded_with_its_counts_and_answers(
    tmp_path: Path, counts_per_state: bool
) -> None:
    path = tmp_path / "b.sqlite"
    broker = SqliteBroker(path, KEYS)
    await broker.start()
    for n in (1, 2, 3):  # three heenberichten; 1 is answered, 2 is dead, 3 waits
        await broker.accept(stored_message(n))
    await broker.accept(_retour(4, heen="m1"))
    jobs = await broker.claim(10, 30, per_destination=10)
    for job in jobs:
        await (broker.dead(job, "gone") if job.message_id == "m2" else broker.delivered(job))
    before = await broker.counts()
    await broker.close()
    _as_an_earlier_version_left_it(path, counts_per_state)

    broker = SqliteBroker(path, KEYS)
    await broker.start()
    try:
        assert before.to_dict() == {"delivered": 3, "dead": 1}
        assert await broker.counts() == before
        assert [m.id for m in await broker.overdue(time.time() + 1, 10)] == ["m2", "m3"]
        await broker.accept(stored_message(5))  # the triggers count from here on
        assert (await broker.counts()).to_dict() == {"delivered": 3, "dead": 1, "pending": 1}
        assert await broker.replay(dead_only=True, actor="test") == 1
        assert (await broker.counts()).to_dict() == {"delivered": 3, "pending": 2}
        (queue,) = (await broker.ops_snapshot(0.0)).queues
        assert (queue.destination, queue.waiting, queue.dead) == ("12345678", 2, 0)
    finally:
        await broker.close()


async def test_the_ops_snapshot_counts_queues_and_dead_letters_per_receiver(
    tmp_path: Path,
) -> None:
    """What every scrape reads: waiting (pending, retried, in flight, in an inbox) and dead
    per receiver, and the oldest waiting message; delivered ones count nowhere."""
    now = [1000.0]
    broker = SqliteBroker(tmp_path / "b.sqlite", KEYS, clock=lambda: now[0])
    await broker.start()
    try:
        other = PlannedDelivery("87654321", "http", False, False)
        for n in range(1, 7):
            now[0] = 1000.0 + n
            message = stored_message(n, held=n == 6)
            if n in (4, 5):
                message = dataclasses.replace(message, ontvanger="87654321", deliveries=(other,))
            await broker.accept(message)
        jobs = {job.message_id: job for job in await broker.claim(10, 30, per_destination=10)}
        await broker.delivered(jobs["m1"])  # 12345678: m2 dead, m3 retried, m6 in its inbox
        await broker.dead(jobs["m2"], "gone")
        await broker.retry(jobs["m3"], "503", now[0] + 60)
        await broker.dead(jobs["m4"], "gone")  # 87654321: m4 dead, m5 in flight
        snapshot = await broker.ops_snapshot(0.0)
        assert [
            (q.destination, q.waiting, q.oldest_received_at, q.dead) for q in snapshot.queues
        ] == [
            ("12345678", 2, 1003.0, 1),
            ("87654321", 1, 1005.0, 1),
        ]
        assert (await broker.counts()).to_dict() == {
            "delivered": 1,
            "dead": 2,
            "retry": 1,
            "inflight": 1,
            "inbox": 1,
        }
    finally:
        await broker.close()


async def test_a_retour_applied_before_its_heenbericht_still_answers_it(tmp_path: Path) -> None:
    """A Kafka view can apply a retour before the heenbericht it answers (they are keyed to
    different partitions of ``events``): the heenbericht must not look overdue."""
    broker = SqliteBroker(tmp_path / "b.sqlite", KEYS)
    await broker.start()
    try:
        await broker.accept(_retour(2, heen="m1"))
        await broker.accept(stored_message(1))
        await broker.accept(stored_message(3))
        assert [m.id for m in await broker.overdue(time.time() + 1, 10)] == ["m3"]
    finally:
        await broker.close()


async def test_the_embedded_store_waits_for_the_disk_and_a_kafka_view_need_not(
    tmp_path: Path,
) -> None:
    """An accepted message on the embedded backend has been fsynced before its Bv03
    (``synchronous=FULL``); a Kafka view, rebuilt from the cluster, commits without waiting."""
    for durable, expected in ((True, 2), (False, 1)):  # FULL, NORMAL
        broker = SqliteBroker(tmp_path / f"{durable}.sqlite", KEYS, durable=durable)
        await broker.start()
        try:
            assert broker._write_db is not None
            assert broker._write_db.execute("PRAGMA synchronous").fetchone()[0] == expected
        finally:
            await broker.close()
    demo.init(tmp_path / "gw", port=free_port())
    embedded = build(load_config(tmp_path / "gw" / "gateway.toml"))
    assert isinstance(embedded.broker, SqliteBroker) and embedded.broker.durable
    toml = tmp_path / "gw" / "gateway.toml"
    toml.write_text(
        toml.read_text().replace('broker = "sqlite"', 'broker = "kafka"', 1)
        + '\n[kafka]\nbootstrap = "127.0.0.1:9"\n'
    )
    on_kafka = build(load_config(toml))
    assert isinstance(on_kafka.broker, KafkaBroker) and not on_kafka.broker.local.durable


def many_citizens() -> tuple[tuple[str, ...], NewMessage, NewMessage]:
    """A declaratie naming 300 clients with a fact each ("m1", 300 KB) and one naming two of
    them ("m2"), and the 300 BSNs."""
    bsns = tuple(f"{100_000_000 + 7 * i:09d}" for i in range(300))
    facts = tuple(
        Fact(FactKind.DECLARATIE, "wmo", "0150", "12345678", "02", "", f"c{i}", f"k{i}", 100 + i)
        for i in range(300)
    )
    few = dataclasses.replace(stored_message(2, bsns=bsns[:2]), facts=facts[:2])
    many = dataclasses.replace(
        stored_message(1, bsns=bsns, envelope=b"<e>" + b"x" * 300_000 + b"</e>"), facts=facts
    )
    return bsns, many, few


async def test_a_message_naming_many_citizens_is_found_by_each_and_counted_once_each(
    tmp_path: Path,
) -> None:
    """A declaratie of hundreds of clients: its sealed envelope, BSN pseudonyms and
    beleidsinformatie rows are made before the writer's transaction (in a thread); the
    audit record is found by every BSN, the chain and its BSN index verify, every fact is
    stored once with its month, and the envelope opens."""
    bsns, many, few = many_citizens()
    assert is_large(many) and not is_large(few)
    path = tmp_path / "b.sqlite"
    broker = SqliteBroker(path, KEYS)
    await broker.start()
    month = time.strftime("%Y-%m", time.gmtime(time.time()))
    for message in (many, few):
        assert (await broker.accept(message)).status == "accepted"
    for bsn in (bsns[0], bsns[1], bsns[150], bsns[-1]):
        found = await broker.audit_search(bsn=bsn)
        expected = {"m1", "m2"} if bsn in bsns[:2] else {"m1"}
        assert {r.object for r in found if r.action == "accepted"} == expected
    assert await broker.stored_envelope("m1") == many.envelope
    await broker.close()
    db = sqlite3.connect(path)
    verdict = sqlite_audit.verify(db, KEYS)
    stored = dict(db.execute("SELECT id, length(envelope) FROM messages").fetchall())
    counted = [
        tuple(row)
        for row in db.execute(
            "SELECT message_id, count(*), count(DISTINCT key), sum(amount), min(month), "
            "max(month) FROM facts GROUP BY message_id ORDER BY message_id"
        )
    ]
    db.close()
    assert verdict.ok
    # the 300 KB envelope packed before sealing (gateway/broker/packing.py), the small one not
    assert stored["m1"] < 10_000 and stored["m2"] == len(few.envelope) + 28  # nonce, tag
    if time.strftime("%Y-%m", time.gmtime(time.time())) != month:
        pytest.skip("a month began during the test: the facts' month is either")
    assert counted == [
        ("m1", 300, 300, 300 * 100 + 299 * 300 // 2, month, month),
        ("m2", 2, 2, 201, month, month),
    ]


def transactions(statements: list[str]) -> list[list[str]]:
    """The statements a connection ran (its trace), one list per transaction."""
    found: list[list[str]] = []
    for statement in statements:
        if statement.startswith("BEGIN"):
            found.append([])
        elif found:
            found[-1].append(statement)
    return found


async def test_a_large_messages_index_entries_and_facts_follow_its_commit(tmp_path: Path) -> None:
    """The commit that answers the sender of a message naming hundreds of clients holds
    markers, not its BSN index entries and facts: those are written by the commits after it,
    a chunk at a time (gateway/broker/sqlite_deferred.py), all of them, once."""
    bsns, many, _ = many_citizens()
    broker = SqliteBroker(tmp_path / "b.sqlite", KEYS)
    await broker.start()
    statements: list[str] = []
    assert broker._write_db is not None
    broker._write_db.set_trace_callback(statements.append)
    assert (await broker.accept(many)).status == "accepted"
    await eventually(lambda: broker.query(lambda db: not sqlite_deferred.backlog(db)))
    broker._write_db.set_trace_callback(None)
    done = transactions(statements)
    (accepting,) = [t for t in done if any(s.startswith("INSERT INTO messages") for s in t)]
    assert any("INSERT INTO audit_bsn_deferred" in s for s in accepting)
    assert any("INSERT INTO facts_deferred" in s for s in accepting)
    assert not any(
        s.startswith(("INSERT INTO audit_bsn (", "INSERT INTO facts (")) for s in accepting
    )
    index_rows = [sum(s.startswith("INSERT INTO audit_bsn (") for s in t) for t in done]
    fact_rows = [sum(s.startswith("INSERT INTO facts (") for s in t) for t in done]
    assert sum(index_rows) == 300 and max(index_rows) <= sqlite_deferred.CHUNK
    assert sum(fact_rows) == 300 and max(fact_rows) <= sqlite_deferred.CHUNK
    found = await broker.audit_search(bsn=bsns[200])
    assert {r.object for r in found if r.action == "accepted"} == {"m1"}
    await broker.close()


async def test_rows_a_crash_left_behind_are_found_and_written_after_the_restart(
    tmp_path: Path,
) -> None:
    """What a crash right after a large message's commit leaves: its markers, 100 of its 300
    index entries written, none of its facts. Searched and verified offline as it is, it
    answers as if complete; the next start writes the rest, once."""
    bsns, many, few = many_citizens()
    path = tmp_path / "b.sqlite"
    broker = SqliteBroker(path, KEYS)
    await broker.start()
    for message in (many, few):
        assert (await broker.accept(message)).status == "accepted"
    complete = await broker.figures(Scope())
    await broker.close()
    db = sqlite3.connect(path, isolation_level=None)
    (seq, listed), *_ = db.execute(
        "SELECT seq, bsn_pseudonyms FROM audit WHERE object = 'm1' AND action = 'accepted'"
    )
    at, *_ = db.execute("SELECT at FROM facts WHERE message_id = 'm1'").fetchone()
    rows = tuple(
        tuple(r)
        for r in db.execute(
            "SELECT kind, standard, gemeente, aanbieder, categorie, month, client, key, amount, "
            "link, follows FROM facts WHERE message_id = 'm1' ORDER BY rowid"
        )
    )
    db.execute("BEGIN")
    db.executemany(
        "DELETE FROM audit_bsn WHERE seq = ? AND pseudonym = ?",
        [(seq, p) for p in listed.split(",")[100:]],
    )
    db.execute("INSERT INTO audit_bsn_deferred (seq, indexed) VALUES (?, 100)", (seq,))
    db.execute("DELETE FROM facts WHERE message_id = 'm1'")
    sqlite_deferred.defer_facts(db, "m1", at, sqlite_deferred.chunks(rows))
    db.execute("COMMIT")
    assert sqlite_audit.verify(db, KEYS).ok
    for bsn in (bsns[0], bsns[150], bsns[-1]):
        found = sqlite_audit.search(db, KEYS, bsn=bsn)
        assert "m1" in {r["object"] for r in found if r["action"] == "accepted"}
    db.close()
    broker = SqliteBroker(path, KEYS)
    await broker.start()
    assert broker._deferred  # found at start, for the writer to work off
    broker._deferred = False  # as if it had not come round to them yet: the figures wait
    assert await broker.figures(Scope()) == complete
    assert not await broker.query(sqlite_deferred.backlog)
    await broker.close()
    db = sqlite3.connect(path)
    indexed = db.execute(
        "SELECT count(*), count(DISTINCT pseudonym) FROM audit_bsn WHERE seq = ?", (seq,)
    ).fetchone()
    stored = db.execute("SELECT count(*) FROM facts WHERE message_id = 'm1'").fetchone()[0]
    assert indexed == (300, 300) and stored == 300
    assert sqlite_audit.verify(db, KEYS).ok
    db.close()


async def test_a_damaged_deferred_chunk_is_dropped_and_holds_up_nothing(tmp_path: Path) -> None:
    """A kept facts chunk that cannot be read (here: not JSON) is logged by its message id
    and dropped; the large message after it gets all its index entries and facts, and
    the figures are counted."""
    _, many, _ = many_citizens()
    broker = SqliteBroker(tmp_path / "b.sqlite", KEYS)
    await broker.start()
    with capture_logs() as logs:
        await broker.write(
            lambda db: db.execute(
                "INSERT INTO facts_deferred (message_id, at, rows) VALUES ('mx', 0, 'not json')"
            )
        )
        assert (await broker.accept(many)).status == "accepted"
        await eventually(lambda: broker.query(lambda db: not sqlite_deferred.backlog(db)))
    unreadable = [e for e in logs if e["event"] == "figures.deferred_facts_unreadable"]
    assert [e["message_id"] for e in unreadable] == ["mx"]
    stored = await broker.query(
        lambda db: db.execute(
            "SELECT (SELECT count(*) FROM facts WHERE message_id = 'm1'), "
            "(SELECT count(*) FROM audit_bsn)"
        ).fetchone()
    )
    assert tuple(stored) == (300, 300)
    assert sum(c.counts["clienten"] for c in (await broker.figures(Scope())).cells) == 300
    await broker.close()


async def test_a_large_message_writes_its_rows_with_it_when_the_writer_is_far_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With BACKLOG_LIMIT markers waiting (the writer held back from them here), a large
    message's index entries and facts are in its own commit: the backlog stays bounded."""
    _, many, _ = many_citizens()
    broker = SqliteBroker(tmp_path / "b.sqlite", KEYS)
    await broker.start()
    monkeypatch.setattr(sqlite_deferred, "drain_index", lambda db: None)
    monkeypatch.setattr(sqlite_deferred, "drain_facts", lambda db: None)
    empty = sqlite_deferred.chunks(((None,) * len(sqlite_deferred.FACT_COLUMNS),))

    def fill(db: sqlite3.Connection) -> None:
        for i in range(sqlite_deferred.BACKLOG_LIMIT):
            sqlite_deferred.defer_facts(db, f"x{i}", 0.0, empty)

    await broker.write(fill)
    assert (await broker.accept(many)).status == "accepted"
    stored = await broker.query(
        lambda db: db.execute(
            "SELECT (SELECT count(*) FROM facts WHERE message_id = 'm1'), "
            "(SELECT count(*) FROM audit_bsn), (SELECT count(*) FROM audit_bsn_deferred)"
        ).fetchone()
    )
    assert tuple(stored) == (300, 300, 0)
    monkeypatch.undo()
    await broker.write(lambda db: db.execute("DELETE FROM facts_deferred"))
    await broker.close()


async def test_a_replays_pending_after_its_rounds_outcome_only_adds_history(
    tmp_path: Path,
) -> None:
    """A Kafka view (gateway/broker/sqlite_view.py) applying a replay's records in the order
    another process may produce them: a replay sends its ``deliver`` record before its
    ``pending`` state, so a state of that round (its outcome, a retry) can come first. That
    state stands, the ``pending`` is history only, and the next replay starts a newer round,
    also when a round's ``pending`` never came at all."""
    local = SqliteBroker(tmp_path / "view.sqlite", KEYS, durable=False)
    await local.start()
    view = LocalView(local)
    await view.create()
    message = stored_message(1)
    to = message.deliveries[0].destination

    def state(name: str, round_: int, event: str) -> dict[str, object]:
        return {
            "message_id": message.id,
            "destination": to,
            "state": name,
            "attempts": 0 if name == "pending" else 1,
            "round": round_,
            "at": 1000.0 + round_,
            "event": event,
            "detail": to,
        }

    async def apply(*metas: dict[str, object]) -> None:
        await view.apply(list(metas), ViewWrite.delivery, [], (), lambda _r, _e: None)

    async def next_round() -> int:
        ids = await view.replay_ids(message.id, False, None, None)
        [row] = await view.replay_rows(message.id, False, None, None, ids)
        return int(row["round"])

    try:
        await view.apply(
            [message], lambda w, m: w.message(m, 1000.0, KEYS.active, 0, 0), [], (), print
        )
        await apply(state("dead", 0, "dead_lettered"))
        assert await next_round() == 1
        await apply(state("delivered", 1, "delivered"), state("pending", 1, "replayed"))
        assert (await local.counts()).to_dict() == {"delivered": 1}
        assert await view.finished_rounds([(message.id, to)]) == {(message.id, to): 1}
        seen = await local.view(message.id)
        assert seen is not None
        assert [e.event for e in seen.events][-2:] == ["delivered", "replayed"]
        assert await next_round() == 2
        await apply(state("dead", 2, "dead_lettered"))  # round 2's 'pending' never came
        assert (await local.counts()).to_dict() == {"dead": 1}
        assert await next_round() == 3
        await apply(state("retry", 3, "retry_scheduled"), state("pending", 3, "replayed"))
        assert (await local.counts()).to_dict() == {"retry": 1}
        assert await next_round() == 4
        await apply(state("pending", 4, "replayed"))  # in its order: the new round starts
        assert (await local.counts()).to_dict() == {"pending": 1}
    finally:
        await local.close()
