"""The audit trail on the embedded backend: its tables and the SQL that reads and appends them.

The trail's rules (sealing, hashing, signing, checking) are gateway/audit.py's; this module only
keeps the records. Appends take the caller's connection inside its transaction, so an
"accepted" record commits atomically with the message it describes (gateway/broker/sqlite.py).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gateway import audit
from gateway.audit import CLEAR_FIELDS, GENESIS, AuditEvent, Tampered, Verdict
from gateway.broker.trail import SignedHeads, TrailCheck, TrailError
from gateway.keyring import Keyring

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
CREATE TABLE IF NOT EXISTS audit_bsn_deferred (
    seq INTEGER PRIMARY KEY,
    indexed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS audit_checkpoint (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    at REAL NOT NULL,
    signature TEXT NOT NULL
);
"""


class NoTrail(Exception):
    """There is no audit trail to open (no database file, or one made without the table)."""


def open_trail(path: Path, *, write: bool = False) -> sqlite3.Connection:
    """The database at ``path`` for a command that reads (or appends to) the trail while the
    gateway may run: read-only unless ``write``; autocommit (a caller that appends begins its
    own ``BEGIN IMMEDIATE``)."""
    if not path.exists():
        raise NoTrail(f"no gateway database at {path}")
    mode = "rw" if write else "ro"
    db = sqlite3.connect(f"file:{path}?mode={mode}", uri=True, timeout=30, isolation_level=None)
    db.row_factory = sqlite3.Row
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'audit'").fetchone() is None:
        db.close()
        raise NoTrail(f"{path} has no audit log (made by an older version?)")
    return db


def append(
    db: sqlite3.Connection,
    keyring: Keyring,
    event: AuditEvent,
    at: float,
    pseudonyms: tuple[str, ...] | None = None,
    *,
    defer_index: bool = False,
) -> int:
    """Append one record inside the caller's transaction; returns its sequence number.
    ``pseudonyms``: those of ``event.bsns`` when already made (:func:`gateway.audit.seal`).
    ``defer_index``: mark the record for the BSN index instead of indexing it now (a large
    message's; gateway/broker/sqlite_deferred.py and :func:`index_marked`)."""
    last = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    row = audit.seal(keyring, event, at, seq, prev, pseudonyms)
    db.execute(
        f"INSERT INTO audit ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
        tuple(row.values()),
    )
    indexed = _listed(row["bsn_pseudonyms"])
    if indexed and defer_index:
        db.execute("INSERT INTO audit_bsn_deferred (seq) VALUES (?)", (seq,))
    elif indexed:  # most records name no citizen; an empty executemany still costs ~15 µs
        db.executemany(
            "INSERT INTO audit_bsn (pseudonym, seq) VALUES (?, ?)", [(p, seq) for p in indexed]
        )
    return seq


def index_marked(db: sqlite3.Connection, chunk: int) -> None:
    """Index up to ``chunk`` more pseudonyms of the oldest record marked by
    ``append(defer_index=True)``, in the caller's transaction; its marker goes with the last."""
    marked = db.execute(
        "SELECT d.seq, d.indexed, a.bsn_pseudonyms FROM audit_bsn_deferred AS d "
        "LEFT JOIN audit AS a ON a.seq = d.seq ORDER BY d.seq LIMIT 1"
    ).fetchone()
    if marked is None:
        return
    seq, indexed, pseudonyms = marked[0], _indexed(marked[1]), _listed(marked[2])
    written = pseudonyms[indexed : indexed + chunk]
    if written:
        db.executemany(
            "INSERT INTO audit_bsn (pseudonym, seq) VALUES (?, ?)", [(p, seq) for p in written]
        )
    if indexed + len(written) >= len(pseudonyms):
        db.execute("DELETE FROM audit_bsn_deferred WHERE seq = ?", (seq,))
    else:
        db.execute(
            "UPDATE audit_bsn_deferred SET indexed = ? WHERE seq = ?", (indexed + len(written), seq)
        )


def marked_chunks(db: sqlite3.Connection, chunk: int) -> int:
    """How many :func:`index_marked` calls of ``chunk`` index every record marked now."""
    total = 0
    for indexed, listed in db.execute(
        "SELECT d.indexed, a.bsn_pseudonyms FROM audit_bsn_deferred AS d "
        "LEFT JOIN audit AS a ON a.seq = d.seq"
    ):
        left = len(_listed(listed)) - _indexed(indexed)
        total += max(1, -(-left // chunk))
    return total


def _listed(pseudonyms: object) -> list[str]:
    """A record's ``bsn_pseudonyms`` column as its list (empty for none)."""
    return [p for p in str(pseudonyms or "").split(",") if p]


def _indexed(marker: int | None) -> int:
    """A marker's count of indexed pseudonyms; a damaged one (negative, none) starts over."""
    return max(0, int(marker or 0))


def _marked(db: sqlite3.Connection) -> dict[int, int]:
    """Records whose index entries are still being written: seq → how many of its pseudonyms
    (in the record's order) are indexed. Empty for a file no gateway of this version opened."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'audit_bsn_deferred'").fetchone():
        return {r[0]: r[1] for r in db.execute("SELECT seq, indexed FROM audit_bsn_deferred")}
    return {}


def checkpoint(db: sqlite3.Connection, keyring: Keyring, at: float) -> dict[str, Any] | None:
    """Sign the current head of the chain; None when the log is empty or already signed."""
    last = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    if last is None:
        return None
    signed = db.execute("SELECT 1 FROM audit_checkpoint WHERE seq = ?", (last[0],)).fetchone()
    if signed:
        return None
    made = audit.sign_head(keyring, last[0], last[1], at)
    db.execute(
        "INSERT INTO audit_checkpoint (seq, hash, at, signature) VALUES (?, ?, ?, ?)",
        (made["seq"], made["hash"], at, made["signature"]),
    )
    return made


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
        rows = (dict(r) for r in db.execute("SELECT * FROM audit ORDER BY seq"))
        hashes = audit.check_chain(rows, keyring.chain_key, progress)
        checkpoints = [dict(r) for r in db.execute("SELECT * FROM audit_checkpoint ORDER BY seq")]
        signed = audit.check_signatures(keyring.verify_key, hashes, checkpoints, external or [])
        audit.check_bsn_index(
            ((r[0], r[1]) for r in db.execute("SELECT pseudonym, seq FROM audit_bsn")),
            (
                (r[0], r[1])
                for r in db.execute(
                    "SELECT seq, bsn_pseudonyms FROM audit WHERE bsn_pseudonyms != ''"
                )
            ),
            _marked(db),
        )
    except Tampered as exc:
        return Verdict(False, len(hashes), len(checkpoints), exc.seq, exc.reason)
    except sqlite3.Error as exc:
        return Verdict(False, len(hashes), len(checkpoints), None, f"unreadable log: {exc}")
    return Verdict(True, len(hashes), len(checkpoints), unsigned_tail=len(hashes) - signed)


def keyring_mismatch(db: sqlite3.Connection, keyring: Keyring) -> str | None:
    """Why ``keyring`` cannot be the one this database was written with, or None
    (:func:`gateway.audit.keyring_mismatch`)."""
    first = db.execute("SELECT * FROM audit WHERE seq = 1").fetchone()
    if first is None:
        return audit.keyring_mismatch(None, keyring)
    columns = [d[0] for d in db.execute("SELECT * FROM audit LIMIT 0").description]
    return audit.keyring_mismatch(dict(zip(columns, first, strict=True)), keyring)


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
        pseudonym = keyring.pseudonym(bsn)
        if _marked(db):  # records whose index entries are still being written: their lists
            where.append(
                "(seq IN (SELECT seq FROM audit_bsn WHERE pseudonym = ?) OR seq IN ("
                "SELECT d.seq FROM audit_bsn_deferred AS d JOIN audit AS a ON a.seq = d.seq "
                "WHERE instr(',' || a.bsn_pseudonyms || ',', ',' || ? || ',') > 0))"
            )
            params.extend((pseudonym, pseudonym))
        else:
            where.append("seq IN (SELECT seq FROM audit_bsn WHERE pseudonym = ?)")
            params.append(pseudonym)
    if partner:
        # a delivery's record names its destination first in its outcome ("CAK attempt 1"):
        # a copy to CAK is about CAK although the message's ontvanger is another partner
        like = audit.like_escaped(partner)
        where.append(
            "(zender = ? OR ontvanger = ? OR actor LIKE ? ESCAPE '\\' OR outcome = ? "
            "OR outcome LIKE ? ESCAPE '\\' OR outcome LIKE ? ESCAPE '\\')"
        )
        params += [partner, partner, f"{like} %", partner, f"{like} %", f"{like}:%"]
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
        yield audit.opened(dict(row), keyring)


def checkpoints(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """The signed checkpoints, oldest first."""
    db.row_factory = sqlite3.Row
    return [dict(r) for r in db.execute("SELECT * FROM audit_checkpoint ORDER BY seq")]


class DatabaseTrail:
    """The embedded store's trail for a command (:class:`gateway.broker.trail.OfflineTrail`)."""

    def __init__(self, path: Path, keyring: Keyring) -> None:
        self.path = path
        self.keyring = keyring

    def _open(self, *, write: bool = False) -> sqlite3.Connection:
        try:
            return open_trail(self.path, write=write)
        except NoTrail as exc:
            raise TrailError(str(exc)) from None

    def check(self) -> None:
        self._open().close()

    def append(self, event: AuditEvent) -> None:
        db = self._open(write=True)
        try:
            db.execute("BEGIN IMMEDIATE")
            append(db, self.keyring, event, time.time())
            db.execute("COMMIT")
        finally:
            db.close()

    def size(self) -> int | None:
        db = self._open()
        try:
            return int(db.execute("SELECT COUNT(*) FROM audit").fetchone()[0])
        finally:
            db.close()

    def verify(
        self, external: list[dict[str, Any]] | None, progress: Callable[[int], None]
    ) -> TrailCheck:
        db = self._open()
        try:
            verdict = verify(db, self.keyring, external, progress=progress)
        finally:
            db.close()
        return TrailCheck(
            verdict.ok,
            verdict.records,
            verdict.checkpoints,
            verdict.unsigned_tail,
            verdict.reason,
            bad_record=verdict.bad_seq,
        )

    def search(
        self,
        *,
        message: str | None,
        bsn: str | None,
        partner: str | None,
        since: float | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        db = self._open()
        try:
            return search(
                db,
                self.keyring if bsn else None,
                message=message,
                bsn=bsn,
                partner=partner,
                since=since,
                limit=limit,
            )
        finally:
            db.close()

    def export(self, write: Callable[[dict[str, Any]], object]) -> int:
        db = self._open()
        try:
            count = 0
            for record in export(db, self.keyring):
                record["secret_key_id"] = record.pop("key_id")
                write(record)
                count += 1
            return count
        finally:
            db.close()

    def checkpoint(self) -> SignedHeads:
        db = self._open(write=True)
        try:
            db.execute("BEGIN IMMEDIATE")
            made = checkpoint(db, self.keyring, time.time())
            db.execute("COMMIT")
            if made is None:
                signed = checkpoints(db)
                if not signed:
                    raise TrailError("the audit log is empty")
                made = {**signed[-1], "public_key": audit.public_key_text(self.keyring.verify_key)}
        finally:
            db.close()
        return SignedHeads((made,), chains=False)
