"""What beleidsinformatie costs: taking the facts at accept, and counting them on demand.

1. ``extract`` per message, beside XSD + rule validation of the same message (the accept
   path's dominant cost), for every sample that carries facts and a declaratie with 4x the
   prestaties (cost linear in size?).
2. ``stats.count`` + ``stats.publish`` over a facts table of ``--facts`` rows (one gemeente
   of ``--gemeenten``, one year; and all gemeenten), as ``ggk stats`` / ``GET /api/v1/stats``
   run it, on a real SQLite file.

    python -m benchmarks.figures --facts 1000000 --gemeenten 340
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from lxml import etree

from gateway import stats
from gateway.broker import sqlite_figures
from gateway.broker.sqlite_deferred import store_facts
from gateway.broker.sqlite_prepared import fact_rows
from gateway.broker.sqlite_schema import SCHEMA
from gateway.figures import Fact, FactKind, FigureKeys, extract
from gateway.schemas import SchemaRegistry
from gateway.standards import parse_namespace
from gateway.validation import Validator
from gateway.xmlsafe import ParseLimits

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
KEYS = FigureKeys(b"k" * 32)


def median_seconds(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bigger_declaratie(times: int) -> bytes:
    """jw323 with its Clienten repeated ``times`` over (unique ProductReferenties)."""
    root = etree.parse(str(SAMPLES / "ijw" / "jw323.xml")).getroot()
    clienten = root.find("{*}Declaratie/{*}Clienten")
    assert clienten is not None
    originals = list(clienten)
    for n in range(1, times):
        for client in originals:
            copy = etree.fromstring(etree.tostring(client))
            for ref in copy.iter("{*}ReferentieNummer"):
                ref.text = f"{ref.text}{n}"
            clienten.append(copy)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def extraction(repeat: int) -> None:
    validator = Validator(SchemaRegistry([]), ParseLimits())
    cases = [
        (p.name, p.read_bytes())
        for p in sorted((SAMPLES / "iwmo").glob("*.xml")) + sorted((SAMPLES / "ijw").glob("*.xml"))
    ]
    cases += [("jw323 x4", bigger_declaratie(4)), ("jw323 x16", bigger_declaratie(16))]
    print(f"{'message':<12}{'facts':>6}{'extract µs':>12}{'validate µs':>13}{'share':>8}")
    for name, data in cases:
        root = etree.fromstring(data)
        info = parse_namespace(etree.QName(root).namespace)
        assert info is not None and info.message is not None
        message = info.message
        facts = extract(root, message, KEYS)
        if not facts:
            continue
        took = median_seconds(lambda: extract(root, message, KEYS), repeat)  # noqa: B023
        valid = median_seconds(lambda: validator.validate_payload(data), max(repeat // 10, 5))  # noqa: B023
        print(
            f"{name:<12}{len(facts):>6}{took * 1e6:>12.1f}{valid * 1e6:>13.1f}{took / valid:>8.1%}"
        )


def synthetic_facts(count: int, gemeenten: int, seed: int) -> list[tuple[str, float, Fact]]:
    rng = random.Random(seed)
    kinds = [FactKind.TOEWIJZING, FactKind.START, FactKind.STOP, FactKind.DECLARATIE]
    out = []
    for i in range(count):
        gemeente = f"{rng.randrange(gemeenten):04d}"
        month = f"2026-{rng.randrange(1, 13):02d}"
        kind = rng.choice(kinds)
        out.append(
            (
                f"m{i // 3}",
                1_767_225_600.0 + rng.randrange(365 * 86400),
                Fact(
                    kind,
                    "jw",
                    gemeente,
                    "12345678",
                    f"{rng.randrange(40, 55)}",
                    month,
                    KEYS.digest("bsn", str(rng.randrange(count // 4 or 1))),
                    KEYS.digest("k", str(i)),
                    rng.randrange(1000, 200000) if kind is FactKind.DECLARATIE else None,
                    KEYS.digest("link", str(i)),
                    KEYS.digest("link", str(i - 1)) if kind is FactKind.START else None,
                ),
            )
        )
    return out


def counting(count: int, gemeenten: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "figures.sqlite")
        db.row_factory = sqlite3.Row
        db.executescript(SCHEMA)
        started = time.perf_counter()
        with db:
            for message_id, at, fact in synthetic_facts(count, gemeenten, 17):
                store_facts(db, message_id, at, fact_rows(at, (fact,)))
        print(f"{count:,} facts stored in {time.perf_counter() - started:.1f} s")
        for label, scope in (
            ("one gemeente, one year", stats.Scope("0007", "2026-01", "2026-12")),
            ("one gemeente, one month", stats.Scope("0007", "2026-06", "2026-06")),
            (f"all {gemeenten} gemeenten", stats.Scope()),
        ):
            took = median_seconds(lambda: stats.publish(sqlite_figures.count(db, scope)), repeat)  # noqa: B023
            print(f"count + publish, {label}: median {took * 1000:,.1f} ms")
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=200_000)
    parser.add_argument("--gemeenten", type=int, default=340)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    extraction(args.repeat * 40)
    counting(args.facts, args.gemeenten, args.repeat)


if __name__ == "__main__":
    main()
