"""A screen in C before the rules in Python: which rules can possibly fire on this message?

Each business rule is a Python function that explains a violation well (element, path, line,
expected and found), but from Python every lxml look-up costs microseconds, and a valid
message — the overwhelming case — pays for all of them to learn nothing. So, as the official
iStandaarden checks are published (XSLT), each screened rule also has an XPath 1.0 test that
libxslt evaluates in C. All of a message type's tests are compiled into one stylesheet; one
transform per message answers which rules *may* fire, and only those rules (plus the rules
without a screen) run in Python. A screen may over-approximate — a flagged rule whose Python
check finds nothing costs time, not correctness — but it must never miss: the Python rule stays
the authority, and ``tests/test_screen.py`` checks on every rule case, near miss, sample and a
mutation corpus that whatever Python reports, the screen flagged.

Tests are written with local names, as the Python rules read them (``Client/Naam``); the
compiler qualifies each name with the namespace the message's XSD declares it in (the message
namespace, the basisschema's, or both when the two declare it), so one text serves iWmo and
iJw, and a name neither schema declares is an error at compile time, not a silent miss.
Macros keep the tests short: ``S(x)`` is ``normalize-space(x)``, ``N(x)`` an integer allowing
a leading ``+`` (``xs:integer`` does), ``D(x)`` an ``xs:date`` as the number yyyymmdd.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from xml.sax.saxutils import quoteattr

from lxml import etree

from gateway.xmlsafe import parse_trusted_file

XSL_NS = "http://www.w3.org/1999/XSL/Transform"
XS_NS = "http://www.w3.org/2001/XMLSchema"

_MACROS = {
    "S": "normalize-space({})",
    "N": "number(translate(normalize-space({}), '+', ''))",
    "D": "number(translate(normalize-space({}), '-', ''))",
}
_NAME = re.compile(r"(?<![\w$.'-])([A-Z][A-Za-z0-9]*)(?![\w(:-])")
_LITERAL = re.compile(r"('[^']*'|\"[^\"]*\")")
_KEY_USE = re.compile(r"(?<![\w-])key\('([\w-]+)'")
_REPEATED = re.compile(r"repeated\('([\w-]+)'\)")
EXSL_NS = "http://exslt.org/common"
SETS_NS = "http://exslt.org/sets"


class ScreenError(Exception):
    """A screen test that cannot be compiled: an unknown name, a missing key, bad XPath."""


@dataclass(frozen=True, slots=True)
class Key:
    """An ``xsl:key``: uniqueness tests count the nodes sharing a key value in C."""

    match: str
    use: str


@dataclass(frozen=True, slots=True)
class Unique:
    """A uniqueness set: ``repeated('name')`` in a test holds when two of ``nodes`` (a path
    from the message root) share their ``use`` value, or when there are more than ``limit``.

    Why not ``key()``: a key is built from one evaluation of ``use`` per node and looked up
    with a second one per node, and ``count(key())`` copies the group each time (a 1 MB
    declaratie: TR416 alone 10.5 ms). Here ``use`` is written once per node into a result
    tree and EXSLT's ``set:distinct`` (a hash of string values, linear) counts the distinct
    ones: one evaluation per node, no key table (TR416 there: 4.7 ms). The limit keeps the
    over-approximation the key tests had (above it the rule is left to Python unexamined)."""

    nodes: str
    use: str
    limit: int


@dataclass(frozen=True, slots=True)
class Names:
    """Which namespace(s) declare each element name for one message type."""

    message_ns: str
    basis_ns: str
    message: frozenset[str]
    basis: frozenset[str]
    standard: frozenset[str]
    """Every name the standard's schemas declare: a name outside it is a typo."""

    def qualify(self, name: str, first_step: bool = False) -> str:
        """``name`` as a step in its namespace(s). Declared in both: a union of the two
        name tests when the step begins a path in an expression (``first_step``), where
        XPath 1.0 allows one; else ``*[self::m:X or self::b:X]``, which tests a predicate on
        every child and costs ~3× as much (CD087 on a 1 MB declaratie: 2.8 → 1.0 ms)."""
        in_message, in_basis = name in self.message, name in self.basis
        if in_message and in_basis:
            if first_step:
                return f"(m:{name} | b:{name})"
            return f"*[self::m:{name} or self::b:{name}]"
        if in_basis:
            return f"b:{name}"
        if in_message or name in self.standard:
            return f"m:{name}"  # another message's element: selects nothing here, as in Python
        raise ScreenError(f"{name!r} is declared in no schema beside {self.message_ns}")


def _declared(path: Path) -> tuple[str, frozenset[str], dict[str, Path]]:
    """(target namespace, element names declared, imported namespace → file) of one XSD."""
    root = parse_trusted_file(str(path)).getroot()
    names = frozenset(el.get("name", "") for el in root.iter(f"{{{XS_NS}}}element")) - {""}
    imports = {
        el.get("namespace", ""): _beside(path, el.get("schemaLocation", ""))
        for el in root.iter(f"{{{XS_NS}}}import")
    }
    return root.get("targetNamespace", ""), names, imports


def _beside(path: Path, location: str) -> Path:
    """An imported file next to ``path``, matched without regard to case as the registry's
    resolver does (an official bundle ships ``Basisschema.xsd`` imported as ``basisschema``)."""
    wanted = path.parent / location
    if wanted.exists():
        return wanted
    for candidate in wanted.parent.glob("*"):
        if candidate.name.lower() == wanted.name.lower():
            return candidate
    raise ScreenError(f"{path.name} imports {location}, which is not beside it")


@lru_cache(maxsize=64)
def names_of(message_xsd: Path) -> Names:
    """The element names of a message XSD and of the basisschema it imports."""
    message_ns, message, imports = _declared(message_xsd)
    basis = [(ns, p) for ns, p in imports.items() if ns.endswith("/basisschema/schema")]
    if len(basis) != 1:
        raise ScreenError(f"{message_xsd.name} does not import exactly one basisschema")
    basis_ns, basis_path = basis[0]
    _, basis_names, _ = _declared(basis_path)
    standard = frozenset().union(*(_declared(p)[1] for p in message_xsd.parent.glob("*.xsd")))
    return Names(message_ns, basis_ns, message, basis_names, standard)


def expand(test: str, names: Names, *, pattern: bool = False) -> str:
    """Macros expanded and every element name qualified; string literals left alone.
    ``pattern``: the text is an XSLT match pattern, where no step may be a union."""
    test = _expand_macros(test)
    parts = _LITERAL.split(test)
    for i in range(0, len(parts), 2):  # even parts are outside literals
        parts[i] = _NAME.sub(lambda m: _qualified(m, names, pattern), parts[i])
    return "".join(parts)


def _qualified(match: re.Match[str], names: Names, pattern: bool) -> str:
    """A name step qualified; a name after one colon is already a prefixed name (``m:X``),
    one after an axis (``preceding-sibling::X``) is a step like any other. A step that
    follows no ``/``, axis or ``@`` begins a relative path: it may be a union."""
    text, at = match.string, match.start()
    if text[at - 1 : at] == ":" and text[at - 2 : at] != "::":
        return match.group(1)
    before = text[:at].rstrip()[-1:]
    first_step = not pattern and before not in ("/", ":", "@", "$")
    return names.qualify(match.group(1), first_step)


def _expand_macros(test: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(test):
        name = test[i]
        if (
            name in _MACROS
            and test[i + 1 : i + 2] == "("
            and (i == 0 or not (test[i - 1].isalnum() or test[i - 1] in "_-:$"))
        ):
            depth, j = 0, i + 1
            while True:
                if j >= len(test):
                    raise ScreenError(f"unbalanced {name}( in {test!r}")
                depth += {"(": 1, ")": -1}.get(test[j], 0)
                if depth == 0:
                    break
                j += 1
            out.append(_MACROS[name].format(_expand_macros(test[i + 2 : j])))
            i = j + 1
        else:
            out.append(name)
            i += 1
    return "".join(out)


VARIABLES: dict[str, str] = {
    "dag": "D(Header/BerichtIdentificatie/Dagtekening)",
    "claim_end": "D(Declaratie/DeclaratiePeriode/Einddatum)",
    "claim_dag": "D(Declaratie/DeclaratieDagtekening)",
}
"""Values several tests compare against, computed once per message (context: the root)."""


def stylesheet(
    tests: Mapping[str, str],
    keys: Mapping[str, Key],
    names: Names,
    xsd_versions: tuple[str | None, str | None] = (None, None),
    sets: Mapping[str, Unique] | None = None,
) -> bytes:
    """One stylesheet that writes the id of every rule whose test holds, space-separated.

    The schema's XSD versions (IV034) are constants of the stylesheet, not parameters: a
    parameter is an XPath expression libxslt compiles on every call (~3 µs each here). Tests
    that select from the same nodes are evaluated in one ``xsl:for-each`` over them
    (:func:`grouped`)."""
    wanted = {k for test in tests.values() for k in _KEY_USE.findall(test)}
    missing = wanted - set(keys)
    if missing:
        raise ScreenError(f"tests use undefined keys {sorted(missing)}")
    sets = sets or {}
    repeated = {s for test in tests.values() for s in _REPEATED.findall(test)}
    if repeated - set(sets):
        raise ScreenError(f"tests use undefined sets {sorted(repeated - set(sets))}")
    used_variables = {v for v in VARIABLES if any(f"${v}" in t for t in tests.values())}
    basis, bericht = xsd_versions
    lines = [
        f'<xsl:stylesheet version="1.0" xmlns:xsl="{XSL_NS}"'
        f" xmlns:m={quoteattr(names.message_ns)} xmlns:b={quoteattr(names.basis_ns)}"
        f' xmlns:exsl="{EXSL_NS}" xmlns:set="{SETS_NS}" exclude-result-prefixes="m b exsl set">',
        '<xsl:output method="text"/>',
        '<xsl:param name="today" select="0"/>',
        f'<xsl:variable name="basis_xsd" select={quoteattr(_literal(basis or ""))}/>',
        f'<xsl:variable name="bericht_xsd" select={quoteattr(_literal(bericht or ""))}/>',
        f'<xsl:variable name="basis_known" select="{str(basis is not None).lower()}()"/>',
        f'<xsl:variable name="bericht_known" select="{str(bericht is not None).lower()}()"/>',
    ]
    for name in sorted(wanted):
        key = keys[name]
        lines.append(
            f'<xsl:key name="{name}" match={quoteattr(expand(key.match, names, pattern=True))}'
            f" use={quoteattr(expand(key.use, names))}/>"
        )
    lines += ['<xsl:template match="/">', '<xsl:for-each select="*">']
    for name in sorted(used_variables):
        select = expand(VARIABLES[name], names)
        lines.append(f"<xsl:variable name={quoteattr(name)} select={quoteattr(select)}/>")
    for name in sorted(repeated):
        unique = sets[name]
        lines += [
            f'<xsl:variable name="set-{name}">',
            f"<xsl:for-each select={quoteattr(expand(unique.nodes, names))}>",
            f"<k><xsl:value-of select={quoteattr(expand(unique.use, names))}/></k>",
            "</xsl:for-each></xsl:variable>",
        ]
    for nodes, conditions in grouped(tests).items():
        if nodes is not None:
            lines.append(f"<xsl:for-each select={quoteattr(expand(nodes, names))}>")
        for rule_id, test in conditions:
            test = _REPEATED.sub(lambda m: _repeated_test(m.group(1), sets), test)
            lines.append(f"<xsl:if test={quoteattr(expand(test, names))}>{rule_id} </xsl:if>")
        if nodes is not None:
            lines.append("</xsl:for-each>")
    lines += ["</xsl:for-each>", "</xsl:template>", "</xsl:stylesheet>"]
    return "\n".join(lines).encode()


def _repeated_test(name: str, sets: Mapping[str, Unique]) -> str:
    """``repeated('name')``: more candidates than the limit, or fewer distinct values than
    values in the set's result tree."""
    limit, k = sets[name].limit, f"exsl:node-set($set-{name})/k"
    return f"(count({k}) > {limit} or count(set:distinct({k})) != count({k}))"


def _literal(value: str) -> str:
    """An XPath 1.0 string literal; XPath 1.0 has no escape, so a value with both quote
    characters cannot be one (a bundle with such a version is validated in Python)."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ScreenError(f"XSD version {value!r} cannot be written as an XPath 1.0 literal")


_NODES = re.compile(
    r"(?:[A-Z][A-Za-z0-9]*(?:/[A-Z][A-Za-z0-9]*)*"  # a relative path of element names
    r"|\([A-Z][A-Za-z0-9/]*(?: \| [A-Z][A-Za-z0-9/]*)+\))"  # or a union of them
    r"(?:/[A-Z][A-Za-z0-9]*)*"
)
_POSITIONAL = re.compile(r"position\(|last\(|^\s*[\d.]+\s*$")


def grouped(tests: Mapping[str, str]) -> dict[str | None, list[tuple[str, str]]]:
    """Tests by the nodes they select from: ``{nodes: [(rule id, condition on one node)]}``.

    A test ``P[a][b]`` (P a path of names, or a union of such paths) holds when some node of P
    satisfies ``a`` and ``b``; written as ``a and b`` inside one ``xsl:for-each`` over P, the
    tests on the same P walk it once instead of once each (the nine product tests of a
    WMO301: 28 → 22 µs). Only tests whose predicates cannot depend on position (no
    ``position()``, ``last()`` or bare number) are regrouped; a node set one test alone uses,
    and every other test, stay as written (key ``None``)."""
    split: dict[str, tuple[str, str]] = {}
    for rule_id, test in tests.items():
        parts = _node_test(test)
        if parts is not None:
            split[rule_id] = parts
    uses: dict[str, int] = {}
    for nodes, _ in split.values():
        uses[nodes] = uses.get(nodes, 0) + 1
    out: dict[str | None, list[tuple[str, str]]] = {}
    for rule_id, test in tests.items():
        parts = split.get(rule_id)
        if parts is not None and uses[parts[0]] > 1:
            out.setdefault(parts[0], []).append((rule_id, parts[1]))
        else:
            out.setdefault(None, []).append((rule_id, test))
    return out


def _node_test(test: str) -> tuple[str, str] | None:
    """``P[a][b]`` as (``P``, ``(a) and (b)``); None for any other shape."""
    nodes = _NODES.match(test)
    if nodes is None or test[nodes.end() : nodes.end() + 1] != "[":
        return None
    predicates: list[str] = []
    at = nodes.end()
    while at < len(test):
        if test[at] != "[":
            return None
        end = _closing(test, at)
        if end is None:
            return None
        predicate = test[at + 1 : end]
        if _POSITIONAL.search(predicate):
            return None
        predicates.append(f"({predicate})")
        at = end + 1
    return nodes.group(0), " and ".join(predicates)


def _closing(text: str, at: int) -> int | None:
    """The index of the ``]`` closing the ``[`` at ``at``, skipping string literals."""
    depth, i = 0, at
    while i < len(text):
        char = text[i]
        if char in "'\"":
            i = text.find(char, i + 1)
            if i < 0:
                return None
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


@dataclass(frozen=True, slots=True)
class Screen:
    """The compiled screen of one message type and schema: which of its rules may fire."""

    screened: frozenset[str]
    """Rule ids this screen answers for; other rules must run regardless."""
    transform: etree.XSLT

    def flagged(self, root: etree._Element, today: date) -> frozenset[str]:
        """The ids of the rules that may fire; all of them when the transform itself fails,
        so a fault here costs time, never a check."""
        try:
            result = self.transform(root, today=str(int(today.strftime("%Y%m%d"))))
        except etree.XSLTApplyError:
            return self.screened
        return frozenset(str(result).split())


def compile_screen(
    tests: Mapping[str, str],
    keys: Mapping[str, Key],
    names: Names,
    xsd_versions: tuple[str | None, str | None] = (None, None),
    sets: Mapping[str, Unique] | None = None,
) -> Screen:
    """Compile the tests of one message type against one schema (whose XSD versions IV034
    compares with); a bad test is a :class:`ScreenError`."""
    source = stylesheet(tests, keys, names, xsd_versions, sets)
    try:
        transform = etree.XSLT(
            etree.XML(source),
            access_control=etree.XSLTAccessControl.DENY_ALL,  # type: ignore[attr-defined]
        )
    except etree.XSLTParseError as exc:
        raise ScreenError(f"screen does not compile: {exc}") from exc
    return Screen(frozenset(tests), transform)
