"""The audit log: every kind of tampering is caught; keys rotate; wrong or missing keys fail
clearly; retention purges payloads but keeps the trail; BSNs only as pseudonyms."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from gateway import audit, demo
from gateway.audit import record_hash
from gateway.broker import sqlite_audit
from gateway.broker.base import AuditRecord, SignedCheckpoint, StorageError
from gateway.broker.sqlite import SqliteBroker, reencrypt_payloads
from gateway.config import load as load_config
from gateway.keyring import Keyring, KeyringError
from kit.harness import free_port, stored_message

BSN = "999990019"


@pytest.fixture
async def logged(tmp_path: Path) -> tuple[Path, Keyring]:
    """A database with 12 audit records and a signed checkpoint at the end."""
    keys = Keyring.generate()
    path = tmp_path / "gateway.sqlite"
    broker = SqliteBroker(path, keys)
    await broker.start()
    for n in range(1, 5):
        await broker.accept(stored_message(n, bsns=(BSN,) if n == 2 else ()))
    for job in await broker.claim(10, 30):
        await broker.delivered(job)
    made = await broker.checkpoint()
    assert made == SignedCheckpoint(heads=1, records=12)
    assert await broker.checkpoint() is None  # nothing new to sign
    await broker.close()
    return path, keys


def _db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.row_factory = sqlite3.Row
    return db


def _verdict(path: Path, keys: Keyring, external: list | None = None) -> audit.Verdict:  # type: ignore[type-arg]
    db = _db(path)
    try:
        return sqlite_audit.verify(db, keys, external)
    finally:
        db.close()


def _rows(db: sqlite3.Connection) -> list[dict]:  # type: ignore[type-arg]
    return [dict(r) for r in db.execute("SELECT * FROM audit ORDER BY seq")]


TRUE_KEY = b"use the keyring's chain key"
"""A marker: tamper functions given it recompute hashes with the real chain key (an insider
with the keyring); any other key is an outsider's guess."""


def alter(db: sqlite3.Connection, key: bytes) -> None:
    db.execute("UPDATE audit SET outcome = 'delivered' WHERE seq = 3")


def delete(db: sqlite3.Connection, key: bytes) -> None:
    db.execute("DELETE FROM audit WHERE seq = 3")


def reorder(db: sqlite3.Connection, key: bytes) -> None:
    rows = _rows(db)
    a, b = rows[2], rows[3]
    cols = [c for c in a if c != "seq"]
    for row, other in ((a, b), (b, a)):
        db.execute(
            f"UPDATE audit SET {', '.join(f'{c} = ?' for c in cols)} WHERE seq = ?",
            (*(other[c] for c in cols), row["seq"]),
        )


def insert(db: sqlite3.Connection, key: bytes) -> None:
    rows = _rows(db)
    for row in reversed(rows[2:]):
        db.execute("UPDATE audit SET seq = seq + 1 WHERE seq = ?", (row["seq"],))
    forged = {
        **rows[2],
        "seq": 3,
        "action": "delivered",
        "outcome": "forged",
        "prev_hash": rows[1]["hash"],
    }
    forged["hash"] = record_hash(forged, key)
    _insert(db, forged)


def _insert(db: sqlite3.Connection, row: dict[str, object]) -> None:
    db.execute(
        f"INSERT INTO audit ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
        tuple(row.values()),
    )


def truncate(db: sqlite3.Connection, key: bytes) -> None:
    db.execute("DELETE FROM audit WHERE seq > 8")


def rebuild(db: sqlite3.Connection, key: bytes) -> None:
    """Alter a record and recompute every hash after it: with the real chain key only the
    signature catches this; with any other key the first rewritten record does."""
    db.execute("UPDATE audit SET outcome = 'rewritten' WHERE seq = 3")
    prev = _rows(db)[1]["hash"]
    for row in _rows(db)[2:]:
        row["prev_hash"] = prev
        row["hash"] = record_hash(row, key)
        db.execute(
            "UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?",
            (row["prev_hash"], row["hash"], row["seq"]),
        )
        prev = row["hash"]


def append_forged_tail(db: sqlite3.Connection, key: bytes) -> None:
    """Add a record after the last checkpoint, chained with the hash someone computed."""
    last = _rows(db)[-1]
    forged = {**last, "seq": last["seq"] + 1, "outcome": "forged", "prev_hash": last["hash"]}
    forged["hash"] = record_hash(forged, key)
    _insert(db, forged)


def bsn_index_added(db: sqlite3.Connection, key: bytes) -> None:
    db.execute("INSERT INTO audit_bsn (pseudonym, seq) VALUES ('ab', 5)")


def bsn_index_removed(db: sqlite3.Connection, key: bytes) -> None:
    db.execute("DELETE FROM audit_bsn")


def bsn_index_removed_under_marker(db: sqlite3.Connection, key: bytes) -> None:
    """Entries removed while a deferral marker says they are written."""
    (listed,) = db.execute("SELECT bsn_pseudonyms FROM audit WHERE seq = 3").fetchone()
    db.execute("DELETE FROM audit_bsn WHERE seq = 3")
    db.execute(
        "INSERT INTO audit_bsn_deferred (seq, indexed) VALUES (3, ?)", (len(listed.split(",")),)
    )


def malformed_row(db: sqlite3.Connection, key: bytes) -> None:
    db.execute("UPDATE audit SET at = 'yesterday' WHERE seq = 6")


def bad_checkpoint(db: sqlite3.Connection, key: bytes) -> None:
    db.execute("UPDATE audit_checkpoint SET signature = 'not base64!'")


@pytest.mark.parametrize(
    ("tamper", "key", "bad", "words"),
    [
        (alter, None, 3, "altered"),
        (delete, None, 3, "missing"),
        (reorder, None, 3, "does not follow"),
        (insert, TRUE_KEY, 4, "does not follow"),
        (insert, b"guess", 3, "forged"),
        (truncate, None, 12, "truncated"),
        (rebuild, TRUE_KEY, 12, "rewritten"),
        (rebuild, b"guess", 3, "forged"),
        (append_forged_tail, b"guess", 13, "forged"),
        (append_forged_tail, hashlib.sha256(b"").digest(), 13, "forged"),
        (bsn_index_added, None, 5, "BSN search index"),
        (bsn_index_removed, None, 3, "BSN search index"),
        (bsn_index_removed_under_marker, None, 3, "BSN search index"),
        (malformed_row, None, 6, "altered or forged"),
        (bad_checkpoint, None, 12, "invalid signature"),
    ],
    ids=[
        "alter",
        "delete",
        "reorder",
        "insert-with-key",
        "insert-without-key",
        "truncate",
        "rebuild-chain-with-key",
        "rebuild-chain-without-key",
        "forged-tail",
        "forged-tail-plain-sha256-key",
        "bsn-index-entry-added",
        "bsn-index-entry-removed",
        "bsn-index-entry-removed-under-a-marker",
        "malformed-row",
        "checkpoint-signature-garbage",
    ],
)
async def test_verify_catches_tampering(
    logged: tuple[Path, Keyring],
    tamper: Callable[[sqlite3.Connection, bytes], None],
    key: bytes | None,
    bad: int,
    words: str,
) -> None:
    path, keys = logged
    intact = _verdict(path, keys)
    assert intact.ok and intact.records == 12 and intact.checkpoints == 1
    assert intact.unsigned_tail == 0
    db = _db(path)
    tamper(db, keys.chain_key if key in (None, TRUE_KEY) else key)
    db.close()
    verdict = _verdict(path, keys)
    assert not verdict.ok and verdict.bad_seq == bad and words in verdict.reason, verdict


async def test_unsigned_tail_is_reported_and_signed_at_stop(tmp_path: Path) -> None:
    keys = Keyring.generate()
    path = tmp_path / "gateway.sqlite"
    broker = SqliteBroker(path, keys)
    await broker.start()
    await broker.accept(stored_message(1))
    await broker.checkpoint()
    await broker.accept(stored_message(2))
    verdict = _verdict(path, keys)
    assert verdict.ok and verdict.unsigned_tail == 2  # accepted + routed of message 2
    await broker.checkpoint()
    await broker.close()
    assert _verdict(path, keys).unsigned_tail == 0


async def test_truncation_with_checkpoints_removed_needs_the_exported_copy(
    logged: tuple[Path, Keyring],
) -> None:
    path, keys = logged
    db = _db(path)
    exported = [dict(r) for r in db.execute("SELECT * FROM audit_checkpoint")]
    db.execute("DELETE FROM audit WHERE seq > 8")
    db.execute("DELETE FROM audit_checkpoint")
    db.close()
    assert _verdict(path, keys).ok  # the local evidence is gone with the records...
    verdict = _verdict(path, keys, exported)  # ...the copy kept elsewhere is not
    assert not verdict.ok and "truncated" in verdict.reason


async def test_forged_checkpoint_signature(logged: tuple[Path, Keyring]) -> None:
    path, keys = logged
    other = Keyring.generate()
    other.pseudonym_key = keys.pseudonym_key  # same chain key, another signing key
    verdict = _verdict(path, other)
    assert not verdict.ok and "invalid signature" in verdict.reason


async def test_another_keyring_is_named_as_such(logged: tuple[Path, Keyring]) -> None:
    path, _ = logged
    verdict = _verdict(path, Keyring.generate())
    assert not verdict.ok and verdict.bad_seq == 1 and "wrong keyring" in verdict.reason


async def test_sensitive_fields_encrypted_and_searchable_by_pseudonym_only(
    logged: tuple[Path, Keyring],
) -> None:
    path, keys = logged
    for name in path.parent.iterdir():
        assert BSN.encode() not in name.read_bytes(), f"plaintext BSN in {name}"
        assert b"<e>payload</e>" not in name.read_bytes(), f"plaintext payload in {name}"
    db = _db(path)
    found = sqlite_audit.search(db, keys, bsn=BSN)
    assert [(r["action"], r["object"]) for r in found] == [("accepted", "m2")]
    assert sqlite_audit.search(db, keys, bsn="111222011") == []
    assert {r["action"] for r in sqlite_audit.search(db, keys, message="ref-1")} == {
        "accepted",
        "routed",
        "delivered",
    }
    exported = list(sqlite_audit.export(db, keys))
    accepted = next(r for r in exported if r["action"] == "accepted" and r["object"] == "m2")
    assert accepted["secret"] == {"payload_sha256": "ab" * 32, "bsn": [BSN]}
    db.close()


async def test_the_broker_finds_typed_audit_records_by_bsn(logged: tuple[Path, Keyring]) -> None:
    """What the portal's audit search reads: typed records, the same fields the CLI shows."""
    path, keys = logged
    broker = SqliteBroker(path, keys)
    await broker.start()
    try:
        found = await broker.audit_search(bsn=BSN)
        assert [(type(r), r.action, r.object) for r in found] == [(AuditRecord, "accepted", "m2")]
        db = _db(path)
        assert [r.to_dict() for r in found] == sqlite_audit.search(db, keys, bsn=BSN)
        db.close()
    finally:
        await broker.close()


async def test_rotation_keeps_old_records_readable_and_wrong_key_fails(
    logged: tuple[Path, Keyring], tmp_path: Path
) -> None:
    path, keys = logged
    old = keys.active
    keys.rotate()
    broker = SqliteBroker(path, keys)
    await broker.start()
    await broker.accept(stored_message(9))
    await broker.close()
    db = _db(path)
    records = list(sqlite_audit.export(db, keys))
    used = {r["key_id"] for r in records if r["key_id"]}
    assert used == {old, keys.active}
    stranger = Keyring.generate()
    with pytest.raises(KeyringError, match="not in the keyring"):
        list(sqlite_audit.export(db, stranger))
    stranger.data_keys[old] = stranger.data_keys[stranger.active]  # same id, wrong bytes
    with pytest.raises(KeyringError, match="wrong key"):
        list(sqlite_audit.export(db, stranger))
    db.close()


def test_keyring_file_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keyring.json"
    with pytest.raises(KeyringError, match="does not exist"):
        Keyring.load(path)
    Keyring.generate().save(path)
    assert Keyring.load(path).active
    path.chmod(0o644)
    with pytest.raises(KeyringError, match="readable by others"):
        Keyring.load(path)
    monkeypatch.delenv("GGK_KEYRING", raising=False)
    with pytest.raises(KeyringError, match="no keyring"):
        Keyring.load(None)
    path.chmod(0o600)
    monkeypatch.setenv("GGK_KEYRING", path.read_text())
    assert Keyring.load(None).active == Keyring.load(path).active
    monkeypatch.setenv("GGK_KEYRING", json.dumps({"active": "x"}))
    with pytest.raises(KeyringError, match="malformed"):
        Keyring.load(None)


async def test_retention_purges_finished_payloads_and_audits_it(tmp_path: Path) -> None:
    now = [1_000_000.0]
    keys = Keyring.generate()
    broker = SqliteBroker(tmp_path / "g.sqlite", keys, clock=lambda: now[0])
    await broker.start()
    await broker.accept(stored_message(1))
    await broker.accept(stored_message(2, bsns=(BSN,)))
    first, _in_flight = await broker.claim(10, 30)
    await broker.delivered(first)  # m1 finished; m2 still in flight
    now[0] += 40 * 86400
    assert await broker.purge(now[0] - 30 * 86400) == 1
    assert await broker.purge(now[0] - 30 * 86400) == 0
    view = await broker.view("m1")
    assert view is not None and view.events[-1].event == "payload_purged"
    assert await broker.replay(message_id="m1", dead_only=False) == 0  # nothing left to send
    await broker.close()
    db = _db(tmp_path / "g.sqlite")
    assert db.execute("SELECT length(envelope) FROM messages WHERE id = 'm1'").fetchone()[0] == 0
    assert sqlite_audit.verify(db, keys).ok
    db.close()


async def test_reencryption_goes_in_bounded_commits_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-encryption commits at most ``rows`` payloads (and ``REENCRYPT_BYTES``) at a time,
    reading each payload in its turn; one that stops halfway keeps what it committed, and
    the next run does the rest."""
    keys = Keyring.generate()
    path = tmp_path / "g.sqlite"
    broker = SqliteBroker(path, keys)
    await broker.start()
    for n in range(7):
        await broker.accept(stored_message(n))
    await broker.close()
    old = keys.active
    keys.rotate()

    def under_keys() -> dict[str, int]:
        db = _db(path)
        found = db.execute("SELECT envelope_key, count(*) FROM messages GROUP BY 1").fetchall()
        db.close()
        return {key: count for key, count in found}

    class Interrupted(Exception):
        pass

    def stop_after_the_first(done: int, total: int) -> None:
        raise Interrupted(f"{done}/{total}")

    with pytest.raises(Interrupted, match="3/7"):
        reencrypt_payloads(path, keys, stop_after_the_first, rows=3)
    assert under_keys() == {keys.active: 3, old: 4}
    seen: list[tuple[int, int]] = []
    assert reencrypt_payloads(path, keys, lambda d, t: seen.append((d, t)), rows=3) == 4
    assert seen == [(3, 4), (4, 4)]
    assert under_keys() == {keys.active: 7}

    keys.rotate()  # a byte limit: every payload here is larger than one byte, so one a commit
    monkeypatch.setattr("gateway.broker.sqlite.REENCRYPT_BYTES", 1)
    seen.clear()
    assert reencrypt_payloads(path, keys, lambda d, t: seen.append((d, t))) == 7
    assert seen == [(n, 7) for n in range(1, 8)]
    del keys.data_keys[old]
    broker = SqliteBroker(path, keys)
    await broker.start()
    assert len(await broker.claim(10, 30)) == 7  # every payload opens under the new keys
    await broker.close()


async def test_a_rotation_whose_reencryption_stops_says_so_and_keys_reencrypt_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ggk keys rotate --reencrypt` that fails on the third payload (altered in the store)
    keeps the two it did, says how far it got and what finishes it, and audits that; once
    the payload is whole again, `ggk keys reencrypt` does the rest under the same key. A
    rotation whose re-encryption cannot start (a gateway holds the store) is audited too."""
    demo.init(tmp_path, port=free_port())
    config = load_config(tmp_path / "gateway.toml")
    keys = Keyring.load(config.keyring)
    broker = SqliteBroker(config.database, keys)
    await broker.start()
    for n in (1, 2, 3):
        await broker.accept(stored_message(n))
    await broker.close()
    db = _db(config.database)
    [sealed] = db.execute("SELECT envelope FROM messages WHERE id = 'm3'").fetchone()
    altered = bytes(sealed[:-1]) + bytes([sealed[-1] ^ 1])
    db.execute("UPDATE messages SET envelope = ? WHERE id = 'm3'", (altered,))
    monkeypatch.setattr("gateway.broker.sqlite.REENCRYPT_BYTES", 1)  # one payload a commit

    def last_admin_act(ring: Keyring) -> tuple[str, str]:
        trail = _db(config.database)
        record = list(sqlite_audit.export(trail, ring))[-1]
        trail.close()
        return record["action"], record["outcome"]

    runner = CliRunner()
    done = runner.invoke(main, ["keys", "rotate", "--reencrypt", "--config", str(config.path)])
    assert done.exit_code != 0 and "Traceback" not in done.output
    assert "stopped after 2 of 3 payloads" in done.output, done.output
    assert "`ggk keys reencrypt`" in done.output
    rotated = Keyring.load(config.keyring)
    assert last_admin_act(rotated) == (
        "key_rotated",
        f"{keys.active} -> {rotated.active}, 2 of 3 payloads re-encrypted, then stopped",
    )
    db.execute("UPDATE messages SET envelope = ? WHERE id = 'm3'", (sealed,))
    done = runner.invoke(main, ["keys", "reencrypt", "--config", str(config.path)])
    assert done.exit_code == 0, done.output
    assert f"1 stored payloads re-encrypted with {rotated.active}" in done.output
    assert last_admin_act(rotated) == ("payloads_reencrypted", f"{rotated.active}: 1 payloads")
    found = db.execute("SELECT DISTINCT envelope_key FROM messages").fetchall()
    assert [key for (key,) in found] == [rotated.active]
    db.close()
    serving = SqliteBroker(config.database, rotated)  # a gateway holds the store: none done
    await serving.start()
    try:
        done = runner.invoke(main, ["keys", "rotate", "--reencrypt", "--config", str(config.path)])
    finally:
        await serving.close()
    assert done.exit_code != 0 and "payloads not re-encrypted" in done.output, done.output
    newest = Keyring.load(config.keyring)
    assert last_admin_act(newest) == (
        "key_rotated",
        f"{rotated.active} -> {newest.active}, payloads not re-encrypted",
    )


async def test_reencrypt_payloads_after_rotation(tmp_path: Path) -> None:
    keys = Keyring.generate()
    path = tmp_path / "g.sqlite"
    broker = SqliteBroker(path, keys)
    await broker.start()
    await broker.accept(stored_message(1))
    large = b"<e>" + b"<n>declaratie</n>" * 20_000 + b"</e>"  # stored packed (packing.py)
    await broker.accept(stored_message(2, envelope=large))
    old = keys.active
    keys.rotate()
    with pytest.raises(StorageError, match="in use"):
        reencrypt_payloads(path, keys)  # not while a gateway holds the database
    await broker.close()
    assert reencrypt_payloads(path, keys) == 2
    assert reencrypt_payloads(path, keys) == 0
    del keys.data_keys[old]  # payloads no longer need the old key...
    broker = SqliteBroker(path, keys)
    await broker.start()
    jobs = await broker.claim(2, 30)
    assert sorted(job.envelope for job in jobs) == sorted([b"<e>payload</e>", large])
    await broker.close()
    db = _db(path)
    with pytest.raises(KeyringError, match="not in the keyring"):  # ...audit records do
        list(sqlite_audit.export(db, keys))
    db.close()
