"""The partner file on Kafka: one change, taken up by every gateway process.

Each process serves from its own partners.toml (gateway/web/reload.py watches it). A change
made through ``ggk partners`` or the operator portal is also published, whole, on the
compacted topic ``<prefix>.partners`` (one partition, one key: only the newest version is
kept), signed with the keyring's Ed25519 key that every process of the deployment holds.
Every process follows that topic from its start: the newest version is checked (signature,
size, the gateway's own loader) and written over its local file (gateway/partnerfile.py:
lock, fsync, ``.bak``, atomic rename), which its watcher then takes up. A record that is not
signed by the deployment's key, or does not load, is refused and logged without content.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from pathlib import Path

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from cryptography.exceptions import InvalidSignature

from gateway import partnerfile
from gateway.broker.base import StorageError
from gateway.broker.kafka_core import client_settings
from gateway.broker.kafka_topics import partitions
from gateway.config import GatewayConfig
from gateway.keyring import Keyring

log = structlog.get_logger("ggk.server")

MAX_FILE = 1024 * 1024
"""A partner file of a thousand partners is some 500 KiB."""

KEY = b"partners"
LABEL = b"ggk-partners\x00"
SIGNATURE = "ggk-signature"


def topic_of(config: GatewayConfig) -> str:
    assert config.kafka is not None
    return f"{config.kafka.prefix}.partners"


async def publish(config: GatewayConfig, keyring: Keyring, content: bytes) -> None:
    """Put ``content`` (a partner file the loader accepted) on the topic, signed."""
    if len(content) > MAX_FILE:
        raise StorageError(f"the partner file is over {MAX_FILE // 1024} KiB: not published")
    assert config.kafka is not None
    producer = AIOKafkaProducer(**client_settings(config.kafka), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topic_of(config),
            content,
            key=KEY,
            headers=[(SIGNATURE, keyring.sign(LABEL + content))],
        )
    except KafkaError as exc:
        raise StorageError(f"could not publish the partner file: {exc}") from None
    finally:
        await producer.stop()


def publish_file(config: GatewayConfig, keyring: Keyring, path: Path) -> None:
    """:func:`publish` the file at ``path``, for a command (no event loop running)."""
    asyncio.run(publish(config, keyring, path.read_bytes()))


def signed(keyring: Keyring, content: bytes, headers: object) -> bool:
    for name, value in headers or ():  # type: ignore[attr-defined]
        if name == SIGNATURE and isinstance(value, bytes):
            try:
                keyring.verify_key.verify(value, LABEL + content)
            except InvalidSignature:
                return False
            return True
    return False


def take_up(path: Path, content: bytes) -> bool:
    """Write ``content`` as the local partner file, unless it is that already; whether it
    changed. Refused (PartnerFileError) when the loader refuses it."""
    with partnerfile.locked(path):
        with contextlib.suppress(OSError):
            if hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(content).digest():
                return False
        partnerfile.replace(path, content.decode("utf-8"))
    return True


async def follow(config: GatewayConfig, keyring: Keyring, retry: float = 5.0) -> None:
    """Follow ``<prefix>.partners`` for as long as the gateway serves; each newest version
    becomes this process's partner file."""
    assert config.kafka is not None
    topic = topic_of(config)
    while True:
        consumer = AIOKafkaConsumer(
            **client_settings(config.kafka), enable_auto_commit=False, group_id=None
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
                newest = None
                for records in batch.values():
                    for record in records:
                        newest = record
                if newest is not None and newest.value is not None:
                    await _apply(config, keyring, newest.value, newest.headers)
        except (KafkaError, OSError) as exc:
            log.warning("partners.topic_unavailable", topic=topic, error=type(exc).__name__)
            await asyncio.sleep(retry)
        finally:
            await consumer.stop()


async def _apply(config: GatewayConfig, keyring: Keyring, content: bytes, headers: object) -> None:
    digest = hashlib.sha256(content).hexdigest()[:16]
    if len(content) > MAX_FILE or not signed(keyring, content, headers):
        log.error("partners.topic_refused", sha256=digest, reason="not signed by this deployment")
        return
    try:
        changed = await asyncio.to_thread(take_up, config.partners_file, content)
    except (partnerfile.PartnerFileError, UnicodeDecodeError):
        log.error("partners.topic_refused", sha256=digest, reason="the partner file does not load")
        return
    except OSError as exc:  # its folder must be writable by the gateway (docs/kafka.md)
        log.error("partners.topic_not_written", sha256=digest, error=exc.strerror)
        return
    if changed:
        log.info("partners.taken_from_topic", sha256=digest)
