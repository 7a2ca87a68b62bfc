"""The portal's message page shows the payload decoded by its schema into typed values
(xmlschema on the hardened parser's tree, gateway/portal/contents.py; the page's document:
gateway/portal/document.py), to the message's sender, receivers and the operator, and never
decodes what is unsafe or too large."""

from __future__ import annotations

from pathlib import Path

from gateway.portal.contents import MAX_BYTES, Field, Reader
from kit.gateway import Setup, Sink, make_setup, portal_session, rest, running

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def _find(fields: tuple[Field, ...], name: str) -> Field:
    for f in fields:
        if f.name == name:
            return f
        try:
            return _find(f.children, name)
        except KeyError:
            continue
    raise KeyError(name)


def test_a_payload_is_decoded_into_typed_values() -> None:
    contents = Reader().payload((SAMPLES / "iwmo" / "wmo301.xml").read_bytes())
    assert contents.note is None
    assert [f.name for f in contents.fields] == ["Header", "Client"]
    assert (
        _find(contents.fields, "Dagtekening").value,
        _find(contents.fields, "Dagtekening").kind,
    ) == ("2026-10-01", "datum")
    assert _find(contents.fields, "BerichtVersie").kind == "geheel getal"
    assert _find(contents.fields, "Toewijzingstijd").kind == "tijdstip"
    # a code is text, even when it is made of digits (the schema says so, not the value)
    assert (_find(contents.fields, "Afzender").value, _find(contents.fields, "Afzender").kind) == (
        "0150",
        "tekst",
    )


def test_unsafe_unknown_and_large_payloads_are_not_decoded() -> None:
    reader = Reader()
    entity = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<Bericht xmlns="http://www.istandaarden.nl/iwmo/3_2/wmo301/schema">&e;</Bericht>'
    )
    assert reader.payload(entity).note == "De inhoud is geen leesbare XML."
    assert (
        reader.payload(b"<a xmlns='urn:other'/>").note == "Voor deze inhoud is geen schema bekend."
    )
    big = b"<a>" + b"x" * MAX_BYTES + b"</a>"
    assert reader.payload(big).note is not None and not reader.payload(big).fields
    assert reader.envelope(b"<not-an-envelope/>").fields == ()


async def test_the_receiver_sees_the_decoded_message_in_the_portal(
    tmp_path: Path, sink: Sink
) -> None:
    setup: Setup = make_setup(tmp_path / "gw", sink.port)
    async with running(setup):
        status, heen = await rest(
            setup,
            "POST",
            "/api/v1/messages",
            token=setup.token("0150"),
            data=(SAMPLES / "iwmo" / "wmo301.xml").read_bytes(),
        )
        assert status == 202, heen
        status, retour = await rest(
            setup,
            "POST",
            "/api/v1/messages",
            token=setup.token("12345678"),
            data=(SAMPLES / "iwmo" / "wmo302.xml").read_bytes(),
        )
        assert status == 202, retour
        url, tls = setup.url, setup.ssl_context()
        gemeente, _ = await portal_session(setup, "0150")
        async with gemeente:
            async with gemeente.get(f"{url}/portal/messages/{retour['id']}", ssl=tls) as page:
                assert page.status == 200
                html = await page.text()
            assert "Inhoud van het bericht" in html
            # the document (gateway/portal/document.py): labelled, dates in words
            assert "<dt>Dagtekening retour</dt>" in html
            assert '<time datetime="2026-11-13">13 nov 2026</time>' in html
            # its own heenbericht, sent by it: readable too (issue 30.2)
            async with gemeente.get(f"{url}/portal/messages/{heen['id']}", ssl=tls) as page:
                assert page.status == 200
                assert "Inhoud van het bericht" in await page.text()
        operator, _ = await portal_session(setup, None)
        async with operator, operator.get(f"{url}/portal/messages/{retour['id']}", ssl=tls) as page:
            assert page.status == 200
            html = await page.text()
            assert "Inhoud van het bericht" in html and "999990019" not in html  # masked
