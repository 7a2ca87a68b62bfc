"""Outage drill: the partner goes down, slow, flapping and erroring while messages keep coming.

Run: ``python -m benchmarks.outage_drill`` (``--phase-seconds`` to lengthen the phases).

A fresh ``ggk init`` setup; ``ggk serve`` as a subprocess (delivery timeout 1 s, backoff
0.2 s doubling up to 2 s); the partner is an HTTP sink in this process that goes through
phases: healthy → down (not listening) → slow (answers after 2 s, beyond the timeout) →
flapping (every other request 503) → errors (all 503) → healthy. Every tenth message is one the
partner always refuses with HTTP 400 (a permanent failure). Messages are sent steadily over
SOAP/mTLS through all phases. At the end it checks:

- every message that is not permanently refused was delivered;
- the dead-letter queue holds exactly the permanently refused messages;
- no retry came sooner than the backoff allows (half of min(cap, base·2^(n-1)), the jitter's
  lower bound, less 50 ms for scheduling).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import ssl
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiohttp import web

from benchmarks import stopping
from gateway import soap
from kit.harness import (
    DI01_ACTION,
    client_tls,
    demo_gateway,
    jw301_request,
    start_gateway,
    start_sink,
)

BASE, CAP, TIMEOUT = 0.2, 2.0, 1.0
PAGE = 1000


class Partner:
    def __init__(self) -> None:
        self.mode = "healthy"
        self.delivered: set[str] = set()
        self.attempts: dict[str, list[float]] = {}
        self.flip = False
        self.permanent: set[str] = set()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        key = request.headers.get("Idempotency-Key", "?").split(":")[0]
        self.attempts.setdefault(key, []).append(time.monotonic())
        if key in self.permanent:
            return web.Response(status=400, text="this message is refused for good")
        if self.mode == "slow":
            await asyncio.sleep(2 * TIMEOUT)
        elif self.mode == "errors":
            return web.Response(status=503)
        elif self.mode == "flapping":
            self.flip = not self.flip
            if self.flip:
                return web.Response(status=503)
        self.delivered.add(key)
        return web.Response(status=204)

    async def up(self) -> None:
        self.runner, self.port = await start_sink(self.handle, self.port)

    async def down(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


async def dead_letters(
    session: aiohttp.ClientSession, url: str, context: ssl.SSLContext, admin: str
) -> set[str]:
    """Every dead letter's referentienummer, page by page: the API serves at most
    ``PAGE`` per request and says where the next page starts (``next``)."""
    found: set[str] = set()
    after: int | None = 0
    while after is not None:
        async with session.get(
            f"{url}/api/v1/admin/dead-letters",
            params={"limit": str(PAGE), "after": str(after)},
            ssl=context,
            headers={"Authorization": f"Bearer {admin}"},
        ) as r:
            listing = await r.json()
            if r.status != 200:
                raise RuntimeError(f"dead-letter listing failed: {listing}")
        found |= {d["referentienummer"] for d in listing["dead_letters"]}
        after = listing["next"]
    return found


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--phase-seconds", type=float, default=4.0)
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second")
    args = parser.parse_args()

    partner = Partner()
    await partner.up()
    tmp = Path(tempfile.mkdtemp(prefix="ggk-outage-"))
    directory = tmp / "gw"
    port = demo_gateway(
        directory,
        partner.port,
        backoff_base=BASE,
        backoff_max=CAP,
        timeout=TIMEOUT,
        max_attempts=1000,
    )
    context = client_tls(directory)
    url = f"https://127.0.0.1:{port}"
    process = await start_gateway(directory / "gateway.toml", url, context)
    admin = (directory / "secrets" / "tokens.toml").read_text().split('admin = "')[1].split('"')[0]
    sent: list[str] = []
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession() as session:

            async def send_steadily(stop: asyncio.Event) -> None:
                i = 0
                while not stop.is_set():
                    ref = str(uuid.uuid4())
                    if i % 10 == 9:
                        partner.permanent.add(ref)
                    body = jw301_request(f"O{i:011d}", ref)
                    async with session.post(
                        f"{url}/ggk/OntvangAsynchroon",
                        data=body,
                        ssl=context,
                        headers={
                            "Content-Type": soap.CONTENT_TYPE,
                            "SOAPAction": f'"{DI01_ACTION}"',
                        },
                    ) as r:
                        await r.read()
                        if r.status != 200:
                            raise RuntimeError(f"gateway refused a message: HTTP {r.status}")
                    sent.append(ref)
                    i += 1
                    await asyncio.sleep(1 / args.rate)

            stop = asyncio.Event()
            sender = asyncio.create_task(send_steadily(stop))
            for mode in ("healthy", "down", "slow", "flapping", "errors", "healthy"):
                print(f"partner {mode} for {args.phase_seconds:g} s", file=sys.stderr)
                if mode == "down":
                    await partner.down()
                elif partner.runner is None:
                    await partner.up()
                partner.mode = mode
                await asyncio.sleep(args.phase_seconds)
            stop.set()
            await sender
            retryable = set(sent) - partner.permanent
            deadline = time.monotonic() + 120
            while not retryable <= partner.delivered and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            await asyncio.sleep(1)
            dead = await dead_letters(session, url, context, admin)
    finally:
        process.terminate()
        await process.wait()
        await partner.down()
    too_early = 0
    for attempts in partner.attempts.values():
        for n, (a, b) in enumerate(itertools.pairwise(attempts), start=1):
            if b - a < 0.5 * min(CAP, BASE * 2 ** (n - 1)) - 0.05:
                too_early += 1
    missing = (set(sent) - partner.permanent) - partner.delivered
    retries = sum(len(a) - 1 for a in partner.attempts.values())
    print(
        f"# outage drill: {len(sent)} messages over {time.monotonic() - started:.0f} s, "
        f"phases of {args.phase_seconds:g} s\n"
    )
    print(
        "| sent | permanent (HTTP 400) | delivered | missing | dead letters | retries | "
        "retries sooner than the backoff |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {len(sent)} | {len(partner.permanent)} | {len(partner.delivered)} | "
        f"{len(missing)} | {len(dead)} | {retries} | {too_early} |"
    )
    shutil.rmtree(tmp, ignore_errors=True)
    if missing or dead != partner.permanent or too_early:
        raise SystemExit("outage drill FAILED: see the table")


if __name__ == "__main__":
    stopping.run(main())
