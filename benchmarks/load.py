"""Load run against a real gateway: accepted msg/s, Bv03 latency, delivered msg/s.

Run: ``python -m benchmarks.load`` (``--messages``, ``--concurrency``, ``--rate``).

It makes a fresh ``ggk init`` setup in a temporary directory, starts ``ggk serve`` as its own
process, and sends JW301 toewijzingen from gemeente 0175 to zorgaanbieders as StUF-GGk
ggk_Di01 over SOAP 1.1 with mutual TLS (keep-alive connections), delivered by the http adapter
to a sink on loopback in this process. Each message has its own
referentienummer and Identificatie, so every one is a new, fully validated message.

Scenarios, each on a fresh gateway: the embedded SQLite backend with the audit log on and
off (``--audit``), and with ``--backend both`` (or ``kafka``) the Kafka backend with one and
with two ``ggk serve`` processes (requests spread over them), on a single-node Kafka started
for the run (or ``--kafka host:port``). Messages alternate between two receivers (87654321,
12345678), both delivered over HTTP to the sink. Per scenario, two phases: *saturation*
(``--concurrency`` requests in flight, as fast as it goes) and *fixed rate* (``--rate``
messages per second offered, open loop, for latency). The load generator (and the Kafka
broker) share the 2-core machine with the gateway, which the figures include.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from benchmarks import stopping
from benchmarks.run import Sink
from gateway import soap
from kit.harness import (
    SECOND_SINK_PARTNER,
    SINK_PARTNER,
    client_tls,
    jw301_request,
    kafka_node,
    prepare_gateways,
    start_gateway,
    start_sink,
)


@dataclass(frozen=True)
class Scenario:
    backend: str
    audit: bool = True
    processes: int = 1

    @property
    def label(self) -> str:
        where = "sqlite" if self.backend == "sqlite" else f"kafka ×{self.processes}"
        return f"{where}, audit {'on' if self.audit else 'off'}"


def message(i: int) -> bytes:
    receiver = (SINK_PARTNER, SECOND_SINK_PARTNER)[i % 2]
    return jw301_request(f"B{i:011d}", str(uuid.uuid4()), receiver)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def send(
    session: aiohttp.ClientSession, urls: list[str], body: bytes, latencies: list[float]
) -> None:
    started = time.perf_counter()
    async with session.post(
        urls[len(latencies) % len(urls)],
        data=body,
        headers={
            "Content-Type": soap.CONTENT_TYPE,
            "SOAPAction": '"http://www.stufstandaarden.nl/koppelvlak/ggk0210/ggk_Di01"',
        },
    ) as r:
        await r.read()
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}")
    latencies.append(time.perf_counter() - started)


async def measure(
    args: argparse.Namespace,
    sink: Sink,
    sink_port: int,
    scenario: Scenario,
    bootstrap: str | None,
) -> list[str]:
    """One fresh gateway (or two); returns the table rows of its saturation and fixed-rate
    phases."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "gw"
        configs, ports = prepare_gateways(
            directory,
            sink_port,
            audit=scenario.audit,
            kafka=bootstrap if scenario.backend == "kafka" else None,
            processes=scenario.processes,
        )
        ssl_context = client_tls(directory)
        servers = [
            await start_gateway(c, f"https://127.0.0.1:{p}", ssl_context)
            for c, p in zip(configs, ports, strict=True)
        ]
        try:
            urls = [f"https://127.0.0.1:{p}/ggk/OntvangAsynchroon" for p in ports]
            label = scenario.label
            connector = aiohttp.TCPConnector(ssl=ssl_context, limit=args.concurrency)
            async with aiohttp.ClientSession(connector=connector) as session:
                warm = [message(10**9 + i) for i in range(50)]
                before = sink.count
                await asyncio.gather(*(send(session, urls, b, []) for b in warm))
                await sink.wait_for(before + 50)

                bodies = [message(i) for i in range(args.messages)]
                latencies: list[float] = []
                queue: asyncio.Queue[bytes] = asyncio.Queue()
                for body in bodies:
                    queue.put_nowait(body)
                before = sink.count
                started = time.perf_counter()

                async def worker() -> None:
                    while not queue.empty():
                        await send(session, urls, queue.get_nowait(), latencies)

                await asyncio.gather(*(worker() for _ in range(args.concurrency)))
                accepted_s = time.perf_counter() - started
                await sink.wait_for(before + args.messages)
                rows.append(
                    row(
                        f"{label}: saturation",
                        args.messages,
                        accepted_s,
                        sink.last - started,
                        latencies,
                    )
                )

                total = int(args.rate * args.seconds)
                fixed = [message(2 * 10**9 + i) for i in range(total)]
                latencies = []
                before = sink.count
                started = time.perf_counter()
                tasks = []
                for i, body in enumerate(fixed):
                    delay = started + i / args.rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(send(session, urls, body, latencies)))
                await asyncio.gather(*tasks)
                elapsed = time.perf_counter() - started
                await sink.wait_for(before + total)
                rows.append(
                    row(
                        f"{label}: {args.rate:g} msg/s offered",
                        total,
                        elapsed,
                        sink.last - started,
                        latencies,
                    )
                )
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                await server.wait()
    return rows


def row(
    phase: str, count: int, accepted_s: float, delivered_s: float, latencies: list[float]
) -> str:
    return (
        f"| {phase} | {count / accepted_s:,.0f} | {count / delivered_s:,.0f} | "
        f"{statistics.median(latencies) * 1000:.1f} | "
        f"{percentile(latencies, 0.95) * 1000:.1f} | "
        f"{percentile(latencies, 0.99) * 1000:.1f} |"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=3000, help="saturation phase size")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=300.0, help="fixed-rate phase, msg/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="fixed-rate phase length")
    parser.add_argument("--audit", choices=("on", "off", "both"), default="both")
    parser.add_argument("--backend", choices=("sqlite", "kafka", "both"), default="sqlite")
    parser.add_argument("--kafka", help="bootstrap of a running cluster (default: start one)")
    args = parser.parse_args()

    modes = {"on": [True], "off": [False], "both": [True, False]}[args.audit]
    scenarios = []
    if args.backend in ("sqlite", "both"):
        scenarios += [Scenario("sqlite", audit) for audit in modes]
    if args.backend in ("kafka", "both"):
        scenarios += [Scenario("kafka", True, n) for n in (1, 2)]
    sink = Sink()
    runner, sink_port = await start_sink(sink.handle)
    print(
        f"# load benchmark: JW301 over SOAP/mTLS, {args.concurrency} in flight at "
        "saturation, http delivery to a loopback sink (two receivers)\n"
    )
    print("| scenario: phase | accepted msg/s | delivered msg/s | Bv03 p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    try:
        with contextlib.ExitStack() as stack:
            bootstrap = args.kafka
            if bootstrap is None and args.backend != "sqlite":
                node = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                bootstrap = stack.enter_context(kafka_node(node / "kafka"))
            for scenario in scenarios:
                for line in await measure(args, sink, sink_port, scenario, bootstrap):
                    print(line, flush=True)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    stopping.run(main())
