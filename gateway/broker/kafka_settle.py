"""One shared wait for the Kafka view to catch up, instead of one per lookup that misses.

A conversation lookup (a Du01 or Fo01 naming its heenbericht, a REST retour) that misses this
process's view may be early rather than wrong: the heenbericht's Bv03 can come from another
process before the router wrote it to ``events``. So a miss waits until everything accepted
before it began is in the view, and looks again. Unknown and foreign references take that
path alike (no existence oracle), so a partner can make every one of its requests wait.

Done per miss, that cost a Kafka round trip or more each (offsets queried, committed offsets
polled every 50 ms) and held the request for up to the bound: a partner sending made-up
references multiplied the load on the cluster. Here the misses join *rounds* instead:

- a miss joins the next round that has not begun (one is asked for if none is pending);
- a round begins by taking every miss that joined so far, and only then queries the offsets,
  so one query answers for every miss that started before it was issued;
- one round runs at a time, and rounds begin at most every ``spacing`` seconds: the load on
  the cluster is bounded per process, however many misses wait;
- each round, and each miss's wait, is bounded by ``bound`` seconds (the lookup then answers
  from the view as it is, as before).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog
from aiokafka.errors import KafkaError

from gateway.metrics import KAFKA_CATCH_UP_ROUNDS, KAFKA_CATCH_UP_WAITS

log = structlog.get_logger("ggk.kafka")

CAUGHT_UP, TIMEOUT, FAILED, STOPPED = "caught_up", "timeout", "failed", "stopped"
"""How a round (or a miss's wait) ended; also the ``outcome`` label of the rounds counter."""


class CatchUp:
    """Coalesces the waits of concurrent misses into rounds of ``catch_up`` (see the module
    docstring); :meth:`run` is the one task that drives them."""

    def __init__(
        self,
        catch_up: Callable[[], Awaitable[None]],
        *,
        bound: float,
        spacing: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``catch_up``: one round's work (its first Kafka request fixes what it covers)."""
        self._catch_up = catch_up
        self.bound = bound
        self.spacing = spacing
        self._clock = clock
        self._next: asyncio.Future[str] | None = None
        self._wanted = asyncio.Event()
        self.rounds = 0
        """Rounds begun (for tests and diagnosis; Prometheus has them per outcome)."""
        self.waits = 0
        """Misses that waited."""

    async def wait(self) -> str:
        """Until a round that began after this call has ended, or ``bound`` seconds: the
        round's outcome, or ``timeout``. Never raises for Kafka's sake."""
        self.waits += 1
        KAFKA_CATCH_UP_WAITS.inc()
        joined = self._next
        if joined is None:
            joined = self._next = asyncio.get_running_loop().create_future()
            self._wanted.set()
        try:
            async with asyncio.timeout(self.bound):
                # shielded: a request that goes away must not cancel the others' round
                return await asyncio.shield(joined)
        except TimeoutError:
            return TIMEOUT

    async def run(self) -> None:
        """Rounds, one at a time, each when a miss waits; until cancelled."""
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            joined, self._next = self._next, None
            if joined is None:  # pragma: no cover - _wanted is set only with a round asked
                continue
            began = self._clock()
            outcome = STOPPED
            try:
                outcome = await self._round()
            finally:
                # also when cancelled (the broker stops): nobody waits out the bound for it
                joined.set_result(outcome)
            KAFKA_CATCH_UP_ROUNDS.labels(outcome=outcome).inc()
            await asyncio.sleep(max(0.0, began + self.spacing - self._clock()))

    async def _round(self) -> str:
        self.rounds += 1
        try:
            async with asyncio.timeout(self.bound):
                await self._catch_up()
        except TimeoutError:
            # once per round, not once per miss: a flood of misses is not a flood of lines
            log.warning("kafka.settle_timeout", seconds=self.bound)
            return TIMEOUT
        except KafkaError as exc:
            log.warning("kafka.settle_failed", error=str(exc)[:200])
            return FAILED
        except Exception as exc:  # the driver must outlive any one round's error
            log.error("kafka.settle_failed", error=type(exc).__name__)
            return FAILED
        return CAUGHT_UP
