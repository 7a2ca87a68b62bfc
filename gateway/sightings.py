"""Client certificates as partners present them: when each expires.

The partner registry keeps only certificate fingerprints (nothing to read an expiry from),
so the gateway notes the expiry of the certificate a partner last authenticated with. The
operator's partner-health page shows it, so a certificate about to expire is seen before
the partner's connections start failing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from cryptography import x509


@dataclass(frozen=True, slots=True)
class Sighting:
    not_after: float
    """Epoch seconds."""
    seen_at: float


class CertificateSightings:
    """Per partner, the certificate it last presented (parsed once per new certificate)."""

    def __init__(self) -> None:
        self._by_partner: dict[str, tuple[bytes, Sighting]] = {}

    def saw(self, partner: str, der: bytes) -> None:
        known = self._by_partner.get(partner)
        now = time.time()
        if known is not None and known[0] == der:
            if now - known[1].seen_at > 60:  # at most once a minute per partner
                self._by_partner[partner] = (der, Sighting(known[1].not_after, now))
            return
        try:
            not_after = x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()
        except ValueError:
            return  # the TLS layer accepted it; if it cannot be read here, say nothing
        self._by_partner[partner] = (der, Sighting(not_after, now))

    def of(self, partner: str) -> Sighting | None:
        known = self._by_partner.get(partner)
        return known[1] if known else None
