"""What a request costs when the store holds years of history, not a fresh file.

The benchmark runs (``python -m benchmarks run``) start from an empty database, which hides
any cost that grows with the history: a query planned on the wrong index is as fast as the
right one on a few thousand rows. This fills a real SQLite file with ``--messages`` delivered
messages (half of them heenberichten, nearly all answered; spread over a year and over
``--partners`` receivers, as a national gateway's store looks after a while) and times what
a partner's request, a delivery outcome, the Kafka view's update and an operator's scrape do
on it. Medians of ``--repeat`` runs, each on a different message.

    python -m benchmarks.history --messages 1000000

Run it on two versions of the code (``PYTHONPATH`` at a ``git worktree`` of the other) to
see what a plan change buys; ``tests/test_query_plans.py`` keeps the per-message statements
on narrowing indexes.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks import stopping
from gateway.broker.sqlite import SqliteBroker
from gateway.broker.sqlite_view import LocalView, ViewWrite
from gateway.broker.sqlite_views import AWAITING_RETOUR
from gateway.keyring import Keyring

YEAR = 365 * 86400.0
RETENTION = 30 * 86400.0
"""``[audit] retention_days``' default."""
CHUNK = 50_000


def _rows(
    count: int, partners: int, now: float, inbox_every: int, dead_every: int
) -> Iterator[tuple[tuple[Any, ...], ...]]:
    """(message, delivery) rows: a heenbericht, then mostly (98 %) its retour the other way.
    A message row ends with when it was answered (for the versions that keep that); every
    ``inbox_every``-th delivery waits in an inbox, every ``dead_every``-th is dead."""
    rng = random.Random(7)
    heen_functie = AWAITING_RETOUR[0]
    for n in range(0, count - 1, 2):
        gemeente = f"{rng.randrange(partners):04d}"
        aanbieder = f"{rng.randrange(partners):08d}"
        at = now - YEAR + YEAR * n / count
        answered = rng.random() >= 0.02
        for i, (kind, zender, ontvanger) in enumerate(
            (("Di01", gemeente, aanbieder), ("Du01", aanbieder, gemeente))
        ):
            m = n + i
            heen_id = f"m{n}" if kind == "Du01" and answered else None
            answered_at = at + 1 if kind == "Di01" and answered else None
            message = (
                f"m{m}",
                at + i,
                kind,
                zender,
                "App",
                ontvanger,
                f"ref-{m}",
                heen_functie if kind == "Di01" else "retour",
                "x",
                b"",
                "bv",
                "20260101000000000",
                heen_id,
                # retention has already dropped the payloads older than RETENTION
                at + RETENTION if at < now - RETENTION else None,
                answered_at,
            )
            state = (
                "inbox" if m % inbox_every == 0 else "dead" if m % dead_every == 0 else "delivered"
            )
            adapter = "inbox" if state == "inbox" else "http"
            yield message, (f"m{m}", ontvanger, adapter, 0, state, at + i, at + i)


def fill(
    path: Path, count: int, partners: int, now: float, inbox_every: int = 97, dead_every: int = 1009
) -> None:
    """The rows, in bulk, into a file that already has the schema of the code under test
    (the gateway's own path would take hours for a million; the rows are what it leaves)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    columns = [
        "id", "received_at", "kind", "zender", "zender_applicatie", "ontvanger",
        "referentienummer", "functie", "digest", "envelope", "bv03_ref", "bv03_tijdstip",
        "heen_id", "purged_at", "answered_at",
    ]  # fmt: skip
    if "answered_at" not in {row[1] for row in db.execute("PRAGMA table_info(messages)")}:
        columns.pop()  # code from before the column
    insert = (
        f"INSERT INTO messages ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    )
    rows = _rows(count, partners, now, inbox_every, dead_every)
    done = 0
    while done < count:
        chunk = list(itertools.islice(rows, CHUNK))
        if not chunk:
            break
        db.execute("BEGIN")
        db.executemany(insert, [m[: len(columns)] for m, _ in chunk])
        db.executemany(
            "INSERT INTO deliveries (message_id, destination, adapter, copy, state, "
            "next_attempt_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [d for _, d in chunk],
        )
        db.execute("COMMIT")
        done += len(chunk)
        print(f"  filled {done:,} of {count:,}", flush=True)
    db.close()  # not ANALYZEd: neither is a production file, the planner works without stats


async def _median_ms(repeat: int, make: Callable[[int], Awaitable[Any]]) -> float:
    times = []
    for i in range(repeat):
        start = time.perf_counter()
        await make(i)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def measure(
    path: Path, count: int, repeat: int, now: float, inbox_every: int = 97
) -> list[tuple[str, float]]:
    broker = SqliteBroker(path, Keyring.generate(), audit_enabled=False)
    await broker.start()
    await LocalView(broker).create()
    rng = random.Random(11)
    picks = [rng.randrange(count) for _ in range(repeat)]
    inbox = [n for n in range(0, count, inbox_every)][-repeat:]
    rows = await broker.read(
        f"SELECT id, zender, ontvanger FROM messages WHERE id IN ({', '.join('?' for _ in picks)})",
        tuple(f"m{n}" for n in picks),
    )
    who = {r["id"]: (r["zender"], r["ontvanger"]) for r in rows}

    def message(i: int) -> tuple[str, str, str]:
        mid = f"m{picks[i]}"
        return mid, *who[mid]

    def delivery_update(db: sqlite3.Connection, i: int) -> None:
        mid, _, ontvanger = message(i)
        ViewWrite(broker, db).delivery(
            {
                "message_id": mid,
                "destination": ontvanger,
                "state": "delivered",
                "attempts": 2,
                "round": 0,
                "at": now,
                "event": "delivered",
                "detail": "again",
            },
        )

    async def ack(i: int) -> None:
        mid = f"m{inbox[i]}"
        (row,) = await broker.read("SELECT ontvanger FROM messages WHERE id = ?", (mid,))
        assert await broker.ack(row["ontvanger"], mid)

    results = [
        ("status, as the receiving partner", lambda i: broker.view(message(i)[0], message(i)[2])),
        ("status, as the sender", lambda i: broker.view(message(i)[0], message(i)[1])),
        ("inbox acknowledgement", ack),
        (
            "Kafka view: a delivery's new state",
            lambda i: broker.write(functools.partial(delivery_update, i=i)),
        ),
        ("partner's sent list (50)", lambda i: broker.sent(message(i)[1], 50)),
        ("partner's inbox list (50)", lambda i: broker.inbox(message(i)[2], 50)),
        ("metrics scrape: delivery counts", lambda i: broker.counts()),
        ("metrics scrape: queues and overdue", lambda i: broker.ops_snapshot(now - 14 * 86400)),
        ("overdue retours (100)", lambda i: broker.overdue(now - 14 * 86400, 100)),
        # the hourly retention run, in the writer: every accept waits for it
        ("retention run (an hour's worth)", lambda i: broker.purge(now - RETENTION + i * 3600)),
    ]
    measured = [(name, await _median_ms(repeat, make)) for name, make in results]
    await broker.close()
    return measured


async def main(args: argparse.Namespace) -> None:
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.sqlite"
        # the schema and indexes of the code under test, then the rows
        schema = SqliteBroker(path, Keyring.generate(), audit_enabled=False)
        await schema.start()
        await schema.close()
        print(f"filling {args.messages:,} messages over {args.partners} partners …", flush=True)
        started = time.perf_counter()
        fill(path, args.messages, args.partners, now, args.inbox_every, args.dead_every)
        print(f"  {time.perf_counter() - started:.0f} s, {path.stat().st_size / 2**20:.0f} MiB")
        measured = await measure(path, args.messages, args.repeat, now, args.inbox_every)
    print(f"\n| operation ({args.messages:,} messages in the store) | median ms |")
    print("|---|---:|")
    for name, ms in measured:
        print(f"| {name} | {ms:.2f} |")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--partners", type=int, default=340)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--inbox-every", type=int, default=97, help="every n-th delivery waits in an inbox"
    )
    parser.add_argument(
        "--dead-every", type=int, default=1009, help="every n-th delivery is a dead letter"
    )
    stopping.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
