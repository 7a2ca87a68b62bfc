"""How often the portal lets anyone sign in: sliding windows per peer address and per partner.

Failed sign-ins are limited per address (guessing tokens is as slow as it is pointless);
successful ones per partner (or the operator), because every session can be signed out, and
every sign-out is a revocation each process keeps in memory until the session would have
expired (gateway/broker/revocations.py): a partner signing in and out hundreds of times a
minute is abuse, and would fill that list. Successful sign-ins are not limited per address:
behind a proxy or a municipal network many partners share one, and one of them must not be
able to lock the others out.
"""

from __future__ import annotations

from collections import deque

FAILURES_PER_PEER = (10, 300.0)
"""Failed sign-ins from one address: 10 in five minutes."""
SIGNINS_PER_PARTNER = (120, 300.0)
"""Successful sign-ins as one partner (or the operator): 120 in five minutes, room for a
large gemeente's clerks starting their day; far below what could fill the revocations."""


class WindowLimit:
    """At most ``events`` per key in the last ``window`` seconds; at most ``keys`` keys are
    remembered (bounded memory: the stalest is forgotten first, which only postpones a
    refusal, never grants anything the credential did not)."""

    def __init__(self, events: int, window: float, keys: int = 10_000) -> None:
        if events < 1 or window <= 0 or keys < 1:
            raise ValueError("events and keys must be at least 1, window above 0")
        self.events = events
        self.window = window
        self.keys = keys
        self._seen: dict[str, deque[float]] = {}

    def wait(self, key: str, now: float) -> float:
        """0.0 when another event of ``key`` is within the limit; otherwise the seconds until
        the oldest one in the window leaves it."""
        seen = self._seen.get(key)
        if seen is None:
            return 0.0
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        if len(seen) < self.events:
            return 0.0
        return max(seen[0] + self.window - now, 0.001)

    def note(self, key: str, now: float) -> None:
        """Count one event of ``key`` at ``now``."""
        if key not in self._seen and len(self._seen) >= self.keys:
            self._forget(now)
        self._seen.setdefault(key, deque(maxlen=self.events)).append(now)

    def __len__(self) -> int:
        return len(self._seen)

    def _forget(self, now: float) -> None:
        """Drop keys whose events have all left the window, else the stalest."""
        for key in [k for k, s in self._seen.items() if not s or s[-1] <= now - self.window]:
            del self._seen[key]
        if len(self._seen) >= self.keys:
            stalest = min(self._seen, key=lambda k: self._seen[k][-1])
            del self._seen[stalest]
