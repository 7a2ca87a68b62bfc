"""What every load run and drill needs: a fresh demo gateway whose zorgaanbieder 87654321 is
delivered over HTTP to a sink in the measuring process, a client TLS context, and waiting for
the gateway to be healthy."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient

from gateway import demo, soap
from gateway import envelope as env
from gateway.broker.base import NewMessage, PlannedDelivery

GGK = str(Path(sys.executable).parent / "ggk")
SAMPLES = Path(__file__).resolve().parent.parent / "samples"
DI01_ACTION = "http://www.stufstandaarden.nl/koppelvlak/ggk0210/ggk_Di01"
SINK_PARTNER = "87654321"
SECOND_SINK_PARTNER = "12345678"
"""Also delivered to the sink by ``demo_gateway``: a load with two receivers."""
JW301 = (SAMPLES / "ijw" / "jw301.xml").read_text()


def jw301_request(identificatie: str, referentienummer: str, receiver: str = SINK_PARTNER) -> bytes:
    """The JW301 sample as a SOAP ggk_Di01 from gemeente 0175 to a sink partner, with its
    own Identificatie (at most 12 characters; TR056 refuses a reused one)."""
    payload = JW301.replace("JW301B0001", identificatie).replace(">12345678<", f">{receiver}<")
    return soap.wrap_request(
        env.build_di01(
            payload.encode(),
            zender="0175",
            zender_applicatie="DOWRsociaal",
            ontvanger=receiver,
            functie="JW301",
            referentienummer=referentienummer,
        )
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def start_sink(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]], port: int = 0
) -> tuple[web.AppRunner, int]:
    """An HTTP partner on 127.0.0.1 answering POST /http; returns (runner, port)."""
    app = web.Application(client_max_size=64 * 1024 * 1024)  # 1 MB declaraties and more
    app.router.add_post("/http", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
    await site.start()
    bound: int = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, bound


BENCH_PARTNER_LIMITS = {"partner_rate": 100_000, "partner_burst": 100_000}
"""``[limits]`` of every benchmark gateway: the per-partner rate never binds."""


def demo_gateway(
    directory: Path,
    sink_port: int,
    receivers: tuple[str, ...] = (SINK_PARTNER, SECOND_SINK_PARTNER),
    **settings: object,
) -> int:
    """``ggk init`` into ``directory`` with the ``receivers`` delivered over HTTP to the sink
    on ``sink_port``; ``settings`` replace existing gateway.toml values (e.g.
    backoff_base=0.1). Returns the gateway's port."""
    port = free_port()
    demo.init(directory, port=port)
    partners = directory / "partners.toml"
    blocks = partners.read_text().split("[[partner]]")
    for i, block in enumerate(blocks):
        if any(f'id = "{partner}"' in block for partner in receivers):
            head = block.split("[partner.delivery]")[0]
            blocks[i] = (
                f'{head}[partner.delivery]\nadapter = "http"\n'
                f'url = "http://127.0.0.1:{sink_port}/http"\n\n'
            )
    partners.write_text("[[partner]]".join(blocks))
    config = (directory / "gateway.toml").read_text()
    # The load generators send up to ~700 msg/s from one partner (benchmarks.load: all from
    # 0175; the mix: 60 % from 12345678): far above what one partner may send in production.
    # The limiter stays on (its cost is measured) with a rate no run reaches.
    settings = {**BENCH_PARTNER_LIMITS, **settings}
    for key, value in settings.items():
        line = f"{key} = {str(value).lower() if isinstance(value, bool) else value}"
        # a setting the file names, or offers commented out (``# readers = 2``)
        config, found = re.subn(rf"^(# )?{key} = .*$", line, config, flags=re.M)
        if not found:
            raise KeyError(f"{key} is not a setting of the demo gateway.toml")
    (directory / "gateway.toml").write_text(config)
    return port


def use_kafka(
    config: Path, bootstrap: str, prefix: str, partitions: int = 4, replication: int = 1
) -> None:
    """Switch a gateway.toml to the Kafka backend on a development cluster (one broker
    unless ``replication`` says more; topics created at start)."""
    text = config.read_text()
    text, found = re.subn(r"^broker = .*$", 'broker = "kafka"', text, count=1, flags=re.M)
    if not found:
        text = text.replace("[gateway]\n", '[gateway]\nbroker = "kafka"\n', 1)
    text += (
        f'\n[kafka]\nbootstrap = "{bootstrap}"\nprefix = "{prefix}"\n'
        f"create_topics = true\npartitions = {partitions}\nreplication = {replication}\n"
    )
    config.write_text(text)


def another_process(config: Path, name: str) -> tuple[Path, int]:
    """A second gateway process on the same partners, keys and Kafka cluster: its own port,
    data directory (its view of the cluster) and node name. Returns (its config, its port)."""
    port = free_port()
    text = config.read_text()
    text = re.sub(r"^port = .*$", f"port = {port}", text, count=1, flags=re.M)
    text = re.sub(r"^data_dir = .*$", f'data_dir = "data-{name}"', text, count=1, flags=re.M)
    text = text.replace("\n[kafka]\n", f'\n[kafka]\nnode = "{name}"\n')
    other = config.with_name(f"gateway-{name}.toml")
    other.write_text(text)
    return other, port


@contextlib.contextmanager
def kafka_node(directory: Path) -> Iterator[str]:
    """A single-node Kafka (KRaft) on 127.0.0.1 via scripts/kafka-dev.sh, answering requests
    when it is yielded (its bootstrap address); stopped on exit. Java 17+ and Maven needed."""
    script = str(Path(__file__).resolve().parent.parent / "scripts" / "kafka-dev.sh")
    port, controller = free_port(), free_port()
    started = subprocess.run(
        [script, "start", str(directory), str(port), str(controller)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if started.returncode != 0:
        raise RuntimeError(f"could not start Kafka:\n{started.stdout}\n{started.stderr}")
    bootstrap = f"127.0.0.1:{port}"
    try:
        wait_for_brokers(bootstrap, 1)
        yield bootstrap
    finally:
        subprocess.run([script, "stop", str(directory)], timeout=60, check=False)


def wait_for_brokers(bootstrap: str, count: int, timeout: float = 180) -> None:
    """Until ``count`` brokers are registered in the cluster's metadata (a controller may
    still be electing). In a thread of its own: callers may or may not be in an event loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _brokers(bootstrap, count, timeout)).result()


async def _brokers(bootstrap: str, count: int, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen = 0
    while loop.time() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            await admin.start()
            seen = len((await admin.describe_cluster()).get("brokers", []))
            if seen >= count:
                return
        except Exception:  # not ready yet: nodes still starting or electing
            pass
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
    raise RuntimeError(f"only {seen} of {count} Kafka brokers answered within {timeout:.0f} s")


def prepare_gateways(
    directory: Path,
    sink_port: int,
    *,
    receivers: tuple[str, ...] = (SINK_PARTNER, SECOND_SINK_PARTNER),
    audit: bool = True,
    kafka: str | None = None,
    processes: int = 1,
    readers: int | None = None,
) -> tuple[list[Path], list[int]]:
    """A demo setup for one scenario: the embedded backend, or ``processes`` gateway
    processes on the Kafka cluster at ``kafka`` (a fresh topic prefix); ``readers``: reader
    processes per gateway (None: the default). Returns the config files and ports of the
    processes to start."""
    settings = {} if readers is None else {"readers": readers}
    port = demo_gateway(directory, sink_port, receivers=receivers, **settings)
    config = directory / "gateway.toml"
    if not audit:
        config.write_text(config.read_text().replace("[audit]\n", "[audit]\nenabled = false\n"))
    configs, ports = [config], [port]
    if kafka is not None:
        use_kafka(config, kafka, f"bench{uuid.uuid4().hex[:8]}")
        for n in range(1, processes):
            other, other_port = another_process(config, f"p{n}")
            configs.append(other)
            ports.append(other_port)
    return configs, ports


def client_tls(directory: Path, partner: str = "0175") -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(directory / "pki" / "ca.crt"))
    context.load_cert_chain(
        str(directory / "pki" / f"client-{partner}.crt"),
        str(directory / "pki" / f"client-{partner}.key"),
    )
    return context


async def wait_healthy(url: str, context: ssl.SSLContext, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{url}/healthz", ssl=context) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, OSError):
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"the gateway at {url} did not become healthy")


STARTED: set[asyncio.subprocess.Process] = set()
"""Every ``ggk serve`` :func:`start_gateway` started in this process: what a run cut short
stops (:func:`stop_started`), including one still starting or not yet in a ``try``."""


async def start_gateway(
    config: Path, url: str, context: ssl.SSLContext, log_level: str = "ERROR"
) -> asyncio.subprocess.Process:
    """``ggk serve --config config`` as its own process, once it answers /healthz."""
    process = await asyncio.create_subprocess_exec(
        GGK, "serve", "--config", str(config), "--log-level", log_level
    )
    STARTED.add(process)
    try:
        await wait_healthy(url, context)
    except BaseException:  # cancelled or never healthy: not left running for the caller
        await stop_started(only=process)
        raise
    return process


async def stop_started(grace: float = 10, only: asyncio.subprocess.Process | None = None) -> None:
    """Stop every gateway :func:`start_gateway` started (or ``only`` that one) that is still
    running (SIGTERM, then SIGKILL after ``grace`` seconds), and forget them."""
    chosen = [only] if only is not None else list(STARTED)
    STARTED.difference_update(chosen)
    running = [process for process in chosen if process.returncode is None]
    for process in running:  # all asked at once, then waited for together
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
    for process in running:
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def stored_message(
    n: int,
    *,
    digest: str = "d",
    held: bool = False,
    bsns: tuple[str, ...] = (),
    envelope: bytes = b"<e>payload</e>",
) -> NewMessage:
    """A message record as the ingest stage hands it to a broker (for broker-level tests and
    benchmarks)."""
    return NewMessage(
        id=f"m{n}",
        kind="Di01",
        zender="0150",
        zender_applicatie="App",
        ontvanger="12345678",
        referentienummer=f"ref-{n}",
        cross_ref=None,
        functie="WMO301",
        message_code="WMO301",
        identificatie=f"ID{n}",
        payload_sender="0150",
        digest=digest,
        envelope=envelope,
        bv03_ref=f"bv-{n}",
        bv03_tijdstip="20260101000000000",
        actor="0150 via token",
        origin="127.0.0.1",
        bsns=bsns,
        payload_digest="ab" * 32,
        deliveries=(PlannedDelivery("12345678", "inbox" if held else "http", False, held),),
    )
