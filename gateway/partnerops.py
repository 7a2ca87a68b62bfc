"""The changes an operator makes to a partner, as changes to the partner file's data.

Shared by ``ggk partners`` (gateway/cli/partners.py) and the operator portal: each function
changes the raw data of partners.toml inside :func:`gateway.partnerfile.edit`, which checks
the whole new file with the gateway's loader before it replaces the old one. Input is checked
for shape and size here; a token is returned once to show, and only its SHA-256 is kept.
"""

from __future__ import annotations

import hashlib
import secrets
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway import transports
from gateway.partnerfile import PartnerFileError, find, now
from routing.partners import OIN, PARTNER_ID, Partner, PartnerKind, token_digest

MAX_NAME = 200
MAX_PEM = 64 * 1024
"""A certificate in PEM is 1-3 KiB; a chain a few of those."""

MAX_SETTING = 1000


def check_id(partner_id: str) -> str:
    if not PARTNER_ID.fullmatch(partner_id):
        raise PartnerFileError("a partner id is a letter or digit, then up to 39 of [A-Za-z0-9._-]")
    return partner_id


def _name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise PartnerFileError(f"a name is 1 to {MAX_NAME} printable characters")
    return name


def _kind(kind: str) -> str:
    try:
        return PartnerKind(kind).value
    except ValueError:
        raise PartnerFileError(
            f"kind is one of {', '.join(k.value for k in PartnerKind)}"
        ) from None


def _adapter(adapter: str) -> str:
    if adapter not in transports.available():
        known = ", ".join(sorted(transports.available()))
        raise PartnerFileError(f"unknown adapter {adapter[:40]!r}; available: {known}")
    return adapter


def setting(text: str) -> tuple[str, Any]:
    """``key=value`` from the command line: the value as TOML (a number, true/false, a
    quoted string) when it reads as one, else the plain text."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or len(text) > MAX_SETTING or key == "adapter":
        raise PartnerFileError(f"a setting is key=value (at most {MAX_SETTING} characters)")
    try:
        value: Any = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def add(
    data: dict[str, Any],
    partner_id: str,
    *,
    name: str,
    kind: str,
    oin: str | None = None,
    adapter: str = "inbox",
    settings: dict[str, Any] | None = None,
) -> None:
    check_id(partner_id)
    if any(e.get("id") == partner_id for e in data["partner"]):
        raise PartnerFileError(f"partner {partner_id} exists already")
    entry: dict[str, Any] = {"id": partner_id, "name": _name(name), "kind": _kind(kind)}
    if oin is not None:
        if not OIN.match(oin):
            raise PartnerFileError("an OIN is 20 digits")
        entry["oin"] = oin
    entry["delivery"] = {"adapter": _adapter(adapter), **(settings or {})}
    data["partner"].append(entry)


def set_disabled(data: dict[str, Any], partner_id: str, disabled: bool) -> bool:
    """Disable or enable; whether anything changed."""
    entry = find(data, partner_id)
    was = bool(entry.get("disabled", False))
    if disabled:
        entry["disabled"] = True
    else:
        entry.pop("disabled", None)
    return was != disabled


def _legacy_to_table(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The partner's ``[[partner.token]]`` list, the old single ``token_sha256`` turned into
    its first entry (``t0``), so it can be rotated and revoked like any other."""
    tokens: list[dict[str, Any]] = entry.setdefault("token", [])
    legacy = entry.pop("token_sha256", None)
    if legacy is not None:
        tokens.insert(0, {"id": "t0", "sha256": str(legacy).lower()})
    return tokens


@dataclass(frozen=True)
class Issued:
    token_id: str
    token: str
    """The token itself: shown once, never stored."""
    retiring: list[str]
    """Tokens that now expire (a rotation)."""
    expires: datetime | None


def issue_token(
    data: dict[str, Any], partner_id: str, *, retire_after: timedelta | None = None
) -> Issued:
    """A new token for the partner; with ``retire_after`` (a rotation) every other token
    still valid expires that long from now (earlier expiries are kept)."""
    entry = find(data, partner_id)
    tokens = _legacy_to_table(entry)
    taken = {str(t.get("id")) for t in tokens}
    numbers = [int(t[1:]) for t in taken if t[:1] == "t" and t[1:].isdigit()]
    number = max(numbers, default=0) + 1
    token = secrets.token_urlsafe(32)
    moment = now()
    retiring: list[str] = []
    until = moment + retire_after if retire_after is not None else None
    if until is not None:
        for old in tokens:
            expires = old.get("expires")
            if expires is None or (isinstance(expires, datetime) and expires > until):
                old["expires"] = until
                retiring.append(str(old["id"]))
    tokens.append({"id": f"t{number}", "sha256": token_digest(token), "created": moment})
    return Issued(f"t{number}", token, retiring, until)


def revoke_token(data: dict[str, Any], partner_id: str, token_id: str) -> None:
    entry = find(data, partner_id)
    tokens = _legacy_to_table(entry)
    kept = [t for t in tokens if t.get("id") != token_id]
    if len(kept) == len(tokens):
        raise PartnerFileError(f"partner {partner_id} has no token {token_id[:20]!r}")
    entry["token"] = kept
    if not kept:
        entry.pop("token")


@dataclass(frozen=True)
class Certificate:
    sha256: str
    subject: str
    not_after: datetime

    @property
    def days_left(self) -> int:
        return (self.not_after - datetime.now(UTC)).days


def parse_certificate(pem: bytes) -> Certificate:
    """The first certificate of a PEM (size-limited); its DER's SHA-256 is what the gateway
    compares a client certificate with."""
    if len(pem) > MAX_PEM:
        raise PartnerFileError(f"a certificate file is at most {MAX_PEM // 1024} KiB")
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise PartnerFileError("not a PEM certificate (-----BEGIN CERTIFICATE-----)") from None
    der = cert.public_bytes(serialization.Encoding.DER)
    return Certificate(
        hashlib.sha256(der).hexdigest(),
        cert.subject.rfc4514_string()[:300],
        cert.not_valid_after_utc,
    )


def register_certificate(data: dict[str, Any], partner_id: str, pem: bytes) -> Certificate:
    certificate = parse_certificate(pem)
    if certificate.days_left < 0:
        raise PartnerFileError(f"the certificate expired on {certificate.not_after:%Y-%m-%d}")
    for other in data["partner"]:
        if other.get("id") != partner_id and str(other.get("cert_sha256", "")).lower() == (
            certificate.sha256
        ):
            raise PartnerFileError(f"that certificate is registered to {other.get('id')} already")
    find(data, partner_id)["cert_sha256"] = certificate.sha256
    return certificate


def set_delivery(
    data: dict[str, Any], partner_id: str, adapter: str, settings: dict[str, Any]
) -> None:
    find(data, partner_id)["delivery"] = {"adapter": _adapter(adapter), **settings}


def summary(partner: Partner) -> dict[str, Any]:
    """What ``list``/``show`` and the portal say of a partner: never a digest of a token."""
    moment = datetime.now(UTC)
    tokens = [
        {
            "id": t.id,
            "created": t.created.isoformat() if t.created else None,
            "expires": t.expires.isoformat() if t.expires else None,
            "valid": t.valid_at(moment),
        }
        for t in partner.tokens
    ]
    if partner.token_sha256:
        tokens.insert(0, {"id": "t0", "created": None, "expires": None, "valid": True})
    shown = {
        k: v
        for k, v in partner.delivery.settings.items()
        if k in ("url", "path", "ca_file", "cert_file", "soap_action")
    }
    return {
        "id": partner.id,
        "name": partner.name,
        "kind": partner.kind.value,
        "oin": partner.oin,
        "status": "disabled" if partner.disabled else "active",
        "tokens": tokens,
        "active_tokens": sum(1 for t in tokens if t["valid"]),
        "certificate_sha256": partner.cert_sha256,
        "delivery": {"adapter": partner.delivery.adapter, **shown},
    }


def changes(old: Partner | None, new: Partner | None) -> list[str]:
    """What changed in one partner between two versions of the file, in words for the audit
    log (token ids and the certificate's short digest: never a token's digest)."""
    if old is None and new is None:
        return []
    if old is None:
        assert new is not None
        return [f"added ({new.kind.value}, delivery {new.delivery.adapter})"]
    if new is None:
        return ["removed"]
    said: list[str] = []
    if old.disabled != new.disabled:
        said.append("disabled" if new.disabled else "enabled")
    before = {t.id: t for t in old.tokens} | ({"t0": None} if old.token_sha256 else {})
    after = {t.id: t for t in new.tokens} | ({"t0": None} if new.token_sha256 else {})
    said += [f"token {t} issued" for t in after if t not in before]
    said += [f"token {t} revoked" for t in before if t not in after]
    for token_id, token in after.items():
        if token is None or token.expires is None or token_id not in before:
            continue
        prior = before[token_id]
        if prior is None or prior.expires != token.expires:
            said.append(f"token {token_id} expires {token.expires:%Y-%m-%dT%H:%MZ}")
    if old.cert_sha256 != new.cert_sha256:
        said.append(f"certificate sha256 {(new.cert_sha256 or 'none')[:16]}")
    if old.delivery != new.delivery:
        said.append(f"delivery set to {new.delivery.adapter}")
    if (old.name, old.kind, old.oin) != (new.name, new.kind, new.oin):
        said.append("name, kind or OIN changed")
    return said
