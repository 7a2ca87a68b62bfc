"""``python -m benchmarks run``: the gateway under the realistic mix, per scenario, against
the ceilings of the same machine — one command, one run, one table (and a plot).

Per scenario a fresh ``ggk init`` setup and fresh ``ggk serve`` process(es); the load
generator (this process) sends the mix of :mod:`benchmarks.mix` over SOAP/TLS, each sender
with its own client certificate (or bearer token when mTLS is off), keep-alive connections;
every addressee is delivered over HTTP to a sink in this process. Phases:

- *saturation*: ``--concurrency`` requests in flight, ``--messages`` messages;
- *offered load*: open loop at each ``--rates`` value for ``--seconds`` (latency vs load).

Reported per phase: accepted and delivered msg/s, Bv03 p50/p95/p99; per scenario: the gateway
processes' CPU seconds per 1,000 messages (saturation phase) and peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import ssl
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from benchmarks import mix
from benchmarks.ceilings import sqlite_ceiling, validate_ceiling
from benchmarks.drops import Drops
from gateway import soap
from kit.harness import kafka_node, prepare_gateways, start_gateway, start_sink


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    backend: str = "sqlite"
    audit: bool = True
    mtls: bool = True
    processes: int = 1
    readers: int | None = None
    """Reader processes per gateway (gateway/readers.py); None: the gateway's default."""


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("sqlite"),
        Scenario("sqlite-audit-off", audit=False),
        Scenario("sqlite-token", mtls=False),
        Scenario("sqlite-inline", readers=0),
        Scenario("sqlite-1-reader", readers=1),
        Scenario("kafka", backend="kafka"),
        Scenario("kafka-2", backend="kafka", processes=2),
        Scenario("kafka-3", backend="kafka", processes=3),
        Scenario("kafka-inline", backend="kafka", readers=0),
        Scenario("kafka-3-inline", backend="kafka", processes=3, readers=0),
    )
}


@dataclass(slots=True)
class Phase:
    scenario: str
    phase: str
    offered: float | None
    messages: int
    accepted_per_s: float
    delivered_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    small_p99_ms: float
    """p99 of the messages up to 256 KB (all but the 1 MB declaraties)."""
    failed: int = 0
    cpu_s_per_1000: float = 0.0
    """Gateway processes' CPU over this phase per 1,000 messages: at an offered rate every
    variant sustains, it compares work per message without saturation's contention."""


@dataclass(slots=True)
class ScenarioResult:
    scenario: Scenario
    phases: list[Phase] = field(default_factory=list)
    cpu_s_per_1000: float = 0.0
    peak_rss_mib: float = 0.0


class Sink:
    """Every addressee's receiving system: counts deliveries, remembers when the last came."""

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.count += 1
        self.last = time.perf_counter()
        return web.Response(status=204)

    async def wait_for(self, count: int, timeout: float = 300) -> None:
        deadline = time.perf_counter() + timeout
        while self.count < count:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"only {self.count} of {count} delivered in {timeout:g} s")
            await asyncio.sleep(0.01)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the gateway's validation worker among them)."""
    pids, i = [pid], 0
    while i < len(pids):
        for task in Path(f"/proc/{pids[i]}/task").iterdir():
            children = (task / "children").read_text().split()
            pids += [int(c) for c in children]
        i += 1
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants."""
    total = 0.0
    for p in process_tree(pid):
        with contextlib.suppress(FileNotFoundError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / 100.0  # utime, stime; USER_HZ 100
    return total


def peak_rss_mib(pid: int) -> float:
    """Sum of the peak resident sets (VmHWM) of ``pid`` and its descendants."""
    total = 0
    for p in process_tree(pid):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total / 1024


@dataclass(slots=True)
class Latencies:
    """Bv03 latencies in seconds, all and those of the small messages (≤ 256 KB payload)."""

    all: list[float] = field(default_factory=list)
    small: list[float] = field(default_factory=list)

    def add(self, seconds: float, *, large: bool) -> None:
        self.all.append(seconds)
        if not large:
            self.small.append(seconds)


class Clients:
    """One HTTPS session per sending partner: its client certificate, or its bearer token."""

    def __init__(self, directory: Path, urls: list[str], mtls: bool, concurrency: int) -> None:
        self.urls = urls
        self.sent = 0
        tokens = tomllib.loads((directory / "secrets" / "tokens.toml").read_text())["partners"]
        self.sessions: dict[str, aiohttp.ClientSession] = {}
        for sender in {"0150", "0175", "12345678", "87654321"}:
            context = ssl.create_default_context(cafile=str(directory / "pki" / "ca.crt"))
            headers = {"Content-Type": soap.CONTENT_TYPE}
            if mtls:
                pki = directory / "pki"
                context.load_cert_chain(
                    str(pki / f"client-{sender}.crt"), str(pki / f"client-{sender}.key")
                )
            else:
                headers["Authorization"] = f"Bearer {tokens[sender]}"
            self.sessions[sender] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context, limit=concurrency), headers=headers
            )

    async def send(self, message: mix.Outgoing, latencies: Latencies) -> bool:
        url = self.urls[self.sent % len(self.urls)]
        self.sent += 1
        started = time.perf_counter()
        async with self.sessions[message.sender].post(
            url,
            data=message.body,
            headers={"SOAPAction": '"http://www.stufstandaarden.nl/koppelvlak/ggk0210/ggk_Di01"'},
        ) as response:
            await response.read()
        if response.status != 200:
            return False
        latencies.add(time.perf_counter() - started, large=len(message.payload) > 256 * 1024)
        return True

    async def close(self) -> None:
        for session in self.sessions.values():
            await session.close()


async def saturation(
    clients: Clients,
    sink: Sink,
    drops: Drops,
    messages: list[mix.Outgoing],
    concurrency: int,
    name: str,
) -> Phase:
    latencies = Latencies()
    queue = list(reversed(messages))
    accepted: list[mix.Outgoing] = []
    before, copies_before = sink.count, drops.count()
    started = time.perf_counter()

    async def worker() -> None:
        while queue:
            message = queue.pop()
            if await clients.send(message, latencies):
                accepted.append(message)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    accepted_s = time.perf_counter() - started
    failed = len(messages) - len(accepted)
    await sink.wait_for(before + len(accepted))
    await drops.wait_for(copies_before + drops.expected(accepted))  # the phase's copies too
    return _phase(
        name, "saturation", None, len(messages), accepted_s, sink.last - started, latencies, failed
    )


async def offered(
    clients: Clients,
    sink: Sink,
    drops: Drops,
    messages: list[mix.Outgoing],
    rate: float,
    name: str,
) -> Phase:
    """Open loop: message i is sent at start + i/rate whether or not earlier ones returned."""
    latencies = Latencies()
    before, copies_before = sink.count, drops.count()
    started = time.perf_counter()
    tasks = []
    for i, message in enumerate(messages):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(clients.send(message, latencies)))
    results = await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    failed = results.count(False)
    await sink.wait_for(before + len(messages) - failed)
    accepted = [m for m, ok in zip(messages, results, strict=True) if ok]
    await drops.wait_for(copies_before + drops.expected(accepted))  # the phase's copies too
    return _phase(
        name,
        f"{rate:g} msg/s offered",
        rate,
        len(messages),
        elapsed,
        sink.last - started,
        latencies,
        failed,
    )


def _phase(
    scenario: str,
    phase: str,
    rate: float | None,
    count: int,
    accepted_s: float,
    delivered_s: float,
    latencies: Latencies,
    failed: int,
) -> Phase:
    return Phase(
        scenario,
        phase,
        rate,
        count,
        (count - failed) / accepted_s,
        (count - failed) / delivered_s,
        percentile(latencies.all, 0.50) * 1000,
        percentile(latencies.all, 0.95) * 1000,
        percentile(latencies.all, 0.99) * 1000,
        percentile(latencies.small, 0.99) * 1000,
        failed,
    )


async def run_scenario(
    scenario: Scenario,
    args: argparse.Namespace,
    sink: Sink,
    sink_port: int,
    bootstrap: str | None,
) -> ScenarioResult:
    result = ScenarioResult(scenario)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "gw"
        if scenario.backend == "kafka" and bootstrap is None:
            raise RuntimeError("a Kafka scenario needs a cluster")
        configs, ports = prepare_gateways(
            directory,
            sink_port,
            receivers=mix.RECEIVERS,
            audit=scenario.audit,
            kafka=bootstrap if scenario.backend == "kafka" else None,
            processes=scenario.processes,
            readers=scenario.readers,
        )
        check = ssl.create_default_context(cafile=str(directory / "pki" / "ca.crt"))
        servers = [
            await start_gateway(c, f"https://127.0.0.1:{p}", check)
            for c, p in zip(configs, ports, strict=True)
        ]
        drops = Drops(configs[0])  # every process writes the same drops
        clients = Clients(
            directory,
            [f"https://127.0.0.1:{p}/ggk/OntvangAsynchroon" for p in ports],
            scenario.mtls,
            args.concurrency,
        )
        try:
            warm = mix.draw(100, seed=1, start=900_000_000)
            await saturation(clients, sink, drops, warm, args.concurrency, scenario.name)
            cpu_before = sum(cpu_seconds(s.pid) for s in servers)
            sat = mix.draw(args.messages, seed=2, start=0)
            with flame_graph(
                args.flame, scenario.name, [s.pid for s in servers], args.flame_format
            ):
                result.phases.append(
                    await saturation(clients, sink, drops, sat, args.concurrency, scenario.name)
                )
            cpu = sum(cpu_seconds(s.pid) for s in servers) - cpu_before
            result.cpu_s_per_1000 = cpu / args.messages * 1000
            first = args.messages
            result.phases[-1].cpu_s_per_1000 = result.cpu_s_per_1000
            for rate in args.rates:
                count = int(rate * args.seconds)
                batch = mix.draw(count, seed=int(rate), start=first)
                first += count
                cpu_before = sum(cpu_seconds(s.pid) for s in servers)
                phase = await offered(clients, sink, drops, batch, rate, scenario.name)
                cpu = sum(cpu_seconds(s.pid) for s in servers) - cpu_before
                phase.cpu_s_per_1000 = cpu / count * 1000
                result.phases.append(phase)
            result.peak_rss_mib = sum(peak_rss_mib(s.pid) for s in servers)
        finally:
            await clients.close()
            for server in servers:
                server.terminate()
            for server in servers:
                await server.wait()
    return result


@contextlib.contextmanager
def flame_graph(
    directory: str | None, name: str, pids: list[int], fmt: str = "flamegraph"
) -> Iterator[None]:
    """Record the gateway processes (and their validation workers) with py-spy while the
    block runs, into ``<directory>/flame-<scenario>-<pid>.svg`` (``.txt`` of collapsed
    stacks with ``fmt="raw"``, for counting by script); nothing when not asked."""
    if directory is None:
        yield
        return
    Path(directory).mkdir(parents=True, exist_ok=True)
    recorders = [
        subprocess.Popen(
            [
                "py-spy",
                "record",
                "--pid",
                str(pid),
                "--subprocesses",
                "--rate",
                "100",
                "--format",
                fmt,
                "--output",
                str(Path(directory) / f"flame-{name}-{pid}.{'txt' if fmt == 'raw' else 'svg'}"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)  # py-spy writes the SVG on Ctrl-C
        for recorder in recorders:
            recorder.wait(timeout=60)


def plot(results: list[ScenarioResult], path: Path) -> None:
    """Bv03 p50 and p99 against offered load, one line pair per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for result in results:
        points = [p for p in result.phases if p.offered is not None]
        if len(points) < 2:
            continue
        x = [p.offered or 0.0 for p in points]
        line = ax.plot(
            x, [p.p99_ms for p in points], marker="o", label=f"{result.scenario.name} p99"
        )
        ax.plot(
            x,
            [p.p50_ms for p in points],
            marker=".",
            linestyle="--",
            color=line[0].get_color(),
            label=f"{result.scenario.name} p50",
        )
    ax.axhline(50, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("offered load (messages/s, realistic mix)")
    ax.set_ylabel("Bv03 latency (ms)")
    ax.set_yscale("log")
    ax.set_title("ggk-gateway: Bv03 latency vs offered load (2 cores)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def table(results: list[ScenarioResult]) -> str:
    lines = [
        "| scenario | phase | accepted msg/s | delivered msg/s | Bv03 p50 ms | p95 ms | p99 ms "
        "| p99 ≤256 KB ms | CPU s/1,000 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for p in result.phases:
            failed = f" ({p.failed} refused)" if p.failed else ""
            lines.append(
                f"| {p.scenario} | {p.phase}{failed} | {p.accepted_per_s:,.0f} | "
                f"{p.delivered_per_s:,.0f} | {p.p50_ms:.1f} | {p.p95_ms:.1f} | {p.p99_ms:.1f} "
                f"| {p.small_p99_ms:.1f} | {p.cpu_s_per_1000:.2f} |"
            )
    lines += [
        "",
        "| scenario | CPU s per 1,000 msgs (gateway processes) | peak RSS MiB (sum) |",
        "|---|---|---|",
    ]
    lines += [
        f"| {r.scenario.name} | {r.cpu_s_per_1000:.2f} | {r.peak_rss_mib:.0f} |" for r in results
    ]
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    names = list(SCENARIOS) if args.scenario == ["all"] else args.scenario
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario {unknown}; choose from {', '.join(SCENARIOS)} or all")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"# ggk-gateway benchmark run {time.strftime('%Y-%m-%d %H:%M')}, scenarios {names}")
    sample = mix.draw(args.ceiling_messages, seed=3, start=800_000_000)
    validate = validate_ceiling(sample)
    disk = sqlite_ceiling(Path(tempfile.gettempdir()))
    print(
        f"validate (one core, {len(sample)} mix messages): raw lxml {validate.raw_per_s:,.0f}/s, "
        f"ours XSD-only {validate.ours_xsd_per_s:,.0f}/s, ours all rules "
        f"{validate.ours_full_per_s:,.0f}/s (every rule in Python, no screen: "
        f"{validate.ours_python_rules_per_s:,.0f}/s)",
        flush=True,
    )
    print(
        f"sqlite (same disk, WAL, synchronous=FULL): {disk.commits_per_s:,.0f} commits/s, "
        f"{disk.rows_per_s_grouped:,.0f} rows/s at {disk.group} rows per commit",
        flush=True,
    )
    sink = Sink()
    runner, sink_port = await start_sink(sink.handle)
    results = []
    try:
        with contextlib.ExitStack() as stack:
            bootstrap = args.kafka
            for name in names:
                if bootstrap is None and SCENARIOS[name].backend == "kafka":
                    # started only now: an idle JVM beside the SQLite scenarios disturbs them
                    node = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                    bootstrap = stack.enter_context(kafka_node(node / "kafka"))
                print(f"… {name}", flush=True)
                result = await run_scenario(SCENARIOS[name], args, sink, sink_port, bootstrap)
                results.append(result)
                for p in result.phases:
                    print(
                        f"  {p.phase}: {p.accepted_per_s:,.0f} accepted/s, "
                        f"{p.delivered_per_s:,.0f} delivered/s, p99 {p.p99_ms:.1f} ms",
                        flush=True,
                    )
    finally:
        await runner.cleanup()
    print()
    print(table(results))
    print()
    best_accept = max(p.accepted_per_s for r in results for p in r.phases)
    print(
        "ratios: ours (all rules) / raw lxml = "
        f"{validate.ours_full_per_s / validate.raw_per_s:.2f}; "
        f"XSD-only / raw lxml = {validate.ours_xsd_per_s / validate.raw_per_s:.2f}; "
        f"best accepted msg/s / raw lxml = {best_accept / validate.raw_per_s:.2f}; "
        f"best accepted / SQLite grouped rows/s = {best_accept / disk.rows_per_s_grouped:.3f}"
    )
    (out / "results.json").write_text(
        json.dumps(
            {
                "validate": asdict(validate),
                "sqlite": asdict(disk),
                "scenarios": [{**asdict(r), "scenario": asdict(r.scenario)} for r in results],
            },
            indent=2,
        )
    )
    try:
        plot(results, out / "latency.png")
    except ModuleNotFoundError:  # the bench extra is optional; the figures are all there
        print(f"\nresults: {out / 'results.json'} (no plot: pip install -e '.[bench]')")
    else:
        print(f"\nresults: {out / 'results.json'}, plot: {out / 'latency.png'}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        nargs="+",
        default=["sqlite"],
        help=f"one or more of {', '.join(SCENARIOS)}, or all",
    )
    parser.add_argument("--messages", type=int, default=3000, help="saturation phase size")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--rates",
        type=float,
        nargs="*",
        default=[100, 300, 500],
        help="offered loads (msg/s) for the latency phases",
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="per offered-load phase")
    parser.add_argument("--ceiling-messages", type=int, default=1000)
    parser.add_argument("--kafka", help="bootstrap of a running cluster (default: start one)")
    parser.add_argument("--out", default="benchmarks/out", help="results.json and latency.png")
    parser.add_argument(
        "--flame",
        metavar="DIR",
        help="record a py-spy flame graph (SVG) of each gateway over the saturation phase",
    )
    parser.add_argument(
        "--flame-format",
        choices=("flamegraph", "raw", "speedscope"),
        default="flamegraph",
        help="py-spy output of --flame: an SVG, or raw collapsed stacks (.txt) to count by script",
    )
