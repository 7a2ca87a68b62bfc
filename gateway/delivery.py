"""Delivery workers: claim due deliveries, hand them to adapters, record the outcome.

At-least-once: a delivery is marked delivered only after the adapter returned, so a crash in
between means it is delivered again after restart (its lease runs out); the idempotency key
(referentienummer + destination) lets receivers drop that duplicate. Failures are classified
by the adapter: retryable ones are rescheduled with exponential backoff and full jitter until
``max_attempts``, permanent ones go to the dead-letter state at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from adapters.base import Adapter, AdapterError, DeliveryFailed, Outbound
from gateway import transports
from gateway.audit import AuditEvent
from gateway.broker.base import Broker, Job, StorageError
from gateway.config import DeliveryConfig
from gateway.metrics import DELIVERIES, DELIVERY_FAILURES, DELIVERY_SECONDS
from routing.partners import PartnerRegistry

log = structlog.get_logger("ggk.delivery")


def backoff(
    attempt: int, base: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): base·2^(n-1), capped, jittered
    between half and the full value so retries of many messages spread out."""
    ceiling = min(cap, base * 2.0 ** (attempt - 1))
    return ceiling * (0.5 + 0.5 * rng())


class DeliveryService:
    def __init__(
        self,
        broker: Broker,
        partners: PartnerRegistry,
        config: DeliveryConfig,
        *,
        wake: asyncio.Event | None = None,
        clock: Callable[[], float] = time.time,
        context: dict[str, Any] | None = None,
    ) -> None:
        self.context = context or {}
        """Shared services handed to adapters that ask for them (``uses_context``)."""
        self.broker = broker
        self.partners = partners
        self.config = config
        self.wake = wake or asyncio.Event()
        self.clock = clock
        self._adapters: dict[str, Adapter] = {}
        self._inflight: dict[asyncio.Task[None], str] = {}
        """Attempts running now, and the receiver each is for."""
        self._receiving: Counter[str] = Counter()
        """Per receiver: attempts running now plus the ones reserved for an accept."""
        self._reserved = 0
        self._hands_over = False
        """An accept asked for workers (:meth:`reserve`): this store hands deliveries over,
        so a finished attempt need not look for work while nothing was due."""
        self._nothing_due = False
        """The store had no delivery due at its last look, and none was stored due since:
        an accept may then hand its deliveries straight to free workers (:meth:`reserve`)
        without overtaking older ones, and a finished attempt need not look again."""
        self._stopping = False

    def adapter_for(self, destination: str) -> Adapter:
        adapter = self._adapters.get(destination)
        if adapter is None:
            partner = self.partners.get(destination)
            if partner is None:
                raise AdapterError(f"no partner {destination}")
            adapter = transports.create(
                partner.delivery.adapter,
                partner.delivery.settings,
                timeout=self.config.timeout,
                context=self.context,
            )
            self._adapters[destination] = adapter
        return adapter

    def forget(self, destinations: set[str]) -> list[Adapter]:
        """Drop the adapters made for ``destinations`` (their delivery settings changed in
        the partner file): the next delivery makes a new one. They are returned, for the
        caller to close once the deliveries they have in flight are done."""
        return [a for d in destinations if (a := self._adapters.pop(d, None)) is not None]

    async def run(self) -> None:
        """Claim and deliver until :meth:`stop` is called."""
        while not self._stopping:
            free = self.config.concurrency - len(self._inflight) - self._reserved
            # what this claim returns is not in the counts reserve() reads until it returns;
            # and whether anything is due is only known again at the next look
            self._nothing_due = False
            try:
                jobs = (
                    await self.broker.claim(
                        free, self.config.lease_seconds, self.config.per_receiver
                    )
                    if free > 0
                    else []
                )
            except StorageError as exc:  # e.g. disk full: keep the workers alive, try later
                log.error("delivery.claim_failed", error=str(exc))
                await asyncio.sleep(self.config.poll_interval)
                continue
            for job in jobs:
                self._start(job)
            if jobs and len(jobs) == free:
                await asyncio.sleep(0)
                continue
            await self._wait_for_work()

    def reserve(self, destinations: Sequence[str]) -> float | None:
        """Workers for the deliveries an accept is about to store (a lease in seconds), when
        there are enough free ones, within each receiver's ``per_receiver``, and nothing
        older is due (it would be overtaken); None: the accept stores them as due and the
        workers claim them. Saves the claim's transaction, its search and the envelope's
        decryption for each delivery of a gateway that keeps up."""
        self._hands_over = True
        if self._stopping or not self._nothing_due:
            return None
        if len(self._inflight) + self._reserved + len(destinations) > self.config.concurrency:
            self._nothing_due = False
            return None
        wanted = Counter(destinations)
        if any(self._receiving[d] + n > self.config.per_receiver for d, n in wanted.items()):
            self._nothing_due = False
            return None
        self._reserved += len(destinations)
        self._receiving.update(wanted)
        return self.config.lease_seconds

    def release(self, destinations: Sequence[str]) -> None:
        self._reserved -= len(destinations)
        self._receiving.subtract(destinations)

    def hand_over(self, jobs: Sequence[Job]) -> None:
        """Start the reserved deliveries, committed in flight. Stopping, they stay in flight
        in the store: the next start makes them due at once (lease recovery)."""
        for job in jobs:
            self._reserved -= 1
            self._receiving[job.destination] -= 1
            if not self._stopping:
                self._start(job)

    def _start(self, job: Job) -> None:
        task = asyncio.create_task(self._attempt(job))
        self._inflight[task] = job.destination
        self._receiving[job.destination] += 1
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        destination = self._inflight.pop(task, None)
        if destination is not None:
            self._receiving[destination] -= 1
            if not self._receiving[destination]:
                del self._receiving[destination]
        if not (self._nothing_due and self._hands_over):  # a worker is free for what waits
            self.wake.set()

    async def _wait_for_work(self) -> None:
        self.wake.clear()  # before reading the schedule, so no wake-up is lost in between
        timeout = self.config.poll_interval
        if len(self._inflight) < self.config.concurrency:
            # Only with a free slot does work that is due matter; with every slot taken (slow
            # partners, ebMS waiting for acknowledgments) a due delivery would make this a busy
            # loop. A finished attempt sets ``wake``.
            due = await self.broker.next_due()
            now = self.clock()
            # (an accept that stored due deliveries since the look set ``wake``)
            self._nothing_due = (due is None or due > now) and not self.wake.is_set()
            if due is not None and due > now:
                timeout = min(timeout, due - now)
            # Due already, yet the claim just left it: its receiver is at ``per_receiver``.
            # A finished attempt sets ``wake``; new work does too.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout)

    async def _attempt(self, job: Job) -> None:
        outbound = Outbound(
            job.delivery_id,
            job.message_id,
            job.destination,
            job.envelope,
            job.referentienummer,
            job.functie,
            job.attempts,
        )
        started = self.clock()
        try:
            adapter = self.adapter_for(job.destination)
            await asyncio.wait_for(adapter.deliver(outbound), self.config.timeout)
        except DeliveryFailed as exc:
            DELIVERY_FAILURES.labels(**{"class": exc.kind}).inc()
            await self._failed(
                job,
                exc.summary or type(exc).__name__,
                exc.retryable,
                exc.detail,
                retry_after=exc.retry_after,
                max_attempts=exc.max_attempts,
            )
            return
        except TimeoutError:
            DELIVERY_FAILURES.labels(**{"class": "timeout"}).inc()
            await self._failed(job, f"timed out after {self.config.timeout:g} s", True)
            return
        except AdapterError as exc:
            DELIVERY_FAILURES.labels(**{"class": "configuration"}).inc()
            await self._failed(job, str(exc), False)
            return
        finally:
            DELIVERY_SECONDS.observe(max(0.0, self.clock() - started))
        await self.broker.delivered(job)
        DELIVERIES.labels(result="delivered").inc()
        log.info(
            "delivery.delivered",
            message_id=job.message_id,
            destination=job.destination,
            attempt=job.attempts,
            seconds=round(self.clock() - started, 4),
        )

    async def _failed(
        self,
        job: Job,
        error: str,
        retryable: bool,
        detail: str | None = None,
        *,
        retry_after: float | None = None,
        max_attempts: int | None = None,
    ) -> None:
        """Record a failed attempt: our summary in the delivery's state and history, the
        partner's own text (``detail``) sealed in the audit log only. A protocol that fixes
        its own schedule (ebMS: the CPA's RetryInterval and Retries) overrides the backoff."""
        if detail:
            await self._seal_detail(job, error, detail)
        allowed = max_attempts if max_attempts is not None else self.config.max_attempts
        if retryable and job.attempts < allowed:
            wait = (
                retry_after
                if retry_after is not None
                else backoff(job.attempts, self.config.backoff_base, self.config.backoff_max)
            )
            await self.broker.retry(job, error, self.clock() + wait)
            # stored due later: the loop's wait was measured before it, so the loop looks at
            # the schedule again, however short the wait (an ebMS RetryInterval, a receiver's
            # Retry-After) and however idle the store. Both: ``wake`` for a loop that is
            # waiting (or reading the schedule: it checks ``wake`` after), and no hand-over
            # until that look, which the retry may be older than
            self._nothing_due = False
            self.wake.set()
            DELIVERIES.labels(result="retry").inc()
            log.info(
                "delivery.retry",
                message_id=job.message_id,
                destination=job.destination,
                attempt=job.attempts,
                wait=round(wait, 3),
                error=error,
                detail_chars=len(detail or ""),
            )
        else:
            await self.broker.dead(job, error)
            DELIVERIES.labels(result="dead").inc()
            log.warning(
                "delivery.dead_lettered",
                message_id=job.message_id,
                destination=job.destination,
                attempt=job.attempts,
                error=error,
                detail_chars=len(detail or ""),
                permanent=not retryable,
            )

    async def _seal_detail(self, job: Job, summary: str, detail: str) -> None:
        event = AuditEvent(
            action="delivery_failure_text",
            object=job.message_id,
            referentienummer=job.referentienummer,
            ontvanger=job.destination,
            functie=job.functie,
            actor="gateway",
            outcome=summary,
            secret={"partner_text": detail},
        )
        try:
            await self.broker.audit_event(event)
        except StorageError:
            log.error("audit.write_failed", action=event.action)

    async def stop(self) -> None:
        self._stopping = True
        self.wake.set()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        for adapter in self._adapters.values():
            await adapter.close()
