"""XML-DSig for the signed Digikoppeling profiles (osb-be-s, osb-rm-s).

One ``ds:Signature`` in the SOAP Header signs the whole envelope and every payload part
(OASIS ebMS 2.0 §4.1, Security Module, as ebms-core does it):

* Reference ``URI=""``: enveloped-signature, then the ebMS XPath filter that leaves out header
  blocks meant for the next hop (``soap:actor`` nextMSH or SOAP "next", e.g. SyncReply), then
  inclusive C14N 1.0; DigestMethod from the CPA (SHA-256 or stronger);
* one Reference ``URI="cid:…"`` per payload part: the digest of the part's bytes as sent;
* SignedInfo canonicalised with inclusive C14N 1.0 (exclusive C14N accepted when verifying) and
  signed with RSA as the CPA's SignatureAlgorithm says.

Verification uses the certificate in the CPA, never the KeyInfo of the message, and works on the
tree as parsed from the received bytes (no re-serialisation in between).
"""

from __future__ import annotations

import base64
import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from gateway.ebms.message import EB, soap

DS = "http://www.w3.org/2000/09/xmldsig#"
C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
XPATH = "http://www.w3.org/TR/1999/REC-xpath-19991116"
NEXT_MSH = "urn:oasis:names:tc:ebxml-msg:actor:nextMSH"
NEXT = "http://schemas.xmlsoap.org/soap/actor/next"
XPATH_FILTER = (
    f'not(ancestor-or-self::node()[@soap:actor="{NEXT_MSH}"]|'
    f'ancestor-or-self::node()[@soap:actor="{NEXT}"])'
)
DIGESTS = {
    "http://www.w3.org/2001/04/xmlenc#sha256": hashlib.sha256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384": hashlib.sha384,
    "http://www.w3.org/2001/04/xmlenc#sha512": hashlib.sha512,
}
SIGNATURES: dict[str, hashes.HashAlgorithm] = {
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": hashes.SHA256(),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": hashes.SHA384(),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": hashes.SHA512(),
}


def ds(name: str) -> str:
    return f"{{{DS}}}{name}"


class SignatureProblem(ValueError):
    """Why a signature does not verify (answered with a MessageError SecurityFailure)."""


@dataclass(frozen=True, slots=True)
class Algorithms:
    """The CPA's HashFunction and SignatureAlgorithm."""

    digest: str
    signature: str

    def check(self) -> None:
        if self.digest not in DIGESTS or self.signature not in SIGNATURES:
            raise SignatureProblem(
                f"unsupported algorithms {self.digest!r} / {self.signature!r} (SHA-256+ RSA)"
            )


def _covered(envelope: etree._Element) -> etree._Element:
    """What Reference URI="" covers: a copy of the envelope without the Signature (enveloped
    transform) and without the header blocks for the next hop (the profile's XPath filter)."""
    document = copy.deepcopy(envelope)
    header = document.find(soap("Header"))
    signature = header.find(ds("Signature")) if header is not None else None
    if header is not None and signature is not None:  # exactly the one signed and verified
        header.remove(signature)
    actor = soap("actor")
    for el in list(document.iter()):
        if isinstance(el.tag, str) and el.get(actor) in (NEXT_MSH, NEXT):
            parent = el.getparent()
            if parent is not None:
                parent.remove(el)
    return document


def _digest(document: etree._Element, digest: str, *, exclusive: bool = False) -> str:
    """The digest of a document, canonicalised."""
    canonical = etree.tostring(document, method="c14n", exclusive=exclusive, with_comments=False)
    return base64.b64encode(DIGESTS[digest](canonical).digest()).decode()


def sign(
    envelope: etree._Element,
    parts: dict[str, bytes],
    *,
    key: rsa.RSAPrivateKey,
    certificate: bytes,
    algorithms: Algorithms,
) -> None:
    """Add the ds:Signature to ``envelope``'s Header (in place)."""
    algorithms.check()
    header = envelope.find(soap("Header"))
    if header is None:
        raise SignatureProblem("no SOAP Header to put the signature in")
    envelope_digest = _digest(_covered(envelope), algorithms.digest)
    signature = etree.SubElement(header, ds("Signature"), nsmap={"ds": DS})
    info = etree.SubElement(signature, ds("SignedInfo"))
    etree.SubElement(info, ds("CanonicalizationMethod"), Algorithm=C14N)
    etree.SubElement(info, ds("SignatureMethod"), Algorithm=algorithms.signature)
    reference = etree.SubElement(info, ds("Reference"), URI="")
    transforms = etree.SubElement(reference, ds("Transforms"))
    etree.SubElement(transforms, ds("Transform"), Algorithm=ENVELOPED)
    xpath = etree.SubElement(
        etree.SubElement(transforms, ds("Transform"), Algorithm=XPATH), ds("XPath")
    )
    xpath.text = XPATH_FILTER
    etree.SubElement(transforms, ds("Transform"), Algorithm=C14N)
    etree.SubElement(reference, ds("DigestMethod"), Algorithm=algorithms.digest)
    etree.SubElement(reference, ds("DigestValue")).text = envelope_digest
    for cid, data in parts.items():
        part = etree.SubElement(info, ds("Reference"), URI=f"cid:{cid}")
        etree.SubElement(part, ds("DigestMethod"), Algorithm=algorithms.digest)
        etree.SubElement(part, ds("DigestValue")).text = base64.b64encode(
            DIGESTS[algorithms.digest](data).digest()
        ).decode()
    canonical = etree.tostring(info, method="c14n", exclusive=False, with_comments=False)
    value = key.sign(canonical, padding.PKCS1v15(), SIGNATURES[algorithms.signature])
    etree.SubElement(signature, ds("SignatureValue")).text = base64.b64encode(value).decode()
    key_info = etree.SubElement(signature, ds("KeyInfo"))
    x509_data = etree.SubElement(key_info, ds("X509Data"))
    etree.SubElement(x509_data, ds("X509Certificate")).text = base64.b64encode(certificate).decode()


def verify(
    envelope: etree._Element, parts: dict[str, bytes], *, certificate: bytes, algorithms: Algorithms
) -> etree._Element:
    """Check the envelope's signature with the CPA's certificate; :class:`SignatureProblem`
    says what is wrong. Returns the document its Reference URI="" covers, the very tree
    whose digest was checked: read the header from it (``message.as_signed``), never from
    the envelope, where blocks outside the signature could stand beside the signed ones."""
    algorithms.check()
    header = envelope.find(soap("Header"))
    signature = header.find(ds("Signature")) if header is not None else None
    if signature is None:
        raise SignatureProblem("the message is not signed")
    info = signature.find(ds("SignedInfo"))
    value = signature.findtext(ds("SignatureValue"))
    if info is None or not value:
        raise SignatureProblem("ds:Signature without SignedInfo or SignatureValue")
    method = info.find(ds("SignatureMethod"))
    if method is None or method.get("Algorithm") != algorithms.signature:
        raise SignatureProblem("SignatureMethod differs from the CPA's SignatureAlgorithm")
    c14n = info.find(ds("CanonicalizationMethod"))
    exclusive = c14n is not None and c14n.get("Algorithm") == EXC_C14N
    if c14n is None or c14n.get("Algorithm") not in (C14N, EXC_C14N):
        raise SignatureProblem("unsupported CanonicalizationMethod")
    seen: set[str] = set()
    covered: etree._Element | None = None
    for reference in info.findall(ds("Reference")):
        uri = reference.get("URI", "")
        method = reference.find(ds("DigestMethod"))
        if method is None or method.get("Algorithm") != algorithms.digest:
            raise SignatureProblem("DigestMethod differs from the CPA's HashFunction")
        expected = (reference.findtext(ds("DigestValue")) or "").strip()
        if uri == "":
            if covered is not None:
                raise SignatureProblem('more than one Reference URI=""')
            exclusive_body = any(
                t.get("Algorithm") == EXC_C14N for t in reference.iter(ds("Transform"))
            )
            covered = _covered(envelope)
            actual = _digest(covered, algorithms.digest, exclusive=exclusive_body)
        elif uri.startswith("cid:") and uri[4:] in parts:
            actual = base64.b64encode(DIGESTS[algorithms.digest](parts[uri[4:]]).digest()).decode()
        else:
            raise SignatureProblem(f"Reference {uri[:80]!r} names no part of the message")
        if actual != expected:
            raise SignatureProblem(f"the digest of Reference {uri[:80]!r} does not match")
        seen.add(uri)
    if covered is None or any(f"cid:{cid}" not in seen for cid in parts):
        raise SignatureProblem("the signature does not cover the envelope and every payload part")
    canonical = etree.tostring(info, method="c14n", exclusive=exclusive, with_comments=False)
    public_key = x509.load_der_x509_certificate(certificate).public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise SignatureProblem("the CPA's signing certificate has no RSA key")
    try:
        public_key.verify(
            base64.b64decode("".join(value.split())),
            canonical,
            padding.PKCS1v15(),
            SIGNATURES[algorithms.signature],
        )
    except (InvalidSignature, ValueError):
        raise SignatureProblem("the signature value does not verify") from None
    return covered


def signed_references(envelope: etree._Element) -> list[etree._Element]:
    """The ``ds:Reference`` elements of the envelope's signature (none when unsigned): what a
    signed acknowledgment of it must repeat."""
    header = envelope.find(soap("Header"))
    signature = header.find(ds("Signature")) if header is not None else None
    info = signature.find(ds("SignedInfo")) if signature is not None else None
    return info.findall(ds("Reference")) if info is not None else []


def reference_digests(references: list[etree._Element]) -> list[tuple[str, str]]:
    """(URI, DigestValue) of each reference, in order: what two copies must agree on."""
    return [
        (r.get("URI", ""), "".join((r.findtext(ds("DigestValue")) or "").split()))
        for r in references
    ]


def check_signed_acknowledgment(
    ack: etree._Element,
    expected: list[tuple[str, str]],
    *,
    certificate: bytes,
    algorithms: Algorithms,
) -> etree._Element:
    """An Acknowledgment asked for signed: signed with the partner's certificate from the CPA,
    and repeating the references of the message it acknowledges (count, URIs, digests), so it
    is a receipt for exactly what we sent. :class:`SignatureProblem` says what is wrong;
    returns what the signature covers (:func:`verify`), where the references were read."""
    covered = verify(ack, {}, certificate=certificate, algorithms=algorithms)
    header = covered.find(soap("Header"))
    block = header.find(f"{{{EB}}}Acknowledgment") if header is not None else None
    repeated = block.findall(ds("Reference")) if block is not None else []
    if reference_digests(repeated) != expected:
        raise SignatureProblem(
            "the Acknowledgment does not repeat the references of the message we signed"
        )
    return covered


@dataclass(frozen=True, slots=True)
class Signer:
    """This gateway's signing key and certificate (``[ebms] signing_key/signing_cert``)."""

    key: rsa.RSAPrivateKey
    certificate: bytes
    """DER."""

    @classmethod
    def load(cls, key_path: Path, cert_path: Path) -> Signer:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{key_path}: not an RSA private key")
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        public = cert.public_key()
        if (
            not isinstance(public, rsa.RSAPublicKey)
            or public.public_numbers() != key.public_key().public_numbers()
        ):
            raise ValueError(f"{cert_path} is not the certificate of {key_path}")
        return cls(key, cert.public_bytes(serialization.Encoding.DER))

    def sign(
        self, envelope: etree._Element, parts: dict[str, bytes], algorithms: Algorithms
    ) -> None:
        sign(envelope, parts, key=self.key, certificate=self.certificate, algorithms=algorithms)
