"""The portal in a real headless Chromium (Debian's, driven by Playwright): sign-in by token
and by client certificate, upload valid and invalid, inbox download and acknowledge, the
figures page, an operator's replay; axe-core (WCAG 2.1 A/AA rules) in every page; and the
attacks a browser makes possible (CSRF, XSS through file names and Fo03 texts, session
fixation, another partner's pages). Screenshots go to ``$GGK_ARTIFACTS/portal`` (default
``test-artifacts/portal``)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kit.gateway import (
    Setup,
    Sink,
    deventer_wmo301,
    eventually,
    fo03_code,
    hidden_field,
    make_setup,
    portal_session,
    post_soap,
    rest,
    running,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.async_api", reason="playwright not installed")
axe_base = pytest.importorskip(
    "axe_playwright_python.base", reason="axe-playwright-python not installed"
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium (`.ci/run` installs Debian's chromium)"
)

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
ARTIFACTS = Path(os.environ.get("GGK_ARTIFACTS", "test-artifacts")) / "portal"
AXE_RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture
def setup(tmp_path: Path, sink: Sink) -> Setup:
    return make_setup(tmp_path / "gw", sink.port)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox"], headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


async def new_page(
    browser: Any,
    setup: Setup,
    certificate: str | None = None,
    locale: str = "en-GB",
    width: int | None = None,
) -> Any:
    """A fresh browser profile asking for ``locale`` (Accept-Language: the portal's first
    guess), ``width`` CSS pixels wide when given; with ``certificate`` it presents that
    partner's client certificate to the gateway. Any JavaScript dialog fails the test (an
    XSS that ran)."""
    options: dict[str, Any] = {
        "ignore_https_errors": True,
        "accept_downloads": True,
        "locale": locale,
    }
    if width is not None:
        options["viewport"] = {"width": width, "height": 740}
    if certificate:
        crt, key = setup.client_cert(certificate)
        options["client_certificates"] = [{"origin": setup.url, "certPath": crt, "keyPath": key}]
    context = await browser.new_context(**options)
    page = await context.new_page()
    page.dialogs = []
    page.on("dialog", lambda dialog: page.dialogs.append(dialog.message))
    return page


async def accessible(page: Any, name: str) -> None:
    """axe-core in the page: no serious or critical WCAG 2.1 A/AA violation; and a
    screenshot kept."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    await page.evaluate(axe_base.AXE_SCRIPT)
    result = await page.evaluate(
        "rules => axe.run(document, {runOnly: {type: 'tag', values: rules}})", AXE_RULES
    )
    bad = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"{name}: {bad}"
    assert page.dialogs == [], f"{name}: a script ran: {page.dialogs}"


async def sign_in_with_token(page: Any, setup: Setup, partner: str | None) -> None:
    await page.goto(f"{setup.url}/portal/")
    assert page.url.endswith("/portal/signin")
    await page.fill("#token", setup.token(partner))
    await page.click("form:has(#token) button[type=submit]")
    await page.wait_for_load_state()


def write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


@pytest.mark.slow
async def test_a_provider_uploads_and_a_gemeente_downloads(
    setup: Setup, browser: Any, tmp_path: Path
) -> None:
    async with running(setup):
        provider = await new_page(browser, setup)
        await sign_in_with_token(provider, setup, "12345678")
        assert "/portal/inbox" in provider.url
        await accessible(provider, "01-provider-inbox")

        # an invalid message: the report, nothing sent
        await provider.click("text=Upload")
        invalid = (
            (SAMPLES / "ijw" / "jw305.xml")
            .read_bytes()
            .replace(b"<jw305:Geslacht>", b"<jw305:Geslacht>9", 1)
        )
        await provider.set_input_files("#file", str(write(tmp_path, "jw305-fout.xml", invalid)))
        await provider.click("button[value=send]")
        await provider.wait_for_load_state()
        assert "not valid" in await provider.inner_text("main")
        await accessible(provider, "02-upload-invalid")

        # a valid one: checked, wrapped and accepted (Bv03)
        valid = (
            (SAMPLES / "ijw" / "jw305.xml")
            .read_bytes()
            .replace(b"JW305B0001", f"P{uuid.uuid4().hex[:10]}".encode())
        )
        await provider.set_input_files("#file", str(write(tmp_path, "jw305.xml", valid)))
        await provider.click("button[value=send]")
        await provider.wait_for_load_state()
        text = await provider.inner_text("main")
        assert "Accepted (Bv03)" in text and "0175" in text, text
        await accessible(provider, "03-upload-accepted")
        # the same Identificatie again: refused (TR056), and listed with the Fo03 code
        await provider.set_input_files("#file", str(write(tmp_path, "jw305.xml", valid)))
        await provider.click("button[value=send]")
        await provider.wait_for_load_state()
        refusal = await provider.inner_text("main")
        assert "jw305.xml was refused" in refusal and "Error code StUF058" in refusal, refusal
        await provider.click("text=Sent")
        assert "JW305" in await provider.inner_text("main")
        refused = await provider.inner_text("table:has(caption:has-text('refused'))")
        assert "StUF058" in refused, refused
        await accessible(provider, "04-provider-sent")
        await provider.click("a:has-text('JW305')")
        assert "accepted" in await provider.inner_text("main")  # its history
        await accessible(provider, "04b-provider-message")

        # the gemeente signs in with its client certificate and downloads it
        gemeente = await new_page(browser, setup, certificate="0175")
        await gemeente.goto(f"{setup.url}/portal/signin")
        await gemeente.click("text=Sign in with this certificate")
        await gemeente.wait_for_load_state()
        assert "/portal/inbox" in gemeente.url
        assert "JW305" in await gemeente.inner_text("main")
        operator = await new_page(browser, setup)
        await sign_in_with_token(operator, setup, None)
        row = await operator.inner_text("tr:has-text('(0175')")
        assert re.search(r"expires \d{1,2} \w{3} \d{4}", row), row  # seen at the sign-in
        await operator.context.close()
        await accessible(gemeente, "05-gemeente-inbox")
        async with gemeente.expect_download() as waiting:
            await gemeente.click("a:has-text('Download')")
        download = await waiting.value
        envelope = Path(await download.path()).read_bytes()
        assert b"Di01" in envelope and re.fullmatch(
            r"[0-9a-f]{32}\.xml", download.suggested_filename
        )
        # its page shows the contents decoded by the schema, typed (and accessible)
        await gemeente.goto(f"{setup.url}/portal/messages/{download.suggested_filename[:-4]}")
        contents = await gemeente.inner_text("section:has(h2:has-text('Contents of the message'))")
        assert "Sex" in contents and "Start date" in contents, contents  # labels in words
        assert "999990019" not in contents and "Show BSN" in contents  # masked until asked
        await accessible(gemeente, "05b-gemeente-message-contents")
        await gemeente.goto(f"{setup.url}/portal/inbox")
        await gemeente.click("a:has-text('Acknowledge')")  # asks first
        await gemeente.wait_for_load_state()
        assert "can no longer be downloaded" in await gemeente.inner_text("main")
        await accessible(gemeente, "05c-gemeente-acknowledge-confirm")
        await gemeente.click("button:has-text('Yes, acknowledge')")
        await gemeente.wait_for_load_state()
        assert "No messages are waiting" in await gemeente.inner_text("main")

        await gemeente.click("text=Figures")
        assert await gemeente.locator(
            "svg[role=img]"
        ).count() >= 1 or "No figures" in await gemeente.inner_text("main")
        await accessible(gemeente, "06-gemeente-figures")


@pytest.mark.slow
async def test_the_operator_replays_a_dead_letter_and_sees_the_figures(
    setup: Setup, sink: Sink, browser: Any
) -> None:
    sink.fail_next, sink.fail_with = 1, "fo03-client"
    sink.fault_text = "<script>alert('fo03')</script><img src=x onerror=alert(2)>"
    async with running(setup):
        ref = str(uuid.uuid4())
        payload = (
            (SAMPLES / "ijw" / "jw301.xml")
            .read_bytes()
            .replace(b"JW301B0001", f"T{uuid.uuid4().hex[:10]}".encode())
        )
        status, body = await rest(
            setup,
            "POST",
            "/api/v1/messages",
            token=setup.token("0175"),
            data=payload,
            headers={"Idempotency-Key": ref},
        )
        assert status == 202, body

        async def dead() -> bool:
            _, letters = await rest(setup, "GET", "/api/v1/admin/dead-letters", token=setup.token())
            return bool(letters["dead_letters"])

        await eventually(dead)
        operator = await new_page(browser, setup)
        await sign_in_with_token(operator, setup, None)
        assert "/portal/queues" in operator.url
        await accessible(operator, "10-operator-queues")
        await operator.click("text=Dead letters")
        await accessible(operator, "11-operator-dead-letters")  # the Fo03 text is inert
        await operator.click("a:has-text('Replay')")
        await accessible(operator, "12-operator-replay-confirm")
        await operator.click("button:has-text('Replay the dead-lettered deliveries')")
        await operator.wait_for_load_state()
        assert "1 dead-lettered delivery of" in await operator.inner_text("main")
        await eventually(lambda: ref in sink.referenties())
        await operator.click("text=Figures")  # first a gemeente to choose
        await operator.click("a:has-text('(0175)')")
        await operator.wait_for_load_state()
        assert "0175" in await operator.inner_text("table") and "gemeente=0175" in operator.url
        await accessible(operator, "13-operator-figures")

        # the Partners page, and a partner's page with its forms (tokens, certificate)
        await operator.click("nav >> text=Partners")
        await operator.wait_for_load_state()
        assert "Gemeente Deventer" in await operator.inner_text("main")
        await accessible(operator, "13a-operator-partners")
        await operator.click("main >> a:has-text('0150')")
        await operator.wait_for_load_state()
        assert "0150" in await operator.inner_text("h1")
        await accessible(operator, "13b-operator-partner")

        # the audit trail: by referentienummer, then by BSN (never echoed, never in a URL)
        await operator.click("text=Audit")
        await operator.fill("#message", ref)
        await operator.click("button:has-text('Search')")
        await operator.wait_for_load_state()
        found = await operator.inner_text("main")
        assert "accepted" in found and "dead" in found, found
        await accessible(operator, "14-operator-audit")
        await operator.fill("#message", "")
        await operator.fill("#bsn", "999990019")
        await operator.click("button:has-text('Search')")
        await operator.wait_for_load_state()
        assert "accepted" in await operator.inner_text("main")
        assert "999990019" not in await operator.content()
        assert "999990019" not in operator.url
        await operator.fill("#message", ref)
        await operator.click("button:has-text('Search')")
        await operator.wait_for_load_state()
        assert "audit_searched" in await operator.inner_text("main")  # the search is audited

        # partner health: the replayed delivery is the last one to 12345678
        await operator.click("text=Queues")
        row = await operator.inner_text("tr:has-text('(12345678')")
        assert re.search(r"\d\d:\d\d:\d\d", row) and "not seen since start" in row, row


@pytest.mark.slow
async def test_a_file_name_is_text_not_markup(setup: Setup, browser: Any, tmp_path: Path) -> None:
    async with running(setup):
        page = await new_page(browser, setup)
        await sign_in_with_token(page, setup, "12345678")
        await page.goto(f"{setup.url}/portal/upload")
        name = "<img src=x onerror=alert(1)><script>alert(3)</script>.xml"
        path = write(tmp_path, "upload.xml", b"<not-a-message/>")
        await page.set_input_files(
            "#file", files=[{"name": name, "mimeType": "text/xml", "buffer": path.read_bytes()}]
        )
        await page.click("button[value=check]")
        await page.wait_for_load_state()
        assert name in await page.inner_text("main")
        assert await page.locator("main img, main script").count() == 0
        await accessible(page, "20-hostile-file-name")


# --- the attacks a browser makes possible (without a browser: each is one request) ---------


@pytest.mark.slow
async def test_csrf_origin_fixation_and_other_partners_pages(setup: Setup) -> None:
    async with running(setup):
        # a message between two others: 0150 to zorgaanbieder 12345678
        payload = (SAMPLES / "iwmo" / "wmo301.xml").read_bytes()
        status, theirs = await rest(
            setup, "POST", "/api/v1/messages", token=setup.token("0150"), data=payload
        )
        assert status == 202, theirs
        # 0177 claims to be 0150 (StUF052): the refusal is 0177's, not 0150's
        status, fault = await post_soap(setup, deventer_wmo301(), partner="0177")
        assert status == 500 and fo03_code(fault) == "StUF052"
        for partner, listed in (("0150", False), ("0177", True)):
            viewer, _ = await portal_session(setup, partner)
            async with (
                viewer,
                viewer.get(f"{setup.url}/portal/sent", ssl=setup.ssl_context()) as page,
            ):
                assert ("StUF052" in await page.text()) is listed, partner
        client, csrf = await portal_session(setup, "0175")
        url, tls = setup.url, setup.ssl_context()
        async with client:
            # a form without the session's token, or from another site, changes nothing
            for data, headers in (
                ({"csrf": "forged"}, {}),
                ({}, {}),
                ({"csrf": csrf}, {"Origin": "https://evil.example"}),
            ):
                async with client.post(
                    f"{url}/portal/signout",
                    data=data,
                    headers=headers,
                    ssl=tls,
                    allow_redirects=False,
                ) as answer:
                    assert answer.status == 403, (data, headers)
            # another partner's message, an operator page, a provider-only page
            for path, expected in (
                (f"/portal/inbox/{uuid.uuid4().hex}", 404),
                (f"/portal/messages/{uuid.uuid4().hex}", 404),
                (f"/portal/messages/{theirs['id']}", 404),
                (f"/portal/inbox/{theirs['id']}", 404),
                ("/portal/inbox/..%2F..%2Fgateway.toml", 404),
                ("/portal/queues", 403),
                ("/portal/dead-letters", 403),
                (f"/portal/replay/{uuid.uuid4().hex}", 403),
            ):
                async with client.get(f"{url}{path}", ssl=tls, allow_redirects=False) as answer:
                    assert answer.status == expected, path
                    assert answer.headers["Content-Security-Policy"].startswith(
                        "default-src 'none'"
                    )
            async with client.post(
                f"{url}/portal/replay/{uuid.uuid4().hex}",
                data={"csrf": csrf, "confirm": "yes"},
                ssl=tls,
                allow_redirects=False,
            ) as answer:
                assert answer.status == 403
            # 0175's session on a connection presenting 0150's certificate: no session
            async with client.get(
                f"{url}/portal/inbox", ssl=setup.ssl_context("0150"), allow_redirects=False
            ) as answer:
                assert answer.status == 303
            # the session holds; signing out with the token works
            async with client.post(
                f"{url}/portal/signout", data={"csrf": csrf}, ssl=tls, allow_redirects=False
            ) as answer:
                assert answer.status == 303

        # an aanbieder has no figures; nobody unsigned reaches a page
        provider, _ = await portal_session(setup, "12345678")
        async with (
            provider,
            provider.get(f"{url}/portal/figures", ssl=tls, allow_redirects=False) as answer,
        ):
            assert answer.status == 403
        async with (
            aiohttp.ClientSession() as anonymous,
            anonymous.get(f"{url}/portal/inbox", ssl=tls, allow_redirects=False) as answer,
        ):
            assert answer.status == 303 and answer.headers["Location"] == "/portal/signin"


@pytest.mark.slow
async def test_a_planted_cookie_is_never_promoted_and_sign_in_is_rate_limited(
    setup: Setup,
) -> None:
    async with running(setup):
        url, tls = setup.url, setup.ssl_context()
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as client:
            planted = "eyJwIjoiMDE3NSJ9.forged"
            jar.update_cookies({"__Host-ggk-session": planted})
            async with client.get(f"{url}/portal/inbox", ssl=tls, allow_redirects=False) as a:
                assert a.status == 303  # a forged session is no session
            async with client.get(f"{url}/portal/signin", ssl=tls) as page:
                csrf = hidden_field(await page.text(), "csrf")
            async with client.post(
                f"{url}/portal/signin",
                data={"csrf": csrf, "method": "token", "token": setup.token("0175")},
                ssl=tls,
                allow_redirects=False,
            ) as answer:
                minted = answer.cookies["__Host-ggk-session"]
                assert minted.value != planted
                assert minted["secure"] and minted["httponly"] and minted["samesite"] == "Strict"

            statuses = []
            for _ in range(12):
                async with client.get(f"{url}/portal/signin", ssl=tls) as page:
                    csrf = hidden_field(await page.text(), "csrf")
                async with client.post(
                    f"{url}/portal/signin",
                    data={"csrf": csrf, "method": "token", "token": "wrong"},
                    ssl=tls,
                ) as answer:
                    statuses.append(answer.status)
            assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429], statuses
            await asyncio.sleep(0)


@pytest.mark.slow
async def test_the_audit_search_refuses_bad_criteria_without_echoing_a_bsn(setup: Setup) -> None:
    async with running(setup):
        operator, csrf = await portal_session(setup, None)
        async with operator:
            for form, expected in (
                ({}, "Geef ten minste één zoekgegeven."),
                ({"since": "30-11-2026"}, "Vanaf is een datum"),
                ({"bsn": "99999x019"}, "Een BSN bestaat uit negen cijfers."),
            ):
                async with operator.post(
                    f"{setup.url}/portal/audit",
                    data={"csrf": csrf, **form},
                    ssl=setup.ssl_context(),
                ) as page:
                    text = await page.text()
                    assert page.status == 400 and expected in text, (form, text[:300])
                    assert "99999x019" not in text
            # a partner is not the operator
            partner, partner_csrf = await portal_session(setup, "0150")
            async with (
                partner,
                partner.post(
                    f"{setup.url}/portal/audit",
                    data={"csrf": partner_csrf, "message": "x"},
                    ssl=setup.ssl_context(),
                    allow_redirects=False,
                ) as page,
            ):
                assert page.status == 403


# --- signing out ---------------------------------------------------------------------------


@pytest.mark.slow
async def test_signing_out_in_chromium_ends_the_session(setup: Setup, browser: Any) -> None:
    """A ``__Host-`` cookie is deleted only by a Set-Cookie that is Secure as well: without it
    Chromium kept the session, and the partner's pages stayed open after "Sign out"."""
    async with running(setup):
        page = await new_page(browser, setup)
        await sign_in_with_token(page, setup, "0175")
        assert "/portal/inbox" in page.url
        assert any(c["name"] == "__Host-ggk-session" for c in await page.context.cookies())
        await page.click("form.signout button[type=submit]")
        await page.wait_for_load_state()
        assert page.url.endswith("/portal/signin")
        assert not [c for c in await page.context.cookies() if c["name"] == "__Host-ggk-session"]
        for path in ("/portal/inbox", "/portal/sent", "/portal/upload"):
            await page.goto(f"{setup.url}{path}")
            assert page.url.endswith("/portal/signin"), path
            assert "Signed in as" not in await page.inner_text("body"), path


@pytest.mark.slow
async def test_a_copied_session_cookie_dies_at_sign_out_even_after_a_restart(
    setup: Setup,
) -> None:
    url, tls = setup.url, setup.ssl_context()

    async def inbox_with(cookie: str) -> int:
        async with (
            aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as thief,
            thief.get(
                f"{url}/portal/inbox",
                headers={"Cookie": f"__Host-ggk-session={cookie}"},
                ssl=tls,
                allow_redirects=False,
            ) as answer,
        ):
            return answer.status

    async with running(setup):
        client, csrf = await portal_session(setup, "0175")
        other, _ = await portal_session(setup, "0175")  # the same partner, another browser
        async with client, other:
            copied = _session_cookie(client)
            assert await inbox_with(copied) == 200  # a copy works while the session lives
            async with client.post(
                f"{url}/portal/signout", data={"csrf": csrf}, ssl=tls, allow_redirects=False
            ) as answer:
                assert answer.status == 303
                deleted = answer.cookies["__Host-ggk-session"]
                assert deleted["secure"] and deleted["path"] == "/" and deleted["max-age"] == "0"
            assert await inbox_with(copied) == 303
            still = _session_cookie(other)
            assert await inbox_with(still) == 200  # only the session signed out
    async with running(setup):  # the revocation is stored, not only remembered
        assert await inbox_with(copied) == 303
        assert await inbox_with(still) == 200


def _session_cookie(client: aiohttp.ClientSession) -> str:
    found = [c.value for c in client.cookie_jar if c.key == "__Host-ggk-session"]
    assert found
    return found[0]


# --- every page, at phone and desktop width, in Dutch and English; the keyboard alone ------

WIDTHS = (360, 1280)
LOCALES = {"nl": "nl-NL", "en": "en-GB"}


async def fits(page: Any, name: str) -> None:
    """No sideways scrolling of the page itself (a wide table scrolls in its own box)."""
    overflow = await page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{name}: the page scrolls sideways by {overflow}px"


async def _the_day_of_a_gemeente_and_an_operator(setup: Setup, sink: Sink) -> tuple[str, str]:
    """Something on every page: a message in 0175's inbox (from 12345678) and one 0175 sent
    that 12345678 refused for good (a dead letter); a refusal of 0177. The inbox message's
    id and the dead one's."""
    payload = (
        (SAMPLES / "ijw" / "jw305.xml")
        .read_bytes()
        .replace(b"JW305B0001", f"P{uuid.uuid4().hex[:10]}".encode())
    )
    status, waiting = await rest(
        setup, "POST", "/api/v1/messages", token=setup.token("12345678"), data=payload
    )
    assert status == 202, waiting
    sink.fail_next, sink.fail_with = 1, "fo03-client"
    dead_payload = (
        (SAMPLES / "ijw" / "jw301.xml")
        .read_bytes()
        .replace(b"JW301B0001", f"T{uuid.uuid4().hex[:10]}".encode())
    )
    status, dead = await rest(
        setup, "POST", "/api/v1/messages", token=setup.token("0175"), data=dead_payload
    )
    assert status == 202, dead

    async def dead_lettered() -> bool:
        _, letters = await rest(setup, "GET", "/api/v1/admin/dead-letters", token=setup.token())
        return bool(letters["dead_letters"])

    await eventually(dead_lettered)
    status, fault = await post_soap(setup, deventer_wmo301(), partner="0177")
    assert status == 500 and fo03_code(fault) == "StUF052"
    return waiting["id"], dead["id"]


@pytest.mark.slow
async def test_every_page_is_accessible_and_fits_at_360px_in_dutch_and_english(
    setup: Setup, sink: Sink, browser: Any, tmp_path: Path
) -> None:
    async with running(setup):
        waiting, dead = await _the_day_of_a_gemeente_and_an_operator(setup, sink)
        invalid = write(tmp_path, "wmo301-fout.xml", b"<not-a-message/>")
        partner_pages = {
            "inbox": "/portal/inbox",
            "message": f"/portal/messages/{waiting}",
            "acknowledge": f"/portal/inbox/{waiting}/ack",
            "sent": "/portal/sent",
            "upload": "/portal/upload",
            "overdue": "/portal/overdue",
            "figures": "/portal/figures",
            "not-found": "/portal/no-such-page",
        }
        operator_pages = {
            "queues": "/portal/queues",
            "dead-letters": "/portal/dead-letters",
            "replay": f"/portal/replay/{dead}",
            "audit": "/portal/audit",
            "figures": "/portal/figures?gemeente=0175",
            "not-for-you": "/portal/inbox",
        }
        for lang, locale in LOCALES.items():
            for width in WIDTHS:
                tag = f"{lang}-{width}"
                signin = await new_page(browser, setup, locale=locale, width=width)
                await signin.goto(f"{setup.url}/portal/signin")
                assert await signin.get_attribute("html", "lang") == lang
                await accessible(signin, f"30-signin-{tag}")
                await fits(signin, f"signin {tag}")
                await signin.context.close()
                for who, pages in (("0175", partner_pages), (None, operator_pages)):
                    page = await new_page(browser, setup, locale=locale, width=width)
                    await sign_in_with_token(page, setup, who)
                    for name, path in pages.items():
                        await page.goto(f"{setup.url}{path}")
                        label = f"31-{who or 'operator'}-{name}-{tag}"
                        assert await page.get_attribute("html", "lang") == lang, label
                        await accessible(page, label)
                        await fits(page, label)
                    if who is not None:  # the upload's report, and the sent list's refusals
                        await page.goto(f"{setup.url}/portal/upload")
                        await page.set_input_files("#file", str(invalid))
                        await page.click("button[value=check]")
                        await page.wait_for_load_state()
                        await accessible(page, f"31-0175-upload-report-{tag}")
                        await fits(page, f"upload report {tag}")
                    else:  # the audit trail's results
                        await page.goto(f"{setup.url}/portal/audit")
                        await page.fill("#partner", "0175")
                        await page.click("main button[type=submit]")
                        await page.wait_for_load_state()
                        await accessible(page, f"31-operator-audit-results-{tag}")
                        await fits(page, f"audit results {tag}")
                    await page.context.close()
            other = await new_page(browser, setup, locale=locale, width=360)
            await sign_in_with_token(other, setup, "0177")
            await other.goto(f"{setup.url}/portal/sent")
            await accessible(other, f"32-0177-refused-{lang}-360")
            await fits(other, f"refused {lang}")
            await other.context.close()


async def tab_to(page: Any, selector: str, limit: int = 80) -> None:
    """Press Tab until the focused element matches ``selector`` (the keyboard's way there)."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await page.evaluate(
            "s => document.activeElement && document.activeElement.matches(s)", selector
        ):
            return
    raise AssertionError(f"Tab never reached {selector} on {page.url}")


async def enter(page: Any) -> None:
    """Press Enter on the focused link or button and wait for the page it leads to."""
    async with page.expect_navigation():
        await page.keyboard.press("Enter")


@pytest.mark.slow
async def test_sign_in_read_and_acknowledge_with_the_keyboard_alone(
    setup: Setup, sink: Sink, browser: Any
) -> None:
    async with running(setup):
        waiting, _ = await _the_day_of_a_gemeente_and_an_operator(setup, sink)
        page = await new_page(browser, setup, locale="nl-NL", width=360)
        await page.goto(f"{setup.url}/portal/signin")
        await tab_to(page, "a[hreflang=en]")  # the language switch, by keyboard
        await enter(page)
        assert await page.get_attribute("html", "lang") == "en"
        await tab_to(page, "a[hreflang=nl]")
        await enter(page)
        assert await page.get_attribute("html", "lang") == "nl"
        await tab_to(page, "#token")
        await page.keyboard.type(setup.token("0175"))
        await enter(page)
        assert page.url.endswith("/portal/inbox"), await page.inner_text("main")
        await tab_to(page, f"a[href='/portal/messages/{waiting}']")
        await enter(page)
        assert "Inhoud van het bericht" in await page.inner_text("main")
        await page.go_back()
        await tab_to(page, f"a[href='/portal/inbox/{waiting}/ack']")
        await enter(page)
        await tab_to(page, "main button[type=submit]")
        await enter(page)
        assert page.url.endswith("/portal/inbox")
        assert "Er wachten geen berichten op u." in await page.inner_text("main")
        await tab_to(page, "form.signout button")
        await enter(page)
        assert page.url.endswith("/portal/signin")


@pytest.mark.slow
async def test_a_message_reads_as_a_document_and_the_archive_finds_it(
    setup: Setup, browser: Any
) -> None:
    """Issue 30.2 and 30.5 in Chromium: a declaratie read as a document (BSN masked, shown on
    request), printed without the portal around it, and found again in the archive after it
    was acknowledged; axe and no sideways scroll at 360 px and on a desktop."""
    async with running(setup):
        ids = {}
        for name in ("wmo323", "wmo305"):
            status, sent = await rest(
                setup,
                "POST",
                "/api/v1/messages",
                token=setup.token("12345678"),
                data=(SAMPLES / "iwmo" / f"{name}.xml").read_bytes(),
            )
            assert status == 202, sent
            ids[name] = sent["id"]
        for width in WIDTHS:
            page = await new_page(browser, setup, locale="nl-NL", width=width)
            await sign_in_with_token(page, setup, "0150")
            await page.goto(f"{setup.url}/portal/messages/{ids['wmo323']}")
            main = (await page.inner_text("main")).replace("\xa0", " ")
            assert "WMO323 · Declaratie" in main and "€ 1.325,00" in main, main
            assert "Begeleiding (02)" in main and "999990019" not in main
            await accessible(page, f"40-message-document-{width}")
            await fits(page, f"message document {width}")
            await page.click("button:has-text('Toon BSN')")
            await page.wait_for_load_state()
            main = await page.inner_text("main")
            assert "999990019" in main and "vastgelegd" in main
            await accessible(page, f"41-message-bsn-shown-{width}")
            await page.locator("h4:has-text('Cliënten')").scroll_into_view_if_needed()
            await page.screenshot(path=str(ARTIFACTS / f"41b-message-client-{width}.png"))
            await fits(page, f"message with BSN {width}")
            await page.emulate_media(media="print")
            assert not await page.is_visible("header")
            assert not await page.is_visible("form")
            await page.screenshot(
                path=str(ARTIFACTS / f"42-message-print-{width}.png"), full_page=True
            )
            await page.emulate_media(media="screen")
            if width == WIDTHS[0]:  # acknowledge the declaratie once
                await page.goto(f"{setup.url}/portal/inbox/{ids['wmo323']}/ack")
                await page.click("main button[type=submit]")
                await page.wait_for_load_state()
            await page.goto(f"{setup.url}/portal/archive?stand=delivered")
            main = await page.inner_text("main")
            assert "WMO323 · Declaratie" in main and "WMO305" not in main.split("Zoeken")[-1]
            await accessible(page, f"43-archive-{width}")
            await fits(page, f"archive {width}")
            await page.context.close()
