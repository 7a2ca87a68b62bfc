"""Crash drill: steady load, ``kill -9`` of the gateway at random moments, restarts; then
compare what got a Bv03 with what the partner received.

Run: ``python -m benchmarks.crash_drill --kills 20`` (``--seed`` repeats a run).

A fresh ``ggk init`` setup; ``ggk serve`` as a subprocess; a partner sink (http adapter) in
this process that records every delivery and its Idempotency-Key. Senders behave as StUF
asks: a message without an answer (connection refused or cut) is re-offered unchanged — same
referentienummer — until it gets a Bv03. The killer waits a random 0.3–2 s, sends SIGKILL,
restarts the gateway and waits until it is healthy, ``--kills`` times. At the end it waits for
all deliveries and reports:

- lost: messages that got a Bv03 but never reached the partner (must be 0);
- redelivered: deliveries the partner saw more than once, all with the same idempotency key
  (at-least-once: a delivery in flight when the gateway died is sent again);
- duplicates after the receiver drops repeated idempotency keys: one payload Identificatie
  delivered under two keys, i.e. one message accepted twice (must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
from aiohttp import web
from lxml import etree

from benchmarks.harness import (
    DI01_ACTION,
    client_tls,
    demo_gateway,
    jw301_request,
    start_gateway,
    start_sink,
)
from gateway import envelope as env
from gateway import soap

IDENTIFICATIE = re.compile(rb"<ijw:Identificatie>([^<]+)<")


class Sink:
    """The partner: counts deliveries per idempotency key, and which keys each payload
    Identificatie arrived under (two keys for one Identificatie = the same message accepted
    twice, a duplicate that key-based dedup at the receiver would not catch)."""

    def __init__(self) -> None:
        self.keys: Counter[str] = Counter()
        self.keys_by_identificatie: dict[str, set[str]] = {}

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        key = request.headers.get("Idempotency-Key", "?").split(":")[0]
        self.keys[key] += 1
        payload = env.parse(etree.fromstring(body)).payload
        found = IDENTIFICATIE.search(payload)
        ident = found.group(1).decode() if found else "?"
        self.keys_by_identificatie.setdefault(ident, set()).add(key)
        return web.Response(status=204)


class Drill:
    def __init__(self, directory: Path, port: int, seed: int) -> None:
        self.directory = directory
        self.port = port
        self.rng = random.Random(seed)
        self.process: asyncio.subprocess.Process | None = None
        self.confirmed: set[str] = set()
        self.offers = 0
        self.ssl = client_tls(directory)
        self.url = f"https://127.0.0.1:{port}"

    async def start(self) -> None:
        self.process = await start_gateway(self.directory / "gateway.toml", self.url, self.ssl)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL

    async def sender(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        while not stop.is_set():
            ref = str(uuid.uuid4())
            body = jw301_request(f"C{ref[:11]}", ref)
            while True:  # re-offer unchanged until answered (StUF 03.01 §4.4)
                self.offers += 1
                try:
                    async with session.post(
                        f"{self.url}/ggk/OntvangAsynchroon",
                        data=body,
                        ssl=self.ssl,
                        headers={
                            "Content-Type": soap.CONTENT_TYPE,
                            "SOAPAction": f'"{DI01_ACTION}"',
                        },
                    ) as r:
                        answer = await r.read()
                    if r.status == 200 and b"Bv03Bericht" in answer:
                        self.confirmed.add(ref)
                        break
                    raise RuntimeError(f"refused: HTTP {r.status} {answer[:200]!r}")
                except (TimeoutError, aiohttp.ClientError, OSError):
                    await asyncio.sleep(0.05)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)

    sink = Sink()
    runner, sink_port = await start_sink(sink.handle)
    tmp = Path(tempfile.mkdtemp(prefix="ggk-drill-"))
    directory = tmp / "gw"
    port = demo_gateway(directory, sink_port, backoff_base=0.1, backoff_max=1.0, max_attempts=1000)

    drill = Drill(directory, port, seed)
    started = time.monotonic()
    try:
        await drill.start()
        stop = asyncio.Event()
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            senders = [
                asyncio.create_task(drill.sender(session, stop)) for _ in range(args.senders)
            ]
            for kill in range(1, args.kills + 1):
                await asyncio.sleep(drill.rng.uniform(0.3, 2.0))
                drill.kill()
                assert drill.process is not None
                await drill.process.wait()
                await drill.start()
                print(
                    f"\rkill {kill}/{args.kills}: {len(drill.confirmed)} confirmed, "
                    f"{sum(sink.keys.values())} deliveries",
                    end="",
                    file=sys.stderr,
                )
            stop.set()
            await asyncio.gather(*senders)
        print(file=sys.stderr)
        deadline = time.monotonic() + 120
        while not drill.confirmed <= set(sink.keys) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        lost = drill.confirmed - set(sink.keys)
        unconfirmed_delivered = set(sink.keys) - drill.confirmed
        redelivered = sum(n - 1 for n in sink.keys.values() if n > 1)
        doubled = sum(1 for keys in sink.keys_by_identificatie.values() if len(keys) > 1)
        print(
            f"# crash drill (seed {seed}): {args.kills} × kill -9 under load, "
            f"{args.senders} senders, {time.monotonic() - started:.0f} s\n"
        )
        print(
            "| Bv03s (messages) | offers incl. re-offers | delivered (unique) | lost | "
            "redelivered, same key | duplicates after dedup by key |"
        )
        print("|---|---|---|---|---|---|")
        print(
            f"| {len(drill.confirmed)} | {drill.offers} | {len(sink.keys)} | {len(lost)} | "
            f"{redelivered} | {doubled} |"
        )
        if unconfirmed_delivered:
            print(
                f"\n{len(unconfirmed_delivered)} delivered messages never got a Bv03 "
                "(should be 0: every offer is repeated until answered)"
            )
        if lost or doubled:
            raise SystemExit(f"LOST {len(lost)} messages that got a Bv03; {doubled} accepted twice")
    finally:
        if drill.process is not None and drill.process.returncode is None:
            drill.process.terminate()
            await drill.process.wait()
        await runner.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
