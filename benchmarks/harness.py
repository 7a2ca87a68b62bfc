"""What every load run and drill needs: a fresh demo gateway whose zorgaanbieder 87654321 is
delivered over HTTP to a sink in the measuring process, a client TLS context, and waiting for
the gateway to be healthy."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway import demo, soap
from gateway import envelope as env

GGK = str(Path(sys.executable).parent / "ggk")
SAMPLES = Path(__file__).resolve().parent.parent / "samples"
DI01_ACTION = "http://www.stufstandaarden.nl/koppelvlak/ggk0210/ggk_Di01"
SINK_PARTNER = "87654321"
JW301 = (SAMPLES / "ijw" / "jw301.xml").read_text()


def jw301_request(identificatie: str, referentienummer: str) -> bytes:
    """The JW301 sample as a SOAP ggk_Di01 from gemeente 0175 to the sink partner, with its
    own Identificatie (at most 12 characters; TR056 refuses a reused one)."""
    payload = JW301.replace("JW301B0001", identificatie).replace(">12345678<", f">{SINK_PARTNER}<")
    return soap.wrap_request(
        env.build_di01(
            payload.encode(),
            zender="0175",
            zender_applicatie="DOWRsociaal",
            ontvanger=SINK_PARTNER,
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
    app = web.Application()
    app.router.add_post("/http", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
    await site.start()
    bound: int = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, bound


def demo_gateway(directory: Path, sink_port: int, **settings: object) -> int:
    """``ggk init`` into ``directory`` with 87654321 delivered to the sink; ``settings``
    replace existing gateway.toml values (e.g. backoff_base=0.1). Returns the gateway's port."""
    port = free_port()
    demo.init(directory, port=port)
    partners = directory / "partners.toml"
    partners.write_text(
        partners.read_text().replace(
            f'adapter = "directory"\npath = "{directory.resolve()}/drop/{SINK_PARTNER}"',
            f'adapter = "http"\nurl = "http://127.0.0.1:{sink_port}/http"',
        )
    )
    config = (directory / "gateway.toml").read_text()
    for key, value in settings.items():
        line = f"{key} = {str(value).lower() if isinstance(value, bool) else value}"
        config, found = re.subn(rf"^{key} = .*$", line, config, flags=re.M)
        if not found:
            raise KeyError(f"{key} is not a setting of the demo gateway.toml")
    (directory / "gateway.toml").write_text(config)
    return port


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


async def start_gateway(
    directory: Path, url: str, context: ssl.SSLContext, log_level: str = "ERROR"
) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        GGK, "serve", "--config", str(directory / "gateway.toml"), "--log-level", log_level
    )
    await wait_healthy(url, context)
    return process
