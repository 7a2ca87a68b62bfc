"""Load run against a real gateway: accepted msg/s, Bv03 latency, delivered msg/s.

Run: ``python -m benchmarks.load`` (``--messages``, ``--concurrency``, ``--rate``).

It makes a fresh ``ggk init`` setup in a temporary directory, starts ``ggk serve`` as its own
process, and sends JW301 toewijzingen from gemeente 0175 to zorgaanbieder 87654321 as
StUF-GGk ggk_Di01 over SOAP 1.1 with mutual TLS (keep-alive connections). 87654321 is
delivered by the http adapter to a sink on loopback in this process. Each message has its own
referentienummer and Identificatie, so every one is a new, fully validated message.

Per audit setting (``--audit both`` measures on and off in one run, each on a fresh
gateway), two phases: *saturation* (``--concurrency`` requests in flight, as fast as it goes) and
*fixed rate* (``--rate`` messages per second offered, open loop, for latency). The load
generator shares the 2-core machine with the gateway, which the figures include.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiohttp import web

from benchmarks.harness import client_tls, demo_gateway, jw301_request, start_gateway, start_sink
from gateway import soap


class Sink:
    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.count += 1
        self.last = time.perf_counter()
        return web.Response(status=204)


def message(i: int) -> bytes:
    return jw301_request(f"B{i:011d}", str(uuid.uuid4()))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def send(
    session: aiohttp.ClientSession, url: str, body: bytes, latencies: list[float]
) -> None:
    started = time.perf_counter()
    async with session.post(
        url,
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
    args: argparse.Namespace, sink: Sink, sink_port: int, audit_on: bool
) -> list[str]:
    """One fresh gateway; returns the table rows of its saturation and fixed-rate phases."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "gw"
        port = demo_gateway(directory, sink_port)
        if not audit_on:
            config = directory / "gateway.toml"
            config.write_text(config.read_text().replace("[audit]\n", "[audit]\nenabled = false\n"))
        base = f"https://127.0.0.1:{port}"
        ssl_context = client_tls(directory)
        server = await start_gateway(directory, base, ssl_context)
        try:
            url = f"https://127.0.0.1:{port}/ggk/OntvangAsynchroon"
            connector = aiohttp.TCPConnector(ssl=ssl_context, limit=args.concurrency)
            label = "on" if audit_on else "off"
            async with aiohttp.ClientSession(connector=connector) as session:
                warm = [message(10**9 + i) for i in range(50)]
                before = sink.count
                await asyncio.gather(*(send(session, url, b, []) for b in warm))
                await wait_delivered(sink, before + 50)

                bodies = [message(i) for i in range(args.messages)]
                latencies: list[float] = []
                queue: asyncio.Queue[bytes] = asyncio.Queue()
                for body in bodies:
                    queue.put_nowait(body)
                before = sink.count
                started = time.perf_counter()

                async def worker() -> None:
                    while not queue.empty():
                        await send(session, url, queue.get_nowait(), latencies)

                await asyncio.gather(*(worker() for _ in range(args.concurrency)))
                accepted_s = time.perf_counter() - started
                await wait_delivered(sink, before + args.messages)
                rows.append(
                    row(
                        f"saturation, audit {label}",
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
                    tasks.append(asyncio.create_task(send(session, url, body, latencies)))
                await asyncio.gather(*tasks)
                elapsed = time.perf_counter() - started
                await wait_delivered(sink, before + total)
                rows.append(
                    row(
                        f"{args.rate:g} msg/s offered, audit {label}",
                        total,
                        elapsed,
                        sink.last - started,
                        latencies,
                    )
                )
        finally:
            server.terminate()
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
    args = parser.parse_args()

    sink = Sink()
    runner, sink_port = await start_sink(sink.handle)
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.audit]
    print(
        f"# load benchmark: JW301 over SOAP/mTLS, {args.concurrency} in flight at "
        "saturation, http delivery to a loopback sink\n"
    )
    print("| phase | accepted msg/s | delivered msg/s | Bv03 p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    try:
        for audit_on in modes:
            for line in await measure(args, sink, sink_port, audit_on):
                print(line, flush=True)
    finally:
        await runner.cleanup()


async def wait_delivered(sink: Sink, count: int, timeout: float = 300) -> None:
    deadline = time.perf_counter() + timeout
    while sink.count < count:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"only {sink.count} of {count} delivered")
        await asyncio.sleep(0.01)


if __name__ == "__main__":
    asyncio.run(main())
