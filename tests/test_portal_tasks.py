"""A care provider's tasks in the portal (issue 30 goal 3): confirm a toewijzing (its 302
composed from it), start and stop zorg (305, 307), declare a month (323), ask for a change
(317) or a toewijzing (315). Over HTTP: who may compose from which toewijzing, CSRF, each
field's problem beside it, the retour linked to its heenbericht; in Debian's Chromium
(Playwright): each task end to end at 360 px, axe on every page, the gemeente's inbox showing
the message, and, for the aanbieder's own messages, the gemeente's answer coming back (its
real retour or 325 sent over REST, built from the message it received): in the clerk's
inbox, on its readable page as the answer to the clerk's message, and as the sent message's
retour state. Screenshots go to ``$GGK_ARTIFACTS/portal`` (docs/portal.md)."""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kit.gateway import (
    Setup,
    Sink,
    jw301_payload,
    make_setup,
    portal_session,
    rest,
    running,
    with_delivery,
)
from kit.retours import declaratie_antwoord, payload_of, retour_for
from tests import test_portal as portal_ui

AANBIEDER = "12345678"
GEMEENTE = "0175"
NAMES = {
    "JW306": "Retour start",
    "JW308": "Retour stop",
    "JW316": "Retour verzoek om toewijzing",
    "JW318": "Retour verzoek om wijziging",
}
AKKOORD = "0200 Geen opmerking over deze berichtklasse."
"""How the clerk's Verzonden page names a retour and its retourcode 0200."""


@pytest.fixture
def setup(tmp_path: Path, sink: Sink) -> Setup:
    """The demo, with the aanbieder reading its messages in the portal (its inbox)."""
    made = make_setup(tmp_path / "gw", sink.port)
    partners = made.directory / "partners.toml"
    partners.write_text(with_delivery(partners.read_text(), AANBIEDER, 'adapter = "inbox"'))
    return made


async def a_toewijzing(setup: Setup) -> str:
    """Gemeente 0175 sends the aanbieder a JW301 over the API; its id in the aanbieder's
    inbox."""
    identificatie = f"T{uuid.uuid4().hex[:11]}"
    status, body = await rest(
        setup,
        "POST",
        "/api/v1/messages",
        token=setup.token(GEMEENTE),
        data=jw301_payload(AANBIEDER, identificatie),
    )
    assert status == 202, body
    status, inbox = await rest(setup, "GET", "/api/v1/inbox", token=setup.token(AANBIEDER))
    assert status == 200, inbox
    return str(inbox["messages"][-1]["id"])


async def gemeente_inbox(setup: Setup) -> list[dict[str, Any]]:
    status, inbox = await rest(setup, "GET", "/api/v1/inbox", token=setup.token(GEMEENTE))
    assert status == 200, inbox
    return list(inbox["messages"])


async def the_gemeente_answers(setup: Setup, functie: str) -> tuple[str, str]:
    """Gemeente 0175 answers the clerk's ``functie`` message waiting in its inbox over REST,
    as its own software would: the retour (or, for a 323, the 325 granting it) built from the
    message it received, with its own Identificatie. Asserts it is accepted (202) and, for a
    retour, linked to that heenbericht. Returns (the clerk's message id, the answer's id)."""
    [heen] = [m for m in await gemeente_inbox(setup) if m["functie"] == functie]
    token = setup.token(GEMEENTE)
    status, envelope = await rest(setup, "GET", f"/api/v1/inbox/{heen['id']}", token=token)
    assert status == 200, envelope
    received = payload_of(envelope)
    identificatie = f"G{uuid.uuid4().hex[:11].upper()}"
    today = datetime.date.today().isoformat()
    answer = (declaratie_antwoord if functie.endswith("323") else retour_for)(
        received, identificatie, today
    )
    status, accepted = await rest(setup, "POST", "/api/v1/messages", token=token, data=answer)
    assert status == 202, accepted
    status, view = await rest(setup, "GET", f"/api/v1/messages/{accepted['id']}", token=token)
    assert status == 200, view
    # linked to the clerk's message: a retour by its BerichtIdentificatie, a 325 by its
    # DeclaratieIdentificatie
    assert view["heen_id"] == heen["id"] and not view["unlinked"], view
    return str(heen["id"]), str(accepted["id"])


async def retour_state(page: Any, setup: Setup, message_id: str) -> str:
    """What the clerk's Verzonden page says of the retour to its message ``message_id``."""
    await page.goto(f"{setup.url}/portal/sent")
    row = f"tr:has(a[href='/portal/messages/{message_id}'])"
    return str(await page.inner_text(f"{row} td[data-label='Retour']")).strip()


async def the_clerk_reads_the_answer(
    page: Any, setup: Setup, heen_id: str, answer_id: str, functie: str, shot: str
) -> None:
    """The clerk's inbox lists the answer; its readable page opens and names the clerk's
    message as the one it answers (its conversation); axe and a screenshot on both pages."""
    await page.goto(f"{setup.url}/portal/inbox")
    link = f"main a[href='/portal/messages/{answer_id}']"
    assert functie in await page.inner_text(link)
    await check(page, f"{shot}-postvak-in")
    await page.click(link)
    await page.wait_for_load_state()
    assert functie in await page.inner_text("h1")
    conversation = "table:has(#conversation-caption)"
    assert await page.locator(f"{conversation} a[href='/portal/messages/{heen_id}']").count() == 1
    await check(page, f"{shot}-bericht")


def error_beside(html: str, field: str) -> str:
    """The problem texts shown beside ``field`` (``<p id="{field}-fout">``), joined."""
    return " ".join(re.findall(rf'<p class="error" id="{field}-fout">([^<]*)</p>', html))


@pytest.mark.slow
async def test_a_toewijzing_is_confirmed_by_its_own_aanbieder_only(setup: Setup) -> None:
    async with running(setup):
        toewijzing = await a_toewijzing(setup)
        task = f"{setup.url}/portal/taken/{toewijzing}/bevestigen"
        gemeente, _ = await portal_session(setup, GEMEENTE)
        aanbieder, csrf = await portal_session(setup, AANBIEDER)
        try:
            # the gemeente (not its addressee) gets the same 404 as for no message at all
            async with gemeente.get(task, ssl=setup.ssl_context()) as page:
                assert page.status == 404
            async with aanbieder.get(
                f"{setup.url}/portal/taken/{'0' * 32}/bevestigen", ssl=setup.ssl_context()
            ) as page:
                assert page.status == 404
            async with aanbieder.get(f"{setup.url}/portal/inbox", ssl=setup.ssl_context()) as page:
                assert f'href="/portal/taken/{toewijzing}/bevestigen"' in await page.text()
            async with aanbieder.get(task, ssl=setup.ssl_context()) as page:
                html = await page.text()
                assert page.status == 200, html
            assert "Toewijzing bevestigen" in html and "HM Jansen" in html
            assert "999990019" not in html  # the form never shows the BSN
            assert re.search(
                r'id="identificatie"[^>]* value="R[0-9A-F]{11}"|value="R[0-9A-F]{11}"', html
            )
            # without the session's CSRF token: refused, nothing sent
            async with aanbieder.post(
                task,
                data={"identificatie": "R1", "dagtekening": "2026-12-01"},
                ssl=setup.ssl_context(),
            ) as page:
                assert page.status == 403
            # each field's problem beside it, in Dutch; nothing sent
            async with aanbieder.post(
                task,
                data={"csrf": csrf, "identificatie": "a b<c>", "dagtekening": "2026-13-01"},
                ssl=setup.ssl_context(),
            ) as page:
                html = await page.text()
                assert page.status == 422, html
            assert "geen spaties" in error_beside(html, "identificatie")
            assert "JJJJ-MM-DD" in error_beside(html, "dagtekening")
            assert 'aria-invalid="true"' in html and "<c>" not in html
            assert not await gemeente_inbox(setup)
            # a good one: composed, validated, accepted, linked to the toewijzing
            ident = f"R{uuid.uuid4().hex[:11].upper()}"
            form = {"csrf": csrf, "identificatie": ident, "dagtekening": "2026-12-01"}
            async with aanbieder.post(task, data=form, ssl=setup.ssl_context()) as page:
                html = await page.text()
                assert page.status == 200, html
            assert "is aangenomen (Bv03)" in html, html
            [retour] = await gemeente_inbox(setup)
            assert retour["functie"] == "JW302" and retour["zender"] == AANBIEDER
            assert not retour.get("unlinked"), retour
            # confirmed once only: the gateway does not check a retour's Identificatie for
            # reuse (TR056 is for heenberichten), so the portal refuses a second 302
            async with aanbieder.post(task, data=form, ssl=setup.ssl_context()) as page:
                assert page.status == 409
                assert "al bevestigd" in await page.text()
            async with aanbieder.get(task, ssl=setup.ssl_context()) as page:
                assert page.status == 409
            assert len(await gemeente_inbox(setup)) == 1
        finally:
            await gemeente.close()
            await aanbieder.close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with portal_ui.playwright_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=portal_ui.CHROMIUM, args=["--no-sandbox"], headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


async def retype(page: Any, selector: str, text: str) -> None:
    """Go to a field by Tab, clear it and type ``text`` (the keyboard alone)."""
    await portal_ui.tab_to(page, selector)
    await page.keyboard.press("Control+A")
    await page.keyboard.press("Delete")
    await page.keyboard.type(text)


@pytest.mark.slow
@pytest.mark.skipif(portal_ui.CHROMIUM is None, reason="no Chromium")
async def test_a_clerk_confirms_a_toewijzing_by_keyboard_at_360px(
    setup: Setup, browser: Any
) -> None:
    async with running(setup):
        toewijzing = await a_toewijzing(setup)
        page = await portal_ui.new_page(browser, setup, locale="nl-NL", width=360)
        await page.goto(f"{setup.url}/portal/signin")
        await portal_ui.tab_to(page, "#token")
        await page.keyboard.type(setup.token(AANBIEDER))
        await portal_ui.enter(page)
        assert page.url.endswith("/portal/inbox"), await page.inner_text("main")
        await check(page, "40-taak-postvak-in")
        await portal_ui.tab_to(page, f"a[href='/portal/taken/{toewijzing}/bevestigen']")
        await portal_ui.enter(page)
        main = await page.inner_text("main")
        assert "Toewijzing bevestigen" in main and "HM Jansen" in main, main
        assert re.fullmatch(r"R[0-9A-F]{11}", await page.input_value("#identificatie"))
        await check(page, "41-taak-302-formulier")
        # a date that is none: the problem beside its field, the form kept
        await retype(page, "#dagtekening", "2026-13-01")
        await portal_ui.tab_to(page, "main button[type=submit]")
        await portal_ui.enter(page)
        assert "JJJJ-MM-DD" in await page.inner_text("#dagtekening-fout")
        assert await page.get_attribute("#dagtekening", "aria-invalid") == "true"
        await check(page, "42-taak-302-fout-bij-veld")
        await retype(page, "#dagtekening", "2026-12-01")
        await portal_ui.tab_to(page, "main button[type=submit]")
        await portal_ui.enter(page)
        sent = await page.inner_text("main")
        assert "is aangenomen (Bv03)" in sent and "0175" in sent, sent
        await check(page, "43-taak-302-verstuurd")
        await page.context.close()

        # the gemeente's inbox shows the retour, linked to its toewijzing
        gemeente = await portal_ui.new_page(browser, setup, locale="nl-NL", width=360)
        await portal_ui.sign_in_with_token(gemeente, setup, GEMEENTE)
        assert "JW302" in await gemeente.inner_text("main")
        await check(gemeente, "44-taak-302-bij-de-gemeente")
        await gemeente.click("a:has-text('JW302')")
        assert "JW301" in await gemeente.inner_text("main")  # its conversation
        await gemeente.context.close()


@pytest.mark.slow
@pytest.mark.skipif(portal_ui.CHROMIUM is None, reason="no Chromium")
async def test_the_task_form_is_accessible_in_english_at_1280px(setup: Setup, browser: Any) -> None:
    async with running(setup):
        toewijzing = await a_toewijzing(setup)
        page = await portal_ui.new_page(browser, setup, locale="en-GB", width=1280)
        await portal_ui.sign_in_with_token(page, setup, AANBIEDER)
        await page.goto(f"{setup.url}/portal/taken/{toewijzing}/bevestigen")
        assert "Confirm" in await page.inner_text("h1")
        await check(page, "45-task-302-form-en-1280")
        await page.context.close()


async def check(page: Any, name: str) -> None:
    """axe 0 serious/critical, a screenshot kept, and no sideways scroll."""
    await portal_ui.accessible(page, name)
    await portal_ui.fits(page, name)


async def post_form(client: Any, setup: Setup, url: str, form: dict[str, str]) -> tuple[int, str]:
    async with client.post(url, data=form, ssl=setup.ssl_context()) as page:
        return page.status, await page.text()


@pytest.mark.slow
async def test_zorg_starts_and_stops_from_a_toewijzing(setup: Setup) -> None:
    async with running(setup):
        toewijzing = await a_toewijzing(setup)
        start = f"{setup.url}/portal/taken/{toewijzing}/start"
        stop = f"{setup.url}/portal/taken/{toewijzing}/stop"
        gemeente, _ = await portal_session(setup, GEMEENTE)
        aanbieder, csrf = await portal_session(setup, AANBIEDER)
        try:
            for url in (start, stop):  # the gemeente is not the toewijzing's addressee
                async with gemeente.get(url, ssl=setup.ssl_context()) as page:
                    assert page.status == 404
            async with aanbieder.get(start, ssl=setup.ssl_context()) as page:
                html = await page.text()
                assert page.status == 200, html
            assert 'name="begindatum-0" value="2026-10-05"' in html  # the toewijzing's
            assert "999990019" not in html
            base = {"csrf": csrf, "identificatie": "", "dagtekening": "2026-10-08"}
            ident = f"S{uuid.uuid4().hex[:11].upper()}"
            status, html = await post_form(
                aanbieder,
                setup,
                start,
                {**base, "identificatie": ident, "begindatum-0": "2026-09-01"},
            )
            assert status == 422 and "buiten de toewijzing" in error_beside(html, "begindatum-0")
            status, html = await post_form(
                aanbieder, setup, start, {**base, "identificatie": ident}
            )
            assert status == 422 and "ten minste één" in error_beside(html, "begindatum-0")
            status, html = await post_form(
                aanbieder,
                setup,
                start,
                {**base, "identificatie": ident, "begindatum-0": "2026-10-07"},
            )
            assert status == 200 and "is aangenomen (Bv03)" in html, html
            assert [m["functie"] for m in await gemeente_inbox(setup)] == ["JW305"]
            # the same Identificatie again: TR056 refuses it, shown beside its field
            status, html = await post_form(
                aanbieder,
                setup,
                start,
                {**base, "identificatie": ident, "begindatum-0": "2026-10-07"},
            )
            assert status >= 400 and error_beside(html, "identificatie"), html

            async with aanbieder.get(stop, ssl=setup.ssl_context()) as page:
                html = await page.text()
                assert page.status == 200, html
            assert '<option value="02">02 · ' in html
            ident = f"E{uuid.uuid4().hex[:11].upper()}"
            stopping = {
                **base,
                "identificatie": ident,
                "dagtekening": "2026-12-01",
                "begindatum-0": "2026-10-07",
                "einddatum-0": "2026-11-30",
            }
            status, html = await post_form(aanbieder, setup, stop, stopping)
            assert status == 422 and "reden" in error_beside(html, "reden-0"), html
            status, html = await post_form(
                aanbieder, setup, stop, {**stopping, "einddatum-0": "2026-10-01", "reden-0": "02"}
            )
            assert status == 422 and "vóór de begindatum" in error_beside(html, "einddatum-0")
            status, html = await post_form(aanbieder, setup, stop, {**stopping, "reden-0": "02"})
            assert status == 200 and "is aangenomen (Bv03)" in html, html
            assert [m["functie"] for m in await gemeente_inbox(setup)] == ["JW305", "JW307"]
        finally:
            await gemeente.close()
            await aanbieder.close()


@pytest.mark.slow
@pytest.mark.skipif(portal_ui.CHROMIUM is None, reason="no Chromium")
async def test_a_clerk_starts_and_stops_zorg_in_chromium_at_360px(
    setup: Setup, browser: Any
) -> None:
    async with running(setup):
        toewijzing = await a_toewijzing(setup)
        page = await portal_ui.new_page(browser, setup, locale="nl-NL", width=360)
        await portal_ui.sign_in_with_token(page, setup, AANBIEDER)
        await page.click(f"a[href='/portal/taken/{toewijzing}/start']")
        await page.wait_for_load_state()
        assert await page.input_value("#begindatum-0") == "2026-10-05"
        await check(page, "46-taak-305-formulier")
        await page.fill("#begindatum-0", "2026-09-01")
        await page.fill("#begindatum-1", "")
        await page.click("main button[type=submit]")
        await page.wait_for_load_state()
        assert "buiten de toewijzing" in await page.inner_text("#begindatum-0-fout")
        await check(page, "47-taak-305-fout-bij-veld")
        await page.fill("#begindatum-0", "2026-10-07")
        await page.click("main button[type=submit]")
        await page.wait_for_load_state()
        assert "is aangenomen (Bv03)" in await page.inner_text("main")
        await check(page, "48-taak-305-verstuurd")

        await page.goto(f"{setup.url}/portal/inbox")
        await page.click(f"a[href='/portal/taken/{toewijzing}/stop']")
        await page.wait_for_load_state()
        await check(page, "49-taak-307-formulier")
        await page.fill("#einddatum-0", "2026-11-30")
        await page.select_option("#reden-0", "02")
        await page.click("main button[type=submit]")
        await page.wait_for_load_state()
        assert "is aangenomen (Bv03)" in await page.inner_text("main")

        gemeente = await portal_ui.new_page(browser, setup, locale="nl-NL", width=360)
        await portal_ui.sign_in_with_token(gemeente, setup, GEMEENTE)
        inbox = await gemeente.inner_text("main")
        assert "JW305" in inbox and "JW307" in inbox, inbox
        await check(gemeente, "50-taak-305-307-bij-de-gemeente")
        await gemeente.context.close()

        # no answer yet: the clerk's Verzonden page shows no retour for either message
        sent = {m["functie"]: str(m["id"]) for m in await gemeente_inbox(setup)}
        for functie in ("JW305", "JW307"):
            assert await retour_state(page, setup, sent[functie]) == "-"
        # the gemeente's software answers both; each comes back to the clerk
        for functie, answer, shot in (
            ("JW305", "JW306", "60-retour-306"),
            ("JW307", "JW308", "61-retour-308"),
        ):
            heen_id, answer_id = await the_gemeente_answers(setup, functie)
            await the_clerk_reads_the_answer(page, setup, heen_id, answer_id, answer, shot)
            assert (
                await retour_state(page, setup, heen_id) == f"{answer} · {NAMES[answer]}\n{AKKOORD}"
            )
        await check(page, "62-retour-306-308-verzonden")
        await page.context.close()


@pytest.mark.slow
async def test_a_declaratie_over_a_month_from_two_toewijzingen(setup: Setup) -> None:
    async with running(setup):
        first = await a_toewijzing(setup)
        await a_toewijzing(setup)  # a second one of the same gemeente: on the same form
        url = f"{setup.url}/portal/taken/{first}/declareren"
        gemeente, _ = await portal_session(setup, GEMEENTE)
        aanbieder, csrf = await portal_session(setup, AANBIEDER)
        try:
            async with gemeente.get(url, ssl=setup.ssl_context()) as page:
                assert page.status == 404
            async with aanbieder.get(url, ssl=setup.ssl_context()) as page:
                html = await page.text()
                assert page.status == 200, html
            assert 'id="volume-3"' in html and 'name="code-0" value="45A48"' in html
            assert "999990019" not in html
            form = {
                "csrf": csrf,
                "identificatie": f"D{uuid.uuid4().hex[:11].upper()}",
                "nummer": f"N{uuid.uuid4().hex[:11].upper()}",
                "maand": "2026-11",
                "dagtekening": "2026-12-03",
                "volume-0": "16",
                "tarief-0": "62,50",
                "code-0": "45A48",
                "volume-1": "450",
                "code-1": "",
                "volume-2": "2",
                "tarief-2": "62,50",
                "code-2": "45A48",
            }
            status, html = await post_form(aanbieder, setup, url, form)
            assert status == 422, html
            assert "productcode" in error_beside(html, "code-1")
            status, html = await post_form(
                aanbieder, setup, url, {**form, "maand": "2026-13", "code-1": "43A11"}
            )
            assert status == 422 and "JJJJ-MM" in error_beside(html, "maand")
            # the same product of the same client twice in one month: the rules' finding,
            # beside the row it concerns
            status, html = await post_form(aanbieder, setup, url, {**form, "code-1": "43A11"})
            assert status == 422 and "second debit" in error_beside(html, "volume-2"), html
            status, html = await post_form(
                aanbieder, setup, url, {**form, "code-1": "43A11", "volume-2": ""}
            )
            assert status == 200 and "is aangenomen (Bv03)" in html, html
            [declaratie] = await gemeente_inbox(setup)
            assert declaratie["functie"] == "JW323"
        finally:
            await gemeente.close()
            await aanbieder.close()


@pytest.mark.slow
@pytest.mark.skipif(portal_ui.CHROMIUM is None, reason="no Chromium")
async def test_a_clerk_declares_a_month_in_chromium_at_360px(setup: Setup, browser: Any) -> None:
    async with running(setup):
        toewijzing = await a_toewijzing(setup)
        page = await portal_ui.new_page(browser, setup, locale="nl-NL", width=360)
        await portal_ui.sign_in_with_token(page, setup, AANBIEDER)
        await page.click(f"a[href='/portal/taken/{toewijzing}/declareren']")
        await page.wait_for_load_state()
        await page.fill("#maand", "2026-11")
        await page.fill("#volume-0", "16")
        await page.fill("#tarief-0", "62,50")
        await page.fill("#volume-1", "450,00")
        await check(page, "51-taak-323-formulier")
        await page.click("main button[type=submit]")
        await page.wait_for_load_state()
        assert "productcode" in await page.inner_text("#code-1-fout")
        await check(page, "52-taak-323-fout-bij-veld")
        await page.fill("#code-1", "43A11")
        await page.click("main button[type=submit]")
        await page.wait_for_load_state()
        assert "is aangenomen (Bv03)" in await page.inner_text("main")
        await check(page, "53-taak-323-verstuurd")
        gemeente = await portal_ui.new_page(browser, setup, locale="nl-NL", width=360)
        await portal_ui.sign_in_with_token(gemeente, setup, GEMEENTE)
        assert "JW323" in await gemeente.inner_text("main")
        await gemeente.context.close()

        [declaratie] = [str(m["id"]) for m in await gemeente_inbox(setup)]
        assert await retour_state(page, setup, declaratie) == "-"
        # the gemeente's software grants the declaratie (325); the clerk reads the answer
        heen_id, answer_id = await the_gemeente_answers(setup, "JW323")
        await the_clerk_reads_the_answer(
            page, setup, heen_id, answer_id, "JW325", "63-antwoord-325"
        )
        assert await retour_state(page, setup, heen_id) == (
            f"JW325 · Declaratie-antwoord\n{AKKOORD}\n8001 Declaratie is volledig toegewezen."
        )
        await page.context.close()


@pytest.mark.slow
async def test_a_change_of_a_toewijzing_is_asked_for(setup: Setup) -> None:
    async with running(setup):
        toewijzing = await a_toewijzing(setup)
        url = f"{setup.url}/portal/taken/{toewijzing}/wijzigen"
        gemeente, _ = await portal_session(setup, GEMEENTE)
        aanbieder, csrf = await portal_session(setup, AANBIEDER)
        try:
            async with gemeente.get(url, ssl=setup.ssl_context()) as page:
                assert page.status == 404
            async with aanbieder.get(url, ssl=setup.ssl_context()) as page:
                html = await page.text()
                assert page.status == 200, html
            assert 'name="volume-0" value="4"' in html and 'name="budget-1" value="2400,00"' in html
            assert '<option value="1">1 · ' in html and "999990019" not in html
            form = {
                "csrf": csrf,
                "identificatie": f"V{uuid.uuid4().hex[:11].upper()}",
                "referentie": "VOW-2026-0007",
                "dagtekening": "2026-12-03",
                "reden": "",
                "ingang-0": "2026-12-01",
                "einde-0": "2027-10-04",
                "volume-0": "6",
                "ingang-1": "",
                "einde-1": "2027-04-04",
                "budget-1": "2400,00",
            }
            status, html = await post_form(aanbieder, setup, url, form)
            assert status == 422 and "reden" in error_beside(html, "reden")
            # a budget without an einddatum: the rule's finding (CD075) beside the row
            status, html = await post_form(
                aanbieder,
                setup,
                url,
                {**form, "reden": "1", "ingang-1": "2026-12-01", "einde-1": ""},
            )
            assert status == 422 and "Einddatum is required" in error_beside(html, "ingang-1")
            status, html = await post_form(aanbieder, setup, url, {**form, "reden": "1"})
            assert status == 200 and "is aangenomen (Bv03)" in html, html
            [verzoek] = await gemeente_inbox(setup)
            assert verzoek["functie"] == "JW317"
        finally:
            await gemeente.close()
            await aanbieder.close()


@pytest.mark.slow
@pytest.mark.skipif(portal_ui.CHROMIUM is None, reason="no Chromium")
async def test_a_clerk_asks_for_a_change_in_chromium_at_360px(setup: Setup, browser: Any) -> None:
    async with running(setup):
        toewijzing = await a_toewijzing(setup)
        page = await portal_ui.new_page(browser, setup, locale="nl-NL", width=360)
        await portal_ui.sign_in_with_token(page, setup, AANBIEDER)
        await page.click(f"a[href='/portal/taken/{toewijzing}/wijzigen']")
        await page.wait_for_load_state()
        await check(page, "54-taak-317-formulier")
        await page.fill("#ingang-0", "2026-12-01")
        await page.fill("#volume-0", "6")
        await page.click("main button[type=submit]")
        await page.wait_for_load_state()
        assert "reden" in await page.inner_text("#reden-fout")
        await check(page, "55-taak-317-fout-bij-veld")
        await page.select_option("#reden", "1")
        await page.click("main button[type=submit]")
        await page.wait_for_load_state()
        assert "is aangenomen (Bv03)" in await page.inner_text("main")
        await check(page, "56-taak-317-verstuurd")
        [verzoek] = [str(m["id"]) for m in await gemeente_inbox(setup)]
        assert await retour_state(page, setup, verzoek) == "-"
        heen_id, answer_id = await the_gemeente_answers(setup, "JW317")
        await the_clerk_reads_the_answer(page, setup, heen_id, answer_id, "JW318", "64-retour-318")
        assert await retour_state(page, setup, heen_id) == f"JW318 · {NAMES['JW318']}\n{AKKOORD}"
        await page.context.close()


@pytest.mark.slow
async def test_a_toewijzing_is_asked_for_the_client_of_another(setup: Setup) -> None:
    async with running(setup):
        toewijzing = await a_toewijzing(setup)
        url = f"{setup.url}/portal/taken/{toewijzing}/aanvragen"
        gemeente, _ = await portal_session(setup, GEMEENTE)
        aanbieder, csrf = await portal_session(setup, AANBIEDER)
        try:
            async with gemeente.get(url, ssl=setup.ssl_context()) as page:
                assert page.status == 404
            async with aanbieder.get(url, ssl=setup.ssl_context()) as page:
                html = await page.text()
                assert page.status == 200, html
            assert 'name="categorie" value="45"' in html and 'name="volume" value="4"' in html
            assert "999990019" not in html
            form = {
                "csrf": csrf,
                "identificatie": f"A{uuid.uuid4().hex[:11].upper()}",
                "referentie": "VOT-2026-0042",
                "dagtekening": "2026-12-03",
                "categorie": "45",
                "code": "45A48",
                "ingang": "2027-01-04",
                "einde": "2027-06-30",
                "volume": "3",
                "verwijzer": "",
                "zorgverlener": "1234",
            }
            status, html = await post_form(aanbieder, setup, url, form)
            assert status == 422, html
            assert error_beside(html, "verwijzer") and "acht cijfers" in error_beside(
                html, "zorgverlener"
            )
            status, html = await post_form(
                aanbieder, setup, url, {**form, "verwijzer": "02", "zorgverlener": "01234567"}
            )
            assert status == 200 and "is aangenomen (Bv03)" in html, html
            [verzoek] = await gemeente_inbox(setup)
            assert verzoek["functie"] == "JW315"
        finally:
            await gemeente.close()
            await aanbieder.close()


@pytest.mark.slow
@pytest.mark.skipif(portal_ui.CHROMIUM is None, reason="no Chromium")
async def test_a_clerk_asks_for_a_toewijzing_in_chromium_at_360px(
    setup: Setup, browser: Any
) -> None:
    async with running(setup):
        toewijzing = await a_toewijzing(setup)
        page = await portal_ui.new_page(browser, setup, locale="nl-NL", width=360)
        await portal_ui.sign_in_with_token(page, setup, AANBIEDER)
        await page.click(f"a[href='/portal/taken/{toewijzing}/aanvragen']")
        await page.wait_for_load_state()
        await check(page, "57-taak-315-formulier")
        await page.fill("#ingang", "2027-01-04")
        await page.click("main button[type=submit]")
        await page.wait_for_load_state()
        assert await page.inner_text("#verwijzer-fout")
        await check(page, "58-taak-315-fout-bij-veld")
        await page.select_option("#verwijzer", "02")
        await page.fill("#zorgverlener", "01234567")
        await page.click("main button[type=submit]")
        await page.wait_for_load_state()
        # a rule (CD076: a frequentie per period needs an einddatum) beside the field it needs
        assert "ToewijzingEinddatum" in await page.inner_text("#einde-fout")
        await page.fill("#einde", "2027-06-30")
        await page.click("main button[type=submit]")
        await page.wait_for_load_state()
        assert "is aangenomen (Bv03)" in await page.inner_text("main")
        await check(page, "59-taak-315-verstuurd")
        [verzoek] = [str(m["id"]) for m in await gemeente_inbox(setup)]
        assert await retour_state(page, setup, verzoek) == "-"
        heen_id, answer_id = await the_gemeente_answers(setup, "JW315")
        await the_clerk_reads_the_answer(page, setup, heen_id, answer_id, "JW316", "65-retour-316")
        assert await retour_state(page, setup, heen_id) == f"JW316 · {NAMES['JW316']}\n{AKKOORD}"
        await page.context.close()


TASKS = ("bevestigen", "start", "stop", "declareren", "wijzigen", "aanvragen")


@pytest.mark.slow
async def test_the_tasks_start_from_an_acknowledged_toewijzing_in_the_archive(
    setup: Setup,
) -> None:
    async with running(setup):
        toewijzing = await a_toewijzing(setup)
        status, body = await rest(
            setup, "POST", f"/api/v1/inbox/{toewijzing}/ack", token=setup.token(AANBIEDER)
        )
        assert status == 200, body
        gemeente, _ = await portal_session(setup, GEMEENTE)
        aanbieder, csrf = await portal_session(setup, AANBIEDER)
        tls = setup.ssl_context()
        try:
            async with aanbieder.get(f"{setup.url}/portal/inbox", ssl=tls) as page:
                assert f"/portal/taken/{toewijzing}/" not in await page.text()
            async with aanbieder.get(f"{setup.url}/portal/archive", ssl=tls) as page:
                html = await page.text()
            for task in TASKS:  # the archive offers every task on it
                assert f'href="/portal/taken/{toewijzing}/{task}"' in html, task
            for task in TASKS:  # still only to its addressee: the gemeente gets the 404
                async with gemeente.get(
                    f"{setup.url}/portal/taken/{toewijzing}/{task}", ssl=tls
                ) as page:
                    assert page.status == 404, task
            async with gemeente.get(f"{setup.url}/portal/archive", ssl=tls) as page:
                assert "/portal/taken/" not in await page.text()
            start = f"{setup.url}/portal/taken/{toewijzing}/start"
            async with aanbieder.get(start, ssl=tls) as page:
                html = await page.text()
                assert page.status == 200, html
            assert 'name="begindatum-0" value="2026-10-05"' in html
            form = {
                "csrf": csrf,
                "identificatie": f"S{uuid.uuid4().hex[:11].upper()}",
                "dagtekening": "2026-10-08",
                "begindatum-0": "2026-10-07",
            }
            status, html = await post_form(aanbieder, setup, start, form)
            assert status == 200 and "is aangenomen (Bv03)" in html, html
            assert [m["functie"] for m in await gemeente_inbox(setup)] == ["JW305"]
        finally:
            await gemeente.close()
            await aanbieder.close()


@pytest.mark.slow
@pytest.mark.skipif(portal_ui.CHROMIUM is None, reason="no Chromium")
async def test_a_clerk_starts_zorg_from_the_archive_in_chromium_at_360px(
    setup: Setup, browser: Any
) -> None:
    async with running(setup):
        toewijzing = await a_toewijzing(setup)
        await rest(setup, "POST", f"/api/v1/inbox/{toewijzing}/ack", token=setup.token(AANBIEDER))
        page = await portal_ui.new_page(browser, setup, locale="nl-NL", width=360)
        await portal_ui.sign_in_with_token(page, setup, AANBIEDER)
        await page.goto(f"{setup.url}/portal/archive")
        assert "afgehandeld" in await page.inner_text("main")
        await check(page, "66-archief-taken")
        await page.click(f"a[href='/portal/taken/{toewijzing}/start']")
        await page.wait_for_load_state()
        assert await page.input_value("#begindatum-0") == "2026-10-05"
        await page.fill("#begindatum-0", "2026-10-07")
        await page.fill("#begindatum-1", "")
        await page.click("main button[type=submit]")
        await page.wait_for_load_state()
        assert "is aangenomen (Bv03)" in await page.inner_text("main")
        await page.context.close()
