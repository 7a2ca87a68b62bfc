"""The C screen never hides a finding: with it, every report equals the all-Python report.

The reference is ``Validator(screen=False)``, which runs every rule in Python. Equal reports
on every rule case and near miss (tests/test_rules.py), every sample, and a corpus of mutated
samples mean the screen flagged whatever Python finds there; the compiler's own errors (an
unknown element name, an undefined key) are shown separately.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.identify import identify
from gateway.report import ValidationReport
from gateway.rules import screens
from gateway.rules.screen import Key, ScreenError, compile_screen, expand, grouped, names_of
from gateway.rules.screens import IN_PYTHON, KEY_SET_LIMIT, SCREENED_NUMBERS
from gateway.schemas import SchemaRegistry
from gateway.validation import Validator
from gateway.xmlsafe import parse_untrusted
from kit.messages import big_declaratie
from tests.conftest import TODAY, sample
from tests.test_rules import CASES, NEAR_MISSES, Edit, _apply

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SCREENED_SAMPLES = sorted(
    f"{standard}/{prefix}{n}.xml"
    for standard, prefix in (("iwmo", "wmo"), ("ijw", "jw"))
    for n in SCREENED_NUMBERS
)
WMO301_XSD = Path(__file__).resolve().parent.parent / "schemas" / "iwmo" / "3_2" / "wmo301.xsd"


@pytest.fixture(scope="module")
def pair() -> tuple[Validator, Validator]:
    registry = SchemaRegistry()
    return Validator(registry, today=TODAY), Validator(registry, today=TODAY, screen=False)


def _seen(report: ValidationReport) -> list[tuple[object, ...]]:
    return [(p.rule, p.path, p.line, p.message, p.expected, p.found) for p in report.problems]


def _same(pair: tuple[Validator, Validator], data: bytes) -> ValidationReport:
    screened, python = (v.validate(data) for v in pair)
    assert _seen(screened) == _seen(python)
    return python


@pytest.mark.parametrize(
    ("rule_id", "base", "edits"),
    CASES + NEAR_MISSES,
    ids=[f"{r}-{b.split('/')[-1][:-4]}-{i}" for i, (r, b, _) in enumerate(CASES + NEAR_MISSES)],
)
def test_screened_report_equals_python_on_every_rule_case(
    pair: tuple[Validator, Validator], rule_id: str, base: str, edits: list[Edit]
) -> None:
    _same(pair, _apply(base, edits))


def test_screened_report_equals_python_on_every_sample(
    pair: tuple[Validator, Validator],
) -> None:
    files = sorted(SAMPLES.rglob("*.xml"))
    assert len(files) > 30
    fired = set()
    for path in files:
        fired |= {p.rule for p in _same(pair, path.read_bytes()).problems}
    assert {"CS002", "CS089", "TR346", "TR358", "CS340", "CD066"} <= fired


@pytest.mark.parametrize("base", SCREENED_SAMPLES)
def test_every_rule_of_a_screened_type_is_screened_and_silent_on_its_sample(
    pair: tuple[Validator, Validator], base: str
) -> None:
    """What the screen is for: on a clean message no rule reaches Python."""
    screened, _ = pair
    root = parse_untrusted(sample(base).encode())
    identified = identify(root, screened.registry)
    assert not isinstance(identified, list)
    screen = screened._screen_for(identified)
    assert screen is not None
    applying = {r.id for r in screened._rules_for(identified.message, identified.info.release)}
    assert applying - IN_PYTHON <= screen.screened, sorted(applying - screen.screened)
    assert not screen.screened & IN_PYTHON
    assert screen.flagged(root, TODAY) == frozenset()


def test_the_screen_compares_the_schemas_xsd_versions_for_iv034() -> None:
    """The versions are constants of the compiled screen (one screen per schema file), and
    one that does not name them at all (None: the schema declares none) never flags IV034."""
    names = names_of(WMO301_XSD)
    tests = {"IV034": _wmo301_tests()["IV034"]}
    root = parse_untrusted(sample("iwmo/wmo301.xml").encode())
    assert compile_screen(tests, {}, names).flagged(root, TODAY) == frozenset()
    assert compile_screen(tests, {}, names, ("1.0.0", "1.0.0")).flagged(root, TODAY) == frozenset()
    assert compile_screen(tests, {}, names, ("1.0.0", "9.9.9")).flagged(root, TODAY) == {"IV034"}
    assert compile_screen(tests, {}, names, ("9'9", None)).flagged(root, TODAY) == {"IV034"}
    with pytest.raises(ScreenError, match="literal"):
        compile_screen(tests, {}, names, ("9'\"9", None))


def _wmo301_tests() -> dict[str, str]:
    root = parse_untrusted(sample("iwmo/wmo301.xml").encode())
    identified = identify(root, SchemaRegistry())
    assert not isinstance(identified, list)
    return screens.tests_for(identified.message)


# --- mutation corpus ----------------------------------------------------------------------------

_TEXT = re.compile(r">([^<>\s][^<>]*)<")
_VALUES = {
    "date": [
        "2020-12-31",
        "2021-01-01",
        "2026-10-01",
        "2026-10-31",
        "2026-11-30",
        "2026-02-28",
        "2024-02-29",
        "2026-10-08",
        "1900-01-01",
        "1906-10-01",
        "2099-01-01",
        "2026-09-01",
    ],
    "code": [
        "01",
        "02",
        "03",
        "04",
        "05",
        "06",
        "11",
        "13",
        "14",
        "16",
        "83",
        "84",
        "1",
        "2",
        "3",
        "4",
        "6",
        "8",
        "C",
        "D",
        "NL",
        "BE",
        "0",
    ],
    "number": [
        "0",
        "+0",
        "1",
        "2",
        "45",
        " 45 ",
        "+117",
        "100",
        "117",
        "6250",
        "87500",
        "132500",
        "-1",
    ],
}


def _kind(value: str) -> str | None:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return "date"
    if re.fullmatch(r"[0-9A-Z]{1,2}", value):
        return "code"
    if re.fullmatch(r"\d{1,9}", value):
        return "number"
    return None


def _mutate(text: str, seed: int, edits: int) -> str:
    """Replace ``edits`` text values by values of the same shape that rules care about."""
    rng = random.Random(seed)
    spots = [m for m in _TEXT.finditer(text) if _kind(m.group(1))]
    for m in sorted(rng.sample(spots, min(edits, len(spots))), key=lambda m: -m.start()):
        kind = _kind(m.group(1))
        assert kind is not None
        text = text[: m.start(1)] + rng.choice(_VALUES[kind]) + text[m.end(1) :]
    return text


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)
@given(
    base=st.sampled_from(SCREENED_SAMPLES),
    seed=st.integers(0, 2**32),
    edits=st.integers(1, 4),
)
def test_screened_report_equals_python_on_mutated_samples(
    pair: tuple[Validator, Validator], base: str, seed: int, edits: int
) -> None:
    _same(pair, _mutate(sample(base), seed, edits).encode())


def test_the_mutation_corpus_reaches_the_rules(pair: tuple[Validator, Validator]) -> None:
    """The corpus is not all XSD errors: many mutants are XSD-valid and many fire rules."""
    _, python = pair
    rules_fired: set[str] = set()
    valid_with_findings = 0
    for base in SCREENED_SAMPLES:
        for seed in range(40):
            report = python.validate(_mutate(sample(base), seed, 2).encode())
            found = {p.rule for p in report.problems}
            if found and not any(r.startswith(("XSD", "RS", "CS015")) for r in found):
                valid_with_findings += 1
                rules_fired |= found
    assert valid_with_findings > 60, valid_with_findings
    assert len(rules_fired) > 15, sorted(rules_fired)


# --- the compiler ---------------------------------------------------------------------------------


def test_names_are_qualified_by_the_schema_that_declares_them() -> None:
    names = names_of(WMO301_XSD)
    assert expand("Client/Naam/NaamGebruik", names) == (
        "m:Client/*[self::m:Naam or self::b:Naam]/b:NaamGebruik"
    )
    assert expand("S(Soort) = 'NL'", names) == "normalize-space(m:Soort) = 'NL'"
    assert expand("D(Client/Geboortedatum/Datum)", names) == (
        "number(translate(normalize-space(m:Client/m:Geboortedatum/b:Datum), '-', ''))"
    )
    assert expand("preceding-sibling::Contact", names) == "preceding-sibling::m:Contact"
    assert expand("m:Client", names) == "m:Client"
    # a name both schemas declare: a union where it begins a path, a predicate elsewhere and
    # in match patterns (where XPath 1.0 and XSLT allow no union step)
    assert expand("S(Naam/Achternaam)", names) == (
        "normalize-space((m:Naam | b:Naam)/b:Achternaam)"
    )
    assert expand("Client[Naam]", names) == "m:Client[(m:Naam | b:Naam)]"
    assert expand("Relaties/Relatie/Naam", names, pattern=True) == (
        "m:Relaties/m:Relatie/*[self::m:Naam or self::b:Naam]"
    )
    assert expand("Naam", names, pattern=True) == "*[self::m:Naam or self::b:Naam]"


def test_an_unknown_name_or_key_is_an_error_not_a_silent_miss() -> None:
    names = names_of(WMO301_XSD)
    with pytest.raises(ScreenError, match="Clientt"):
        compile_screen({"CS002": "Clientt/Bsn"}, {}, names)
    with pytest.raises(ScreenError, match="undefined keys"):
        compile_screen({"TR101": "count(key('nope', 1)) > 1"}, {}, names)
    with pytest.raises(ScreenError, match="undefined sets"):
        compile_screen({"TR101": "repeated('nope')"}, {}, names)
    with pytest.raises(ScreenError, match="does not compile"):
        compile_screen({"TR101": "Client[["}, {"k": Key("Client", "Bsn")}, names)


def test_a_screen_that_fails_while_running_flags_every_rule() -> None:
    """An XPath fault at run time (count() of a number) costs time, never a check."""
    screen = compile_screen({"CS002": "count(1) > 0", "CS318": "1 = 0"}, {}, names_of(WMO301_XSD))
    root = parse_untrusted(sample("iwmo/wmo301.xml").encode())
    assert screen.flagged(root, TODAY) == frozenset({"CS002", "CS318"})


def test_a_big_set_is_left_to_the_linear_python_check(pair: tuple[Validator, Validator]) -> None:
    """Hostile size: key() copies a value's group on every call (n equal values: n² in
    libxslt). Above KEY_SET_LIMIT candidates the uniqueness tests flag without looking and the
    Python rules, linear, decide: here 2,001 products with distinct ToewijzingNummers."""
    screened, _ = pair
    text = sample("iwmo/wmo301.xml")
    tag = "wmo301:ToegewezenProduct"
    start, end = text.index(f"<{tag}>"), text.index(f"</{tag}>") + len(tag) + 3
    block = text[start:end]
    products = "".join(block.replace(">1001<", f">{9000 + i}<") for i in range(KEY_SET_LIMIT + 1))
    data = (text[:start] + products + text[end:]).encode()
    root = parse_untrusted(data)
    identified = identify(root, screened.registry)
    assert not isinstance(identified, list)
    screen = screened._screen_for(identified)
    assert screen is not None
    assert "TR101" in screen.flagged(root, TODAY)
    report = _same(pair, data)
    assert "TR101" not in {p.rule for p in report.problems}
    assert "TR302" in {p.rule for p in report.problems}  # equal products do overlap


def test_one_violation_deep_in_a_large_declaratie_is_found(
    pair: tuple[Validator, Validator],
) -> None:
    """The screen on a 3 MB declaratie (over 4,000 prestaties, past KEY_SET_LIMIT, so the
    uniqueness sets flag unexamined): one prestatie, number 4,000, claims in euros (Eenheid 83)
    with a tarief and a volume that is not the amount. The screen flags CD087 and CS339 and
    the report equals the all-Python one."""
    screened, _ = pair
    root = etree.fromstring(big_declaratie(3_200_000))
    prestaties = root.findall(".//{*}Prestatie")
    assert len(prestaties) > 4000
    eenheid = prestaties[3999].find("{*}Eenheid")
    assert eenheid is not None
    eenheid.text = "83"
    data = etree.tostring(root, encoding="UTF-8", xml_declaration=True)
    identified = identify(root, screened.registry)
    assert not isinstance(identified, list)
    screen = screened._screen_for(identified)
    assert screen is not None
    assert {"CD087", "CS339"} <= screen.flagged(root, TODAY)
    report = _same(pair, data)
    found = {p.rule for p in report.problems}
    assert {"CD087", "CS339"} <= found, found


def test_tests_on_the_same_nodes_share_one_walk_and_others_stay_as_written() -> None:
    tests = {
        "A1": "Client/Product[S(Code) = ']'][Omvang]",
        "A2": "Client/Product[not(Budget)]",
        "B1": "(Client/Naam | Client/Relatie/Naam)[S(NaamGebruik) = '6']",
        "B2": "(Client/Naam | Client/Relatie/Naam)[Partnernaam]",
        "P1": "Client/Product[position() = 1][Budget]",  # positional: never regrouped
        "L1": "Client/Contact[Adres]",  # the only test on its nodes
        "X1": "count(Client/Product) > 1 and Client/Product[Budget]",
    }
    assert grouped(tests) == {
        "Client/Product": [("A1", "(S(Code) = ']') and (Omvang)"), ("A2", "(not(Budget))")],
        None: [("P1", tests["P1"]), ("L1", tests["L1"]), ("X1", tests["X1"])],
        "(Client/Naam | Client/Relatie/Naam)": [
            ("B1", "(S(NaamGebruik) = '6')"),
            ("B2", "(Partnernaam)"),
        ],
    }
