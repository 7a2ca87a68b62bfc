"""Write the project's iWmo/iJw 3.2 XSDs from ``schema_spec`` into ``schemas/``.

Run ``python scripts/generate_schemas.py`` after changing the spec; the output is committed so
that the bundle is readable without running anything, and ``tests/test_schemas.py`` checks the
committed files still equal what the spec generates.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from schema_spec import (
    UNBOUNDED,
    Cls,
    El,
    Inline,
    Node,
    complex_types,
    heen_bodies,
    retour_body,
    simple_types,
)

from gateway.standards import (
    MESSAGES,
    Kind,
    MessageType,
    Party,
    Standard,
    basis_namespace,
    message_namespace,
)

XS = "http://www.w3.org/2001/XMLSchema"
RELEASE = "3.2"
BASIS_XSD_VERSIE = "1.0.0"
BERICHT_XSD_VERSIE = "1.0.0"
ROOT = Path(__file__).resolve().parent.parent / "schemas"


def _xs(tag: str) -> str:
    return f"{{{XS}}}{tag}"


def _schema(tns: str, nsmap: dict[str, str]) -> etree._Element:
    schema = etree.Element(
        _xs("schema"),
        nsmap={"xs": XS, **nsmap},
        attrib={
            "targetNamespace": tns,
            "elementFormDefault": "qualified",
            "attributeFormDefault": "unqualified",
        },
    )
    return schema


def _appinfo(schema: etree._Element, prefix_ns: str, items: list[tuple[str, str]]) -> None:
    annotation = etree.SubElement(schema, _xs("annotation"))
    appinfo = etree.SubElement(annotation, _xs("appinfo"))
    for name, value in items:
        etree.SubElement(appinfo, f"{{{prefix_ns}}}{name}").text = value


def _doc(parent: etree._Element, text: str) -> None:
    if text:
        annotation = etree.SubElement(parent, _xs("annotation"))
        etree.SubElement(annotation, _xs("documentation")).text = text


def write_basisschema(std: Standard) -> bytes:
    tns = basis_namespace(std, RELEASE)
    prefix = std.value
    schema = _schema(tns, {prefix: tns})
    _appinfo(
        schema,
        tns,
        [
            ("standaard", std.label),
            ("release", RELEASE),
            ("BasisschemaXsdVersie", BASIS_XSD_VERSIE),
        ],
    )
    for ct in complex_types():
        node = etree.SubElement(schema, _xs("complexType"), name=ct.name)
        _doc(node, ct.doc)
        seq = etree.SubElement(node, _xs("sequence"))
        for child in ct.children:
            _element(seq, child, prefix, prefix)
    for st in simple_types(std):
        node = etree.SubElement(schema, _xs("simpleType"), name=st.name)
        _doc(node, st.doc)
        restriction = etree.SubElement(node, _xs("restriction"), base=st.base)
        for facet, value in st.facets:
            etree.SubElement(restriction, _xs(facet), value=value)
        for value in st.enumeration:
            etree.SubElement(restriction, _xs("enumeration"), value=value)
    return _serialize(schema)


def _type_ref(type_name: str, basis_prefix: str, msg_prefix: str) -> str:
    if type_name.startswith(("LDT_", "CDT_")):
        return f"{basis_prefix}:{type_name}"
    return f"{msg_prefix}:{type_name}"


def _occurs(node: etree._Element, lo: int, hi: str) -> None:
    if lo != 1:
        node.set("minOccurs", str(lo))
    if hi != "1":
        node.set("maxOccurs", hi)


def _element(seq: etree._Element, child: Node, basis: str, msg: str) -> None:
    node = etree.SubElement(seq, _xs("element"), name=child.name)
    if isinstance(child, Cls):
        node.set("type", f"{msg}:{child.name}")
    elif child.type.startswith("@"):
        pass  # inline type, filled in by the caller
    else:
        node.set("type", _type_ref(child.type, basis, msg))
    _occurs(node, child.min, child.max)


def _inline(
    seq: etree._Element, name: str, inline: Inline, basis: str, lo: int = 1, hi: str = "1"
) -> None:
    node = etree.SubElement(seq, _xs("element"), name=name)
    _occurs(node, lo, hi)
    simple = etree.SubElement(node, _xs("simpleType"))
    restriction = etree.SubElement(simple, _xs("restriction"), base=f"{basis}:{inline.base}")
    etree.SubElement(restriction, _xs("pattern"), value=inline.pattern)


def _party_type(party: Party) -> str:
    return "LDT_Gemeente" if party is Party.GEMEENTE else "LDT_AgbCode"


def _header(msg: MessageType) -> tuple[tuple[str, Inline | El], ...]:
    fields: list[tuple[str, Inline | El]] = [
        ("BerichtCode", Inline("LDT_BerichtCode", msg.bericht_code)),
        ("BerichtVersie", Inline("LDT_BerichtVersie", RELEASE.split(".")[0])),
        ("BerichtSubversie", Inline("LDT_BerichtSubversie", RELEASE.split(".")[1])),
        ("Afzender", El("Afzender", _party_type(msg.header_afzender))),
        ("Ontvanger", El("Ontvanger", _party_type(msg.header_ontvanger))),
        ("BerichtIdentificatie", El("BerichtIdentificatie", "CDT_BerichtIdentificatie")),
        ("XsdVersie", El("XsdVersie", "CDT_XsdVersie")),
    ]
    if msg.kind is Kind.RETOUR:
        fields += [
            ("IdentificatieRetour", El("IdentificatieRetour", "LDT_IdentificatieBericht")),
            ("DagtekeningRetour", El("DagtekeningRetour", "LDT_Datum")),
            ("XsltVersie", El("XsltVersie", "LDT_Versie", 0)),
            ("XsdVersieRetour", El("XsdVersieRetour", "CDT_XsdVersie")),
            ("RetourCodes", El("RetourCodes", "RetourCodes", 0)),
        ]
    elif msg.number == 325:
        fields += [
            ("DeclaratieIdentificatie", El("DeclaratieIdentificatie", "CDT_BerichtIdentificatie")),
            ("XsltVersie", El("XsltVersie", "LDT_Versie", 0)),
            ("XsdVersieDeclaratie", El("XsdVersieDeclaratie", "CDT_XsdVersie")),
            ("RetourCodes", El("RetourCodes", "RetourCodes")),
        ]
    return tuple(fields)


def _collect_types(nodes: tuple[Node, ...], into: dict[str, Cls]) -> None:
    for node in nodes:
        if isinstance(node, Cls):
            known = into.get(node.name)
            if known is not None and known.children != node.children:
                raise ValueError(f"two different local types named {node.name}")
            into[node.name] = node
            _collect_types(node.children, into)


def body_of(msg: MessageType) -> tuple[Node, ...]:
    bodies = heen_bodies(msg.standard)
    if msg.kind is Kind.RETOUR:
        assert msg.pair is not None
        return retour_body(bodies[msg.pair])
    return bodies[msg.number]


def write_message(msg: MessageType) -> bytes:
    std = msg.standard
    tns = message_namespace(std, msg.number, RELEASE)
    basis_ns = basis_namespace(std, RELEASE)
    basis = std.value
    prefix = f"{std.message_prefix.lower()}{msg.number}"
    schema = _schema(tns, {basis: basis_ns, prefix: tns})
    _appinfo(
        schema,
        tns,
        [
            ("standaard", std.label),
            ("bericht", msg.code),
            ("release", RELEASE),
            ("BerichtXsdVersie", BERICHT_XSD_VERSIE),
            ("BasisschemaXsdVersie", BASIS_XSD_VERSIE),
        ],
    )
    etree.SubElement(schema, _xs("import"), namespace=basis_ns, schemaLocation="basisschema.xsd")
    etree.SubElement(schema, _xs("element"), name="Bericht", type=f"{prefix}:Root")

    body = body_of(msg)
    root = etree.SubElement(schema, _xs("complexType"), name="Root")
    _doc(root, f"{msg.code} {msg.name}")
    seq = etree.SubElement(root, _xs("sequence"))
    etree.SubElement(seq, _xs("element"), name="Header", type=f"{prefix}:Header")
    for node in body:
        _element(seq, node, basis, prefix)

    header = etree.SubElement(schema, _xs("complexType"), name="Header")
    seq = etree.SubElement(header, _xs("sequence"))
    for name, spec in _header(msg):
        if isinstance(spec, Inline):
            _inline(seq, name, spec, basis)
        else:
            _element(seq, spec, basis, prefix)

    local: dict[str, Cls] = {}
    _collect_types(body, local)
    for name, cls in local.items():
        ctype = etree.SubElement(schema, _xs("complexType"), name=name)
        seq = etree.SubElement(ctype, _xs("sequence"))
        for child in cls.children:
            if isinstance(child, El) and child.type == "@DeclaratieNummer":
                _inline(
                    seq, child.name, Inline("LDT_IdentificatieDeclaratie", "[0-9A-Za-z]+"), basis
                )
            else:
                _element(seq, child, basis, prefix)

    codes = etree.SubElement(schema, _xs("complexType"), name="RetourCodes")
    seq = etree.SubElement(codes, _xs("sequence"))
    rc = etree.SubElement(seq, _xs("element"), name="RetourCode", type=f"{basis}:LDT_RetourCode")
    _occurs(rc, 1, UNBOUNDED)
    return _serialize(schema)


def _serialize(schema: etree._Element) -> bytes:
    etree.indent(schema, space="  ")
    text = etree.tostring(schema, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n").encode()


def generate() -> dict[Path, bytes]:
    """All schema files, path → content."""
    files: dict[Path, bytes] = {}
    for std in Standard:
        folder = ROOT / std.value / RELEASE.replace(".", "_")
        files[folder / "basisschema.xsd"] = write_basisschema(std)
    for msg in MESSAGES.values():
        folder = ROOT / msg.standard.value / RELEASE.replace(".", "_")
        files[folder / f"{msg.code.lower()}.xsd"] = write_message(msg)
    return files


def main() -> None:
    for path, content in generate().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        print(f"wrote {path.relative_to(ROOT.parent)}")


if __name__ == "__main__":
    main()
