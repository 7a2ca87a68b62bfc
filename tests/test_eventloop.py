"""``ggk serve`` on uvloop (``GGK_EVENT_LOOP=uvloop``, gateway/eventloop.py): the connection guard still closes a
connection whose headers never complete and still tells a peer over its share so, and a
message is accepted and delivered. uvloop's transports do not inherit asyncio's ABCs, so
a guard that asked ``isinstance(transport, asyncio.WriteTransport)`` left such connections
open on uvloop."""

from __future__ import annotations

import asyncio
import re
import ssl
from pathlib import Path

import pytest

from gateway import eventloop
from kit.gateway import Setup, Sink, deventer_wmo301, eventually, make_setup, post_soap, serve


def test_the_loop_is_asyncio_unless_uvloop_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GGK_EVENT_LOOP", raising=False)
    assert eventloop.name() == "asyncio" and eventloop.loop_factory() is None
    monkeypatch.setenv("GGK_EVENT_LOOP", "uvloop")
    assert eventloop.name() == "uvloop"
    monkeypatch.setenv("GGK_EVENT_LOOP", "tokio")
    with pytest.raises(eventloop.UnknownLoop, match="asyncio or uvloop"):
        eventloop.loop_factory()


@pytest.mark.slow
async def test_serve_on_uvloop_guards_connections_and_accepts(
    tmp_path: Path, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GGK_EVENT_LOOP", "uvloop")  # ggk serve inherits the environment
    setup: Setup = make_setup(tmp_path / "gw", sink.port)
    config = setup.config_path.read_text()
    for key, value in (("header_timeout", 0.5), ("max_connections_per_peer", 2)):
        config = re.sub(rf"^{key} = .*$", f"{key} = {value}", config, flags=re.M)
    setup.config_path.write_text(config)
    context = ssl.create_default_context(cafile=setup.ca)

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(
            "127.0.0.1", setup.port, ssl=context, server_hostname="localhost"
        )

    process = await serve(setup, tmp_path / "serve.log")
    try:
        assert "uvloop" in (tmp_path / "serve.log").read_text()
        # headers that never complete: the gateway closes the connection
        reader, writer = await connect()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert await asyncio.wait_for(reader.read(), 30) == b""
        writer.close()
        # two idle connections are this peer's share; the third is told so and closed
        held = [await connect() for _ in range(2)]
        reader, writer = await connect()
        answer = await asyncio.wait_for(reader.read(), 30)
        assert answer.startswith(b"HTTP/1.1 503") and b"too many connections" in answer
        writer.close()
        for _, w in held:
            w.close()
        await asyncio.sleep(0.2)  # the held connections' close reaches the gateway
        status, body = await post_soap(setup, deventer_wmo301(), partner="0150")
        assert status == 200 and b"Bv03Bericht" in body
        await eventually(lambda: sink.received, timeout=60)
    finally:
        process.terminate()
        await process.wait()
