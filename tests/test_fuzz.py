"""Property-based fuzzing (hypothesis): whatever bytes arrive, the parsers answer with their own
precise error or a report — never another exception — and routing keeps its invariants.

``python -m benchmarks.fuzz --minutes N`` runs the same properties for longer.
"""

from __future__ import annotations

import contextlib
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import envelope as env
from gateway import soap
from gateway.ebms import compose
from gateway.ebms import message as ebms
from gateway.ebms.signing import Algorithms, SignatureProblem, Signer, verify
from gateway.schemas import SchemaRegistry
from gateway.validation import Validator
from gateway.xmlsafe import ParseLimits, UnsafeXml, parse_untrusted
from kit.ebms import di01, fresh_signer, outgoing, signed_by
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
pytestmark = pytest.mark.slow  # 200 examples per property: seconds each (docs/testing.md)


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


def _ebms_seeds() -> tuple[list[tuple[str, bytes]], Signer]:
    """An ebMS business message as sent, unsigned and signed (osb-rm-s, a fresh test key)."""
    signer = fresh_signer("fuzz")
    plain = compose.business_message(outgoing(di01()))
    signed = compose.business_message(outgoing(di01()), seal=signed_by(signer))
    return [plain, signed], signer


EBMS_SEEDS, EBMS_SIGNER = _ebms_seeds()
SHA256 = Algorithms(
    "http://www.w3.org/2001/04/xmlenc#sha256", "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
)


@st.composite
def mutated_ebms(draw: st.DrawFn) -> tuple[str, bytes]:
    """An ebMS request with a few random byte changes in its MIME body or Content-Type."""
    content_type, body = draw(st.sampled_from(EBMS_SEEDS))
    data = bytearray(body)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "cut", "header"]))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(
                st.sampled_from([b"\r\n", b"--", b"=?utf-8?b?w6k=?=", b"\xff\xfe", b"Content-ID: "])
            )
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 40))]
        elif kind == "cut":
            del data[at:]
        else:
            content_type = draw(
                st.sampled_from(
                    [
                        content_type.replace("boundary=", "boundary=x"),
                        "multipart/related",
                        'multipart/related; boundary=""',
                        "multipart/mixed; boundary=" + "a" * 300,
                        content_type + "; charset=\xe9",
                    ]
                )
            )
    return content_type, bytes(data)


@EXAMPLES
@given(mutated_ebms())
def test_ebms_reader_and_signature_check_only_raise_their_own_errors(
    request_: tuple[str, bytes],
) -> None:
    """Whatever a partner's MSH sends: the reader says it is unreadable, or the signature
    check says what is wrong with it — never another exception."""
    content_type, body = request_
    try:
        message = ebms.read(content_type, body)
    except ebms.EbmsParseError:
        return
    parts = {cid: part.data for cid, part in message.parts.items()}
    with contextlib.suppress(SignatureProblem, ebms.EbmsParseError):
        covered = verify(
            message.envelope, parts, certificate=EBMS_SIGNER.certificate, algorithms=SHA256
        )
        ebms.as_signed(message, covered)  # the reading the checks act on
