"""The encrypted, tamper-evident audit log.

Each record holds the facts BIO 8.15.01 and NEN 7513 ask for in the clear — action, object
(message id), referentienummer, zender, ontvanger, message type, actor, origin (peer
address), outcome, time — and the sensitive ones (BSNs, error details that may quote content,
the payload digest) encrypted with AES-256-GCM under a key id, the record's sequence number
bound in as additional authenticated data. BSNs are searchable only through their keyed HMAC
pseudonyms.

Tamper evidence: every record carries a keyed hash (HMAC-SHA256 under the keyring's chain
key) of its own canonical form including the previous record's hash, so altering, inserting,
deleting or reordering records breaks the chain, and nobody without the keyring can forge a
record that fits. Ed25519-signed checkpoints (seq, hash), written at start, every
``checkpoint_seconds`` and at a clean stop, and exportable outside the gateway, catch
truncation; ``verify`` reports how many records follow the last signature (the tail that a
truncation could remove unnoticed) and rebuilds the BSN search index to compare it.

Appends take the caller's SQLite connection inside its transaction, so an "accepted" record
commits atomically with the message it describes (see gateway/broker/sqlite.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.keyring import Keyring

GENESIS = "0" * 64
CLEAR_FIELDS = (
    "action",
    "object",
    "referentienummer",
    "zender",
    "ontvanger",
    "functie",
    "actor",
    "origin",
    "outcome",
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    referentienummer TEXT NOT NULL,
    zender TEXT NOT NULL,
    ontvanger TEXT NOT NULL,
    functie TEXT NOT NULL,
    actor TEXT NOT NULL,
    origin TEXT NOT NULL,
    outcome TEXT NOT NULL,
    bsn_pseudonyms TEXT NOT NULL,
    key_id TEXT,
    secret BLOB,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_object ON audit (object);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE TABLE IF NOT EXISTS audit_bsn (pseudonym TEXT NOT NULL, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS audit_bsn_pseudonym ON audit_bsn (pseudonym);
CREATE TABLE IF NOT EXISTS audit_checkpoint (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    at REAL NOT NULL,
    signature TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class AuditEvent:
    action: str
    object: str = ""
    referentienummer: str = ""
    zender: str = ""
    ontvanger: str = ""
    functie: str = ""
    actor: str = ""
    origin: str = ""
    outcome: str = ""
    bsns: tuple[str, ...] = ()
    secret: dict[str, Any] = field(default_factory=dict)
    """Sensitive details (error text, payload digest): stored encrypted only."""


def _aad(seq: int) -> bytes:
    return f"ggk-audit:{seq}".encode()


def record_hash(row: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA256 (``key``: the keyring's chain key) over the canonical JSON of a record
    (everything but its own hash)."""
    secret = row["secret"]
    canonical = json.dumps(
        [
            row["seq"],
            repr(float(row["at"])),
            *(row[f] for f in CLEAR_FIELDS),
            row["bsn_pseudonyms"],
            row["key_id"],
            base64.b64encode(secret).decode() if secret is not None else None,
            row["prev_hash"],
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def append(db: sqlite3.Connection, keyring: Keyring, event: AuditEvent, at: float) -> int:
    """Append one record inside the caller's transaction; returns its sequence number."""
    last = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    pseudonyms = sorted({keyring.pseudonym(b) for b in event.bsns})
    secret_data = dict(event.secret)
    if event.bsns:
        secret_data["bsn"] = sorted(set(event.bsns))
    key_id, secret = (
        keyring.encrypt(json.dumps(secret_data).encode(), _aad(seq))
        if secret_data
        else (None, None)
    )
    row = {
        "seq": seq,
        "at": at,
        **{f: getattr(event, f) for f in CLEAR_FIELDS},
        "bsn_pseudonyms": ",".join(pseudonyms),
        "key_id": key_id,
        "secret": secret,
        "prev_hash": prev,
    }
    row["hash"] = record_hash(row, keyring.chain_key)
    db.execute(
        f"INSERT INTO audit ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
        tuple(row.values()),
    )
    db.executemany(
        "INSERT INTO audit_bsn (pseudonym, seq) VALUES (?, ?)", [(p, seq) for p in pseudonyms]
    )
    return seq


def checkpoint(db: sqlite3.Connection, keyring: Keyring, at: float) -> dict[str, Any] | None:
    """Sign the current head of the chain; None when the log is empty or already signed."""
    last = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    if last is None:
        return None
    signed = db.execute("SELECT 1 FROM audit_checkpoint WHERE seq = ?", (last[0],)).fetchone()
    if signed:
        return None
    signature = base64.b64encode(keyring.sign(f"{last[0]}:{last[1]}".encode())).decode()
    db.execute(
        "INSERT INTO audit_checkpoint (seq, hash, at, signature) VALUES (?, ?, ?, ?)",
        (last[0], last[1], at, signature),
    )
    return {
        "seq": last[0],
        "hash": last[1],
        "at": at,
        "signature": signature,
        "public_key": public_key_text(keyring.verify_key),
    }


def public_key_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    records: int
    checkpoints: int
    bad_seq: int | None = None
    reason: str = ""
    unsigned_tail: int = 0
    """Records after the last signed checkpoint: a truncation of these would go unnoticed."""


class _Tampered(Exception):
    def __init__(self, seq: int | None, reason: str) -> None:
        super().__init__(reason)
        self.seq = seq
        self.reason = reason


def verify(
    db: sqlite3.Connection,
    keyring: Keyring,
    external: list[dict[str, Any]] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Verdict:
    """Walk the whole chain, every checkpoint and the BSN index; name the first bad record
    and why. Malformed rows are findings too, never exceptions. ``progress`` is told every
    10,000 records how many were checked (a long log takes a while)."""
    db.row_factory = sqlite3.Row
    hashes: dict[int, str] = {}
    checkpoints: list[dict[str, Any]] = []
    try:
        hashes = _walk_chain(db, keyring.chain_key, progress)
        checkpoints = [dict(r) for r in db.execute("SELECT * FROM audit_checkpoint ORDER BY seq")]
        signed = _check_signatures(keyring.verify_key, hashes, checkpoints, external or [])
        _check_bsn_index(db)
    except _Tampered as exc:
        return Verdict(False, len(hashes), len(checkpoints), exc.seq, exc.reason)
    except sqlite3.Error as exc:
        return Verdict(False, len(hashes), len(checkpoints), None, f"unreadable log: {exc}")
    return Verdict(True, len(hashes), len(checkpoints), unsigned_tail=len(hashes) - signed)


def _walk_chain(
    db: sqlite3.Connection, key: bytes, progress: Callable[[int], None] | None
) -> dict[int, str]:
    expected_seq, prev = 1, GENESIS
    hashes: dict[int, str] = {}
    for row in db.execute("SELECT * FROM audit ORDER BY seq"):
        data = dict(row)
        seq = data["seq"]
        if seq != expected_seq:
            raise _Tampered(
                expected_seq,
                f"record {expected_seq} is missing (next present is {seq}): records were deleted",
            )
        if data["prev_hash"] != prev:
            raise _Tampered(
                seq,
                f"record {seq} does not follow record {seq - 1}: records were inserted, "
                "reordered or replaced",
            )
        try:
            fits = hmac.compare_digest(record_hash(data, key), str(data["hash"]))
        except (TypeError, ValueError, KeyError):
            fits = False
        if not fits and seq == 1:
            raise _Tampered(
                seq,
                "record 1 does not fit this keyring's chain key: a wrong keyring for this "
                "database, or the record was forged",
            )
        if not fits:
            raise _Tampered(seq, f"record {seq} was altered or forged (its keyed hash differs)")
        prev = data["hash"]
        hashes[seq] = prev
        expected_seq += 1
        if progress is not None and seq % 10_000 == 0:
            progress(seq)
    return hashes


def _check_signatures(
    verify_key: Ed25519PublicKey,
    hashes: dict[int, str],
    checkpoints: list[dict[str, Any]],
    external: list[dict[str, Any]],
) -> int:
    """Every checkpoint is signed, inside the log and equal to it; returns the highest
    signed sequence number (0: none)."""
    signed = 0
    for source, items in (("checkpoint", checkpoints), ("exported checkpoint", external)):
        for cp in items:
            try:
                seq = int(cp["seq"])
                verify_key.verify(base64.b64decode(cp["signature"]), f"{seq}:{cp['hash']}".encode())
            except (InvalidSignature, ValueError, TypeError, KeyError):
                raise _Tampered(
                    _int_or_none(cp.get("seq")), f"a {source} has an invalid signature"
                ) from None
            if seq not in hashes:
                raise _Tampered(
                    seq,
                    f"{source} covers record {seq} but the log ends at {len(hashes)}: "
                    "the log was truncated",
                )
            if hashes[seq] != cp["hash"]:
                raise _Tampered(
                    seq, f"record {seq} differs from the signed {source}: the chain was rewritten"
                )
            signed = max(signed, seq)
    return signed


def _check_bsn_index(db: sqlite3.Connection) -> None:
    """The BSN search index (audit_bsn) must be exactly what the chained records say; an
    added or removed entry would make a search find or miss a citizen's records."""
    indexed: dict[int, set[str]] = {}
    for row in db.execute("SELECT pseudonym, seq FROM audit_bsn"):
        indexed.setdefault(row[1], set()).add(row[0])
    for row in db.execute("SELECT seq, bsn_pseudonyms FROM audit WHERE bsn_pseudonyms != ''"):
        want = set(str(row[1]).split(","))
        if indexed.pop(row[0], set()) != want:
            raise _Tampered(row[0], f"the BSN search index differs from record {row[0]}")
    if indexed:
        seq = min(indexed)
        raise _Tampered(seq, f"the BSN search index has entries for record {seq} it lacks")


def keyring_mismatch(db: sqlite3.Connection, keyring: Keyring) -> str | None:
    """Why ``keyring`` cannot be the one this database was written with, or None.

    Checked at start (a gateway must not run on a keyring that cannot open its data, e.g.
    after ``ggk init --force`` replaced the keys): the first audit record must carry this
    keyring's chain hash. (Data keys may be retired after ``ggk keys rotate --reencrypt``;
    records sealed with them then stay unreadable, which ``ggk audit export`` reports.)
    """
    first = db.execute("SELECT * FROM audit WHERE seq = 1").fetchone()
    if first is None:
        return None
    columns = [d[0] for d in db.execute("SELECT * FROM audit LIMIT 0").description]
    row = dict(zip(columns, first, strict=True))
    try:
        fits = hmac.compare_digest(record_hash(row, keyring.chain_key), str(row["hash"]))
    except (TypeError, ValueError, KeyError):
        fits = False
    if not fits:
        return "the keyring does not match this database (its audit chain has other keys)"
    return None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def search(
    db: sqlite3.Connection,
    keyring: Keyring | None,
    *,
    message: str | None = None,
    bsn: str | None = None,
    partner: str | None = None,
    since: float | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Records matching every given criterion; a BSN is looked up by its pseudonym only."""
    db.row_factory = sqlite3.Row
    where: list[str] = []
    params: list[Any] = []
    if message:
        where.append("(object = ? OR referentienummer = ?)")
        params += [message, message]
    if bsn:
        if keyring is None:
            raise ValueError("searching by BSN needs the keyring (for the pseudonym)")
        where.append("seq IN (SELECT seq FROM audit_bsn WHERE pseudonym = ?)")
        params.append(keyring.pseudonym(bsn))
    if partner:
        where.append("(zender = ? OR ontvanger = ? OR actor LIKE ?)")
        params += [partner, partner, f"{partner} %"]
    if since is not None:
        where.append("at >= ?")
        params.append(since)
    sql = (
        "SELECT seq, at, "
        + ", ".join(CLEAR_FIELDS)
        + " FROM audit"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY seq LIMIT ?"
    )
    return [dict(r) for r in db.execute(sql, (*params, limit))]


def export(db: sqlite3.Connection, keyring: Keyring) -> Iterator[dict[str, Any]]:
    """Every record with its secret part decrypted (for an authorised auditor)."""
    db.row_factory = sqlite3.Row
    for row in db.execute("SELECT * FROM audit ORDER BY seq"):
        data = dict(row)
        secret = data.pop("secret")
        data["secret"] = (
            json.loads(keyring.decrypt(data["key_id"], secret, _aad(data["seq"])))
            if secret is not None
            else None
        )
        yield data


def load_exported_checkpoints(path: Path) -> list[dict[str, Any]]:
    """The checkpoints of a file written by ``ggk audit checkpoint --export``; a line that
    is not a JSON object is a ValueError."""
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not all(isinstance(item, dict) for item in items):
        raise ValueError("every line must be a JSON object")
    return items
