"""The type model a client generator (JAXB/CXF, zeep, suds) derives from an OntvangAsynchroon WSDL.

Code generated from a WSDL has one class per complex type the service's messages reach (named
types by name, anonymous ones by their place), properties from each type's content model and
derivation, and enum classes from enumerations. So two WSDLs whose reachable components have
the same names and the same canonical structure give source-compatible client code. This module
computes both: :func:`interface` follows wsdl:import, xs:import and xs:include from a WSDL file,
collects what the portType's messages reach, and reduces each component to a canonical form
(annotations dropped, defaults such as ``minOccurs="1"`` dropped, facets unordered, particles
ordered).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

WSDL = "http://schemas.xmlsoap.org/wsdl/"
XS = "http://www.w3.org/2001/XMLSchema"
_DEFAULTS = {
    ("fixed", "false"),
    ("minOccurs", "1"),
    ("maxOccurs", "1"),
    ("use", "optional"),
    ("mixed", "false"),
    ("abstract", "false"),
    ("nillable", "false"),
}
_QNAME_ATTRS = ("type", "base", "ref", "itemType")
_KINDS = {
    "type": ("complexType", "simpleType"),
    "element": ("element",),
    "attribute": ("attribute",),
    "group": ("group",),
    "attributeGroup": ("attributeGroup",),
}

Component = tuple[str, str]  # (kind, {namespace}name)


@dataclass(frozen=True, slots=True)
class Interface:
    """What a generator sees: the reachable components and each one's canonical form."""

    components: frozenset[Component]
    canonical: dict[Component, Any]


def _qname(node: etree._Element, value: str) -> str:
    prefix, _, local = value.rpartition(":")
    return f"{{{node.nsmap.get(prefix or None)}}}{local}"


def _documents(wsdl: Path) -> tuple[list[etree._Element], list[etree._Element]]:
    """(WSDL documents, schema documents) reachable from a WSDL file."""
    wsdls: list[etree._Element] = []
    schemas: list[etree._Element] = []
    seen: set[Path] = set()
    todo = [wsdl.resolve()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        root = etree.parse(str(path)).getroot()
        if etree.QName(root).namespace == WSDL:
            wsdls.append(root)
            for imp in root.iter(f"{{{WSDL}}}import"):
                todo.append((path.parent / imp.get("location", "")).resolve())
            inline = list(root.iter(f"{{{XS}}}schema"))
        else:
            schemas.append(root)
            inline = [root]
        for schema in inline:
            for ref in schema:
                location = ref.get("schemaLocation") if isinstance(ref.tag, str) else None
                if location and etree.QName(ref).localname in ("import", "include"):
                    todo.append((path.parent / location).resolve())
    return wsdls, schemas


def _canonical(node: etree._Element) -> Any:
    tag = etree.QName(node).localname
    attrs = tuple(
        sorted(
            (k, _qname(node, str(v)) if k in _QNAME_ATTRS else v)
            for k, v in node.attrib.items()
            if (k, v) not in _DEFAULTS
        )
    )
    kids = [
        _canonical(c)
        for c in node
        if isinstance(c.tag, str) and etree.QName(c).localname != "annotation"
    ]
    if tag == "restriction":  # facets and enumerations: a set
        kids.sort(key=repr)
    return (tag, attrs, tuple(kids))


def interface(wsdl: Path) -> Interface:
    wsdls, schemas = _documents(wsdl)
    definitions: dict[Component, etree._Element] = {}
    for schema in schemas:
        namespace = schema.get("targetNamespace")
        for child in schema:
            if isinstance(child.tag, str) and child.get("name"):
                kind = etree.QName(child).localname
                definitions[(kind, f"{{{namespace}}}{child.get('name')}")] = child
    messages: dict[str, list[str]] = {}
    for doc in wsdls:
        namespace = doc.get("targetNamespace")
        for message in doc.iter(f"{{{WSDL}}}message"):
            parts = [_qname(p, p.get("element", "")) for p in message.iter(f"{{{WSDL}}}part")]
            messages[f"{{{namespace}}}{message.get('name')}"] = parts
    todo: list[Component] = []
    for doc in wsdls:
        for operation in doc.iter(f"{{{WSDL}}}operation"):
            for io in operation:
                if io.get("message"):
                    todo += [("element", e) for e in messages[_qname(io, io.get("message", ""))]]
    reached: set[Component] = set()
    canonical: dict[Component, Any] = {}
    while todo:
        kind, name = todo.pop()
        if (kind, name) in reached or name.startswith(f"{{{XS}}}"):
            continue
        reached.add((kind, name))
        node = next(
            (definitions[(k, name)] for k in _KINDS[kind] if (k, name) in definitions), None
        )
        if node is None:
            canonical[(kind, name)] = "MISSING"
            continue
        canonical[(kind, name)] = _canonical(node)
        for sub in node.iter():
            if not isinstance(sub.tag, str):
                continue
            for attr in _QNAME_ATTRS:
                value = sub.get(attr)
                if value:
                    ref_kind = "type" if attr != "ref" else etree.QName(sub).localname
                    todo.append((ref_kind, _qname(sub, value)))
    return Interface(frozenset(reached), canonical)


def services(wsdl: Path) -> list[tuple[str, str, list[str]]]:
    """(service, port, operations) of a WSDL: the names generated service classes carry."""
    wsdls, _ = _documents(wsdl)
    found = []
    for doc in wsdls:
        operations = sorted(o.get("name", "") for pt in doc.iter(f"{{{WSDL}}}portType") for o in pt)
        for service in doc.iter(f"{{{WSDL}}}service"):
            for port in service.iter(f"{{{WSDL}}}port"):
                found.append((service.get("name", ""), port.get("name", ""), operations))
    return found
