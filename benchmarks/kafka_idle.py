"""What a Kafka gateway process costs by merely existing (issue 29, goal 6).

Each process on the Kafka backend keeps eight consumers and a view that follow the cluster
whatever its share of the traffic. That part of its CPU does not shrink when the traffic is
spread over more processes, so it is what makes a message dearer with three processes than
with one at a low rate (docs/benchmarks.md, "Goal 6 on a quiet machine"). This starts one
``ggk serve`` on Kafka with nothing to do, lets it settle, and reads its CPU (with its reader
processes) over a quiet window, ``--rounds`` times, each with a fresh process and topics.

    python -m benchmarks.kafka_idle --settle 15 --seconds 30 --rounds 3

A broker is started for the run (Java 17+ and the jars of ``scripts/kafka-dev.sh``), or
``--kafka HOST:PORT`` names one already running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
from pathlib import Path

from aiohttp import web

from benchmarks import stopping
from benchmarks.run import cpu_seconds
from kit.harness import (
    client_tls,
    kafka_node,
    prepare_gateways,
    start_gateway,
    start_sink,
    stop_started,
    wait_for_brokers,
)


class Unmeasured(Exception):
    """The run could not measure what it set out to (said on stderr, exit 1)."""


async def _accept(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def idle_share(bootstrap: str, sink_port: int, settle: float, seconds: float) -> float:
    """The CPU of one idle gateway process (and its readers) over ``seconds``, as a
    percentage of one core, after ``settle`` seconds of starting up."""
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch) / "gw"
        configs, ports = prepare_gateways(directory, sink_port, kafka=bootstrap)
        gateway = await start_gateway(
            configs[0], f"https://127.0.0.1:{ports[0]}", client_tls(directory)
        )
        try:
            await asyncio.sleep(settle)
            before = cpu_seconds(gateway.pid)
            await asyncio.sleep(seconds)
            spent = cpu_seconds(gateway.pid) - before
            if gateway.returncode is not None:  # what it used is gone with it: no figure
                raise Unmeasured(f"the gateway stopped (exit {gateway.returncode}) while measured")
        finally:
            await stop_started(only=gateway)
    return spent / seconds * 100


async def main(args: argparse.Namespace) -> None:
    runner, sink_port = await start_sink(_accept)
    shares: list[float] = []
    try:
        with contextlib.ExitStack() as stack:
            bootstrap = args.kafka
            if bootstrap is None:
                scratch = stack.enter_context(tempfile.TemporaryDirectory())
                bootstrap = stack.enter_context(kafka_node(Path(scratch) / "kafka"))
            else:
                try:
                    await asyncio.to_thread(wait_for_brokers, bootstrap, 1, 15)
                except RuntimeError:
                    raise Unmeasured(
                        f"no Kafka broker answered at {bootstrap} within 15 s: check --kafka"
                    ) from None
            for round_ in range(1, args.rounds + 1):
                share = await idle_share(bootstrap, sink_port, args.settle, args.seconds)
                print(f"round {round_}: {share:.2f} % of a core", flush=True)
                shares.append(share)
    finally:
        await runner.cleanup()
    print(f"\n# one idle gateway process on Kafka, {args.seconds:g} s after {args.settle:g} s")
    print("| rounds | idle CPU, % of a core (median) | each round |")
    print("|---:|---:|---|")
    each = ", ".join(f"{s:.2f}" for s in shares)
    print(f"| {len(shares)} | {statistics.median(shares):.2f} | {each} |")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settle", type=float, default=15.0, help="seconds before measuring")
    parser.add_argument("--seconds", type=float, default=30.0, help="the measured window")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kafka", help="bootstrap of a running broker (default: start one)")
    args = parser.parse_args()
    if args.rounds < 1 or not 0 < args.seconds <= 3600 or not 0 <= args.settle <= 3600:
        parser.error(
            "--rounds is at least 1, --seconds above 0 and --settle from 0 (an hour at most)"
        )
    try:
        stopping.run(main(args))
    except Unmeasured as exc:
        print(f"kafka_idle: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    cli()
