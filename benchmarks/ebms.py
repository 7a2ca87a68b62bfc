"""ebMS2 throughput and cost against the real peer, beside the plain paths, in one run.

``python -m benchmarks.ebms --messages 300``: one gateway process (``ggk serve``, embedded
backend) linked to ebms-core 2.20.2 (../shared/tools/ebms-peer, Java 17) by an osb-rm CPA with
asynchronous acknowledgments, and four phases of ``--messages`` each:

* **in, ebMS**: the peer sends WMO301 Di01s; done when the peer holds every Acknowledgment
  (its DELIVERED events) — receive, check, accept (validation, routing, audit), acknowledge;
* **in, SOAP**: the same messages over the StUF-GGk SOAP endpoint; done at the last Bv03; once
  as fast as 8 clients go, once at the pace the peer set in the ebMS phase (a fair comparison
  of CPU: at a low rate the store's group commit has less to share);
* **out, ebMS**: WMO305s submitted over REST to 0150 (the peer's partner, adapter ``ebms``);
  done when the peer has received them all (our sender saw each Acknowledgment);
* **out, HTTP**: the same to 0175, pushed by the ``http`` adapter to a sink here; again once
  at full speed and once at the ebMS pace.

Reported per phase: messages per second (wall clock) and gateway CPU seconds per 1,000
messages (the gateway process and its children, from /proc), the figure that compares the
protocols; the peer's own CPU is not counted. The peer caps the ebMS rates (it handles roughly
130–170 messages/s on its own, see its README), so the CPU figure is the one to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from benchmarks import stopping
from benchmarks.run import Sink, cpu_seconds
from gateway import soap
from kit.ebmspeer import ASYNC_CPA, KIT, Peer, PlainSetup, di01, prepare, started_peer
from kit.gateway import serve, with_delivery
from kit.harness import DI01_ACTION, SAMPLES, start_sink

WMO305 = (SAMPLES / "iwmo" / "wmo305.xml").read_text()
CONCURRENCY = 8


def wmo305(ontvanger: str) -> bytes:
    return (
        WMO305.replace("WMO305A0001", uuid.uuid4().hex[:12])
        .replace(">0150<", f">{ontvanger}<")
        .encode()
    )


async def _bounded(count: int, one: Callable[[int], Awaitable[None]]) -> None:
    """``one(i)`` for every i below ``count``, :data:`CONCURRENCY` at a time."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            await one(queue.get_nowait())

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def _until(done: Callable[[], Awaitable[bool]], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not await done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not finished within {timeout:g} s")
        await asyncio.sleep(0.05)


class Phases:
    """The four phases against one gateway process and the peer."""

    def __init__(self, setup: PlainSetup, peer: Peer, sink: Sink, pid: int, count: int) -> None:
        self.setup, self.peer, self.sink, self.pid, self.count = setup, peer, sink, pid, count
        self.session = aiohttp.ClientSession()

    async def measured(self, name: str, phase: Callable[[], Awaitable[None]]) -> dict[str, float]:
        cpu, started = cpu_seconds(self.pid), time.perf_counter()
        await phase()
        seconds = time.perf_counter() - started
        cost = (cpu_seconds(self.pid) - cpu) / self.count * 1000
        print(f"{name:<20} {self.count / seconds:8.1f} msg/s {cost:8.2f} CPU-s/1000", flush=True)
        return {"msg_per_s": self.count / seconds, "cpu_s_per_1000": cost}

    async def in_ebms(self) -> None:
        with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
            loop = asyncio.get_running_loop()
            sends = [
                loop.run_in_executor(pool, self.peer.send, ASYNC_CPA, di01())
                for _ in range(self.count)
            ]
            sent = set(await asyncio.gather(*sends))

        async def acknowledged() -> bool:
            events = await asyncio.to_thread(self.peer.events)
            failed = [e for e in events if e.get("messageId") in sent and e["type"] != "DELIVERED"]
            if failed:
                raise RuntimeError(f"the peer reports {failed[0]}")
            return sum(e.get("messageId") in sent for e in events) >= len(sent)

        await _until(acknowledged)

    async def in_soap(self, pace: float | None = None) -> None:
        """Over SOAP, as fast as :data:`CONCURRENCY` clients go, or at ``pace`` messages/s."""
        token = self.setup.token("0150")
        started = time.perf_counter()

        async def one(i: int) -> None:
            if pace:
                await asyncio.sleep(max(0.0, started + i / pace - time.perf_counter()))
            body = soap.wrap_request(di01())
            async with self.session.post(
                f"{self.setup.url}/ggk/OntvangAsynchroon",
                data=body,
                headers={
                    "Content-Type": "text/xml; charset=utf-8",
                    "SOAPAction": f'"{DI01_ACTION}"',
                    "Authorization": f"Bearer {token}",
                },
            ) as response:
                answer = await response.read()
                if response.status != 200 or b"Bv03" not in answer:
                    raise RuntimeError(f"SOAP answered {response.status}")

        await _bounded(self.count, one)

    async def _submit(self, ontvanger: str, pace: float | None = None) -> None:
        token = self.setup.token("12345678")
        started = time.perf_counter()

        async def one(i: int) -> None:
            if pace:
                await asyncio.sleep(max(0.0, started + i / pace - time.perf_counter()))
            async with self.session.post(
                f"{self.setup.url}/api/v1/messages",
                data=wmo305(ontvanger),
                headers={
                    "Content-Type": "application/xml",
                    "Authorization": f"Bearer {token}",
                    "Idempotency-Key": str(uuid.uuid4()),
                },
            ) as response:
                if response.status != 202:
                    raise RuntimeError(f"REST answered {response.status}: {await response.text()}")

        await _bounded(self.count, one)

    async def out_ebms(self) -> None:
        before = len(await asyncio.to_thread(self.peer.inbox))
        await self._submit("0150")

        async def received() -> bool:
            return len(await asyncio.to_thread(self.peer.inbox)) - before >= self.count

        await _until(received)

    async def out_http(self, pace: float | None = None) -> None:
        before = self.sink.count
        await self._submit("0175", pace)
        await self.sink.wait_for(before + self.count)


async def main(args: argparse.Namespace) -> None:
    if not (KIT / "start.sh").is_file() or shutil.which("java") is None:
        raise SystemExit(f"needs the ebMS peer kit ({KIT}) and Java 17")
    work = Path(tempfile.mkdtemp(prefix="ggk-ebms-bench-"))
    print(f"peer and gateway in {work}; {args.messages} messages per phase", flush=True)
    with started_peer(work / "peer", work / "seed.xml") as peer:
        sink = Sink()
        sink_runner, sink_port = await start_sink(sink.handle)
        setup = prepare(work, peer, ASYNC_CPA, retry_interval="PT10S")
        partners = setup.directory / "partners.toml"
        partners.write_text(
            with_delivery(
                partners.read_text(),
                "0175",
                f'adapter = "http"\nurl = "http://127.0.0.1:{sink_port}/http"\n',
            )
        )
        gateway = await serve(setup, work / "gateway.log")
        phases = Phases(setup, peer, sink, gateway.pid, args.messages)
        try:
            await phases.measured("warm-up", phases.in_soap)
            ebms_in = await phases.measured("in ebMS", phases.in_ebms)
            await phases.measured("in SOAP", phases.in_soap)
            pace = ebms_in["msg_per_s"]
            await phases.measured("in SOAP, ebMS pace", lambda: phases.in_soap(pace))
            ebms_out = await phases.measured("out ebMS", phases.out_ebms)
            await phases.measured("out HTTP", phases.out_http)
            pace = ebms_out["msg_per_s"]
            await phases.measured("out HTTP, ebMS pace", lambda: phases.out_http(pace))
        finally:
            await phases.session.close()
            gateway.terminate()
            await gateway.wait()
            await sink_runner.cleanup()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ebms", description=__doc__)
    parser.add_argument("--messages", type=int, default=300, help="per phase (default 300)")
    stopping.run(main(parser.parse_args()))
