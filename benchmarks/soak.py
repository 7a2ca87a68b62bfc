"""Soak: does the gateway's memory stay flat? (issue 29, goal 7)

Run: ``python -m benchmarks.soak --rate 100 --seconds 3600`` (``--warmup`` 600 s by default).

A fresh ``ggk init`` setup and one ``ggk serve`` process; this process sends the realistic mix
of :mod:`benchmarks.mix` open loop at ``--rate`` msg/s, alternately over SOAP (mTLS, the
sender's client certificate) and REST (``POST /api/v1/messages`` with the sender's bearer
token), and is every addressee's receiving system: an HTTP sink that acknowledges each delivery
(204). Every ``--sample`` seconds it reads the resident set (VmRSS) of the ``ggk serve``
process and of its process tree (with the validation worker).

Reported: RSS at the end of the warm-up and at the end, the growth between them, growth per
1,000 messages sent after the warm-up, and the messages refused or not delivered. ``--json``
writes every sample. ``--tracemalloc FILE`` starts the gateway with ``GGK_TRACEMALLOC=FILE``
(see gateway/memtrace.py) and signals it (SIGUSR2) at the end of the warm-up and at the end:
the second dump in FILE is what grew after the warm-up, by allocating traceback (file and
line only). Tracing slows the gateway: measure RSS without it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import ssl
import sys
import tempfile
import time
import tomllib
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

from benchmarks import mix, stopping
from benchmarks.run import Sink, process_tree
from gateway import soap
from gateway.memtrace import ENV_FILE
from kit.harness import DI01_ACTION, prepare_gateways, start_gateway, start_sink


@dataclass(slots=True)
class Sample:
    seconds: float
    sent: int
    """Requests answered so far."""
    rss_mib: float
    """VmRSS of the ``ggk serve`` process."""
    tree_rss_mib: float
    """VmRSS of ``ggk serve`` and its children (the validation worker)."""
    anon_mib: float = 0.0
    """RssAnon of ``ggk serve``: the heap (Python's and the C libraries'), not mapped files."""


@dataclass(slots=True)
class Report:
    rate: float
    seconds: float
    warmup: float
    sent: int = 0
    """Requests answered (accepted or refused)."""
    achieved_per_s: float = 0.0
    """What the load generator managed on a busy machine (at most ``rate``)."""
    refused: int = 0
    delivered: int = 0
    rss_at_warmup_mib: float = 0.0
    rss_at_end_mib: float = 0.0
    growth_mib: float = 0.0
    growth_kib_per_1000: float = 0.0
    tree_growth_mib: float = 0.0
    trend_kib_per_1000: float = 0.0
    """Least-squares slope of RSS over messages answered after the warm-up: robust against
    the swing of single samples (a 1 MB declaratie in flight is a MiB or two)."""
    samples: list[Sample] = field(default_factory=list)


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sample(seconds: float, answered: int, pid: int) -> Sample:
    return Sample(seconds, answered, rss_mib(pid), tree_rss_mib(pid), rss_mib(pid, "RssAnon"))


def tree_rss_mib(pid: int) -> float:
    total = 0.0
    for p in process_tree(pid):
        with contextlib.suppress(FileNotFoundError):  # a child that just ended
            total += rss_mib(p)
    return total


async def dump_now(server: asyncio.subprocess.Process, path: Path, timeout: float = 120) -> None:
    """SIGUSR2 to the gateway, and wait until its tracemalloc dump is in ``path`` (taking a
    snapshot of a large heap takes seconds; SIGTERM before it would cut it short)."""

    def dumps() -> int:
        return path.read_text().count("## dump ") if path.exists() else 0

    before = dumps()
    server.send_signal(signal.SIGUSR2)
    deadline = time.perf_counter() + timeout
    while dumps() == before and time.perf_counter() < deadline:
        await asyncio.sleep(0.2)


class Senders:
    """Per sending partner one mTLS session (SOAP) and one bearer-token session (REST)."""

    def __init__(self, directory: Path, url: str) -> None:
        self.url = url
        tokens = tomllib.loads((directory / "secrets" / "tokens.toml").read_text())["partners"]
        pki = directory / "pki"
        self.soap: dict[str, aiohttp.ClientSession] = {}
        self.rest: dict[str, aiohttp.ClientSession] = {}
        for sender in ("0150", "0175", "12345678", "87654321"):
            with_cert = ssl.create_default_context(cafile=str(pki / "ca.crt"))
            with_cert.load_cert_chain(
                str(pki / f"client-{sender}.crt"), str(pki / f"client-{sender}.key")
            )
            self.soap[sender] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=with_cert, limit=16),
                headers={"Content-Type": soap.CONTENT_TYPE, "SOAPAction": f'"{DI01_ACTION}"'},
            )
            plain = ssl.create_default_context(cafile=str(pki / "ca.crt"))
            self.rest[sender] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=plain, limit=16),
                headers={
                    "Authorization": f"Bearer {tokens[sender]}",
                    "Content-Type": "application/xml",
                },
            )
        self.statuses: dict[str, int] = {}

    async def send(self, message: mix.Outgoing, rest: bool) -> bool:
        if rest:
            request = self.rest[message.sender].post(
                f"{self.url}/api/v1/messages",
                data=message.payload,
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
        else:
            request = self.soap[message.sender].post(
                f"{self.url}/ggk/OntvangAsynchroon", data=message.body
            )
        try:
            async with request as response:
                await response.read()
                ok = response.status in (200, 201, 202)
        except aiohttp.ClientError as problem:
            key = type(problem).__name__
            self.statuses[key] = self.statuses.get(key, 0) + 1
            return False
        if not ok:
            key = f"{'REST' if rest else 'SOAP'} HTTP {response.status}"
            self.statuses[key] = self.statuses.get(key, 0) + 1
        return ok

    async def close(self) -> None:
        for session in (*self.soap.values(), *self.rest.values()):
            await session.close()


def kinds(seed: int) -> list[str]:
    """The mix's kinds, drawn as benchmarks.mix.draw does but one at a time."""
    rng = random.Random(seed)
    return rng.choices(list(mix.WEIGHTS), weights=list(mix.WEIGHTS.values()), k=10_000)


async def soak(args: argparse.Namespace) -> Report:
    report = Report(args.rate, args.seconds, args.warmup)
    sink = Sink()
    runner, sink_port = await start_sink(sink.handle)
    with tempfile.TemporaryDirectory(prefix="ggk-soak-") as tmp:
        directory = Path(tmp) / "gw"
        configs, ports = prepare_gateways(directory, sink_port, receivers=mix.RECEIVERS)
        check = ssl.create_default_context(cafile=str(directory / "pki" / "ca.crt"))
        url = f"https://127.0.0.1:{ports[0]}"
        if args.tracemalloc:
            os.environ[ENV_FILE] = str(Path(args.tracemalloc).resolve())
        server = await start_gateway(configs[0], url, check)
        os.environ.pop(ENV_FILE, None)
        senders = Senders(directory, url)
        drawn = kinds(seed=7)
        tasks: set[asyncio.Task[bool]] = set()
        refused = answered = 0

        def done(task: asyncio.Task[bool]) -> None:
            nonlocal refused, answered
            tasks.discard(task)
            answered += 1
            if task.cancelled() or task.exception() is not None or not task.result():
                refused += 1

        started = time.perf_counter()
        origin = started  # message i is due at origin + i/rate
        next_sample = 0.0
        warm_signalled = False
        try:
            i = 0
            while True:
                now = time.perf_counter() - started
                if now >= args.seconds:
                    break
                if now >= next_sample:
                    report.samples.append(sample(now, answered, server.pid))
                    last = report.samples[-1]
                    print(
                        f"[soak {now:6.0f} s] answered {answered:,} ({len(tasks)} in flight), "
                        f"refused {refused}, delivered "
                        f"{sink.count:,}, ggk serve RSS {last.rss_mib:.1f} MiB "
                        f"(with worker {last.tree_rss_mib:.1f})",
                        file=sys.stderr,
                        flush=True,
                    )
                    next_sample += args.sample
                if not warm_signalled and now >= args.warmup:
                    warm_signalled = True
                    report.samples.append(sample(now, answered, server.pid))
                    if args.tracemalloc:
                        server.send_signal(signal.SIGUSR2)
                delay = origin + i / args.rate - time.perf_counter()
                if delay > 0 or len(tasks) >= args.in_flight:
                    # on a busy machine the generator falls behind rather than pile up
                    # requests without end (reported as the achieved rate)
                    await asyncio.sleep(min(max(delay, 0.005), args.sample))
                    if delay <= 0:
                        origin += 0.005  # the schedule slides: no burst to catch up later
                    continue
                message = mix.message(drawn[i % len(drawn)], i)
                task = asyncio.create_task(senders.send(message, rest=i % 2 == 1))
                tasks.add(task)
                task.add_done_callback(done)
                i += 1
            if tasks:
                await asyncio.wait(tasks)
            report.sent = answered
            report.achieved_per_s = answered / (time.perf_counter() - started)
            report.refused = refused
            deadline = time.perf_counter() + 120
            while sink.count < i - refused and time.perf_counter() < deadline:
                await asyncio.sleep(0.1)
            report.delivered = sink.count
            end = time.perf_counter() - started
            report.samples.append(sample(end, answered, server.pid))
            report.rss_at_end_mib = report.samples[-1].rss_mib
            if args.tracemalloc:
                await dump_now(server, Path(args.tracemalloc))
        finally:
            await senders.close()
            server.terminate()
            await server.wait()
            await runner.cleanup()
        if senders.statuses:
            print(f"refusals: {senders.statuses}", file=sys.stderr)
    at_warmup = next(s for s in report.samples if s.seconds >= args.warmup)
    last = report.samples[-1]
    report.rss_at_warmup_mib = at_warmup.rss_mib
    report.growth_mib = last.rss_mib - at_warmup.rss_mib
    report.tree_growth_mib = last.tree_rss_mib - at_warmup.tree_rss_mib
    after = max(1, last.sent - at_warmup.sent)
    report.growth_kib_per_1000 = report.growth_mib * 1024 / after * 1000
    report.trend_kib_per_1000 = slope(
        [(x.sent, x.rss_mib) for x in report.samples if x.seconds >= args.warmup]
    )
    return report


def slope(points: list[tuple[int, float]]) -> float:
    """KiB per 1,000 messages of the least-squares line through (messages, MiB)."""
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0
    rise = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return rise / spread * 1024 * 1000


def table(report: Report) -> str:
    return "\n".join(
        [
            f"# soak: {report.rate:g} msg/s offered ({report.achieved_per_s:.1f} achieved) for "
            f"{report.seconds:g} s, SOAP and REST mixed, warm-up {report.warmup:g} s",
            "",
            "| sent | refused | delivered | RSS at warm-up MiB | RSS at end MiB | growth MiB "
            "| growth KiB per 1,000 msgs | trend KiB per 1,000 msgs | growth with worker MiB |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {report.sent:,} | {report.refused} | {report.delivered:,} | "
            f"{report.rss_at_warmup_mib:.1f} | {report.rss_at_end_mib:.1f} | "
            f"{report.growth_mib:+.1f} | {report.growth_kib_per_1000:+.2f} | "
            f"{report.trend_kib_per_1000:+.2f} | "
            f"{report.tree_growth_mib:+.1f} |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=100.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=3600.0, help="length of the run")
    parser.add_argument("--warmup", type=float, default=600.0, help="growth counted after")
    parser.add_argument("--sample", type=float, default=10.0, help="RSS sampling interval (s)")
    parser.add_argument(
        "--in-flight", type=int, default=256, help="at most this many requests unanswered"
    )
    parser.add_argument("--json", metavar="FILE", help="the report and every sample")
    parser.add_argument("--tracemalloc", metavar="FILE", help="trace the gateway's allocations")
    args = parser.parse_args()
    if args.rate <= 0 or args.sample <= 0 or not 0 <= args.warmup < args.seconds:
        parser.error("--rate and --sample must be positive, and --warmup below --seconds")
    report = stopping.run(soak(args))
    print(table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(report), indent=2))
    if report.refused or report.delivered < report.sent:
        raise SystemExit("soak: messages were refused or not delivered (see above)")


if __name__ == "__main__":
    main()
