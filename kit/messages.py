"""Messages made to measure, for tests and benchmarks alike: samples without indentation and
a valid WMO323 declaratie grown to any size (the 1 MB document of the validation benchmark,
the 15 MB one of the hostile corpus)."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def compact(data: bytes) -> bytes:
    parser = etree.XMLParser(remove_blank_text=True)
    root = etree.fromstring(data, parser)
    body: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=True)
    return body


def big_declaratie(target_bytes: int = 1_000_000) -> bytes:
    """WMO323 grown to ``target_bytes`` by repeating its clients, still fully valid."""
    root = etree.fromstring(compact((SAMPLES / "iwmo" / "wmo323.xml").read_bytes()))
    clienten = root.find("{*}Declaratie/{*}Clienten")
    assert clienten is not None
    templates = [etree.tostring(c) for c in clienten]
    total = sum(_signed(c) for c in clienten)
    n = 0
    size = len(etree.tostring(root))
    per_round = 0  # measured once: re-serialising the growing tree every round is O(n²)
    while size < target_bytes:
        for template in templates:
            n += 1
            client = etree.fromstring(template)
            bsn = client.find("{*}Bsn")
            assert bsn is not None
            bsn.text = test_bsn(n)  # a client occurs once per claim (TR101)
            for ref in client.iter("{*}ReferentieNummer", "{*}VorigReferentieNummer"):
                ref.text = f"{ref.text}-{n}"[:20]
            clienten.append(client)
            total += _signed(client)
        if not per_round:
            per_round = len(etree.tostring(root)) - size
        size += per_round
    totaal = root.find("{*}Declaratie/{*}TotaalIngediendBedrag")
    assert totaal is not None
    totaal[0].text = str(abs(total))
    totaal[1].text = "C" if total < 0 else "D"
    body: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=True)
    return body


def test_bsn(n: int) -> str:
    """A distinct BSN of the 9xxxxxxxx test range for each n < 1,000,000 that passes the
    eleven-test (CS002): the eighth digit is chosen so the check digit is not 10."""
    head = f"9{n:06d}"
    for eighth in "0123456789":
        prefix = head + eighth
        weighted = sum(w * int(d) for w, d in zip((9, 8, 7, 6, 5, 4, 3, 2), prefix, strict=True))
        if weighted % 11 < 10:
            return f"{prefix}{weighted % 11}"
    raise AssertionError("unreachable: the eighth digit reaches every remainder")


def _signed(client: etree._Element) -> int:
    amount = 0
    for bedrag in client.iter("{*}IngediendBedrag"):
        value = int(bedrag[0].text or "0")
        amount += -value if bedrag[1].text == "C" else value
    return amount
