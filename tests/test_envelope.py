"""StUF-GGk envelopes: build and read both generations, chain rules, payload cross-checks."""

from __future__ import annotations

import base64

import pytest
from lxml import etree

from gateway import envelope as env
from gateway.soap import SOAP11_NS
from gateway.validation import Validator
from gateway.xmlsafe import parse_untrusted
from tests.conftest import sample

WMO301 = sample("iwmo/wmo301.xml").encode()
WMO302 = sample("iwmo/wmo302.xml").encode()
REF = "0e09a81f-64a0-4793-b946-d6538fb3f37e"


@pytest.mark.parametrize("generation", list(env.Generation))
def test_di01_round_trip(generation: env.Generation) -> None:
    data = env.build_di01(
        WMO301,
        zender="0150",
        zender_applicatie="DOWRsociaal",
        ontvanger="12345678",
        functie="WMO301",
        referentienummer=REF,
        generation=generation,
    )
    parsed = env.parse(parse_untrusted(data))
    assert parsed.kind is env.Kind.DI01 and parsed.generation is generation
    assert parsed.payload == WMO301 and parsed.payload_is_xml
    assert (parsed.zender.organisatie, parsed.ontvanger.organisatie) == ("0150", "12345678")
    assert parsed.ontvanger.applicatie == "GGk"
    assert parsed.referentienummer == REF and parsed.functie == "WMO301"
    assert (parsed.functie_versie, parsed.functie_subversie) == ("0003", "0002")
    assert len(parsed.tijdstip) == 17 and env.check(parsed) == []


@pytest.mark.parametrize("generation", list(env.Generation))
def test_a_payload_in_wrapped_or_flat_base64_reads_the_same(generation: env.Generation) -> None:
    """Base64 without whitespace is decoded as it is, with line breaks (76 columns, as MIME
    writes it) after removing them; either way the same payload, and bad base64 is refused."""
    data = env.build_di01(
        WMO301,
        zender="0150",
        zender_applicatie="DOWRsociaal",
        ontvanger="12345678",
        functie="WMO301",
        referentienummer=REF,
        generation=generation,
    )
    flat = base64.b64encode(WMO301)
    assert flat in data  # the builder writes no line breaks
    wrapped = base64.encodebytes(WMO301).replace(b"\n", b"\r\n  ")
    for text in (flat, wrapped, b"\n" + flat + b"\n"):
        parsed = env.parse(parse_untrusted(data.replace(flat, text)))
        assert parsed.payload == WMO301
    with pytest.raises(env.EnvelopeError):  # the schema (base64Binary) or the decoder
        env.parse(parse_untrusted(data.replace(flat, flat[:-4] + b"Q===")))


def test_element_order_and_namespaces_of_a_0210_du01() -> None:
    data = env.build_du01(
        WMO302,
        zender="12345678",
        zender_applicatie="ZorgSuite",
        ontvanger="0150",
        functie="WMO302",
        cross_ref=REF,
    )
    root = parse_untrusted(data)
    assert (
        root.tag
        == "{http://www.stufstandaarden.nl/koppelvlak/ggk0210}envelopRetourbericht-ggk_Du01"
    )
    sg = root[0]
    assert [etree.QName(c).localname for c in sg] == [
        "berichtcode",
        "zender",
        "ontvanger",
        "referentienummer",
        "tijdstipBericht",
        "crossRefnummer",
        "functie",
    ]
    assert all(etree.QName(c).namespace == env.STUF_NS for c in sg)
    params = root[1]
    assert [etree.QName(c).localname for c in params] == [
        "applicatieVersie",
        "applicatieSubversie",
        "functieVersie",
        "functieSubversie",
        "bericht",
    ]
    assert etree.QName(params[-1][0]).localname == "xmlBestand"
    assert env.UUID4.match(sg[3].text or "")


def test_du01_needs_a_cross_reference() -> None:
    with pytest.raises(ValueError, match="cross_ref"):
        env.build_du01(
            WMO302,
            zender="1",
            zender_applicatie="App",
            ontvanger="2",
            functie="WMO302",
            cross_ref="",
        )


def test_text_file_payload_and_its_file_name_rule() -> None:
    ok = env.build_di01(
        b"a;b\n1;2\n",
        zender="0150",
        zender_applicatie="DOWRsociaal",
        ontvanger="CBS",
        functie="Dummy",
        bestandsnaam="monitor_2026.csv",
    )
    parsed = env.parse(parse_untrusted(ok))
    assert not parsed.payload_is_xml and parsed.bestandsnaam == "monitor_2026.csv"
    bad = ok.replace(b'bestandsnaam="monitor_2026.csv"', b'bestandsnaam="monitor 2026.csv"')
    with pytest.raises(env.EnvelopeError) as caught:
        env.parse(parse_untrusted(bad))
    assert caught.value.problems[0].rule == "ENV-XSD"


def test_0310_envelope_does_not_enforce_uuid_but_the_chain_rule_does() -> None:
    data = env.build_di01(
        WMO301,
        zender="0150",
        zender_applicatie="DOWRsociaal",
        ontvanger="12345678",
        functie="WMO301",
        referentienummer="9c0f7b90-5c69-11e5-a837-0800200c9a66",
        generation=env.Generation.GGK0310,
    )
    parsed = env.parse(parse_untrusted(data))
    assert [p.rule for p in env.check(parsed)] == ["IB009"]


def test_fo01_round_trip_and_limits() -> None:
    data = env.build_fo01(
        zender="0150",
        zender_applicatie="DOWRsociaal",
        ontvanger="12345678",
        cross_ref=REF,
        code="StUF055",
        plek="client",
        omschrijving="x" * 500,
        details="WMO302-00010000",
    )
    parsed = env.parse(parse_untrusted(data))
    assert parsed.kind is env.Kind.FO01 and parsed.cross_ref == REF
    assert parsed.fout is not None and len(parsed.fout.omschrijving) == 200
    with pytest.raises(ValueError, match="plek"):
        env.build_fo01(
            zender="1",
            zender_applicatie="App",
            ontvanger="2",
            cross_ref=REF,
            code="X",
            plek="Client",
            omschrijving="y",
        )


def test_ggk_applicatie_mismatch_is_a_warning(validator: Validator) -> None:
    data = env.build_di01(
        WMO301,
        zender="0150",
        zender_applicatie="DOWRsociaal",
        ontvanger="12345678",
        functie="WMO301",
    ).replace(b"<StUF:applicatie>GGk<", b"<StUF:applicatie>JW Applicatie<")
    report = validator.validate(data)
    assert report.valid and [p.rule for p in report.warnings] == ["ENV-APPLICATIE"]


def test_retour_in_a_di01_is_flagged(validator: Validator) -> None:
    data = env.build_di01(
        WMO302, zender="12345678", zender_applicatie="ZorgSuite", ontvanger="0150", functie="WMO302"
    )
    assert [p.rule for p in validator.validate(data).errors] == ["ENV-KIND"]


def test_spoofed_zender_against_payload(validator: Validator) -> None:
    data = env.build_di01(
        WMO301,
        zender="0177",
        zender_applicatie="DOWRsociaal",
        ontvanger="12345678",
        functie="WMO301",
    )
    assert [p.rule for p in validator.validate(data).errors] == ["ENV-ZENDER"]


def test_soap_wrapped_envelope_is_validated(validator: Validator) -> None:
    inner = env.build_di01(
        WMO301,
        zender="0150",
        zender_applicatie="DOWRsociaal",
        ontvanger="12345678",
        functie="WMO301",
    )
    soap = etree.Element(f"{{{SOAP11_NS}}}Envelope", nsmap={"soapenv": SOAP11_NS})
    etree.SubElement(soap, f"{{{SOAP11_NS}}}Body").append(parse_untrusted(inner))
    report = validator.validate(etree.tostring(soap))
    assert report.valid and report.envelope == "envelopHeenbericht-ggk_Di01"
    empty = b'<s:Envelope xmlns:s="%s"><s:Body/></s:Envelope>' % SOAP11_NS.encode()
    assert [p.rule for p in validator.validate(empty).errors] == ["SOAP-BODY"]
