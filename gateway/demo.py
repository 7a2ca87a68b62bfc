"""``ggk init DIR``: a complete, working demo setup in one directory.

Partners are the DOWR gemeenten (Deventer 0150, Olst-Wijhe 0175, Raalte 0177), two
zorgaanbieders, CAK, SVB and CORV. Each gets a random bearer token (only its digest goes into
``partners.toml``; the tokens themselves into ``secrets/tokens.toml``, mode 0600) and a client
certificate from a development CA. WMO301/305/307 are copied to CAK for the eigen bijdrage.
"""

from __future__ import annotations

import os
import secrets
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from gateway.devpki import DevCA
from gateway.keyring import Keyring
from gateway.serving import is_served
from routing.partners import token_digest


@dataclass(frozen=True, slots=True)
class DemoPartner:
    id: str
    name: str
    kind: str
    adapter: str = "inbox"


DEMO_PARTNERS = (
    DemoPartner("0150", "Gemeente Deventer", "gemeente"),
    DemoPartner("0175", "Gemeente Olst-Wijhe", "gemeente"),
    DemoPartner("0177", "Gemeente Raalte", "gemeente"),
    DemoPartner("12345678", "Zorggroep Salland", "aanbieder"),
    DemoPartner("87654321", "Jeugdhulp IJsselland", "aanbieder", "directory"),
    DemoPartner("CAK", "CAK (eigen bijdrage)", "cak", "directory"),
    DemoPartner("SVB", "SVB (pgb trekkingsrecht)", "svb"),
    DemoPartner("CORV", "CORV (justitie/jeugd)", "corv"),
)


SETUP_PARTS = ("gateway.toml", "partners.toml", "keys", "pki", "secrets", "data", "drop")
"""What ``ggk init`` writes: replaced together, kept together (data needs its own keys)."""


def _keep_aside(directory: Path) -> Path | None:
    """Move the existing setup, all of it, into ``replaced-<time>/``: its data stays with the
    keyring that opens it (``audit verify`` there passes with its own configuration), and
    the old tokens and certificates are not lost. Returns the backup folder, if any."""
    present = [directory / name for name in SETUP_PARTS if (directory / name).exists()]
    if not present:
        return None
    backup = directory / f"replaced-{time.strftime('%Y%m%d-%H%M%S')}"
    suffix = 1
    while backup.exists():
        suffix += 1
        backup = directory / f"replaced-{time.strftime('%Y%m%d-%H%M%S')}-{suffix}"
    backup.mkdir(mode=0o700)
    for path in present:
        path.rename(backup / path.name)
    return backup


def _data_dir(config: Path) -> Path:
    """The data directory the existing configuration names (``data`` when unreadable)."""
    try:
        with config.open("rb") as handle:
            named = tomllib.load(handle).get("gateway", {}).get("data_dir", "data")
    except (OSError, tomllib.TOMLDecodeError, AttributeError):
        named = "data"
    path = Path(named) if isinstance(named, str) else Path("data")
    return path if path.is_absolute() else config.parent / path


class DemoServed(Exception):
    """A gateway is serving the folder: it must be stopped before its setup is replaced."""


def _private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


class DemoExists(Exception):
    """The folder already holds a demo setup, which is kept."""


def init(directory: Path, *, port: int = 8443, force: bool = False) -> Path:
    """Write the demo setup; returns the path of ``gateway.toml``.

    An existing setup is kept (:class:`DemoExists`), so the quick start can run twice. With
    ``force`` keys, certificates and tokens are made anew, and the whole old setup (its
    configuration, keys, certificates, tokens and the data they open) is moved into
    ``replaced-<time>/``, never left for new keys that cannot open it. Refused while a
    gateway serves the folder (:class:`DemoServed`).
    """
    config = directory / "gateway.toml"
    if config.exists() and not force:
        raise DemoExists(f"{config} exists; kept (ggk init --force makes a new one)")
    if force and is_served(_data_dir(config)):
        raise DemoServed(
            f"a gateway is serving {directory}: stop `ggk serve` first, then run "
            "`ggk init --force` again (its keys and certificates would change underneath it)"
        )
    if force:
        _keep_aside(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for sub in ("data", "secrets", "drop", "keys"):
        (directory / sub).mkdir(exist_ok=True)
        (directory / sub).chmod(0o700)
    Keyring.generate().save(directory / "keys" / "keyring.json")
    ca = DevCA(directory / "pki")
    server = ca.issue("server", "localhost", server=True)
    # the MSH's client certificate for two-way TLS to partners (docs/ebms.md): its own key,
    # EKU clientAuth (the server certificate is serverAuth only, and ebms-core refuses that)
    ca.issue("ebms-client", "ggk-gateway ebMS", organisation="ggk-gateway")
    ca.write_crl()
    admin_token = secrets.token_urlsafe(32)
    tokens = {p.id: secrets.token_urlsafe(32) for p in DEMO_PARTNERS}

    partner_entries = []
    for p in DEMO_PARTNERS:
        client = ca.issue(f"client-{p.id}", p.id, organisation=p.name)
        delivery = f'adapter = "{p.adapter}"'
        if p.adapter == "directory":
            delivery += f'\npath = "drop/{p.id}"'
        partner_entries.append(
            f'[[partner]]\nid = "{p.id}"\nname = "{p.name}"\nkind = "{p.kind}"\n'
            f'token_sha256 = "{token_digest(tokens[p.id])}"\ncert_sha256 = "{client.sha256}"\n'
            f"[partner.delivery]\n{delivery}\n"
        )
    partners_text = "# Partners of the demo gateway (written by ggk init).\n\n" + "\n".join(
        partner_entries
    )
    (directory / "partners.toml").write_text(partners_text, encoding="utf-8")

    config.write_text(
        f"""# ggk-gateway demo configuration (written by ggk init).
[gateway]
organisatie = "GGK"
applicatie = "ggk-gateway"
host = "127.0.0.1"
port = {port}
data_dir = "data"
broker = "sqlite"            # or "kafka": several processes share the work (see [kafka] below)
partners = "partners.toml"
business_rules = "reject"   # or "record": deliver and only record level 2-4 rule violations
conversations = "strict"    # a Du01/Fo01 must answer a message between its two parties (else
                            # StUF043); "lenient" (migrations): deliver it marked unlinked
body_timeout = 60           # seconds a client may take to send its request body (else 408)
# max_database_mb = 10240   # quota: refuse new messages (StUF046) before the disk fills
# readers = 2               # processes that read offered messages on the other cores
                            # (default: one per core, at most 4; 0: read in this process)
# readers_when_alone = false  # true: readers also read a small message arriving alone
text_functies = []          # functies whose free text payloads are accepted (closed list;
                            # iWmo/iJw functies such as WMO301 are always validated as XML)
# public_url = "https://ggk.example.nl"  # the address the WSDL gives (default: host:port)

[limits]
header_timeout = 10         # seconds from connect (TLS included) to a request's headers
keepalive_timeout = 15      # seconds an idle keep-alive connection stays open
max_connections = 1000      # all callers together; beyond: 503 and close
max_connections_per_peer = 100
inflight_body_mb = 100      # request bodies in memory at once; more wait (then 503)
partner_inflight_body_mb = 0  # one partner's share of it; 0: one message + 1 MiB
min_body_rate = 16          # KiB/s a body must keep up once body_grace has passed (else 408)
body_grace = 5              # seconds before min_body_rate applies; 0 in min_body_rate: none
partner_rate = 100          # requests/s one partner may send, sustained; beyond: 429
partner_burst = 200         # requests one partner may send at once (then partner_rate)
portal_upload_slots = 4     # portal uploads at once (one per partner); more wait 15 s, then 503

[tls]
cert = "{server.cert.relative_to(directory)}"
key = "{server.key.relative_to(directory)}"
client_ca = "pki/ca.crt"     # client certificates are optional; they identify a partner
crl = "pki/crl.pem"          # revoked client certificates (ggk certs revoke; restart to apply)

[auth]
admin_token_sha256 = "{token_digest(admin_token)}"
# metrics_token_sha256 = "..."  # sha256 of a scrape token for /metrics (else the admin token)
metrics_from_loopback = false   # true: callers on this host read /metrics without a token

[delivery]
max_attempts = 8
backoff_base = 1.0
backoff_max = 300.0
timeout = 30.0
concurrency = 64                 # deliveries in flight across all receivers (docs/architecture.md)
per_receiver = 16                # ... and to one receiver: a slow one never takes every slot

[retour]
overdue_days = 3

[figures]
min_cell = 5  # beleidsinformatie: every count is rounded to a multiple of this (docs/figures.md)

[audit]
keyring = "keys/keyring.json"  # AES-256 data keys, BSN pseudonym key, checkpoint signing key
retention_days = 30            # payloads are purged after this; metadata and audit stay
checkpoint_seconds = 60        # how often the audit chain head is signed

# Several gateway processes over Apache Kafka (docs/kafka.md): put broker = "kafka" in
# [gateway] and describe the cluster; run `ggk kafka init` once.
# [kafka]
# bootstrap = "kafka1:9092,kafka2:9092,kafka3:9092"
# prefix = "ggk"
# security_protocol = "SSL"            # or SASL_SSL (sasl_mechanism, sasl_username,
# ssl_cafile = "pki/kafka-ca.crt"      # sasl_password_env = "GGK_KAFKA_PASSWORD")

# Digikoppeling ebMS2 (docs/ebms.md): POST /ebms for partners' MSHs; CPAs with `ggk cpa import`.
# [ebms]
# oin = "00000001234567890000"         # this gateway's OIN (its PartyId in every CPA)
# cpa_dir = "cpa"
# schema_dir = "xsd/ebms2"             # folder with the OASIS cpp-cpa-2_0.xsd (validates CPAs)
# listen = "0.0.0.0:8444"              # /ebms on a listener that REQUIRES a client certificate
# trust = "pki/ca.crt"                 # partners' MSH CA chain (PKIoverheid private root in
#                                      # production; this development CA for tests)
# crl = "pki/crl.pem"                  # their revoked certificates (checked both ways)
# client_cert = "pki/ebms-client.crt"  # what our MSH presents to partners (EKU clientAuth)
# client_key = "pki/ebms-client.key"

[[route]]
name = "eigen bijdrage: copy to CAK"
messages = ["WMO301", "WMO305", "WMO307"]
action = "copy"
copy_to = ["CAK"]

[[route]]
name = "deliver to the addressee"
action = "deliver"
""",
        encoding="utf-8",
    )
    token_lines = "\n".join(f'"{pid}" = "{tok}"' for pid, tok in tokens.items())
    _private(
        directory / "secrets" / "tokens.toml",
        "# Demo credentials. Keep this file private (mode 0600).\n"
        f'admin = "{admin_token}"\n\n[partners]\n{token_lines}\n',
    )
    return config
