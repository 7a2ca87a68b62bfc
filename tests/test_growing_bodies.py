"""A chunked or gzip/deflate body reserves what has arrived, not a whole message (second
review, S1): its reservation grows as its bytes (and, encoded, its decoded bytes) come in.
Chunked SOAP is normal (Apache CXF chunks bodies above 4 KB); when each such body reserved a
whole message, a partner's share held one at a time and its concurrent requests queued
behind each other until body_timeout (503). The size limit still applies as the body grows.

Assertions are about who is served while whom is held, never about durations."""

from __future__ import annotations

import asyncio
import gzip
import uuid
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from lxml import etree

from gateway import soap
from kit.gateway import Setup, deventer_wmo301, jw301_payload, make_setup, rest, running
from tests.test_admission import PATIENCE, Held, configured, holding, settle, still_open

MIB = 1024 * 1024


async def hold_chunked(setup: Setup, token: str) -> Held:
    """A chunked SOAP POST as the partner of ``token`` whose first chunk is sent and whose
    last chunk never comes."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", setup.port, ssl=setup.ssl_context(), server_hostname="localhost"
    )
    head = [
        "POST /ggk/OntvangAsynchroon HTTP/1.1",
        "Host: localhost",
        f"Authorization: Bearer {token}",
        "Content-Type: text/xml; charset=utf-8",
        'SOAPAction: "http://www.stufstandaarden.nl/koppelvlak/ggk0210/ggk_Di01"',
        "Transfer-Encoding: chunked",
        "",
        "",
    ]
    writer.write("\r\n".join(head).encode() + b"1\r\n<\r\n")
    await writer.drain()
    return Held(writer, asyncio.create_task(asyncio.wait_for(reader.read(4096), PATIENCE)))


async def pieces(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    """``data`` as aiohttp sends an async iterator: chunked, no Content-Length."""
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await asyncio.sleep(0)


async def post_chunked_soap(setup: Setup, envelope: bytes, token: str) -> tuple[int, bytes]:
    root = etree.fromstring(envelope)
    headers = {
        "Content-Type": soap.CONTENT_TYPE,
        "SOAPAction": f'"{soap.soap_action_for(root)}"',
        "Authorization": f"Bearer {token}",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{setup.url}/ggk/OntvangAsynchroon",
            data=pieces(soap.wrap_request(envelope)),
            headers=headers,
            ssl=setup.ssl_context(),
        ) as response,
    ):
        return response.status, await response.read()


@pytest.mark.slow
async def test_a_partners_concurrent_chunked_soap_requests_are_all_accepted(
    tmp_path: Path,
) -> None:
    """0150 (the default share: one message plus 1 MiB) keeps three chunked SOAP bodies open
    and sends a fourth: it is accepted while the three are still open. Before, each chunked body reserved a whole message: the second waited for the first
    and got a 503 at body_timeout."""
    setup = configured(make_setup(tmp_path / "gw", 1), body_timeout=10, body_grace=100)
    async with running(setup):
        token = setup.token("0150")
        held = [await hold_chunked(setup, token) for _ in range(3)]
        async with holding(held):
            await settle(setup)
            envelope = deventer_wmo301(str(uuid.uuid4()))
            status, body = await post_chunked_soap(setup, envelope, token)
            assert status == 200 and b"Bv03Bericht" in body, body[:300]
            assert still_open(held)


async def _post_chunked(setup: Setup, data: bytes, encoding: str | None) -> tuple[int, object]:
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    if encoding:
        headers["Content-Encoding"] = encoding
    return await rest(
        setup,
        "POST",
        "/api/v1/messages",
        token=setup.token("0175"),
        data=pieces(data, 64 * 1024),
        headers=headers,
    )


async def test_chunked_and_encoded_bodies_are_read_and_bounded_as_they_grow(
    tmp_path: Path,
) -> None:
    """Chunked, gzip and deflate bodies decode piece by piece to the message (202); a chunked
    body past the limit, and a chunked gzip body whose decoded size passes it, are 413."""
    setup = make_setup(tmp_path / "gw", 1)
    text = setup.config_path.read_text().replace(
        "[gateway]\n", f"[gateway]\nmax_message_bytes = {MIB}\n", 1
    )
    setup.config_path.write_text(text)
    async with running(setup):
        status, body = await _post_chunked(setup, jw301_payload(), None)
        assert status == 202, body
        status, body = await _post_chunked(setup, gzip.compress(jw301_payload()), "gzip")
        assert status == 202, body
        status, body = await _post_chunked(setup, zlib.compress(jw301_payload()), "deflate")
        assert status == 202, body
        status, body = await _post_chunked(setup, b"<" + b"a" * (2 * MIB), None)
        assert status == 413, body
        bomb = gzip.compress(b"<" + b"a" * (20 * MIB))
        status, body = await _post_chunked(setup, bomb, "gzip")
        assert status == 413, body
        status, body = await _post_chunked(setup, gzip.compress(jw301_payload())[:-20], "gzip")
        assert status == 400, body
