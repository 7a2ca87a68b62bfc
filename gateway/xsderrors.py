"""Turn libxml2 schema-validation errors into :class:`Problem` values a person can act on.

libxml2 reports ``Element '{namespace}Name': [facet 'pattern'] The value 'x' is not accepted
by the pattern '[0-9]{9}'.`` with an XPath full of prefixes. We keep its line number, rewrite
the path as local names relative to the document root (``Client/Bsn``), and split the text
into what was expected and what was found.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import cast

from lxml import etree

from gateway.report import Problem

_QNAME = re.compile(r"\{(?:https?|urn|file):[^}]*\}")
_SENSITIVE = ("Bsn",)
"""Elements whose value must never be echoed in full (it would leak into logs and faults)."""
_STEP_PREFIX = re.compile(r"^[^:\[]+:")
_VALUE = re.compile(r"The value '(?P<v>.*?)' ")
_ELEMENT = re.compile(r"^Element '(?P<name>[^']+)'(?:, attribute '(?P<attr>[^']+)')?: ")

_KIND_BY_TYPE = {
    "SCHEMAV_CVC_PATTERN_VALID": "XSD-PATTERN",
    "SCHEMAV_CVC_ENUMERATION_VALID": "XSD-ENUMERATION",
    "SCHEMAV_CVC_MAXLENGTH_VALID": "XSD-LENGTH",
    "SCHEMAV_CVC_MINLENGTH_VALID": "XSD-LENGTH",
    "SCHEMAV_CVC_LENGTH_VALID": "XSD-LENGTH",
    "SCHEMAV_CVC_MININCLUSIVE_VALID": "XSD-RANGE",
    "SCHEMAV_CVC_MAXINCLUSIVE_VALID": "XSD-RANGE",
    "SCHEMAV_ELEMENT_CONTENT": "XSD-STRUCTURE",
    "SCHEMAV_CVC_COMPLEX_TYPE_2_4": "XSD-STRUCTURE",
    "SCHEMAV_CVC_COMPLEX_TYPE_3_2_1": "XSD-STRUCTURE",
    "SCHEMAV_CVC_COMPLEX_TYPE_4": "XSD-STRUCTURE",
    "SCHEMAV_CVC_ELT_1": "XSD-STRUCTURE",
}


def local_path(xpath: str | None, *, drop_root: bool = True) -> str | None:
    """``/wmo301:Bericht/wmo301:Client/iwmo:Naam`` → ``Client/Naam``."""
    if not xpath:
        return None
    steps = [_STEP_PREFIX.sub("", step) for step in xpath.strip("/").split("/") if step]
    if drop_root:
        steps = steps[1:]
    return "/".join(steps) or "."


def _expected_found(kind: str, text: str) -> tuple[str | None, str | None]:
    if kind == "XSD-PATTERN":
        pattern = re.search(r"by the pattern '(.*)'\.?$", text)
        value = _VALUE.search(text)
        return (
            f"a value matching {pattern.group(1)}" if pattern else None,
            repr(value.group("v")) if value else None,
        )
    if kind == "XSD-ENUMERATION":
        options = re.search(r"set \{(.*)\}", text)
        value = _VALUE.search(text)
        expected = options.group(1).replace("'", "") if options else None
        return (
            f"one of {expected}" if expected else None,
            repr(value.group("v")) if value else None,
        )
    if kind == "XSD-LENGTH":
        length = re.search(r"length of '(\d+)'", text)
        limit = re.search(r"allowed (maximum|minimum) length of '(\d+)'", text)
        expected = f"{limit.group(1)} length {limit.group(2)}" if limit else None
        return expected, f"length {length.group(1)}" if length else None
    if kind == "XSD-RANGE":
        value = _VALUE.search(text)
        limit = re.search(r"(less|greater) than or equal to '([^']+)'", text)
        expected = f"{limit.group(1)} than or equal to {limit.group(2)}" if limit else None
        return expected, value.group("v") if value else None
    if kind == "XSD-STRUCTURE":
        expected_names = re.search(r"Expected is(?: one of)? \( (.*) \)", text)
        expected = expected_names.group(1) if expected_names else None
        if "Missing child element" in text:
            return expected, "no such element"
        if "not expected" in text:
            found = _ELEMENT.match(text)
            return expected, found.group("name") if found else None
        return expected, None
    value = re.search(r"^'(.*?)' is not a valid value of the (?:local )?atomic type '(.*)'", text)
    if value:
        return f"a valid {value.group(2)}", repr(value.group(1))
    return None, None


def problems_from_log(
    log: etree._ErrorLog | Iterable[etree._LogEntry],
    *,
    rule_for: Callable[[str | None, str], str] | None = None,
    drop_root: bool = True,
) -> list[Problem]:
    """Translate an XMLSchema error log; at most one problem per element (the first)."""
    problems: list[Problem] = []
    seen: set[tuple[str | None, int]] = set()
    for entry in cast(Iterable[etree._LogEntry], log):
        path = local_path(entry.path, drop_root=drop_root)
        key = (path, entry.line)
        if key in seen:
            continue
        seen.add(key)
        kind = _KIND_BY_TYPE.get(entry.type_name, "XSD-TYPE")
        text = _ELEMENT.sub("", entry.message)
        text = _QNAME.sub("", text)
        element = _ELEMENT.match(entry.message)
        where = _QNAME.sub("", element.group("name")) if element else (path or "document")
        expected, found = _expected_found(kind, text)
        if path and path.rsplit("/", 1)[-1].split("[")[0] in _SENSITIVE:
            text = _VALUE.sub("The value (masked) ", text)
            found = "(masked)" if found else None
        rule = rule_for(path, kind) if rule_for else kind
        problems.append(
            Problem(
                rule=rule,
                message=f"{where}: {text}",
                path=path,
                line=entry.line or None,
                expected=expected,
                found=found,
                level=1,
            )
        )
    return problems
