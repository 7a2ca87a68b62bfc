"""Issue 27 point 11: a partner cannot take more than its rate (``[limits] partner_rate`` and
``partner_burst``), and a flood without credentials cannot grow the audit log (its refusals
are audited in aggregate)."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from lxml import etree

from gateway import soap
from gateway.config import ConfigError
from gateway.config import load as load_config
from gateway.ratelimit import PartnerBuckets
from kit.gateway import (
    Setup,
    deventer_wmo301,
    fo03_code,
    make_setup,
    post_soap,
    rest,
    serve,
)
from tests.conftest import sample

BURST = 5
DI01 = "http://www.stufstandaarden.nl/koppelvlak/ggk0210/ggk_Di01"


def limited(setup: Setup, rate: str, burst: str) -> Setup:
    """``setup`` with its ``[limits] partner_rate`` and ``partner_burst`` set as written."""
    text = setup.config_path.read_text()
    text, rates = re.subn(r"^partner_rate = .*$", f"partner_rate = {rate}", text, flags=re.M)
    text, bursts = re.subn(r"^partner_burst = .*$", f"partner_burst = {burst}", text, flags=re.M)
    assert rates == bursts == 1
    setup.config_path.write_text(text)
    return setup


def test_buckets_admit_the_burst_then_the_rate() -> None:
    now = [100.0]
    buckets = PartnerBuckets(2.0, 3, clock=lambda: now[0])
    assert [buckets.take("0150") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("0150") == pytest.approx(0.5)  # a token every half second
    assert buckets.take("0175") == 0.0  # another partner has its own bucket
    now[0] += 0.5
    assert buckets.take("0150") == 0.0
    assert buckets.take("0150") > 0
    now[0] += 60  # refilled up to the burst, not beyond
    assert [buckets.take("0150") for _ in range(4)][-1] > 0


def test_buckets_stay_bounded() -> None:
    now = [0.0]
    buckets = PartnerBuckets(1.0, 2, max_keys=10, clock=lambda: now[0])
    for i in range(1000):
        buckets.take(f"p{i}")
        now[0] += 0.001
    assert len(buckets) <= 10


@pytest.mark.parametrize(
    ("rate", "burst", "words"),
    [
        ("0", "10", "partner_rate"),
        ("-5", "10", "partner_rate"),
        ("nan", "10", "partner_rate"),
        ("inf", "10", "partner_rate"),
        ('"fast"', "10", "partner_rate"),
        ("true", "10", "partner_rate"),
        ("10", "0", "partner_burst"),
        ("10", "2.5", "partner_burst"),
        ("10", '"many"', "partner_burst"),
        ("10", "false", "partner_burst"),
    ],
)
def test_bad_partner_limits_are_refused_in_one_line(
    tmp_path: Path, rate: str, burst: str, words: str
) -> None:
    setup = limited(make_setup(tmp_path / "gw", 1), rate, burst)
    with pytest.raises(ConfigError) as refused:
        load_config(setup.config_path)
    message = str(refused.value)
    assert "\n" not in message and words in message and str(setup.config_path) in message


@pytest.mark.slow
async def test_a_partner_over_its_rate_is_refused_while_others_are_served(
    tmp_path: Path,
) -> None:
    """Beyond its burst a partner gets 429 with Retry-After: a Fo03 StUF046 on SOAP, a
    problem document on REST (one bucket for both); another partner is still served. A
    flood without credentials is counted and audited as one record per kind, not one per
    request. (The rate is one request per 1,000 s: nothing refills during the test, however
    slow the machine.)"""
    setup = limited(make_setup(tmp_path / "gw", 1), "0.001", str(BURST))
    log = tmp_path / "gateway.log"
    process = await serve(setup, log)
    try:
        admitted = []
        for _ in range(BURST):
            status, body = await post_soap(
                setup, deventer_wmo301(str(uuid.uuid4())), partner="0150"
            )
            admitted.append((status, fo03_code(body) if status != 200 else "Bv03"))
        assert all(s != 429 and code != "StUF046" for s, code in admitted), admitted
        for _ in range(2):  # beyond the burst, over SOAP
            status, body, after = await soap_with_retry_after(setup, "0150")
            assert status == 429 and fo03_code(body) == "StUF046", body[:300]
            assert etree.fromstring(body).findtext(".//faultcode") == "soapenv:Server"
            assert after is not None and int(after) >= 1
        # a submission over REST (token of 0150) draws on the same bucket
        status, answer = await rest(
            setup,
            "POST",
            "/api/v1/messages",
            token=setup.token("0150"),
            data=sample("iwmo/wmo301.xml").encode(),
        )
        assert status == 429 and answer["status"] == 429, answer
        # the same bucket over REST (token of 0150), with a Retry-After
        status, answer, after = await rest_with_retry_after(setup, "0150")
        assert status == 429 and answer["status"] == 429, answer
        assert after is not None and int(after) >= 1

        # another partner has its own burst, and then its own refusals
        for _ in range(BURST):
            assert (await rest_with_retry_after(setup, "12345678"))[0] == 200
        status, answer, after = await rest_with_retry_after(setup, "12345678")
        assert status == 429 and after is not None
        # and a third is not touched by either
        assert (await rest_with_retry_after(setup, "87654321"))[0] == 200

        # a flood without credentials: every request refused, none audited one by one
        flood = 60
        for _ in range(flood):
            status, body = await post_soap(setup, deventer_wmo301(str(uuid.uuid4())))
            assert status == 500 and fo03_code(body) == "StUF052"
        for _ in range(flood):
            assert (await rest(setup, "GET", "/api/v1/inbox"))[0] == 401
        status, scrape = await rest(setup, "GET", "/metrics", token=setup.token())
        assert status == 200
        text = scrape.decode()
        assert f'ggk_unauthenticated_refusals_total{{surface="soap"}} {flood}.0' in text
        assert f'ggk_unauthenticated_refusals_total{{surface="rest"}} {flood}.0' in text
        assert 'ggk_rate_limited_total{partner="0150"} 4.0' in text
    finally:
        if process.returncode is None:
            os.kill(process.pid, signal.SIGTERM)  # a clean stop writes the summaries
        await process.wait()

    with sqlite3.connect(setup.config().database) as db:
        rows = db.execute(
            "SELECT action, actor, outcome FROM audit WHERE actor LIKE 'anonymous%' "
            "OR action = 'refused_summary'"
        ).fetchall()
    summaries = {(actor, outcome.split(" ")[0]): outcome for action, actor, outcome in rows}
    assert all(action == "refused_summary" for action, _, _ in rows), rows
    assert len(rows) == 4, rows  # anonymous ×2 kinds, 0150 and 12345678 over their rates
    assert summaries[("anonymous", "StUF052")].startswith(f"StUF052 x{flood} ")
    assert summaries[("anonymous", "401")].startswith(f"401 x{flood} ")
    assert summaries[("0150", "429")].startswith("429 x4 ")
    assert summaries[("12345678", "429")].startswith("429 x1 ")
    assert b"Traceback" not in log.read_bytes()


async def soap_with_retry_after(setup: Setup, partner: str) -> tuple[int, bytes, str | None]:
    """A Di01 over SOAP with ``partner``'s certificate: (status, answer, its Retry-After)."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{setup.url}/ggk/OntvangAsynchroon",
            data=soap.wrap_request(deventer_wmo301(str(uuid.uuid4()))),
            headers={"Content-Type": soap.CONTENT_TYPE, "SOAPAction": f'"{DI01}"'},
            ssl=setup.ssl_context(partner),
        ) as response,
    ):
        return response.status, await response.read(), response.headers.get("Retry-After")


async def rest_with_retry_after(setup: Setup, partner: str) -> tuple[int, Any, str | None]:
    """GET /api/v1/inbox with ``partner``'s token: (status, answer, its Retry-After)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{setup.url}/api/v1/inbox",
            headers={"Authorization": f"Bearer {setup.token(partner)}"},
            ssl=setup.ssl_context(None),
        ) as response,
    ):
        return response.status, await response.json(), response.headers.get("Retry-After")
