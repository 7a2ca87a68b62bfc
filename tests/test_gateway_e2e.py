"""End to end over real sockets: zeep → SOAP/TLS → gateway → SQLite → adapter → partner."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from pathlib import Path

import pytest
import zeep
from lxml import etree

from gateway import envelope as env
from kit.gateway import (
    Setup,
    Sink,
    deventer_wmo301,
    di01_kwargs,
    eventually,
    fo03_code,
    ggk,
    make_setup,
    post_soap,
    rest,
    running,
    zeep_client,
)
from tests.conftest import sample

WMO301 = sample("iwmo/wmo301.xml").encode()


@pytest.fixture
def setup(tmp_path: Path, sink: Sink) -> Setup:
    return make_setup(tmp_path / "gw", sink.port)


@pytest.mark.slow
async def test_zeep_di01_gets_bv03_and_partner_receives_it(setup: Setup, sink: Sink) -> None:
    async with running(setup):
        client = await asyncio.to_thread(zeep_client, setup, "0150")
        ref = str(uuid.uuid4())
        bv03 = await asyncio.to_thread(
            client.service.ggk_Di01,
            **di01_kwargs(
                WMO301, zender="0150", ontvanger="12345678", functie="WMO301", referentienummer=ref
            ),
        )
        assert bv03.berichtcode == "Bv03" and bv03.crossRefnummer == ref
        assert bv03.ontvanger.organisatie == "0150" and bv03.zender.organisatie == "GGK"
        await eventually(lambda: ref in sink.referenties())
        got = sink.received[0]
        assert got["soap_action"] == '"http://www.stufstandaarden.nl/koppelvlak/ggk0210/ggk_Di01"'
        assert got["idempotency_key"] == f"{ref}:12345678"
        payload = env.parse(got["envelope"]).payload
        assert payload == WMO301
        # the copy for CAK (directory adapter) is on disk too
        drop = setup.directory / "drop" / "CAK"
        await eventually(lambda: list(drop.glob(f"WMO301_{ref}_*.xml")))


@pytest.mark.slow
async def test_partner_down_then_back_is_retried_with_backoff(setup: Setup, sink: Sink) -> None:
    sink.fail_next, sink.fail_with = 2, "http503"
    async with running(setup):
        data = env.build_di01(
            sample("ijw/jw301.xml").encode().replace(b">12345678<", b">87654321<"),
            zender="0175",
            zender_applicatie="DOWRsociaal",
            ontvanger="87654321",
            functie="JW301",
        )
        status, body = await post_soap(setup, data, partner="0175")
        assert status == 200, body
        ref = env.parse(etree.fromstring(data)).referentienummer
        await eventually(lambda: ref in sink.referenties())
        assert sink.requests_seen == 3
        status, view = await rest(setup, "GET", f"/api/v1/messages/{ref}", token=setup.token())
        events = [e["event"] for e in view["events"]]
        assert events.count("retry_scheduled") == 2 and "delivered" in events
        delivery = next(d for d in view["deliveries"] if d["destination"] == "87654321")
        assert delivery["state"] == "delivered" and delivery["attempts"] == 3


@pytest.mark.slow
async def test_permanent_failure_dead_letters_then_replay_delivers(
    setup: Setup, sink: Sink
) -> None:
    sink.fail_next, sink.fail_with = 1, "fo03-client"
    async with running(setup):
        client = await asyncio.to_thread(zeep_client, setup, "0150")
        ref = str(uuid.uuid4())
        await asyncio.to_thread(
            client.service.ggk_Di01,
            **di01_kwargs(
                WMO301, zender="0150", ontvanger="12345678", functie="WMO301", referentienummer=ref
            ),
        )

        async def dead() -> bool:
            _, body = await rest(setup, "GET", "/api/v1/admin/dead-letters", token=setup.token())
            return any(d["destination"] == "12345678" for d in body["dead_letters"])

        await eventually(dead)
        assert sink.received == [] and sink.requests_seen == 1  # no retry for plek=client
        status, body = await rest(
            setup, "POST", "/api/v1/admin/replay", token=setup.token(), json={"message_id": ref}
        )
        assert status == 200 and body["replayed"] == 1
        await eventually(lambda: ref in sink.referenties())
        _, view = await rest(setup, "GET", f"/api/v1/messages/{ref}", token=setup.token())
        assert [e["event"] for e in view["events"]].count("replayed") == 1


@pytest.mark.slow
async def test_server_side_fo03_is_retried(setup: Setup, sink: Sink) -> None:
    sink.fail_next, sink.fail_with = 1, "fo03-server"
    async with running(setup):
        data = deventer_wmo301()
        assert (await post_soap(setup, data, partner="0150"))[0] == 200
        await eventually(lambda: len(sink.received) == 1)
        assert sink.requests_seen == 2


@pytest.mark.slow
async def test_duplicate_gets_same_bv03_and_is_routed_once(setup: Setup, sink: Sink) -> None:
    async with running(setup):
        data = deventer_wmo301()
        first = await post_soap(setup, data, partner="0150")
        second = await post_soap(setup, data, partner="0150")
        assert first == second and first[0] == 200  # the identical Bv03, byte for byte
        await eventually(lambda: len(sink.received) == 1)
        await asyncio.sleep(0.3)
        assert len(sink.received) == 1
        changed = data.replace(b"<StUF:functie>WMO301<", b"<StUF:functie>WMO301<").replace(
            base64.b64encode(WMO301),
            base64.b64encode(WMO301.replace(b"Hendrika Maria", b"Hendrika Johanna")),
        )
        status, body = await post_soap(setup, changed, partner="0150")
        assert status == 500 and fo03_code(body) == "StUF016"


@pytest.mark.slow
async def test_spoofed_sender_gets_fo03_and_nothing_is_stored(setup: Setup, sink: Sink) -> None:
    async with running(setup):
        ref = str(uuid.uuid4())
        data = deventer_wmo301(referentienummer=ref)
        status, body = await post_soap(setup, data, partner="0177")  # Raalte's certificate
        assert status == 500 and fo03_code(body) == "StUF052"
        assert b"<faultcode>soapenv:Client</faultcode>" in body
        status, _ = await rest(setup, "GET", f"/api/v1/messages/{ref}", token=setup.token())
        assert status == 404
        status, body = await post_soap(setup, data, token=setup.token("0177"))
        assert fo03_code(body) == "StUF052"
        status, body = await post_soap(setup, data)  # no credential at all
        assert fo03_code(body) == "StUF052"
        await asyncio.sleep(0.2)
        assert sink.requests_seen == 0


@pytest.mark.slow
async def test_du01_retour_goes_back_to_the_heen_sender_and_shows_in_status(
    setup: Setup, sink: Sink
) -> None:
    async with running(setup):
        heen_ref = str(uuid.uuid4())
        heen = deventer_wmo301(referentienummer=heen_ref)
        assert (await post_soap(setup, heen, partner="0150"))[0] == 200
        retour = env.build_du01(
            sample("iwmo/wmo302.xml").encode(),
            zender="12345678",
            zender_applicatie="ZorgSuite",
            ontvanger="0150",
            functie="WMO302",
            cross_ref=heen_ref,
        )
        status, body = await post_soap(setup, retour, partner="12345678")
        assert status == 200, body
        status, listing = await rest(setup, "GET", "/api/v1/inbox", token=setup.token("0150"))
        assert [m["functie"] for m in listing["messages"]] == ["WMO302"]
        _, view = await rest(setup, "GET", f"/api/v1/messages/{heen_ref}", token=setup.token())
        assert [c["functie"] for c in view["conversation"]] == ["WMO301", "WMO302"]
        assert view["conversation"][1]["retourcodes"] == "0200"
        # the partner may read its own conversation, another partner may not
        assert (
            await rest(setup, "GET", f"/api/v1/messages/{heen_ref}", token=setup.token("0150"))
        )[0] == 200
        assert (
            await rest(setup, "GET", f"/api/v1/messages/{heen_ref}", token=setup.token("0177"))
        )[0] == 404
        # a retour pointing at a heenbericht of another gemeente is refused
        wrong = env.build_du01(
            sample("iwmo/wmo302.xml").encode(),
            zender="12345678",
            zender_applicatie="ZorgSuite",
            ontvanger="0177",
            functie="WMO302",
            cross_ref=heen_ref,
        )
        assert fo03_code((await post_soap(setup, wrong, partner="12345678"))[1]) in (
            "IB210",
            "StUF043",
        )


@pytest.mark.slow
async def test_rest_submit_inbox_fetch_ack(setup: Setup) -> None:
    async with running(setup):
        key = str(uuid.uuid4())
        status, body = await rest(
            setup,
            "POST",
            "/api/v1/messages",
            token=setup.token("12345678"),
            data=sample("iwmo/wmo305.xml").encode(),
            headers={"Idempotency-Key": key},
        )
        assert status == 202 and body["referentienummer"] == key
        assert body["destinations"] == ["CAK", "0150"]
        again = await rest(
            setup,
            "POST",
            "/api/v1/messages",
            token=setup.token("12345678"),
            data=sample("iwmo/wmo305.xml").encode(),
            headers={"Idempotency-Key": key},
        )
        assert again[0] == 202 and again[1]["duplicate"] is True
        _, listing = await rest(setup, "GET", "/api/v1/inbox", token=setup.token("0150"))
        (item,) = listing["messages"]
        status, envelope_xml = await rest(
            setup, "GET", f"/api/v1/inbox/{item['id']}", partner_cert="0150"
        )
        assert status == 200 and env.parse(etree.fromstring(envelope_xml)).functie == "WMO305"
        assert (
            await rest(setup, "POST", f"/api/v1/inbox/{item['id']}/ack", token=setup.token("0177"))
        )[0] == 404
        assert (
            await rest(setup, "POST", f"/api/v1/inbox/{item['id']}/ack", token=setup.token("0150"))
        )[0] == 200
        _, listing = await rest(setup, "GET", "/api/v1/inbox", token=setup.token("0150"))
        assert listing["messages"] == []
        status, body = await rest(
            setup,
            "POST",
            "/api/v1/messages",
            token=setup.token("12345678"),
            data=sample("invalid/wmo305-status-gewijzigd.xml").encode(),
        )
        assert status == 422 and body["code"] == "StUF058" and "CS058" in body["title"]


@pytest.mark.slow
async def test_message_type_not_allowed_for_sender_kind(setup: Setup) -> None:
    async with running(setup):
        # a zorgaanbieder may not send a toewijzing (WMO301 is the gemeente's)
        payload = WMO301.replace(b"<wmo301:Afzender>0150<", b"<wmo301:Afzender>12345678<")
        payload = payload.replace(b"<wmo301:Ontvanger>12345678<", b"<wmo301:Ontvanger>0150<")
        status, body = await rest(
            setup, "POST", "/api/v1/messages", token=setup.token("12345678"), data=payload
        )
        assert status == 422 and body["code"] in ("StUF055", "IB234")


@pytest.mark.slow
async def test_admin_endpoints_need_admin(setup: Setup) -> None:
    async with running(setup):
        for path in ("/api/v1/admin/dead-letters", "/api/v1/admin/overdue"):
            assert (await rest(setup, "GET", path))[0] == 401
            assert (await rest(setup, "GET", path, token=setup.token("0150")))[0] == 403
            assert (await rest(setup, "GET", path, token=setup.token()))[0] == 200
        assert (
            await rest(
                setup,
                "POST",
                "/api/v1/admin/replay",
                token=setup.token("0150"),
                json={"message_id": "x"},
            )
        )[0] == 403
        assert (await rest(setup, "GET", "/api/v1/inbox", token="not-a-token"))[0] == 401
        # an operator tool on a partner's mTLS connection may still act as admin by token...
        assert (
            await rest(
                setup, "GET", "/api/v1/admin/dead-letters", token=setup.token(), partner_cert="0150"
            )
        )[0] == 200
        # ...but a partner token cannot override the certificate's partner
        status, listing = await rest(
            setup, "GET", "/api/v1/inbox", token=setup.token("0177"), partner_cert="0150"
        )
        assert status == 200 and listing["partner"] == "0150"


@pytest.mark.slow
async def test_health_metrics_openapi_and_wsdl(setup: Setup) -> None:
    async with running(setup):
        assert (await rest(setup, "GET", "/healthz"))[1] == {"status": "ok"}
        assert (await rest(setup, "GET", "/readyz"))[1] == {"status": "ready"}
        assert (await rest(setup, "GET", "/metrics"))[0] == 401
        status, body = await rest(setup, "GET", "/metrics", token=setup.token())
        assert status == 200 and b"ggk_messages_accepted_total" in body
        status, spec = await rest(setup, "GET", "/api/v1/openapi.json")
        assert spec["openapi"].startswith("3.") and "/api/v1/messages" in spec["paths"]
        status, wsdl = await rest(setup, "GET", "/ggk/OntvangAsynchroon?wsdl")
        assert status == 200 and f'location="{setup.url}/ggk/OntvangAsynchroon"'.encode() in wsdl
        assert (await rest(setup, "GET", "/ggk/wsdl/../../../etc/passwd"))[0] == 404


@pytest.mark.slow
async def test_soap_layer_refusals(setup: Setup) -> None:
    async with running(setup):
        data = deventer_wmo301()
        wrong_action = await post_soap(
            setup, data, partner="0150", action="http://www.egem.nl/StUF/StUF0301/Fo01"
        )
        assert fo03_code(wrong_action[1]) == "StUF037"
        # the envelope was readable: the Fo03 names it and goes back to its zender
        s = env.STUF_NS
        fo03 = etree.fromstring(wrong_action[1]).find(f".//{{{s}}}Fo03Bericht/{{{s}}}stuurgegevens")
        assert fo03 is not None
        sent_ref = etree.fromstring(data).findtext(f".//{{{s}}}referentienummer")
        assert sent_ref and fo03.findtext(f"{{{s}}}crossRefnummer") == sent_ref
        assert fo03.findtext(f"{{{s}}}ontvanger/{{{s}}}organisatie") == "0150"
        assert fo03.findtext(f"{{{s}}}ontvanger/{{{s}}}applicatie") == "DOWRsociaal"
        soap12 = (
            b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>'
        )
        status, body = await rest(
            setup,
            "POST",
            "/ggk/OntvangAsynchroon",
            data=soap12,
            partner_cert="0150",
            headers={"Content-Type": "text/xml"},
        )
        assert status == 500 and fo03_code(body) == "StUF001"
        unknown = env.build_di01(
            WMO301,
            zender="0150",
            zender_applicatie="DOWRsociaal",
            ontvanger="99999999",
            functie="WMO301",
        )
        assert fo03_code((await post_soap(setup, unknown, partner="0150"))[1]) == "IB210"
        bad_payload = env.build_di01(
            sample("invalid/wmo301-bsn-elfproef.xml").encode(),
            zender="0150",
            zender_applicatie="DOWRsociaal",
            ontvanger="12345678",
            functie="WMO301",
        )
        status, body = await post_soap(setup, bad_payload, partner="0150")
        assert fo03_code(body) == "StUF058" and b"CS002" in body
        assert b"123456789" not in body


def test_zeep_sees_the_operations_and_actions_of_the_facts_sheet(tmp_path: Path) -> None:
    wsdl = (
        Path(__file__).resolve().parent.parent
        / "schemas"
        / "stuf-ggk"
        / "ggk0210"
        / ("ggk0210_OntvangAsynchroon.wsdl")
    )
    client = zeep.Client(str(wsdl))  # type: ignore[no-untyped-call]
    service = next(iter(client.wsdl.services.values()))
    binding = service.ports["OntvangAsynchroon"].binding  # zeep's public model, not _binding
    assert {name: binding.get(name).soapaction for name in ("ggk_Di01", "ggk_Du01", "Fo01")} == {
        "ggk_Di01": "http://www.stufstandaarden.nl/koppelvlak/ggk0210/ggk_Di01",
        "ggk_Du01": "http://www.stufstandaarden.nl/koppelvlak/ggk0210/ggk_Du01",
        "Fo01": "http://www.egem.nl/StUF/StUF0301/Fo01",
    }
    service = next(iter(client.wsdl.services.values()))
    assert service.name == "StUFOntvangAsynchroonGGK0210Service"
    assert list(service.ports) == ["OntvangAsynchroon"]


@pytest.mark.slow
async def test_zeep_from_the_served_0310_wsdl_gets_bv03(setup: Setup, sink: Sink) -> None:
    async with running(setup):
        status, listing = await rest(setup, "GET", "/ggk/OntvangAsynchroon?wsdl=0310")
        assert status == 200 and b"StUFOntvangAsynchroonGGK0310Service" in listing
        assert f'location="{setup.url}/ggk/OntvangAsynchroon"'.encode() in listing
        assert (await rest(setup, "GET", "/ggk/OntvangAsynchroon?wsdl=0999"))[0] == 404
        client = await asyncio.to_thread(zeep_client, setup, "0150", "0310")
        ref = str(uuid.uuid4())
        kwargs = di01_kwargs(
            WMO301, zender="0150", ontvanger="12345678", functie="WMO301", referentienummer=ref
        )
        kwargs["parameters"]["bericht"] = {"_value_1": WMO301, "contentType": "text/xml"}
        bv03 = await asyncio.to_thread(client.service.ggk_Di01, **kwargs)
        assert bv03.berichtcode == "Bv03" and bv03.crossRefnummer == ref
        await eventually(lambda: ref in sink.referenties())


@pytest.mark.slow
async def test_older_0310_envelope_namespace_is_accepted(setup: Setup, sink: Sink) -> None:
    async with running(setup):
        data = deventer_wmo301(generation=env.Generation.GGK0310)
        status, body = await post_soap(setup, data, partner="0150")
        assert status == 200, body
        await eventually(lambda: len(sink.received) == 1)


@pytest.mark.slow
async def test_overdue_lists_heen_without_retour(setup: Setup) -> None:
    async with running(setup):
        ref = str(uuid.uuid4())
        heen = deventer_wmo301(referentienummer=ref)
        assert (await post_soap(setup, heen, partner="0150"))[0] == 200
        _, body = await rest(setup, "GET", "/api/v1/admin/overdue?days=0", token=setup.token())
        assert [o["referentienummer"] for o in body["overdue"]] == [ref]
        retour = env.build_du01(
            sample("iwmo/wmo302.xml").encode(),
            zender="12345678",
            zender_applicatie="ZorgSuite",
            ontvanger="0150",
            functie="WMO302",
            cross_ref=ref,
        )
        assert (await post_soap(setup, retour, partner="12345678"))[0] == 200
        _, body = await rest(setup, "GET", "/api/v1/admin/overdue?days=0", token=setup.token())
        assert body["overdue"] == []


@pytest.mark.slow
async def test_operator_cli_against_a_running_gateway(
    setup: Setup, sink: Sink, tmp_path: Path
) -> None:
    sink.fail_next, sink.fail_with = 1, "fo03-client"
    async with running(setup):
        samples = Path(__file__).resolve().parent.parent / "samples"
        code, out = await ggk(
            setup, "submit", str(samples / "iwmo" / "wmo301.xml"), "--as", "0150", "--json"
        )
        assert code == 0, out
        message_id = json.loads(out)[0]["id"]
        code, out = await ggk(
            setup, "submit", str(samples / "invalid" / "wmo301-bsn-elfproef.xml"), "--as", "0150"
        )
        assert code == 1 and "StUF058" in out
        code, out = await ggk(setup, "routes", "check", str(samples / "iwmo" / "wmo305.xml"))
        assert code == 0 and "→ CAK via directory (copy)" in out and "→ 0150 via inbox" in out

        async def dead() -> bool:
            return message_id in (await ggk(setup, "dlq", "list"))[1]

        await eventually(dead)
        code, out = await ggk(setup, "replay", "--dlq", "--json")
        assert code == 0 and json.loads(out) == {"replayed": 1}
        await eventually(lambda: len(sink.received) == 1)
        code, out = await ggk(setup, "status", message_id, "--json")
        assert code == 0 and "replayed" in [e["event"] for e in json.loads(out)["events"]]
        code, out = await ggk(setup, "overdue", "--days", "0")
        assert code == 0 and message_id in out
        code, out = await ggk(setup, "inbox", "0150", "--save", str(tmp_path / "got"))
        assert code == 0 and "inbox is empty" in out
