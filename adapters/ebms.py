"""ebMS2: deliver the envelope to a partner's MSH under a CPA (gateway/ebms/outbound.py).

Settings in partners.toml::

    [partner.delivery]
    adapter = "ebms"
    cpa = "CPA_ID"                  # an imported CPA whose other party is this partner
    # actions = { Di01 = "ggk_Di01", Du01 = "ggk_Du01", Fo01 = "Fo01" }   # the CPA's names

Delivered when the partner acknowledged (reliable profiles) or accepted (best effort); a
MessageError or an expired TimeToLive is a dead letter; the CPA's RetryInterval and Retries
set the retry schedule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.base import AdapterError, Outbound
from gateway.ebms.outbound import EbmsOutbound


class EbmsAdapter:
    holds = False
    uses_context = True

    def __init__(
        self, settings: dict[str, Any], *, timeout: float, context: Mapping[str, Any]
    ) -> None:
        if not settings.get("cpa"):
            raise AdapterError("the ebms adapter needs 'cpa' (the cpaid of an imported CPA)")
        outbound = context.get("ebms")
        if not isinstance(outbound, EbmsOutbound):
            raise AdapterError("the ebms adapter needs [ebms] in the gateway configuration")
        self.settings = settings
        self.outbound = outbound

    async def deliver(self, item: Outbound) -> None:
        await self.outbound.attempt(item, self.settings)

    async def close(self) -> None:
        """The shared session belongs to the gateway's EbmsOutbound, closed at stop."""
