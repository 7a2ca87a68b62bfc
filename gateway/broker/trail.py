"""The audit trail for commands: ``ggk audit`` and the audit record of an operator's act.

The second door to storage (the first is :func:`gateway.broker.open_broker`): a command opens
the configured backend's trail here, while the gateway may be running, and never asks which
backend it is. On the embedded backend the trail is the database's ``audit`` tables (read-only
unless a record is appended); on Kafka it is the cluster's ``events`` and ``audit`` topics and
the ledger's signed heads, read from any process's configuration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from gateway.audit import AuditEvent
from gateway.broker.base import StorageError
from gateway.keyring import Keyring, KeyringError

if TYPE_CHECKING:
    from gateway.config import GatewayConfig, KafkaConfig

T = TypeVar("T")


class TrailError(Exception):
    """The trail cannot be opened or read: no database, no audit table, the cluster
    unreachable, keys that do not open it. The message is for the operator."""


class BadCheckpoints(TrailError):
    """Exported checkpoints given to :meth:`OfflineTrail.verify` are not checkpoints of this
    kind of trail."""


@dataclass(frozen=True, slots=True)
class TrailCheck:
    """What :meth:`OfflineTrail.verify` found."""

    ok: bool
    records: int
    checkpoints: int
    unsigned_tail: int
    """Records after the last signed checkpoint(s): a truncation of these would go unnoticed."""
    reason: str
    bad_record: int | None = None
    partitions: tuple[dict[str, Any], ...] | None = None
    """One verdict per chain on a cluster; None for the embedded store's single chain."""


@dataclass(frozen=True, slots=True)
class SignedHeads:
    """The signed head(s) :meth:`OfflineTrail.checkpoint` made or found."""

    items: tuple[dict[str, Any], ...]
    chains: bool
    """True: one head per partition chain (a cluster); False: the one chain, ``items[0]``."""


class OfflineTrail(Protocol):
    def check(self) -> None:
        """Raise :class:`TrailError` now if the trail cannot be opened (before a command
        creates anything)."""
        ...

    def append(self, event: AuditEvent) -> None:
        """Append ``event`` (an operator's act) now."""
        ...

    def size(self) -> int | None:
        """How many records a verification will walk (None: unknown until read)."""
        ...

    def verify(
        self, external: list[dict[str, Any]] | None, progress: Callable[[int], None]
    ) -> TrailCheck:
        """Every chain and every signed checkpoint (and ``external``: exported ones)."""
        ...

    def search(
        self,
        *,
        message: str | None,
        bsn: str | None,
        partner: str | None,
        since: float | None,
        limit: int,
    ) -> list[dict[str, Any]]: ...

    def export(self, write: Callable[[dict[str, Any]], object]) -> int:
        """Every record, secret part decrypted, to ``write``; returns how many."""
        ...

    def checkpoint(self) -> SignedHeads:
        """The embedded store signs its head now (or shows the newest signed one); on a
        cluster the chains' owners sign, and this shows the newest head of each."""
        ...


def open_trail(config: GatewayConfig, keyring: Keyring) -> OfflineTrail:
    """The configured backend's audit trail, for a command."""
    if config.broker == "kafka":
        assert config.kafka is not None  # config.check
        return _ClusterTrail(config.kafka, keyring)
    from gateway.broker.sqlite_audit import DatabaseTrail

    return DatabaseTrail(config.database, keyring)


class _ClusterTrail:
    def __init__(self, config: KafkaConfig, keyring: Keyring) -> None:
        self.config = config
        self.keyring = keyring

    def _settings(self) -> dict[str, Any]:
        from gateway.broker.kafka_core import client_settings

        try:
            return client_settings(self.config)
        except StorageError as exc:
            raise TrailError(str(exc)) from None

    def _run(self, work: Callable[[dict[str, Any]], Coroutine[Any, Any, T]]) -> T:
        """Run ``work`` against the cluster; its errors as :class:`TrailError`."""
        from aiokafka.errors import KafkaError

        settings = self._settings()
        try:
            return asyncio.run(work(settings))
        except KafkaError as exc:
            raise TrailError(f"kafka at {self.config.bootstrap}: {exc}") from None
        except KeyringError as exc:
            raise TrailError(str(exc)) from None

    def check(self) -> None:
        return None  # the cluster is reached when the trail is read

    def append(self, event: AuditEvent) -> None:
        from gateway.broker import kafka_audit

        self._run(
            lambda s: kafka_audit.append_act(
                s, self.config.prefix, self.keyring, event, time.time()
            )
        )

    def size(self) -> int | None:
        return None

    def verify(
        self, external: list[dict[str, Any]] | None, progress: Callable[[int], None]
    ) -> TrailCheck:
        from gateway.broker import kafka_ledger

        try:
            exported = [kafka_ledger.Checkpoint.from_dict(item) for item in external or []]
        except kafka_ledger.LedgerError as exc:
            raise BadCheckpoints(str(exc)) from None
        verdict = self._run(
            lambda s: kafka_ledger.verify_cluster(
                s, self.config.prefix, self.keyring, progress=progress, external=exported
            )
        )
        return TrailCheck(
            verdict.ok,
            verdict.records,
            verdict.checkpoints,
            verdict.unsigned_tail,
            verdict.first_problem(),
            partitions=tuple(dataclasses.asdict(p) for p in verdict.partitions),
        )

    def search(
        self,
        *,
        message: str | None,
        bsn: str | None,
        partner: str | None,
        since: float | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        from gateway.broker import kafka_audit

        return self._run(
            lambda s: kafka_audit.search(
                s,
                self.config.prefix,
                self.keyring,
                limit=limit,
                since=since,
                message=message,
                bsn=bsn,
                partner=partner,
            )
        )

    def export(self, write: Callable[[dict[str, Any]], object]) -> int:
        from gateway.broker import kafka_audit

        async def work(settings: dict[str, Any]) -> int:
            count = 0
            async for entry in kafka_audit.entries(
                settings, self.config.prefix, self.keyring, open_secrets=True
            ):
                write(entry.exported())
                count += 1
            return count

        return self._run(work)

    def checkpoint(self) -> SignedHeads:
        import json

        from gateway.broker import kafka_ledger

        newest = self._run(
            lambda s: kafka_ledger.newest_checkpoints(s, self.config.prefix, self.keyring)
        )
        if not newest:
            raise TrailError("no signed checkpoint on the cluster's ledger yet")
        return SignedHeads(tuple(json.loads(c.to_record()[0]) for c in newest), chains=True)
