"""Refusals that are audited in aggregate: one record per interval, not one per request.

A caller without a credential, or a partner over its rate, costs the gateway almost nothing
to refuse; writing an audit record for each would let a flood grow the audit log (and load the
writer) without bound. Instead each refusal adds to a count here, and ``summaries`` turns the
counts into one audit event per (who, why) at every audit checkpoint and at a clean stop. The
keys are a closed set (``anonymous`` or a configured partner id, times a few reasons), and at
most ``MAX_PEERS`` peer addresses are kept per key, so memory stays bounded too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway import audit

MAX_PEERS = 8
"""Peer addresses named in one summary (the first ones seen); the rest are only counted."""


@dataclass
class _Count:
    count: int = 0
    peers: dict[str, None] = field(default_factory=dict)
    """The first MAX_PEERS peers, in the order seen (a dict as an ordered set)."""


class RefusalTally:
    """Counts of refusals since the last summary, per (actor, outcome)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], _Count] = {}

    def note(self, actor: str, outcome: str, peer: str) -> None:
        """One more refusal of ``actor`` (``anonymous`` or a partner id) with ``outcome``
        (a foutcode or HTTP status), from ``peer``."""
        entry = self._counts.get((actor, outcome))
        if entry is None:
            entry = self._counts[(actor, outcome)] = _Count()
        entry.count += 1
        if len(entry.peers) < MAX_PEERS:
            entry.peers[peer[:45]] = None

    def pending(self) -> int:
        """Refusals counted and not yet summarised."""
        return sum(c.count for c in self._counts.values())

    def summaries(self, seconds: float) -> list[audit.AuditEvent]:
        """One ``refused_summary`` event per (actor, outcome) counted in the last ``seconds``,
        and the counts start again from zero."""
        counts, self._counts = self._counts, {}
        events = []
        for (actor, outcome), entry in sorted(counts.items()):
            peers = ", ".join(entry.peers)
            more = len(entry.peers) >= MAX_PEERS
            events.append(
                audit.AuditEvent(
                    action="refused_summary",
                    actor=actor,
                    origin=(peers + (", ..." if more else ""))[:400],
                    outcome=f"{outcome} x{entry.count} in {seconds:.0f} s",
                )
            )
        return events
