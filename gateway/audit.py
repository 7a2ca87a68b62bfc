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

This module is the trail's rules, free of any store: how a record is sealed and hashed, how a
checkpoint is signed, how a chain and its index are checked. Where records are kept is the
backend's (gateway/broker/sqlite_audit.py on the embedded backend, appended inside the same
transaction as the message they describe; gateway/broker/kafka_audit.py on Kafka).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.keyring import Keyring

GENESIS = "0" * 64


def names_partner(event: AuditEvent, partner: str) -> bool:
    """The record is about ``partner``: its zender or ontvanger, the actor acting for it, or
    a delivery to it (a delivery's outcome names its destination first, "CAK attempt 1"; a
    copy to CAK is about CAK although the message's ontvanger is someone else). The embedded
    store's search says the same in SQL (sqlite_audit.search)."""
    outcome = event.outcome
    return (
        partner in (event.zender, event.ontvanger)
        or event.actor.startswith(f"{partner} ")
        or outcome == partner
        or outcome.startswith((f"{partner} ", f"{partner}:"))
    )


def like_escaped(text: str) -> str:
    """``text`` as a literal inside an SQL LIKE pattern with ESCAPE '\\'."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


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


def seal(
    keyring: Keyring,
    event: AuditEvent,
    at: float,
    seq: int,
    prev: str,
    pseudonyms: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """The stored form of ``event`` as record ``seq`` following the record hashed ``prev``:
    clear fields, BSN pseudonyms, the sealed secret part and the record's keyed hash.
    ``pseudonyms``: ``keyring.pseudonyms(event.bsns)``, when the caller made them before
    (gateway/broker/sqlite_prepared.py: outside the store's writer)."""
    if pseudonyms is None:
        pseudonyms = keyring.pseudonyms(event.bsns)
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
    return row


def sign_head(keyring: Keyring, seq: int, head: str, at: float) -> dict[str, Any]:
    """A checkpoint over the chain's head (record ``seq`` hashed ``head``)."""
    signature = base64.b64encode(keyring.sign(f"{seq}:{head}".encode())).decode()
    return {
        "seq": seq,
        "hash": head,
        "at": at,
        "signature": signature,
        "public_key": public_key_text(keyring.verify_key),
    }


def opened(row: dict[str, Any], keyring: Keyring) -> dict[str, Any]:
    """A stored record with its secret part decrypted (for an authorised auditor)."""
    data = dict(row)
    secret = data.pop("secret")
    data["secret"] = (
        json.loads(keyring.decrypt(data["key_id"], secret, _aad(data["seq"])))
        if secret is not None
        else None
    )
    return data


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


class Tampered(Exception):
    """A finding of :func:`check_chain`, :func:`check_signatures` or :func:`check_bsn_index`:
    the first bad record (None: unknown) and why."""

    def __init__(self, seq: int | None, reason: str) -> None:
        super().__init__(reason)
        self.seq = seq
        self.reason = reason


def check_chain(
    rows: Iterable[dict[str, Any]], key: bytes, progress: Callable[[int], None] | None
) -> dict[int, str]:
    """Walk the records in order (``key``: the chain key); returns each one's hash, or raises
    :class:`Tampered` at the first that is missing, out of place or altered."""
    expected_seq, prev = 1, GENESIS
    hashes: dict[int, str] = {}
    for data in rows:
        seq = data["seq"]
        if seq != expected_seq:
            raise Tampered(
                expected_seq,
                f"record {expected_seq} is missing (next present is {seq}): records were deleted",
            )
        if data["prev_hash"] != prev:
            raise Tampered(
                seq,
                f"record {seq} does not follow record {seq - 1}: records were inserted, "
                "reordered or replaced",
            )
        try:
            fits = hmac.compare_digest(record_hash(data, key), str(data["hash"]))
        except (TypeError, ValueError, KeyError):
            fits = False
        if not fits and seq == 1:
            raise Tampered(
                seq,
                "record 1 does not fit this keyring's chain key: a wrong keyring for this "
                "database, or the record was forged",
            )
        if not fits:
            raise Tampered(seq, f"record {seq} was altered or forged (its keyed hash differs)")
        prev = data["hash"]
        hashes[seq] = prev
        expected_seq += 1
        if progress is not None and seq % 10_000 == 0:
            progress(seq)
    return hashes


def check_signatures(
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
                raise Tampered(
                    _int_or_none(cp.get("seq")), f"a {source} has an invalid signature"
                ) from None
            if seq not in hashes:
                raise Tampered(
                    seq,
                    f"{source} covers record {seq} but the log ends at {len(hashes)}: "
                    "the log was truncated",
                )
            if hashes[seq] != cp["hash"]:
                raise Tampered(
                    seq, f"record {seq} differs from the signed {source}: the chain was rewritten"
                )
            signed = max(signed, seq)
    return signed


def check_bsn_index(
    index: Iterable[tuple[str, int]],
    records: Iterable[tuple[int, str]],
    marked: Mapping[int, int] | None = None,
) -> None:
    """The BSN search index (``index``: pseudonym, seq) must be exactly what the chained
    records say (``records``: seq, bsn_pseudonyms of those that have any); an added or removed
    entry would make a search find or miss a citizen's records. ``marked``: records whose
    entries are still being written (seq → how many of its listed pseudonyms are, in order;
    gateway/broker/sqlite_deferred.py): exactly those must be there."""
    marked = marked or {}
    indexed: dict[int, set[str]] = {}
    for row in index:
        indexed.setdefault(row[1], set()).add(row[0])
    for seq, listed in records:
        names = str(listed).split(",")
        want = set(names[: marked[seq]] if seq in marked else names)
        if indexed.pop(seq, set()) != want:
            raise Tampered(seq, f"the BSN search index differs from record {seq}")
    if indexed:
        seq = min(indexed)
        raise Tampered(seq, f"the BSN search index has entries for record {seq} it lacks")


def keyring_mismatch(first: dict[str, Any] | None, keyring: Keyring) -> str | None:
    """Why ``keyring`` cannot be the one a trail whose first record is ``first`` (None: an
    empty trail) was written with, or None.

    Checked at start (a gateway must not run on a keyring that cannot open its data, e.g.
    after ``ggk init --force`` replaced the keys): the first audit record must carry this
    keyring's chain hash. (Data keys may be retired after ``ggk keys rotate --reencrypt``;
    records sealed with them then stay unreadable, which ``ggk audit export`` reports.)
    """
    if first is None:
        return None
    try:
        fits = hmac.compare_digest(record_hash(first, keyring.chain_key), str(first["hash"]))
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


def load_exported_checkpoints(path: Path) -> list[dict[str, Any]]:
    """The checkpoints of a file written by ``ggk audit checkpoint --export``; a line that
    is not a JSON object is a ValueError."""
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not all(isinstance(item, dict) for item in items):
        raise ValueError("every line must be a JSON object")
    return items
