"""The partner registry: every organisation the gateway talks to, and how to reach it.

A partner is keyed by the value it uses as StUF ``organisatie``: a CBS gemeentecode (``0150``),
an AGB code (``12345678``) or a fixed chain-party name (``CAK``, ``SVB``, ``CORV``). Secrets are
stored as SHA-256 digests only: the bearer token's, and the client certificate's fingerprint.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from gateway import transports
from gateway.standards import Party
from gateway.tables import Table, UnknownKey


class PartnerKind(StrEnum):
    GEMEENTE = "gemeente"
    AANBIEDER = "aanbieder"
    CAK = "cak"
    SVB = "svb"
    CORV = "corv"

    @property
    def party(self) -> Party | None:
        """The iWmo/iJw header party this kind may send as, if any."""
        if self is PartnerKind.GEMEENTE:
            return Party.GEMEENTE
        if self is PartnerKind.AANBIEDER:
            return Party.AANBIEDER
        return None


@dataclass(frozen=True, slots=True)
class Delivery:
    """How messages for a partner leave the gateway: an adapter name and its settings."""

    adapter: str = "inbox"
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Token:
    """One of a partner's bearer tokens, kept as its SHA-256 digest only. A partner may hold
    several at once (a rotation: the new one issued, the old one valid until ``expires`` or
    its revocation), each named by a short ``id`` the operator revokes it by."""

    id: str
    sha256: str
    created: datetime | None = None
    expires: datetime | None = None

    def valid_at(self, now: datetime) -> bool:
        return self.expires is None or now < self.expires


@dataclass(frozen=True, slots=True)
class Partner:
    id: str
    name: str
    kind: PartnerKind
    token_sha256: str | None = None
    """The single-token form of older partner files (``token_sha256 = ...``), still read."""
    cert_sha256: str | None = None
    delivery: Delivery = field(default_factory=Delivery)
    oin: str | None = None
    """The partner's OIN (Digikoppeling PartyId): how a CPA party is mapped to it."""
    tokens: tuple[Token, ...] = ()
    """The ``[[partner.token]]`` entries: several may be active during a rotation."""
    disabled: bool = False
    """A disabled partner proves nothing: its tokens and certificate are refused (its
    messages already in the gateway stay, and are still delivered to it)."""

    def digests(self, now: datetime) -> list[str]:
        """The digests of the tokens that are valid at ``now``."""
        found = [t.sha256 for t in self.tokens if t.valid_at(now)]
        if self.token_sha256:
            found.append(self.token_sha256)
        return found


class RegistryError(Exception):
    """The partner file cannot be used; the message says which entry and why."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PartnerRegistry:
    """The partners, looked up by id, token, certificate or OIN. One object lives as long as
    the gateway (the ingress, delivery, the portal and the CPA store hold it);
    :meth:`replace` swaps its contents for a reloaded file's in one step."""

    _state: tuple[dict[str, Partner], dict[str, Partner], dict[str, Partner]]
    """(by id, by certificate digest, by OIN): replaced whole, never changed in place."""

    def __init__(self, partners: list[Partner]) -> None:
        self._index(partners)

    def replace(self, other: PartnerRegistry) -> None:
        """Take ``other``'s partners: one attribute assignment, so a lookup sees either the
        old registry or the new one, never a mix (the event loop runs one task at a time,
        and the indexes are swapped as one tuple)."""
        self._state = other._state

    @property
    def _by_id(self) -> dict[str, Partner]:
        return self._state[0]

    @property
    def _by_cert(self) -> dict[str, Partner]:
        return self._state[1]

    @property
    def _by_oin(self) -> dict[str, Partner]:
        return self._state[2]

    def _index(self, partners: list[Partner]) -> None:
        by_id: dict[str, Partner] = {}
        for partner in partners:
            if partner.id in by_id:
                raise RegistryError(f"partner {partner.id} is listed twice")
            by_id[partner.id] = partner
        by_cert: dict[str, Partner] = {}
        for partner in partners:
            if not partner.cert_sha256:
                continue
            key = partner.cert_sha256.lower()
            if key in by_cert:
                raise RegistryError(
                    f"partners {by_cert[key].id} and {partner.id} share a certificate"
                )
            by_cert[key] = partner
        by_token: dict[str, str] = {}  # a token proves one partner (by_token keeps the last)
        for partner in partners:
            held = [t.sha256 for t in partner.tokens] + [partner.token_sha256 or ""]
            for digest in {d.lower() for d in held if d}:
                if by_token.setdefault(digest, partner.id) != partner.id:
                    raise RegistryError(
                        f"partners {by_token[digest]} and {partner.id} share a token"
                    )
        by_oin: dict[str, Partner] = {}
        for partner in partners:
            if partner.oin is None:
                continue
            if partner.oin in by_oin:
                raise RegistryError(
                    f"partners {by_oin[partner.oin].id} and {partner.id} share OIN {partner.oin}"
                )
            by_oin[partner.oin] = partner
        self._state = (by_id, by_cert, by_oin)

    @classmethod
    def load(cls, path: Path) -> PartnerRegistry:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise RegistryError(f"{path}: {exc}") from None
        partners = []
        try:
            root = Table(data, str(path))
            entries = root.tables("partner", f"{path}: partner")
            root.done()
        except UnknownKey as exc:
            raise RegistryError(str(exc)) from None
        for i, entry in enumerate(entries):
            try:
                partner_id = _partner_id(entry["id"])
                adapter = str(entry.table("delivery").get("adapter", "inbox"))
                delivery = entry.table(
                    "delivery",
                    f"{path}: partner {partner_id}: [partner.delivery] of adapter {adapter!r}",
                )
                partners.append(
                    Partner(
                        id=partner_id,
                        name=str(entry.get("name", entry["id"])),
                        kind=PartnerKind(entry["kind"]),
                        token_sha256=_digest(entry.get("token_sha256"), "token_sha256"),
                        cert_sha256=_digest(entry.get("cert_sha256"), "cert_sha256"),
                        delivery=Delivery(
                            adapter=str(delivery.get("adapter", "inbox")),
                            settings=_settings(delivery.raw, path.resolve().parent),
                        ),
                        oin=_oin(entry.get("oin")),
                        tokens=_tokens(
                            entry.tables("token", f"{path}: partner {partner_id}: token")
                        ),
                        disabled=_flag(entry.get("disabled", False), "disabled"),
                    )
                )
                entry.done()
                _check_settings(delivery, adapter)
            except UnknownKey as exc:
                raise RegistryError(str(exc)) from None
            except (KeyError, ValueError) as exc:
                raise RegistryError(f"{path}: partner #{i + 1}: bad or missing {exc}") from None
        return cls(partners)

    def get(self, partner_id: str) -> Partner | None:
        return self._by_id.get(partner_id)

    def all(self) -> list[Partner]:
        return list(self._by_id.values())

    def by_token(self, token: str) -> Partner | None:
        """The enabled partner one of whose valid tokens matches; every digest is compared
        (in constant time), so the time taken says nothing about which one matched."""
        digest = token_digest(token)
        now = datetime.now(UTC)
        found = None
        for partner in self._by_id.values():
            for known in partner.digests(now):
                if hmac.compare_digest(known, digest) and not partner.disabled:
                    found = partner
        return found

    def by_certificate(self, der: bytes) -> Partner | None:
        partner = self._by_cert.get(hashlib.sha256(der).hexdigest())
        return None if partner is None or partner.disabled else partner

    def by_oin(self, oin: str) -> Partner | None:
        return self._by_oin.get(oin)


PARTNER_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,39}")
"""A partner id (matched whole): a gemeentecode (0150), an AGB-code (12345678), or a short name
(CAK). It appears in API parameters, envelopes and file names, so its shape is fixed here and
the REST API's document states the same (gateway/parameters.py)."""


def _partner_id(value: object) -> str:
    text = str(value)
    if not PARTNER_ID.fullmatch(text):
        raise ValueError(f"id {text[:50]!r} (a letter or digit, then up to 39 of [A-Za-z0-9._-])")
    return text


TOKEN_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,19}")
"""A token's name in the partner file (``t1``): the operator revokes a token by it."""

_SHA256 = re.compile(r"[0-9a-f]{64}")


def _digest(value: object, key: str) -> str | None:
    """A SHA-256 digest as 64 lower-case hex digits (a token itself, pasted here by mistake,
    is refused rather than silently never matching)."""
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256.fullmatch(value.lower()):
        raise ValueError(f"{key} (64 hex digits: a SHA-256 digest, never the secret itself)")
    return value.lower()


def _flag(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key} (true or false)")
    return value


def _when(value: object, key: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"{key} (a date and time with offset, 2026-12-06T10:00:00Z)")
    return value


def _tokens(entries: list[Table]) -> tuple[Token, ...]:
    tokens: list[Token] = []
    for entry in entries:
        token_id = str(entry["id"])
        if not TOKEN_ID.fullmatch(token_id):
            raise ValueError(f"token id {token_id[:30]!r} (up to 20 of [A-Za-z0-9._-])")
        if any(t.id == token_id for t in tokens):
            raise ValueError(f"token id {token_id!r} (listed twice)")
        sha256 = _digest(entry["sha256"], "token sha256")
        assert sha256 is not None
        tokens.append(
            Token(
                token_id,
                sha256,
                _when(entry.get("created"), "token created"),
                _when(entry.get("expires"), "token expires"),
            )
        )
        entry.done()
    return tuple(tokens)


OIN = re.compile(r"^[0-9]{20}(_[OTA]{1,3})?$")


def _oin(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not OIN.match(value):
        raise ValueError(f"oin {str(value)[:40]!r} (20 digits)")
    return value


def _check_settings(delivery: Table, adapter: str) -> None:
    """Refuse a ``[partner.delivery]`` key the partner's adapter does not read (``urll`` →
    ``url``), against the keys the adapter declares (``Adapter.setting_keys``, read through
    the registry in gateway/transports.py). An adapter that is not installed, or a
    third-party one that declares no ``setting_keys``, is not checked: its settings reach
    it as written."""
    declared = transports.declared_settings(adapter)
    if declared is None:
        return
    delivery.known.update(declared)
    delivery.done()


FILE_SETTINGS = ("path", "ca_file", "cert_file", "key_file")
"""Adapter settings that name files or folders: relative ones are relative to partners.toml,
so a setup folder (like the demo) can be moved as a whole."""


def _settings(delivery: Mapping[str, Any], base: Path) -> dict[str, Any]:
    settings = {k: v for k, v in delivery.items() if k != "adapter"}
    for key in FILE_SETTINGS:
        value = settings.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            settings[key] = str(base / value)
    return settings
