"""Two-way TLS for the ebMS2 MSH: the listener that requires a partner's client certificate,
and the client contexts the gateway uses to reach each partner's MSH.

Digikoppeling (Logius, *Beveiligingsstandaarden en voorschriften* ch04 TLS001-TLS006, ch05
TLSCIPH001; KVS ebMS2 ch05 "HTTP Access Control", "HTTP Confidentiality and Security"):
two-way TLS with PKIoverheid certificates, TLS 1.2 required and 1.3 recommended, nothing older,
cipher suites the NCSC rates "goed" or "voldoende", certificates checked for validity and
against the CRL, the caller authenticated by its client certificate only. So:

- trust anchors are configured per partner (``[ebms] trust`` for all, ``[ebms.partner.<id>]
  trust`` for one): the PKIoverheid private root chain in production, a development CA in
  tests. The system's CA store is never used: a public web CA is no Digikoppeling anchor;
- CRLs (``crl``) are checked for the leaf certificate, both ways;
- our client certificate (``client_cert``/``client_key``, per partner if need be) must allow
  TLS client authentication (EKU clientAuth, or no EKU at all);
- the partner's server certificate must name the endpoint's host (the CPA's Endpoint FQDN
  matches the server certificate, Digikoppeling best practice ch03 "Endpoint");
- TLS 1.2 with ECDHE and an AEAD cipher (AES-GCM, ChaCha20-Poly1305: NCSC "goed"), or TLS 1.3.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

if TYPE_CHECKING:
    from gateway.config import EbmsConfig, TlsConfig

TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"
"""TLS 1.2 suites: ECDHE key exchange (forward secrecy) with AES-GCM or ChaCha20-Poly1305,
which the NCSC rates "goed"; no CBC, no RSA key exchange, no 3DES. TLS 1.3 suites are
OpenSSL's defaults (AES-GCM, ChaCha20-Poly1305), all "goed"."""


class TlsSetupError(ValueError):
    """A TLS file of ``[ebms]`` cannot be used; the message names the setting."""


@dataclass(frozen=True, slots=True)
class PartnerTls:
    """``[ebms.partner.<id>]``: what differs for one partner's MSH (unset: ``[ebms]``'s)."""

    trust: tuple[Path, ...] = ()
    crl: tuple[Path, ...] = ()
    client_cert: Path | None = None
    client_key: Path | None = None


def harden(context: ssl.SSLContext) -> ssl.SSLContext:
    """TLS 1.2 or 1.3 only, with the suites of :data:`TLS12_CIPHERS`; no renegotiation,
    compression or session tickets across contexts."""
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return context


def _load_crls(context: ssl.SSLContext, crls: tuple[Path, ...]) -> None:
    """CRLs are checked for the leaf: OpenSSL then wants a current CRL of every issuer it
    meets (Digikoppeling PKI003: validity is checked against the CRL; a missing CRL fails)."""
    for crl in crls:
        context.load_verify_locations(cafile=str(crl))
    if crls:
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _anchors(context: ssl.SSLContext, trust: tuple[Path, ...]) -> None:
    for anchor in trust:
        context.load_verify_locations(cafile=str(anchor))
    # a CA file of a PKIoverheid chain holds intermediates: a partial chain ending at one of
    # them is not enough, the path must reach the configured root
    context.verify_flags &= ~ssl.VERIFY_X509_PARTIAL_CHAIN


class EbmsTls:
    """The contexts of one gateway: one server context (the listener) and one client
    context per partner, made once (they hold the loaded files)."""

    def __init__(self, ebms: EbmsConfig, tls: TlsConfig | None) -> None:
        self.ebms = ebms
        self.tls = tls
        self._clients: dict[str, ssl.SSLContext] = {}
        self._server: ssl.SSLContext | None = None
        self._crls_seen: dict[Path, int | None] = {}
        """CRL file -> its mtime when it was last loaded (:meth:`refresh_crls`)."""

    def settings(self, partner: str) -> PartnerTls:
        """The partner's own settings, each falling back to ``[ebms]``'s."""
        own = self.ebms.partners.get(partner, PartnerTls())
        return PartnerTls(
            trust=own.trust or self.ebms.trust,
            crl=own.crl or self.ebms.crl,
            client_cert=own.client_cert or self.ebms.client_cert,
            client_key=own.client_key if own.client_cert else self.ebms.client_key,
        )

    def client(self, partner: str) -> ssl.SSLContext:
        """The context for POSTs to ``partner``'s MSH: its anchors only, hostname checked,
        our client certificate presented. :class:`TlsSetupError` when it has no anchors or
        we have no client certificate for it."""
        known = self._clients.get(partner)
        if known is not None:
            return known
        settings = self.settings(partner)
        if not settings.trust:
            raise TlsSetupError(
                f"no trust anchors for partner {partner}'s MSH: set [ebms] trust (or "
                f"[ebms.partner.{partner}] trust) to its CA chain (PKIoverheid)"
            )
        if settings.client_cert is None or settings.client_key is None:
            raise TlsSetupError(
                f"no ebMS client certificate for partner {partner}: set [ebms] client_cert "
                "and client_key (Digikoppeling requires two-way TLS)"
            )
        context = harden(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))  # CERT_REQUIRED, hostname
        _anchors(context, settings.trust)
        self._note_crls(settings.crl)
        _load_crls(context, settings.crl)
        context.load_cert_chain(str(settings.client_cert), str(settings.client_key))
        self._clients[partner] = context
        return context

    def server(self) -> ssl.SSLContext:
        """The ``[ebms] listen`` listener's context: a client certificate is REQUIRED and must
        chain to an anchor of some partner (which partner it is, is its fingerprint's
        business: gateway/web/identify.py); expired, foreign or revoked ones fail the
        handshake."""
        from gateway.connections import LoggedHandshake  # the web layer's, logged alike

        cert, key = self.ebms.server_cert, self.ebms.server_key
        if cert is None or key is None:
            if self.tls is None:
                raise TlsSetupError("[ebms] listen needs server_cert and server_key (or [tls])")
            cert, key = self.tls.cert, self.tls.key
        trust = set(self.ebms.trust)
        crls = set(self.ebms.crl)
        for own in self.ebms.partners.values():
            trust.update(own.trust)
            crls.update(own.crl)
        if not trust:
            raise TlsSetupError("[ebms] listen needs trust anchors ([ebms] trust)")
        context = harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
        context.sslobject_class = LoggedHandshake
        context.load_cert_chain(str(cert), str(key))
        _anchors(context, tuple(sorted(trust)))
        self._note_crls(tuple(crls))
        _load_crls(context, tuple(sorted(crls)))
        context.verify_mode = ssl.CERT_REQUIRED
        self._server = context
        return context

    def _note_crls(self, crls: tuple[Path, ...]) -> None:
        for crl in crls:
            self._crls_seen.setdefault(crl, _mtime(crl))

    def refresh_crls(self) -> list[Path]:
        """Load every CRL file that changed since it was loaded into the live contexts
        (the listener's and the partners'), so a fetched CRL takes effect without a restart
        (Digikoppeling asks for a refresh at least every 4 hours; the maintenance loop calls
        this every checkpoint). OpenSSL uses the newest CRL of an issuer it holds. A file that
        is not a readable CRL is left out (and tried again next time); the one loaded before
        stays in force. The changed files are returned."""
        changed = []
        for crl, seen in list(self._crls_seen.items()):
            now = _mtime(crl)
            if now is None or now == seen:
                continue
            try:
                x509.load_pem_x509_crl(crl.read_bytes())
            except (OSError, ValueError):
                continue
            contexts = [self._server] if self._server is not None else []
            contexts += [
                context
                for partner, context in self._clients.items()
                if crl in self.settings(partner).crl
            ]
            try:
                for context in contexts:
                    context.load_verify_locations(cafile=str(crl))
            except (OSError, ssl.SSLError):
                continue
            self._crls_seen[crl] = now
            changed.append(crl)
        return changed


# --- checks made when the configuration is read ------------------------------------------------


def _certificates(path: Path, setting: str) -> list[x509.Certificate]:
    try:
        found = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise TlsSetupError(f"{setting} {path}: no PEM certificate ({exc})") from None
    return found


def check_files(settings: PartnerTls, where: str) -> None:
    """Every file of ``settings`` readable and what it should be; a client certificate that
    does not allow TLS client authentication is refused here (ebms-core refuses it in the
    handshake: alert 46, "Extended key usage does not permit use for TLS client
    authentication")."""
    for anchor in settings.trust:
        _certificates(anchor, f"{where} trust")
    for crl in settings.crl:
        try:
            x509.load_pem_x509_crl(crl.read_bytes())
        except (OSError, ValueError) as exc:
            raise TlsSetupError(f"{where} crl {crl}: no PEM CRL ({exc})") from None
    if (settings.client_cert is None) != (settings.client_key is None):
        raise TlsSetupError(f"{where}: client_cert and client_key go together")
    if settings.client_cert is None or settings.client_key is None:
        return
    leaf = _certificates(settings.client_cert, f"{where} client_cert")[0]
    try:
        usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
        raise TlsSetupError(
            f"{where} client_cert {settings.client_cert}: its extended key usage does not "
            "allow TLS client authentication (clientAuth); a partner's MSH refuses it"
        )
    try:
        key = serialization.load_pem_private_key(settings.client_key.read_bytes(), None)
    except (OSError, ValueError, TypeError) as exc:
        raise TlsSetupError(
            f"{where} client_key {settings.client_key}: no unencrypted PEM key ({exc})"
        ) from None
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ours = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public != ours:
        raise TlsSetupError(f"{where}: client_key is not the key of client_cert")
