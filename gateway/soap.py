"""SOAP 1.1 binding of StUF-GGk OntvangAsynchroon: unwrap requests, build Bv03 and Fo03 faults.

Only the SOAP layer lives here; the StUF-GGk envelope inside the Body is :mod:`gateway.envelope`
and knows nothing of SOAP, so another transport (ebMS2) can carry the same envelope.
Facts: stuf-ggk facts sheet 3.1-3.3 and 4.2.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from gateway import envelope as env
from gateway.xmlsafe import ParseLimits, UnsafeXml, parse_own, parse_untrusted

SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"
CONTENT_TYPE = "text/xml; charset=utf-8"
MUST_UNDERSTAND = f"{{{SOAP11_NS}}}mustUnderstand"
_HAS_PI = etree.XPath("boolean(//processing-instruction())")

SOAP_ACTIONS: dict[str, str] = {
    f"{env.Generation.GGK0210.value}/ggk_Di01": env.DI01_ELEMENT,
    f"{env.Generation.GGK0210.value}/ggk_Du01": env.DU01_ELEMENT,
    f"{env.Generation.GGK0310.value}/ggk_Di01": env.DI01_ELEMENT,
    f"{env.Generation.GGK0310.value}/ggk_Du01": env.DU01_ELEMENT,
    f"{env.STUF_NS}/Fo01": "Fo01Bericht",
}
"""soapAction URI → the body element it announces (namespace URI + '/' + operation)."""


def soap_action_for(root: etree._Element) -> str:
    """The soapAction that belongs to an envelope element (used when we send)."""
    qname = etree.QName(root)
    if qname.localname == "Fo01Bericht":
        return f"{env.STUF_NS}/Fo01"
    operation = "ggk_Di01" if qname.localname == env.DI01_ELEMENT else "ggk_Du01"
    return f"{qname.namespace}/{operation}"


@dataclass(frozen=True, slots=True)
class SoapFault(Exception):
    """A request refused at the SOAP layer, before any StUF processing."""

    code: str
    plek: str
    omschrijving: str
    http_status: int = 500
    faultcode: str | None = None
    """A SOAP faultcode other than Client/Server (``soapenv:MustUnderstand``)."""
    cross_ref: str = ""
    """The refused message's referentienummer, when its stuurgegevens could be read."""
    zender: env.Systeem | None = None
    """Its zender (the Fo03's ontvanger), when readable."""


def unwrap(data: bytes, soap_action: str | None, limits: ParseLimits) -> etree._Element:
    """The single Body child of a SOAP 1.1 request, checked against the SOAPAction header.

    Dispatch is on the body's root element; a SOAPAction that names a different operation is
    refused (WS-I R2744 requires the header; an empty or absent one is tolerated as StUF asks
    receivers not to depend on it alone).
    """
    try:
        root = parse_untrusted(data, limits)
    except UnsafeXml as exc:
        code = "IB007" if exc.problem.value == "XML-SIZE" else "StUF055"
        raise SoapFault(
            code, "client", exc.message[:200], 413 if code == "IB007" else 500
        ) from None
    qname = etree.QName(root)
    if qname.namespace == SOAP12_NS:
        raise SoapFault("StUF001", "client", "SOAP 1.2 is not supported; use SOAP 1.1", 500)
    if qname.namespace != SOAP11_NS or qname.localname != "Envelope":
        raise SoapFault("StUF055", "client", "request is not a SOAP 1.1 Envelope")
    body = root.find(f"{{{SOAP11_NS}}}Body")
    children = [c for c in body if isinstance(c.tag, str)] if body is not None else []
    if len(children) != 1:
        raise SoapFault("StUF055", "client", "SOAP Body must hold exactly one StUF message")
    message = children[0]
    # From here on the Fo03 can name the refused message and go back to its zender.
    if _HAS_PI(root):
        # WS-I Basic Profile R1009: a SOAP message must not contain processing instructions.
        raise _about(message, "StUF055", "a SOAP message may not hold processing instructions")
    header = root.find(f"{{{SOAP11_NS}}}Header")
    if header is not None:
        for block in header:
            if isinstance(block.tag, str) and block.get(MUST_UNDERSTAND) in ("1", "true"):
                # SOAP 1.1 section 4.2.3: a mandatory header we do not process is a fault.
                raise _about(
                    message,
                    "StUF055",
                    f"SOAP header {etree.QName(block).localname[:60]} must be understood "
                    "and is not supported",
                    faultcode="soapenv:MustUnderstand",
                )
    action = (soap_action or "").strip().strip('"')
    if action:  # absent or "" (JAX-WS Dispatch, WS-I R1109): dispatch on the Body alone
        announced = SOAP_ACTIONS.get(action)
        if announced is None:
            raise _about(message, "StUF037", f"unknown SOAPAction {action[:120]!r}")
        if announced != etree.QName(message).localname:
            raise _about(message, "StUF037", "SOAPAction does not match the message in the Body")
    return message


def _about(
    message: etree._Element, code: str, omschrijving: str, faultcode: str | None = None
) -> SoapFault:
    """A client fault about a readable StUF message: its Fo03 names the message
    (crossRefnummer) and is addressed to its zender."""
    return SoapFault(
        code,
        "client",
        omschrijving,
        faultcode=faultcode,
        cross_ref=env.reply_reference(message),
        zender=env.reply_zender(message),
    )


def _wrap(body_child: etree._Element) -> bytes:
    soap = etree.Element(f"{{{SOAP11_NS}}}Envelope", nsmap={"soapenv": SOAP11_NS})
    etree.SubElement(soap, f"{{{SOAP11_NS}}}Body").append(body_child)
    data: bytes = etree.tostring(soap, encoding="UTF-8", xml_declaration=True)
    return data


def wrap_request(envelope_xml: bytes) -> bytes:
    """A SOAP 1.1 request around an envelope we send (trusted, our own bytes)."""
    return _wrap(parse_own(envelope_xml))


def bv03(
    *,
    zender: env.Systeem,
    ontvanger: env.Systeem,
    cross_ref: str,
    referentienummer: str,
    tijdstip: str,
) -> bytes:
    """A SOAP response carrying StUF:Bv03Bericht for the message ``cross_ref``."""
    s = env.STUF_NS
    root = etree.Element(f"{{{s}}}Bv03Bericht", nsmap={"StUF": s})
    sg = etree.SubElement(root, f"{{{s}}}stuurgegevens")
    etree.SubElement(sg, f"{{{s}}}berichtcode").text = "Bv03"
    for tag, systeem in (("zender", zender), ("ontvanger", ontvanger)):
        el = etree.SubElement(sg, f"{{{s}}}{tag}")
        if systeem.organisatie:
            etree.SubElement(el, f"{{{s}}}organisatie").text = systeem.organisatie
        etree.SubElement(el, f"{{{s}}}applicatie").text = systeem.applicatie
    etree.SubElement(sg, f"{{{s}}}referentienummer").text = referentienummer
    etree.SubElement(sg, f"{{{s}}}tijdstipBericht").text = tijdstip
    etree.SubElement(sg, f"{{{s}}}crossRefnummer").text = cross_ref
    return _wrap(root)


def fault(
    *,
    code: str,
    plek: str,
    omschrijving: str,
    zender: env.Systeem,
    ontvanger: env.Systeem,
    cross_ref: str,
    details: str | None = None,
    faultcode: str | None = None,
) -> bytes:
    """A SOAP 1.1 Fault: faultcode Client/Server from plek (or ``faultcode``), faultstring,
    detail = Fo03Bericht."""
    fo03 = env.build_fout(
        "Fo03",
        zender=zender.organisatie,
        zender_applicatie=zender.applicatie,
        ontvanger=ontvanger.organisatie,
        ontvanger_applicatie=ontvanger.applicatie or "onbekend",
        cross_ref=cross_ref or "onbekend",
        code=code,
        plek=plek,
        omschrijving=omschrijving,
        details=details,
    )
    soap = etree.Element(f"{{{SOAP11_NS}}}Envelope", nsmap={"soapenv": SOAP11_NS})
    body = etree.SubElement(soap, f"{{{SOAP11_NS}}}Body")
    f = etree.SubElement(body, f"{{{SOAP11_NS}}}Fault")
    etree.SubElement(f, "faultcode").text = faultcode or f"soapenv:{plek.capitalize()}"
    etree.SubElement(f, "faultstring").text = omschrijving[:200]
    etree.SubElement(f, "detail").append(fo03)
    data: bytes = etree.tostring(soap, encoding="UTF-8", xml_declaration=True)
    return data
