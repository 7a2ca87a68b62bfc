"""``ggk partners check ID``: is the partner's delivery reachable, without sending a message?

For the network adapters (http, stuf): the host name resolves, a TCP connection opens, for
https the TLS handshake succeeds with the configured CA (chain and host name checked by the
same settings the adapter uses: adapters/http.py ``client_ssl``, or the system's CAs) and the
partner's certificate's days left are named, then an HTTP ``OPTIONS`` asks the endpoint
something harmless (any HTTP answer shows something listens: a message is never sent). For
a folder (directory): it exists and a file can be created in it. The inbox holds messages in
the gateway: nothing to reach. ebMS endpoints come from the CPA (``ggk cpa``).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from adapters.http import client_ssl
from routing.partners import Partner


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def check_delivery(partner: Partner, timeout: float) -> list[Check]:
    settings = partner.delivery.settings
    adapter = partner.delivery.adapter
    if adapter in ("http", "stuf"):
        return _network(str(settings.get("url", "")), settings, timeout)
    if adapter == "directory":
        return _folder(Path(str(settings.get("path", ""))))
    if adapter == "inbox":
        return [
            Check("delivery", True, "inbox: the partner fetches its messages; nothing to reach")
        ]
    if adapter == "ebms":
        return [
            Check(
                "delivery",
                True,
                "ebms: the endpoint is in the CPA (ggk cpa show); not tried here",
            )
        ]
    return [Check("delivery", False, f"adapter {adapter!r}: no check known for it")]


def _folder(path: Path) -> list[Check]:
    if not path.is_dir():
        return [Check("folder", False, f"{path} is not a folder")]
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".ggk-check-"):
            pass
    except OSError as exc:
        return [
            Check("folder", True, f"{path} exists"),
            Check("writable", False, exc.strerror or ""),
        ]
    return [Check("folder", True, f"{path} exists"), Check("writable", True, "a file was created")]


def _network(url: str, settings: dict[str, object], timeout: float) -> list[Check]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [Check("url", False, f"not an http(s) URL: {url[:200]!r}")]
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    results = [Check("url", True, url)]
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return [*results, Check("dns", False, f"{host}: {exc.strerror or exc}")]
    results.append(Check("dns", True, f"{host} -> {addresses[0][4][0]}"))
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return [*results, Check("connect", False, f"{host}:{port}: {exc.strerror or exc}")]
    results.append(Check("connect", True, f"{host}:{port}"))
    with contextlib.ExitStack() as stack:
        conn: socket.socket = stack.enter_context(raw)
        if parts.scheme == "https":
            try:
                context = client_ssl(dict(settings)) or ssl.create_default_context()
            except (OSError, ssl.SSLError) as exc:
                return [*results, Check("tls", False, f"the TLS settings: {exc}")]
            try:
                conn = stack.enter_context(context.wrap_socket(raw, server_hostname=host))
            except ssl.SSLCertVerificationError as exc:
                return [*results, Check("tls", False, f"certificate refused: {exc.verify_message}")]
            except (OSError, ssl.SSLError) as exc:
                return [*results, Check("tls", False, f"handshake failed: {exc}")]
            results += _certificate(conn, host)
        results.append(_options(conn, host, parts.path or "/", timeout))
    return results


def _certificate(conn: socket.socket, host: str) -> list[Check]:
    """The handshake passed (chain and host name verified); what the certificate says."""
    assert isinstance(conn, ssl.SSLSocket)
    cert = conn.getpeercert() or {}
    not_after = cert.get("notAfter")
    days = ""
    if isinstance(not_after, str):
        expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), UTC)
        days = f", expires {expires:%Y-%m-%d} ({(expires - datetime.now(UTC)).days} days)"
    return [Check("tls", True, f"{conn.version()}, certificate valid for {host}{days}")]


def _options(conn: socket.socket, host: str, path: str, timeout: float) -> Check:
    """An HTTP OPTIONS: any status line shows an HTTP server answers there."""
    conn.settimeout(timeout)
    request = f"OPTIONS {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    try:
        conn.sendall(request.encode("ascii", "replace"))
        first = conn.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
    except OSError as exc:
        return Check("http", False, f"no answer to OPTIONS: {exc.strerror or exc}")
    if not first.startswith("HTTP/"):
        return Check("http", False, "the answer to OPTIONS is not HTTP")
    return Check("http", True, f"OPTIONS {path}: {first[:80]}")
