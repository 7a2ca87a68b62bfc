"""Test kit: a demo setup in a temporary directory, a real partner server on loopback, the
gateway running for real (in-process or as a ``ggk serve`` subprocess), and clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
import sys
import tomllib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import requests
import zeep
from aiohttp import web
from lxml import etree
from zeep.transports import Transport

from gateway import demo, soap
from gateway import envelope as env
from gateway.config import GatewayConfig
from gateway.config import load as load_config
from gateway.server import Gateway, run
from kit import harness
from kit.harness import free_port

STUF = env.STUF_NS


@dataclass
class Setup:
    """A ``ggk init`` directory with a few partners pointed at a loopback sink."""

    directory: Path
    port: int
    config_name: str = "gateway.toml"

    @property
    def config_path(self) -> Path:
        return self.directory / self.config_name

    def config(self) -> GatewayConfig:
        return load_config(self.config_path)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca(self) -> str:
        return str(self.directory / "pki" / "ca.crt")

    def token(self, partner: str | None = None) -> str:
        data = tomllib.loads((self.directory / "secrets" / "tokens.toml").read_text())
        return str(data["admin"] if partner is None else data["partners"][partner])

    def client_cert(self, partner: str) -> tuple[str, str]:
        pki = self.directory / "pki"
        return str(pki / f"client-{partner}.crt"), str(pki / f"client-{partner}.key")

    def ssl_context(self, partner: str | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca)
        if partner:
            context.load_cert_chain(*self.client_cert(partner))
        return context


def make_setup(directory: Path, sink_port: int, **delivery: float) -> Setup:
    """``ggk init`` plus: 12345678 delivered by the stuf adapter and 87654321 by http, both to
    the sink on ``sink_port``; fast backoff so retry tests take milliseconds."""
    port = free_port()
    demo.init(directory, port=port)
    partners = (directory / "partners.toml").read_text()
    partners = with_delivery(
        partners, "12345678", f'adapter = "stuf"\nurl = "http://127.0.0.1:{sink_port}/soap"\n'
    )
    partners = with_delivery(
        partners, "87654321", f'adapter = "http"\nurl = "http://127.0.0.1:{sink_port}/http"\n'
    )
    (directory / "partners.toml").write_text(partners)
    config = (directory / "gateway.toml").read_text()
    settings = {
        "max_attempts": 4,
        "backoff_base": 0.05,
        "backoff_max": 0.2,
        "timeout": 5.0,
        # tests send faster than a partner may (sequential requests, hundreds): the rate
        # limit has its own test (tests/test_limits.py), which sets it low
        "partner_rate": 10_000,
        "partner_burst": 10_000,
        **delivery,
    }
    for key, value in settings.items():
        config = re.sub(rf"^{key} = .*$", f"{key} = {value}", config, flags=re.M)
    (directory / "gateway.toml").write_text(config)
    return Setup(directory, port)


def use_kafka(setup: Setup, bootstrap: str, prefix: str) -> Setup:
    """Switch ``setup`` to the Kafka backend on a development cluster (one broker)."""
    harness.use_kafka(setup.config_path, bootstrap, prefix)
    return setup


def another_process(setup: Setup, name: str) -> Setup:
    """A second gateway process on the same partners, keys and cluster."""
    config, port = harness.another_process(setup.config_path, name)
    return Setup(setup.directory, port, config.name)


def with_delivery(text: str, partner: str, delivery: str) -> str:
    """partners.toml ``text`` with ``partner``'s [partner.delivery] table replaced by the
    ``delivery`` lines (how tests point a partner at a sink, the inbox or an ebMS peer)."""
    blocks = text.split("[[partner]]")
    for i, block in enumerate(blocks):
        if f'id = "{partner}"' in block:
            head = block.split("[partner.delivery]")[0]
            blocks[i] = f"{head}[partner.delivery]\n{delivery}\n"
    return "[[partner]]".join(blocks)


@dataclass
class Sink:
    """A partner's receiving system: a StUF OntvangAsynchroon endpoint and a plain HTTP one.

    ``fail_next`` makes the next N requests fail with ``fail_with``: 'http503', or 'fo03-server'
    / 'fo03-client' (a SOAP fault carrying a Fo03 with that plek)."""

    port: int = field(default_factory=free_port)
    received: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0
    fail_with: str = "http503"
    fault_text: str = "partner refuses"
    """The omschrijving of the Fo03s it answers with (a partner's words, may quote BSNs)."""
    delay: float = 0.0
    """Seconds to wait before answering (a receiver under load)."""
    requests_seen: int = 0
    _runner: web.AppRunner | None = None

    def referenties(self) -> list[str]:
        return [r["referentienummer"] for r in self.received]

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests_seen += 1
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_next > 0:
            self.fail_next -= 1
            if self.fail_with == "http503":
                return web.Response(status=503, text="busy")
            plek = self.fail_with.split("-")[1]
            return web.Response(
                status=500,
                body=soap.fault(
                    code="StUF058",
                    plek=plek,
                    omschrijving=self.fault_text,
                    cross_ref="x",
                    zender=env.Systeem("12345678", "ZorgSuite"),
                    ontvanger=env.Systeem("GGK", "GGk"),
                ),
                content_type="text/xml",
            )
        root = etree.fromstring(body)
        if request.path == "/soap":
            body_element = root.find(f"{{{soap.SOAP11_NS}}}Body")
            assert body_element is not None
            root = body_element[0]
        ref = root.findtext(f".//{{{STUF}}}referentienummer")
        self.received.append(
            {
                "path": request.path,
                "referentienummer": ref,
                "idempotency_key": request.headers.get("Idempotency-Key"),
                "soap_action": request.headers.get("SOAPAction"),
                "envelope": root,
            }
        )
        if request.path == "/http":
            return web.Response(status=204)
        return web.Response(
            body=soap.bv03(
                zender=env.Systeem("12345678", "ZorgSuite"),
                ontvanger=env.Systeem("GGK", "GGk"),
                cross_ref=ref or "",
                referentienummer=str(uuid.uuid4()),
                tijdstip=env.tijdstip_now(),
            ),
            content_type="text/xml",
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/soap", self._handle)
        app.router.add_post("/http", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@contextlib.asynccontextmanager
async def running(setup: Setup, built: Gateway | None = None) -> AsyncIterator[None]:
    """The gateway served in this event loop, stopped (cleanly) on exit; ``built``: the one
    ``build(setup.config())`` made, when the test adjusted it first."""
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(setup.config(), ready=ready, stop=stop, built=built))
    done, _ = await asyncio.wait(
        {task, asyncio.create_task(ready.wait())}, return_when=asyncio.FIRST_COMPLETED, timeout=30
    )
    if task in done:
        task.result()  # raises the start-up error
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def eventually(check: Any, timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll ``check()`` (sync or async) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def zeep_client(setup: Setup, partner: str, generation: str = "0210") -> zeep.Client:
    """A zeep client built from the gateway's own WSDL of one envelope generation (``?wsdl``
    or ``?wsdl=0310``), authenticating with mutual TLS."""
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise replace our CA
    session.verify = setup.ca
    session.cert = setup.client_cert(partner)
    transport = Transport(session=session)  # type: ignore[no-untyped-call]
    return zeep.Client(  # type: ignore[no-untyped-call]
        f"{setup.url}/ggk/OntvangAsynchroon?wsdl={generation}", transport=transport
    )


def deventer_wmo301(
    referentienummer: str | None = None,
    generation: env.Generation = env.Generation.GGK0210,
    *,
    identificatie: str | None = None,
) -> bytes:
    """The WMO301 sample as a Di01 from gemeente Deventer (0150) to zorgaanbieder 12345678;
    with ``identificatie``, the payload's Identificatie instead of the sample's (TR056
    refuses a reused one)."""
    payload = (
        Path(__file__).resolve().parent.parent / "samples" / "iwmo" / "wmo301.xml"
    ).read_bytes()
    if identificatie is not None:
        assert b">WMO301A0001<" in payload, "the sample's Identificatie changed"
        payload = payload.replace(b">WMO301A0001<", f">{identificatie}<".encode())
    return env.build_di01(
        payload,
        zender="0150",
        zender_applicatie="DOWRsociaal",
        ontvanger="12345678",
        functie="WMO301",
        referentienummer=referentienummer,
        generation=generation,
    )


def declaratie_di01(payload: bytes) -> bytes:
    """A WMO323 payload (``kit.messages.big_declaratie``'s, say) as a Di01 from its Afzender
    to its Ontvanger."""
    header = etree.fromstring(payload).find("{*}Header")
    assert header is not None, "not an iWmo message"
    return env.build_di01(
        payload,
        zender=header.findtext("{*}Afzender") or "",
        zender_applicatie="DOWRsociaal",
        ontvanger=header.findtext("{*}Ontvanger") or "",
        functie="WMO323",
    )


def di01_kwargs(
    payload: bytes,
    *,
    zender: str,
    ontvanger: str,
    functie: str,
    referentienummer: str | None = None,
) -> dict[str, Any]:
    return {
        "stuurgegevens": {
            "berichtcode": "Di01",
            "zender": {"organisatie": zender, "applicatie": "DOWRsociaal"},
            "ontvanger": {"organisatie": ontvanger, "applicatie": "GGk"},
            "referentienummer": referentienummer or str(uuid.uuid4()),
            "tijdstipBericht": env.tijdstip_now(),
            "functie": functie,
        },
        "parameters": {
            "applicatieVersie": "0001",
            "applicatieSubversie": "0000",
            "functieVersie": "0003",
            "functieSubversie": "0002",
            "bericht": {"xmlBestand": payload},
        },
    }


async def post_soap(
    setup: Setup,
    envelope_xml: bytes,
    *,
    partner: str | None = None,
    token: str | None = None,
    action: str | None = None,
) -> tuple[int, bytes]:
    """POST an envelope over SOAP with aiohttp (client certificate or bearer token)."""
    root = etree.fromstring(envelope_xml)
    headers = {
        "Content-Type": soap.CONTENT_TYPE,
        "SOAPAction": f'"{action or soap.soap_action_for(root)}"',
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{setup.url}/ggk/OntvangAsynchroon",
            data=soap.wrap_request(envelope_xml),
            headers=headers,
            ssl=setup.ssl_context(partner),
        ) as response,
    ):
        return response.status, await response.read()


def fo03_code(body: bytes) -> str | None:
    return etree.fromstring(body).findtext(
        f".//{{{STUF}}}Fo03Bericht/{{{STUF}}}body/{{{STUF}}}code"
    )


async def rest(
    setup: Setup,
    method: str,
    path: str,
    *,
    token: str | None = None,
    partner_cert: str | None = None,
    **kwargs: Any,
) -> tuple[int, Any]:
    headers = kwargs.pop("headers", {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            f"{setup.url}{path}",
            headers=headers,
            ssl=setup.ssl_context(partner_cert),
            **kwargs,
        ) as response,
    ):
        if response.content_type in ("application/json", "application/problem+json"):
            return response.status, await response.json()
        return response.status, await response.read()


GGK = str(Path(sys.executable).parent / "ggk")


async def serve(
    setup: Setup, log: Path, *, new_session: bool = False
) -> asyncio.subprocess.Process:
    """``ggk serve`` as a subprocess (output appended to ``log``), once it answers /healthz.
    ``new_session``: in a process group of its own (as a shell starts a job), for signals
    to the whole group."""
    handle = log.open("ab")
    process = await asyncio.create_subprocess_exec(
        GGK,
        "serve",
        "--config",
        str(setup.config_path),
        stdout=handle,
        stderr=handle,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # the log survives a kill -9
        start_new_session=new_session,
    )

    async def healthy() -> bool:
        if process.returncode is not None:
            raise AssertionError(f"ggk serve exited with {process.returncode}; see {log}")
        try:
            return (await rest(setup, "GET", "/healthz"))[0] == 200
        except OSError:
            return False

    try:
        await eventually(healthy, timeout=60, interval=0.1)
    except BaseException:  # never leave a gateway running behind a failed test
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    return process


async def ggk(setup: Setup, *args: str) -> tuple[int, str]:
    """Run the installed ``ggk`` command against ``setup``; (exit code, combined output)."""
    process = await asyncio.create_subprocess_exec(
        GGK,
        *args,
        "--config",
        str(setup.config_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


def jw301_payload(ontvanger: str = "87654321", identificatie: str | None = None) -> bytes:
    """The JW301 sample from gemeente 0175 to ``ontvanger`` with its own Identificatie (TR056
    refuses a reused one)."""
    text = (
        (Path(__file__).resolve().parent.parent / "samples" / "ijw" / "jw301.xml")
        .read_text()
        .replace("JW301B0001", identificatie or uuid.uuid4().hex[:12])
        .replace(">12345678<", f">{ontvanger}<")
    )
    return text.encode()


async def submit_jw301(
    setup: Setup, ontvanger: str = "87654321", identificatie: str | None = None
) -> str:
    """A JW301 over REST with gemeente 0175's token; asserts 202, returns its
    referentienummer."""
    ref = str(uuid.uuid4())
    status, body = await rest(
        setup,
        "POST",
        "/api/v1/messages",
        token=setup.token("0175"),
        data=jw301_payload(ontvanger, identificatie),
        headers={"Idempotency-Key": ref},
    )
    assert status == 202, body
    return ref


async def portal_session(setup: Setup, partner: str | None) -> tuple[aiohttp.ClientSession, str]:
    """A client signed in to the portal through its form (pre-session cookie, CSRF token,
    token); and the CSRF token of its session's forms."""
    jar = aiohttp.CookieJar(unsafe=True)
    client = aiohttp.ClientSession(cookie_jar=jar)
    async with client.get(f"{setup.url}/portal/signin", ssl=setup.ssl_context()) as page:
        csrf = hidden_field(await page.text(), "csrf")
    async with client.post(
        f"{setup.url}/portal/signin",
        data={"csrf": csrf, "method": "token", "token": setup.token(partner)},
        ssl=setup.ssl_context(),
        allow_redirects=False,
    ) as answer:
        assert answer.status == 303, await answer.text()
    async with client.get(f"{setup.url}/portal/overdue", ssl=setup.ssl_context()) as page:
        return client, hidden_field(await page.text(), "csrf")


def hidden_field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, html[:500]
    return found.group(1)


async def with_cookie(setup: Setup, cookie: str, path: str = "/portal/inbox") -> int:
    """The status of a page asked with a copy of a session cookie (no jar of its own)."""
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as thief,
        thief.get(
            f"{setup.url}{path}",
            headers={"Cookie": f"__Host-ggk-session={cookie}"},
            ssl=setup.ssl_context(),
            allow_redirects=False,
        ) as answer,
    ):
        return answer.status
