"""Property-based fuzzing (hypothesis): whatever bytes arrive, the parsers answer with their own
precise error or a report — never another exception — and routing keeps its invariants.

``python -m benchmarks.fuzz --minutes N`` runs the same properties for longer.
"""

from __future__ import annotations

from datetime import date

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import envelope as env
from gateway import soap
from gateway.schemas import SchemaRegistry
from gateway.validation import Validator
from gateway.xmlsafe import ParseLimits, UnsafeXml, parse_untrusted
from routing.partners import PartnerKind
from routing.table import Action, Destination, Refusal, RoutedMessage, RouteRule, RouteTable
from tests.conftest import sample

VALIDATOR = Validator(SchemaRegistry(), today=date(2026, 11, 22))
SEEDS = [
    sample(name).encode()
    for name in (
        "iwmo/wmo301.xml",
        "ijw/jw323.xml",
        "iwmo/wmo325.xml",
        "envelopes/di01-wmo301-ggk0210.xml",
        "envelopes/du01-wmo302-ggk0210.xml",
        "envelopes/fo01-stuf055.xml",
    )
]
EXAMPLES = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""The number of examples comes from the active profile (tests/conftest.py): 200 in the test
suite, more in ``python -m benchmarks.fuzz``."""


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real sample with a few random byte flips, insertions, deletions or cuts."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            data = bytearray(b"<")
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "cut", "dup"]))
        if kind == "flip":
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 20))]
        elif kind == "cut":
            del data[at:]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 40))]
    return bytes(data) or b"<"


def in_soap_body(body: bytes) -> bytes:
    """Possibly broken bytes as the Body of a SOAP request (no parsing of ``body``)."""
    return (
        b'<soapenv:Envelope xmlns:soapenv="'
        + soap.SOAP11_NS.encode()
        + b'"><soapenv:Body>'
        + body.split(b"?>", 1)[-1]
        + b"</soapenv:Body></soapenv:Envelope>"
    )


XMLISH = st.text(alphabet=st.sampled_from(list("<>/=\"' ?!&;:[]-abcxyz\n")), max_size=200)


@EXAMPLES
@given(st.one_of(st.binary(max_size=400), XMLISH.map(str.encode), mutated()))
def test_hardened_parser_only_raises_unsafe_xml(data: bytes) -> None:
    try:
        parse_untrusted(data, ParseLimits(max_bytes=100_000))
    except UnsafeXml as exc:
        assert exc.problem.value and exc.message


@EXAMPLES
@given(st.one_of(st.binary(max_size=400), mutated()))
def test_validation_always_returns_a_report(data: bytes) -> None:
    report = VALIDATOR.validate(data, "fuzz")
    for problem in report.problems:
        assert problem.rule and problem.message
    assert report.valid == (not report.errors)


@EXAMPLES
@given(mutated())
def test_envelope_reader_only_raises_envelope_error(data: bytes) -> None:
    try:
        root = parse_untrusted(data)
    except UnsafeXml:
        return
    if env.is_envelope(root):
        try:
            parsed = env.parse(root)
        except env.EnvelopeError as exc:
            assert exc.problems and all(p.rule for p in exc.problems)
        else:
            env.check(parsed)


@EXAMPLES
@given(
    st.one_of(st.binary(max_size=300), mutated().map(in_soap_body)),
    st.one_of(st.none(), st.text(max_size=80)),
)
def test_soap_unwrap_only_raises_soap_fault(data: bytes, action: str | None) -> None:
    try:
        soap.unwrap(data, action, ParseLimits(max_bytes=100_000))
    except soap.SoapFault as fault:
        assert fault.code and fault.plek in ("client", "server") and fault.omschrijving


PARTNERS = ["0150", "0175", "12345678", "CAK", "SVB"]
FUNCTIES = ["WMO301", "WMO305", "JW301", "JW315", "WMO302"]


@st.composite
def tables(draw: st.DrawFn) -> RouteTable:
    rules = []
    for i in range(draw(st.integers(0, 5))):
        rules.append(
            RouteRule(
                name=f"r{i}",
                action=draw(st.sampled_from(list(Action))),
                messages=frozenset(draw(st.lists(st.sampled_from(FUNCTIES), max_size=2))),
                standard=draw(st.sampled_from([None, "iwmo", "ijw"])),
                sender_kind=draw(st.sampled_from([None, *PartnerKind])),
                receiver=draw(st.sampled_from([None, *PARTNERS])),
                copy_to=tuple(draw(st.lists(st.sampled_from(PARTNERS), max_size=3))),
                final=draw(st.booleans()),
            )
        )
    return RouteTable(rules)


@EXAMPLES
@given(
    tables(),
    st.sampled_from(FUNCTIES),
    st.sampled_from(PARTNERS),
    st.sampled_from(list(PartnerKind)),
    st.sampled_from(PARTNERS),
)
def test_route_matcher_invariants(
    table: RouteTable, functie: str, sender: str, kind: PartnerKind, receiver: str
) -> None:
    msg = RoutedMessage(
        functie, "ijw" if functie.startswith("JW") else "iwmo", sender, kind, receiver
    )
    outcome = table.route(msg)
    if isinstance(outcome, Refusal):
        assert outcome.code
        return
    partners = [d.partner for d in outcome]
    assert len(partners) == len(set(partners)), "a partner gets one delivery per message"
    assert Destination(receiver, False, outcome[partners.index(receiver)].rule) in outcome
    assert all(d.partner != sender for d in outcome if d.copy), "no copy back to the sender"
    assert all(d.copy for d in outcome if d.partner != receiver)
