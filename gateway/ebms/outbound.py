"""The outbound MSH: a StUF-GGk envelope to a partner's MSH under its CPA.

One delivery attempt (called by the ``ebms`` adapter, so the gateway's delivery service keeps
the queue, leases, dead letters and replay):

1. the CPA's binding for the envelope's kind (Di01/Du01/Fo01 → the configured action names);
2. the message, byte-identical on every attempt: MessageId from the delivery, Timestamp from
   the first attempt (recorded), TimeToLive = Timestamp + RetryInterval x (Retries + 1);
3. an answer recorded earlier ends it: Acknowledgment → delivered, MessageError → dead letter;
   TimeToLive passed → dead letter;
4. POST to the partner's endpoint; a synchronous answer is read from the response, otherwise
   the attempt waits a little for the asynchronous one (POSTed to our ``/ebms``) and else asks
   to be tried again after the CPA's RetryInterval, at most 1 + Retries times in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog
from lxml import etree

from adapters.base import AdapterError, Outbound, PermanentError, RetryableError
from gateway.config import GatewayConfig
from gateway.ebms import compose
from gateway.ebms import message as ebms
from gateway.ebms.cpa import ActionBinding, Channel, service_name
from gateway.ebms.cpastore import Link
from gateway.ebms.schedule import Schedule
from gateway.ebms.sent import ACKNOWLEDGED, SentLog
from gateway.ebms.signing import (
    SignatureProblem,
    Signer,
    check_signed_acknowledgment,
    reference_digests,
    signed_references,
    verify,
)
from gateway.ebms.tls import EbmsTls, TlsSetupError
from gateway.xmlsafe import parse_own

log = structlog.get_logger("ggk.ebms")
DEFAULT_ACTIONS = {"Di01": "ggk_Di01", "Du01": "ggk_Du01", "Fo01": "Fo01"}
ACK_WAIT = 10.0
"""Seconds an attempt waits for an asynchronous Acknowledgment before handing back."""
RETRYABLE_STATUS = {408, 429}


def envelope_kind(envelope: bytes) -> str:
    """``Di01``, ``Du01`` or ``Fo01`` from a stored envelope's root element (our own bytes)."""
    local = parse_own(envelope).tag.rsplit("}", 1)[-1]
    if local.endswith("Di01"):
        return "Di01"
    if local.endswith("Du01"):
        return "Du01"
    if local.startswith("Fo01"):
        return "Fo01"
    raise AdapterError(f"cannot send a {local[:40]} over ebMS")


@dataclass(frozen=True, slots=True)
class Route:
    """Where one envelope goes: the link, our sending binding and their receiving one."""

    link: Link
    ours: ActionBinding
    theirs: ActionBinding


class EbmsOutbound:
    def __init__(
        self,
        config: GatewayConfig,
        links: dict[str, Link],
        sent: SentLog,
        signer: Signer | None = None,
    ) -> None:
        self.config = config
        self.signer = signer
        self.tls = EbmsTls(config.ebms, config.tls) if config.ebms is not None else None
        """Two-way TLS towards partners' MSHs (shared with the inbound side's signals)."""
        self.links = links
        self.sent = sent
        self.host = config.base_url.split("//", 1)[-1].split(":")[0].split("/")[0] or "ggk"
        self._waiters: dict[str, asyncio.Event] = {}
        self._session: aiohttp.ClientSession | None = None
        self.share: Callable[[str, str, str], Awaitable[None]] | None = None
        """Set with the Kafka backend: passes an answer for a message another process sent
        on to the cluster (:meth:`gateway.broker.kafka.KafkaBroker.share_ebms_answer`)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self.shared_state = False
        """True when ``sent`` is every process's (Kafka): an answer recorded here for a
        message this process is not waiting on reaches the sender through it."""
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)
        """The clock of the schedule (Timestamp, TimeToLive, retry slots)."""
        """The loop the attempts wait in (an answer from the cluster wakes them from a thread)."""

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # --- answers from the partner (via the inbound endpoint) -------------------------------

    async def answered(self, signal: ebms.EbmsMessage, cpaid: str) -> bool:
        """An Acknowledgment or MessageError for a message we sent: recorded, waiters woken."""
        ref = signal.ref_to_message_id
        if ref is None or len(ref) > 256:  # ours are far shorter; nothing else goes on to Kafka
            return False
        if signal.action == "Acknowledgment":
            if not await asyncio.to_thread(self._receipt_holds, signal, ref, cpaid):
                log.warning("ebms.receipt_refused", cpaid=cpaid)
                return False  # not an answer: the message is resent, then given up
            outcome = ACKNOWLEDGED
        else:
            codes = [
                e.get(ebms.eb("errorCode")) or "?" for e in signal.envelope.iter(ebms.eb("Error"))
            ]
            outcome = f"error:{(codes or ['?'])[0][:40]}"
        recorded = await asyncio.to_thread(self.sent.answer, ref, cpaid, outcome)
        if recorded and ref not in self._waiters and self.shared_state:
            # (Kafka: recorded in the shared state, which tells the sending process)
            log.info("ebms.answer_shared", cpaid=cpaid)
        if recorded:
            self._wake(ref)
        elif self.share is not None and await asyncio.to_thread(self.sent.get, ref) is None:
            await self.share(ref, cpaid, outcome)  # another process sent it
            log.info("ebms.answer_shared", cpaid=cpaid)
            return True
        return recorded

    def _receipt_holds(self, signal: ebms.EbmsMessage, ref: str, cpaid: str) -> bool:
        """Where the CPA asks signed acknowledgments (``ackSignatureRequested="always"``): the
        Acknowledgment is signed with the partner's certificate from the CPA and repeats the
        references of the message we signed. The Acknowledgment of a message another process
        sent (Kafka backend, where the sending record is) is checked for its signature only."""
        sent = self.sent.get(ref)
        link = self.links.get(cpaid)
        if sent is not None:
            if sent.receipt is None:
                return True  # this message's channel asks no signed receipt
        elif link is None or not any(
            b.channel.ack_signature_requested for b in link.ours.sends.values()
        ):
            return True
        channel = link.theirs.default_channel if link is not None else None
        if channel is None or channel.signing_certificate is None:
            return False
        certificate = channel.signing_certificate
        algorithms = channel.algorithms
        try:
            if sent is None:
                covered = verify(
                    signal.envelope, {}, certificate=certificate, algorithms=algorithms
                )
            else:
                assert sent.receipt is not None
                covered = check_signed_acknowledgment(
                    signal.envelope, sent.receipt, certificate=certificate, algorithms=algorithms
                )
            signed = ebms.as_signed(signal, covered)
        except (SignatureProblem, ebms.EbmsParseError):
            return False
        # the message it answers, as signed: not a RefToMessageId from outside the signature
        return signed.ref_to_message_id == ref and signed.cpaid == cpaid

    def answer_from_cluster(self, ref: str, cpaid: str, outcome: str) -> None:
        """An answer another process received (Kafka view thread): recorded if we sent it."""
        if self.sent.answer(ref, cpaid, outcome) and self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake, ref)

    def settled(self, ref: str) -> None:
        """Another process recorded the answer to ``ref`` in the shared state (event loop)."""
        self._wake(ref)

    def _wake(self, ref: str) -> None:
        waiter = self._waiters.get(ref)
        if waiter is not None:
            waiter.set()

    # --- one attempt -------------------------------------------------------------------------

    def route(self, item: Outbound, settings: dict[str, Any]) -> Route:
        cpaid = str(settings.get("cpa", ""))
        link = self.links.get(cpaid)
        if link is None:
            raise PermanentError(f"no usable CPA {cpaid[:80]!r} for {item.destination}")
        actions = {**DEFAULT_ACTIONS, **settings.get("actions", {})}
        action = actions[envelope_kind(item.envelope)]
        ours = [b for (_, a), b in link.ours.sends.items() if a == action]
        if len(ours) != 1:
            raise PermanentError(f"the CPA {cpaid} does not let us send {action!r} (once)")
        binding = ours[0]
        theirs = link.theirs.receives.get(
            (service_name(binding.service_type, binding.service), action)
        )
        if theirs is None:
            raise PermanentError(f"the partner cannot receive {action!r} under CPA {cpaid}")
        return Route(link, binding, theirs)

    async def attempt(self, item: Outbound, settings: dict[str, Any]) -> None:
        self._loop = asyncio.get_running_loop()
        route = self.route(item, settings)
        channel = route.ours.channel
        message_id = f"{item.message_id}.{item.delivery_id}@{self.host}"
        record = await asyncio.to_thread(
            self.sent.first_attempt, message_id, route.link.cpa.cpaid, compose.stamp(self.now())
        )
        if self._settled(record.outcome):
            return
        timestamp = datetime.fromisoformat(record.timestamp.replace("Z", "+00:00"))
        schedule = Schedule.of(timestamp, channel)
        if schedule is not None and schedule.expired(self.now()):
            raise PermanentError("ebMS TimeToLive passed without an Acknowledgment", kind="ebms")
        ttl = schedule.time_to_live if schedule is not None else None
        out = compose.Outgoing(
            cpaid=route.link.cpa.cpaid,
            sender=ebms.PartyRef(
                route.link.ours.oin, route.link.ours.party_id_type, route.link.ours.role
            ),
            receiver=ebms.PartyRef(
                route.link.theirs.oin, route.link.theirs.party_id_type, route.link.theirs.role
            ),
            service_type=route.ours.service_type,
            service=route.ours.service,
            action=route.ours.action,
            conversation_id=item.referentienummer,
            message_id=message_id,
            payload=item.envelope,
            ack_requested=channel.ack_requested,
            ack_signed=channel.ack_signature_requested,
            duplicate_elimination=channel.duplicate_elimination,
            sync_reply=channel.sync_reply_mode != "none",
            time_to_live=ttl,
            timestamp=record.timestamp,
        )
        seal = None
        signed: list[tuple[str, str]] = []
        if channel.signing_certificate is not None:
            if self.signer is None:
                raise PermanentError("the CPA signs this action; [ebms] has no signing key")
            algorithms = channel.algorithms
            signer = self.signer

            def seal(root: etree._Element, parts: dict[str, bytes]) -> None:
                signer.sign(root, parts, algorithms)
                signed[:] = reference_digests(signed_references(root))

        content_type, body = compose.business_message(out, seal=seal)
        if channel.ack_signature_requested:
            await asyncio.to_thread(self.sent.expect_receipt, message_id, signed)
        waiter = self._waiters.setdefault(message_id, asyncio.Event())
        try:
            await self._exchange(message_id, route, content_type, body, waiter)
        except RetryableError as exc:
            if schedule is not None:  # the CPA's slot, not "RetryInterval from now"
                exc.retry_after = self._until_next(schedule)
                exc.max_attempts = schedule.attempts
            raise
        finally:
            self._waiters.pop(message_id, None)

    async def _exchange(
        self,
        message_id: str,
        route: Route,
        content_type: str,
        body: bytes,
        waiter: asyncio.Event,
    ) -> None:
        """POST the message and take its answer (sync, or async within the wait); returns when
        the partner acknowledged, else raises."""
        channel = route.ours.channel
        status, answer = await self._post(
            route.theirs.channel.endpoint, content_type, body, channel, route.link.partner.id
        )
        if status == 200 and answer.strip():
            try:
                signal = ebms.read("text/xml", answer)
            except ebms.EbmsParseError as exc:
                raise RetryableError(
                    "unreadable synchronous ebMS answer", str(exc), kind="ebms"
                ) from None
            await self.answered(signal, route.link.cpa.cpaid)
        elif not 200 <= status < 300:
            self._http_failure(status, channel)
        if not channel.ack_requested:
            return  # best effort: a 2xx is all there is
        if not waiter.is_set():
            # within the RetryInterval (the next slot does not wait for this one)
            wait = ACK_WAIT
            if channel.retry_interval is not None:
                wait = min(wait, channel.retry_interval.total_seconds() / 2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), wait)
        latest = await asyncio.to_thread(self.sent.get, message_id)
        if latest is not None and self._settled(latest.outcome):
            return
        raise RetryableError(
            "no ebMS Acknowledgment yet",
            kind="ebms",
            retry_after=channel.retry_interval.total_seconds() if channel.retry_interval else None,
            max_attempts=(channel.retries or 0) + 1,
        )

    def _until_next(self, schedule: Schedule) -> float:
        """Seconds until the CPA's next attempt slot (Timestamp + k x RetryInterval); when
        none is left, until TimeToLive (where the attempt dead-letters the message)."""
        now = self.now()
        due = schedule.next_after(now) or schedule.time_to_live
        return max(0.0, (due - now).total_seconds())

    @staticmethod
    def _settled(outcome: str | None) -> bool:
        """True when the partner acknowledged; a MessageError ends the delivery (dead letter)."""
        if outcome is None:
            return False
        if outcome == ACKNOWLEDGED:
            return True
        raise PermanentError(f"ebMS MessageError {outcome.removeprefix('error:')}", kind="ebms")

    def _http_failure(self, status: int, channel: Channel) -> None:
        retry_after = channel.retry_interval.total_seconds() if channel.retry_interval else None
        attempts = (channel.retries or 0) + 1 if channel.ack_requested else None
        if status >= 500 or status in RETRYABLE_STATUS:
            raise RetryableError(
                f"HTTP {status}", kind="http", retry_after=retry_after, max_attempts=attempts
            )
        raise PermanentError(f"HTTP {status}", kind="http")

    async def _post(
        self, endpoint: str, content_type: str, body: bytes, channel: Channel, partner: str
    ) -> tuple[int, bytes]:
        try:
            context = self.client_ssl(endpoint, partner)
        except (TlsSetupError, OSError, ssl.SSLError) as exc:
            raise PermanentError(f"ebMS TLS: {exc}", kind="ebms") from None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        headers = {"Content-Type": content_type, "SOAPAction": ebms.SOAP_ACTION}
        try:
            async with self._session.post(
                endpoint, data=body, headers=headers, ssl=context
            ) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RetryableError(
                type(exc).__name__,
                kind="connection",
                retry_after=channel.retry_interval.total_seconds()
                if channel.retry_interval
                else None,
                max_attempts=(channel.retries or 0) + 1 if channel.ack_requested else None,
            ) from None

    def client_ssl(self, endpoint: str, partner: str) -> ssl.SSLContext | bool:
        """The TLS context for ``partner``'s MSH (gateway/ebms/tls.py: its anchors, our client
        certificate, hostname checked); False for a plain-HTTP (loopback test) endpoint."""
        if not endpoint.startswith("https://"):
            return False
        if self.tls is None:
            raise TlsSetupError("[ebms] is not configured")
        return self.tls.client(partner)


class EbmsAdapter:
    """The ``ebms`` delivery adapter (registered in gateway/transports.py): deliver the
    envelope to a partner's MSH under a CPA, through the gateway's :class:`EbmsOutbound`.

    Settings in partners.toml::

        [partner.delivery]
        adapter = "ebms"
        cpa = "CPA_ID"                  # an imported CPA whose other party is this partner
        # actions = { Di01 = "ggk_Di01", Du01 = "ggk_Du01", Fo01 = "Fo01" }   # the CPA's names

    Delivered when the partner acknowledged (reliable profiles) or accepted (best effort); a
    MessageError or an expired TimeToLive is a dead letter; the CPA's RetryInterval and
    Retries set the retry schedule.
    """

    holds = False
    uses_context = True
    setting_keys = frozenset({"cpa", "actions"})

    def __init__(
        self, settings: dict[str, Any], *, timeout: float, context: Mapping[str, Any]
    ) -> None:
        if not settings.get("cpa"):
            raise AdapterError("the ebms adapter needs 'cpa' (the cpaid of an imported CPA)")
        outbound = context.get("ebms")
        if not isinstance(outbound, EbmsOutbound):
            raise AdapterError("the ebms adapter needs [ebms] in the gateway configuration")
        self.settings = settings
        self.outbound = outbound

    async def deliver(self, item: Outbound) -> None:
        await self.outbound.attempt(item, self.settings)

    async def close(self) -> None:
        """The shared session belongs to the gateway's EbmsOutbound, closed at stop."""
