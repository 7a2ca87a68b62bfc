"""Every iWmo/iJw message readable as a document (issue 30.2): the payload walked with its XSD
into typed sections (gateway/portal/document.py), rendered by the message page with codes
named, dates and money in the reader's language, the BSN masked unless the reader asks (a
POST with the session's CSRF token, audited), printable; readable only by its sender, its
receivers and the operator (another partner gets the same 404 as for no message).

The values on the page are checked against the sample parsed here independently (plain
lxml on the project's own files, not the code under test)."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
from babel.dates import format_date
from babel.numbers import format_currency
from lxml import etree

from gateway.codelists import codelists
from gateway.portal import i18n, partner
from gateway.portal.contents import Reader
from gateway.portal.document import Document, read, read_envelope
from gateway.portal.pages import templates
from kit.gateway import Setup, Sink, make_setup, portal_session, rest, running

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
MESSAGES = sorted([*SAMPLES.glob("iwmo/*.xml"), *SAMPLES.glob("ijw/*.xml")])
AMOUNTS = {"Bedrag", "TotaalBedrag", "Budget", "ProductTarief"}
"""Elements holding money in cents, by name (the test's own knowledge of the standards)."""
READER = Reader()


def _leaves(path: Path) -> list[tuple[str, str]]:
    """(local name, text) of every element with a value, in document order."""
    root = etree.fromstring(path.read_bytes())
    return [
        (etree.QName(e).localname, (e.text or "").strip())
        for e in root.iter()
        if isinstance(e.tag, str) and len(e) == 0 and (e.text or "").strip()
    ]


def _page(document: Document, *, reveal: bool, lang: str = "nl") -> str:
    message = {
        "id": "ab" * 16,
        "functie": document.code,
        "kind": "Di01",
        "zender": "0150",
        "ontvanger": "12345678",
        "referentienummer": "ref-1",
        "received_at": 1.8e9,
        "retourcodes": None,
        "conversation": [],
        "deliveries": [],
        "events": [],
    }
    return (
        templates()
        .get(i18n.language(lang), "message_view.html")
        .render(
            visitor=None,
            csrf="x",
            path="/",
            here="/",
            partij=str,
            message=message,
            document=document,
            reveal=reveal,
        )
    )


def test_all_28_messages_are_there() -> None:
    assert len(MESSAGES) == 28, MESSAGES


@pytest.mark.parametrize("sample", MESSAGES, ids=[p.stem for p in MESSAGES])
@pytest.mark.parametrize("lang", ["nl", "en"])
def test_every_sample_renders_with_the_messages_values(sample: Path, lang: str) -> None:
    document = read(sample.read_bytes(), READER)
    assert document.note is None and document.code == sample.stem.upper()
    html = _page(document, reveal=False, lang=lang)
    locale = i18n.language(lang).locale
    leaves = _leaves(sample)
    bsns = {text for name, text in leaves if name == "Bsn"}
    for name, text in leaves:
        if name == "Bsn":
            assert text not in html, "a BSN is shown before the reader asks"
        elif name in AMOUNTS:
            money = format_currency(int(text) / 100, "EUR", locale=locale)
            assert money.replace("\xa0", " ") in html.replace("\xa0", " "), (name, money)
        elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            shown = format_date(date.fromisoformat(text), "d MMM y", locale=locale)
            assert f'<time datetime="{text}">{shown}</time>' in html, (name, text)
        else:
            escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace("'", "&#39;")
            assert escaped in html, (name, text)
    # the client's product: its category named from the official list, beside the code
    categories = [text for name, text in leaves if name in ("Categorie", "ProductCategorie")]
    for code in categories:
        assert re.search(rf"\S[^<]* <code>\({code}\)</code>", html), code
    # the retour's status: each retourcode with its official text (the list read directly)
    standard = sample.parent.name
    for code in (text for name, text in leaves if name == "RetourCode"):
        named = codelists().name(f"{standard}-WJ001", code)
        assert named and f"{named} <code>({code})</code>" in html.replace("&#39;", "'"), code
    revealed = _page(document, reveal=True, lang=lang)
    assert all(bsn in revealed for bsn in bsns)
    button = f'action="/portal/messages/{"ab" * 16}/bsn"'
    assert (button in html) == bool(bsns) and button not in revealed


def test_the_document_is_typed_from_the_schema() -> None:
    document = read((SAMPLES / "ijw" / "jw301.xml").read_bytes(), READER)
    fields = {f.path: f for f in document.all_fields()}
    product = "Client/ToegewezenProducten/ToegewezenProduct[1]"
    assert fields[f"{product}/Product/Categorie"].kind == "code"
    assert fields[f"{product}/Product/Categorie"].code_name == "Jeugdhulp ambulant"
    assert fields[f"{product}/Omvang/Eenheid"].code_name == "Uur"
    assert fields[f"{product}/Omvang/Frequentie"].code_name == "Per week"
    assert fields[f"{product}/Ingangsdatum"].kind == "date"
    assert fields["Client/ToegewezenProducten/ToegewezenProduct[2]/Budget"].cents == 240000
    assert fields["Client/Bsn"].kind == "bsn" and document.bsns() == ["999990019"]
    assert [s.label for s in document.sections] == ["Bericht", "Cliënt"]


def test_what_cannot_be_read_is_said_not_raised() -> None:
    entity = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<Bericht xmlns="http://www.istandaarden.nl/iwmo/3_2/wmo301/schema">&e;</Bericht>'
    )
    assert read(entity, READER).note == "De inhoud is geen leesbare XML."
    assert read(b"<a xmlns='urn:x'/>", READER).note == "Voor deze inhoud is geen schema bekend."
    assert read_envelope(b"<not-an-envelope/>", READER).note is not None


def test_the_print_stylesheet_prints_the_document_only() -> None:
    css = (Path(__file__).resolve().parent.parent / "gateway/portal/static/portal.css").read_text()
    printed = css[css.index("@media print") :]
    rule = printed[: printed.index("}")]
    for hidden in ("header", "nav", "form", "button", ".no-print"):
        assert hidden in rule, hidden


@pytest.fixture
def setup(tmp_path: Path, sink: Sink) -> Setup:
    return make_setup(tmp_path / "gw", sink.port)


@pytest.mark.slow
async def test_the_message_page_masks_audits_and_stays_private(setup: Setup) -> None:
    url, tls = setup.url, setup.ssl_context()
    async with running(setup):
        payload = (SAMPLES / "iwmo" / "wmo305.xml").read_bytes()
        status, sent = await rest(
            setup, "POST", "/api/v1/messages", token=setup.token("12345678"), data=payload
        )
        assert status == 202, sent
        page_url = f"{url}/portal/messages/{sent['id']}"
        _, everything = await rest(
            setup, "GET", f"/api/v1/messages/{sent['id']}", token=setup.token()
        )
        assert "CAK" in {d["destination"] for d in everything["deliveries"]}  # a copy exists

        gemeente, csrf = await portal_session(setup, "0150")
        async with gemeente:
            async with gemeente.get(page_url, ssl=tls) as page:
                html = await page.text()
            assert page.status == 200
            assert "WMO305 · Start ondersteuning" in html and "Inhoud van het bericht" in html
            assert "999990019" not in html and ">Toon BSN</button>" in html
            # without the session's CSRF token: refused, nothing shown
            async with gemeente.post(f"{page_url}/bsn", data={}, ssl=tls) as answer:
                assert answer.status == 403 and "999990019" not in await answer.text()
            async with gemeente.post(f"{page_url}/bsn", data={"csrf": csrf}, ssl=tls) as answer:
                shown = await answer.text()
            assert answer.status == 200 and "999990019" in shown
            assert "no-store" in answer.headers.get("Cache-Control", "")

        # the sender reads its own message, and sees its addressee's delivery only
        provider, _ = await portal_session(setup, "12345678")
        async with provider, provider.get(page_url, ssl=tls) as page:
            html = await page.text()
        assert page.status == 200 and "Inhoud van het bericht" in html
        deliveries = html[
            html.index('id="deliveries-caption"') : html.index(
                "</table>", html.index('id="deliveries-caption"')
            )
        ]
        assert "0150" in deliveries and "CAK" not in deliveries, deliveries

        # another partner: the same 404 as for no message, the form too
        other, other_csrf = await portal_session(setup, "0177")
        async with other:
            async with other.get(page_url, ssl=tls) as page:
                assert page.status == 404 and "999990019" not in await page.text()
            async with other.post(f"{page_url}/bsn", data={"csrf": other_csrf}, ssl=tls) as answer:
                assert answer.status == 404 and "999990019" not in await answer.text()

        # the unmasking is in the audit trail: found by the message and by the citizen's BSN
        operator, operator_csrf = await portal_session(setup, None)
        async with operator:
            for criterion in ({"message": sent["id"]}, {"bsn": "999990019"}):
                async with operator.post(
                    f"{url}/portal/audit", data={"csrf": operator_csrf, **criterion}, ssl=tls
                ) as page:
                    text = await page.text()
                assert "portal_bsn_shown" in text and "portal 0150" in text, criterion
    log = setup.directory / "gateway.log"
    if log.exists():
        assert "999990019" not in log.read_text()


@pytest.mark.slow
async def test_acknowledged_messages_stay_findable_in_the_archive(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, tls = setup.url, setup.ssl_context()
    async with running(setup):
        ids = {}
        for name in ("wmo305", "wmo307"):
            status, sent = await rest(
                setup,
                "POST",
                "/api/v1/messages",
                token=setup.token("12345678"),
                data=(SAMPLES / "iwmo" / f"{name}.xml").read_bytes(),
            )
            assert status == 202, sent
            ids[name] = sent["id"]
        gemeente, csrf = await portal_session(setup, "0150")
        async with gemeente:
            async with gemeente.post(
                f"{url}/portal/inbox/{ids['wmo305']}/ack",
                data={"csrf": csrf, "confirm": "yes"},
                ssl=tls,
                allow_redirects=False,
            ) as answer:
                assert answer.status == 303

            async def listed(**query: str) -> set[str]:
                async with gemeente.get(f"{url}/portal/archive", params=query, ssl=tls) as page:
                    assert page.status == 200
                    html = await page.text()
                return {i for name, i in ids.items() if f"/portal/messages/{i}" in html}

            assert await listed() == set(ids.values())  # the acknowledged one too
            assert await listed(stand="delivered") == {ids["wmo305"]}
            assert await listed(stand="inbox") == {ids["wmo307"]}
            assert await listed(bericht="WMO307") == {ids["wmo307"]}
            assert await listed(van="2999-01-01") == set()
            assert await listed(tot="2000-01-01") == set()
            assert await listed(van="2000-01-01", tot="2999-12-31") == set(ids.values())
            assert await listed(voor="1") == set()  # a page after the oldest row
            # a malformed filter is ignored, never an error
            assert await listed(van="gisteren", stand="x", voor="-1") == set(ids.values())
            # pages: one row a page here, the next page's link starts after the last row
            monkeypatch.setattr(partner, "ARCHIVE_PAGE", 1)
            async with gemeente.get(f"{url}/portal/archive", ssl=tls) as page:
                first = await page.text()
            assert ids["wmo307"] in first and ids["wmo305"] not in first  # newest first
            older = re.search(r'href="(/portal/archive\?[^"]*voor=\d+[^"]*)"', first)
            assert older, first
            async with gemeente.get(
                f"{url}{older.group(1).replace('&amp;', '&')}", ssl=tls
            ) as page:
                second = await page.text()
            assert ids["wmo305"] in second and ids["wmo307"] not in second
            assert not re.search(r'href="/portal/archive\?[^"]*voor=', second)  # the last page
            monkeypatch.undo()
            # and the acknowledged message is still readable
            async with gemeente.get(f"{url}/portal/messages/{ids['wmo305']}", ssl=tls) as page:
                assert "Inhoud van het bericht" in await page.text()
        # another partner's archive does not list them
        other, _ = await portal_session(setup, "0177")
        async with other, other.get(f"{url}/portal/archive", ssl=tls) as page:
            html = await page.text()
        assert not any(i in html for i in ids.values())
