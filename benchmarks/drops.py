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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Drop:
    """One directory adapter's folder and the message codes the copy routes send to it."""

    folder: Path
    codes: frozenset[str]


class Drops:
    """The directory-adapter folders of a gateway's copy routes, read from its configuration."""

    def __init__(self, config: Path) -> None:
        settings = tomllib.loads(config.read_text(encoding="utf-8"))
        partners_file = config.parent / settings["gateway"]["partners"]
        partners = tomllib.loads(partners_file.read_text(encoding="utf-8")).get("partner", [])
        folders = {
            partner["id"]: config.parent / partner["delivery"]["path"]
            for partner in partners
            if partner.get("delivery", {}).get("adapter") == "directory"
        }
        codes: dict[str, set[str]] = {}
        for route in settings.get("route", []):
            if route.get("action") != "copy":
                continue
            for partner in route.get("copy_to", []):
                if partner in folders:
                    codes.setdefault(partner, set()).update(route.get("messages", []))
        self.drops = tuple(
            Drop(folders[partner], frozenset(names)) for partner, names in codes.items()
        )

    def expected(self, functies: Iterable[str]) -> int:
        """How many files the accepted messages with these codes add to the drops."""
        return sum(1 for functie in functies for drop in self.drops if functie in drop.codes)

    def count(self) -> int:
        """The files in the drops now (the adapter's temporary files start with a dot)."""
        total = 0
        for drop in self.drops:
            try:
                with os.scandir(drop.folder) as entries:
                    total += sum(1 for entry in entries if not entry.name.startswith("."))
            except FileNotFoundError:  # no copy written yet
                pass
        return total

    async def wait_for(self, count: int, timeout: float = 120.0) -> None:
        """Until the drops hold ``count`` files; RuntimeError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (held := self.count()) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {held} of {count} copies written in {timeout:g} s")
            await asyncio.sleep(0.05)
