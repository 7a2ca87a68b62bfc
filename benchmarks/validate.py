"""Validation throughput: our full path against raw lxml parse+validate of the same bytes.

Run: ``python -m benchmarks.validate`` (``--rounds``/``--seconds`` to change the effort).

Documents: a realistic WMO301 (the sample without indentation, about 3 KB) and a WMO323 of
about 1 MB (the sample's clients repeated with unique references and a matching total).
"Raw lxml" is the ceiling: ``etree.fromstring`` with a plain parser plus ``XMLSchema.validate``
on the compiled schema. "Ours" is ``Validator.validate``: hardened parse with prolog and depth
checks, identification, XSD, and every business rule that applies: the C screen
(``gateway/rules/screen.py``) first, then the rules it flags in Python. "Python rules" is the
same without the screen (every rule in Python), the path before issue 16. The figures are
medians of several timed rounds measured in one run, the variants taking turns, so the ratios
are meaningful even on a noisy machine.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import time
from collections.abc import Callable
from datetime import date

from lxml import etree

from gateway.schemas import SchemaRegistry
from gateway.validation import Validator
from kit.messages import SAMPLES, big_declaratie, compact

TODAY = date(2026, 11, 22)


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
    parser.add_argument(
        "--scaling",
        type=int,
        nargs="*",
        metavar="MB",
        help="instead: time and peak memory of one valid declaratie of each size (e.g. 1 4 25)",
    )
    args = parser.parse_args()
    if args.scaling:
        scaling(args.scaling)
        return

    registry = SchemaRegistry()
    validator = Validator(registry, today=TODAY)
    python_rules = Validator(registry, today=TODAY, screen=False)
    xsd_only = Validator(registry, today=TODAY, rules=[], screen=False)
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
        "ours, all rules msg/s | ratio | Python rules, no screen msg/s | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
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

        def python(data: bytes = data) -> bool:
            return python_rules.validate(data).valid

        variants = {"raw": raw, "level1": level1, "full": full, "python": python}
        rates: dict[str, list[float]] = {key: [] for key in variants}
        for _ in range(args.rounds):
            for key, fn in variants.items():
                rates[key].append(rate(fn, args.seconds))
        r, one, o, py = (statistics.median(rates[k]) for k in variants)
        print(
            f"| {name} | {len(data):,} B | {r:,.1f} | {one:,.1f} | {one / r:.2f} | "
            f"{o:,.1f} | {o / r:.2f} | {py:,.1f} | {py / r:.2f} |"
        )


def scaling(sizes: list[int]) -> None:
    """Cost in size: seconds per valid WMO323 of each size, and the process's peak RSS after
    each (sizes ascending, so each peak is the largest document's so far)."""
    validator = Validator(SchemaRegistry(), today=TODAY)
    print("| declaratie | bytes | validate s (median of 3) | s per MB | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for mb in sorted(sizes):
        data = big_declaratie(mb * 1_000_000)
        times = []
        for _ in range(3):
            started = time.perf_counter()
            report = validator.validate(data)
            times.append(time.perf_counter() - started)
            assert report.valid, [p.message for p in report.problems[:3]]
        seconds = statistics.median(times)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"| {mb} MB | {len(data):,} | {seconds:.3f} | {seconds / mb:.3f} | {peak:,.0f} |")


if __name__ == "__main__":
    main()
