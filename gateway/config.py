"""Gateway configuration: one TOML file; relative paths are relative to that file.

Secrets are not in it: partner tokens and the admin token are stored as SHA-256 digests, keys
and certificates are files referenced by path (``ggk init`` creates them with 0600/0700).
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.ebms.tls import PartnerTls, TlsSetupError, check_files
from gateway.standards import BY_CODE
from gateway.tables import Table, UnknownKey
from gateway.xmlsafe import DEFAULT_MAX_BYTES
from routing.table import RouteTable

MIN_CELL_FLOOR = 3
MAX_READERS = 16
AUTO_READERS = 4
"""Reader processes when ``readers`` is left out: one per core, at most this many."""
"""The smallest base for beleidsinformatie: with 1 every count is exact, with 2 a published
2 still narrows a count to 1..2 (docs/figures.md)."""


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and the setting."""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    cert: Path
    key: Path
    client_ca: Path | None
    crl: Path | None = None
    """Client certificates listed here are refused in the handshake (revocation)."""


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """``[limits]``: what one connection, one peer and all callers together may hold."""

    header_timeout: float = 10.0
    """Seconds from connect (TLS handshake included) until a request's headers are in."""
    keepalive_timeout: float = 15.0
    """Seconds an idle keep-alive connection is kept open."""
    max_connections: int = 1000
    max_connections_per_peer: int = 100
    """Beyond these a new connection gets a 503 and is closed."""
    inflight_body_mb: int = 100
    """Request bodies held in memory at once (all callers); a request whose body would pass
    it waits (up to body_timeout, then 503) instead of growing memory without bound."""
    partner_inflight_body_mb: int = 0
    """What one partner may hold of inflight_body_mb at once (its share: a body beyond it
    waits for that partner's own bodies, never for others'); 0: one message of
    max_message_bytes plus 1 MiB for small ones alongside it."""
    min_body_rate: float = 16.0
    """KiB a second a body must arrive at on average once body_grace has passed (else 408),
    so a trickled body gives its reservation back long before body_timeout; 0: no minimum."""
    body_grace: float = 5.0
    """Seconds a body may take before min_body_rate applies (slow starts, small bodies)."""
    partner_rate: float = 100.0
    """Requests per second one authenticated partner may send, sustained (a token bucket per
    partner, gateway/ratelimit.py); beyond it: 429 with Retry-After (REST), Fo03 StUF046
    (SOAP), before the body is read."""
    partner_burst: int = 200
    """Requests one partner may send at once before partner_rate applies."""
    portal_upload_slots: int = 4
    """Portal uploads read and checked at once (one per partner); an upload beyond them waits
    its turn for up to UPLOAD_WAIT seconds (first come, first served), then 503."""


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    max_attempts: int = 8
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    timeout: float = 30.0
    concurrency: int = 64
    """Deliveries in flight across all receivers."""
    per_receiver: int = 16
    """Deliveries in flight to one receiver: a slow one holds at most this many slots."""
    lease_seconds: float = 120.0
    poll_interval: float = 1.0


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """``[kafka]``: where the cluster is and how to reach it (the backend when
    ``[gateway] broker = "kafka"``)."""

    bootstrap: str
    prefix: str = "ggk"
    node: str = ""
    """A stable name for this gateway process (its transactional id); two processes must not
    share one. Default: the host name and the listening port."""
    create_topics: bool = False
    """Create missing topics at start (development); production runs ``ggk kafka init``."""
    partitions: int = 12
    replication: int = 3
    security_protocol: str = "PLAINTEXT"
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password_env: str | None = None
    """The name of the environment variable holding the SASL password (never the password)."""
    linger_ms: int = 5


@dataclass(frozen=True, slots=True)
class EbmsConfig:
    """``[ebms]``: the gateway as a Digikoppeling ebMS2 MSH."""

    oin: str
    """The gateway's own OIN: its PartyId in every CPA it takes part in."""
    cpa_dir: Path
    """Where imported CPAs are kept (one file per cpaid)."""
    schema_dir: Path | None = None
    """A folder with the OASIS ``cpp-cpa-2_0.xsd`` (and its imports): CPAs are validated
    against it before anything else."""
    loopback_http: bool = False
    """Accept ``http://`` CPA endpoints on the loopback address (tests with a local peer)."""
    signing_key: Path | None = None
    """PEM RSA key this gateway signs with in the signed profiles (osb-*-s)."""
    signing_cert: Path | None = None
    """PEM certificate of that key: the one our side of a signed CPA carries."""
    timestamp_future_seconds: int = 300
    """How far a received message's eb:Timestamp may lie ahead of our clock (clock skew);
    also allowed on the past side (docs/ebms.md "The Timestamp window")."""
    timestamp_past_seconds: int = 3600
    """How old a received message's eb:Timestamp may be at least; a reliable channel allows
    its whole resend window, (1 + Retries) x RetryInterval, when that is longer."""
    listen: tuple[str, int] | None = None
    """host and port of a listener for ``POST /ebms`` only that REQUIRES a client
    certificate (Digikoppeling: two-way TLS, no tokens); the main listener then refuses
    ``/ebms``. None: ``/ebms`` is served on the main listener."""
    trust: tuple[Path, ...] = ()
    """PEM CA files: the anchors partners' MSH certificates must chain to (both ways)."""
    crl: tuple[Path, ...] = ()
    """PEM CRLs checked for partners' certificates (both ways)."""
    client_cert: Path | None = None
    """PEM certificate the gateway presents to partners' MSHs (EKU clientAuth)."""
    client_key: Path | None = None
    server_cert: Path | None = None
    """PEM certificate of the ``listen`` listener (e.g. a PKIoverheid server certificate with
    our OIN); None: ``[tls] cert``."""
    server_key: Path | None = None
    partners: dict[str, PartnerTls] = field(default_factory=dict)
    """``[ebms.partner.<id>]``: trust, crl or a client certificate for one partner."""


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    path: Path
    organisatie: str = "GGK"
    applicatie: str = "ggk-gateway"
    host: str = "127.0.0.1"
    port: int = 8443
    data_dir: Path = Path("data")
    plain_http: bool = False
    max_message_bytes: int = DEFAULT_MAX_BYTES
    max_database_mb: int | None = None
    """A quota for the message database: when reached, new messages are refused (StUF046)
    instead of filling the disk. None: no quota beyond the disk itself."""
    body_timeout: float = 60.0
    """Seconds a client may take to send its request body (slow-body protection)."""
    limits: ConnectionLimits = field(default_factory=lambda: ConnectionLimits())
    text_functies: tuple[str, ...] = ()
    """Functies (never an iWmo/iJw message code) whose free text payloads are accepted."""
    business_rules: str = "reject"
    conversations: str = "strict"
    """``strict``: a Du01/Fo01 (or REST retour) must answer a message its ontvanger sent to
    its zender, else StUF043. ``lenient`` (migrations: heenberichten sent before this gateway
    carried them): an answer to an unknown reference is routed by its envelope, unlinked, and
    marked as unlinked in the receiver's inbox (docs/conversations.md)."""
    schema_dirs: tuple[Path, ...] = ()
    readers: int | None = None
    """Reader processes that read offered messages on the other cores (gateway/readers.py);
    0: read in the gateway process; None: one per core, at most MAX_READERS."""
    readers_when_alone: bool = False
    """Also hand a reader a small SOAP message that arrives while no other request is being
    handled (by default the gateway reads that one itself: sooner, and cheaper than waking a
    reader; gateway/ingest.py ``Ingress.read_soap``). Tests set it to exercise the readers."""
    tls: TlsConfig | None = None
    admin_token_sha256: str | None = None
    metrics_token_sha256: str | None = None
    """A scrape token for /metrics (besides the admin token)."""
    metrics_from_loopback: bool = False
    """Let loopback callers read /metrics without a token (a scraper on the same host)."""
    partners_file: Path = Path("partners.toml")
    routes: list[dict[str, Any]] = field(default_factory=list)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    overdue_days: float = 3.0
    public_url: str | None = None
    keyring: Path | None = None
    """Audit/payload keys (mode 0600); None means $GGK_KEYRING."""
    retention_days: float = 30.0
    figures_min_cell: int = 5
    """Beleidsinformatie: the base every published count is rounded to (gateway/disclosure.py)."""
    checkpoint_seconds: float = 60.0
    audit_enabled: bool = True
    """Off only to measure what auditing costs (benchmarks); a warning is logged."""
    broker: str = "sqlite"
    """``sqlite`` (embedded, one process) or ``kafka`` (several processes; see ``kafka``)."""
    kafka: KafkaConfig | None = None
    ebms: EbmsConfig | None = None
    codelists_dir: Path | None = None
    """``[codelists] directory``: the operator's drop-in code lists, each replacing the bundled
    list of the same name (gateway/codelists, docs/codelists.md). None: the bundled lists only."""

    @property
    def database(self) -> Path:
        return self.data_dir / "gateway.sqlite"

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "http" if self.plain_http else "https"
        return f"{scheme}://{self.host}:{self.port}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load(path: Path) -> GatewayConfig:
    """Read and check a gateway configuration file; a key no table knows is refused."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        config = _read(Table(raw, "top level"), path)
    except UnknownKey as exc:
        raise ConfigError(f"{path}: {exc}") from None
    check(config)
    return config


def _read(root: Table, path: Path) -> GatewayConfig:
    """Every table of the file read through :class:`Table`: what is read here is what is
    known (gateway/tables.py), so a typo cannot load silently."""
    base = path.resolve().parent

    def rel(value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else base / p

    gw, auth = root.table("gateway"), root.table("auth")
    audit, figures, retour = root.table("audit"), root.table("figures"), root.table("retour")
    tls_raw, codelists_raw = root.table("tls"), root.table("codelists")
    tls = None
    if tls_raw.raw:
        try:
            tls = TlsConfig(
                rel(tls_raw["cert"]),
                rel(tls_raw["key"]),
                rel(tls_raw["client_ca"]) if tls_raw.get("client_ca") else None,
                rel(tls_raw["crl"]) if tls_raw.get("crl") else None,
            )
        except KeyError as exc:
            raise ConfigError(f"{path}: [tls] needs {exc}") from None
    delivery_raw, limits_raw = root.table("delivery"), root.table("limits")
    try:
        delivery = DeliveryConfig(**delivery_raw.pick(DeliveryConfig))
        limits = ConnectionLimits(**limits_raw.pick(ConnectionLimits))
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    kafka = _kafka(root.table("kafka"), path, rel) if "kafka" in root else None
    ebms = _ebms(root.table("ebms"), path, rel) if "ebms" in root else None
    routes = [dict(entry.raw) for entry in root.tables("route", "route")]
    try:  # a number where the file has text: one line naming the file, not a traceback
        config = GatewayConfig(
            path=path.resolve(),
            organisatie=str(gw.get("organisatie", "GGK")),
            applicatie=str(gw.get("applicatie", "ggk-gateway")),
            host=str(gw.get("host", "127.0.0.1")),
            port=int(gw.get("port", 8443)),
            data_dir=rel(str(gw.get("data_dir", "data"))),
            plain_http=bool(gw.get("plain_http", False)),
            max_message_bytes=int(gw.get("max_message_bytes", DEFAULT_MAX_BYTES)),
            body_timeout=float(gw.get("body_timeout", 60.0)),
            limits=limits,
            text_functies=tuple(str(f) for f in gw.get("text_functies", [])),
            max_database_mb=int(gw["max_database_mb"]) if gw.get("max_database_mb") else None,
            business_rules=str(gw.get("business_rules", "reject")),
            conversations=str(gw.get("conversations", "strict")),
            schema_dirs=tuple(rel(d) for d in gw.get("schema_dirs", [])),
            readers=int(gw["readers"]) if "readers" in gw else None,
            readers_when_alone=_flag(gw, "readers_when_alone"),
            tls=tls,
            admin_token_sha256=auth.get("admin_token_sha256"),
            metrics_token_sha256=auth.get("metrics_token_sha256"),
            metrics_from_loopback=bool(auth.get("metrics_from_loopback", False)),
            partners_file=rel(str(gw.get("partners", "partners.toml"))),
            routes=routes,
            delivery=delivery,
            overdue_days=float(retour.get("overdue_days", 3.0)),
            public_url=gw.get("public_url"),
            keyring=rel(str(audit["keyring"])) if audit.get("keyring") else None,
            retention_days=float(audit.get("retention_days", 30.0)),
            figures_min_cell=int(figures.get("min_cell", 5)),
            checkpoint_seconds=float(audit.get("checkpoint_seconds", 60.0)),
            audit_enabled=bool(audit.get("enabled", True)),
            broker=str(gw.get("broker", "sqlite")),
            kafka=kafka,
            ebms=ebms,
            codelists_dir=(
                rel(str(codelists_raw["directory"])) if codelists_raw.get("directory") else None
            ),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    for table in (
        root,
        gw,
        auth,
        audit,
        figures,
        retour,
        tls_raw,
        delivery_raw,
        limits_raw,
        codelists_raw,
    ):
        table.done()
    try:  # each [[route]]'s keys are the route table's to know (routing/table.py)
        RouteTable.from_config(routes, str(path))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return config


def _kafka(raw: Table, path: Path, rel: Any) -> KafkaConfig:
    if "bootstrap" not in raw:
        raise ConfigError(f"{path}: [kafka] needs bootstrap (host:port,...)")
    paths = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
    try:
        picked = raw.pick(KafkaConfig)
        raw.done()
        return KafkaConfig(**{k: (rel(v) if k in paths else v) for k, v in picked.items()})
    except (TypeError, UnknownKey) as exc:
        raise ConfigError(f"{path}: [kafka]: {exc}") from None


def _ebms(raw: Table, path: Path, rel: Any) -> EbmsConfig:
    oin = str(raw.get("oin", ""))
    if not re.match(r"^[0-9]{20}(_[OTA]{1,3})?$", oin):
        raise ConfigError(f"{path}: [ebms] oin must be the gateway's OIN (20 digits), not {oin!r}")
    try:
        own = _partner_tls(raw, "[ebms]", rel)
        partners = {}
        for partner_id, table in _partner_tables(raw):
            partners[partner_id] = _partner_tls(table, table.where, rel)
            table.done()
        config = EbmsConfig(
            oin=oin,
            cpa_dir=rel(str(raw.get("cpa_dir", "cpa"))),
            schema_dir=rel(str(raw["schema_dir"])) if raw.get("schema_dir") else None,
            loopback_http=_flag(raw, "loopback_http"),
            signing_key=rel(str(raw["signing_key"])) if raw.get("signing_key") else None,
            signing_cert=rel(str(raw["signing_cert"])) if raw.get("signing_cert") else None,
            timestamp_future_seconds=_seconds(raw, "timestamp_future_seconds", 300, path),
            timestamp_past_seconds=_seconds(raw, "timestamp_past_seconds", 3600, path),
            listen=_listen(raw.get("listen")),
            trust=own.trust,
            crl=own.crl,
            client_cert=own.client_cert,
            client_key=own.client_key,
            server_cert=rel(str(raw["server_cert"])) if raw.get("server_cert") else None,
            server_key=rel(str(raw["server_key"])) if raw.get("server_key") else None,
            partners=partners,
        )
        if (config.server_cert is None) != (config.server_key is None):
            raise TlsSetupError("[ebms] server_cert and server_key go together")
        raw.done()
    except (UnknownKey, TlsSetupError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return config


def _flag(raw: Table, key: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise UnknownKey(f"{raw.where} {key} is true or false, not {value!r}")
    return value


def _listen(value: object) -> tuple[str, int] | None:
    """``"host:port"`` (``"[::1]:8444"`` for IPv6) of the ebMS listener."""
    if value is None:
        return None
    match = re.fullmatch(r"\[?([0-9A-Za-z.:-]+?)\]?:([0-9]{1,5})", str(value))
    if not isinstance(value, str) or match is None or not 1 <= int(match[2]) <= 65535:
        raise UnknownKey(f'[ebms] listen is "host:port" (e.g. "0.0.0.0:8444"), not {value!r}')
    return match[1], int(match[2])


def _partner_tables(raw: Table) -> list[tuple[str, Table]]:
    """``[ebms.partner.<id>]`` tables, each with a partner id of the registry's shape."""
    from routing.partners import PARTNER_ID  # routing imports nothing of this module

    found = []
    tables = raw.get("partner", {})
    if not isinstance(tables, dict):
        raise UnknownKey("[ebms] partner holds tables: [ebms.partner.<id>]")
    for partner_id, entry in tables.items():
        if not PARTNER_ID.fullmatch(str(partner_id)):
            raise UnknownKey(f"[ebms.partner.{partner_id}]: {partner_id!r} is no partner id")
        found.append((str(partner_id), Table(entry, f"[ebms.partner.{partner_id}]")))
    return found


def _partner_tls(raw: Table, where: str, rel: Any) -> PartnerTls:
    """trust, crl, client_cert, client_key of ``[ebms]`` or one ``[ebms.partner.<id>]``,
    their files checked (gateway/ebms/tls.py)."""

    def paths(key: str) -> tuple[Path, ...]:
        value = raw.get(key, [])
        listed = [value] if isinstance(value, str) else value
        if not isinstance(listed, list) or not all(isinstance(v, str) and v for v in listed):
            raise UnknownKey(f"{where} {key} is a file name or a list of them, not {value!r}")
        return tuple(rel(v) for v in listed)

    def one(key: str) -> Path | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise UnknownKey(f"{where} {key} is a file name, not {value!r}")
        return Path(rel(value))

    settings = PartnerTls(paths("trust"), paths("crl"), one("client_cert"), one("client_key"))
    check_files(settings, where)
    return settings


def _seconds(raw: Table, key: str, default: int, path: Path) -> int:
    """A whole number of seconds from 0 to 10 days."""
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 864_000:
        raise ConfigError(f"{path}: [ebms] {key} is a number of seconds (0 to 864000)")
    return value


def check(config: GatewayConfig) -> None:
    if config.broker not in ("sqlite", "kafka"):
        raise ConfigError(f"{config.path}: broker is 'sqlite' or 'kafka', not {config.broker!r}")
    if config.broker == "kafka" and config.kafka is None:
        raise ConfigError(f"{config.path}: broker = 'kafka' needs a [kafka] table")
    if config.business_rules not in ("reject", "record"):
        raise ConfigError(f"{config.path}: business_rules is 'reject' or 'record'")
    if config.readers is not None and not 0 <= config.readers <= MAX_READERS:
        raise ConfigError(
            f"{config.path}: readers is a number of processes from 0 to {MAX_READERS} "
            "(0: read messages in the gateway process; leave it out for one per core)"
        )
    if config.conversations not in ("strict", "lenient"):
        raise ConfigError(
            f"{config.path}: conversations is 'strict' or 'lenient', not {config.conversations!r}"
        )
    if config.plain_http and not is_loopback(config.host):
        raise ConfigError(
            f"{config.path}: plain_http is only allowed on a loopback address, not {config.host}"
        )
    if not config.plain_http and config.tls is None:
        raise ConfigError(
            f"{config.path}: [tls] cert and key are required (or plain_http = "
            "true on loopback for development)"
        )
    if not MIN_CELL_FLOOR <= config.figures_min_cell <= 1000:
        raise ConfigError(
            f"{config.path}: [figures] min_cell is between {MIN_CELL_FLOOR} and 1000 (a base "
            "below 3 publishes counts a reader can pin down; docs/figures.md)"
        )
    if config.retention_days <= 0 or config.checkpoint_seconds <= 0:
        raise ConfigError(
            f"{config.path}: audit retention_days and checkpoint_seconds must be positive"
        )
    named = [f for f in config.text_functies if BY_CODE.get(f.strip().upper())]
    if named:
        raise ConfigError(
            f"{config.path}: text_functies may not name iWmo/iJw messages ({', '.join(named)}): "
            "those are always validated as XML"
        )
    lim = config.limits
    if min(lim.header_timeout, lim.keepalive_timeout, config.body_timeout) <= 0 or (
        min(lim.max_connections, lim.max_connections_per_peer, lim.inflight_body_mb) < 1
    ):
        raise ConfigError(f"{config.path}: [limits] and body_timeout must be positive")
    _check_partner_limits(config.path, lim)
    slots = lim.portal_upload_slots
    if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= 64:
        raise ConfigError(f"{config.path}: [limits] portal_upload_slots is a whole number 1-64")
    pacing = (lim.min_body_rate, lim.body_grace, lim.partner_inflight_body_mb)
    if not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in pacing
    ) or (lim.min_body_rate < 0 or lim.body_grace <= 0 or lim.partner_inflight_body_mb < 0):
        raise ConfigError(
            f"{config.path}: [limits] min_body_rate, body_grace and partner_inflight_body_mb "
            "must not be negative (body_grace above 0)"
        )
    if lim.partner_inflight_body_mb and not (
        config.max_message_bytes
        <= lim.partner_inflight_body_mb * 1024 * 1024
        <= lim.inflight_body_mb * 1024 * 1024
    ):
        raise ConfigError(
            f"{config.path}: [limits] partner_inflight_body_mb must hold one message of "
            "max_message_bytes and be at most inflight_body_mb"
        )
    if lim.inflight_body_mb * 1024 * 1024 < config.max_message_bytes:
        raise ConfigError(
            f"{config.path}: [limits] inflight_body_mb must hold at least one message of "
            "max_message_bytes"
        )
    _check_ebms_listener(config)
    if config.delivery.max_attempts < 1:
        raise ConfigError(f"{config.path}: delivery.max_attempts must be at least 1")
    if not 1 <= config.delivery.per_receiver <= config.delivery.concurrency:
        raise ConfigError(
            f"{config.path}: delivery.per_receiver must be at least 1 and at most "
            f"delivery.concurrency ({config.delivery.concurrency})"
        )


def _check_ebms_listener(config: GatewayConfig) -> None:
    """``[ebms] listen`` needs a server certificate (its own or ``[tls]``'s) and anchors to
    check callers against: said when the file is read, not when the listener starts."""
    ebms = config.ebms
    if ebms is None or ebms.listen is None:
        return
    if ebms.server_cert is None and config.tls is None:
        raise ConfigError(
            f"{config.path}: [ebms] listen needs a server certificate: [ebms] server_cert and "
            "server_key, or [tls] cert and key"
        )
    if not ebms.trust and not any(p.trust for p in ebms.partners.values()):
        raise ConfigError(
            f"{config.path}: [ebms] listen needs trust anchors for the callers' certificates: "
            "[ebms] trust (the partners' CA chain, PKIoverheid in production)"
        )


MAX_PARTNER_RATE = 1_000_000
"""Beyond any machine: a larger value is a typo (set it high to make the limit moot)."""


def _check_partner_limits(path: Path, lim: ConnectionLimits) -> None:
    """``partner_rate`` a positive finite number, ``partner_burst`` a whole number of at least
    1 (the bucket could never admit a request otherwise); both within MAX_PARTNER_RATE."""
    rate, burst = lim.partner_rate, lim.partner_burst
    if (
        isinstance(rate, bool)
        or not isinstance(rate, int | float)
        or not (math.isfinite(rate) and 0 < rate <= MAX_PARTNER_RATE)
    ):
        raise ConfigError(
            f"{path}: [limits] partner_rate is requests per second, a number above 0 and at "
            f"most {MAX_PARTNER_RATE:,}, not {rate!r}"
        )
    if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= MAX_PARTNER_RATE:
        raise ConfigError(
            f"{path}: [limits] partner_burst is a whole number of requests from 1 to "
            f"{MAX_PARTNER_RATE:,}, not {burst!r}"
        )


def reader_count(config: GatewayConfig) -> int:
    """How many reader processes ``config`` asks for (``readers`` left out: one per core the
    process may use, at most AUTO_READERS)."""
    if config.readers is not None:
        return config.readers
    return max(1, min(AUTO_READERS, len(os.sched_getaffinity(0))))
