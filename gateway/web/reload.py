"""Taking up a changed partner file without a restart.

A background task looks at partners.toml every :data:`POLL_SECONDS` (its size and
modification time, then its SHA-256 when those changed) and on SIGHUP. A new file is loaded
with the same loader as at start and checked against the routes (a copy to a partner that is
gone); then the registry every part of the gateway holds swaps its contents in one step
(:meth:`routing.partners.PartnerRegistry.replace`). A request already identified keeps the
partner it identified; the next request is identified against the new registry, so a
disabled partner or a revoked token is refused from then on. Adapters of partners whose
delivery changed are made anew. A file that does not load is refused: the log names only
that it was refused (``ggk partners list`` shows why), and the registry in use is kept.
Each reload is audited (``partners_reloaded``, with the file's digest).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
from pathlib import Path

import structlog

from adapters.base import Adapter
from gateway import audit, partnerops
from gateway.broker.base import StorageError
from gateway.web.wiring import Gateway
from routing.partners import PartnerRegistry, RegistryError

log = structlog.get_logger("ggk.server")

POLL_SECONDS = 2.0


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class PartnerWatch:
    """Watches one gateway's partner file and applies its changes."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.path = gw.config.partners_file
        self.stamp = _stamp(self.path)
        self.digest = _digest(self.path)
        self.poke = asyncio.Event()
        self.refused: str | None = None
        """The digest of a file refused already (not logged again every poll)."""

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, self.poke.set)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.poke.wait(), POLL_SECONDS)
            forced = self.poke.is_set()
            self.poke.clear()
            await self.check(forced)

    async def check(self, forced: bool = False) -> bool:
        """Reload when the file changed; whether a new registry was taken up."""
        stamp = _stamp(self.path)
        if stamp == self.stamp and not forced:
            return False
        self.stamp = stamp
        digest = _digest(self.path)
        if digest is None or digest == self.digest or digest == self.refused:
            return False
        try:
            fresh = await asyncio.to_thread(PartnerRegistry.load, self.path)
            self._check_routes(fresh)
        except (RegistryError, ValueError):
            self.refused = digest
            log.error(
                "partners.reload_refused",
                sha256=digest[:16],
                hint="the partner file does not load; `ggk partners list` says why; the "
                "partners loaded before stay in use",
            )
            return False
        events = self._audited(fresh, digest)
        self.apply(fresh)
        self.digest, self.refused = digest, None
        log.info("partners.reloaded", partners=len(fresh.all()), sha256=digest[:16])
        for event in events:
            try:
                await self.gw.broker.audit_event(event)
            except StorageError:
                log.error("audit.write_failed", action=event.action)
        return True

    def _audited(self, fresh: PartnerRegistry, digest: str) -> list[audit.AuditEvent]:
        """One record per partner that changed (its id first in the outcome, so ``ggk audit
        search --partner ID`` finds it), and one for the file."""
        old = {p.id: p for p in self.gw.partners.all()}
        new = {p.id: p for p in fresh.all()}
        events = [
            audit.AuditEvent(
                action="partner_changed",
                actor="gateway",
                origin="partners file",
                outcome=f"{partner_id}: {'; '.join(said)}",
            )
            for partner_id in [*old, *(i for i in new if i not in old)]
            if (said := partnerops.changes(old.get(partner_id), new.get(partner_id)))
        ]
        events.append(
            audit.AuditEvent(
                action="partners_reloaded",
                actor="gateway",
                origin="partners file",
                outcome=f"partners sha256 {digest[:16]}, {len(events)} changed",
            )
        )
        return events

    def _check_routes(self, fresh: PartnerRegistry) -> None:
        for rule in self.gw.ingress.routes.rules:
            for partner in rule.copy_to:
                if fresh.get(partner) is None:
                    raise ValueError(f"route {rule.name!r} copies to unknown partner {partner}")

    def apply(self, fresh: PartnerRegistry) -> None:
        registry = self.gw.partners
        changed = {
            p.id
            for p in registry.all()
            if (new := fresh.get(p.id)) is None or new.delivery != p.delivery
        }
        registry.replace(fresh)
        stale = self.gw.delivery.forget(changed)
        if stale:
            asyncio.get_running_loop().create_task(self._close_later(stale))

    async def _close_later(self, adapters: list[Adapter]) -> None:
        """Close replaced adapters once deliveries they started have had their time."""
        await asyncio.sleep(self.gw.delivery.config.timeout + 1)
        for adapter in adapters:
            with contextlib.suppress(Exception):
                await adapter.close()
