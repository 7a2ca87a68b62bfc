"""Write ``tests/hostile/``: hostile and broken requests to the SOAP endpoint, each a file and
its documented outcome in ``expected.json`` (HTTP status and Fo03 foutcode, or Bv03).

Every request is sent by ``tests/test_hostile.py`` to a running gateway as partner 0150 (mutual
TLS) unless the case says otherwise. Cases too large to commit (a 30 MB body, 100,000 levels
of nesting, a gzip bomb) are described in ``expected.json`` and built by the test itself.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway import envelope as env
from gateway import soap

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "hostile"
SAMPLES = ROOT / "samples"
WMO301 = (SAMPLES / "iwmo" / "wmo301.xml").read_bytes()
WMO302 = (SAMPLES / "iwmo" / "wmo302.xml").read_bytes()
DI01 = "http://www.stufstandaarden.nl/koppelvlak/ggk0210/ggk_Di01"
DU01 = "http://www.stufstandaarden.nl/koppelvlak/ggk0210/ggk_Du01"
SOAP_OPEN = b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'


def di01(payload: bytes = WMO301, **overrides: Any) -> bytes:
    fields = {
        "zender": "0150",
        "zender_applicatie": "DOWRsociaal",
        "ontvanger": "12345678",
        "functie": "WMO301",
        **overrides,
    }
    return soap.wrap_request(env.build_di01(payload, **fields))


def du01(payload: bytes) -> bytes:
    """A retour to 0150 whose crossRefnummer names a Di01 this gateway never saw."""
    return soap.wrap_request(
        env.build_du01(
            payload,
            zender="12345678",
            zender_applicatie="ZorgSuite",
            ontvanger="0150",
            functie="WMO302",
            cross_ref="0e09a81f-64a0-4793-b946-d6538fb3f37e",
        )
    )


def wrap(body: bytes) -> bytes:
    return SOAP_OPEN + b"<soapenv:Body>" + body + b"</soapenv:Body></soapenv:Envelope>"


def refused(code: str, status: int = 500) -> dict[str, object]:
    return {"status": status, "code": code}


ACCEPTED = {"status": 200, "code": "Bv03"}
XXE = b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'


def cases() -> dict[str, tuple[bytes, dict[str, object]]]:
    good = di01()
    base64_payload = base64.b64encode(WMO301)
    laughs = (
        b'<!DOCTYPE lolz [<!ENTITY lol "lol">'
        + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1)) * 10) for i in range(1, 10))
        + b"]>"
    )
    c: dict[str, tuple[bytes, dict[str, object]]] = {
        "xxe-file.xml": (XXE + wrap(b"<r>&x;</r>"), refused("StUF055")),
        "xxe-network.xml": (
            b'<!DOCTYPE r [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]>' + wrap(b"<r>&x;</r>"),
            refused("StUF055"),
        ),
        "xxe-parameter-entity.xml": (
            b'<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]>' + wrap(b"<r/>"),
            refused("StUF055"),
        ),
        "billion-laughs.xml": (laughs + wrap(b"<r>&lol9;</r>"), refused("StUF055")),
        "quadratic-blowup.xml": (
            b'<!DOCTYPE r [<!ENTITY a "'
            + b"x" * 100_000
            + b'">]>'
            + wrap(b"<r>" + b"&a;" * 10_000 + b"</r>"),
            refused("StUF055"),
        ),
        "deep-nesting.xml": (wrap(b"<a>" * 200 + b"</a>" * 200), refused("StUF055")),
        "invalid-utf8.xml": (wrap(b"<r>\xff\xfe\xfd</r>"), refused("StUF055")),
        "encoding-latin1-declared.xml": (
            b'<?xml version="1.0" encoding="ISO-8859-1"?>' + good.split(b"?>", 1)[1],
            refused("StUF055"),
        ),
        "utf16.xml": (
            good.decode().replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16"),
            refused("StUF055"),
        ),
        "bom.xml": (b"\xef\xbb\xbf" + good, refused("StUF055")),
        "not-xml.xml": (b"this is not xml at all", refused("StUF055")),
        "empty-body.xml": (b"", refused("StUF055")),
        "truncated-xml.xml": (good[: len(good) // 2], refused("StUF055")),
        "soap12.xml": (
            b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>',
            refused("StUF001"),
        ),
        "not-soap.xml": (WMO301, refused("StUF055")),
        "soap-body-empty.xml": (wrap(b""), refused("StUF055")),
        "soap-body-two-children.xml": (wrap(b"<a/><b/>"), refused("StUF055")),
        "soap-no-body.xml": (SOAP_OPEN + b"</soapenv:Envelope>", refused("StUF055")),
        "wrong-soapaction.xml": (
            good,
            {**refused("StUF037"), "soapaction": "http://www.egem.nl/StUF/StUF0301/Fo01"},
        ),
        "unknown-soapaction.xml": (good, {**refused("StUF037"), "soapaction": "urn:nonsense"}),
        "missing-soapaction.xml": (
            di01(WMO301.replace(b"WMO301A0001", b"WMO301A0901")),
            {**ACCEPTED, "soapaction": None, "note": "dispatch is on the Body element"},
        ),
        "envelope-without-payload.xml": (good.replace(base64_payload, b""), refused("StUF055")),
        "payload-not-base64.xml": (
            good.replace(base64_payload, b"***not base64***"),
            refused("StUF055"),
        ),
        "payload-base64-of-text.xml": (di01(b"plain text, no XML"), refused("StUF055")),
        "payload-with-doctype.xml": (di01(XXE + WMO301.split(b"?>", 1)[1]), refused("StUF055")),
        "payload-unknown-namespace.xml": (
            di01(
                WMO301.replace(b"http://www.istandaarden.nl/iwmo/3_2/wmo301/schema", b"urn:other")
            ),
            refused("StUF055"),
        ),
        "payload-xsd-invalid.xml": (
            di01(WMO301.replace(b">999990019<", b">99999001X<")),
            refused("StUF055"),
        ),
        "payload-rule-violation.xml": (
            di01(WMO301.replace(b">999990019<", b">123456789<")),
            refused("StUF058"),
        ),
        "payload-type-not-for-sender.xml": (
            di01((SAMPLES / "iwmo" / "wmo305.xml").read_bytes(), functie="WMO305"),
            refused("StUF052"),
        ),
        "spoofed-zender.xml": (di01(zender="0177"), refused("StUF052")),
        "spoofed-payload-afzender.xml": (
            di01(WMO301.replace(b">0150<", b">0177<")),
            refused("StUF052"),
        ),
        "unknown-ontvanger.xml": (di01(ontvanger="99999999"), refused("IB210")),
        "functie-mismatch.xml": (di01(functie="WMO302"), refused("IB240")),
        "retour-in-di01.xml": (di01(WMO302, functie="WMO302"), refused("StUF040")),
        "oversized-organisatie.xml": (di01(zender="0" * 300), refused("StUF055")),
        "uuid-upper-case.xml": (
            di01(referentienummer="3F2B8C1E-6A4D-4C9B-9E2F-1A7D5C3B8E01"),
            refused("IB009"),
        ),
        "uuid-version-1.xml": (
            di01(referentienummer="9c0f7b90-5c69-11e5-a837-0800200c9a66"),
            refused("IB009"),
        ),
        "tijdstip-not-digits.xml": (
            good.replace(b"<StUF:tijdstipBericht>", b"<StUF:tijdstipBericht>x"),
            refused("StUF055"),
        ),
        "text-file-bad-name.xml": (
            soap.wrap_request(
                env.build_di01(
                    b"a;b",
                    zender="0150",
                    zender_applicatie="DOWRsociaal",
                    ontvanger="12345678",
                    functie="Dummy",
                    bestandsnaam="bad name.csv",
                )
            ),
            refused("StUF055"),
        ),
        "du01-payload-addressed-elsewhere.xml": (
            du01(WMO302.replace(b">0150<", b">0177<")),
            {**refused("IB210"), "as": "12345678", "soapaction": DU01},
        ),
        "du01-uncorrelated.xml": (
            du01(WMO302),
            {
                **refused("StUF043"),
                "as": "12345678",
                "soapaction": DU01,
                "note": 'its Di01 did not pass this gateway (conversations = "lenient" routes '
                "it by the envelope, marked unlinked)",
            },
        ),
        "no-credentials.xml": (di01(), {**refused("StUF052"), "as": None}),
    }
    c.update(label_cases())
    c.update(conversation_cases())
    c.update(soap_cases())
    c.update(payload_cases())
    c.update(credential_cases())
    c.update(transport_cases())
    return c


def transport_cases() -> dict[str, tuple[bytes, dict[str, object]]]:
    """The HTTP layer's refusals on the SOAP endpoint: a Fo03 fault there too, never JSON or a
    bare 500 (``headers`` are sent with the request)."""
    return {
        "soap-unknown-content-encoding.xml": (
            di01(wmo301("WMO301E0001")),
            {
                **refused("StUF055"),
                "headers": {"Content-Encoding": "br"},
                "note": "refused by the middleware before the handler: still a Fo03",
            },
        ),
        "soap-bogus-gzip.xml": (
            b"this is not gzip",
            {
                **refused("StUF055"),
                "headers": {"Content-Encoding": "gzip"},
                "note": "a partner's body that is not what its Content-Encoding says: a Fo03 "
                "a SOAP client can read, not a JSON problem",
            },
        ),
        "soap-unauthenticated-bogus-gzip.xml": (
            b"this is not gzip",
            {
                **refused("StUF052"),
                "as": None,
                "headers": {"Content-Encoding": "gzip"},
                "note": "no credential: refused unread, the body is never decoded",
            },
        ),
        "soap-unauthenticated-unknown-body-element.xml": (
            wrap(b'<x:Bestel xmlns:x="urn:x"/>'),
            {**refused("StUF052"), "as": None, "soapaction": None},
        ),
    }


def wmo301(identificatie: str, old: bytes = b"", new: bytes = b"") -> bytes:
    """The WMO301 sample with its own Identificatie (a reused one is TR056), optionally with
    one more replacement."""
    payload = WMO301.replace(b"WMO301A0001", identificatie.encode())
    return payload.replace(old, new) if old else payload


BAD_BSN = (b">999990019<", b">123456789<")
SPOOFED_AFZENDER = (b"<wmo301:Afzender>0150<", b"<wmo301:Afzender>0177<")


def label_cases() -> dict[str, tuple[bytes, dict[str, object]]]:
    """An iWmo/iJw functie means an iWmo/iJw message, whatever the payload's label says."""
    gen0310 = {"generation": env.Generation.GGK0310}
    return {
        "label-text-0210-spoofed-afzender.xml": (
            di01(wmo301("WMO301L0001", *SPOOFED_AFZENDER), bestandsnaam="wmo301.txt"),
            refused("StUF052"),
        ),
        "label-text-0210-bad-bsn.xml": (
            di01(wmo301("WMO301L0002", *BAD_BSN), bestandsnaam="wmo301.txt"),
            refused("StUF058"),
        ),
        "label-text-0210-xsd-invalid.xml": (
            di01(wmo301("WMO301L0003", b">999990019<", b">9999X<"), bestandsnaam="a.txt"),
            refused("StUF055"),
        ),
        "label-text-0210-not-xml.xml": (
            di01(b"Naam;Bsn\nJansen;999990019\n", bestandsnaam="clienten.csv"),
            refused("StUF055"),
        ),
        "label-text-plain-0310-spoofed-afzender.xml": (
            di01(wmo301("WMO301L0004", *SPOOFED_AFZENDER), bestandsnaam="w.txt", **gen0310),
            refused("StUF052"),
        ),
        "label-text-plain-0310-bad-bsn.xml": (
            di01(wmo301("WMO301L0005", *BAD_BSN), bestandsnaam="w.txt", **gen0310),
            refused("StUF058"),
        ),
        "label-octet-stream-0310-bad-bsn.xml": (
            di01(wmo301("WMO301L0006", *BAD_BSN), **gen0310).replace(
                b'contentType="application/xml"', b'contentType="application/octet-stream"'
            ),
            refused("StUF058"),
        ),
        "label-octet-stream-0310-valid.xml": (
            di01(wmo301("WMO301L0007"), **gen0310).replace(
                b'contentType="application/xml"', b'contentType="application/octet-stream"'
            ),
            {**ACCEPTED, "note": "a valid WMO301 is checked as one whatever its label"},
        ),
        "label-text-0210-type-not-for-sender.xml": (
            di01(
                (SAMPLES / "iwmo" / "wmo305.xml").read_bytes(),
                functie="WMO305",
                bestandsnaam="w.txt",
            ),
            refused("StUF052"),
        ),
        "text-functie-not-allowed.xml": (
            di01(b"a;b;c\n", functie="Bijlage", bestandsnaam="bijlage.csv"),
            refused("IB240"),
        ),
        "text-functie-carrying-wmo301.xml": (
            di01(wmo301("WMO301L0008", *SPOOFED_AFZENDER), functie="Bijlage", bestandsnaam="b.txt"),
            refused("IB240"),
        ),
        "xml-functie-unknown-carrying-wmo301.xml": (
            di01(wmo301("WMO301L0009"), functie="Dummy"),
            refused("IB240"),
        ),
        "functie-lower-case.xml": (di01(wmo301("WMO301L0010"), functie="wmo301"), refused("IB240")),
        "functie-path-traversal.xml": (
            di01(b"x", functie="../../../tmp/x", bestandsnaam="abcd.txt"),
            refused("IB240"),
        ),
        "bestandsnaam-path-traversal.xml": (
            di01(b"x", functie="Bijlage", bestandsnaam="../../etc/cron.d/x"),
            refused("StUF055"),
        ),
        "heen-in-du01.xml": (
            soap.wrap_request(
                env.build_du01(
                    wmo301("WMO301L0011"),
                    zender="0150",
                    zender_applicatie="DOWRsociaal",
                    ontvanger="12345678",
                    functie="WMO301",
                    cross_ref="0e09a81f-64a0-4793-b946-d6538fb3f37e",
                )
            ),
            {**refused("StUF040"), "soapaction": DU01},
        ),
    }


OWNED_REF = "5b1c1f0e-3c47-4c39-9d36-0f6b7d1a2e11"
"""The referentienummer of a WMO301 from 0150 to 12345678 that the corpus sends first."""


def retour_from(
    partner: str, cross_ref: str, identificatie: str, heen: str = "WMO301C0001"
) -> bytes:
    """A WMO302 from zorgaanbieder ``partner`` to 0150 answering ``cross_ref``, its Header
    copying the heenbericht's BerichtIdentificatie ``heen`` (IV028)."""
    payload = (
        WMO302.replace(b">12345678<", f">{partner}<".encode())
        .replace(b"WMO302R0001", identificatie.encode())
        .replace(b"WMO301A0001", heen.encode())
    )
    return soap.wrap_request(
        env.build_du01(
            payload,
            zender=partner,
            zender_applicatie="ZorgSuite",
            ontvanger="0150",
            functie="WMO302",
            cross_ref=cross_ref,
        )
    )


def conversation_cases() -> dict[str, tuple[bytes, dict[str, object]]]:
    """A conversation belongs to its two parties: another pair's reference is refused
    exactly like one the gateway never saw (StUF043, the same words: test_trust_boundary)."""
    unknown = "0e09a81f-64a0-4793-b946-d6538fb3f37e"
    fo01 = env.build_fo01(
        zender="87654321",
        zender_applicatie="ZorgSuite",
        ontvanger="0150",
        cross_ref=OWNED_REF,
        code="StUF058",
        plek="client",
        omschrijving="refused",
    )
    return {
        "conversation-heen-of-0150.xml": (
            di01(wmo301("WMO301C0001"), referentienummer=OWNED_REF),
            {**ACCEPTED, "note": "the heen message the next cases refer to"},
        ),
        "conversation-intruder-du01.xml": (
            retour_from("87654321", OWNED_REF, "WMO302C0001"),
            {
                **refused("StUF043"),
                "as": "87654321",
                "soapaction": DU01,
                "note": "the same answer as an unknown reference (test_trust_boundary)",
            },
        ),
        "conversation-intruder-du01-unknown-ref.xml": (
            retour_from("87654321", unknown, "WMO302C0002"),
            {**refused("StUF043"), "as": "87654321", "soapaction": DU01},
        ),
        "conversation-intruder-fo01.xml": (
            soap.wrap_request(fo01),
            {
                **refused("StUF043"),
                "as": "87654321",
                "soapaction": f"{env.STUF_NS}/Fo01",
                "note": "the same answer as an unknown reference",
            },
        ),
        "conversation-owner-du01-not-a-copy.xml": (
            retour_from("12345678", OWNED_REF, "WMO302C0004", heen="WMO301C0009"),
            {
                **refused("StUF058"),
                "as": "12345678",
                "soapaction": DU01,
                "note": "its Header is not the stored heenbericht's (IV028: docs/rules.md)",
            },
        ),
        "conversation-owner-du01.xml": (
            retour_from("12345678", OWNED_REF, "WMO302C0003"),
            {**ACCEPTED, "as": "12345678", "soapaction": DU01},
        ),
    }


def soap_cases() -> dict[str, tuple[bytes, dict[str, object]]]:
    good = di01()
    body = good.split(b"<soapenv:Body>", 1)[1].split(b"</soapenv:Body>", 1)[0]

    def with_header(header: bytes, payload: bytes = body) -> bytes:
        return (
            SOAP_OPEN
            + b"<soapenv:Header>"
            + header
            + b"</soapenv:Header><soapenv:Body>"
            + payload
            + b"</soapenv:Body></soapenv:Envelope>"
        )

    must = b'<x:Security xmlns:x="urn:x" soapenv:mustUnderstand="%s"/>'
    fresh = di01(wmo301("WMO301S0001"))
    fresh_body = fresh.split(b"<soapenv:Body>", 1)[1].split(b"</soapenv:Body>", 1)[0]
    fault = {"faultcode": "soapenv:MustUnderstand"}
    return {
        "soap-must-understand-1.xml": (with_header(must % b"1"), {**refused("StUF055"), **fault}),
        "soap-must-understand-true.xml": (
            with_header(must % b"true"),
            {**refused("StUF055"), **fault},
        ),
        "soap-must-understand-0.xml": (
            with_header(must % b"0", fresh_body),
            {**ACCEPTED, "note": "an optional header is ignored"},
        ),
        "soapaction-empty.xml": (
            di01(wmo301("WMO301S0002")),
            {**ACCEPTED, "soapaction": "", "note": 'SOAPAction: "" (JAX-WS Dispatch, WS-I)'},
        ),
        "soap-header-element-flood.xml": (with_header(b"<a/>" * 5000), refused("StUF055")),
        "soap-comment-flood.xml": (wrap(b"<!---->" * 5000 + body), refused("StUF055")),
        "soap-unknown-body-element.xml": (
            wrap(b'<x:Bestel xmlns:x="urn:x"/>'),
            {**refused("StUF055"), "soapaction": None},
        ),
        "soap-body-bv03.xml": (
            wrap(b'<StUF:Bv03Bericht xmlns:StUF="http://www.egem.nl/StUF/StUF0301"/>'),
            {**refused("StUF055"), "soapaction": None},
        ),
        "soap-body-envelope-other-namespace.xml": (
            wrap(body.replace(env.Generation.GGK0210.value.encode(), b"urn:not-ggk")),
            {**refused("StUF055"), "soapaction": None},
        ),
        "soap-body-text-only.xml": (wrap(b"just text"), refused("StUF055")),
        "soap-processing-instruction.xml": (
            wrap(b"<?evil data?>" + body),
            {**refused("StUF055"), "note": "PI as a Body child"},
        ),
        "du01-without-crossref.xml": (
            good.replace(b"envelopHeenbericht-ggk_Di01", b"envelopRetourbericht-ggk_Du01").replace(
                b"<StUF:berichtcode>Di01", b"<StUF:berichtcode>Du01"
            ),
            {**refused("StUF055"), "soapaction": DU01},
        ),
        "referentienummer-path-traversal.xml": (
            di01(referentienummer="../../../../etc/passwd"),
            refused("IB009"),
        ),
        "zender-applicatie-oversized.xml": (
            di01(zender_applicatie="A" * 5000),
            refused("StUF055"),
        ),
    }


def payload_cases() -> dict[str, tuple[bytes, dict[str, object]]]:
    """Hostile payloads inside a well-formed envelope."""
    body = wmo301("WMO301P0001").split(b"?>", 1)[1]
    laughs = (
        b'<!DOCTYPE lolz [<!ENTITY lol "lol">'
        + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1)) * 10) for i in range(1, 10))
        + b"]>"
    )
    return {
        "payload-billion-laughs.xml": (di01(laughs + body), refused("StUF055")),
        "payload-bom.xml": (di01(b"\xef\xbb\xbf" + wmo301("WMO301P0002")), refused("StUF055")),
        "payload-utf16.xml": (
            di01(
                wmo301("WMO301P0003")
                .decode()
                .replace('encoding="UTF-8"', 'encoding="UTF-16"')
                .encode("utf-16")
            ),
            refused("StUF055"),
        ),
        "payload-deep-nesting.xml": (
            di01(
                body.replace(
                    b"</wmo301:Bericht>", b"<a>" * 100 + b"</a>" * 100 + b"</wmo301:Bericht>"
                )
            ),
            refused("StUF055"),
        ),
        "payload-xinclude.xml": (
            di01(
                body.replace(
                    b"<wmo301:Header>",
                    b'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd"/>'
                    b"<wmo301:Header>",
                )
            ),
            refused("StUF055"),
        ),
        "payload-schema-location-network.xml": (
            di01(
                wmo301("WMO301P0004").replace(
                    b"<wmo301:Bericht ",
                    b'<wmo301:Bericht xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                    b'xsi:schemaLocation="http://www.istandaarden.nl/iwmo/3_2/wmo301/schema '
                    b'http://127.0.0.1:9/evil.xsd" ',
                )
            ),
            {**ACCEPTED, "note": "schemaLocation is never followed; our compiled XSD decides"},
        ),
        "payload-truncated.xml": (di01(body[: len(body) // 2]), refused("StUF055")),
        "payload-empty.xml": (di01(b""), refused("StUF055")),
        "payload-two-messages.xml": (di01(body + body), refused("StUF055")),
        "payload-other-standard-functie.xml": (
            di01((SAMPLES / "ijw" / "jw301.xml").read_bytes(), zender="0175", functie="WMO301"),
            {**refused("StUF052"), "note": "sent as 0150: the zender check comes first"},
        ),
    }


def credential_cases() -> dict[str, tuple[bytes, dict[str, object]]]:
    """Who may speak: a token or certificate of one partner never speaks for another."""
    return {
        "token-of-0177-as-0150.xml": (
            di01(wmo301("WMO301T0001")),
            {**refused("StUF052"), "as": None, "token": "0177"},
        ),
        "token-bogus.xml": (
            di01(wmo301("WMO301T0002")),
            {**refused("StUF052"), "as": None, "token": "bogus"},
        ),
        "token-admin-on-soap.xml": (
            di01(wmo301("WMO301T0003")),
            {**refused("StUF052"), "as": None, "token": "admin"},
        ),
        "certificate-0150-token-0177-as-0177.xml": (
            di01(wmo301("WMO301T0004"), zender="0177"),
            {**refused("StUF052"), "token": "0177", "note": "the certificate outranks the token"},
        ),
        "token-of-0150.xml": (
            di01(wmo301("WMO301T0005")),
            {**ACCEPTED, "as": None, "token": "0150"},
        ),
        "cak-speaks-for-0150.xml": (
            di01(wmo301("WMO301T0006")),
            {**refused("StUF052"), "as": "CAK"},
        ),
    }


GENERATED: dict[str, dict[str, object]] = {
    "generated-30mb-body": {**refused("IB007", 413), "builds": "a 30 MB SOAP body"},
    "generated-100k-nesting": {**refused("StUF055"), "builds": "100,000 nested elements"},
    "generated-gzip-bomb": {
        **refused("IB007", 413),
        "builds": "Content-Encoding: gzip, 48 KB expanding to 50 MB",
    },
    "generated-duplicate-other-content": {
        **refused("StUF016"),
        "builds": "same referentienummer, other payload",
    },
    "generated-truncated-request": {
        "status": None,
        "code": None,
        "builds": "Content-Length 10,000, 100 bytes, then close; and Content-Length 100, "
        "3 bytes, close at once on SOAP (0150), REST (0175) and the portal sign-in (anonymous): "
        "nobody to answer, one log line and a 499 in the access log, never a 500 or a traceback",
    },
    "generated-unauthenticated-23mb-bodies": {
        **refused("StUF052"),
        "as": None,
        "builds": "six parallel 23 MiB bodies of empty Header elements, no credential: unread",
    },
    "generated-authenticated-23mb-bodies": {
        **refused("StUF055"),
        "builds": "six parallel 23 MiB bodies of empty Header elements from 0150: refused "
        "before a tree is built; RSS +300 MiB at most, /healthz within 100 ms throughout",
    },
    "generated-valid-20mb-message": {
        **ACCEPTED,
        "builds": "a valid WMO323 of ~15 MB (a 20 MB SOAP request, one base64 text node)",
    },
    "generated-replay-json-100k-deep": {
        "status": 413,
        "code": None,
        "builds": "POST /api/v1/admin/replay (admin) with JSON nested 100,000 deep (200 KB): "
        "over the 4 KiB a replay body may have, refused before it is parsed",
    },
    "generated-slow-body": {
        "status": 408,
        "code": "StUF055",
        "builds": "headers, then a body trickling slower than body_timeout: a Fo03 StUF055",
    },
}


def http(
    method: str,
    path: str,
    status: int,
    *,
    token: str | None = None,
    body: str | None = None,
    headers: dict[str, str] | None = None,
    absent: str | None = None,
    note: str | None = None,
) -> dict[str, object]:
    """A request to the REST/HTTP side: ``token`` names whose token it carries (a partner id
    or ``admin``), ``absent`` a text the answer must not contain, ``note`` why it matters."""
    case: dict[str, object] = {"request": f"{method} {path}", "status": status, "code": None}
    for key, value in (
        ("token", token),
        ("body", body),
        ("headers", headers),
        ("absent", absent),
        ("note", note),
    ):
        if value is not None:
            case[key] = value
    return case


HTTP: dict[str, dict[str, object]] = {
    "http-inbox-limit-not-a-number": http("GET", "/api/v1/inbox?limit=abc", 400, token="12345678"),
    "http-inbox-limit-negative": http("GET", "/api/v1/inbox?limit=-1", 400, token="12345678"),
    "http-inbox-limit-huge": http(
        "GET", "/api/v1/inbox?limit=99999999999999999999", 400, token="12345678"
    ),
    "http-inbox-no-credential": http("GET", "/api/v1/inbox", 401),
    "http-dead-letters-limit-abc": http(
        "GET", "/api/v1/admin/dead-letters?limit=abc", 400, token="admin"
    ),
    "http-dead-letters-partner-token": http("GET", "/api/v1/admin/dead-letters", 403, token="0150"),
    "http-overdue-days-nan": http("GET", "/api/v1/admin/overdue?days=nan", 400, token="admin"),
    "http-overdue-days-infinite": http("GET", "/api/v1/admin/overdue?days=inf", 400, token="admin"),
    "http-overdue-days-negative": http("GET", "/api/v1/admin/overdue?days=-3", 400, token="admin"),
    "http-replay-not-json": http("POST", "/api/v1/admin/replay", 400, token="admin", body="{"),
    "http-replay-json-array": http("POST", "/api/v1/admin/replay", 400, token="admin", body="[]"),
    "http-replay-since-text": http(
        "POST", "/api/v1/admin/replay", 400, token="admin", body='{"since": "yesterday"}'
    ),
    "http-replay-since-nan": http(
        "POST", "/api/v1/admin/replay", 400, token="admin", body='{"since": NaN}'
    ),
    "http-replay-message-id-number": http(
        "POST", "/api/v1/admin/replay", 400, token="admin", body='{"message_id": 5}'
    ),
    "http-replay-json-nested-deep": http(
        "POST",
        "/api/v1/admin/replay",
        400,
        token="admin",
        body="[" * 2000 + "]" * 2000,
        note="within the 4 KiB limit, deeper than Python's recursion limit",
    ),
    "http-schema-file-name-too-long": http(
        "GET",
        "/ggk/wsdl/" + "a" * 300 + ".xsd",
        404,
        note="longer than a file name may be: refused before the file system is asked",
    ),
    "http-schema-file-nul": http("GET", "/ggk/wsdl/stuf0301_types.wsdl%00", 400),
    "http-replay-not-utf8": http("POST", "/api/v1/admin/replay", 400, token="admin", body="\udcff"),
    "http-submit-not-xml": http("POST", "/api/v1/messages", 422, token="0150", body="hello"),
    "http-submit-bad-idempotency-key": http(
        "POST",
        "/api/v1/messages",
        400,
        token="0150",
        body=WMO301.decode(),
        headers={"Idempotency-Key": "../../x"},
    ),
    "http-submit-gzip-not-gzip": http(
        "POST",
        "/api/v1/messages",
        400,
        token="0150",
        body="this is not gzip",
        headers={"Content-Encoding": "gzip"},
    ),
    "http-submit-unknown-content-encoding": http(
        "POST",
        "/api/v1/messages",
        400,
        token="0150",
        body="x",
        headers={"Content-Encoding": "x-evil"},
    ),
    "http-status-nul-in-path": http("GET", "/api/v1/messages/a%00b", 400, token="0150"),
    "http-status-unknown-id": http("GET", "/api/v1/messages/" + "f" * 32, 404, token="0150"),
    "http-status-very-long-id": http(
        "GET",
        "/api/v1/messages/" + "a" * 4000,
        400,
        token="0150",
        note="longer than the document's maxLength for an id: refused before the store is asked",
    ),
    "http-metrics-anonymous": http("GET", "/metrics", 401),
    "http-metrics-partner-token": http("GET", "/metrics", 401, token="0150"),
    "http-metrics-admin": http("GET", "/metrics", 200, token="admin"),
    "http-wsdl-host-header": http(
        "GET",
        "/ggk/OntvangAsynchroon?wsdl",
        200,
        headers={"Host": "evil.example"},
        absent="evil.example",
    ),
    "http-soap-get-without-wsdl": http("GET", "/ggk/OntvangAsynchroon", 405),
    "http-schema-file-traversal": http("GET", "/ggk/wsdl/..%2f..%2fgateway.toml", 404),
    "http-unknown-path": http("GET", "/admin", 404),
    "http-inbox-item-unknown-id": http(
        "GET",
        "/api/v1/inbox/ffffffffffffffffffffffffffffffff",
        404,
        token="12345678",
        note="looked up in the partner's own inbox before any payload is read "
        "(on Kafka: before its events record is fetched)",
    ),
    "http-inbox-item-very-long-id": http(
        "GET", "/api/v1/inbox/" + "a" * 4000, 400, token="12345678"
    ),
    "http-inbox-item-nul-in-path": http("GET", "/api/v1/inbox/a%00b", 400, token="12345678"),
    "http-stats-other-gemeente": http(
        "GET",
        "/api/v1/stats?gemeente=0175",
        403,
        token="0150",
        note="a gemeente reads its own figures only; asking for another's is refused, "
        "not answered empty",
    ),
    "http-stats-aanbieder": http("GET", "/api/v1/stats", 403, token="12345678"),
    "http-stats-no-credential": http("GET", "/api/v1/stats", 401),
    "http-stats-sql-in-gemeente": http(
        "GET",
        "/api/v1/stats?gemeente=0150%27%20OR%20%271%27=%271",
        400,
        token="0150",
        note="not a partner id (the document's pattern): refused before the store is asked",
    ),
    "http-stats-sql-in-gemeente-admin": http(
        "GET", "/api/v1/stats?gemeente=0150%27%20OR%20%271%27=%271", 400, token="admin"
    ),
    "http-stats-month-out-of-range": http("GET", "/api/v1/stats?from=2026-13", 400, token="admin"),
    "http-stats-month-nul": http("GET", "/api/v1/stats?to=2026-1%00", 400, token="admin"),
    "http-stats-unknown-format": http(
        "GET", "/api/v1/stats?format=..%2F..%2Fetc%2Fpasswd", 400, token="admin"
    ),
    "portal-page-with-an-api-token": http(
        "GET",
        "/portal/inbox",
        303,
        token="0175",
        note="a bearer token is not a portal session: the portal signs in through its form "
        "only (a browser cannot be made to send a token, so no CSRF through one)",
    ),
    "portal-operator-page-with-the-admin-token": http("GET", "/portal/queues", 303, token="admin"),
    "portal-replay-without-session": http(
        "POST",
        "/portal/replay/ffffffffffffffffffffffffffffffff",
        303,
        body="confirm=yes",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    "portal-download-traversal": http("GET", "/portal/inbox/..%2F..%2Fgateway.toml", 303),
    "portal-signin-cross-site": http(
        "POST",
        "/portal/signin",
        403,
        body="method=token&token=x",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": "https://evil.example",
        },
        note="refused before the token is looked at (login CSRF)",
    ),
    "portal-signin-without-csrf": http(
        "POST",
        "/portal/signin",
        403,
        body="method=token&token=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    "portal-signin-forged-session-cookie": http(
        "GET",
        "/portal/inbox",
        303,
        headers={"Cookie": "__Host-ggk-session=eyJwIjoiMDE3NSIsImEiOnRydWV9.AAAA"},
    ),
    "portal-signin-huge-cookie": http(
        "GET", "/portal/inbox", 303, headers={"Cookie": "__Host-ggk-session=" + "A" * 4000 + ".x"}
    ),
    "http-stats-month-trailing-newline": http(
        "GET",
        "/api/v1/stats?from=2026-10%0A",
        400,
        token="admin",
        note="a month is matched whole: `$` would let a trailing newline through",
    ),
    "portal-signin-huge-body": http(
        "POST",
        "/portal/signin",
        413,
        body="token=" + "A" * 10000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        note="the one form read before anyone is known is bounded (4 KiB), not the message limit",
    ),
    "portal-signin-compressed-form": http(
        "POST",
        "/portal/signin",
        415,
        body="csrf=x&method=token&token=x",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Content-Encoding": "gzip",
        },
        note="a browser never compresses a form: a compressed one is refused unread, never "
        "inflated (its size says nothing about what it expands to)",
    ),
    "http-ebms-partner-token-without-certificate": http(
        "POST",
        "/ebms",
        401,
        token="0150",
        body="<x/>",
        headers={"Content-Type": "text/xml", "SOAPAction": '"ebXML"'},
        note="an MSH is its client certificate (Digikoppeling): a REST token is no credential",
    ),
}
"""Hostile requests to the REST and HTTP side, answered by a problem document, not a 500."""


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    expected: dict[str, dict[str, object]] = {}
    for name, (data, outcome) in cases().items():
        (OUT / name).write_bytes(data)
        expected[name] = {"soapaction": DI01, "as": "0150", **outcome}
    expected.update(GENERATED)
    expected.update(HTTP)
    (OUT / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    print(f"wrote {len(expected)} cases to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
