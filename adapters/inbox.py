"""Inbox: messages are held in the gateway until the partner fetches and acknowledges them."""

from __future__ import annotations

from typing import Any

from adapters.base import Outbound


class InboxAdapter:
    holds = True
    setting_keys: frozenset[str] = frozenset()

    def __init__(self, settings: dict[str, Any], *, timeout: float) -> None:
        del settings, timeout

    async def deliver(self, item: Outbound) -> None:
        raise AssertionError("inbox deliveries are held by the broker, never pushed")

    async def close(self) -> None:
        return None
