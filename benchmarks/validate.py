"""Validation throughput: our full path against raw lxml parse+validate of the same bytes.

Run: ``python -m benchmarks.validate`` (``--rounds``/``--seconds`` to change the effort).

Documents: a realistic WMO301 (the sample without indentation, about 3 KB) and a WMO323 of
about 1 MB (the sample's clients repeated with unique references and a matching total).
"Raw lxml" is the ceiling: ``etree.fromstring`` with a plain parser plus ``XMLSchema.validate``
on the compiled schema. "Ours" is ``Validator.validate``: hardened parse with prolog and depth
checks, identification, XSD, and every business rule that applies. The figures are medians of
several timed rounds measured in one run, so the ratio is meaningful even on a noisy machine.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

from lxml import etree

from gateway.schemas import SchemaRegistry
from gateway.validation import Validator

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
TODAY = date(2026, 11, 22)


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


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` of wall time."""
    fn()  # warm up
    calls, started = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return calls / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="per round and variant")
    args = parser.parse_args()

    registry = SchemaRegistry()
    validator = Validator(registry, today=TODAY)
    xsd_only = Validator(registry, today=TODAY, rules=[])
    documents = {
        "WMO301": compact((SAMPLES / "iwmo" / "wmo301.xml").read_bytes()),
        "WMO323 (1 MB)": big_declaratie(),
    }
    plain = etree.XMLParser()
    print(
        f"# validate benchmark — {platform.python_implementation()} "
        f"{platform.python_version()}, lxml {etree.__version__}, {platform.machine()}"
    )
    print(f"rounds={args.rounds}, {args.seconds}s per round and variant; medians\n")
    print(
        "| document | size | raw lxml msg/s | ours, level 1 (XSD) msg/s | ratio | "
        "ours, all rules msg/s | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, data in documents.items():
        report = validator.validate(data)
        assert report.valid, [p.message for p in report.problems]
        assert report.namespace is not None
        schema = registry.get(report.namespace)
        assert schema is not None
        xsd = schema.xsd

        def raw(data: bytes = data, xsd: etree.XMLSchema = xsd) -> bool:
            return bool(xsd.validate(etree.fromstring(data, plain)))

        def level1(data: bytes = data) -> bool:
            return xsd_only.validate(data).valid

        def full(data: bytes = data) -> bool:
            return validator.validate(data).valid

        rates: dict[str, list[float]] = {"raw": [], "level1": [], "full": []}
        for _ in range(args.rounds):
            for key, fn in (("raw", raw), ("level1", level1), ("full", full)):
                rates[key].append(rate(fn, args.seconds))
        r, one, o = (statistics.median(rates[k]) for k in ("raw", "level1", "full"))
        print(
            f"| {name} | {len(data):,} B | {r:,.1f} | {one:,.1f} | {one / r:.2f} | "
            f"{o:,.1f} | {o / r:.2f} |"
        )


if __name__ == "__main__":
    main()
