"""A development certificate authority for ``ggk init``: never for production.

It issues a server certificate for localhost/127.0.0.1 and one client certificate per partner,
so the demo runs with mutual TLS from the first minute. Private keys are written 0600 in a
0700 directory. Production uses the partners' PKIoverheid certificates instead; the registry
only needs their SHA-256 fingerprints.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True, slots=True)
class Issued:
    cert: Path
    key: Path
    sha256: str


def _name(
    common_name: str, organisation: str = "ggk-gateway development", oin: str | None = None
) -> x509.Name:
    """Subject; ``oin`` goes into serialNumber, where Digikoppeling certificates carry it
    (PKIoverheid, Logius PKI001)."""
    attributes = [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ]
    if oin is not None:
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, oin))
    return x509.Name(attributes)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


class DevCA:
    def __init__(self, directory: Path, *, days: int = 730) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        self.days = days
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self.name = _name("ggk-gateway development CA")
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.cert_path = directory / "ca.crt"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        _write_key(directory / "ca.key", self.key)

    def write_crl(self, revoked: list[int] | None = None) -> Path:
        """(Re)write ``crl.pem`` listing the given serial numbers, signed by this CA."""
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.name)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + dt.timedelta(days=self.days))
        )
        for serial in revoked or []:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(now - dt.timedelta(minutes=1))
                .build()
            )
        crl = builder.sign(self.key, hashes.SHA256())
        path = self.directory / "crl.pem"
        path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        return path

    def is_revoked(self, cert_path: Path) -> bool:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        existing = self.directory / "crl.pem"
        if not existing.exists():
            return False
        crl = x509.load_pem_x509_crl(existing.read_bytes())
        return crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None

    def revoke(self, cert_path: Path) -> Path:
        """Add a certificate issued by this CA to the CRL (keeps earlier revocations)."""
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        serials = [cert.serial_number]
        existing = self.directory / "crl.pem"
        if existing.exists():
            old = x509.load_pem_x509_crl(existing.read_bytes())
            serials += [r.serial_number for r in old if r.serial_number != cert.serial_number]
        return self.write_crl(serials)

    @classmethod
    def load(cls, directory: Path, *, days: int = 730) -> DevCA:
        """An existing development CA (``ca.crt`` and ``ca.key`` in ``directory``)."""
        ca = cls.__new__(cls)
        ca.directory, ca.days = directory, days
        ca.cert_path = directory / "ca.crt"
        ca.cert = x509.load_pem_x509_certificate(ca.cert_path.read_bytes())
        ca.name = ca.cert.subject
        key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{directory / 'ca.key'} is not an EC key of a ggk dev CA")
        ca.key = key
        return ca

    def issue(
        self,
        stem: str,
        common_name: str,
        *,
        server: bool = False,
        organisation: str = "ggk-gateway development",
        not_after: dt.datetime | None = None,
        oin: str | None = None,
        hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1"),
    ) -> Issued:
        """A certificate for TLS: ``server`` for serverAuth with localhost/127.0.0.1/::1 in
        its SAN, else for clientAuth only (a partner's, or the gateway's ebMS client
        certificate: a separate key for a separate job). ``oin`` in the subject's
        serialNumber; ``hosts``: the DNS names and IP addresses a server certificate names."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        expires = not_after or now + dt.timedelta(days=self.days)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organisation, oin))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(min(now, expires) - dt.timedelta(days=1))
            .not_valid_after(expires)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            names: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        cert_path, key_path = self.directory / f"{stem}.crt", self.directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
        der = cert.public_bytes(serialization.Encoding.DER)
        return Issued(cert_path, key_path, hashlib.sha256(der).hexdigest())
