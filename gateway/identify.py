"""Message identification: namespace → standard, release, message type, and schema.

Every iWmo/iJw root element is called ``Bericht``, so the namespace URI is what identifies a
message (iStandaarden iWmo/iJw 3.2 XSD's, one namespace per bericht). The header's
BerichtCode, BerichtVersie and BerichtSubversie are cross-checked against it, so a WMO302
body labelled 414 is caught with a sentence that says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from gateway.report import Problem, line_of
from gateway.schemas import CompiledSchema, SchemaRegistry
from gateway.standards import (
    BY_BERICHTCODE,
    LEGACY_BERICHTCODES,
    Kind,
    MessageType,
    NamespaceInfo,
    parse_namespace,
)


@dataclass(frozen=True, slots=True)
class Identified:
    namespace: str
    info: NamespaceInfo
    message: MessageType
    schema: CompiledSchema


def _supported(registry: SchemaRegistry) -> str:
    names = []
    for ns in registry.namespaces():
        info = parse_namespace(ns)
        if info is not None and info.message is not None:
            names.append(f"{info.standard.label} {info.release}")
    unique = sorted(set(names))
    return ", ".join(unique) if unique else "none"


def identify(root: etree._Element, registry: SchemaRegistry) -> Identified | list[Problem]:
    """Identify a payload, or explain why it cannot be (a list of problems)."""
    qname = etree.QName(root)
    namespace = qname.namespace or ""
    info = parse_namespace(namespace)
    if info is None or info.number is None:
        return [
            Problem(
                "NS-UNKNOWN",
                f"root element {qname.localname!r} in namespace {namespace or '(none)'!r} "
                f"is not an iWmo/iJw message; supported: {_supported(registry)}",
                path=".",
                line=line_of(root),
                expected="an iStandaarden message namespace",
                found=namespace or "(no namespace)",
            )
        ]
    message = info.message
    if message is None:
        return [
            Problem(
                "NS-UNKNOWN",
                f"{info.standard.label} {info.release} has no message {info.number}",
                path=".",
                line=line_of(root),
                found=namespace,
            )
        ]
    versie = quoted_xsd_versie(root, message) if registry.has_several(namespace) else None
    schema = registry.get(namespace, versie)
    if schema is None:
        return [
            Problem(
                "NS-UNSUPPORTED",
                f"no schema loaded for {info.standard.label} {info.release} {message.code} "
                f"({namespace}); supported releases: {_supported(registry)}. Add the official XSD "
                "bundle with --schema-dir.",
                path=".",
                line=line_of(root),
                found=namespace,
            )
        ]
    if qname.localname != "Bericht":
        return [
            Problem(
                "XSD-STRUCTURE",
                f"root element is {qname.localname!r}, not 'Bericht'",
                path=".",
                line=line_of(root),
                expected="Bericht",
                found=qname.localname,
            )
        ]
    identified = Identified(namespace, info, message, schema)
    return _cross_check(root, identified) or identified


def quoted_xsd_versie(root: etree._Element, message: MessageType) -> str | None:
    """The BerichtXsdVersie the message says it was made with (Header/XsdVersie, or
    XsdVersieRetour in a retour): it picks the XSD among a namespace's versions."""
    own = "XsdVersieRetour" if message.kind is Kind.RETOUR else "XsdVersie"
    found = root.findtext(f"{{*}}Header/{{*}}{own}/{{*}}BerichtXsdVersie")
    return found.strip() if found else None


_CHECKED_FIELDS = ("BerichtCode", "BerichtVersie", "BerichtSubversie")


def _header_fields(root: etree._Element) -> dict[str, etree._Element]:
    """The first Header's leading children by local name, read in one pass."""
    for header in root:
        if isinstance(header.tag, str) and header.tag.endswith("}Header"):
            fields: dict[str, etree._Element] = {}
            for child in header:
                tag = child.tag
                if isinstance(tag, str):
                    name = tag[tag.rfind("}") + 1 :]
                    if name not in _CHECKED_FIELDS:
                        break
                    fields[name] = child
            return fields
    return {}


def _cross_check(root: etree._Element, ident: Identified) -> list[Problem]:
    """BerichtCode, BerichtVersie and BerichtSubversie must agree with the namespace."""
    problems: list[Problem] = []
    fields = _header_fields(root)
    message = ident.message
    el = fields.get("BerichtCode")
    code = (el.text or "").strip() if el is not None else None
    if el is not None and code != message.bericht_code:
        other = BY_BERICHTCODE.get(code or "")
        what = (
            f"the code of {other.code}"
            if other
            else LEGACY_BERICHTCODES.get(code or "", "an unknown BerichtCode")
        )
        problems.append(
            Problem(
                "RS047",
                f"BerichtCode {code} ({what}) in a {message.code} message; "
                f"{message.code} has BerichtCode {message.bericht_code}",
                path="Header/BerichtCode",
                line=line_of(el),
                expected=message.bericht_code,
                found=code,
            )
        )
    for name, rule, want in (
        ("BerichtVersie", "CS025", ident.info.major),
        ("BerichtSubversie", "CS015", ident.info.minor),
    ):
        el = fields.get(name)
        value = (el.text or "").strip() if el is not None else None
        if el is not None and value != str(want):
            problems.append(
                Problem(
                    rule,
                    f"{name} {value} does not match release {ident.info.release} of the namespace",
                    path=f"Header/{name}",
                    line=line_of(el),
                    expected=str(want),
                    found=value,
                )
            )
    return problems


@dataclass(frozen=True, slots=True)
class Parties:
    """Who sends a message to whom, and the sender's own Identificatie for it."""

    sender: str
    receiver: str
    identificatie: str


def parties(root: etree._Element, message: MessageType) -> Parties | None:
    """Read sender, receiver and Identificatie from the payload header.

    A retourbericht copies the heen header unchanged (iStandaarden iWmo/iJw 3.2,
    retourberichten): its sender is Header/Ontvanger, its destination Header/Afzender, and
    its own identification is IdentificatieRetour. Every place that routes, authorises or
    deduplicates uses this.
    """
    header = root.find("{*}Header")
    if header is None:
        return None
    afzender = (header.findtext("{*}Afzender") or "").strip()
    ontvanger = (header.findtext("{*}Ontvanger") or "").strip()
    if message.kind is Kind.RETOUR:
        ident = header.findtext("{*}IdentificatieRetour") or ""
        return Parties(ontvanger, afzender, ident.strip())
    ident = header.findtext("{*}BerichtIdentificatie/{*}Identificatie") or ""
    return Parties(afzender, ontvanger, ident.strip())
