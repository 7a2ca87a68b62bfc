"""The hostile-input corpus (tests/hostile, written by scripts/make_hostile.py) against a real
gateway process: each case gets its documented HTTP status and Fo03 foutcode, the process
stays up, and its memory stays bounded (RSS measured before and after)."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import signal
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from lxml import etree

from gateway import envelope as env
from gateway import soap
from tests.conftest import sample
from tests.gatewaykit import GGK, Setup, eventually, fo03_code, make_setup, rest

HOSTILE = Path(__file__).resolve().parent / "hostile"
EXPECTED: dict[str, dict[str, Any]] = json.loads((HOSTILE / "expected.json").read_text())
DI01 = "http://www.stufstandaarden.nl/koppelvlak/ggk0210/ggk_Di01"
SOAP_OPEN = b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'


def wrap(body: bytes) -> bytes:
    return SOAP_OPEN + b"<soapenv:Body>" + body + b"</soapenv:Body></soapenv:Envelope>"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def post(
    setup: Setup,
    body: bytes,
    *,
    partner: str | None = "0150",
    soapaction: str | None = DI01,
    headers: dict[str, str] | None = None,
) -> tuple[int, str | None]:
    all_headers = {"Content-Type": soap.CONTENT_TYPE, **(headers or {})}
    if soapaction is not None:
        all_headers["SOAPAction"] = f'"{soapaction}"'
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{setup.url}/ggk/OntvangAsynchroon",
            data=body,
            headers=all_headers,
            ssl=setup.ssl_context(partner),
        ) as response,
    ):
        data = await response.read()
    if response.status == 200:
        return 200, "Bv03" if b"Bv03Bericht" in data else "?"
    try:
        return response.status, fo03_code(data)
    except etree.XMLSyntaxError:
        return response.status, None


async def raw_request(setup: Setup, head: bytes, chunks: list[bytes], pause: float) -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", setup.port, ssl=setup.ssl_context("0150"), server_hostname="localhost"
    )
    writer.write(head)
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(pause)
    try:
        return await asyncio.wait_for(reader.read(4096), 10)
    finally:
        writer.close()


def http_head(length: int) -> bytes:
    return (
        f"POST /ggk/OntvangAsynchroon HTTP/1.1\r\nHost: localhost\r\n"
        f'Content-Type: text/xml\r\nSOAPAction: "{DI01}"\r\n'
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def test_hostile_corpus_against_a_live_gateway(tmp_path: Path) -> None:
    setup = make_setup(tmp_path / "gw", 1)
    config = re.sub(
        r"^body_timeout = .*$", "body_timeout = 2", setup.config_path.read_text(), flags=re.M
    )
    assert "body_timeout = 2" in config
    setup.config_path.write_text(config)
    log = (tmp_path / "gateway.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        GGK, "serve", "--config", str(setup.config_path), stdout=log, stderr=log
    )

    async def healthy() -> bool:
        try:
            return (await rest(setup, "GET", "/healthz"))[0] == 200
        except OSError:
            return False

    try:
        await eventually(healthy, timeout=30, interval=0.1)
        for _ in range(20):  # warm up: schemas, TLS, allocator
            await post(
                setup,
                soap.wrap_request(
                    env.build_di01(
                        sample("iwmo/wmo301.xml").encode(),
                        zender="0150",
                        zender_applicatie="DOWRsociaal",
                        ontvanger="12345678",
                        functie="WMO301",
                    )
                ),
            )
        rss_before = rss_kib(process.pid)
        mismatches = []
        for name, want in EXPECTED.items():
            if name.startswith("generated-"):
                continue
            got = await post(
                setup,
                (HOSTILE / name).read_bytes(),
                partner=want["as"],
                soapaction=want["soapaction"],
            )
            if got != (want["status"], want["code"]):
                mismatches.append((name, got, (want["status"], want["code"])))

        got = await post(setup, wrap(b"<r>" + b"x" * 30_000_000 + b"</r>"))
        if got != (413, "IB007"):
            mismatches.append(("generated-30mb-body", got, (413, "IB007")))
        got = await post(setup, wrap(b"<a>" * 100_000 + b"</a>" * 100_000))
        if got != (500, "StUF055"):
            mismatches.append(("generated-100k-nesting", got, (500, "StUF055")))
        bomb = gzip.compress(b"<" + b"a" * 50_000_000)
        got = await post(setup, bomb, headers={"Content-Encoding": "gzip"})
        if got[0] != 413:
            mismatches.append(("generated-gzip-bomb", got, (413, "IB007")))
        ref = str(uuid.uuid4())
        first = soap.wrap_request(
            env.build_di01(
                sample("iwmo/wmo301.xml").encode().replace(b"WMO301A0001", b"WMO301A0777"),
                zender="0150",
                zender_applicatie="DOWRsociaal",
                ontvanger="12345678",
                functie="WMO301",
                referentienummer=ref,
            )
        )
        other = first.replace(b"DOWRsociaal", b"DOWRsociaal").replace(
            env_payload(first), env_payload(first, b"Hendrika Maria", b"Hendrika Anna")
        )
        assert (await post(setup, first)) == (200, "Bv03")
        got = await post(setup, other)
        if got != (500, "StUF016"):
            mismatches.append(("generated-duplicate-other-content", got, (500, "StUF016")))
        await raw_request(setup, http_head(10_000), [b"<" * 100], 0)  # then we hang up
        answer = await raw_request(setup, http_head(1000), [b"<"] * 8, 0.5)
        if not answer.startswith(b"HTTP/1.1 408"):
            mismatches.append(("generated-slow-body", answer[:40], 408))

        assert not mismatches, "\n".join(f"{n}: got {g}, documented {w}" for n, g, w in mismatches)
        assert process.returncode is None and await healthy()
        rss_after = rss_kib(process.pid)
        growth = rss_after - rss_before
        print(
            f"\ngateway RSS before {rss_before / 1024:.0f} MiB, after "
            f"{rss_after / 1024:.0f} MiB (+{growth / 1024:.0f} MiB) over "
            f"{len(EXPECTED)} hostile cases incl. 30 MB and a 50 MB gzip bomb"
        )
        assert growth < 150 * 1024, f"RSS grew by {growth / 1024:.0f} MiB"
        logged = (tmp_path / "gateway.log").read_bytes()
        assert b"Traceback" not in logged and b"999990019" not in logged
        secrets = (setup.directory / "secrets" / "tokens.toml").read_text()
        tokens = re.findall(r'= "([A-Za-z0-9_-]{20,})"', secrets)
        assert len(tokens) == 9  # admin + 8 partners: the grep below really checks them
        for token in tokens:
            assert token.encode() not in logged, "a token appears in the gateway log"
    finally:
        if process.returncode is None:
            os.kill(process.pid, signal.SIGTERM)
        await process.wait()
        log.close()


def env_payload(soap_request: bytes, old: bytes = b"", new: bytes = b"") -> bytes:
    """The base64 payload inside a request, or that payload with ``old`` replaced by ``new``."""
    import base64

    root = etree.fromstring(soap_request)
    text = root.findtext(".//{*}xmlBestand") or ""
    if not old:
        return text.encode()
    return base64.b64encode(base64.b64decode(text).replace(old, new))
