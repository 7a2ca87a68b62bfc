"""When a reliable message is sent again, and when it expires: the CPA's schedule, exactly.

A reliable sender (ebMS 2.0 §6.4, ebms-core's schedule) makes its first attempt at the
message's Timestamp T and then one every RetryInterval: T, T + RI, … T + Retries × RI, and the
message lives until TimeToLive = T + RI × (Retries + 1). The attempts are anchored on T, not
on the end of the previous attempt: an attempt that waited some seconds for an asynchronous
Acknowledgment before handing back must not push the next one later by that wait (it did:
+0, +15, +30 s for a 10 s interval, so the third attempt fell after TimeToLive and the CPA's
last allowed attempt was never made). T is the recorded first-attempt Timestamp, so the
schedule survives a restart and, on Kafka, a move of the delivery to another process.

Pure arithmetic on datetimes (to the microsecond; the Timestamp carries milliseconds), so it is
tested without waiting for clocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.ebms.cpa import MAX_RESEND_WINDOW, Channel


@dataclass(frozen=True, slots=True)
class Schedule:
    """The attempts of one reliable message: at ``first`` + k × ``interval``, k = 0 … retries."""

    first: datetime
    """The message's eb:Timestamp: the first attempt."""
    interval: timedelta
    retries: int
    time_to_live: datetime
    """``first`` + ``interval`` × (``retries`` + 1), at most ``first`` + MAX_RESEND_WINDOW."""

    @classmethod
    def of(cls, first: datetime, channel: Channel) -> Schedule | None:
        """The channel's schedule from ``first``; None for a channel that does not resend
        (best effort, or no RetryInterval)."""
        interval = channel.retry_interval
        if not channel.ack_requested or not interval:
            return None
        retries = max(channel.retries or 0, 0)
        window = channel.resend_window or interval
        return cls(first, interval, retries, first + min(window, MAX_RESEND_WINDOW))

    @property
    def attempts(self) -> int:
        """How many attempts the CPA allows in all (1 + Retries)."""
        return self.retries + 1

    def slot(self, k: int) -> datetime:
        """When attempt ``k`` (0 = the first) is due."""
        return self.first + self.interval * k

    def next_after(self, now: datetime) -> datetime | None:
        """The first attempt due strictly after ``now``; None when no attempt the CPA allows
        (before TimeToLive) is left."""
        elapsed = (now - self.first) / self.interval
        k = max(math.floor(elapsed) + 1, 1)
        if k > self.retries:
            return None
        due = self.slot(k)
        return due if due < self.time_to_live else None

    def expired(self, now: datetime) -> bool:
        """TimeToLive has come: the message may no longer be sent (to the microsecond)."""
        return now >= self.time_to_live
