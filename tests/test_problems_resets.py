"""A connection reset inside a handler, outside a body read, is the gateway's own failure
(second review, S4): the error middleware answers it with a 500 logged as ``request.failed``,
not a 499 at info level that hides it from 5xx counts and alerts. A client hanging up
mid-body is handled where bodies are read (gateway/web/body.py, gateway/admission.py)."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from structlog.testing import capture_logs

from gateway.problems import problems_not_tracebacks


async def _outbound_reset(request: web.Request) -> web.Response:
    raise ConnectionResetError("an outbound connection of the gateway was reset")


async def test_a_reset_outside_a_body_read_is_a_500() -> None:
    app = web.Application(middlewares=[problems_not_tracebacks])
    app.router.add_get("/reset", _outbound_reset)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        with capture_logs() as logs:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/reset") as response,
            ):
                assert response.status == 500
                body = await response.json()
        assert body["status"] == 500 and "reset" not in body["title"]
        assert [e["event"] for e in logs if e["log_level"] == "error"] == ["request.failed"]
    finally:
        await runner.cleanup()
