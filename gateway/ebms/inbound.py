"""The inbound MSH: ``POST /ebms`` from a partner's ebMS2 MSH into the normal accept path.

Order of work for one request (OASIS ebMS 2.0 in Logius' Digikoppeling ebMS2 profiles):

1. ``SOAPAction: "ebXML"`` (quoted) or a SOAP fault, as ebms-core answers;
2. read the message; an unreadable one, or an unknown CPAId, is a SOAP fault (no MessageError
   can be addressed);
3. the caller must be the CPA's other party: its client certificate's partner, never a
   bearer token (or, with ``[ebms] loopback_http`` on a plain-HTTP loopback gateway for
   tests, the party itself);
4. signals: an ambiguous structure (two MessageHeaders …) is a MessageError (ignored on an
   Acknowledgment or MessageError); Ping → Pong, StatusRequest → StatusResponse about the
   requester's own messages only; others are logged;
5. business messages: checked against the CPA, on a signed channel as the signature covers
   them, Timestamp within its window (MessageError on any disagreement), duplicates
   answered with their stored signal, the payload (a StUF-GGk envelope) accepted exactly as a
   SOAP request would be, and only then acknowledged: in the HTTP response when the CPA says
   ``mshSignalsOnly`` and the message asks SyncReply, else 204 and a separate POST.

A StUF-level refusal (the envelope fails its checks) is answered with a MessageError
``DeliveryFailure`` naming the StUF foutcode, stored like an acknowledgment so a resend gets it
again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import ssl
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import aiohttp
import structlog
from aiohttp import web
from lxml import etree

from gateway.broker.factory import open_msh_state
from gateway.config import GatewayConfig, is_loopback
from gateway.ebms import checks, compose
from gateway.ebms import message as ebms
from gateway.ebms.cpastore import CpaStore, Link
from gateway.ebms.lifecycle import EndWarnings
from gateway.ebms.outbound import EbmsOutbound
from gateway.ebms.outbox import SignalOutbox
from gateway.ebms.signing import signed_references
from gateway.ebms.tls import TlsSetupError
from gateway.ingest import Accepted, Identity
from gateway.metrics import BV03_SECONDS
from gateway.xmlsafe import ParseLimits, UnsafeXml, parse_own, parse_untrusted

if TYPE_CHECKING:
    from gateway.ingest import Ingress

log = structlog.get_logger("ggk.ebms")
ACK_ATTEMPTS = 3
SIGNATURE_BYTES = 8 * 1024
"""What signing adds to a signal at most (ds:Signature with its certificate), for the
outbox's byte bound, which is decided before the signal is signed."""


def _fault(text: str) -> web.Response:
    return web.Response(
        body=compose.soap_fault(text), status=500, content_type="text/xml", charset="utf-8"
    )


def _digest(message: ebms.EbmsMessage) -> str:
    """What a resend has in common with the first sending: the MessageId and the payload
    bytes in Manifest order. Not the MIME boundary, nor Content-IDs or ConversationId, which
    senders regenerate (ebms-core changes the boundary; hand-built resends change more)."""
    h = hashlib.sha256(message.message_id.encode())
    for reference in message.references:
        part = message.parts.get(reference.removeprefix("cid:"))
        h.update(b"\0" + (part.data if part is not None else b""))
    return h.hexdigest()


class EbmsInbound:
    def __init__(
        self, config: GatewayConfig, store: CpaStore, ingress: Ingress, limits: ParseLimits
    ) -> None:
        assert config.ebms is not None
        self.config = config
        self.store = store
        self.ingress = ingress
        self.limits = limits
        self.links: dict[str, Link] = store.load()
        for cpaid, problems in store.problems.items():
            log.warning("ebms.cpa_unusable", cpaid=cpaid, problems=problems)
        self.state = open_msh_state(
            config, {cpaid: link.partner.id for cpaid, link in self.links.items()}
        )
        """What was received and sent: this process's, or (Kafka) every process's."""
        self.received = self.state.received
        self.outbound = EbmsOutbound(config, self.links, self.state.sent, store.signer)
        self.outbound.shared_state = self.state.shared
        """The sending side, sharing the CPAs; its answers arrive here as signals."""
        self.window = checks.TimestampWindow(
            future=timedelta(seconds=config.ebms.timestamp_future_seconds),
            past=timedelta(seconds=config.ebms.timestamp_past_seconds),
        )
        """How far a received eb:Timestamp may lie from our clock."""
        self.host = config.base_url.split("//", 1)[-1].split(":")[0].split("/")[0] or "ggk"
        self.end_warnings = EndWarnings()
        """Which CPAs near their end were warned of today."""
        self.outbox = SignalOutbox()
        """Asynchronous signals on their way, a bounded line per partner (outbox.py)."""
        self._session: aiohttp.ClientSession | None = None
        self._loopback_noted = False
        if self.loopback_test_mode:
            log.warning(
                "ebms.loopback_http",
                note="[ebms] loopback_http is for local tests only: uncertified loopback "
                "callers are taken for the CPA's party; never in production",
            )
        for (
            partner
        ) in config.ebms.partners:  # a misspelt id would leave the partner on the defaults
            if store.partners.get(partner) is None:
                raise ValueError(
                    f"[ebms.partner.{partner}]: no partner {partner!r} in the registry"
                )

    def forget_old(self) -> int:
        """Drop received MessageIds past every CPA's resend window: (1 + Retries) x
        RetryInterval, or PersistDuration when longer; 5 days when a CPA says neither
        (Digikoppeling's default); at most MAX_RESEND_WINDOW (cpa.py). Never before the
        Timestamp window has closed on them (plus the clock skew): an older resend is refused
        by its Timestamp, not accepted twice."""
        window = max(timedelta(days=5), self.window.past)
        for link in self.links.values():
            for binding in link.theirs.sends.values():
                retention = binding.channel.retention
                if retention is not None:
                    window = max(window, retention)
        window += self.window.future
        return self.received.forget_before(time.time() - window.total_seconds())

    async def start(self) -> None:
        """Ready for partners: on Kafka, the shared state read up to now. CPAs near their end
        are warned of at once (then by :meth:`warn_ending`, once a day each)."""
        await self.state.start()
        self.warn_ending()

    def warn_ending(self) -> list[str]:
        """``ebms.cpa_ending`` for the CPAs within 30 days of their end, once a day each
        (gateway/ebms/lifecycle.py); run by the maintenance loop."""
        return self.end_warnings.check(self.links, datetime.now(UTC))

    async def close(self) -> None:
        await self.outbox.close()
        if self._session is not None:
            await self._session.close()
        await self.outbound.close()
        await self.state.close()

    # --- the request --------------------------------------------------------------------------

    async def handle(self, request: web.Request, body: bytes, identity: Identity) -> web.Response:
        if request.headers.get("SOAPAction", "").strip() != ebms.SOAP_ACTION:
            return _fault('SOAPAction must be "ebXML"')
        try:
            message = await asyncio.to_thread(
                ebms.read, request.headers.get("Content-Type", ""), body
            )
        except ebms.EbmsParseError as exc:
            return _fault(f"not an ebMS message: {exc}")
        link = self.links.get(message.cpaid)
        if link is None:
            return _fault(f"CPA {message.cpaid[:80]!r} not found")
        if not self._is_their_party(request, identity, link):
            log.warning("ebms.wrong_caller", cpaid=link.cpa.cpaid, caller=identity.name)
            return _fault("the caller is not the other party of this CPA")
        if message.is_signal:
            return await self._signal(message, link)
        return await self._business(message, link)

    @property
    def loopback_test_mode(self) -> bool:
        """Tests against a local peer: a plain-HTTP loopback gateway with ``[ebms]
        loopback_http`` takes an uncertified loopback caller for the CPA's party."""
        assert self.config.ebms is not None
        return self.config.ebms.loopback_http and self.config.plain_http

    def _is_their_party(self, request: web.Request, identity: Identity, link: Link) -> bool:
        """The client certificate's partner is the CPA's partner (a bearer token proves no
        MSH: Digikoppeling authenticates MSHs by certificate only)."""
        if identity.partner is not None and identity.partner.id != link.partner.id:
            return False
        if identity.partner is not None and identity.via == "mtls":
            return True
        taken = self.loopback_test_mode and is_loopback(request.remote or "")
        if taken and not self._loopback_noted:
            self._loopback_noted = True  # once: a test run sends many
            log.warning(
                "ebms.loopback_caller",
                note="an uncertified loopback caller taken "
                "for the CPA's party ([ebms] loopback_http, local tests only)",
            )
        return taken

    # --- signals ------------------------------------------------------------------------------

    async def _signal(self, message: ebms.EbmsMessage, link: Link) -> web.Response:
        action = message.action
        if message.problems:  # ambiguous: which RefToMessageId, which MessageHeader?
            log.info(
                "ebms.signal_refused",
                action=action[:40],
                cpaid=link.cpa.cpaid,
                codes=[e.code for e in message.problems][:5],
            )
            if action in ("Acknowledgment", "MessageError"):
                return web.Response(status=204)  # an error is never answered by one
            error = compose.message_error(message, list(message.problems), self.host)
            return self._reply(error, link, sync=False, signed=False)
        if action == "Ping":
            return self._reply(compose.pong(message, self.host), link, sync=False, signed=False)
        if action == "StatusRequest":
            asked_el = message.envelope.find(
                f"{ebms.soap('Body')}/{ebms.eb('StatusRequest')}/{ebms.eb('RefToMessageId')}"
            )
            asked = ebms.value(asked_el) if asked_el is not None else ""
            # only about the requester's own messages (under any of its CPAs): whether another
            # partner's MessageId arrived is none of its business (the store is per partner)
            known = await asyncio.to_thread(self.received.get, link.partner.id, asked)
            status = "Received" if known is not None else None
            body = compose.status_response(message, status or "NotRecognized", None, self.host)
            return self._reply(body, link, sync=False, signed=False)
        if action in ("Acknowledgment", "MessageError"):
            recorded = await self.outbound.answered(message, link.cpa.cpaid)
            log.info("ebms.answer", action=action, cpaid=link.cpa.cpaid, recorded=recorded)
        else:
            log.info("ebms.signal", action=action[:40], cpaid=link.cpa.cpaid)
        return web.Response(status=204)

    # --- business messages -----------------------------------------------------------------------

    async def _business(self, message: ebms.EbmsMessage, link: Link) -> web.Response:
        binding = checks.binding(message, link)
        sync = binding is not None and binding.channel.sync_reply_mode != "none"
        sync = sync and message.sync_reply is not None
        checked = checks.check(
            message, link, window=self.window, ref_known=await self._ref_known(message, link)
        )
        message, errors = checked.message, checked.errors  # on a signed channel: as signed
        if errors:
            log.info(
                "ebms.message_error",
                cpaid=link.cpa.cpaid,
                codes=[e.code for e in errors][:5],
            )
            refusal = compose.message_error(message, errors, self.host)
            return self._reply(refusal, link, sync=sync, signed=False)
        assert binding is not None
        digest = _digest(message)
        partner = link.partner.id
        earlier = await asyncio.to_thread(self.received.get, partner, message.message_id)
        if earlier is not None:
            if (earlier.cpaid, earlier.digest) != (link.cpa.cpaid, digest):
                # this partner's own earlier message (perhaps under another of its CPAs): a
                # resend is identical, so this is another message; its stored answer names
                # that message's CPA and is not replayed here
                error = ebms.EbmsError(
                    "Inconsistent",
                    "//Header/MessageHeader/MessageData/MessageId",
                    "this MessageId was used for another message",
                )
                body = compose.message_error(message, [error], self.host)
                return self._reply(body, link, sync=sync, signed=False)
            log.info("ebms.duplicate", cpaid=link.cpa.cpaid)
            if earlier.answer is None:
                return web.Response(status=204)
            return self._reply(earlier.answer, link, sync=sync, signed=True)
        answer = await self._accept(message, link)
        stored = await asyncio.to_thread(
            self.received.remember, partner, message.message_id, link.cpa.cpaid, digest, answer
        )
        if (stored.cpaid, stored.digest) != (link.cpa.cpaid, digest):
            stored = dataclasses.replace(stored, answer=answer)  # a concurrent other message
        if stored.answer is None:  # best effort, accepted: nothing to signal
            return web.Response(status=204)
        return self._reply(stored.answer, link, sync=sync, signed=True)

    async def _ref_known(self, message: ebms.EbmsMessage, link: Link) -> bool:
        """Whether the message's RefToMessageId (if any) names a message exchanged under its
        CPA: sent by us, or received from this partner (checks.ref_exchanged)."""
        ref = message.ref_to_message_id
        if ref is None or not ref or len(ref) > 256:
            return False
        sent = await asyncio.to_thread(self.outbound.sent.get, ref)
        received = None
        if sent is None:
            received = await asyncio.to_thread(self.received.get, link.partner.id, ref)
        return checks.ref_exchanged(ref, link, sent, received)

    async def _accept(self, message: ebms.EbmsMessage, link: Link) -> bytes | None:
        """Accept the payload as a StUF-GGk envelope from the CPA's partner; the signal to
        send back (an Acknowledgment when asked for, a MessageError when refused)."""
        started = time.perf_counter()
        payload = message.parts[message.references[0][4:]].data
        identity = Identity(link.partner, peer="ebms", via="ebms")
        try:
            element = parse_untrusted(payload, self.limits)
        except UnsafeXml as exc:
            error = ebms.EbmsError("DeliveryFailure", message.references[0], exc.message[:200])
            return self._seal(compose.message_error(message, [error], self.host), link)
        result = await self.ingress.accept_envelope(element, identity)
        BV03_SECONDS.labels(channel="ebms").observe(time.perf_counter() - started)
        if not isinstance(result, Accepted):
            text = f"{result.code}: {result.omschrijving}"
            error = ebms.EbmsError("DeliveryFailure", message.references[0], text)
            return self._seal(compose.message_error(message, [error], self.host), link)
        log.info(
            "ebms.accepted",
            cpaid=link.cpa.cpaid,
            message_id=result.message_id,
            duplicate=result.duplicate,
        )
        binding = checks.binding(message, link)
        if binding is not None and binding.channel.ack_requested:
            # a signed receipt repeats what the sender signed (its signature was verified
            # by checks.check before anything was accepted)
            references = (
                signed_references(message.envelope)
                if binding.channel.ack_signature_requested
                else []
            )
            return self._seal(compose.acknowledgment(message, self.host, references), link)
        return None

    # --- answering ----------------------------------------------------------------------------

    def _seal(self, signal: bytes, link: Link) -> bytes:
        """A signal signed as our signal channel says (signed profiles), else as built."""
        channel = link.ours.default_channel
        signer = self.store.signer
        if channel.signing_certificate is None or signer is None:
            return signal
        root = parse_own(signal)
        algorithms = channel.algorithms
        signer.sign(root, {}, algorithms)
        sealed: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
        return sealed

    def _reply(self, signal: bytes, link: Link, *, sync: bool, signed: bool) -> web.Response:
        """``signal`` in the HTTP response (``sync``), else 204 and the signal POSTed to the
        partner's endpoint through the outbox. ``signed``: sealed already (a stored answer);
        else sealed here, and only once the outbox has taken it: a signal dropped because
        the partner's line is full costs no signing."""
        if sync:
            body = signal if signed else self._seal(signal, link)
            response = web.Response(body=body, status=200, content_type="text/xml", charset="utf-8")
            response.headers["SOAPAction"] = ebms.SOAP_ACTION
            return response
        partner = link.partner.id
        if not self.outbox.admit(partner, len(signal) + (0 if signed else SIGNATURE_BYTES)):
            return web.Response(status=204)  # counted; a reliable sender resends
        body = signal if signed else self._seal(signal, link)
        self.outbox.put(partner, len(body), lambda: self._post(link, body))
        return web.Response(status=204)

    async def _post(self, link: Link, signal: bytes) -> None:
        """POST a signal to the partner's endpoint; a few tries. When all fail the partner
        resends its message (reliable profiles) and gets the stored signal again."""
        endpoint = link.theirs.default_channel.endpoint
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        headers = {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": ebms.SOAP_ACTION}
        try:
            context = self.outbound.client_ssl(endpoint, link.partner.id)
        except (TlsSetupError, OSError, ssl.SSLError) as exc:
            log.error("ebms.signal_tls", cpaid=link.cpa.cpaid, error=str(exc)[:200])
            return
        for attempt in range(1, ACK_ATTEMPTS + 1):
            try:
                async with self._session.post(
                    endpoint, data=signal, headers=headers, ssl=context
                ) as response:
                    if response.status < 300:
                        return
                    log.warning("ebms.signal_refused", status=response.status, attempt=attempt)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.warning("ebms.signal_failed", error=type(exc).__name__, attempt=attempt)
            if attempt < ACK_ATTEMPTS:  # not after the last: the partner's line waits on it
                await asyncio.sleep(0.5 * 2**attempt)
