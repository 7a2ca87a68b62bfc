"""Signed-out portal sessions: the nonces of session cookies that must no longer be honoured.

Portal sessions are stateless signed cookies (gateway/portal/session.py): every process can
check one without asking anyone. Signing out must still kill a copied cookie, so the session's
nonce is recorded with the session's expiry, through the broker: in the embedded store's table
(gateway/broker/sqlite_sessions.py), and on Kafka on the ``sessions`` topic (retention a little
over a session's life), which every process's view reads from its start. Each process keeps the
live ones in memory (checked on every page, without I/O) and forgets a nonce once its session
would have expired anyway, never before: a revocation forgotten early brings a signed-out
cookie back to life. Memory is bounded instead by refusing new sign-ins while the list is at
capacity (:meth:`Revocations.full_for`): only sessions minted before can still be signed out
then.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterable

import structlog

log = structlog.get_logger("ggk.portal")

CAPACITY = 100_000
"""Live revocations after which new sign-ins wait. A session lives 20 minutes and sign-ins
are limited per partner and per address (gateway/portal/limits.py): 100 000 sign-outs in
that time is abuse, and then no new session is minted until expiries make room."""


class Revocations:
    """The revoked nonces of this process, each with its session's expiry. Thread-safe: on
    Kafka the view's writer thread adds to it while the event loop reads it."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._expiry: dict[str, float] = {}
        self._queue: list[tuple[float, str]] = []
        """(expiry, nonce), soonest first: what to forget, and when, without a scan."""
        self._lock = threading.Lock()
        self._warned = False

    def add(self, nonce: str, expires: float, now: float) -> None:
        """Remember ``nonce`` until ``expires`` (a session already expired needs nothing).
        Never refused, whatever the count: a sign-out must always hold."""
        if expires <= now:
            return
        with self._lock:
            self._forget_expired(now)
            if expires > self._expiry.get(nonce, 0.0):
                self._expiry[nonce] = expires
                heapq.heappush(self._queue, (expires, nonce))
            if len(self._expiry) >= self.capacity and not self._warned:
                self._warned = True
                log.warning("portal.revocations_full", capacity=self.capacity)

    def load(self, rows: Iterable[tuple[str, float]], now: float) -> None:
        for nonce, expires in rows:
            self.add(nonce, expires, now)

    def revoked(self, nonce: str) -> bool:
        """Whether the session of ``nonce`` was signed out (one dictionary look-up)."""
        return nonce in self._expiry

    def full_for(self, now: float) -> float:
        """0.0 while there is room for more revocations; at capacity, the seconds until the
        soonest of them expires (a new sign-in waits that long)."""
        with self._lock:
            self._forget_expired(now)
            if len(self._expiry) < self.capacity:
                self._warned = False
                return 0.0
            return max(self._queue[0][0] - now, 0.001)

    def __len__(self) -> int:
        return len(self._expiry)

    def _forget_expired(self, now: float) -> None:
        """Drop the nonces whose sessions have expired (and queue entries a later ``add`` of
        the same nonce replaced). Only expired ones: a live revocation is never dropped."""
        queue, expiry = self._queue, self._expiry
        while queue and queue[0][0] <= now:
            expires, nonce = heapq.heappop(queue)
            if expiry.get(nonce) == expires:
                del expiry[nonce]
