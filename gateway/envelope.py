"""StUF-GGk envelopes: read and build ggk_Di01, ggk_Du01 and Fo01 (both namespaces).

The envelope carries everything needed for routing (zender, ontvanger, functie, reference
numbers); the iWmo/iJw payload travels base64-encoded inside it. This module knows the
envelope only; SOAP and other transports wrap it elsewhere, so an ebMS2 adapter can reuse it.
Facts: stuf-ggk facts sheet sections 2 and 4.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from lxml import etree

from gateway.bundled import stuf_ggk_dir
from gateway.report import Problem, Severity
from gateway.standards import BY_CODE, DUTCH_TIME, NAMESPACE_ROOT, MessageType
from gateway.xmlread import child_text, children, decode_base64
from gateway.xsderrors import problems_from_log

STUF_NS = "http://www.egem.nl/StUF/StUF0301"
XMIME_NS = "http://www.w3.org/2005/05/xmlmime"


class Generation(StrEnum):
    """The two envelope namespaces in use (stuf-ggk facts sheet 0.1)."""

    GGK0210 = "http://www.stufstandaarden.nl/koppelvlak/ggk0210"
    """Current: 0210 patch 04; xmlBestand/tekstBestand, UUID v4 enforced."""
    GGK0310 = "http://www.stufstandaarden.nl/sectormodel/ggk/0210"
    """The 0310 bundle (2.1.02/2.1.03): bericht with xmime:contentType."""

    @property
    def label(self) -> str:
        return "ggk0210" if self is Generation.GGK0210 else "ggk0310"


class Kind(StrEnum):
    DI01 = "Di01"
    DU01 = "Du01"
    FO01 = "Fo01"


DI01_ELEMENT = "envelopHeenbericht-ggk_Di01"
DU01_ELEMENT = "envelopRetourbericht-ggk_Du01"
GGK_APPLICATIE = "GGk"
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9\-._]{4,255}$")


@dataclass(frozen=True, slots=True)
class Systeem:
    """zender or ontvanger of the stuurgegevens."""

    organisatie: str
    applicatie: str
    administratie: str | None = None
    gebruiker: str | None = None


@dataclass(frozen=True, slots=True)
class Fout:
    """The body of a Fo01/Fo03."""

    code: str
    plek: str
    omschrijving: str
    details: str | None = None


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed envelope; ``payload`` is the decoded content (empty for a Fo01)."""

    kind: Kind
    generation: Generation | None
    zender: Systeem
    ontvanger: Systeem
    referentienummer: str
    tijdstip: str
    cross_ref: str | None = None
    functie: str | None = None
    applicatie_versie: str | None = None
    applicatie_subversie: str | None = None
    functie_versie: str | None = None
    functie_subversie: str | None = None
    payload: bytes = b""
    payload_is_xml: bool = True
    bestandsnaam: str | None = None
    content_type: str | None = None
    fout: Fout | None = None


class EnvelopeError(Exception):
    """The document is an envelope but cannot be read; ``problems`` says why."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


def is_envelope(root: etree._Element) -> bool:
    qname = etree.QName(root)
    if qname.namespace in (Generation.GGK0210.value, Generation.GGK0310.value):
        return qname.localname in (DI01_ELEMENT, DU01_ELEMENT)
    return qname.namespace == STUF_NS and qname.localname == "Fo01Bericht"


_local = threading.local()


_ENVELOPE_FILES = {
    Generation.GGK0210.value: ("ggk0210", "ggk0210/ggk0210_msg.xsd"),
    Generation.GGK0310.value: ("ggk0310", "ggk0310/ggk0310_msg.xsd"),
    STUF_NS: ("StUF0301", "stuf0301.xsd"),
}
"""Envelope namespace → (label, schema file below schemas/stuf-ggk)."""


def envelope_schemas() -> list[tuple[str, str, Path]]:
    """(namespace, label, file) of every envelope schema the gateway validates against."""
    return [(ns, label, stuf_ggk_dir() / file) for ns, (label, file) in _ENVELOPE_FILES.items()]


def _schema_for(namespace: str) -> etree.XMLSchema:
    """The envelope schema, one instance per thread: an lxml XMLSchema keeps its error log
    on the instance, so large envelopes read in a worker thread need their own."""
    _schemas: dict[str, etree.XMLSchema] = _local.__dict__.setdefault("schemas", {})
    schema = _schemas.get(namespace)
    if schema is None:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        doc = etree.parse(str(stuf_ggk_dir() / _ENVELOPE_FILES[namespace][1]), parser)
        schema = etree.XMLSchema(doc)
        _schemas[namespace] = schema
    return schema


def _envelope_rule(path: str | None, kind: str) -> str:
    if (
        path
        and path.split("/")[-1] in ("referentienummer", "crossRefnummer")
        and (kind == "XSD-PATTERN")
    ):
        return "IB009"
    return "ENV-XSD"


def _systeem(el: etree._Element | None) -> Systeem:
    if el is None:
        return Systeem("", "")
    found = children(el)
    return Systeem(
        organisatie=child_text(found, f"{{{STUF_NS}}}organisatie") or "",
        applicatie=child_text(found, f"{{{STUF_NS}}}applicatie") or "",
        administratie=child_text(found, f"{{{STUF_NS}}}administratie"),
        gebruiker=child_text(found, f"{{{STUF_NS}}}gebruiker"),
    )


def parse(root: etree._Element, payload: bytes | None = None) -> Envelope:
    """Validate an envelope against its schema and read it; raises :class:`EnvelopeError`.
    ``payload``: the payload the caller wrapped in this envelope itself (:func:`build_tree`);
    it is taken as it is instead of decoded from the base64 text once more."""
    if not is_envelope(root):
        raise EnvelopeError(
            [
                Problem(
                    "ENV-ELEMENT",
                    "the message is not a StUF-GGk ggk_Di01, ggk_Du01 or StUF Fo01",
                    expected=f"{DI01_ELEMENT}, {DU01_ELEMENT} or Fo01Bericht",
                    found=repr(etree.QName(root).localname[:60]),
                )
            ]
        )
    qname = etree.QName(root)
    namespace = qname.namespace or ""
    schema = _schema_for(namespace)
    if not schema.validate(root):
        problems = problems_from_log(schema.error_log, rule_for=_envelope_rule)
        raise EnvelopeError(problems)
    top = children(root)
    sg = top.get(f"{{{STUF_NS}}}stuurgegevens")
    if sg is None:
        sg = top.get(f"{{{namespace}}}stuurgegevens")
    assert sg is not None  # guaranteed by the schema
    s = children(sg)
    common = {
        "zender": _systeem(s.get(f"{{{STUF_NS}}}zender")),
        "ontvanger": _systeem(s.get(f"{{{STUF_NS}}}ontvanger")),
        "referentienummer": child_text(s, f"{{{STUF_NS}}}referentienummer") or "",
        "tijdstip": child_text(s, f"{{{STUF_NS}}}tijdstipBericht") or "",
        "cross_ref": child_text(s, f"{{{STUF_NS}}}crossRefnummer"),
    }
    if namespace == STUF_NS:
        body = top.get(f"{{{STUF_NS}}}body")
        assert body is not None
        b = children(body)
        fout = Fout(
            code=child_text(b, f"{{{STUF_NS}}}code") or "",
            plek=child_text(b, f"{{{STUF_NS}}}plek") or "",
            omschrijving=child_text(b, f"{{{STUF_NS}}}omschrijving") or "",
            details=child_text(b, f"{{{STUF_NS}}}details"),
        )
        return Envelope(kind=Kind.FO01, generation=None, fout=fout, **common)  # type: ignore[arg-type]

    generation = Generation(namespace)
    g = f"{{{namespace}}}"
    params = top.get(f"{g}parameters")
    assert params is not None
    p = children(params)
    bericht = p.get(f"{g}bericht")
    assert bericht is not None
    if generation is Generation.GGK0210:
        content = bericht[0]
        is_xml = etree.QName(content).localname == "xmlBestand"
        bestandsnaam = content.get("bestandsnaam")
        content_type = None
        encoded = content.text or ""
    else:
        content_type = bericht.get(f"{{{XMIME_NS}}}contentType")
        bestandsnaam = bericht.get(f"{{{STUF_NS}}}bestandsnaam")
        is_xml = bool(content_type) and "xml" in (content_type or "")
        encoded = bericht.text or ""
    if payload is None:
        try:
            payload = decode_base64(encoded)
        except (binascii.Error, ValueError):
            raise EnvelopeError(
                [Problem("ENV-XSD", "payload is not valid base64", path="parameters/bericht")]
            ) from None
    kind = Kind.DI01 if qname.localname == DI01_ELEMENT else Kind.DU01
    return Envelope(
        kind=kind,
        generation=generation,
        functie=child_text(s, f"{{{STUF_NS}}}functie"),
        applicatie_versie=child_text(p, f"{g}applicatieVersie"),
        applicatie_subversie=child_text(p, f"{g}applicatieSubversie"),
        functie_versie=child_text(p, f"{g}functieVersie"),
        functie_subversie=child_text(p, f"{g}functieSubversie"),
        payload=payload,
        payload_is_xml=is_xml,
        bestandsnaam=bestandsnaam,
        content_type=content_type,
        **common,  # type: ignore[arg-type]
    )


def check(env: Envelope) -> list[Problem]:
    """GGk chain rules the schema does not express (stuf-ggk facts sheet 2.4, 2.7, 4.4)."""
    problems: list[Problem] = []
    refs = [("stuurgegevens/referentienummer", env.referentienummer)]
    if env.cross_ref is not None:
        refs.append(("stuurgegevens/crossRefnummer", env.cross_ref))
    for path, value in refs:
        if not UUID4.match(value):
            problems.append(
                Problem(
                    "IB009",
                    f"{path.split('/')[-1]} is not a lower-case version-4 UUID",
                    path=path,
                    expected="UUID v4, e.g. 0e09a81f-64a0-4793-b946-d6538fb3f37e",
                    found=repr(value),
                )
            )
    if env.ontvanger.applicatie != GGK_APPLICATIE:
        problems.append(
            Problem(
                "ENV-APPLICATIE",
                "ontvanger.applicatie should be the fixed value GGk",
                path="stuurgegevens/ontvanger/applicatie",
                expected="GGk",
                found=repr(env.ontvanger.applicatie),
                severity=Severity.WARNING,
            )
        )
    if env.bestandsnaam is not None and not _FILE_NAME.match(env.bestandsnaam):
        problems.append(
            Problem(
                "ENV-BESTANDSNAAM",
                "bestandsnaam may only hold A-Z a-z 0-9 . - _ (4-255 chars)",
                path="parameters/bericht/@bestandsnaam",
                found=repr(env.bestandsnaam),
            )
        )
    return problems


def named_message(functie: str | None) -> MessageType | None:
    """The iWmo/iJw message a functie names (``WMO301``, also written ``wmo301``), or None.

    This decides how a payload is checked, never the payload's own label (xmlBestand versus
    tekstBestand, or xmime:contentType): a label is the sender's claim and costs nothing to
    change, so a message type announced by its functie is always parsed and validated as XML.
    """
    return BY_CODE.get((functie or "").strip().upper())


def functie_label(functie: str | None) -> str:
    """A functie as logs and metrics may show it: a message code exactly as the catalogue
    writes it, or ``other`` (a partner's free text never becomes a label or log field)."""
    message = named_message(functie)
    return message.code if message is not None and message.code == functie else "other"


_ISTANDAARD_MARK = NAMESPACE_ROOT.encode()


def looks_like_istandaard(payload: bytes) -> bool:
    """True when a payload carries an iStandaarden namespace anywhere: such content is an
    iWmo/iJw message (or meant to pass as one) whatever its functie or label says."""
    return _ISTANDAARD_MARK in payload


def check_text_payload(envelope: Envelope, allowed: frozenset[str]) -> Problem | None:
    """A Di01/Du01 whose functie names no iWmo/iJw message may only carry a free payload for
    the functies the configuration allows (a closed list), and never iWmo/iJw content."""
    functie = envelope.functie or ""
    if functie not in allowed:
        return Problem(
            "ENV-FUNCTIE",
            "functie names no iWmo/iJw message and is not an allowed text functie",
            path="stuurgegevens/functie",
            expected="an iWmo/iJw message code (e.g. WMO301) or a configured text functie",
            found=repr(functie[:40]),
        )
    if looks_like_istandaard(envelope.payload):
        return Problem(
            "ENV-FUNCTIE",
            "payload is iWmo/iJw content; its functie must name the message",
            path="stuurgegevens/functie",
            found=repr(functie[:40]),
        )
    return None


# --- building -------------------------------------------------------------------------------


def new_referentienummer() -> str:
    """A lower-case UUID v4, as the chain requires (IB009, CC04)."""
    return str(uuid.uuid4())


def tijdstip_now(moment: datetime | None = None) -> str:
    """StUF tijdstipBericht with milliseconds: yyyyMMddHHmmssSSS (17 digits), in Dutch time
    (StUF's timestamps carry no zone: they are the Netherlands' local time, whatever the
    host's zone is)."""
    moment = moment or datetime.now(DUTCH_TIME)
    return moment.strftime("%Y%m%d%H%M%S") + f"{moment.microsecond // 1000:03d}"


def _systeem_el(parent: etree._Element, tag: str, organisatie: str, applicatie: str) -> None:
    el = etree.SubElement(parent, f"{{{STUF_NS}}}{tag}")
    etree.SubElement(el, f"{{{STUF_NS}}}organisatie").text = organisatie
    etree.SubElement(el, f"{{{STUF_NS}}}applicatie").text = applicatie


def _serialize(root: etree._Element) -> bytes:
    body: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body + b"\n"


def build_tree(
    kind: Kind,
    payload: bytes,
    *,
    zender: str,
    zender_applicatie: str,
    ontvanger: str,
    functie: str,
    referentienummer: str | None = None,
    cross_ref: str | None = None,
    tijdstip: str | None = None,
    generation: Generation = Generation.GGK0210,
    applicatie_versie: str = "0001",
    applicatie_subversie: str = "0000",
    functie_versie: str = "0003",
    functie_subversie: str = "0002",
    bestandsnaam: str | None = None,
) -> etree._Element:
    """A ggk_Di01 or ggk_Du01 around ``payload`` as a tree (what :func:`build_di01` and
    :func:`build_du01` serialise): the gateway's own wrapping of a payload it validated
    (REST, portal) goes to the ingress as this tree, never serialised and parsed again."""
    ns = generation.value
    nsmap = {"GGK": ns, "StUF": STUF_NS}
    if generation is Generation.GGK0310:
        nsmap["xmime"] = XMIME_NS
    name = DI01_ELEMENT if kind is Kind.DI01 else DU01_ELEMENT
    root = etree.Element(f"{{{ns}}}{name}", nsmap=nsmap)
    sg = etree.SubElement(root, f"{{{ns}}}stuurgegevens")
    etree.SubElement(sg, f"{{{STUF_NS}}}berichtcode").text = kind.value
    _systeem_el(sg, "zender", zender, zender_applicatie)
    _systeem_el(sg, "ontvanger", ontvanger, GGK_APPLICATIE)
    etree.SubElement(sg, f"{{{STUF_NS}}}referentienummer").text = (
        referentienummer or new_referentienummer()
    )
    etree.SubElement(sg, f"{{{STUF_NS}}}tijdstipBericht").text = tijdstip or tijdstip_now()
    if kind is Kind.DU01:
        if not cross_ref:
            raise ValueError("a Du01 needs the referentienummer of its Di01 as cross_ref")
        etree.SubElement(sg, f"{{{STUF_NS}}}crossRefnummer").text = cross_ref
    etree.SubElement(sg, f"{{{STUF_NS}}}functie").text = functie
    params = etree.SubElement(root, f"{{{ns}}}parameters")
    for tag, value in (
        ("applicatieVersie", applicatie_versie),
        ("applicatieSubversie", applicatie_subversie),
        ("functieVersie", functie_versie),
        ("functieSubversie", functie_subversie),
    ):
        etree.SubElement(params, f"{{{ns}}}{tag}").text = value
    bericht = etree.SubElement(params, f"{{{ns}}}bericht")
    encoded = base64.b64encode(payload).decode("ascii")
    if generation is Generation.GGK0210:
        if bestandsnaam is None:
            etree.SubElement(bericht, f"{{{ns}}}xmlBestand").text = encoded
        else:
            text = etree.SubElement(bericht, f"{{{ns}}}tekstBestand", bestandsnaam=bestandsnaam)
            text.text = encoded
    else:
        content_type = "text/plain" if bestandsnaam else "application/xml"
        bericht.set(f"{{{XMIME_NS}}}contentType", content_type)
        if bestandsnaam:
            bericht.set(f"{{{STUF_NS}}}bestandsnaam", bestandsnaam)
        bericht.text = encoded
    return root


def build_di01(
    payload: bytes,
    *,
    zender: str,
    zender_applicatie: str,
    ontvanger: str,
    functie: str,
    referentienummer: str | None = None,
    tijdstip: str | None = None,
    generation: Generation = Generation.GGK0210,
    applicatie_versie: str = "0001",
    applicatie_subversie: str = "0000",
    functie_versie: str = "0003",
    functie_subversie: str = "0002",
    bestandsnaam: str | None = None,
) -> bytes:
    """Wrap a payload in a ggk_Di01 (heenbericht). ``bestandsnaam`` makes it a text file."""
    return _serialize(
        build_tree(
            Kind.DI01,
            payload,
            zender=zender,
            zender_applicatie=zender_applicatie,
            ontvanger=ontvanger,
            functie=functie,
            referentienummer=referentienummer,
            cross_ref=None,
            tijdstip=tijdstip,
            generation=generation,
            applicatie_versie=applicatie_versie,
            applicatie_subversie=applicatie_subversie,
            functie_versie=functie_versie,
            functie_subversie=functie_subversie,
            bestandsnaam=bestandsnaam,
        )
    )


def build_du01(
    payload: bytes,
    *,
    zender: str,
    zender_applicatie: str,
    ontvanger: str,
    functie: str,
    cross_ref: str,
    referentienummer: str | None = None,
    tijdstip: str | None = None,
    generation: Generation = Generation.GGK0210,
    applicatie_versie: str = "0001",
    applicatie_subversie: str = "0000",
    functie_versie: str = "0003",
    functie_subversie: str = "0002",
) -> bytes:
    """Wrap a retour payload in a ggk_Du01; ``cross_ref`` = the Di01's referentienummer."""
    return _serialize(
        build_tree(
            Kind.DU01,
            payload,
            zender=zender,
            zender_applicatie=zender_applicatie,
            ontvanger=ontvanger,
            functie=functie,
            referentienummer=referentienummer,
            cross_ref=cross_ref,
            tijdstip=tijdstip,
            generation=generation,
            applicatie_versie=applicatie_versie,
            applicatie_subversie=applicatie_subversie,
            functie_versie=functie_versie,
            functie_subversie=functie_subversie,
            bestandsnaam=None,
        )
    )


def build_fout(
    berichtcode: str,
    *,
    zender: str,
    zender_applicatie: str,
    ontvanger: str,
    ontvanger_applicatie: str = GGK_APPLICATIE,
    cross_ref: str,
    code: str,
    plek: str,
    omschrijving: str,
    details: str | None = None,
    referentienummer: str | None = None,
    tijdstip: str | None = None,
) -> etree._Element:
    """A StUF Fo01Bericht or Fo03Bericht element; texts cut to the schema's lengths."""
    if plek not in ("client", "server"):
        raise ValueError("plek is 'client' or 'server' (lower case)")
    root = etree.Element(f"{{{STUF_NS}}}{berichtcode}Bericht", nsmap={"StUF": STUF_NS})
    sg = etree.SubElement(root, f"{{{STUF_NS}}}stuurgegevens")
    etree.SubElement(sg, f"{{{STUF_NS}}}berichtcode").text = berichtcode
    _systeem_el(sg, "zender", zender, zender_applicatie)
    _systeem_el(sg, "ontvanger", ontvanger, ontvanger_applicatie)
    etree.SubElement(sg, f"{{{STUF_NS}}}referentienummer").text = (
        referentienummer or new_referentienummer()
    )
    etree.SubElement(sg, f"{{{STUF_NS}}}tijdstipBericht").text = tijdstip or tijdstip_now()
    etree.SubElement(sg, f"{{{STUF_NS}}}crossRefnummer").text = cross_ref
    body = etree.SubElement(root, f"{{{STUF_NS}}}body")
    etree.SubElement(body, f"{{{STUF_NS}}}code").text = code[:7]
    etree.SubElement(body, f"{{{STUF_NS}}}plek").text = plek
    etree.SubElement(body, f"{{{STUF_NS}}}omschrijving").text = omschrijving[:200]
    if details:
        etree.SubElement(body, f"{{{STUF_NS}}}details").text = details[:1000]
    return root


def build_fo01(
    *,
    zender: str,
    zender_applicatie: str,
    ontvanger: str,
    cross_ref: str,
    code: str,
    plek: str,
    omschrijving: str,
    details: str | None = None,
    referentienummer: str | None = None,
    tijdstip: str | None = None,
) -> bytes:
    """A Fo01 (asynchronous functional error) rejecting the Di01/Du01 ``cross_ref``."""
    return _serialize(
        build_fout(
            "Fo01",
            zender=zender,
            zender_applicatie=zender_applicatie,
            ontvanger=ontvanger,
            cross_ref=cross_ref,
            code=code,
            plek=plek,
            omschrijving=omschrijving,
            details=details,
            referentienummer=referentienummer,
            tijdstip=tijdstip,
        )
    )


def reply_zender(element: etree._Element) -> Systeem | None:
    """The zender of an envelope that was refused before it was checked, if it can be read:
    the Fo03 goes back to it (its ontvanger). Only values within the schema's lengths."""
    zender = element.find(f"{{*}}stuurgegevens/{{{STUF_NS}}}zender")
    if zender is None:
        return None
    organisatie = (zender.findtext(f"{{{STUF_NS}}}organisatie") or "").strip()
    applicatie = (zender.findtext(f"{{{STUF_NS}}}applicatie") or "").strip()
    if not (0 < len(organisatie) <= 200 and 3 <= len(applicatie) <= 50):
        return None
    return Systeem(organisatie, applicatie)


def reply_reference(element: etree._Element) -> str:
    """The referentienummer of an unchecked envelope, for the Fo03's crossRefnummer: at most
    a UUID's length is echoed."""
    found = element.findtext(f"{{*}}stuurgegevens/{{{STUF_NS}}}referentienummer")
    return (found or "").strip()[:40]
