"""Hardened parsing of untrusted XML.

Everything that arrives from a partner goes through :func:`parse_untrusted`. It refuses, as a
precise :class:`UnsafeXml` error and never as a crash: bodies over the size limit (checked before
any parsing), anything with a DOCTYPE or entity declaration (so no XXE, no billion laughs, no
quadratic blow-up), encodings other than UTF-8 (OP192), and trees deeper than the depth limit.
Network access and DTD loading are off in the parser itself as a second line of defence.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from enum import StrEnum

from lxml import etree

DEFAULT_MAX_BYTES = 25 * 1024 * 1024
"""25 MB, the GGk limit (stuf-ggk.md 2.4/2.8); read as MiB, see docs/standards.md."""

DEFAULT_MAX_DEPTH = 48
"""iWmo/iJw messages are at most 9 levels deep, a SOAP-wrapped envelope adds 4."""


class XmlProblem(StrEnum):
    """Why untrusted XML was refused; the values double as rule ids in reports."""

    TOO_LARGE = "XML-SIZE"
    EMPTY = "XML-EMPTY"
    BOM = "OP192-BOM"
    ENCODING = "OP192-ENCODING"
    DTD = "XML-DTD"
    SYNTAX = "XML-SYNTAX"
    TOO_DEEP = "XML-DEPTH"
    TOO_MUCH_MARKUP = "XML-MARKUP"


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Bounds applied to one untrusted document."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH
    allow_bom: bool = False
    max_markup: int | None = None
    """At most this many ``<`` (tags, comments, PIs): checked on the bytes before parsing,
    so a body of millions of empty elements is refused before it becomes a tree of
    gigabytes. A SOAP request has a few dozen; its payload travels as base64 text."""


DEFAULT_LIMITS = ParseLimits()


class UnsafeXml(Exception):
    """Untrusted XML that was refused; ``problem`` says why, ``line`` where (if known)."""

    def __init__(self, problem: XmlProblem, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message
        self.line = line


_UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00")
_DECLARED_ENCODING = re.compile(rb"^<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._\-]+)[\"']")
_FORBIDDEN_MARKUP = (b"<!DOCTYPE", b"<!ENTITY")

_local = threading.local()


def _parser() -> etree.XMLParser:
    """One parser per thread: lxml parsers must not be shared between threads."""
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            # libxml2's default caps a single text node at 10 MB, which refuses a valid
            # 25 MiB envelope (its base64 payload is one text node). Our own limits apply
            # instead: size and markup count before parsing, depth after, no DTD at all.
            huge_tree=True,
            collect_ids=False,
            # A comment inside a value splits its text: `<organisatie>01<!---->50</...>` is
            # "0150" to the XSD and to the receiver, but `.text` would read "01". Comments are
            # not character data (XML infoset), so they are dropped here and every reader sees
            # the value whole. (ebMS found the same; gateway/ebms/message.py.)
            remove_comments=True,
        )
        _local.parser = parser
    return parser


_depth_probes: dict[int, etree.XPath] = {}


def _too_deep(root: etree._Element, max_depth: int) -> bool:
    probe = _depth_probes.get(max_depth)
    if probe is None:
        probe = etree.XPath("boolean(/" + "/".join(["*"] * (max_depth + 1)) + ")")
        _depth_probes[max_depth] = probe
    return bool(probe(root))


def check_prolog(data: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> bytes:
    """Apply the byte-level checks; returns the bytes to parse (a tolerated BOM stripped)."""
    if len(data) > limits.max_bytes:
        raise UnsafeXml(
            XmlProblem.TOO_LARGE,
            f"document is {len(data):,} bytes; the limit is {limits.max_bytes:,} bytes",
        )
    if not data.strip():
        raise UnsafeXml(XmlProblem.EMPTY, "document is empty")
    if data.startswith(_OTHER_BOMS):
        raise UnsafeXml(XmlProblem.ENCODING, "document is UTF-16/32; only UTF-8 is allowed (OP192)")
    if data.startswith(_UTF8_BOM):
        if not limits.allow_bom:
            raise UnsafeXml(XmlProblem.BOM, "document starts with a byte-order mark (OP192)", 1)
        data = data[len(_UTF8_BOM) :]
    declared = _DECLARED_ENCODING.match(data)
    if declared is not None and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        raise UnsafeXml(
            XmlProblem.ENCODING,
            f"encoding {declared.group(1).decode('ascii')!r} declared; only UTF-8 is allowed "
            "(OP192)",
            1,
        )
    if limits.max_markup is not None:
        markup = data.count(b"<")
        if markup > limits.max_markup:
            raise UnsafeXml(
                XmlProblem.TOO_MUCH_MARKUP,
                f"document has {markup:,} tags; at most {limits.max_markup:,} are allowed here",
            )
    for marker in _FORBIDDEN_MARKUP:
        at = data.find(marker)
        if at >= 0:
            line = data.count(b"\n", 0, at) + 1
            raise UnsafeXml(
                XmlProblem.DTD,
                "document contains a DOCTYPE or ENTITY declaration; DTDs are not allowed",
                line,
            )
    return data


def parse_untrusted(data: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> etree._Element:
    """Parse untrusted bytes into an element tree, or raise :class:`UnsafeXml`."""
    data = check_prolog(data, limits)
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno else None
        raise UnsafeXml(XmlProblem.SYNTAX, f"not well-formed XML: {exc.msg}", line) from None
    if getattr(root.getroottree().docinfo, "doctype", None):
        raise UnsafeXml(XmlProblem.DTD, "document has a DOCTYPE; DTDs are not allowed", 1)
    if _too_deep(root, limits.max_depth):
        raise UnsafeXml(
            XmlProblem.TOO_DEEP, f"document is nested deeper than {limits.max_depth} levels"
        )
    return root


_trusted_local = threading.local()


def parse_own(data: bytes) -> etree._Element:
    """Parse XML this gateway built or already accepted (an envelope on its way out): no
    network, no entities, and no 10 MB cap on one text node (a 25 MiB envelope's payload)."""
    parser: etree.XMLParser | None = getattr(_trusted_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True
        )
        _trusted_local.parser = parser
    return etree.fromstring(data, parser)


def parse_trusted_file(path: str) -> etree._ElementTree:
    """Parse one of our own or an operator-supplied schema file: no network, no entities."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.parse(path, parser)
