"""National fan-out: many receiving partners with real latency, at an offered rate.

``python -m benchmarks.fanout --receivers 300 --rate 500 --seconds 10``: a fresh ``ggk init``
gateway (embedded backend, mTLS) with ``--receivers`` extra zorgaanbieders, each delivered over
HTTP to its own path of a sink in this process that answers after 20–80 ms (uniform, per
request) — the shape of the country: ~340 gemeenten and thousands of providers, not five
receivers. Gemeenten 0150 (WMO301, with the CAK copy of the eigen bijdrage) and 0175 (JW301)
send toewijzingen over SOAP, open loop at ``--rate``, each to a random provider.

Reported: accepted/s and Bv03 p50/p99; the share of accepted messages delivered to their
provider when sending stops and 2 s later; delivery lag (Bv03 to arrival at the provider:
p50/p99/max — the age a delivery reached while pending); CAK copies; gateway CPU-s per 1,000
messages and peak RSS. The goal (issue 16): at 500/s, delivered ≥ 0.98 of accepted and no
delivery older than 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import ssl
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from benchmarks import mix, stopping
from benchmarks.run import Clients, Latencies, cpu_seconds, peak_rss_mib, percentile
from gateway import envelope as env
from gateway import soap
from kit.harness import demo_gateway, start_gateway
from kit.messages import SAMPLES, compact

REFERENCE = re.compile(rb"<(?:\w+:)?referentienummer>([^<]+)<")
TEMPLATES = {
    "WMO301": ("0150", compact((SAMPLES / "iwmo" / "wmo301.xml").read_bytes())),
    "JW301": ("0175", compact((SAMPLES / "ijw" / "jw301.xml").read_bytes())),
}


def providers(count: int) -> list[str]:
    """``count`` AGB-shaped codes of test zorgaanbieders (not the demo's own)."""
    return [f"9{n:07d}" for n in range(1, count + 1)]


def add_providers(partners_file: Path, codes: list[str], sink_port: int) -> None:
    """Each provider delivered over HTTP to its own path of the sink; CAK too."""
    blocks = [
        f'[[partner]]\nid = "{code}"\nname = "Aanbieder {code}"\nkind = "aanbieder"\n'
        f'[partner.delivery]\nadapter = "http"\nurl = "http://127.0.0.1:{sink_port}/fan/{code}"\n'
        for code in codes
    ]
    text = partners_file.read_text()
    head, cak, tail = text.partition('id = "CAK"')
    block_end = tail.index("[partner.delivery]")
    next_partner = tail.find("[[partner]]")
    cak_block = (
        f'{tail[:block_end]}[partner.delivery]\nadapter = "http"\n'
        f'url = "http://127.0.0.1:{sink_port}/fan/CAK"\n\n'
    )
    rest = tail[next_partner:] if next_partner != -1 else ""
    partners_file.write_text(head + cak + cak_block + rest + "\n" + "\n".join(blocks))


def toewijzing(kind: str, provider: str, n: int) -> tuple[str, mix.Outgoing]:
    """(referentienummer, request) of toewijzing ``n`` to ``provider``."""
    sender, payload = TEMPLATES[kind]
    original = b"WMO301A0001" if kind == "WMO301" else b"JW301B0001"
    payload = payload.replace(original, f"F{n:011d}".encode(), 1)
    payload = payload.replace(b">12345678<", f">{provider}<".encode(), 1)
    reference = str(uuid.uuid4())
    di01 = env.build_di01(
        payload,
        zender=sender,
        zender_applicatie="Bench",
        ontvanger=provider,
        functie=kind,
        referentienummer=reference,
    )
    return reference, mix.Outgoing(kind, sender, provider, soap.wrap_request(di01), payload)


@dataclass
class Providers:
    """Every provider's receiving system: 20–80 ms per request, arrival times recorded."""

    seed: int = 7
    arrived: dict[str, float] = field(default_factory=dict)
    cak: int = 0

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.sleep(self.random.uniform(0.020, 0.080))
        if request.match_info["partner"] == "CAK":
            self.cak += 1
        else:
            found = REFERENCE.search(body)
            if found:
                self.arrived.setdefault(found.group(1).decode(), time.perf_counter())
        return web.Response(status=204)


async def start_providers(handler: Providers) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_post("/fan/{partner}", handler.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port: int = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


async def main(args: argparse.Namespace) -> None:
    sink = Providers()
    runner, sink_port = await start_providers(sink)
    codes = providers(args.receivers)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "gw"
        settings = {"concurrency": args.concurrency} if args.concurrency else {}
        port = demo_gateway(directory, sink_port, receivers=(), **settings)
        add_providers(directory / "partners.toml", codes, sink_port)
        url = f"https://127.0.0.1:{port}"
        check = ssl.create_default_context(cafile=str(directory / "pki" / "ca.crt"))
        server = await start_gateway(directory / "gateway.toml", url, check)
        # each gemeente keeps at most 16 keep-alive connections, as a partner system would
        clients = Clients(directory, [f"{url}/ggk/OntvangAsynchroon"], True, 16)
        rng = random.Random(1)
        try:
            for n in range(200):  # warm-up: schemas, TLS sessions, every adapter once is not needed
                _, request = toewijzing(rng.choice(list(TEMPLATES)), rng.choice(codes), n)
                await clients.send(request, Latencies())
            await asyncio.sleep(1)
            count = int(args.rate * args.seconds)
            batch = [
                toewijzing(rng.choice(list(TEMPLATES)), rng.choice(codes), 1_000 + n)
                for n in range(count)
            ]
            sink.arrived.clear()
            accepted_at: dict[str, float] = {}
            latencies = Latencies()
            cpu_before = cpu_seconds(server.pid)
            started = time.perf_counter()

            async def one(reference: str, request: mix.Outgoing) -> None:
                if await clients.send(request, latencies):
                    accepted_at[reference] = time.perf_counter()

            tasks = []
            for i, (reference, request) in enumerate(batch):
                delay = started + i / args.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(reference, request)))
            await asyncio.gather(*tasks)
            sending = time.perf_counter() - started
            at_stop = sum(r in sink.arrived for r in accepted_at) / max(1, len(accepted_at))
            await asyncio.sleep(2)
            after_2s = sum(r in sink.arrived for r in accepted_at) / max(1, len(accepted_at))
            deadline = time.perf_counter() + 120
            while len(set(accepted_at) & set(sink.arrived)) < len(accepted_at):
                if time.perf_counter() > deadline:
                    break
                await asyncio.sleep(0.1)
            cpu = cpu_seconds(server.pid) - cpu_before
            lags = [sink.arrived[r] - t for r, t in accepted_at.items() if r in sink.arrived]
            print(
                f"# fan-out: {args.receivers} providers (20-80 ms each), {args.rate:g} msg/s "
                f"offered for {args.seconds:g} s, delivery concurrency "
                f"{args.concurrency or 'default'}\n"
                f"accepted {len(accepted_at)}/{count} ({len(accepted_at) / sending:.0f}/s), "
                f"Bv03 p50/p99 {percentile(latencies.all, 0.5) * 1000:.0f}/"
                f"{percentile(latencies.all, 0.99) * 1000:.0f} ms\n"
                f"delivered to the provider: {at_stop:.3f} of accepted when sending stopped, "
                f"{after_2s:.3f} 2 s later, {len(lags)}/{len(accepted_at)} in the end\n"
                f"delivery lag p50/p99/max {percentile(lags, 0.5) * 1000:.0f}/"
                f"{percentile(lags, 0.99) * 1000:.0f}/{max(lags, default=0) * 1000:.0f} ms; "
                f"CAK copies {sink.cak}\n"
                f"gateway CPU {cpu / max(1, len(accepted_at)) * 1000:.2f} s per 1,000 messages, "
                f"peak RSS {peak_rss_mib(server.pid):.0f} MiB",
                flush=True,
            )
        finally:
            await clients.close()
            server.terminate()
            await server.wait()
            await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fanout", description=__doc__)
    parser.add_argument("--receivers", type=int, default=300)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument(
        "--concurrency", type=int, default=0, help="[delivery] concurrency (default: the config's)"
    )
    stopping.run(main(parser.parse_args()))
