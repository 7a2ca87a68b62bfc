"""HTTP: POST the envelope to a partner URL. 2xx delivered; 408, 429, 5xx and network errors
are retried; any other status is permanent."""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp

from adapters.base import AdapterError, Outbound, PermanentError, RetryableError

RETRYABLE_STATUS = {408, 425, 429}

TLS_SETTINGS = frozenset({"ca_file", "cert_file", "key_file"})
"""The settings :func:`client_ssl` reads, shared by the network adapters."""


def client_ssl(settings: dict[str, Any]) -> ssl.SSLContext | None:
    """TLS settings shared by the network adapters: ca_file, cert_file, key_file."""
    ca, cert = settings.get("ca_file"), settings.get("cert_file")
    if not ca and not cert:
        return None
    context = ssl.create_default_context(cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        context.load_cert_chain(cert, settings.get("key_file"))
    return context


class HttpAdapter:
    holds = False
    setting_keys = frozenset({"url", "timeout"}) | TLS_SETTINGS

    def __init__(self, settings: dict[str, Any], *, timeout: float) -> None:
        url = settings.get("url")
        if not url:
            raise AdapterError("the http adapter needs a 'url'")
        self.url = str(url)
        self.timeout = aiohttp.ClientTimeout(total=float(settings.get("timeout", timeout)))
        self.ssl = client_ssl(settings)
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, item: Outbound) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        headers = {
            "Content-Type": "text/xml; charset=utf-8",
            "Idempotency-Key": item.idempotency_key,
            "X-GGK-Message-Id": item.message_id,
            "X-GGK-Functie": item.functie,
        }
        try:
            async with self._session.post(
                self.url, data=item.envelope, headers=headers, ssl=self.ssl if self.ssl else True
            ) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RetryableError(type(exc).__name__, str(exc)[:1000], kind="connection") from None
        if 200 <= status < 300:
            return
        if status >= 500 or status in RETRYABLE_STATUS:
            raise RetryableError(f"HTTP {status}", kind="http")
        raise PermanentError(f"HTTP {status}", kind="http")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
