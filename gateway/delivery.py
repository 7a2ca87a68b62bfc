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
from collections.abc import Callable
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
        self._inflight: set[asyncio.Task[None]] = set()
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
            free = self.config.concurrency - len(self._inflight)
            try:
                jobs = (
                    await self.broker.claim(
                        free, self.config.lease_seconds, self.config.per_receiver
                    )
                    if free
                    else []
                )
            except StorageError as exc:  # e.g. disk full: keep the workers alive, try later
                log.error("delivery.claim_failed", error=str(exc))
                await asyncio.sleep(self.config.poll_interval)
                continue
            for job in jobs:
                task = asyncio.create_task(self._attempt(job))
                self._inflight.add(task)
                task.add_done_callback(self._done)
            if jobs and len(jobs) == free:
                await asyncio.sleep(0)
                continue
            await self._wait_for_work()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self.wake.set()

    async def _wait_for_work(self) -> None:
        self.wake.clear()  # before reading the schedule, so no wake-up is lost in between
        timeout = self.config.poll_interval
        if len(self._inflight) < self.config.concurrency:
            # Only with a free slot does work that is due matter; with every slot taken (slow
            # partners, ebMS waiting for acknowledgments) a due delivery would make this a busy
            # loop. A finished attempt sets ``wake``.
            due = await self.broker.next_due()
            if due is not None and due > self.clock():
                timeout = min(timeout, due - self.clock())
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
