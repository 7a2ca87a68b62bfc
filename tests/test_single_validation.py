"""A payload submitted over REST or through the portal is validated once (issue 28.3).

Validating a payload (XSD and every business rule) is the accept path's dominant cost: a
1 MB declaratie takes tens of milliseconds. The REST and portal paths used to validate the
raw payload, wrap it in a Di01/Du01, parse that envelope again and let the ingress decode and
validate the payload a second time. ``ggk_payload_validations_total`` counts every
validation the accept path runs; a real gateway serves, the counter is read from /metrics.
The stored envelope is what a receiver gets: still exactly the Di01 ``build_di01`` makes.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import aiohttp
import pytest
from lxml import etree

from gateway import envelope as env
from gateway.xmlsafe import parse_untrusted
from kit.gateway import Setup, Sink, make_setup, portal_session, rest, running
from kit.messages import big_declaratie
from tests.conftest import SAMPLES


@pytest.fixture
def setup(tmp_path: Path, sink: Sink) -> Setup:
    return make_setup(tmp_path / "gw", sink.port)


async def validations(setup: Setup) -> dict[str, float]:
    """``ggk_payload_validations_total`` by ``where``, as the gateway exports it."""
    status, scrape = await rest(setup, "GET", "/metrics", token=setup.token())
    assert status == 200
    found = re.findall(
        rb'^ggk_payload_validations_total\{where="(\w+)"\} (\S+)$', scrape, flags=re.M
    )
    return {where.decode(): float(value) for where, value in found}


async def counted(setup: Setup, before: dict[str, float]) -> dict[str, float]:
    after = await validations(setup)
    return {where: after[where] - before.get(where, 0.0) for where in after}


def wmo301(identificatie: str) -> bytes:
    return (
        (SAMPLES / "iwmo" / "wmo301.xml")
        .read_bytes()
        .replace(b"WMO301A0001", identificatie.encode())
    )


async def test_a_rest_submission_is_validated_once(setup: Setup) -> None:
    async with running(setup):
        before = await validations(setup)
        status, body = await rest(
            setup,
            "POST",
            "/api/v1/messages",
            token=setup.token("0150"),
            data=wmo301("ONE000000001"),
            headers={"Content-Type": "application/xml"},
        )
        assert status == 202, body
        assert await counted(setup, before) == {"inline": 1.0, "worker": 0.0, "reader": 0.0}

        # refused for a business rule: validated once as well, and the same answer
        before = await validations(setup)
        invalid = (SAMPLES / "invalid" / "wmo301-einddatum-voor-ingangsdatum.xml").read_bytes()
        status, body = await rest(
            setup, "POST", "/api/v1/messages", token=setup.token("0150"), data=invalid
        )
        assert (status, body["code"]) == (422, "StUF058"), body
        assert "CS003" in body["title"]
        assert await counted(setup, before) == {"inline": 1.0, "worker": 0.0, "reader": 0.0}


async def test_a_large_declaratie_is_validated_once_and_stored_as_its_di01(
    setup: Setup,
) -> None:
    payload = big_declaratie()
    ref = str(uuid.uuid4())
    async with running(setup):
        before = await validations(setup)
        status, body = await rest(
            setup,
            "POST",
            "/api/v1/messages",
            token=setup.token("12345678"),
            data=payload,
            headers={"Idempotency-Key": ref},
        )
        assert status == 202, body
        assert await counted(setup, before) == {"inline": 0.0, "worker": 1.0, "reader": 0.0}
        # 0150 holds an inbox: what it fetches is the envelope as stored
        status, stored = await rest(
            setup, "GET", f"/api/v1/inbox/{body['id']}", token=setup.token("0150")
        )
        assert status == 200
    tijdstip = etree.fromstring(stored).findtext(f".//{{{env.STUF_NS}}}tijdstipBericht")
    built = env.build_di01(
        payload,
        zender="12345678",
        zender_applicatie=setup.config().applicatie,
        ontvanger="0150",
        functie="WMO323",
        referentienummer=ref,
        tijdstip=tijdstip,
    )
    as_accepted = etree.tostring(parse_untrusted(built), encoding="UTF-8", xml_declaration=True)
    assert stored == as_accepted


async def test_a_portal_upload_is_validated_once(setup: Setup) -> None:
    async with running(setup):
        client, csrf = await portal_session(setup, "0150")
        async with client:
            before = await validations(setup)
            form = aiohttp.FormData()
            form.add_field("csrf", csrf)
            form.add_field("action", "send")
            form.add_field("file", wmo301("ONE000000002"), filename="wmo301.xml")
            async with client.post(
                f"{setup.url}/portal/upload", data=form, ssl=setup.ssl_context()
            ) as page:
                text = await page.text()
                assert page.status == 200, text[:500]
            assert await counted(setup, before) == {"inline": 1.0, "worker": 0.0, "reader": 0.0}
