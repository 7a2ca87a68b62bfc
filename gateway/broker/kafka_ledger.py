"""The cluster's tamper-evident audit trail: Kafka's own records, chained per partition.

On the Kafka backend the audit facts are the records themselves: ``events`` holds every
message and every change of its deliveries (actor, origin, outcome, time in the clear; BSNs and
the payload digest sealed), ``audit`` every act that belongs to no message. Chaining them again
in each process (as the embedded backend chains its SQLite rows) would make every process do
the work of the whole cluster. Instead each partition of those topics is one hash chain,

    h(0) = GENESIS,  h(n) = HMAC-SHA256(chain key, h(n-1) | offset | key | value)

over its committed records in offset order, and exactly one process at a time keeps it: the
owner of that partition in the consumer group ``<prefix>.ledger``. The owner signs the head of
its chains (Ed25519, the keyring's audit signing key) at the gateway's checkpoint moments and
publishes the checkpoints to ``<prefix>.ledger`` (one partition, compacted, keyed by source
partition). The chain's tail lives in Kafka, not in a process: a new owner continues from the
last published checkpoint, re-reading only the records after it, so ownership can move at any
time (a kill included) without a gap or a fork — the chain is a function of the log, and two
owners for a moment compute the same checkpoint.

:func:`verify_cluster` (``ggk audit verify`` on a Kafka configuration) reads every partition
from its start, recomputes the chains and checks them against every signed checkpoint: an
altered, inserted, removed or reordered record breaks the chain before a checkpoint; records
after the last checkpoint are reported as the unsigned tail, as on the embedded backend.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.broker import kafka_topics
from gateway.broker.kafka_consumer import new_consumer
from gateway.keyring import Keyring

log = structlog.get_logger("ggk.kafka.ledger")

GENESIS = "0" * 64
LEDGER_KEY_SEPARATOR = ":"

Send = Callable[[str, bytes, str], Awaitable[Any]]
"""Produce one record (topic, value, key) and wait for the cluster's acknowledgement."""


class LedgerError(ValueError):
    """A ledger record that is not a checkpoint this version can read."""


def chain_step(key: bytes, prev: str, offset: int, record_key: bytes | None, value: bytes) -> str:
    """The chain's next head: binds the previous head, the record's offset, key and value."""
    mac = hmac.new(key, prev.encode(), hashlib.sha256)
    mac.update(offset.to_bytes(8, "big"))
    mac.update(len(record_key or b"").to_bytes(4, "big"))
    mac.update(record_key or b"")
    mac.update(value)
    return mac.hexdigest()


@dataclass(slots=True)
class Chain:
    """The head of one partition's chain: after ``records`` records, up to ``offset``
    (the next offset to read)."""

    hash: str = GENESIS
    records: int = 0
    offset: int = 0

    def add(self, key: bytes, record: ConsumerRecord[bytes, bytes]) -> None:
        self.hash = chain_step(key, self.hash, record.offset, record.key, record.value or b"")
        self.records += 1
        self.offset = record.offset + 1


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed head of one partition's chain, as published on ``<prefix>.ledger``."""

    topic: str
    partition: int
    offset: int
    records: int
    hash: str
    at: float
    node: str
    signature: str = ""

    @property
    def source(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def signed_text(self) -> bytes:
        return (
            f"ggk-ledger:{self.topic}:{self.partition}:{self.offset}:{self.records}:{self.hash}"
        ).encode()

    @classmethod
    def sign(cls, keyring: Keyring, tp: TopicPartition, chain: Chain, node: str) -> Checkpoint:
        unsigned = cls(
            tp.topic, tp.partition, chain.offset, chain.records, chain.hash, time.time(), node
        )
        signature = base64.b64encode(keyring.sign(unsigned.signed_text())).decode()
        return cls(**{**asdict(unsigned), "signature": signature})

    def valid(self, verify_key: Ed25519PublicKey) -> bool:
        try:
            verify_key.verify(base64.b64decode(self.signature), self.signed_text())
        except (InvalidSignature, ValueError):
            return False
        return True

    def to_record(self) -> tuple[bytes, str]:
        """The record's value and key (the source partition: compaction keeps the newest)."""
        value = json.dumps({"t": "checkpoint", **asdict(self)}, separators=(",", ":"))
        return value.encode(), f"{self.topic}{LEDGER_KEY_SEPARATOR}{self.partition}"

    @classmethod
    def from_record(cls, value: bytes | None) -> Checkpoint:
        try:
            data = json.loads(value or b"")
        except ValueError as exc:
            raise LedgerError(f"unreadable checkpoint: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> Checkpoint:
        """A checkpoint from its JSON form (a ledger record, a line of an exported file)."""
        try:
            if not isinstance(data, dict) or data.get("t") != "checkpoint":
                raise LedgerError("not a checkpoint record")
            checkpoint = cls(
                topic=str(data["topic"]),
                partition=int(data["partition"]),
                offset=int(data["offset"]),
                records=int(data["records"]),
                hash=str(data["hash"]),
                at=float(data["at"]),
                node=str(data["node"]),
                signature=str(data["signature"]),
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise LedgerError(f"unreadable checkpoint: {exc}") from None
        return checkpoint


class LedgerKeeper:
    """Keeps the chains of the partitions this process owns in ``<prefix>.ledger`` (the
    group) and publishes their signed heads (see the module docstring)."""

    def __init__(
        self,
        settings: dict[str, Any],
        prefix: str,
        sources: list[str],
        keyring: Keyring,
        node: str,
        send: Send,
    ) -> None:
        self.settings = settings
        self.group = f"{prefix}.ledger"
        self.topic = f"{prefix}.ledger"
        self.sources = sources
        self.keyring = keyring
        self.node = node
        self.send = send
        self.chains: dict[TopicPartition, Chain] = {}
        self.published: dict[TopicPartition, Checkpoint] = {}
        """The newest checkpoint of every source partition that is on the ledger."""
        self._reader: AIOKafkaConsumer | None = None
        self._owner: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._reads = 0
        """Reads of the ledger under way: the reader rests (paused) when none is."""

    async def start(self) -> None:
        self._reader = new_consumer(self.settings, enable_auto_commit=False)
        await self._reader.start()
        if not await kafka_topics.partitions(self._reader, self.topic):
            raise LedgerError(f"topic {self.topic} does not exist: run `ggk kafka init` first")
        ledger = TopicPartition(self.topic, 0)
        self._reader.assign([ledger])
        await self._reader.seek_to_beginning(ledger)
        await self._read_ledger()
        self._owner = new_consumer(
            self.settings,
            group_id=self.group,
            group_instance_id=self.node,  # as the router and delivery groups (kafka.py)
            enable_auto_commit=False,
            # never "latest": a partition the listener could not position must not start
            # past records it never chained (the loop positions it again)
            auto_offset_reset="none",
            isolation_level="read_committed",
            max_partition_fetch_bytes=32 * 1024 * 1024,
            # nobody waits for the chains: read in large, infrequent fetches
            fetch_min_bytes=1024 * 1024,
            fetch_max_wait_ms=1000,
        )
        self._owner.subscribe(self.sources, listener=_OwnerListener(self))
        await self._owner.start()
        self._task = asyncio.create_task(self._chain_loop(), name="kafka-ledger")

    async def close(self) -> None:
        """Chain what is committed now (briefly), publish the heads, leave the group."""
        with contextlib.suppress(KafkaError, asyncio.TimeoutError):
            await asyncio.wait_for(self._read_to_end(), timeout=5)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(KafkaError):
            await self.checkpoint()
        for client in (self._owner, self._reader):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()
        self._owner = self._reader = None

    async def _read_to_end(self) -> None:
        """Wait until the chain loop has read every owned partition to its current end."""
        owner = self._owner
        if owner is None or self._task is None or self._task.done():
            return
        owned = [tp for tp in self.chains if tp in owner.assignment()]
        ends = await owner.end_offsets(owned)
        for tp in owned:
            while tp in self.chains and await owner.position(tp) < ends[tp]:
                await asyncio.sleep(0.05)

    async def _read_ledger(self) -> None:
        """Read ``<prefix>.ledger`` to its end: the newest checkpoint per source partition.

        The reader is paused between reads (at start and at each assignment): a consumer
        fetches every assigned partition that is not paused, twice a second when there is
        nothing new, and nobody would look at what it fetched. Paused only when the last of
        any overlapping reads ends: a paused partition returns nothing, so a read it was
        paused under would never reach the end."""
        reader = self._reader
        assert reader is not None
        ledger = TopicPartition(self.topic, 0)
        self._reads += 1
        reader.resume(ledger)
        try:
            end = (await reader.end_offsets([ledger]))[ledger]
            while await reader.position(ledger) < end:
                batch = await reader.getmany(ledger, timeout_ms=500)
                for record in batch.get(ledger, []):
                    self._take(record)
        finally:
            self._reads -= 1
            if not self._reads:
                reader.pause(ledger)

    def _take(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """A ledger record's checkpoint, when it is signed and newer than the one known."""
        checkpoint, problem = signed_checkpoint(record, self.keyring)
        if checkpoint is None:
            log.error("kafka.ledger_record_refused", offset=record.offset, error=problem)
            return
        known = self.published.get(checkpoint.source)
        if known is None or checkpoint.offset >= known.offset:
            self.published[checkpoint.source] = checkpoint

    async def _assigned(self, assigned: Iterable[TopicPartition]) -> None:
        """Continue each chain from its newest published checkpoint (or its start)."""
        owner = self._owner
        assert owner is not None
        async with self._lock:
            await self._read_ledger()
            for tp in assigned:
                checkpoint = self.published.get(tp)
                if checkpoint is None:
                    self.chains[tp] = Chain()
                    await owner.seek_to_beginning(tp)
                else:
                    self.chains[tp] = Chain(checkpoint.hash, checkpoint.records, checkpoint.offset)
                    owner.seek(tp, checkpoint.offset)

    async def _revoked(self, revoked: Iterable[TopicPartition]) -> None:
        """Publish the heads of the chains that move on, so the next owner re-reads little."""
        gone = set(revoked)
        with contextlib.suppress(KafkaError):
            await self.checkpoint(gone)
        for tp in gone:
            self.chains.pop(tp, None)

    async def _chain_loop(self) -> None:
        owner = self._owner
        assert owner is not None
        key = self.keyring.chain_key
        while True:
            try:
                unplaced = owner.assignment() - set(self.chains)
                if unplaced:  # the listener failed for these (Kafka unreachable)
                    await self._assigned(unplaced)
                batch = await owner.getmany(timeout_ms=500, max_records=2000)
            except KafkaError as exc:
                log.warning("kafka.fetch_failed", loop="ledger", error=str(exc))
                await asyncio.sleep(1)
                continue
            async with self._lock:
                for tp, records in batch.items():
                    chain = self.chains.get(tp)
                    if chain is None:  # revoked while the fetch was under way
                        continue
                    for record in records:
                        if record.offset >= chain.offset:
                            chain.add(key, record)

    def last_checkpoint_at(self) -> float | None:
        """When the newest checkpoint of a chain this process keeps was signed."""
        times = [self.published[tp].at for tp in self.chains if tp in self.published]
        return max(times, default=None)

    async def checkpoint(self, only: set[TopicPartition] | None = None) -> list[Checkpoint]:
        """Sign and publish the head of every owned chain that moved since its last
        checkpoint; returns what was published."""
        async with self._lock:
            heads = [
                (tp, Chain(c.hash, c.records, c.offset))
                for tp, c in self.chains.items()
                if (only is None or tp in only)
                and c.records
                and (tp not in self.published or c.offset > self.published[tp].offset)
            ]
        made = []
        for tp, chain in heads:
            checkpoint = Checkpoint.sign(self.keyring, tp, chain, self.node)
            value, key = checkpoint.to_record()
            await self.send(self.topic, value, key)
            self.published[tp] = checkpoint
            made.append(checkpoint)
        return made


class _OwnerListener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, keeper: LedgerKeeper) -> None:
        self.keeper = keeper

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.keeper._revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.keeper._assigned(assigned)


# --- verifying the whole cluster ------------------------------------------------------------


@dataclass(slots=True)
class PartitionVerdict:
    """One source partition: its records, how far signed checkpoints cover it, what broke."""

    topic: str
    partition: int
    records: int = 0
    signed: int = 0
    """Records covered by the newest matching checkpoint."""
    checkpoints: int = 0
    problem: str = ""
    bad_offset: int | None = None


@dataclass(slots=True)
class ClusterVerdict:
    partitions: list[PartitionVerdict] = field(default_factory=list)
    ledger_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.ledger_problems and not any(p.problem for p in self.partitions)

    @property
    def records(self) -> int:
        return sum(p.records for p in self.partitions)

    @property
    def checkpoints(self) -> int:
        return sum(p.checkpoints for p in self.partitions)

    @property
    def unsigned_tail(self) -> int:
        return sum(p.records - p.signed for p in self.partitions)

    def first_problem(self) -> str:
        if self.ledger_problems:
            return self.ledger_problems[0]
        for p in self.partitions:
            if p.problem:
                at = f" at offset {p.bad_offset}" if p.bad_offset is not None else ""
                return f"{p.topic} partition {p.partition}{at}: {p.problem}"
        return ""


async def verify_cluster(
    settings: dict[str, Any],
    prefix: str,
    keyring: Keyring,
    progress: Callable[[int], None] | None = None,
    external: list[Checkpoint] | None = None,
) -> ClusterVerdict:
    """Recompute every partition's chain from Kafka and check it against every published
    checkpoint and every ``external`` one (exported earlier: they catch a ledger that was
    removed along with the records it signed). ``progress`` is told every 10,000 records
    how many were read."""
    verdict = ClusterVerdict()
    consumer = trail_reader(settings)
    await consumer.start()
    try:
        sources = await source_partitions(consumer, prefix)
        checkpoints = await _all_checkpoints(consumer, f"{prefix}.ledger", keyring, verdict)
        for checkpoint in external or []:
            if checkpoint.valid(keyring.verify_key):
                checkpoints.setdefault(checkpoint.source, []).append(checkpoint)
            else:
                verdict.ledger_problems.append(
                    f"an exported checkpoint ({checkpoint.topic} partition "
                    f"{checkpoint.partition}) has an invalid signature"
                )
        for items in checkpoints.values():
            items.sort(key=lambda c: c.offset)
        done = 0
        for tp in sources:
            found = await _verify_partition(
                consumer, tp, keyring.chain_key, checkpoints.get(tp, []), done, progress
            )
            done += found.records
            verdict.partitions.append(found)
        if not sources:
            verdict.ledger_problems.append(f"no topics {prefix}.events / {prefix}.audit")
    finally:
        await consumer.stop()
    return verdict


async def _all_checkpoints(
    consumer: AIOKafkaConsumer, topic: str, keyring: Keyring, verdict: ClusterVerdict
) -> dict[TopicPartition, list[Checkpoint]]:
    ledger = TopicPartition(topic, 0)
    out: dict[TopicPartition, list[Checkpoint]] = {}
    if not await kafka_topics.partitions(consumer, topic):
        verdict.ledger_problems.append(f"no topic {topic}: run `ggk kafka init`")
        return out
    async for record in read_partition(consumer, ledger):
        checkpoint, problem = signed_checkpoint(record, keyring)
        if checkpoint is None:
            verdict.ledger_problems.append(f"ledger record {record.offset}: {problem}")
            continue
        out.setdefault(checkpoint.source, []).append(checkpoint)
    return out


def signed_checkpoint(
    record: ConsumerRecord[bytes, bytes], keyring: Keyring
) -> tuple[Checkpoint | None, str]:
    """A ledger record as a checkpoint this keyring signed, or None and why not."""
    try:
        checkpoint = Checkpoint.from_record(record.value)
    except LedgerError as exc:
        return None, str(exc)
    if not checkpoint.valid(keyring.verify_key):
        return None, (
            f"{checkpoint.topic} partition {checkpoint.partition}: invalid signature "
            "(forged, or another keyring)"
        )
    return checkpoint, ""


async def newest_checkpoints(
    settings: dict[str, Any], prefix: str, keyring: Keyring
) -> list[Checkpoint]:
    """The newest correctly signed checkpoint of every chain on the ledger (to export)."""
    consumer = new_consumer(settings, enable_auto_commit=False)
    await consumer.start()
    try:
        found = await _all_checkpoints(consumer, f"{prefix}.ledger", keyring, ClusterVerdict())
    finally:
        await consumer.stop()
    return [max(items, key=lambda c: c.offset) for _, items in sorted(found.items())]


async def read_partition(
    consumer: AIOKafkaConsumer, tp: TopicPartition
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every record of ``tp`` from its start to its end as of now (committed ones only,
    with a ``read_committed`` consumer); leaves the consumer assigned to ``tp`` alone."""
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    end = (await consumer.end_offsets([tp]))[tp]
    while await consumer.position(tp) < end:
        batch = await consumer.getmany(tp, timeout_ms=1000)
        for record in batch.get(tp, []):
            yield record


def trail_reader(settings: dict[str, Any]) -> AIOKafkaConsumer:
    """A consumer for reading the trail from its start: no group, committed records only."""
    return new_consumer(
        settings,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=32 * 1024 * 1024,
    )


async def source_partitions(consumer: AIOKafkaConsumer, prefix: str) -> list[TopicPartition]:
    """Every partition of ``events`` and ``audit``: the cluster's audit trail. Asked before
    anything is assigned (an assigned consumer's metadata narrows to the assigned topics)."""
    return [
        TopicPartition(topic, partition)
        for topic in (f"{prefix}.events", f"{prefix}.audit")
        for partition in sorted(await kafka_topics.partitions(consumer, topic))
    ]


async def _verify_partition(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    key: bytes,
    checkpoints: list[Checkpoint],
    done_before: int,
    progress: Callable[[int], None] | None,
) -> PartitionVerdict:
    found = PartitionVerdict(tp.topic, tp.partition, checkpoints=len(checkpoints))
    chain = Chain()
    pending = list(checkpoints)

    def settle(upto: int) -> bool:
        """Compare the checkpoints that end at or before ``upto``; False on a mismatch."""
        while pending and pending[0].offset <= upto:
            checkpoint = pending.pop(0)
            if checkpoint.records != chain.records or checkpoint.hash != chain.hash:
                found.problem = (
                    f"the records before offset {checkpoint.offset} differ from the checkpoint "
                    f"{checkpoint.node} signed ({checkpoint.records} records then, "
                    f"{chain.records} now): records were altered, removed or inserted"
                )
                found.bad_offset = checkpoint.offset
                return False
            found.signed = checkpoint.records
        return True

    async for record in read_partition(consumer, tp):
        if not settle(record.offset):
            return found
        chain.add(key, record)
        found.records = chain.records
        if progress is not None and (done_before + chain.records) % 10_000 == 0:
            progress(done_before + chain.records)
    end = await consumer.position(tp)
    if not settle(end):
        return found
    if pending:
        found.problem = (
            f"a checkpoint covers up to offset {pending[0].offset} but the partition ends at "
            f"{end}: the log was truncated"
        )
        found.bad_offset = end
    return found
