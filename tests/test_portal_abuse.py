"""A signed-in partner abusing the portal (review of issue 27, findings 4 and 5): its pages
and forms draw on the same rate as its API calls, sign-ins are limited per partner and per
address, and flooding sign-outs never brings a signed-out cookie back to life."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from gateway.broker.revocations import Revocations
from gateway.portal.limits import SIGNINS_PER_PARTNER
from gateway.server import build
from kit.gateway import (
    Setup,
    hidden_field,
    make_setup,
    portal_session,
    rest,
    running,
    with_cookie,
)

SESSION = "__Host-ggk-session"


def limited(setup: Setup, rate: str, burst: str) -> Setup:
    """``setup`` with its ``[limits] partner_rate`` and ``partner_burst`` set as written."""
    text = setup.config_path.read_text()
    text, rates = re.subn(r"^partner_rate = .*$", f"partner_rate = {rate}", text, flags=re.M)
    text, bursts = re.subn(r"^partner_burst = .*$", f"partner_burst = {burst}", text, flags=re.M)
    assert rates == bursts == 1
    setup.config_path.write_text(text)
    return setup


async def sign_in(
    client: aiohttp.ClientSession, setup: Setup, partner: str
) -> tuple[int, str | None, str]:
    """One sign-in through the form: (status, Retry-After, page text)."""
    async with client.get(f"{setup.url}/portal/signin", ssl=setup.ssl_context()) as page:
        csrf = hidden_field(await page.text(), "csrf")
    async with client.post(
        f"{setup.url}/portal/signin",
        data={"csrf": csrf, "method": "token", "token": setup.token(partner)},
        ssl=setup.ssl_context(),
        allow_redirects=False,
    ) as answer:
        return answer.status, answer.headers.get("Retry-After"), await answer.text()


def cookie_of(client: aiohttp.ClientSession) -> str:
    return next(c.value for c in client.cookie_jar if c.key == SESSION)


@pytest.mark.slow
async def test_a_partner_over_its_rate_is_refused_on_every_portal_page_and_form(
    tmp_path: Path,
) -> None:
    """One bucket per partner for the API and the portal: once 0150's API calls spent it,
    every portal page and form of 0150 answers 429 with a page saying when to try again
    (Retry-After), reading nothing of a form; 0175 is still served, and 0150 can still sign
    out. (One request per 1,000 s: nothing refills during the test.)"""
    setup = limited(make_setup(tmp_path / "gw", 1), "0.001", "2")
    async with running(setup):
        client, csrf = await portal_session(setup, "0150")  # its overdue page spends 1 of 2
        async with client:
            answered: list[int] = []
            while 429 not in answered and len(answered) < 3:  # the API spends what is left
                status, _ = await rest(setup, "GET", "/api/v1/inbox", token=setup.token("0150"))
                answered.append(status)
            assert answered[-1] == 429, answered
            tls = setup.ssl_context()
            pages = ["/inbox", "/sent", "/upload", "/overdue", "/figures", "/inbox/" + "a" * 32]
            pages += ["/messages/" + "b" * 32]
            for page in pages:
                async with client.get(
                    f"{setup.url}/portal{page}", ssl=tls, allow_redirects=False
                ) as answer:
                    text = await answer.text()
                    assert answer.status == 429, (page, answer.status)
                    after = answer.headers["Retry-After"]
                    assert int(after) >= 1 and f"Wacht {after} seconden" in text, text[:400]
                    assert answer.headers["Cache-Control"] == "no-store"
            for form in ("/inbox/" + "a" * 32 + "/ack", "/upload"):
                async with client.post(
                    f"{setup.url}/portal{form}",
                    data={"csrf": csrf, "action": "check"},
                    ssl=tls,
                    allow_redirects=False,
                ) as answer:
                    assert answer.status == 429, (form, answer.status)
                    assert "Retry-After" in answer.headers
            other, _ = await portal_session(setup, "0175")
            async with other, other.get(f"{setup.url}/portal/inbox", ssl=tls) as answer:
                assert answer.status == 200
            copied = cookie_of(client)
            async with client.post(
                f"{setup.url}/portal/signout",
                data={"csrf": csrf},
                ssl=tls,
                allow_redirects=False,
            ) as answer:
                assert answer.status == 303  # signing out is never refused for the rate
            assert await with_cookie(setup, copied) == 303


@pytest.mark.slow
async def test_successful_sign_ins_are_limited_per_partner_not_per_address(
    tmp_path: Path,
) -> None:
    """Every sign-in can become a sign-out each process must remember: a partner signing in
    over and over is refused (429, Retry-After, a page saying so) after
    SIGNINS_PER_PARTNER in the window. Another partner behind the same address (a proxy, a
    municipal network) still signs in: one partner cannot lock others out."""
    setup = make_setup(tmp_path / "gw", 1)
    per_partner, _ = SIGNINS_PER_PARTNER
    async with (
        running(setup),
        aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            # each sign-in brings its own TLS context, so kept-alive connections would pile
            # up to the per-peer connection cap long before the sign-in limit
            connector=aiohttp.TCPConnector(force_close=True),
        ) as client,
    ):
        statuses = [(await sign_in(client, setup, "0150"))[0] for _ in range(per_partner)]
        assert statuses == [303] * per_partner
        status, after, text = await sign_in(client, setup, "0150")
        assert status == 429 and after is not None and int(after) >= 1
        assert "Te veel aanmeldingen als 0150" in text and f"Wacht {after} seconden" in text
        # another partner from the same address is not held back by 0150's sign-ins
        statuses = [(await sign_in(client, setup, "0175"))[0] for _ in range(3)]
        assert statuses == [303] * 3


@pytest.mark.slow
async def test_a_full_list_of_sign_outs_pauses_sign_ins_and_never_revives_a_cookie(
    tmp_path: Path,
) -> None:
    """With room for three revocations: the victim signs out (its cookie copied), another
    partner signs in and out until the list is full; the next sign-in is refused (503, a
    page saying when to try again) instead of forgetting the victim's sign-out, and the
    copied cookie stays refused."""
    setup = make_setup(tmp_path / "gw", 1)
    gateway = build(setup.config())
    gateway.broker.revocations = Revocations(capacity=3)  # type: ignore[attr-defined]
    tls = setup.ssl_context()
    async with running(setup, gateway):
        victim, csrf = await portal_session(setup, "0175")
        async with victim:
            copied = cookie_of(victim)
            async with victim.post(
                f"{setup.url}/portal/signout",
                data={"csrf": csrf},
                ssl=tls,
                allow_redirects=False,
            ) as answer:
                assert answer.status == 303
        assert await with_cookie(setup, copied) == 303
        statuses = []
        for _ in range(3):
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as attacker:
                status, after, text = await sign_in(attacker, setup, "0150")
                statuses.append(status)
                if status != 303:
                    break
                async with attacker.get(f"{setup.url}/portal/overdue", ssl=tls) as page:
                    attacker_csrf = hidden_field(await page.text(), "csrf")
                async with attacker.post(
                    f"{setup.url}/portal/signout",
                    data={"csrf": attacker_csrf},
                    ssl=tls,
                    allow_redirects=False,
                ) as answer:
                    assert answer.status == 303
        assert await with_cookie(setup, copied) == 303
        assert statuses == [303, 303, 503], statuses
        assert after is not None and int(after) >= 1
        assert "geen nieuwe aanmeldingen" in text and f"over {after} seconden opnieuw" in text
