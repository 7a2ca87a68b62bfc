"""What one more Kafka gateway process costs per message: applying the cluster's events to its
view (issue 17).

Every process applies every message and delivery change of the cluster to its SQLite view
(docs/kafka.md, "Partition-scoped state"); that is the part of the work that grows with the
number of processes. This measures it alone, without Kafka: ``--messages`` records as the
router writes them (a 3.5 KB envelope, one delivery, then its "delivered" state) applied
by :meth:`KafkaBroker.apply_records` in batches of 500, as the view loop does, to a fresh
SQLite file.

Variants, interleaved over ``--rounds``: the view as it is (no audit chain, no envelope
copy, BSNs left sealed); the same with each message carrying the beleidsinformatie of a
JW301 (two facts, sealed: what a view opens and counts, issue 18); and with a per-process
audit chain on every applied record (what every process did before the ledger; ``audit``
below).

    python -m benchmarks.kafka_view --messages 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from aiokafka.structs import ConsumerRecord
from lxml import etree

from benchmarks import stopping
from gateway.broker import kafka_records as rec
from gateway.broker.kafka import KafkaBroker
from gateway.broker.sqlite import SqliteBroker
from gateway.broker.sqlite_view import LocalView
from gateway.config import KafkaConfig
from gateway.figures import Fact, FigureKeys, extract
from gateway.keyring import Keyring
from gateway.standards import parse_namespace
from kit.harness import stored_message

BATCH = 500
SAMPLES = Path(__file__).resolve().parent.parent / "samples"
ENVELOPE = b"<e>" + b"x" * 3500 + b"</e>"


def sample_facts() -> tuple[Fact, ...]:
    """The beleidsinformatie of the JW301 sample (two toewijzingen): what most messages of
    the mix carry in their record."""
    root = etree.parse(str(SAMPLES / "ijw" / "jw301.xml")).getroot()
    info = parse_namespace(etree.QName(root).namespace)
    assert info is not None and info.message is not None
    return extract(root, info.message, FigureKeys(b"k" * 32))


def records(
    keyring: Keyring, count: int, facts: tuple[Fact, ...] = ()
) -> list[ConsumerRecord[bytes, bytes]]:
    """The events a router and a delivery write for ``count`` messages."""
    out: list[ConsumerRecord[bytes, bytes]] = []
    for n in range(count):
        m = stored_message(n, digest=f"d{n}", bsns=("999993653",), envelope=ENVELOPE)
        m = dataclasses.replace(m, facts=facts)
        delivered = {
            "t": "delivery",
            "message_id": m.id,
            "destination": "12345678",
            "state": "delivered",
            "attempts": 1,
            "at": time.time(),
            "event": "delivered",
            "detail": "http",
            "round": 0,
        }
        for value in (rec.message_record(keyring, m, time.time()), rec.frame(delivered)):
            offset = len(out)
            out.append(
                ConsumerRecord("x.events", 0, offset, 0, 0, None, value, None, 0, len(value), ())
            )
    return out


async def apply_all(
    keyring: Keyring, batch: list[ConsumerRecord[bytes, bytes]], *, audit: bool, size: int = BATCH
) -> float:
    """CPU seconds (this process, writer thread included) to apply ``batch`` to a new view."""
    with tempfile.TemporaryDirectory() as directory:
        # as gateway.broker.factory opens a view: commits that do not wait for the disk
        local = SqliteBroker(
            Path(directory) / "view.sqlite", keyring, audit_enabled=audit, durable=False
        )
        view = KafkaBroker(KafkaConfig(bootstrap="unused"), local, node="bench")
        await local.start()
        await LocalView(local).create()
        started = time.process_time()
        for first in range(0, len(batch), size):
            part = batch[first : first + size]
            await view.apply_records(part, {})
        spent = time.process_time() - started
        await local.close()
    return spent


async def main(args: argparse.Namespace) -> None:
    keyring = Keyring.generate()
    plain = records(keyring, args.messages)
    batches = {"view": plain, "view with facts": records(keyring, args.messages, sample_facts())}
    batches["audit"] = plain
    spent: dict[str, list[float]] = {name: [] for name in batches}
    for _ in range(args.rounds):
        for name, batch in batches.items():
            cpu = await apply_all(keyring, batch, audit=name == "audit", size=args.batch)
            spent[name].append(cpu / args.messages * 1000)
    print(
        f"# view apply, {args.messages} messages (+1 delivery each) in batches of "
        f"{args.batch} records, {args.rounds} rounds"
    )
    print("| variant | CPU s per 1,000 messages, median | rounds |")
    print("|---|---:|---|")
    for name, values in spent.items():
        rounds = ", ".join(f"{v:.3f}" for v in values)
        print(f"| {name} | {statistics.median(values):.3f} | {rounds} |")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--batch",
        type=int,
        default=BATCH,
        help="records per applied batch (a view at 50 msg/s applies about 10 a fetch)",
    )
    args = parser.parse_args()
    if args.batch < 1 or args.messages < 1 or args.rounds < 1:
        parser.error("--batch, --messages and --rounds are whole numbers from 1")
    stopping.run(main(args))


if __name__ == "__main__":
    cli()
