"""The partner file on Kafka: one change, taken up by every gateway process.

Each process serves from its own partners.toml (gateway/web/reload.py watches it). A change
made through ``ggk partners`` or the operator portal is also published, whole, on the
compacted topic ``<prefix>.partners`` (one partition, one key: only the newest version is
kept), signed with the keyring's Ed25519 key that every process of the deployment holds, together
with a generation (nanoseconds, never lower than the last one taken up) so that an old signed
record copied back onto the topic cannot roll a revocation back: each process keeps the
generation of the file it took up (``<partners file>.generation``) and refuses anything not
newer. Every process follows that topic from its start: the newest version is checked
(signature, generation, size, the gateway's own loader) and written over its local file
(gateway/partnerfile.py: lock, fsync, ``.bak``, atomic rename), which its watcher then takes
up. A record that is not signed by the deployment's key, is not newer, or does not load, is
refused and logged without content.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from pathlib import Path

import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from cryptography.exceptions import InvalidSignature

from gateway import partnerfile
from gateway.broker.base import StorageError
from gateway.broker.kafka_consumer import new_consumer
from gateway.broker.kafka_core import client_settings
from gateway.broker.kafka_topics import partitions
from gateway.config import GatewayConfig
from gateway.keyring import Keyring

log = structlog.get_logger("ggk.server")

MAX_FILE = 1024 * 1024
"""A partner file of a thousand partners is some 500 KiB."""

KEY = b"partners"
LABEL = b"ggk-partners-v2\x00"
"""v2: the generation is signed with the content (v1 records, signed without one, are refused)."""
SIGNATURE = "ggk-signature"
GENERATION = "ggk-generation"


def generation_file(partners: Path) -> Path:
    """Where a process keeps the generation of the partner file it took up from the topic."""
    return partners.with_name(partners.name + ".generation")


def recorded_generation(partners: Path) -> int:
    """The generation of the partner file taken up last; 0 when none was (or it is unreadable)."""
    try:
        return int(generation_file(partners).read_text().strip())
    except (OSError, ValueError):
        return 0


def _record_generation(partners: Path, generation: int) -> None:
    target = generation_file(partners)
    temp = target.with_name(target.name + ".tmp")
    temp.write_text(f"{generation}\n")
    os.replace(temp, target)


def _signed_bytes(generation: int, content: bytes) -> bytes:
    return LABEL + generation.to_bytes(8, "big") + content


def topic_of(config: GatewayConfig) -> str:
    assert config.kafka is not None
    return f"{config.kafka.prefix}.partners"


async def publish(config: GatewayConfig, keyring: Keyring, content: bytes) -> None:
    """Put ``content`` (a partner file the loader accepted) on the topic, signed."""
    if len(content) > MAX_FILE:
        raise StorageError(f"the partner file is over {MAX_FILE // 1024} KiB: not published")
    assert config.kafka is not None
    # newer than anything taken up here, even when this host's clock is behind another's
    generation = max(time.time_ns(), recorded_generation(config.partners_file) + 1)
    producer = AIOKafkaProducer(**client_settings(config.kafka), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topic_of(config),
            content,
            key=KEY,
            headers=[
                (GENERATION, str(generation).encode("ascii")),
                (SIGNATURE, keyring.sign(_signed_bytes(generation, content))),
            ],
        )
    except KafkaError as exc:
        raise StorageError(f"could not publish the partner file: {exc}") from None
    finally:
        await producer.stop()


def publish_file(config: GatewayConfig, keyring: Keyring, path: Path) -> None:
    """:func:`publish` the file at ``path``, for a command (no event loop running)."""
    asyncio.run(publish(config, keyring, path.read_bytes()))


def signed(keyring: Keyring, content: bytes, headers: object) -> int | None:
    """The record's generation when it is signed by the deployment's key, else None."""
    found = dict(
        (name, value)
        for name, value in headers or ()  # type: ignore[attr-defined]
        if isinstance(value, bytes)
    )
    signature, generation = found.get(SIGNATURE), found.get(GENERATION)
    if signature is None or generation is None or not generation.isdigit():
        return None
    number = int(generation)
    if number >= 2**63:
        return None
    try:
        keyring.verify_key.verify(signature, _signed_bytes(number, content))
    except InvalidSignature:
        return None
    return number


class Stale(Exception):
    """The record is not newer than the partner file taken up already (a replay)."""


def take_up(path: Path, content: bytes, generation: int) -> bool:
    """Write ``content`` as the local partner file, unless it is that already; whether it
    changed. Refused (PartnerFileError) when the loader refuses it, :class:`Stale` when its
    generation is not newer than the one taken up before."""
    with partnerfile.locked(path):
        recorded = recorded_generation(path)
        if generation < recorded:
            raise Stale
        with contextlib.suppress(OSError):
            if hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(content).digest():
                if generation > recorded:
                    _record_generation(path, generation)
                return False  # the same record read again (a reconnect): nothing to do
        if generation == recorded:
            raise Stale
        partnerfile.replace(path, content.decode("utf-8"))
        _record_generation(path, generation)
    return True


async def follow(config: GatewayConfig, keyring: Keyring, retry: float = 5.0) -> None:
    """Follow ``<prefix>.partners`` for as long as the gateway serves; each newest version
    becomes this process's partner file."""
    assert config.kafka is not None
    topic = topic_of(config)
    while True:
        consumer = new_consumer(
            client_settings(config.kafka),
            enable_auto_commit=False,
            group_id=None,
        )
        try:
            await consumer.start()
            found = await partitions(consumer, topic)
            if not found:
                log.warning("partners.topic_missing", topic=topic, hint="run ggk kafka init")
                await asyncio.sleep(retry * 6)
                continue
            tps = [TopicPartition(topic, p) for p in sorted(found)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while True:
                batch = await consumer.getmany(*tps, timeout_ms=1000)
                newest = None  # the highest signed generation, not the last offset: a
                for records in batch.values():  # replay appended later must not hide it
                    for record in records:
                        if record.value is None:
                            continue
                        number = signed(keyring, record.value, record.headers)
                        if newest is None or (number or -1) > newest[0]:
                            newest = (number if number is not None else -1, record)
                if newest is not None:
                    await _apply(config, newest[1].value, newest[0])
        except (KafkaError, OSError) as exc:
            log.warning("partners.topic_unavailable", topic=topic, error=type(exc).__name__)
            await asyncio.sleep(retry)
        finally:
            await consumer.stop()


async def _apply(config: GatewayConfig, content: bytes, generation: int) -> None:
    """Take up ``content`` (signed at ``generation``, or -1 when it is not signed)."""
    digest = hashlib.sha256(content).hexdigest()[:16]
    if len(content) > MAX_FILE or generation < 0:
        log.error("partners.topic_refused", sha256=digest, reason="not signed by this deployment")
        return
    try:
        changed = await asyncio.to_thread(take_up, config.partners_file, content, generation)
    except Stale:
        log.error(
            "partners.topic_refused",
            sha256=digest,
            generation=generation,
            reason="not newer than the partner file taken up (a replayed record?)",
        )
        return
    except (partnerfile.PartnerFileError, UnicodeDecodeError):
        log.error("partners.topic_refused", sha256=digest, reason="the partner file does not load")
        return
    except OSError as exc:  # its folder must be writable by the gateway (docs/kafka.md)
        log.error("partners.topic_not_written", sha256=digest, error=exc.strerror)
        return
    if changed:
        log.info("partners.taken_from_topic", sha256=digest)
