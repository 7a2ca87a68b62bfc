"""The inbound ebMS2 endpoint over real TLS: a partner MSH's messages into the accept path.

The partner's MSH is played by messages built with gateway.ebms.message (its own wire format is
proven against the independent peer in tests/test_ebms_peer.py); its endpoint, where async
signals go, is a capture server on loopback.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from lxml import etree
from structlog.testing import capture_logs

from gateway import envelope as env
from gateway.ebms import compose
from gateway.ebms import message as ebms
from gateway.ebms.outbox import POSTS_PER_PARTNER, SignalOutbox
from gateway.ebms.signing import Algorithms, Signer
from gateway.web.wiring import build
from kit.ebms import (
    GATEWAY,
    OTHER,
    OTHER_CPA,
    PEER,
    Capture,
    add_second_partner,
    capturing,
    di01,
    fresh_signer,
    gateway_with_cpa,
    outgoing,
    post_ebms,
    status_request,
    submit_to_0150,
)
from kit.gateway import Setup, eventually, jw301_payload, rest, running
from tests.conftest import sample


def _errors(signal: bytes) -> list[tuple[str | None, str | None]]:
    root = etree.fromstring(signal)
    return [
        (e.get(ebms.eb("errorCode")), e.get(ebms.eb("location")))
        for e in root.iter(ebms.eb("Error"))
    ]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _inbox(setup: Setup) -> list[dict[str, object]]:
    _, listing = await rest(setup, "GET", "/api/v1/inbox", partner_cert="12345678")
    return list(listing["messages"])


async def test_message_is_accepted_then_acknowledged_asynchronously(
    tmp_path: Path, capture: Capture
) -> None:
    setup = gateway_with_cpa(tmp_path, capture)
    async with running(setup):
        out = outgoing(di01())
        status, body = await post_ebms(setup, out)
        assert (status, body) == (204, b"")
        await eventually(lambda: capture.received)
        ack = ebms.read("text/xml", capture.received[0])
        assert ack.action == "Acknowledgment" and ack.ref_to_message_id == out.message_id
        assert ack.sender.party_id == GATEWAY.oin and ack.receiver.party_id == PEER.oin
        assert ack.acknowledgment is not None
        assert [m["functie"] for m in await _inbox(setup)] == ["WMO301"]
        # a resend (the peer lost the ack) gets the same ack again and is not accepted twice
        assert (await post_ebms(setup, out))[0] == 204
        await eventually(lambda: len(capture.received) == 2)
        assert capture.received[1] == capture.received[0]
        assert len(await _inbox(setup)) == 1


async def test_sync_reply_returns_the_acknowledgment_in_the_response(
    tmp_path: Path, capture: Capture
) -> None:
    setup = gateway_with_cpa(tmp_path, capture, sync=True)
    async with running(setup):
        out = outgoing(di01(), sync_reply=True)
        status, body = await post_ebms(setup, out)
        assert status == 200
        assert ebms.read("text/xml", body).action == "Acknowledgment"
        again = await post_ebms(setup, out)
        assert again == (200, body)  # the stored ack, byte for byte
        other = dataclasses.replace(out, payload=di01())
        status, refused = await post_ebms(setup, other)
        assert status == 200 and _errors(refused) == [
            ("Inconsistent", "//Header/MessageHeader/MessageData/MessageId")
        ]
        missing = await post_ebms(setup, outgoing(di01(), sync_reply=True, ack_requested=False))
        assert _errors(missing[1]) == [("Inconsistent", "//Header/AckRequested")]
        assert capture.received == []  # everything came back synchronously
        assert len(await _inbox(setup)) == 1


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"action": "ggk_Xx01"}, ("ValueNotRecognized", "//Header/MessageHeader/Action")),
        ({"duplicate_elimination": False}, ("Inconsistent", None)),
        (
            {"time_to_live": datetime(2020, 1, 1, tzinfo=UTC)},
            ("TimeToLiveExpired", "//Header/MessageHeader/MessageData/TimeToLive"),
        ),
        (  # a day old: the kit's CPA resends for 4 minutes, the default floor is an hour
            {"timestamp": _iso(datetime.now(UTC) - timedelta(days=1))},
            ("Inconsistent", "//Header/MessageHeader/MessageData/Timestamp"),
        ),
        (  # more than the allowed clock skew (5 minutes) ahead
            {"timestamp": _iso(datetime.now(UTC) + timedelta(minutes=30))},
            ("Inconsistent", "//Header/MessageHeader/MessageData/Timestamp"),
        ),
        (
            {"sender": ebms.PartyRef(PEER.oin, "urn:osb:oin", "Gemeente")},
            ("ValueNotRecognized", "//Header/MessageHeader/From/Role"),
        ),
    ],
)
@pytest.mark.slow
async def test_disagreement_with_the_cpa_is_a_message_error(
    tmp_path: Path, capture: Capture, changes: dict[str, object], expected: tuple[str, str | None]
) -> None:
    setup = gateway_with_cpa(tmp_path, capture)
    async with running(setup):
        assert (await post_ebms(setup, outgoing(di01(), **changes)))[0] == 204
        await eventually(lambda: capture.received)
        error = ebms.read("text/xml", capture.received[0])
        assert error.action == "MessageError"
        codes = _errors(capture.received[0])
        assert any(
            code == expected[0] and (expected[1] is None or loc == expected[1])
            for code, loc in codes
        ), codes
        assert await _inbox(setup) == []


@pytest.mark.slow
async def test_the_timestamp_window_follows_the_cpas_resend_window(
    tmp_path: Path, capture: Capture
) -> None:
    """A reliable sender resends the identical message, its first Timestamp included, until
    TimeToLive: with the Digikoppeling default of 8 retries 3 hours apart a resend may carry a
    Timestamp a day old, and is acknowledged; one older than the whole window is not."""
    setup = gateway_with_cpa(tmp_path, capture, retries=8, retry_interval="PT3H")
    async with running(setup):
        now = datetime.now(UTC)
        resend = outgoing(di01(), timestamp=_iso(now - timedelta(hours=24)))
        assert (await post_ebms(setup, resend))[0] == 204
        await eventually(lambda: capture.received)
        assert capture.actions() == ["Acknowledgment"]
        stale = outgoing(di01(), timestamp=_iso(now - timedelta(hours=28)))
        assert (await post_ebms(setup, stale))[0] == 204
        await eventually(lambda: len(capture.received) == 2)
        assert _errors(capture.received[1]) == [
            ("Inconsistent", "//Header/MessageHeader/MessageData/Timestamp")
        ]
        assert len(await _inbox(setup)) == 1


@pytest.mark.slow
async def test_a_cpa_with_a_huge_resend_window_is_clamped_not_an_overflow(
    tmp_path: Path, capture: Capture
) -> None:
    """Retries x RetryInterval beyond what a datetime can hold (here 10^12 x 999,999 days)
    is taken as MAX_RESEND_WINDOW: the message is acknowledged (was a bare 500 on every
    message under that CPA), a Timestamp older than that window is still refused, and the
    hourly clean-up of received MessageIds runs (it raised as well)."""
    from gateway.config import load as load_config
    from gateway.ebms.cpa import MAX_RESEND_WINDOW
    from gateway.ebms.cpastore import CpaStore
    from gateway.ebms.inbound import EbmsInbound
    from gateway.xmlsafe import ParseLimits
    from routing.partners import PartnerRegistry

    setup = gateway_with_cpa(tmp_path, capture, retries=10**12, retry_interval="P999999D")
    async with running(setup):
        assert (await post_ebms(setup, outgoing(di01())))[0] == 204
        await eventually(lambda: capture.received)
        assert capture.actions() == ["Acknowledgment"]
        ancient = datetime.now(UTC) - MAX_RESEND_WINDOW - timedelta(days=1)
        assert (await post_ebms(setup, outgoing(di01(), timestamp=_iso(ancient))))[0] == 204
        await eventually(lambda: len(capture.received) == 2)
        assert _errors(capture.received[1]) == [
            ("Inconsistent", "//Header/MessageHeader/MessageData/Timestamp")
        ]
    config = load_config(setup.config_path)
    assert config.ebms is not None
    store = CpaStore(config.ebms, PartnerRegistry.load(config.partners_file))
    inbound = EbmsInbound(config, store, None, ParseLimits())  # type: ignore[arg-type]
    try:
        assert inbound.forget_old() == 0
    finally:
        await inbound.close()


@pytest.mark.slow
async def test_a_refused_envelope_is_a_delivery_failure_naming_the_stuf_code(
    tmp_path: Path, capture: Capture
) -> None:
    setup = gateway_with_cpa(tmp_path, capture)
    async with running(setup):
        foreign = env.build_di01(
            sample("ijw/jw301.xml").encode(),
            zender="0175",  # the CPA's partner is 0150: it may not speak for 0175
            zender_applicatie="DOWRsociaal",
            ontvanger="12345678",
            functie="JW301",
        )
        assert (await post_ebms(setup, outgoing(foreign)))[0] == 204
        await eventually(lambda: capture.received)
        root = etree.fromstring(capture.received[0])
        (description,) = root.iter(ebms.eb("Description"))
        assert _errors(capture.received[0])[0][0] == "DeliveryFailure"
        assert (description.text or "").startswith("StUF")


async def test_what_no_message_error_can_answer_is_a_soap_fault(
    tmp_path: Path, capture: Capture
) -> None:
    setup = gateway_with_cpa(tmp_path, capture)
    async with running(setup):
        out = outgoing(di01())
        status, body = await post_ebms(setup, out, soap_action="ebXML")
        assert status == 500 and b"SOAPAction" in body
        status, body = await post_ebms(setup, dataclasses.replace(out, cpaid="CPA_UNKNOWN"))
        assert status == 500 and b"not found" in body
        status, body = await post_ebms(setup, ("text/xml", b"<nonsense/>"))
        assert status == 500 and b"not an ebMS message" in body
        status, body = await post_ebms(setup, out, partner="0175")  # another partner's certificate
        assert status == 500 and b"not the other party" in body
        assert (await post_ebms(setup, out, partner=None))[0] == 401
        assert capture.received == [] and await _inbox(setup) == []


async def test_a_partner_token_without_its_client_certificate_is_refused(
    tmp_path: Path, capture: Capture
) -> None:
    """Digikoppeling authenticates an MSH by its client certificate only: the partner's bearer
    token (good for its REST API) does not make a caller of ``/ebms``, neither alone nor
    beside another partner's certificate."""
    setup = gateway_with_cpa(tmp_path, capture)
    async with running(setup):
        out = outgoing(di01())
        token = setup.token("0150")
        status, body = await post_ebms(setup, out, partner=None, token=token)
        assert status == 401 and b"client certificate" in body
        status, body = await post_ebms(setup, out, partner="0175", token=token)
        assert status == 500 and b"not the other party" in body
        assert capture.received == [] and await _inbox(setup) == []


def _doubled(envelope: bytes, tag: str) -> bytes:
    """``envelope`` with its first ``tag`` element twice (the copy first, a new MessageId)."""
    root = etree.fromstring(envelope)
    original = next(root.iter(tag))
    copy = etree.fromstring(etree.tostring(original))
    for message_id in copy.iter(ebms.eb("MessageId")):
        message_id.text = "second@peer.test"
    parent = original.getparent()
    assert parent is not None
    parent.insert(parent.index(original), copy)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@pytest.mark.parametrize(
    ("tag", "location"),
    [
        ("MessageHeader", "//Header/MessageHeader"),
        ("MessageId", "//Header/MessageHeader/MessageData/MessageId"),
        ("AckRequested", "//Header/AckRequested"),
        ("Manifest", "//Body/Manifest"),
    ],
)
async def test_a_second_singleton_element_is_inconsistent(
    tmp_path: Path, capture: Capture, tag: str, location: str
) -> None:
    """Which of two MessageHeaders (MessageIds, …) is meant? None: a MessageError naming the
    duplicate, nothing accepted, for a business message and for a Ping alike."""
    setup = gateway_with_cpa(tmp_path, capture)
    async with running(setup):
        content_type, body = compose.business_message(outgoing(di01()))
        start = body.index(b"<?xml")
        end = body.index(b"</soap:Envelope>") + len(b"</soap:Envelope>")
        doubled = _doubled(body[start:end], ebms.eb(tag))
        assert (await post_ebms(setup, (content_type, body[:start] + doubled + body[end:])))[
            0
        ] == 204
        await eventually(lambda: capture.received)
        assert capture.actions() == ["MessageError"]
        assert ("Inconsistent", location) in _errors(capture.received[0])
        if tag in ("MessageHeader", "MessageId"):
            ping = compose.ping(
                "CPA_TEST_gateway_1",
                ebms.PartyRef(PEER.oin, "urn:osb:oin", None),
                ebms.PartyRef(GATEWAY.oin, "urn:osb:oin", None),
                "peer.test",
            )
            assert (await post_ebms(setup, ("text/xml", _doubled(ping, ebms.eb(tag)))))[0] == 204
            await eventually(lambda: len(capture.received) == 2)
            assert capture.actions()[1] == "MessageError"
        assert await _inbox(setup) == []


HUGE_YEAR = "1" * 5000 + "-01-01T00:00:00Z"
"""A year of thousands of digits: once a ValueError out of int() and a 500 (REVIEW2 R1)."""


async def test_a_huge_year_in_the_timestamp_is_a_message_error(
    tmp_path: Path, capture: Capture
) -> None:
    """Refused as any malformed Timestamp is: a MessageError ``Inconsistent`` naming it."""
    setup = gateway_with_cpa(tmp_path, capture)
    async with running(setup):
        assert (await post_ebms(setup, outgoing(di01(), timestamp=HUGE_YEAR)))[0] == 204
        await eventually(lambda: capture.received)
        assert capture.actions() == ["MessageError"]
        assert _errors(capture.received[0]) == [
            ("Inconsistent", "//Header/MessageHeader/MessageData/Timestamp")
        ]
        assert await _inbox(setup) == []


async def test_a_huge_year_in_the_time_to_live_is_a_soap_fault(
    tmp_path: Path, capture: Capture
) -> None:
    """TimeToLive is read with the message, before the CPA is known: refused as any unreadable
    message is, with a SOAP fault saying what is wrong (not an error page)."""
    setup = gateway_with_cpa(tmp_path, capture)
    async with running(setup):
        content_type, body = compose.business_message(
            outgoing(di01(), time_to_live=datetime(2099, 1, 1, tzinfo=UTC))
        )
        assert body.count(b"2099-01-01T00:00:00.000Z") == 1
        body = body.replace(b"2099-01-01T00:00:00.000Z", HUGE_YEAR.encode())
        status, answer = await post_ebms(setup, (content_type, body))
        assert status == 500
        fault = etree.fromstring(answer)
        assert fault.tag == ebms.soap("Envelope")
        assert "not an xsd:dateTime" in "".join(str(t) for t in fault.itertext())
        assert capture.received == [] and await _inbox(setup) == []


async def test_ping_is_answered_with_pong(tmp_path: Path, capture: Capture) -> None:
    setup = gateway_with_cpa(tmp_path, capture)
    async with running(setup):
        ping = compose.ping(
            "CPA_TEST_gateway_1",
            ebms.PartyRef(PEER.oin, "urn:osb:oin", None),
            ebms.PartyRef(GATEWAY.oin, "urn:osb:oin", None),
            "peer.test",
        )
        assert (await post_ebms(setup, ("text/xml; charset=UTF-8", ping)))[0] == 204
        await eventually(lambda: capture.received)
        assert capture.actions() == ["Pong"]
        pong = ebms.read("text/xml", capture.received[0])
        assert pong.ref_to_message_id == ebms.read("text/xml", ping).message_id


@dataclasses.dataclass
class Hanging(Capture):
    """A partner endpoint that takes requests and answers none until ``release``."""

    release: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    pending: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.pending += 1
        await self.release.wait()
        return await super().handle(request)


def _ping() -> bytes:
    return compose.ping(
        "CPA_TEST_gateway_1",
        ebms.PartyRef(PEER.oin, "urn:osb:oin", None),
        ebms.PartyRef(GATEWAY.oin, "urn:osb:oin", None),
        "peer.test",
    )


async def test_a_burst_to_a_slow_endpoint_gets_every_acknowledgment(tmp_path: Path) -> None:
    """A batch sender's 24 messages at once, its endpoint taking a while per signal: 8
    Acknowledgments on their way at once, the rest waiting their turn, none dropped (each
    is the receipt of a message we accepted; a dropped one means a resend hours later)."""
    async with capturing(Capture(delay=0.3)) as slow:
        setup = gateway_with_cpa(tmp_path, slow)
        gateway = build(setup.config())
        async with running(setup, gateway):
            assert gateway.ebms is not None
            messages = [outgoing(di01(identificatie=f"WMO301B{n:04}")) for n in range(24)]
            answers = await asyncio.gather(*(post_ebms(setup, out) for out in messages))
            assert answers == [(204, b"")] * 24
            await eventually(lambda: len(slow.received) == 24)
            acks = [ebms.read("text/xml", body) for body in slow.received]
            assert {a.action for a in acks} == {"Acknowledgment"}
            assert {a.ref_to_message_id for a in acks} == {m.message_id for m in messages}
            assert gateway.ebms.outbox.dropped["0150"] == 0
            assert len(await _inbox(setup)) == 24


async def test_signals_to_an_endpoint_that_never_answers_are_bounded_and_counted(
    tmp_path: Path,
) -> None:
    """A partner whose endpoint never answers, sending Pings: POSTS_PER_PARTNER Pongs on
    their way, the line behind them filled to its bound (4 here), the rest dropped before
    they are signed and reported in one log line with their count (each Ping is still
    answered 204); once the endpoint answers, the waiting Pongs follow in order."""
    signed: list[None] = []

    class CountingSigner(Signer):
        """The real signer, counting the signals it signs."""

        def sign(
            self, envelope: etree._Element, parts: dict[str, bytes], algorithms: Algorithms
        ) -> None:
            signed.append(None)
            super().sign(envelope, parts, algorithms)

    async with capturing(Hanging()) as hanging:
        assert isinstance(hanging, Hanging)
        setup = gateway_with_cpa(tmp_path, hanging, peer_signer=fresh_signer("peer"))
        gateway = build(setup.config())
        assert gateway.ebms is not None and gateway.ebms.store.signer is not None
        real = gateway.ebms.store.signer
        gateway.ebms.store.signer = CountingSigner(real.key, real.certificate)
        outbox = SignalOutbox(waiting=4, report_seconds=3600)
        gateway.ebms.outbox = outbox
        async with running(setup, gateway):
            pings = [_ping() for _ in range(POSTS_PER_PARTNER + 4 + 3)]
            for ping in pings:
                assert (await post_ebms(setup, ("text/xml", ping)))[0] == 204
            await eventually(lambda: hanging.pending == POSTS_PER_PARTNER)
            assert outbox.in_flight("0150") == POSTS_PER_PARTNER
            assert outbox.queued("0150") == 4
            assert outbox.dropped["0150"] == 3
            assert len(signed) == POSTS_PER_PARTNER + 4  # no signing for a dropped Pong
            with capture_logs() as logs:
                outbox.report()
            dropped = [e for e in logs if e["event"] == "ebms.signals_dropped"]
            assert [(e["partner"], e["count"]) for e in dropped] == [("0150", 3)]
            hanging.release.set()
            await eventually(lambda: len(hanging.received) == POSTS_PER_PARTNER + 4)
            pongs = [ebms.read("text/xml", body) for body in hanging.received]
            assert all(pong.action == "Pong" for pong in pongs)
            asked = [ebms.read("text/xml", ping).message_id for ping in pings]
            assert {p.ref_to_message_id for p in pongs} == set(asked[: POSTS_PER_PARTNER + 4])
            assert (await post_ebms(setup, ("text/xml", _ping())))[0] == 204
            await eventually(lambda: len(hanging.received) == POSTS_PER_PARTNER + 5)
            assert outbox.dropped["0150"] == 3


async def test_a_status_request_answers_only_about_the_requesters_own_messages(
    tmp_path: Path, capture: Capture
) -> None:
    """0150 asks about a MessageId 0175 sent (under 0175's own CPA): NotRecognized, as for a
    MessageId never seen; about its own: Received."""
    setup = gateway_with_cpa(tmp_path, capture)
    add_second_partner(setup, capture)
    async with running(setup):
        mine = outgoing(di01())
        theirs = outgoing(
            di01(),
            cpaid=OTHER_CPA,
            sender=ebms.PartyRef(OTHER.oin, "urn:osb:oin", OTHER.role),
        )
        assert (await post_ebms(setup, mine))[0] == 204
        assert (await post_ebms(setup, theirs, partner="0175"))[0] == 204
        await eventually(lambda: len(capture.received) == 2)
        answers: list[str | None] = []
        for asked in (theirs.message_id, mine.message_id, "never@peer.test"):
            request = ("text/xml", status_request(asked))
            assert (await post_ebms(setup, request))[0] == 204
            expected = 3 + len(answers)
            await eventually(lambda: len(capture.received) == expected)  # noqa: B023
            answer = etree.fromstring(capture.received[-1])
            (response,) = answer.iter(ebms.eb("StatusResponse"))
            answers.append(response.get(ebms.eb("messageStatus")))
        assert answers == ["NotRecognized", "Received", "NotRecognized"]


def test_received_message_ids_are_kept_for_the_resend_window_then_dropped(
    tmp_path: Path,
) -> None:
    from gateway.broker.sqlite_ebms import ReceivedStore

    store = ReceivedStore(tmp_path / "ebms.sqlite")
    first = store.remember("0150", "m1@x", "CPA", "d1", b"<ack/>")
    # the first writer wins
    assert store.remember("0150", "m1@x", "CPA", "d2", b"<other/>") == first
    assert store.forget_before(first.received_at - 1) == 0
    assert store.get("0150", "m1@x") is not None
    assert store.forget_before(first.received_at + 1) == 1
    assert store.get("0150", "m1@x") is None
    store.close()


def _from_0175(payload: bytes | None = None, **changes: object) -> compose.Outgoing:
    """A business message from 0175 under its own CPA (a JW301 to 12345678 unless
    ``payload``)."""
    envelope = payload or env.build_di01(
        jw301_payload("12345678"),
        zender="0175",
        zender_applicatie="DOWRsociaal",
        ontvanger="12345678",
        functie="JW301",
    )
    sender = ebms.PartyRef(OTHER.oin, "urn:osb:oin", OTHER.role)
    return outgoing(envelope, cpaid=OTHER_CPA, sender=sender, **changes)


def _signal(body: bytes) -> tuple[str, str, str, list[str | None]]:
    """(Action, CPAId, To PartyId, error codes) of a signal we were sent."""
    signal = ebms.read("text/xml", body)
    codes = [code for code, _ in _errors(body)]
    return signal.action, signal.cpaid, signal.receiver.party_id, codes


@pytest.mark.slow
async def test_message_ids_are_each_partners_own(tmp_path: Path, capture: Capture) -> None:
    """A MessageId is unique per sending MSH (ebMS 2.0 6.4.1), not across partners. 0150
    reusing one 0175 used learns nothing (its message is acknowledged as any new one), with
    0175's payload bytes too it gets its own answer under its own CPA (never 0175's stored
    signal), and 0175 may use a MessageId 0150 took first; 0175's resend is still answered
    with its stored signal."""
    setup = gateway_with_cpa(tmp_path, capture)
    add_second_partner(setup, capture)
    mine_cpa = "CPA_TEST_gateway_1"
    async with running(setup):

        async def send(
            out: compose.Outgoing, partner: str
        ) -> tuple[str, str, str, list[str | None]]:
            count = len(capture.received)
            assert (await post_ebms(setup, out, partner=partner))[0] == 204
            await eventually(lambda: len(capture.received) == count + 1)
            return _signal(capture.received[-1])

        theirs = _from_0175()
        assert await send(theirs, "0175") == ("Acknowledgment", OTHER_CPA, OTHER.oin, [])
        first_ack = capture.received[-1]
        reused = outgoing(di01(), message_id=theirs.message_id)
        assert await send(reused, "0150") == ("Acknowledgment", mine_cpa, PEER.oin, [])
        # 0175's MessageId and payload bytes: 0150's own answer (the envelope speaks for
        # 0175, which 0150 may not), not 0175's stored acknowledgment
        theirs_too = _from_0175()
        assert (await send(theirs_too, "0175"))[0] == "Acknowledgment"
        copied = outgoing(theirs_too.payload, message_id=theirs_too.message_id)
        assert await send(copied, "0150") == (
            "MessageError",
            mine_cpa,
            PEER.oin,
            ["DeliveryFailure"],
        )
        # 0150 takes a MessageId first (any message: its answer is recorded either way);
        # 0175's message under that MessageId is still its own
        squatted = outgoing(di01())
        assert (await send(squatted, "0150"))[1:3] == (mine_cpa, PEER.oin)
        owner = _from_0175(message_id=squatted.message_id)
        assert await send(owner, "0175") == ("Acknowledgment", OTHER_CPA, OTHER.oin, [])
        # a resend by 0175: its stored signal, not accepted twice
        await send(theirs, "0175")
        assert capture.received[-1] == first_ack
        assert sorted(str(m["functie"]) for m in await _inbox(setup)) == [
            "JW301",
            "JW301",
            "JW301",
            "WMO301",
        ]


def test_a_state_file_keyed_by_message_id_alone_is_upgraded_in_place(tmp_path: Path) -> None:
    """A state file from before per-partner keys keeps working: each row gets its CPA's
    partner (a resend of a message received before the upgrade gets its stored signal),
    a row of a CPA no longer imported matches no one; opening again changes nothing."""
    import sqlite3

    from gateway.broker.sqlite_ebms import ReceivedStore

    path = tmp_path / "ebms.sqlite"
    db = sqlite3.connect(path)
    with db:
        db.execute(
            "CREATE TABLE received (message_id TEXT PRIMARY KEY, cpaid TEXT NOT NULL, "
            "digest TEXT NOT NULL, answer BLOB, received_at REAL NOT NULL)"
        )
        db.execute("INSERT INTO received VALUES ('m1@x', 'CPA_1', 'd1', x'3c61636b2f3e', 1.0)")
        db.execute("INSERT INTO received VALUES ('m2@x', 'CPA_GONE', 'd2', NULL, 2.0)")
    db.close()
    owners = {"CPA_1": "0150", "CPA_2": "0175"}
    for _ in range(2):
        store = ReceivedStore(path, owners)
        found = store.get("0150", "m1@x")
        assert found is not None and (found.cpaid, found.digest) == ("CPA_1", "d1")
        assert found.answer == b"<ack/>" and found.received_at == 1.0
        assert store.get("0175", "m1@x") is None
        assert store.get("0150", "m2@x") is None and store.get("0175", "m2@x") is None
        store.close()
    store = ReceivedStore(path, owners)
    # the same MessageId from another partner is a message of its own
    assert store.remember("0175", "m1@x", "CPA_2", "d9", None).cpaid == "CPA_2"
    assert store.forget_before(3.0) == 2 and store.get("0175", "m1@x") is not None
    store.close()


@pytest.mark.slow
async def test_a_crash_before_the_record_still_accepts_the_resend_once(
    tmp_path: Path, capture: Capture
) -> None:
    """Acceptance is durable before the MessageId is recorded; if the process dies in between
    (here: the record removed), the sender's resend is recognised by the StUF duplicate check
    and acknowledged, and the message stays accepted once."""
    import sqlite3

    setup = gateway_with_cpa(tmp_path, capture, sync=True)
    async with running(setup):
        out = outgoing(di01(), sync_reply=True)
        assert (await post_ebms(setup, out))[0] == 200
        db = sqlite3.connect(setup.directory / "data" / "ebms.sqlite")
        with db:
            assert db.execute("DELETE FROM received").rowcount == 1
        db.close()
        status, body = await post_ebms(setup, out)
        assert status == 200 and ebms.read("text/xml", body).action == "Acknowledgment"
        assert len(await _inbox(setup)) == 1


@pytest.mark.parametrize(
    ("content_type", "body", "words"),
    [
        ("multipart/related", b"garbage", "without parts"),
        ("multipart/related; boundary=x", b"--x\r\n\r\n--x--", "document is empty"),
        ("text/xml", b'<!DOCTYPE a [<!ENTITY b "c">]><a>&b;</a>', "DOCTYPE"),
        ("text/xml", b"<a>" * 10_000, "depth"),
        (
            'multipart/related; boundary="b"',
            b"--b\r\nContent-Type: text/xml\r\n\r\n<x/>\r\n--b--",
            "not a SOAP 1.1 Envelope",
        ),
        ("text/xml", b"\xff\xfe\x00garbage", "only UTF-8"),
        ("", b"", "document is empty"),
    ],
)
def test_hostile_requests_are_refused_as_unreadable(
    content_type: str, body: bytes, words: str
) -> None:
    with pytest.raises(ebms.EbmsParseError, match=words):
        ebms.read(content_type, body)


def test_a_content_id_outside_ascii_is_a_missing_part_not_a_crash() -> None:
    """The MIME reader keeps headers as compat32 strings, except one with bytes outside
    ASCII, which comes back as a Header object (found by the fuzzer): read, its Content-ID
    matches no Manifest reference, which the CPA check answers with MimeProblem."""
    content_type, body = compose.business_message(outgoing(di01()))
    at = body.index(b"Content-ID: <", body.index(b"Content-ID: <") + 1) + len(b"Content-ID: <")
    message = ebms.read(content_type, body[:at] + b"\xff" + body[at:])
    assert len(message.references) == 1 and len(message.parts) == 1
    assert message.references[0][4:] not in message.parts
    assert "\ufffd" in next(iter(message.parts))


@pytest.mark.parametrize(
    "inside",
    [lambda: etree.Comment("x"), lambda: etree.ProcessingInstruction("x")],
    ids=["comment", "pi"],
)
def test_a_comment_or_pi_inside_a_header_field_is_read_around_it(inside: Any) -> None:
    """On an unsigned channel too, ``ab<!--x-->cd`` in a header field reads ``abcd``: the
    reader drops comments and PIs and reads each field's whole text."""
    out = outgoing(di01())
    content_type, body = compose.business_message(out)
    start = body.index(b"<?xml")
    end = body.index(b"</soap:Envelope>") + len(b"</soap:Envelope>")
    root = etree.fromstring(body[start:end])
    for tag in ("MessageId", "CPAId"):
        el = root.find(f".//{ebms.eb(tag)}")
        assert el is not None and el.text
        node = inside()
        node.tail, el.text = el.text[4:], el.text[:4]
        el.append(node)
    split = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    message = ebms.read(content_type, body[:start] + split + body[end:])
    assert (message.message_id, message.cpaid) == (out.message_id, out.cpaid)
    assert message.problems == ()


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-06",  # a bare date
        "20261206T120000Z",  # the compact form
        "2026-W49-7T12:00:00Z",  # a week date
        "2026-12-06 12:00:00Z",  # a space for the T
        "2026-12-06T12:00Z",  # no seconds
        "2026-12-06T12:00:00,5Z",  # a decimal comma
        "2026-12-06T12:00:00+0100",  # a compact offset
        "2026-12-06T12:00:00+15:00",  # beyond 14 hours
        "9999-12-31T23:00:00-14:00",  # past year 9999 in UTC
        "1" * 5000 + "-01-01T00:00:00Z",  # past int()'s digit limit: no ValueError
        "10000-01-01T00:00:00Z",  # a five-digit year
    ],
)
def test_only_the_xsd_datetime_form_is_a_time(text: str) -> None:
    with pytest.raises(ebms.EbmsParseError, match="not an xsd:dateTime"):
        ebms.parse_time(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-06T12:00:00Z", datetime(2026, 12, 6, 12, tzinfo=UTC)),
        ("2026-12-06T12:00:00", datetime(2026, 12, 6, 12, tzinfo=UTC)),  # UTC (ebMS 2.0)
        ("2026-12-06T13:30:00+01:30", datetime(2026, 12, 6, 12, tzinfo=UTC)),
        ("2026-12-06T12:00:00.1234567Z", datetime(2026, 12, 6, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2026-12-06T24:00:00Z", datetime(2026, 12, 7, tzinfo=UTC)),
    ],
)
def test_an_xsd_datetime_is_read_as_utc(text: str, expected: datetime) -> None:
    parsed = ebms.parse_time(text)
    assert parsed == expected and parsed is not None and parsed.utcoffset() == timedelta(0)


def test_a_duration_beyond_what_a_timedelta_holds_is_a_cpa_problem() -> None:
    """Not an OverflowError out of the CPA reader (which collects ValueErrors as problems)."""
    from gateway.ebms.cpa import duration

    with pytest.raises(ValueError, match="too long"):
        duration("P9999999999D")


async def test_the_signal_line_is_bounded_by_bytes_and_reports_drops_per_interval() -> None:
    """Besides the count: a partner's waiting bytes and all partners' together bound the
    line; drops are one log line per partner per interval, with the count."""
    release = asyncio.Event()
    sent: list[str] = []

    def sending(name: str) -> Any:
        async def send() -> None:
            await release.wait()
            sent.append(name)

        return send

    outbox = SignalOutbox(posts=1, waiting=10, waiting_bytes=100, total_waiting_bytes=150)
    outbox.report_seconds = 0.05
    with capture_logs() as logs:
        for name, partner, size in [
            ("a0", "a", 1),  # being sent
            ("a1", "a", 60),
            ("a2", "a", 40),  # a's 100 bytes
            ("a3", "a", 1),  # dropped: a's bytes
            ("b0", "b", 1),  # being sent
            ("b1", "b", 50),  # all 150 bytes
            ("b2", "b", 1),  # dropped: the total
            ("b3", "b", 1),  # dropped: the total
        ]:
            if outbox.admit(partner, size):
                outbox.put(partner, size, sending(name))
        assert (outbox.queued("a"), outbox.queued("b")) == (2, 1)
        assert outbox.dropped == {"a": 1, "b": 2}
        await eventually(lambda: any(e["event"] == "ebms.signals_dropped" for e in logs))
        release.set()
        await eventually(lambda: len(sent) == 5)
    assert sorted(sent) == ["a0", "a1", "a2", "b0", "b1"]
    assert sent.index("a1") < sent.index("a2")
    reports = [(e["partner"], e["count"]) for e in logs if e["event"] == "ebms.signals_dropped"]
    assert reports == [("a", 1), ("b", 2)]
    assert outbox.admit("a", 100) and outbox.queued("a") == 0
    await outbox.close()


async def test_a_ref_to_message_id_is_accepted_only_for_a_message_of_the_same_cpa(
    tmp_path: Path, capture: Capture
) -> None:
    """RefToMessageId naming a message exchanged under the same CPA (one we sent, one the
    partner sent) is acknowledged, as ebms-core does (peer kit row 10); one naming a message
    of another CPA, or none at all, is refused with ValueNotRecognized (row 9)."""
    setup = gateway_with_cpa(tmp_path, capture, outbound=True)
    add_second_partner(setup, capture)

    def answer_to(message_id: str) -> ebms.EbmsMessage | None:
        for body in capture.received:
            signal = ebms.read(capture.content_types[capture.received.index(body)], body)
            if signal.is_signal and signal.ref_to_message_id == message_id:
                return signal
        return None

    async def answer(out: compose.Outgoing, partner: str = "0150") -> list[Any]:
        assert (await post_ebms(setup, out, partner=partner))[0] == 204
        signal = await eventually(lambda: answer_to(out.message_id))
        return [signal.action, *_errors(etree.tostring(signal.envelope))]

    async with running(setup):
        await submit_to_0150(setup)
        await eventually(lambda: capture.received)
        ours = ebms.read(capture.content_types[0], capture.received[0])
        assert not ours.is_signal and ours.cpaid == "CPA_TEST_gateway_1"
        to_ours = outgoing(di01(identificatie="REF0000001"), ref_to_message_id=ours.message_id)
        assert await answer(to_ours) == ["Acknowledgment"]
        to_theirs = outgoing(di01(identificatie="REF0000002"), ref_to_message_id=to_ours.message_id)
        assert await answer(to_theirs) == ["Acknowledgment"]
        other_cpa = outgoing(
            di01(identificatie="REF0000003"),
            cpaid=OTHER_CPA,
            sender=ebms.PartyRef(OTHER.oin, "urn:osb:oin", OTHER.role),
            ref_to_message_id=ours.message_id,
        )
        where = "//Header/MessageHeader/MessageData/RefToMessageId"
        assert await answer(other_cpa, "0175") == [
            "MessageError",
            ("ValueNotRecognized", where),
        ]
        unknown = outgoing(di01(identificatie="REF0000004"), ref_to_message_id="never@peer.test")
        assert await answer(unknown) == ["MessageError", ("ValueNotRecognized", where)]
        assert len(await _inbox(setup)) == 2
