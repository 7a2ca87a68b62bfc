"""StUF: call the partner's OntvangAsynchroon with ggk_Di01 / ggk_Du01 / Fo01 through zeep.

zeep reads our WSDL for the binding (operation, soapAction) and does the HTTP exchange and the
fault parsing; we hand it the envelope exactly as it was accepted, so nothing of the message
is re-serialised on the way. A Bv03 is success. A Fo03 fault with ``plek`` = server means the
receiver had a problem: retry the same message unchanged (StUF 4.2). ``plek`` = client means
the message itself was refused: permanent.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import requests
import zeep
import zeep.exceptions
from lxml import etree
from zeep.transports import Transport

from adapters.base import AdapterError, Outbound, PermanentError, RetryableError
from adapters.http import TLS_SETTINGS
from gateway.bundled import ontvang_wsdl
from gateway.soap import SOAP11_NS, soap_action_for
from gateway.xmlsafe import parse_own

STUF_NS = "http://www.egem.nl/StUF/StUF0301"
_NOT_CODE = re.compile(r"[^A-Za-z0-9]")


def _code(value: str | None) -> str:
    """A foutcode as the partner sent it, reduced to what a code can be (it is shown)."""
    return _NOT_CODE.sub("", value or "")[:12] or "?"


class StufAdapter:
    holds = False
    setting_keys = frozenset({"url", "timeout"}) | TLS_SETTINGS

    def __init__(self, settings: dict[str, Any], *, timeout: float) -> None:
        url = settings.get("url")
        if not url:
            raise AdapterError("the stuf adapter needs a 'url'")
        self.url = str(url)
        session = requests.Session()
        if settings.get("ca_file"):
            session.verify = str(settings["ca_file"])
            # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override Session.verify; a
            # configured trust anchor must win, so the environment is not consulted.
            session.trust_env = False
        if settings.get("cert_file"):
            session.cert = (str(settings["cert_file"]), str(settings.get("key_file", "")))
        seconds = float(settings.get("timeout", timeout))
        transport = Transport(  # type: ignore[no-untyped-call]
            session=session, timeout=seconds, operation_timeout=seconds
        )
        self.client = zeep.Client(str(ontvang_wsdl()), transport=transport)  # type: ignore[no-untyped-call]
        self.binding = _binding(self.client)

    def _call(self, item: Outbound) -> None:
        body = parse_own(item.envelope)
        operation = soap_action_for(body).rsplit("/", 1)[-1]
        soap = etree.Element(f"{{{SOAP11_NS}}}Envelope", nsmap={"soapenv": SOAP11_NS})
        etree.SubElement(soap, f"{{{SOAP11_NS}}}Body").append(body)
        headers = {
            "SOAPAction": f'"{soap_action_for(body)}"',
            "Content-Type": "text/xml; charset=utf-8",
            "Idempotency-Key": item.idempotency_key,
        }
        try:
            response = self.client.transport.post_xml(self.url, soap, headers)
            self.binding.process_reply(self.client, self.binding.get(operation), response)
        except zeep.exceptions.Fault as fault:
            detail = fault.detail
            plek = detail.findtext(f".//{{{STUF_NS}}}plek") if detail is not None else None
            code = detail.findtext(f".//{{{STUF_NS}}}code") if detail is not None else None
            summary = f"Fo03 {_code(code or fault.code)}"
            text = str(fault.message or "")[:1000] or None  # the partner's words: sealed
            if plek == "client":
                raise PermanentError(summary, text, kind="fo03") from None
            raise RetryableError(summary, text, kind="fo03") from None
        except zeep.exceptions.TransportError as exc:
            if (
                exc.status_code
                and 400 <= exc.status_code < 500
                and exc.status_code not in (408, 429)
            ):
                raise PermanentError(f"HTTP {exc.status_code}", kind="http") from None
            raise RetryableError(f"HTTP {exc.status_code}", kind="http") from None
        except (requests.RequestException, OSError, zeep.exceptions.Error) as exc:
            raise RetryableError(type(exc).__name__, str(exc)[:1000], kind="connection") from None

    async def deliver(self, item: Outbound) -> None:
        await asyncio.to_thread(self._call, item)

    async def close(self) -> None:
        self.client.transport.session.close()


def _binding(client: Any) -> Any:
    """The WSDL's one SOAP binding, reached through zeep's public model (service → port →
    binding) rather than the private ``client.service._binding``."""
    service = next(iter(client.wsdl.services.values()))
    return next(iter(service.ports.values())).binding
