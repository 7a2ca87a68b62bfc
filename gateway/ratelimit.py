"""A token bucket per authenticated partner: one partner cannot take more than its share of
the gateway (its writer above all) by sending faster than ``[limits] partner_rate``.

Each partner may send ``partner_burst`` requests at once and ``partner_rate`` per second
after that; a request beyond is refused before its body is read (429 with Retry-After on REST,
a Fo03 StUF046 on SOAP). Cost per request: a dict lookup and a few float operations, no lock
(the event loop is the only caller). Memory: one small list per partner id; ids come from the
closed partner registry, and a hard cap (``max_keys``) drops idle buckets should it be reached.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class PartnerBuckets:
    """Token buckets keyed by partner id: ``take`` says whether a request may go ahead."""

    __slots__ = ("_buckets", "_clock", "burst", "max_keys", "rate")

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (math.isfinite(rate) and rate > 0 and burst >= 1 and max_keys >= 1):
            raise ValueError("rate must be positive, burst and max_keys at least 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, list[float]] = {}
        """partner id → [tokens left, monotonic time of that count]."""

    def take(self, key: str) -> float:
        """Spend one token of ``key``'s bucket: 0.0 when the request may go ahead, otherwise
        the seconds until a token is there again (nothing is spent then: a refused request
        does not push the partner's next chance further away)."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            self._buckets[key] = [self.burst - 1.0, now]
            return 0.0
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        """Forget the buckets that have refilled (a full bucket is the same as none); when all
        are busy, forget them all: memory stays bounded, and the refusal is only postponed."""
        rate, burst = self.rate, self.burst
        full = [k for k, (left, at) in self._buckets.items() if left + (now - at) * rate >= burst]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()


def retry_after(wait: float) -> str:
    """The Retry-After value (whole seconds, at least 1) for a wait of ``wait`` seconds."""
    return str(max(1, math.ceil(wait)))
