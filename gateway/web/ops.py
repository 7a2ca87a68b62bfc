"""Operations endpoints: liveness, readiness, Prometheus metrics (with the store-derived
gauges refreshed at each scrape) and the OpenAPI document.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import generate_latest

from gateway.ebms.lifecycle import seconds_left
from gateway.metrics import (
    CHECKPOINT_AGE_SECONDS,
    CPA_SECONDS_LEFT,
    DEAD_LETTERS,
    DELIVERY_STATES,
    OVERDUE_RETOURS,
    QUEUE_DEPTH,
    QUEUE_OLDEST_SECONDS,
    REGISTRY,
    STORE_BYTES,
)
from gateway.openapi import OPENAPI
from gateway.problems import (
    problem,
)
from gateway.web.identify import may_scrape
from gateway.web.wiring import GATEWAY_KEY, Gateway


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    try:
        await gw.broker.counts()
    except Exception as exc:  # any failure to read the store means not ready
        return problem(503, f"store unavailable: {type(exc).__name__}")
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition, for the admin token, the scrape token, or (when configured)
    any loopback caller: its counters describe partners' traffic."""
    gw = request.app[GATEWAY_KEY]
    if not may_scrape(request, gw):
        return problem(401, "metrics need the admin or the scrape token")
    # every state, zeros too: a gauge left out keeps its last value (a dead letter replayed
    # would go on showing as dead)
    for state, count in dataclasses.asdict(await gw.broker.counts()).items():
        DELIVERY_STATES.labels(state=state).set(count)
    await refresh_operations(gw)
    return web.Response(
        body=generate_latest(REGISTRY),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


async def refresh_operations(gw: Gateway) -> None:
    """Set the store-derived gauges; every configured partner is present, at 0 when idle."""
    now = time.time()
    snapshot = await gw.broker.ops_snapshot(now - gw.config.overdue_days * 86400)
    queues = {q.destination: q for q in snapshot.queues}
    for partner in (p.id for p in gw.partners.all()):
        queue = queues.get(partner)
        QUEUE_DEPTH.labels(destination=partner).set(queue.waiting if queue else 0)
        oldest = queue.oldest_received_at if queue else None
        QUEUE_OLDEST_SECONDS.labels(destination=partner).set(now - oldest if oldest else 0)
        DEAD_LETTERS.labels(destination=partner).set(queue.dead if queue else 0)
    OVERDUE_RETOURS.set(snapshot.overdue)
    STORE_BYTES.set(snapshot.store_bytes)
    if snapshot.last_checkpoint_at is not None:
        CHECKPOINT_AGE_SECONDS.set(now - snapshot.last_checkpoint_at)
    refresh_cpas(gw)


def refresh_cpas(gw: Gateway) -> None:
    """``ggk_cpa_seconds_left`` for exactly the CPAs this process loaded (cleared first, so a
    label never outlives its CPA)."""
    CPA_SECONDS_LEFT.clear()
    if gw.ebms is None:
        return
    moment = datetime.now(UTC)
    for cpaid, link in gw.ebms.links.items():
        CPA_SECONDS_LEFT.labels(cpaid=cpaid).set(seconds_left(link.cpa, moment))


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)
