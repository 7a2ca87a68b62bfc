"""Crash drill: steady load, ``kill -9`` of the gateway at random moments, restarts; then
compare what got a Bv03 with what the partner received.

Run: ``python -m benchmarks.crash_drill --kills 20`` (``--seed`` repeats a run);
``--backend kafka`` runs ``--processes`` (default 3) gateways on a three-broker cluster
(``kit/kafka_cluster.py``, replication 3, ``min.insync.replicas`` 2), kills a random
one each time, and restarts one broker (-9, then started again) halfway through.

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
  delivered under two keys, i.e. one message accepted twice (must be 0);
- recovery: per kill, the seconds until every receiver was delivered to again (the killed
  process's delivery partitions or leases taken over), median and max over the kills.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import re
import shutil
import ssl
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from lxml import etree

from benchmarks import stopping
from gateway import envelope as env
from gateway import soap
from kit.harness import (
    DI01_ACTION,
    GGK,
    another_process,
    client_tls,
    demo_gateway,
    jw301_request,
    start_gateway,
    start_sink,
    use_kafka,
)
from kit.kafka_cluster import KafkaCluster, kafka_cluster

IDENTIFICATIE = re.compile(rb"<ijw:Identificatie>([^<]+)<")


class Sink:
    """The partner: counts deliveries per idempotency key, and which keys each payload
    Identificatie arrived under (two keys for one Identificatie = the same message accepted
    twice, a duplicate that key-based dedup at the receiver would not catch)."""

    def __init__(self) -> None:
        self.keys: Counter[str] = Counter()
        self.keys_by_identificatie: dict[str, set[str]] = {}
        self.arrivals: dict[str, list[float]] = {}
        """Per receiver (the key's suffix), when each delivery arrived."""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        key, _, receiver = request.headers.get("Idempotency-Key", "?").partition(":")
        self.keys[key] += 1
        self.arrivals.setdefault(receiver, []).append(time.monotonic())
        payload = env.parse(etree.fromstring(body)).payload
        found = IDENTIFICATIE.search(payload)
        ident = found.group(1).decode() if found else "?"
        self.keys_by_identificatie.setdefault(ident, set()).add(key)
        return web.Response(status=204)


@dataclass
class Gateway:
    """One ``ggk serve`` process of the drill."""

    config: Path
    url: str
    process: asyncio.subprocess.Process | None = None


@dataclass
class Drill:
    gateways: list[Gateway]
    rng: random.Random
    tls: ssl.SSLContext
    confirmed: set[str] = field(default_factory=set)
    """Referentienummers answered with a Bv03."""
    offers: int = 0
    kills: list[float] = field(default_factory=list)
    """When each kill -9 was sent (monotonic clock)."""

    async def start(self, index: int) -> None:
        gateway = self.gateways[index]
        gateway.process = await start_gateway(gateway.config, gateway.url, self.tls)

    async def kill_and_restart(self, index: int) -> None:
        gateway = self.gateways[index]
        assert gateway.process is not None
        gateway.process.kill()  # SIGKILL
        self.kills.append(time.monotonic())
        await gateway.process.wait()
        await self.start(index)

    async def sender(
        self,
        number: int,
        session: aiohttp.ClientSession,
        stop: asyncio.Event,
        interval: float = 0.0,
    ) -> None:
        """Send new messages until ``stop`` (one every ``interval`` s at most), each re-offered
        unchanged — to the next process when this one does not answer — until its Bv03."""
        target = number % len(self.gateways)
        while not stop.is_set():
            if interval:
                await asyncio.sleep(interval)
            ref = str(uuid.uuid4())
            body = jw301_request(f"C{ref[:11]}", ref)
            while True:  # re-offer unchanged until answered (StUF 03.01 §4.4)
                self.offers += 1
                gateway = self.gateways[target]
                try:
                    async with session.post(
                        f"{gateway.url}/ggk/OntvangAsynchroon",
                        data=body,
                        ssl=self.tls,
                        headers={
                            "Content-Type": soap.CONTENT_TYPE,
                            "SOAPAction": f'"{DI01_ACTION}"',
                        },
                    ) as r:
                        answer = await r.read()
                    if r.status == 200 and b"Bv03Bericht" in answer:
                        self.confirmed.add(ref)
                        break
                    if r.status == 503 or b"StUF046" in answer:
                        raise OSError(f"HTTP {r.status}")  # busy, or storing failed: try again
                    raise RuntimeError(f"refused: HTTP {r.status} {answer[:200]!r}")
                except (TimeoutError, aiohttp.ClientError, OSError):
                    target = (target + 1) % len(self.gateways)  # another process, same message
                    await asyncio.sleep(0.05)


def recovery_seconds(drill: Drill, sink: Sink) -> list[float]:
    """Per kill: seconds until every receiver got a delivery again (receivers with nothing
    after the kill, the end of the load, are left out of that kill)."""
    out = []
    for killed_at in drill.kills:
        gaps = [next((t for t in times if t > killed_at), None) for times in sink.arrivals.values()]
        found = [g - killed_at for g in gaps if g is not None]
        if found:
            out.append(max(found))
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--backend", choices=("sqlite", "kafka"), default="sqlite")
    parser.add_argument("--processes", type=int, default=None, help="kafka: default 3")
    parser.add_argument(
        "--rate", type=float, default=None, help="messages/s over all senders (default: flat out)"
    )
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    processes = 1 if args.backend == "sqlite" else (args.processes or 3)

    sink = Sink()
    runner, sink_port = await start_sink(sink.handle)
    tmp = Path(tempfile.mkdtemp(prefix="ggk-drill-"))
    directory = tmp / "gw"
    port = demo_gateway(directory, sink_port, backoff_base=0.1, backoff_max=1.0, max_attempts=1000)
    started = time.monotonic()
    broker_restart = ""
    with contextlib.ExitStack() as stack:
        cluster: KafkaCluster | None = None
        config = directory / "gateway.toml"
        gateways = [Gateway(config, f"https://127.0.0.1:{port}")]
        if args.backend == "kafka":
            print("starting a three-broker Kafka cluster …", file=sys.stderr)
            cluster = stack.enter_context(kafka_cluster(tmp / "kafka"))
            use_kafka(config, cluster.bootstrap, f"d{seed}", replication=3)
            for name in "bcdefgh"[: processes - 1]:
                other, other_port = another_process(config, name)
                gateways.append(Gateway(other, f"https://127.0.0.1:{other_port}"))
        drill = Drill(gateways, random.Random(seed), client_tls(directory))
        try:
            for index in range(len(gateways)):
                await drill.start(index)
            stop = asyncio.Event()
            timeout = aiohttp.ClientTimeout(total=10)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                senders = [
                    asyncio.create_task(
                        drill.sender(n, session, stop, args.senders / args.rate if args.rate else 0)
                    )
                    for n in range(args.senders)
                ]
                for kill in range(1, args.kills + 1):
                    await asyncio.sleep(drill.rng.uniform(0.3, 2.0))
                    await drill.kill_and_restart(drill.rng.randrange(len(gateways)))
                    if cluster is not None and kill == args.kills // 2:
                        node = drill.rng.randrange(1, 4)
                        cluster.kill(node)
                        await asyncio.sleep(5)
                        cluster.start(node)
                        broker_restart = f", broker {node} killed (-9) and restarted"
                    print(
                        f"\rkill {kill}/{args.kills}: {len(drill.confirmed)} confirmed, "
                        f"{sum(sink.keys.values())} deliveries",
                        end="",
                        file=sys.stderr,
                    )
                stop.set()
                await asyncio.gather(*senders)
            print(file=sys.stderr)
            await _all_delivered(drill, sink)
            seconds = time.monotonic() - started
            if cluster is not None:  # the audit chains survived every kill: checked on the cluster
                await _stop_all(gateways)
                verdict = await _audit_verdict(config)
            report(drill, sink, args, seed, processes, seconds, broker_restart)
            if cluster is not None:
                print(f"\n`ggk audit verify` on the cluster afterwards: {verdict}")
                if "intact" not in verdict:
                    raise SystemExit("the cluster's audit trail does not verify")
        finally:
            await _stop_all(gateways)
            await runner.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)


async def _stop_all(gateways: list[Gateway]) -> None:
    for gateway in gateways:
        if gateway.process is not None and gateway.process.returncode is None:
            gateway.process.terminate()
    for gateway in gateways:
        if gateway.process is not None:
            await gateway.process.wait()


async def _audit_verdict(config: Path) -> str:
    """``ggk audit verify`` of the whole cluster (the chains of every partition, recomputed
    from Kafka, against every signed checkpoint): its one-line answer."""
    process = await asyncio.create_subprocess_exec(
        GGK, "audit", "verify", "--config", str(config), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    return out.decode().strip()


async def _all_delivered(drill: Drill, sink: Sink, stalled_after: float = 90) -> None:
    """Until every confirmed message arrived, or nothing new arrived for ``stalled_after``
    seconds (a backlog still draining is waited for; a stuck one is reported as lost)."""
    last_count, last_change = -1, time.monotonic()
    while not drill.confirmed <= set(sink.keys):
        count = sum(sink.keys.values())
        if count != last_count:
            last_count, last_change = count, time.monotonic()
            missing = len(drill.confirmed - set(sink.keys))
            print(f"\rwaiting for {missing} deliveries …", end="", file=sys.stderr)
        elif time.monotonic() - last_change > stalled_after:
            break
        await asyncio.sleep(0.5)
    print(file=sys.stderr)
    await asyncio.sleep(1.0)


def report(
    drill: Drill,
    sink: Sink,
    args: argparse.Namespace,
    seed: int,
    processes: int,
    seconds: float,
    broker_restart: str,
) -> None:
    """The table, after waiting for deliveries; exits non-zero on a loss or a double."""
    confirmed = drill.confirmed
    lost = confirmed - set(sink.keys)
    unconfirmed_delivered = set(sink.keys) - confirmed
    redelivered = sum(n - 1 for n in sink.keys.values() if n > 1)
    doubled = sum(1 for keys in sink.keys_by_identificatie.values() if len(keys) > 1)
    recovery = recovery_seconds(drill, sink)
    print(
        f"# crash drill (seed {seed}, {args.backend}, {processes} gateway process(es)): "
        f"{args.kills} × kill -9 under load{broker_restart}, {args.senders} senders, "
        f"{seconds:.0f} s\n"
    )
    print(
        "| Bv03s (messages) | offers incl. re-offers | delivered (unique) | lost | "
        "redelivered, same key | duplicates after dedup by key | recovery s median / max |"
    )
    print("|---|---|---|---|---|---|---|")
    spread = (
        f"{statistics.median(recovery):.2f} / {max(recovery):.2f}" if recovery else "none measured"
    )
    print(
        f"| {len(confirmed)} | {drill.offers} | {len(sink.keys)} | {len(lost)} | "
        f"{redelivered} | {doubled} | {spread} |"
    )
    if recovery:
        print("\nrecovery per kill, in order (s): " + " ".join(f"{r:.2f}" for r in recovery))
    if unconfirmed_delivered:
        print(
            f"\n{len(unconfirmed_delivered)} delivered messages never got a Bv03 "
            "(should be 0: every offer is repeated until answered)"
        )
    if lost or doubled:
        raise SystemExit(f"LOST {len(lost)} messages that got a Bv03; {doubled} accepted twice")


if __name__ == "__main__":
    stopping.run(main())
