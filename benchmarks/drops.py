"""The file drops a benchmark gateway writes besides what reaches the sink, and waiting for them.

The demo's routing copies every WMO301, WMO305 and WMO307 to CAK, whose adapter writes one
file per copy (adapters/directory.py, with two fsyncs). The load generator's sink sees only
the HTTP deliveries, so a phase that ends when the sink has them all may end with copies still
queued: their CPU then falls into the next phase, or into none. Round 1's gateway did just
that at saturation (2,000 of 2,500 copies written after the phase; docs/benchmarks.md, "The
copies a phase leaves behind"), which made its CPU per message look smaller than it was. A
phase's figures therefore end when the drops hold every copy it caused too.
"""

from __future__ import annotations

import asyncio
import os
import time
import tomllib
from collections import Counter
from pathlib import Path

from benchmarks import mix
from gateway.standards import BY_CODE
from routing.partners import PartnerRegistry
from routing.table import Destination, RoutedMessage, RouteTable


class Drops:
    """The folders of a gateway's directory-adapter partners, and what its own routing table
    copies into them (gateway.toml's ``[[route]]``, partners.toml's delivery settings, read
    as the gateway reads them)."""

    def __init__(self, config: Path) -> None:
        settings = tomllib.loads(config.read_text(encoding="utf-8"))
        self.routes = RouteTable.from_config(settings.get("route", []), str(config))
        self.partners = PartnerRegistry.load(config.parent / settings["gateway"]["partners"])
        self.folders = {
            partner.id: Path(str(partner.delivery.settings["path"]))
            for partner in self.partners.all()
            if partner.delivery.adapter == "directory"
        }
        self._cache: dict[tuple[str, str, str], int] = {}

    def expected(self, accepted: list[mix.Outgoing]) -> int:
        """How many files the ``accepted`` messages add to the folders."""
        kinds = Counter((m.functie, m.sender, m.receiver) for m in accepted)
        return sum(self._files(*kind) * n for kind, n in kinds.items())

    def _files(self, functie: str, sender: str, receiver: str) -> int:
        if (functie, sender, receiver) not in self._cache:
            partner = self.partners.get(sender)
            known = BY_CODE.get(functie)
            routed = (
                self.routes.route(
                    RoutedMessage(
                        functie=functie,
                        standard=known.standard.value if known else None,
                        sender=sender,
                        sender_kind=partner.kind,
                        receiver=receiver,
                    )
                )
                if partner is not None
                else []
            )
            destinations = routed if isinstance(routed, list) else []
            self._cache[functie, sender, receiver] = sum(
                1 for d in destinations if isinstance(d, Destination) and d.partner in self.folders
            )
        return self._cache[functie, sender, receiver]

    def count(self) -> int:
        """The files in the folders now (the adapter's temporary files start with a dot)."""
        total = 0
        for folder in set(self.folders.values()):
            try:
                with os.scandir(folder) as entries:
                    total += sum(1 for entry in entries if not entry.name.startswith("."))
            except FileNotFoundError:  # no copy written yet
                pass
        return total

    async def wait_for(self, count: int, timeout: float = 120.0) -> None:
        """Until the folders hold ``count`` files; RuntimeError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (held := self.count()) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {held} of {count} copies written in {timeout:g} s")
            await asyncio.sleep(0.05)
