"""A CPA's end: how long each imported CPA has left, and warning the operator in time.

A CPA is agreed for a period (``tns:Start`` … ``tns:End``); after its end neither MSH may use
it, so messages to and from that partner stop until a renewed CPA is agreed and imported
(``ggk cpa import --replace``). Renewing takes the partner's co-operation and usually weeks,
so the operator is told from :data:`WARN_BEFORE` before the end: ``ggk cpa list`` shows the days
left, the gauge ``ggk_cpa_seconds_left`` (label ``cpaid``) feeds the alert rule in
docs/ops/alerts.yml, and the log says ``ebms.cpa_ending`` once a day per CPA (never per
message: a busy link would flood the log).

The gauge's label set is the loaded CPAs only: a cpaid is text the partner wrote, but only an
operator's ``ggk cpa import`` brings one in, and one that no longer loads leaves the gauge
(a message naming an unknown CPAId never reaches it).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta

import structlog

from gateway.ebms.cpa import Cpa
from gateway.ebms.cpastore import Link

log = structlog.get_logger("ggk.ebms")

WARN_BEFORE = timedelta(days=30)
"""From how long before a CPA's end it is warned of (log, and the alert rule's threshold)."""


def seconds_left(cpa: Cpa, now: datetime) -> float:
    """Until the CPA's end; negative once it has ended."""
    return (cpa.end - now).total_seconds()


def days_left(cpa: Cpa, now: datetime) -> int:
    """Whole days until the CPA's end (0 on its last day, negative once ended)."""
    return int(seconds_left(cpa, now) // 86400)


class EndWarnings:
    """``ebms.cpa_ending`` for each CPA within :data:`WARN_BEFORE` of its end, once per CPA
    per (UTC) day, however often :meth:`check` runs."""

    def __init__(self) -> None:
        self._warned: dict[str, date] = {}

    def check(self, links: Mapping[str, Link], now: datetime) -> list[str]:
        """Warn where due; the cpaids warned of now."""
        warned: list[str] = []
        for cpaid, link in sorted(links.items()):
            if link.cpa.end - now > WARN_BEFORE or self._warned.get(cpaid) == now.date():
                continue
            self._warned[cpaid] = now.date()
            log.warning(
                "ebms.cpa_ending",
                cpaid=cpaid,
                partner=link.partner.id,
                end=link.cpa.end.isoformat(),
                days_left=days_left(link.cpa, now),
            )
            warned.append(cpaid)
        return warned
