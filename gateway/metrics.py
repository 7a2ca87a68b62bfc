"""Prometheus metrics. Labels carry message types and codes only, never identities or BSNs."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

ACCEPTED = Counter(
    "ggk_messages_accepted_total",
    "Messages durably accepted (Bv03 sent).",
    ["functie", "duplicate"],
    registry=REGISTRY,
)
REJECTED = Counter(
    "ggk_messages_rejected_total", "Messages refused with a Fo03.", ["code"], registry=REGISTRY
)
DELIVERIES = Counter(
    "ggk_delivery_attempts_total", "Delivery attempt outcomes.", ["result"], registry=REGISTRY
)
BV03_SECONDS = Histogram(
    "ggk_bv03_seconds",
    "Time from request received to Bv03/Fo03 sent.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
DELIVERY_STATES = Gauge("ggk_deliveries", "Deliveries by state.", ["state"], registry=REGISTRY)
CONNECTIONS_CLOSED = Counter(
    "ggk_connections_closed_total",
    "Connections refused or closed by the gateway's limits.",
    ["reason"],  # per_peer_cap, total_cap, header_timeout
    registry=REGISTRY,
)
for _reason in ("per_peer_cap", "total_cap", "header_timeout"):
    CONNECTIONS_CLOSED.labels(reason=_reason)  # present at 0
BODY_BUDGET_WAITS = Counter(
    "ggk_body_budget_refusals_total",
    "Requests answered 503 because the memory budget for bodies stayed full.",
    registry=REGISTRY,
)
