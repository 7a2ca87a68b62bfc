"""The portal's pages over real HTTPS, without a browser: Dutch by default and English by
choice (cookie, Accept-Language), the language switch going back only within the portal,
error pages in the portal's look, the inbox in the order its caption says (partners and
message types by name), acknowledging only after confirmation, the sent list showing the addressee's delivery in words and each refusal
as a sentence (issue 30)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.portal.pages import Pages, PortalDeps, error_pages, hardened, templates
from kit.gateway import (
    Setup,
    Sink,
    deventer_wmo301,
    eventually,
    fo03_code,
    make_setup,
    portal_session,
    post_soap,
    rest,
    running,
)

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@pytest.fixture
def setup(tmp_path: Path, sink: Sink) -> Setup:
    return make_setup(tmp_path / "gw", sink.port)


def _main(html: str) -> str:
    """The page's main text, tags dropped and spaces collapsed."""
    found = re.search(r"<main[^>]*>(.*)</main>", html, re.S)
    assert found, html[:300]
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())


@pytest.mark.slow
async def test_dutch_by_default_english_by_choice(setup: Setup) -> None:
    url, tls = setup.url, setup.ssl_context()
    jar = aiohttp.CookieJar(unsafe=True)  # a jar that keeps cookies of 127.0.0.1
    async with running(setup), aiohttp.ClientSession(cookie_jar=jar) as client:
        async with client.get(f"{url}/portal/signin", ssl=tls) as page:
            html = await page.text()
            assert '<html lang="nl">' in html and "<h1>Aanmelden</h1>" in html
            assert 'href="/portal/taal/en?terug=/portal/signin"' in html  # the switch
        english = {"Accept-Language": "en-GB,en;q=0.9,nl;q=0.5"}
        async with client.get(f"{url}/portal/signin", ssl=tls, headers=english) as page:
            html = await page.text()
            assert '<html lang="en">' in html and "<h1>Sign in</h1>" in html
        # the switch: a cookie that outranks Accept-Language, and back to the page
        dutch = {"Accept-Language": "nl"}
        async with client.get(
            f"{url}/portal/taal/en?terug=/portal/signin",
            ssl=tls,
            headers=dutch,
            allow_redirects=False,
        ) as answer:
            assert answer.status == 303 and answer.headers["Location"] == "/portal/signin"
            cookie = answer.cookies["ggk-taal"]
            assert cookie.value == "en" and cookie["path"] == "/portal" and cookie["secure"]
        async with client.get(f"{url}/portal/signin", ssl=tls, headers=dutch) as page:
            assert "<h1>Sign in</h1>" in await page.text()
        # back only to a portal page: never another site
        for back in ("https://evil.example/", "//evil.example/", "/api/v1/inbox", "/portal/\n"):
            async with client.get(
                f"{url}/portal/taal/nl",
                params={"terug": back},
                ssl=tls,
                allow_redirects=False,
            ) as answer:
                assert answer.headers["Location"] == "/portal/", back
        async with client.get(
            f"{url}/portal/taal/nl",
            params={"terug": "/portal/figures?gemeente=0175&from=2026-01"},
            ssl=tls,
            allow_redirects=False,
        ) as answer:  # a page's plain query comes along
            assert answer.headers["Location"] == "/portal/figures?gemeente=0175&from=2026-01"
        async with client.get(f"{url}/portal/taal/de", ssl=tls) as page:
            assert page.status == 404


@pytest.mark.slow
async def test_errors_are_pages_in_the_portals_look(setup: Setup) -> None:
    url, tls = setup.url, setup.ssl_context()
    async with running(setup), aiohttp.ClientSession() as anonymous:
        async with anonymous.get(f"{url}/portal/no-such-page", ssl=tls) as page:
            html = await page.text()
            assert page.status == 404 and page.content_type == "text/html"
            assert '<link rel="stylesheet" href="/portal/static/portal.css">' in html
            assert "<h1>Pagina niet gevonden</h1>" in html and '<html lang="nl">' in html
            assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
        async with anonymous.put(f"{url}/portal/signin", ssl=tls) as page:
            assert page.status == 405 and "<h1>Dit kan zo niet</h1>" in await page.text()
            assert "POST" in page.headers["Allow"]
        client, _ = await portal_session(setup, "0175")
        async with (
            client,
            client.get(
                f"{url}/portal/no-such-page", ssl=tls, headers={"Accept-Language": "en"}
            ) as page,
        ):
            html = await page.text()
            assert page.status == 404 and "<h1>Page not found</h1>" in html
            assert 'href="/portal/inbox"' in html  # signed in: the menu is there


@pytest.mark.slow
async def test_the_inbox_says_its_order_and_acknowledging_asks_first(setup: Setup) -> None:
    url, tls = setup.url, setup.ssl_context()
    async with running(setup):
        ids = []
        for n in range(2):
            payload = (
                (SAMPLES / "ijw" / "jw305.xml")
                .read_bytes()
                .replace(b"JW305B0001", f"P{n}{uuid.uuid4().hex[:9]}".encode())
            )
            status, body = await rest(
                setup, "POST", "/api/v1/messages", token=setup.token("12345678"), data=payload
            )
            assert status == 202, body
            ids.append(body["id"])
        gemeente, csrf = await portal_session(setup, "0175")
        async with gemeente:
            async with gemeente.get(f"{url}/portal/inbox", ssl=tls) as page:
                html = await page.text()
            assert "oudste eerst (2)" in _main(html)
            # the sender and the message type by name, not as bare codes
            assert "Zorggroep Salland (12345678)" in _main(html)
            assert "JW305 · Start zorg" in _main(html)
            assert html.index(ids[0]) < html.index(ids[1])  # as the caption says
            ack = f"{url}/portal/inbox/{ids[0]}/ack"
            # a form without the confirmation changes nothing
            async with gemeente.post(ack, data={"csrf": csrf}, ssl=tls) as answer:
                assert answer.status == 400
            async with gemeente.get(ack, ssl=tls) as page:
                text = _main(await page.text())
                assert page.status == 200 and "niet meer te downloaden" in text, text
            async with gemeente.post(
                ack, data={"csrf": csrf, "confirm": "yes"}, ssl=tls, allow_redirects=False
            ) as answer:
                assert answer.status == 303
            async with gemeente.get(f"{url}/portal/inbox", ssl=tls) as page:
                html = await page.text()
            assert ids[0] not in html and ids[1] in html
            async with gemeente.get(ack, ssl=tls) as page:
                assert page.status == 404  # no longer waiting


@pytest.mark.slow
async def test_the_sent_list_shows_the_addressees_delivery_and_refusals_in_words(
    setup: Setup, sink: Sink
) -> None:
    url, tls = setup.url, setup.ssl_context()
    sink.fail_next, sink.fail_with = 1, "fo03-client"  # 12345678 refuses it for good
    async with running(setup):
        payload = (SAMPLES / "iwmo" / "wmo301.xml").read_bytes()
        status, sent = await rest(
            setup, "POST", "/api/v1/messages", token=setup.token("0150"), data=payload
        )
        assert status == 202, sent

        async def settled() -> bool:
            _, view = await rest(
                setup, "GET", f"/api/v1/messages/{sent['id']}", token=setup.token()
            )
            states = {d["destination"]: d["state"] for d in view["deliveries"]}
            return states.get("12345678") == "dead" and states.get("CAK") == "delivered"

        await eventually(settled)
        # 0177 sends as 0150: refused (StUF052), listed on 0177's sent page in words
        status, fault = await post_soap(setup, deventer_wmo301(), partner="0177")
        assert status == 500 and fo03_code(fault) == "StUF052"
        client, _ = await portal_session(setup, "0150")
        async with client, client.get(f"{url}/portal/sent", ssl=tls) as page:
            html = await page.text()
        row = re.search(
            rf"<tr>\s*<td[^>]*>[^<]*</td>\s*<td[^>]*><a href=\"/portal/messages/{sent['id']}\">.*?</tr>",
            html,
            re.S,
        )
        assert row, html
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)
        assert cells[5] == "niet afgeleverd; de beheerder is gewaarschuwd", cells  # not CAK's
        other, _ = await portal_session(setup, "0177")
        async with other, other.get(f"{url}/portal/sent", ssl=tls) as page:
            text = _main(await page.text())
        assert "De afzender in het bericht is niet de organisatie waarmee u bent aangemeld" in text
        assert "foutcode StUF052" in text


async def test_a_fault_in_a_page_is_a_page_not_a_traceback(tmp_path: Path) -> None:
    """An unforeseen error in a handler (here one that fails on purpose, on a real server)
    answers the styled 500 page; what failed goes to the log, never into the page."""
    pages = Pages(cast(PortalDeps, None), templates())  # a 500 page reads no dependency

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("secret detail 999990019")

    app = web.Application(middlewares=[hardened, error_pages(pages)])
    app.router.add_get("/portal/broken/{id}", broken)
    async with TestClient(TestServer(app)) as client:
        answer = await client.get("/portal/broken/999990019", headers={"Accept-Language": "en"})
        html = await answer.text()
    assert answer.status == 500 and "<h1>Something went wrong</h1>" in html
    assert "secret detail" not in html and "Traceback" not in html
    assert answer.headers["Content-Security-Policy"].startswith("default-src 'none'")
