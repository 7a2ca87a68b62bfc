"""Hardened parsing: hostile documents are refused with a precise reason, never parsed."""

from __future__ import annotations

import pytest

from gateway.validation import Validator
from gateway.xmlsafe import ParseLimits, UnsafeXml, XmlProblem, parse_untrusted
from tests.conftest import sample

XXE_FILE = (
    b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<r>&x;</r>'
)
XXE_NET = b'<!DOCTYPE r [<!ENTITY x SYSTEM "http://127.0.0.1:9/evil">]><r>&x;</r>'
LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10 if i > 1 else b"&lol;" * 10)
        for i in range(1, 10)
    )
    + b"]><lolz>&lol9;</lolz>"
)
QUADRATIC = b'<!DOCTYPE r [<!ENTITY a "' + b"x" * 50_000 + b'">]><r>' + b"&a;" * 50_000 + b"</r>"
PARAM_ENTITY = b'<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]><r/>'


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (XXE_FILE, XmlProblem.DTD),
        (XXE_NET, XmlProblem.DTD),
        (LAUGHS, XmlProblem.DTD),
        (QUADRATIC, XmlProblem.DTD),
        (PARAM_ENTITY, XmlProblem.DTD),
        (b"", XmlProblem.EMPTY),
        (b"   \n", XmlProblem.EMPTY),
        (b"\xef\xbb\xbf<r/>", XmlProblem.BOM),
        ("<r/>".encode("utf-16"), XmlProblem.ENCODING),
        (b'<?xml version="1.0" encoding="ISO-8859-1"?><r>\xe9</r>', XmlProblem.ENCODING),
        (b"<r>\xff\xfe</r>", XmlProblem.SYNTAX),  # invalid UTF-8
        (b"<r><a></r>", XmlProblem.SYNTAX),
        (b"<r>&undefined;</r>", XmlProblem.SYNTAX),
        (b"<r>" + b"<a>" * 60 + b"</a>" * 60 + b"</r>", XmlProblem.TOO_DEEP),
    ],
    ids=[
        "xxe-file",
        "xxe-network",
        "billion-laughs",
        "quadratic",
        "parameter-entity",
        "empty",
        "blank",
        "bom",
        "utf16",
        "latin1",
        "bad-utf8",
        "mismatched-tags",
        "undefined-entity",
        "deep",
    ],
)
def test_hostile_document_is_refused(data: bytes, problem: XmlProblem) -> None:
    with pytest.raises(UnsafeXml) as caught:
        parse_untrusted(data)
    assert caught.value.problem is problem


def test_very_deep_nesting_is_refused_without_recursion_trouble() -> None:
    data = b"<a>" * 100_000 + b"</a>" * 100_000
    with pytest.raises(UnsafeXml) as caught:
        parse_untrusted(data)
    assert caught.value.problem in (XmlProblem.TOO_DEEP, XmlProblem.SYNTAX)


def test_size_limit_applies_before_parsing() -> None:
    limits = ParseLimits(max_bytes=1000)
    with pytest.raises(UnsafeXml) as caught:
        parse_untrusted(b"garbage that is not XML " * 100, limits)
    assert caught.value.problem is XmlProblem.TOO_LARGE
    assert parse_untrusted(b"<r>" + b"x" * 990 + b"</r>", limits).tag == "r"


def test_bom_tolerated_only_when_allowed() -> None:
    assert parse_untrusted(b"\xef\xbb\xbf<r/>", ParseLimits(allow_bom=True)).tag == "r"


def test_rejection_reports_line_of_the_doctype() -> None:
    with pytest.raises(UnsafeXml) as caught:
        parse_untrusted(XXE_FILE)
    assert caught.value.line == 2


def test_validator_turns_hostile_input_into_a_problem_not_an_exception(
    validator: Validator,
) -> None:
    report = validator.validate(LAUGHS, "laughs.xml")
    assert [p.rule for p in report.problems] == ["XML-DTD"]
    big = Validator(validator.registry, ParseLimits(max_bytes=2000))
    report = big.validate(sample("iwmo/wmo301.xml").encode())
    assert [p.rule for p in report.problems] == ["XML-SIZE"]


def test_a_comment_inside_a_value_does_not_hide_part_of_it() -> None:
    """The XSD and the receiver read `01<!---->50` as "0150"; so must every reader of ours
    (the envelope's zender, the rules): comments are dropped at parse, the text is whole."""
    root = parse_untrusted(
        b"<stuurgegevens><organisatie>01<!--x-->50</organisatie></stuurgegevens>"
    )
    assert root.findtext("organisatie") == "0150"
