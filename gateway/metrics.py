"""Prometheus metrics. Labels carry message types and codes only, never identities or BSNs."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

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
    "Time from request received to the accept answer (Bv03/Fo03 on SOAP, 202/problem on "
    "REST, the accept decision on ebMS), per channel.",
    ["channel"],  # soap, rest, ebms: a fixed set
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
CHECKPOINT_SECONDS = Histogram(
    "ggk_sqlite_checkpoint_seconds",
    "Embedded store: one WAL checkpoint, by who ran it: the background checkpointer (beside "
    "the commits) or the writer catching up so the WAL starts over (commits wait for it).",
    ["by"],  # checkpointer, writer
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
COMMIT_OPERATIONS = Histogram(
    "ggk_sqlite_commit_operations",
    "Embedded store: operations in one group commit of the writer (accepts, delivery claims "
    "and outcomes, audit records of their own); its count is the number of group commits "
    "tried.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
    registry=REGISTRY,
)
DELIVERY_STATES = Gauge("ggk_deliveries", "Deliveries by state.", ["state"], registry=REGISTRY)
CONNECTIONS_CLOSED = Counter(
    "ggk_connections_closed_total",
    "Connections refused or closed by the gateway's limits.",
    ["reason"],  # per_peer_cap, total_cap, header_timeout, tls_handshake
    registry=REGISTRY,
)
for _reason in ("per_peer_cap", "total_cap", "header_timeout", "tls_handshake"):
    CONNECTIONS_CLOSED.labels(reason=_reason)  # present at 0
PAYLOAD_VALIDATIONS = Counter(
    "ggk_payload_validations_total",
    "iWmo/iJw payloads validated (XSD and business rules) by the accept path.",
    # inline; worker: a large REST/portal payload in a reader process; reader: a SOAP
    # request read as a whole (envelope to stored facts) in a reader process
    ["where"],
    registry=REGISTRY,
)
for _where in ("inline", "worker", "reader"):
    PAYLOAD_VALIDATIONS.labels(where=_where)  # present at 0
READER_FALLBACKS = Counter(
    "ggk_reader_fallbacks_total",
    "Messages a reader process did not read (gateway/readers.py): busy (every reader held a "
    "large message; read in the gateway), lost or failed (read in the gateway), crashed (its "
    "reader ended on it, twice: refused with StUF046).",
    ["reason"],
    registry=REGISTRY,
)
for _reason in ("busy", "lost", "failed", "crashed"):
    READER_FALLBACKS.labels(reason=_reason)  # present at 0
BODY_BUDGET_WAITS = Counter(
    "ggk_body_budget_refusals_total",
    "Requests answered 503 because the memory budget for bodies stayed full.",
    registry=REGISTRY,
)

# --- what an operator runs on (issue 15): refreshed from the store at each scrape ----------
# Labels: destination = a partner id from partners.toml (a closed set the operator configured),
# class/status/state = fixed vocabularies. Never a sender's free text.

QUEUE_DEPTH = Gauge(
    "ggk_queue_depth",
    "Deliveries not finished (pending, retry, in flight, waiting in an inbox), per partner.",
    ["destination"],
    registry=REGISTRY,
)
QUEUE_OLDEST_SECONDS = Gauge(
    "ggk_queue_oldest_seconds",
    "Age of the oldest unfinished delivery's message, per partner (0 when none).",
    ["destination"],
    registry=REGISTRY,
)
DEAD_LETTERS = Gauge(
    "ggk_dead_letters", "Dead-lettered deliveries, per partner.", ["destination"], registry=REGISTRY
)
OVERDUE_RETOURS = Gauge(
    "ggk_overdue_retours",
    "Heenberichten without a retourbericht after [retour] overdue_days (OP090).",
    registry=REGISTRY,
)
STORE_BYTES = Gauge(
    "ggk_store_bytes", "Size of the local store (database and WAL).", registry=REGISTRY
)
CHECKPOINT_AGE_SECONDS = Gauge(
    "ggk_audit_checkpoint_age_seconds",
    "Seconds since the newest signed audit checkpoint (records after it are unsigned).",
    registry=REGISTRY,
)
DELIVERY_SECONDS = Histogram(
    "ggk_delivery_attempt_seconds",
    "Duration of one delivery attempt (the adapter's call), successful or not.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
FAILURE_CLASSES = ("timeout", "connection", "http", "fo03", "configuration", "other")
DELIVERY_FAILURES = Counter(
    "ggk_delivery_failures_total",
    "Failed delivery attempts by class.",
    ["class"],
    registry=REGISTRY,
)
for _class in FAILURE_CLASSES:
    DELIVERY_FAILURES.labels(**{"class": _class})
HTTP_REFUSALS = Counter(
    "ggk_http_refusals_total",
    "Requests answered with a 4xx/5xx status, before or after identification.",
    ["status"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "ggk_rate_limited_total",
    "Requests of an authenticated partner refused (429) for exceeding [limits] partner_rate.",
    ["partner"],  # an id from partners.toml: a closed set the operator configured
    registry=REGISTRY,
)
UNAUTHENTICATED = Counter(
    "ggk_unauthenticated_refusals_total",
    "Requests refused for want of a credential (audited in aggregate, not one by one).",
    ["surface"],  # soap, rest, ebms
    registry=REGISTRY,
)
for _surface in ("soap", "rest", "ebms"):
    UNAUTHENTICATED.labels(surface=_surface)  # present at 0
KAFKA_CATCH_UP_WAITS = Counter(
    "ggk_kafka_catch_up_waits_total",
    "Kafka: conversation lookups that missed the view and waited for it to catch up.",
    registry=REGISTRY,
)
KAFKA_CATCH_UP_ROUNDS = Counter(
    "ggk_kafka_catch_up_rounds_total",
    "Kafka: shared catch-up rounds run for those waits (one serves all that joined it).",
    ["outcome"],  # caught_up, timeout, failed, stopped
    registry=REGISTRY,
)
BUILD = Info("ggk_build", "The running gateway.", registry=REGISTRY)
try:
    BUILD.info({"version": version("ggk-gateway")})
except PackageNotFoundError:  # running from a tree that was never installed
    BUILD.info({"version": "unknown"})

CPA_SECONDS_LEFT = Gauge(
    "ggk_cpa_seconds_left",
    "Seconds until each loaded ebMS CPA ends (negative once ended); set at each scrape.",
    ["cpaid"],  # the loaded CPAs only (imported by the operator): gateway/ebms/lifecycle.py
    registry=REGISTRY,
)
