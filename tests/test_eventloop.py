"""The event loop and the interpreter lock of ``ggk serve`` (gateway/eventloop.py).

On uvloop (``GGK_EVENT_LOOP=uvloop``) the connection guard still closes a connection whose
headers never complete and still tells a peer over its share so, and a message is accepted
and delivered: uvloop's transports do not inherit asyncio's ABCs, so a guard that asked
``isinstance(transport, asyncio.WriteTransport)`` left such connections open on uvloop.
While a request with a large body is handled, threads hand the lock back every 0.5 ms, and
only then.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import sys
from pathlib import Path

import pytest

from gateway import eventloop, soap
from kit.gateway import (
    GGK,
    Setup,
    Sink,
    declaratie_di01,
    deventer_wmo301,
    eventually,
    fo03_code,
    make_setup,
    post_soap,
    running,
    serve,
)
from kit.messages import big_declaratie


def test_the_loop_is_asyncio_unless_uvloop_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GGK_EVENT_LOOP", raising=False)
    assert eventloop.name() == "asyncio" and eventloop.loop_factory() is None
    monkeypatch.setenv("GGK_EVENT_LOOP", "uvloop")
    assert eventloop.name() == "uvloop"
    monkeypatch.setenv("GGK_EVENT_LOOP", "tokio")
    with pytest.raises(eventloop.UnknownLoop, match="asyncio or uvloop"):
        eventloop.loop_factory()


def test_the_switch_interval_for_large_messages_is_half_a_millisecond_unless_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GGK_GIL_SWITCH_MS", raising=False)
    assert eventloop.gil_switch_ms() == eventloop.GIL_SWITCH_MS == 0.5
    monkeypatch.setenv("GGK_GIL_SWITCH_MS", "5")  # Python's own, for a measurement
    assert eventloop.gil_switch_ms() == 5.0
    for bad in ("fast", "0", "-1", "nan", "inf", "51", "1e9"):
        monkeypatch.setenv("GGK_GIL_SWITCH_MS", bad)
        with pytest.raises(eventloop.BadSwitchInterval, match=r"milliseconds from 0\.1 to 50"):
            eventloop.gil_switch_ms()


def test_short_turns_last_while_any_large_message_is_in_hand() -> None:
    normal = sys.getswitchinterval()
    with contextlib.ExitStack() as second_open:
        with contextlib.ExitStack() as first_open:
            first_open.enter_context(eventloop.short_turns(0.5))
            assert sys.getswitchinterval() == 0.0005
            second_open.enter_context(eventloop.short_turns(0.5))
            with eventloop.short_turns(None):  # a small message changes nothing
                assert sys.getswitchinterval() == 0.0005
        # the first ended, overlapping (not nested): the second still holds
        assert sys.getswitchinterval() == 0.0005
    assert sys.getswitchinterval() == normal
    with pytest.raises(RuntimeError), eventloop.short_turns(1.0):
        raise RuntimeError("a handler that fails")
    assert sys.getswitchinterval() == normal


@pytest.mark.slow
async def test_a_large_message_shortens_the_turns_until_it_is_answered(
    tmp_path: Path, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GGK_GIL_SWITCH_MS", raising=False)
    setup: Setup = make_setup(tmp_path / "gw", sink.port)
    set_to: list[float] = []
    real = sys.setswitchinterval

    def spied(seconds: float) -> None:
        set_to.append(seconds)
        real(seconds)

    monkeypatch.setattr(sys, "setswitchinterval", spied)
    normal = sys.getswitchinterval()
    async with running(setup):
        status, _ = await post_soap(setup, deventer_wmo301(), partner="0150")
        assert status == 200 and set_to == []  # a small message leaves it alone
        status, answer = await post_soap(
            setup, declaratie_di01(big_declaratie()), partner="12345678"
        )
        assert status == 200, answer[:500]
        assert set_to == [0.0005, normal]
        # hostile sizes: a large message refused (0150 may not send 12345678's declaratie),
        # and one whose client hangs up as soon as it is sent; neither leaves it short
        status, answer = await post_soap(setup, declaratie_di01(big_declaratie()), partner="0150")
        assert status == 500 and fo03_code(answer) == "StUF052", answer[:500]
        body = soap.wrap_request(declaratie_di01(big_declaratie()))
        _, writer = await asyncio.open_connection(
            "127.0.0.1", setup.port, ssl=setup.ssl_context("12345678"), server_hostname="localhost"
        )
        writer.write(
            f"POST /ggk/OntvangAsynchroon HTTP/1.1\r\nHost: localhost\r\n"
            f'Content-Type: {soap.CONTENT_TYPE}\r\nSOAPAction: ""\r\n'
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()
        await eventually(lambda: len(set_to) == 6, timeout=60)
        assert set_to == [0.0005, normal] * 3 and sys.getswitchinterval() == normal


@pytest.mark.slow
async def test_serve_refuses_a_bad_switch_interval_without_a_traceback(
    tmp_path: Path, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup: Setup = make_setup(tmp_path / "gw", sink.port)
    monkeypatch.setenv("GGK_GIL_SWITCH_MS", "fast")
    refused = await asyncio.create_subprocess_exec(
        GGK,
        "serve",
        "--config",
        str(setup.config_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(refused.communicate(), 60)
    assert refused.returncode != 0
    assert b"GGK_GIL_SWITCH_MS='fast'" in output and b"Traceback" not in output, output


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
