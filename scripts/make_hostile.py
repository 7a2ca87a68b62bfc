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


def di01(payload: bytes = WMO301, **overrides: str) -> bytes:
    fields = {
        "zender": "0150",
        "zender_applicatie": "DOWRsociaal",
        "ontvanger": "12345678",
        "functie": "WMO301",
        **overrides,
    }
    return soap.wrap_request(env.build_di01(payload, **fields))  # type: ignore[arg-type]


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
                **ACCEPTED,
                "as": "12345678",
                "soapaction": DU01,
                "note": "its Di01 did not pass this gateway: routed by the envelope",
            },
        ),
        "no-credentials.xml": (di01(), {**refused("StUF052"), "as": None}),
    }
    return c


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
        "builds": "Content-Length 10,000, 100 bytes, then close",
    },
    "generated-slow-body": {
        "status": 408,
        "code": None,
        "builds": "headers, then a body trickling slower than body_timeout",
    },
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    expected: dict[str, dict[str, object]] = {}
    for name, (data, outcome) in cases().items():
        (OUT / name).write_bytes(data)
        expected[name] = {"soapaction": DI01, "as": "0150", **outcome}
    expected.update(GENERATED)
    (OUT / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    print(f"wrote {len(expected)} cases to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
