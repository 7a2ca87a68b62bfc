"""Asynchronous ebMS signals on their way to partners' endpoints, a bounded line per partner.

A partner's burst (a batch sender's twenty messages at once) must not lose the
Acknowledgments of messages we accepted: a sender without its Acknowledgment resends after
RetryInterval (Digikoppeling: hours) and may give up on a message that did arrive. A partner
whose endpoint never answers, or that floods Pings, must not hold the shared client's
connections or our memory either. So: at most :data:`POSTS_PER_PARTNER` POSTs at once per
partner, the rest waiting in arrival order, bounded per partner by count and bytes (and all
partners together by bytes); only a signal that finds its partner's line full is dropped.
The caller asks :meth:`SignalOutbox.admit` before it signs a signal, so a dropped one costs
no signing. Drops are logged per partner once per interval with their count, not one line
each (a flood would otherwise flood the log too).
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("ggk.ebms")

POSTS_PER_PARTNER = 8
"""Signals being POSTed to one partner's endpoint at once (each up to a few tries of 30 s):
a partner whose endpoint never answers holds at most this many tasks and connections."""
WAITING_SIGNALS = 256
"""Signals waiting behind those per partner: a burst of a few hundred messages is answered
in full. At three 30 s tries per POST, a full line to an endpoint that never answers drains
in under an hour, well within a reliable sender's RetryInterval."""
WAITING_BYTES = 4 * 1024 * 1024
"""The bytes those waiting signals may hold per partner (a signed Acknowledgment is a few
KiB, so normally the count is the bound)."""
TOTAL_WAITING_BYTES = 64 * 1024 * 1024
"""The bytes waiting signals may hold for all partners together."""
REPORT_SECONDS = 60.0
"""How often drops are logged: one ``ebms.signals_dropped`` line per partner per interval."""

Send = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class _Line:
    """One partner's signals: those being POSTed and those waiting their turn."""

    in_flight: int = 0
    waiting: deque[tuple[int, Send]] = field(default_factory=deque)
    waiting_bytes: int = 0


class SignalOutbox:
    """Per partner: :data:`POSTS_PER_PARTNER` sends at once, the rest waiting, bounded."""

    def __init__(
        self,
        *,
        posts: int = POSTS_PER_PARTNER,
        waiting: int = WAITING_SIGNALS,
        waiting_bytes: int = WAITING_BYTES,
        total_waiting_bytes: int = TOTAL_WAITING_BYTES,
        report_seconds: float = REPORT_SECONDS,
    ) -> None:
        self.posts = posts
        self.waiting = waiting
        self.waiting_bytes = waiting_bytes
        self.total_waiting_bytes = total_waiting_bytes
        self.report_seconds = report_seconds
        self._lines: dict[str, _Line] = {}
        self._total_bytes = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._unreported: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        """Partner id -> signals dropped since start (the log reports them per interval)."""
        self._report: asyncio.TimerHandle | None = None
        self._closed = False

    def in_flight(self, partner: str) -> int:
        line = self._lines.get(partner)
        return line.in_flight if line is not None else 0

    def queued(self, partner: str) -> int:
        line = self._lines.get(partner)
        return len(line.waiting) if line is not None else 0

    def admit(self, partner: str, size: int) -> bool:
        """Whether a signal of ``size`` bytes for ``partner`` is sent now or may wait; when
        not, it counts as dropped. Ask before signing it, and :meth:`put` it before the next
        ``await`` (the answer holds until another coroutine runs). ``size`` is what the
        signal will hold once signed (an estimate is fine: :meth:`put` counts the real
        size)."""
        line = self._lines.get(partner)
        if self._closed:
            return False
        if line is None or line.in_flight < self.posts:
            return True
        if (
            len(line.waiting) < self.waiting
            and line.waiting_bytes + size <= self.waiting_bytes
            and self._total_bytes + size <= self.total_waiting_bytes
        ):
            return True
        self._drop(partner)
        return False

    def put(self, partner: str, size: int, send: Send) -> None:
        """Run ``send`` now if the partner has a free POST, else when one frees up (in
        arrival order). Only after :meth:`admit` said yes."""
        line = self._lines.setdefault(partner, _Line())
        if line.in_flight < self.posts:
            self._start(partner, line, send)
            return
        line.waiting.append((size, send))
        line.waiting_bytes += size
        self._total_bytes += size

    def _start(self, partner: str, line: _Line, send: Send) -> None:
        line.in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(send))
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            line.in_flight -= 1
            if line.waiting and not self._closed:
                size, following = line.waiting.popleft()
                line.waiting_bytes -= size
                self._total_bytes -= size
                self._start(partner, line, following)
            elif line.in_flight == 0 and not line.waiting:
                self._lines.pop(partner, None)

        task.add_done_callback(done)

    @staticmethod
    async def _run(send: Send) -> None:
        """``send``; a failure it did not handle is a log line, and the line moves on."""
        try:
            await send()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one signal's failure must not stall its line
            log.error("ebms.signal_failed", error=type(exc).__name__)

    def _drop(self, partner: str) -> None:
        self.dropped[partner] += 1
        self._unreported[partner] += 1
        if self._report is None:
            self._report = asyncio.get_running_loop().call_later(self.report_seconds, self.report)

    def report(self) -> None:
        """One log line per partner with drops since the last report."""
        if self._report is not None:
            self._report.cancel()
            self._report = None
        for partner, count in sorted(self._unreported.items()):
            log.warning(
                "ebms.signals_dropped",
                partner=partner,
                count=count,
                queued=self.queued(partner),
                in_flight=self.in_flight(partner),
            )
        self._unreported.clear()

    async def close(self) -> None:
        """Stop: the waiting signals are not sent (a reliable sender resends and gets its
        stored signal again), those being sent are cancelled, unreported drops logged."""
        self._closed = True
        unsent = sum(len(line.waiting) for line in self._lines.values())
        if unsent:
            log.info("ebms.signals_unsent", count=unsent)
        for line in self._lines.values():
            line.waiting.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.report()
