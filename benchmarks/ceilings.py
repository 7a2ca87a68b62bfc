"""The ceilings our figures are compared with, measured on the same machine in the same run:
what lxml alone does with the same messages, and what SQLite alone commits on the same disk."""

from __future__ import annotations

import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from lxml import etree

from benchmarks.mix import Outgoing
from gateway.schemas import SchemaRegistry
from gateway.validation import Validator


@dataclass(frozen=True, slots=True)
class ValidateCeiling:
    raw_per_s: float
    """lxml ``fromstring`` + ``XMLSchema.validate`` (compiled once), messages per second."""
    ours_xsd_per_s: float
    """Our validate path without business rules (hardened parse, identify, XSD, report)."""
    ours_full_per_s: float
    """Our validate path with every business rule (the C screen first, then the flagged rules
    in Python: what the gateway runs)."""
    ours_python_rules_per_s: float
    """The same with every rule in Python and no screen (before issue 16's screen)."""


def validate_ceiling(messages: list[Outgoing], rounds: int = 3) -> ValidateCeiling:
    """Messages per second on one core over the same payloads (median of ``rounds``; the
    variants take turns within each round, so a slow spell of the machine hits them alike)."""
    registry = SchemaRegistry()
    full = Validator(registry, today=date.today())
    python_rules = Validator(registry, today=date.today(), screen=False)
    xsd_only = Validator(registry, today=date.today(), rules=[], screen=False)
    plain = etree.XMLParser()
    schemas = []
    for m in messages:
        report = full.validate(m.payload)
        if not report.valid:
            raise RuntimeError(f"{m.functie} of the mix is invalid: {report.problems[0].message}")
        assert report.namespace is not None
        schema = registry.get(report.namespace)
        assert schema is not None
        schemas.append(schema.xsd)

    def raw() -> None:
        for m, xsd in zip(messages, schemas, strict=True):
            xsd.validate(etree.fromstring(m.payload, plain))

    variants: dict[str, Callable[[], object]] = {
        "raw": raw,
        "xsd": lambda: [xsd_only.validate(m.payload) for m in messages],
        "full": lambda: [full.validate(m.payload) for m in messages],
        "python": lambda: [python_rules.validate(m.payload) for m in messages],
    }
    per_round: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            started = time.perf_counter()
            fn()
            per_round[name].append(len(messages) / (time.perf_counter() - started))
    rate = {name: statistics.median(r) for name, r in per_round.items()}
    return ValidateCeiling(rate["raw"], rate["xsd"], rate["full"], rate["python"])


@dataclass(frozen=True, slots=True)
class SqliteCeiling:
    commits_per_s: float
    """One row per transaction: the disk's durable-commit rate (WAL, synchronous=FULL)."""
    rows_per_s_grouped: float
    """``group`` rows per transaction: what group commit can reach."""
    group: int


def sqlite_ceiling(
    directory: Path | None = None, seconds: float = 2.0, group: int = 32, row_bytes: int = 4096
) -> SqliteCeiling:
    """Raw SQLite on the disk the gateway uses, durable mode as ours (WAL, synchronous=FULL)."""
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        db = sqlite3.connect(Path(tmp) / "ceiling.sqlite", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        blob = os.urandom(row_bytes)

        def run(rows_per_commit: int) -> float:
            rows, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT INTO t (data) VALUES (?)", [(blob,)] * rows_per_commit)
                db.execute("COMMIT")
                rows += rows_per_commit
            return rows / (time.perf_counter() - started)

        single = run(1)
        grouped = run(group)
        db.close()
    return SqliteCeiling(single, grouped, group)
