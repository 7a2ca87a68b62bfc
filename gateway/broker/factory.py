"""The one door to storage: the backend ``[gateway] broker`` names, built for this process.

The server and every command open storage here, so no module outside ``gateway/broker/``
asks which backend is configured. The backends are imported only when chosen: a command on
the embedded backend never loads the Kafka client.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from gateway.broker.base import StorageError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Mapping
    from pathlib import Path
    from typing import Any

    from gateway.broker.base import Broker, StoreFacts
    from gateway.config import GatewayConfig
    from gateway.ebms.state import MshState
    from gateway.keyring import Keyring


def open_broker(config: GatewayConfig, keyring: Keyring, *, node: str | None = None) -> Broker:
    """The configured backend, not yet started (``await broker.start()``).

    On Kafka the SQLite file becomes this process's view of the cluster: it keeps no audit
    chain of its own (the cluster's ledger is the trail) and need not fsync (a view is rebuilt
    from the topics; the messages' durability is the cluster's ``acks=all``). ``node`` names
    this process on the cluster (default: host name and port)."""
    from gateway.broker.sqlite import SqliteBroker

    kafka = config.broker == "kafka"
    store = SqliteBroker(
        config.database,
        keyring,
        audit_enabled=config.audit_enabled and not kafka,
        max_bytes=config.max_database_mb * 1024 * 1024 if config.max_database_mb else None,
        durable=not kafka,
    )
    if not kafka:
        return store
    from gateway.broker.kafka import KafkaBroker

    assert config.kafka is not None  # config.check
    return KafkaBroker(
        config.kafka,
        store,
        node=node or f"{socket.gethostname()}-{config.port}",
        audit_enabled=config.audit_enabled,
    )


def reencryption_refused(config: GatewayConfig) -> str | None:
    """Why ``ggk keys rotate --reencrypt`` cannot re-encrypt this backend's payloads, or
    None (the embedded store can, with the gateway stopped)."""
    if config.broker == "kafka":
        return (
            "--reencrypt is for the embedded backend: on Kafka the payloads stay sealed in the "
            "cluster's topics under the key they were written with (docs/kafka.md)"
        )
    return None


def reencrypt_payloads(
    config: GatewayConfig,
    keyring: Keyring,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Re-encrypt the stored payloads under ``keyring``'s active key (the gateway stopped);
    how many; ``progress(done, total)`` as it goes. Only where :func:`reencryption_refused`
    says None."""
    from gateway.broker.sqlite import reencrypt_payloads as reencrypt

    return reencrypt(config.database, keyring, progress)


def open_msh_state(config: GatewayConfig, owners: Mapping[str, str]) -> MshState:
    """The ebMS MSH's state: what it received and what it sent (``await state.start()``
    before use). Embedded backend: ``ebms.sqlite`` in the data folder, this process's own. Kafka:
    the same file is this process's copy of the cluster's records (``<prefix>.ebms``), which
    every process reads and writes, so a resend, an answer or a signed receipt reaching any
    process is judged with the records of all (gateway/broker/kafka_ebms.py). ``owners``
    (cpaid -> partner id) upgrades a state file written before rows were keyed per partner."""
    path = config.data_dir / "ebms.sqlite"
    if config.broker != "kafka":
        from gateway.broker.sqlite_ebms import LocalMshState

        return LocalMshState(path, owners)
    from gateway.broker.kafka_ebms import KafkaMshState

    assert config.kafka is not None  # config.check
    return KafkaMshState(config.kafka, path, owners)


def backup_refused(config: GatewayConfig) -> str | None:
    """Why ``ggk backup`` cannot copy this backend's data, or None (the embedded store can,
    while serving). On Kafka the messages and the audit trail live in the cluster's topics:
    they are backed up as the cluster is (docs/operations.md), not through one process."""
    if config.broker == "kafka":
        return (
            "on the Kafka backend the data lives in the cluster's topics; back it up as "
            "docs/operations.md ('Backing up a Kafka deployment') says"
        )
    return None


def snapshot_store(source: Path, target: Path, progress: Callable[[int, int], None]) -> StoreFacts:
    """A consistent copy of the store file ``source`` (one commit's state, taken while the
    gateway writes) into the new file ``target``; what it holds. Only where
    :func:`backup_refused` says None."""
    from gateway.broker.sqlite_backup import snapshot

    return snapshot(source, target, progress)


def check_store_copy(path: Path, keyring: Keyring | None) -> StoreFacts:
    """A restored store file is sound, and ``keyring`` (when given) opens it; what it holds.
    Raises :class:`StorageError` saying what is wrong."""
    from gateway.broker.sqlite_backup import check_copy, keyring_problem

    found = check_copy(path)
    if keyring is not None and (problem := keyring_problem(path, keyring)) is not None:
        raise StorageError(f"{path.name}: {problem}")
    return found


def partners_shared(config: GatewayConfig) -> bool:
    """The backend shares the partner file between processes (Kafka: a signed record on
    ``<prefix>.partners``); the embedded backend's one process reads its own file."""
    return config.broker == "kafka"


def publish_partner_file(config: GatewayConfig, keyring: Keyring, path: Path) -> bool:
    """Put the partner file at ``path`` on the cluster for every process; False where the
    backend has no cluster (:func:`partners_shared`). Raises :class:`StorageError`."""
    if not partners_shared(config):
        return False
    from gateway.broker.kafka_partners import publish_file

    publish_file(config, keyring, path)
    return True


def partner_publisher(
    config: GatewayConfig, keyring: Keyring
) -> Callable[[bytes], Awaitable[None]] | None:
    """How a serving process puts a changed partner file on the cluster (the portal), or
    None where the backend has no cluster."""
    if not partners_shared(config):
        return None
    from gateway.broker.kafka_partners import publish

    async def send(content: bytes) -> None:
        await publish(config, keyring, content)

    return send


def partner_follower(config: GatewayConfig, keyring: Keyring) -> Coroutine[Any, Any, None] | None:
    """The task that takes up the partner file as changed on any process, or None where the
    backend has no cluster (the file watcher alone serves)."""
    if not partners_shared(config):
        return None
    from gateway.broker.kafka_partners import follow

    return follow(config, keyring)
