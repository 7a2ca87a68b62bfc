"""Connection hygiene: caps per peer and in total, and a deadline for a request's headers.

aiohttp closes an idle keep-alive connection (``keepalive_timeout``) and bounds a request's
body (the gateway's ``body_timeout``), but a connection that never completes its first
request's headers, or one of thousands opened by one peer, would otherwise stay open for
ever. :class:`GuardedSite` listens like aiohttp's ``TCPSite`` and wraps each connection's
protocol in a :class:`ConnectionGuard` that counts it, refuses it with a 503 beyond the caps,
and closes it when its headers do not arrive within ``header_timeout`` (the TLS handshake has
the same deadline, through asyncio's ``ssl_handshake_timeout``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from typing import Any, TypeGuard

import structlog
from aiohttp import web

from gateway.config import ConnectionLimits
from gateway.metrics import CONNECTIONS_CLOSED

log = structlog.get_logger("ggk.connections")

_BUSY_BODY = b'{"status": 503, "title": "too many connections; try later"}'
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)
_HEADERS_END = b"\r\n\r\n"


class ConnectionTable:
    """Open connections, in total and per peer address."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.total = 0
        self.by_peer: Counter[str] = Counter()
        self.refused = 0
        self.timed_out = 0

    def admit(self, peer: str) -> bool:
        if self.total >= self.limits.max_connections:
            return self._refuse("total_cap")
        if self.by_peer[peer] >= self.limits.max_connections_per_peer:
            return self._refuse("per_peer_cap")
        self.total += 1
        self.by_peer[peer] += 1
        return True

    def _refuse(self, reason: str) -> bool:
        self.refused += 1
        CONNECTIONS_CLOSED.labels(reason=reason).inc()
        return False

    def release(self, peer: str) -> None:
        self.total -= 1
        self.by_peer[peer] -= 1
        if self.by_peer[peer] <= 0:
            del self.by_peer[peer]


def _writable(transport: asyncio.BaseTransport) -> TypeGuard[asyncio.WriteTransport]:
    """A transport that can be written to and aborted. By what it does, not by its class:
    uvloop's transports implement asyncio's interface without inheriting from its ABCs."""
    return hasattr(transport, "write") and hasattr(transport, "abort")


class ConnectionGuard(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection (see the module docstring)."""

    def __init__(self, inner: asyncio.Protocol, table: ConnectionTable) -> None:
        self.inner = inner
        self.table = table
        self.peer = ""
        self.admitted = False
        self.transport: asyncio.BaseTransport | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peername = transport.get_extra_info("peername")
        self.peer = str(peername[0]) if isinstance(peername, tuple) and peername else "?"
        if not self.table.admit(self.peer):
            if _writable(transport):
                transport.write(BUSY)
            transport.close()
            log.warning("connection.refused", peer=self.peer, open=self.table.total)
            return
        self.admitted = True
        self.deadline = asyncio.get_running_loop().call_later(
            self.table.limits.header_timeout, self._headers_late
        )
        self.inner.connection_made(transport)

    def _headers_late(self) -> None:
        self.deadline = None
        self.table.timed_out += 1
        CONNECTIONS_CLOSED.labels(reason="header_timeout").inc()
        log.info("connection.header_timeout", peer=self.peer)
        if self.transport is not None and _writable(self.transport):
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if not self.admitted:
            return
        if self.deadline is not None:
            # The first request's headers end at a blank line; later requests on the same
            # connection are aiohttp's keep-alive business.
            if _HEADERS_END in self.tail + data:
                self.deadline.cancel()
                self.deadline = None
            else:
                self.tail = (self.tail + data)[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None

    def pause_writing(self) -> None:
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        if not self.admitted:
            return
        self.admitted = False
        self.table.release(self.peer)
        self.inner.connection_lost(exc)


class LoggedHandshake(ssl.SSLObject):
    """An SSLObject that logs why a TLS handshake failed (a revoked or foreign client
    certificate, an old protocol version). asyncio reports these only in debug mode, so an
    operator would otherwise never see a partner being refused in the handshake."""

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as exc:
            CONNECTIONS_CLOSED.labels(reason="tls_handshake").inc()
            log.warning(
                "tls.handshake_failed",
                reason=str(exc.reason or type(exc).__name__)[:80],
                verify=str(getattr(exc, "verify_message", "") or "")[:80] or None,
            )
            raise


class GuardedSite(web.TCPSite):
    """``web.TCPSite`` whose connections pass through a :class:`ConnectionGuard`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, **kwargs: Any) -> None:
        self.limits: ConnectionLimits = kwargs.pop("limits")
        self.table = ConnectionTable(self.limits)
        super().__init__(runner, host, port, **kwargs)

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ConnectionGuard(server(), self.table),
            self._host,
            self._port,
            ssl=self._ssl_context,
            ssl_handshake_timeout=self.limits.header_timeout if self._ssl_context else None,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
        )
