"""A small client of a running gateway, used by the operator CLI (``ggk submit``, ``status``…).

It finds the gateway's URL and trust anchor in the gateway configuration and the credentials in
``secrets/tokens.toml`` next to it (as written by ``ggk init``), unless given explicitly.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

from gateway import soap
from gateway.config import GatewayConfig


class ClientError(Exception):
    """The gateway answered with an error; the text says which."""


class Unreachable(ClientError):
    """The gateway could not be reached at all (an I/O problem, not an answer)."""


def _certificate_problem(base_url: str, ca: str | None, exc: Exception) -> str:
    """Why the TLS handshake with the gateway failed, said as a certificate problem: the
    gateway is running, but its certificate is not the one this side trusts (after a
    `ggk init --force` the gateway must be restarted to load the new one)."""
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        why = "its certificate is not signed by the CA this configuration trusts"
        if "Hostname mismatch" in text or "doesn't match" in text:
            why = "its certificate is not issued for this host name"
        elif "expired" in text:
            why = "its certificate has expired"
    else:
        why = "the TLS handshake failed"
    trusted = f" (trusted CA: {ca})" if ca else " (trusted CAs: the system's)"
    return (
        f"certificate mismatch at {base_url}: {why}{trusted}. If the gateway's certificates "
        "were issued again (`ggk init --force`), restart `ggk serve` so it presents the new "
        "one; otherwise point --config at the configuration of this gateway."
    )


@dataclass
class GatewayClient:
    base_url: str
    token: str | None = None
    ca: str | None = None
    timeout: float = 60.0

    @classmethod
    def for_config(
        cls,
        config: GatewayConfig,
        *,
        partner: str | None = None,
        token: str | None = None,
        url: str | None = None,
    ) -> GatewayClient:
        """A client of the gateway ``config`` describes (or of ``url``, e.g. another host
        running the same setup), with the token of ``partner`` (None: the admin token)."""
        if token is None:
            token = _token_from_secrets(config.path.parent / "secrets" / "tokens.toml", partner)
        ca = str(config.tls.client_ca) if config.tls and config.tls.client_ca else None
        return cls((url or config.base_url).rstrip("/"), token, ca)

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            return requests.request(
                method,
                self.base_url + path,
                headers=headers,
                verify=self.ca or True,
                timeout=self.timeout,
                **kwargs,
            )
        except requests.RequestException as exc:
            reason = type(exc).__name__
            if isinstance(exc, requests.exceptions.SSLError):
                # SSLError is a ConnectionError too: name the certificate, not the network
                raise Unreachable(_certificate_problem(self.base_url, self.ca, exc)) from None
            if isinstance(exc, requests.ConnectionError):
                reason = "connection refused or unreachable (is `ggk serve` running?)"
            raise Unreachable(f"cannot reach the gateway at {self.base_url}: {reason}") from None

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return _body(self._request(method, path, **kwargs), path)

    def submit_raw(self, payload: bytes, idempotency_key: str | None = None) -> Any:
        headers = {"Content-Type": "application/xml"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return self._json("POST", "/api/v1/messages", data=payload, headers=headers)

    def submit_envelope(self, envelope_xml: bytes, soap_action: str) -> requests.Response:
        return self._request(
            "POST",
            "/ggk/OntvangAsynchroon",
            data=soap.wrap_request(envelope_xml),
            headers={"Content-Type": soap.CONTENT_TYPE, "SOAPAction": f'"{soap_action}"'},
        )

    def status(self, message_id: str) -> Any:
        return self._json("GET", f"/api/v1/messages/{message_id}")

    def inbox(self, limit: int = 100, after: int = 0) -> Any:
        return self._json("GET", f"/api/v1/inbox?limit={limit}&after={after}")

    def inbox_pages(self, limit: int = 1000) -> Iterator[list[dict[str, Any]]]:
        """Every waiting message, a page at a time (no cap)."""
        after: int | None = 0
        while after is not None:
            page = self.inbox(limit, after)
            yield page["messages"]
            after = page.get("next")

    def inbox_envelope(self, message_id: str) -> bytes:
        response = self._request("GET", f"/api/v1/inbox/{message_id}")
        if response.status_code != 200:
            raise ClientError(f"HTTP {response.status_code} fetching {message_id}")
        return response.content

    def ack(self, message_id: str) -> Any:
        return self._json("POST", f"/api/v1/inbox/{message_id}/ack")

    def dead_letters(self, partner: str | None = None, limit: int = 10000, after: int = 0) -> Any:
        query = urlencode(
            {"limit": limit, "after": after, **({"partner": partner} if partner else {})}
        )
        return self._json("GET", f"/api/v1/admin/dead-letters?{query}")

    def all_dead_letters(self, partner: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """Every dead letter, a page at a time (no cap)."""
        after: int | None = 0
        while after is not None:
            page = self.dead_letters(partner, 10000, after)
            yield page["dead_letters"]
            after = page.get("next")

    def replay(self, **body: Any) -> Any:
        return self._json("POST", "/api/v1/admin/replay", json=body)

    def overdue(self, days: float | None = None) -> Any:
        query = f"?days={days}" if days is not None else ""
        return self._json("GET", f"/api/v1/admin/overdue{query}")

    def figures(self, **query: str | None) -> Any:
        """Beleidsinformatie (``gemeente``, ``from``, ``to``) as JSON."""
        wanted = urlencode({k: v for k, v in query.items() if v})
        return self._json("GET", f"/api/v1/stats?{wanted}")

    def figures_csv(self, **query: str | None) -> str:
        wanted = urlencode({"format": "csv", **{k: v for k, v in query.items() if v}})
        response = self._request("GET", f"/api/v1/stats?{wanted}")
        if response.status_code != 200:
            _body(response, "/api/v1/stats")  # a problem document: raises with its title
            raise ClientError(f"HTTP {response.status_code} from /api/v1/stats")
        return response.text


def _body(response: requests.Response, path: str) -> Any:
    """A JSON answer, or the ClientError its problem document (or status) describes."""
    try:
        body = response.json()
    except ValueError:
        raise ClientError(f"HTTP {response.status_code} from {path}") from None
    if response.status_code >= 400:
        code = f" [{body['code']}]" if body.get("code") else ""
        raise ClientError(f"HTTP {response.status_code}{code}: {body.get('title')}")
    return body


def _token_from_secrets(path: Path, partner: str | None) -> str | None:
    if not path.is_file():
        return None
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    if partner is None:
        token = data.get("admin")
    else:
        token = data.get("partners", {}).get(partner)
        if token is None:
            raise ClientError(f"no token for partner {partner} in {path}")
    return str(token) if token else None
