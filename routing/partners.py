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
class Partner:
    id: str
    name: str
    kind: PartnerKind
    token_sha256: str | None = None
    cert_sha256: str | None = None
    delivery: Delivery = field(default_factory=Delivery)
    oin: str | None = None
    """The partner's OIN (Digikoppeling PartyId): how a CPA party is mapped to it."""


class RegistryError(Exception):
    """The partner file cannot be used; the message says which entry and why."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PartnerRegistry:
    def __init__(self, partners: list[Partner]) -> None:
        self._by_id: dict[str, Partner] = {}
        for partner in partners:
            if partner.id in self._by_id:
                raise RegistryError(f"partner {partner.id} is listed twice")
            self._by_id[partner.id] = partner
        self._by_cert = {p.cert_sha256.lower(): p for p in partners if p.cert_sha256}
        self._by_oin: dict[str, Partner] = {}
        for partner in partners:
            if partner.oin is None:
                continue
            if partner.oin in self._by_oin:
                raise RegistryError(
                    f"partners {self._by_oin[partner.oin].id} and {partner.id} share OIN "
                    f"{partner.oin}"
                )
            self._by_oin[partner.oin] = partner

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
                        token_sha256=entry.get("token_sha256"),
                        cert_sha256=entry.get("cert_sha256"),
                        delivery=Delivery(
                            adapter=str(delivery.get("adapter", "inbox")),
                            settings=_settings(delivery.raw, path.resolve().parent),
                        ),
                        oin=_oin(entry.get("oin")),
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
        """The partner whose token digest matches; compared in constant time."""
        digest = token_digest(token)
        found = None
        for partner in self._by_id.values():
            if partner.token_sha256 and hmac.compare_digest(partner.token_sha256, digest):
                found = partner
        return found

    def by_certificate(self, der: bytes) -> Partner | None:
        return self._by_cert.get(hashlib.sha256(der).hexdigest())

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


_OIN = re.compile(r"^[0-9]{20}(_[OTA]{1,3})?$")


def _oin(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _OIN.match(value):
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
