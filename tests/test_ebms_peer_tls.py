"""Two-way TLS against a real, independent MSH: ebms-core 2.20.2 on HTTPS with client
authentication (../shared/tools/ebms-peer, ``start.sh --props``), both ways, osb-rm and osb-rm-s.

The peer's key, trust and client stores are PKCS12 files made here from a test CA
(kit.ebmspeer.PeerPki). The gateway serves ``/ebms`` on an ``[ebms] listen`` listener that
requires a client certificate and reaches the peer with its own ebMS client certificate
(clientAuth), trusting only the test CA (and its CRL). One peer = one partner identity (ebms-core
presents one client certificate per process). Skips without the kit or Java 17 outside CI.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from gateway import envelope as env
from kit.ebms import submit_to_0150
from kit.ebmspeer import (
    ASYNC_CPA,
    SIGNED_ACK_CPA,
    SIGNED_CPA,
    SYNC_CPA,
    Peer,
    PeerPki,
    di01,
    prepare_tls,
    started_peer,
)
from kit.gateway import Setup, eventually, rest, running
from tests.conftest import sample
from tests.test_ebms_peer import _skip_without_kit

pytestmark = [pytest.mark.ebms, pytest.mark.slow]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PeerPki:
    return PeerPki.make(tmp_path_factory.mktemp("peer-pki"))


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory, pki: PeerPki) -> Iterator[Peer]:
    _skip_without_kit()
    home = tmp_path_factory.mktemp("ebms-peer-tls")
    seed = tmp_path_factory.mktemp("seed-tls") / "cpa.xml"
    with started_peer(home, seed, name="gwtls", tls=pki) as found:
        yield found


TLS13 = (
    "https.protocols=TLSv1.3",
    "https.cipherSuites=TLS_AES_256_GCM_SHA384,TLS_AES_128_GCM_SHA256",
)
"""A peer that speaks TLS 1.3 only (Digikoppeling TLS004: recommended), both as server and
as client (ebms-core uses the same two keys for both; README: set both or neither)."""


@pytest.fixture(scope="module")
def peer13(tmp_path_factory: pytest.TempPathFactory, pki: PeerPki) -> Iterator[Peer]:
    _skip_without_kit()
    home = tmp_path_factory.mktemp("ebms-peer-tls13")
    seed = tmp_path_factory.mktemp("seed-tls13") / "cpa.xml"
    with started_peer(home, seed, name="gwtls13", tls=pki, tls_extra=TLS13) as found:
        yield found


async def _event(peer: Peer, message_id: str) -> str:
    def outcome() -> str | None:
        for event in peer.events():
            if event.get("messageId") == message_id:
                return event.get("type")
        return None

    return str(await eventually(lambda: asyncio.to_thread(outcome), timeout=90, interval=0.5))


async def _delivery(setup: Setup, message_id: str) -> dict[str, Any]:
    _, view = await rest(
        setup, "GET", f"/api/v1/messages/{message_id}", token=setup.token("12345678")
    )
    deliveries = view.get("deliveries", []) if isinstance(view, dict) else []
    found: dict[str, Any] = next((d for d in deliveries if d["destination"] == "0150"), {})
    return found


def _wmo305() -> bytes:
    import uuid

    return sample("iwmo/wmo305.xml").replace("WMO305A0001", uuid.uuid4().hex[:12]).encode()


@pytest.mark.parametrize("cpaid", [ASYNC_CPA, SYNC_CPA, SIGNED_CPA, SIGNED_ACK_CPA])
async def test_peer_message_over_two_way_tls_is_accepted_and_acknowledged(
    tmp_path: Path, peer: Peer, pki: PeerPki, cpaid: str
) -> None:
    """The peer calls our certificate-only listener with 0150's certificate; our
    Acknowledgment reaches its HTTPS endpoint (async) or its response (sync)."""
    setup = prepare_tls(tmp_path, peer, pki, ASYNC_CPA)
    async with running(setup):
        message_id = await asyncio.to_thread(peer.send, cpaid, di01())
        assert await _event(peer, message_id) == "DELIVERED"
        _, listing = await rest(setup, "GET", "/api/v1/inbox", token=setup.token("12345678"))
        assert [m["functie"] for m in listing["messages"]] == ["WMO301"]


@pytest.mark.parametrize("cpaid", [ASYNC_CPA, SYNC_CPA, SIGNED_CPA, SIGNED_ACK_CPA])
async def test_gateway_message_over_two_way_tls_reaches_the_peer(
    tmp_path: Path, peer: Peer, pki: PeerPki, cpaid: str
) -> None:
    """We call the peer's HTTPS endpoint with our ebMS client certificate, trusting the
    partner's anchor only; the peer acknowledges (async: on our listener, with its client
    certificate)."""
    setup = prepare_tls(tmp_path, peer, pki, cpaid)
    async with running(setup):
        before = set(await asyncio.to_thread(peer.inbox))
        payload = _wmo305()
        message_id = await submit_to_0150(setup, payload)

        async def delivered() -> dict[str, Any] | None:
            found = await _delivery(setup, message_id)
            return found if found.get("state") == "delivered" else None

        await eventually(delivered, timeout=90, interval=0.5)
        arrived = set(await asyncio.to_thread(peer.inbox)) - before
        assert len(arrived) == 1
        message = await asyncio.to_thread(peer.message, arrived.pop())
        envelope = base64.b64decode(message["dataSources"][0]["content"])
        assert env.parse(etree.fromstring(envelope)).payload == payload


@pytest.mark.parametrize("client", ["foreign", "expired"])
async def test_the_peer_refuses_a_bad_gateway_certificate_in_the_handshake(
    tmp_path: Path, peer: Peer, pki: PeerPki, client: str
) -> None:
    """Our client certificate from a CA the peer does not trust, or expired: ebms-core
    refuses the handshake; nothing arrives, the delivery is retried, not delivered."""
    setup = prepare_tls(tmp_path, peer, pki, ASYNC_CPA, client=client)
    async with running(setup):
        before = set(await asyncio.to_thread(peer.inbox))
        message_id = await submit_to_0150(setup, _wmo305())

        async def failed() -> dict[str, Any] | None:
            found = await _delivery(setup, message_id)
            return found if found.get("last_error") else None  # the first attempt's outcome

        delivery = await eventually(failed, timeout=60, interval=0.5)
        assert delivery["state"] != "delivered"
        assert "SSL" in str(delivery.get("last_error")), delivery  # ClientConnectorSSLError
        assert set(await asyncio.to_thread(peer.inbox)) == before


async def test_a_message_referring_to_one_we_sent_is_acknowledged(
    tmp_path: Path, peer: Peer, pki: PeerPki
) -> None:
    """ebms-core's behaviour table row 10, with the roles swapped: the peer's message whose
    RefToMessageId names the message we sent it under the same CPA is acknowledged; one
    naming it under another CPA, or naming nothing we know, fails (ValueNotRecognized)."""
    setup = prepare_tls(tmp_path, peer, pki, ASYNC_CPA)
    async with running(setup):
        before = set(await asyncio.to_thread(peer.inbox))
        message_id = await submit_to_0150(setup, _wmo305())

        async def delivered() -> dict[str, Any] | None:
            found = await _delivery(setup, message_id)
            return found if found.get("state") == "delivered" else None

        await eventually(delivered, timeout=90, interval=0.5)
        (ours,) = set(await asyncio.to_thread(peer.inbox)) - before
        answer = await asyncio.to_thread(peer.send, ASYNC_CPA, di01(), ref_to=ours)
        assert await _event(peer, answer) == "DELIVERED"
        elsewhere = await asyncio.to_thread(peer.send, SIGNED_CPA, di01(), ref_to=ours)
        assert await _event(peer, elsewhere) == "FAILED"
        unknown = await asyncio.to_thread(peer.send, ASYNC_CPA, di01(), ref_to="none@peer.test")
        assert await _event(peer, unknown) == "FAILED"
        _, listing = await rest(setup, "GET", "/api/v1/inbox", token=setup.token("12345678"))
        assert len(listing["messages"]) == 1


async def test_tls_1_3_both_ways(tmp_path: Path, peer13: Peer, pki: PeerPki) -> None:
    """Against a peer that speaks TLS 1.3 only: its message in (our listener), our
    Acknowledgment and our message out (its endpoint), its Acknowledgment back."""
    setup = prepare_tls(tmp_path, peer13, pki, ASYNC_CPA)
    async with running(setup):
        message_id = await asyncio.to_thread(peer13.send, ASYNC_CPA, di01())
        assert await _event(peer13, message_id) == "DELIVERED"
        sent = await submit_to_0150(setup, _wmo305())

        async def delivered() -> dict[str, Any] | None:
            found = await _delivery(setup, sent)
            return found if found.get("state") == "delivered" else None

        await eventually(delivered, timeout=90, interval=0.5)
    # and it is TLS 1.3 indeed: the peer refuses TLS 1.2 from the same client
    stem = pki.directory / f"gw{setup.port}-client"
    for version, works in ((ssl.TLSVersion.TLSv1_3, True), (ssl.TLSVersion.TLSv1_2, False)):
        context = ssl.create_default_context(cafile=str(pki.ca.cert_path))
        context.load_cert_chain(f"{stem}.crt", f"{stem}.key")
        context.maximum_version = version
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", peer13.ebms_port, ssl=context)
            writer.close()
            spoke = True
        except (ssl.SSLError, OSError):
            spoke = False
        assert spoke == works, version
