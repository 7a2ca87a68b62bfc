"""The adapter protocol and the two ways a delivery can fail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class AdapterError(Exception):
    """An adapter cannot be created (unknown name, bad settings)."""


class DeliveryFailed(Exception):
    """A delivery attempt failed; subclasses say whether trying again can help.

    ``summary`` is ours (a status, a foutcode, an exception type): it is shown in status views
    and logs. ``detail`` is whatever the receiving partner said, which may quote BSNs and
    names: it is only ever stored sealed in the audit log.
    """

    retryable = True

    def __init__(
        self,
        summary: str,
        detail: str | None = None,
        *,
        kind: str = "other",
        retry_after: float | None = None,
        max_attempts: int | None = None,
    ) -> None:
        super().__init__(summary)
        self.summary = summary
        self.detail = detail
        self.kind = kind
        """``connection``, ``http``, ``fo03``, ``ebms`` or ``other``: the failure class in
        metrics."""
        self.retry_after = retry_after
        """Seconds until the next attempt when the protocol fixes them (an ebMS CPA's
        RetryInterval); None: the gateway's exponential backoff."""
        self.max_attempts = max_attempts
        """Attempts the protocol allows in all (an ebMS CPA's 1 + Retries); None: the
        gateway's ``[delivery] max_attempts``."""


class RetryableError(DeliveryFailed):
    """Time-out, connection refused, 5xx, Fo03 with plek=server: try again later."""


class PermanentError(DeliveryFailed):
    """The partner refused the message itself (4xx, Fo03 with plek=client): dead-letter it."""

    retryable = False


@dataclass(frozen=True, slots=True)
class Outbound:
    """One delivery attempt of one message to one partner."""

    delivery_id: int
    message_id: str
    destination: str
    envelope: bytes
    referentienummer: str
    functie: str
    attempt: int

    @property
    def idempotency_key(self) -> str:
        """Stable over retries and replays, so the receiver can drop duplicates."""
        return f"{self.referentienummer}:{self.destination}"


class Adapter(Protocol):
    holds: bool
    """True for the inbox: the message waits in the gateway until the partner pulls it."""
    setting_keys: frozenset[str]
    """The keys this adapter reads from its ``[partner.delivery]`` table (besides
    ``adapter``): partners.toml refuses any other key there, naming the nearest of these.
    A third-party adapter that does not declare it is not checked."""
    uses_context: bool = False
    """True when the adapter needs the running gateway's shared services (``context`` in its
    constructor; the ebMS adapter's CPAs and acknowledgment state)."""

    def __init__(self, settings: dict[str, Any], *, timeout: float) -> None: ...

    async def deliver(self, item: Outbound) -> None:
        """Deliver or raise :class:`RetryableError` / :class:`PermanentError`."""
        ...

    async def close(self) -> None: ...
