"""What the embedded store's writer costs a message, apart from everything else.

The full runs (``python -m benchmarks run``) cannot see a few per cent of the gateway's CPU
through the machine's noise; a change to the store can be measured here instead. A real
SQLite file is first filled with ``--prefill`` messages (the indexes of a store that has run
a while), then ``--messages`` more go through the store's whole life of a message, as the
gateway drives it: accepted in group commits of ``--group`` (the writer's batch under load;
about 2 at 100 msg/s on this machine, 20 and more at saturation), claimed, delivered. Each
message carries a ~3 KB sealed envelope, one BSN, one delivery and its audit records.

Reported per message, medians of ``--rounds`` runs, each variant on a fresh file and the
variants alternating: the process's CPU (the writer thread, SQLite included, and the event
loop driving it), the bytes written to files (WAL and checkpoints: ``wchar`` of
/proc/self/io), the wall time. Variants (``--variants``): ``ordered``, the gateway's
time-ordered message ids (gateway/ids.py); ``random``, the UUID v4 ids used before.

    python -m benchmarks.store --prefill 20000 --messages 3000 --group 20
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from benchmarks import stopping
from gateway.broker.base import NewMessage
from gateway.broker.sqlite import SqliteBroker
from gateway.ids import message_id
from gateway.keyring import Keyring
from kit.harness import stored_message

VARIANTS: dict[str, tuple[str, Callable[[], str]]] = {
    "ordered": ("time-ordered ids (gateway/ids.py)", message_id),
    "random": ("random ids (UUID v4, before)", lambda: uuid.uuid4().hex),
}
ENVELOPE = os.urandom(3000)


def message(new_id: Callable[[], str], n: int) -> NewMessage:
    """A stored message as the ingest stage hands it over (:func:`kit.harness.stored_message`),
    with the id scheme under test and a random referentienummer, as StUF-GGk asks (a key of
    two indexes: sequential ones would flatter both variants)."""
    return dataclasses.replace(
        stored_message(
            n, digest=f"{n:064x}", bsns=(f"{n % 1_000_000_000:09d}",), envelope=ENVELOPE
        ),
        id=new_id(),
        referentienummer=str(uuid.uuid4()),
    )


def written_bytes() -> int:
    """What this process has written to files so far (``wchar``)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no wchar")


async def lifecycle(broker: SqliteBroker, messages: list[NewMessage]) -> None:
    """Accept ``messages`` together (one group commit), claim and deliver them."""
    await asyncio.gather(*(broker.accept(m) for m in messages))
    jobs = await broker.claim(len(messages), 60)
    await asyncio.gather(*(broker.delivered(job) for job in jobs))


async def one_run(
    folder: Path, new_id: Callable[[], str], prefill: int, count: int, group: int
) -> dict[str, float]:
    """One fresh store: filled, then measured over ``count`` messages."""
    broker = SqliteBroker(folder / "store.sqlite", Keyring.generate())
    await broker.start()
    try:
        n = 0
        while n < prefill:
            await lifecycle(broker, [message(new_id, n + i) for i in range(200)])
            n += 200
        written, cpu, wall = written_bytes(), time.process_time(), time.perf_counter()
        for start in range(n, n + count, group):
            last = min(start + group, n + count)
            await lifecycle(broker, [message(new_id, i) for i in range(start, last)])
        return {
            "cpu_ms": 1000 * (time.process_time() - cpu) / count,
            "written_kib": (written_bytes() - written) / count / 1024,
            "wall_ms": 1000 * (time.perf_counter() - wall) / count,
        }
    finally:
        await broker.close()


async def main(args: argparse.Namespace) -> None:
    results: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
    for round_ in range(1, args.rounds + 1):
        for variant in args.variants:
            with tempfile.TemporaryDirectory() as tmp:
                print(f"round {round_}: {variant} …", flush=True)
                results[variant].append(
                    await one_run(
                        Path(tmp), VARIANTS[variant][1], args.prefill, args.messages, args.group
                    )
                )
    print(
        f"\n| variant ({args.prefill:,} stored, groups of {args.group}) | CPU ms per message "
        "| written KiB per message | wall ms per message |"
    )
    print("|---|---:|---:|---:|")
    for variant, runs in results.items():
        cells = [
            f"{statistics.median(r[key] for r in runs):.3f}"
            for key in ("cpu_ms", "written_kib", "wall_ms")
        ]
        print(f"| {VARIANTS[variant][0]} | {' | '.join(cells)} |")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefill", type=int, default=20_000, help="messages stored first")
    parser.add_argument("--messages", type=int, default=3_000, help="messages measured")
    parser.add_argument("--group", type=int, default=20, help="messages per group commit")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    if min(args.prefill, args.messages - 1, args.group - 1, args.rounds - 1) < 0:
        parser.error("--messages, --group and --rounds are at least 1, --prefill at least 0")
    stopping.run(main(args))


if __name__ == "__main__":
    cli()
