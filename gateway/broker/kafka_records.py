"""What the Kafka backend writes into its topics, and reading it back.

A record value is one line of JSON metadata, a newline, then an opaque blob (the sealed
envelope, or nothing). JSON never contains a raw newline, so the first one splits them. The
envelope is only ever in a record encrypted (AES-GCM, bound to the message id, like the
embedded backend's rows); BSNs and the payload digest travel in ``secret``, sealed as well.
Every process shares the keyring, so every process can open what another one wrote.

Record types (``t``):

- ``message``: an accepted message with its planned deliveries (``accepted`` and ``events``);
- ``deliver``: one delivery attempt to push (``deliver.<adapter>``, ``retry.<n>s``, ``dlq``);
- ``delivery``: a delivery's new state (``events``);
- ``event``: a history event without a state change (duplicate submission, …) (``events``);
- ``audit``: an audit record that belongs to no message (``audit``).
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, fields
from typing import Any

from gateway.audit import AuditEvent
from gateway.broker.base import NewMessage, PlannedDelivery
from gateway.broker.sqlite_core import envelope_aad
from gateway.figures import Fact, FactKind
from gateway.keyring import Keyring

FACT_FIELDS = tuple(field.name for field in fields(Fact))
"""The order of a fact's values in a record."""


class RecordError(ValueError):
    """A record this version cannot read (corrupt, or written by an incompatible version)."""


def frame(meta: dict[str, Any], blob: bytes = b"") -> bytes:
    return json.dumps(meta, separators=(",", ":")).encode() + b"\n" + blob


def unframe(value: bytes | None) -> tuple[dict[str, Any], bytes]:
    if not value:
        raise RecordError("empty record")
    head, sep, blob = value.partition(b"\n")
    if not sep:
        raise RecordError("record without metadata line")
    try:
        meta = json.loads(head)
    except ValueError as exc:
        raise RecordError(f"record metadata is not JSON: {exc}") from None
    if not isinstance(meta, dict) or "t" not in meta:
        raise RecordError("record metadata without a type")
    return meta, blob


def _seal_secret(keyring: Keyring, data: dict[str, Any], aad: str) -> dict[str, str]:
    key_id, sealed = keyring.encrypt(json.dumps(data).encode(), f"ggk-kafka:{aad}".encode())
    return {"key": key_id, "data": base64.b64encode(sealed).decode()}


def _open_secret(keyring: Keyring, sealed: dict[str, str], aad: str) -> dict[str, Any]:
    plain = keyring.decrypt(
        sealed["key"], base64.b64decode(sealed["data"]), f"ggk-kafka:{aad}".encode()
    )
    data: dict[str, Any] = json.loads(plain)
    return data


_MESSAGE_CLEAR = (
    "id",
    "kind",
    "zender",
    "zender_applicatie",
    "ontvanger",
    "referentienummer",
    "cross_ref",
    "functie",
    "message_code",
    "identificatie",
    "payload_sender",
    "digest",
    "bv03_ref",
    "bv03_tijdstip",
    "heen_id",
    "retourcodes",
    "actor",
    "origin",
)


def message_record(keyring: Keyring, message: NewMessage, received_at: float) -> bytes:
    """An accepted message: envelope sealed as the blob, BSNs and payload digest sealed."""
    key_id, sealed_envelope = keyring.encrypt(message.envelope, envelope_aad(message.id))
    meta: dict[str, Any] = {"t": "message", "at": received_at, "key_id": key_id}
    meta.update({name: getattr(message, name) for name in _MESSAGE_CLEAR})
    meta["deliveries"] = [asdict(d) for d in message.deliveries]
    meta["secret"] = _seal_secret(
        keyring,
        {"bsns": list(message.bsns), "payload_digest": message.payload_digest},
        message.id,
    )
    if message.facts:  # pseudonymous, but still about people: sealed like the rest
        # positional (the Fact fields in order): every view reads every record, and a list
        # parses and builds in half the time of a dict per fact
        facts = [[getattr(f, name) for name in FACT_FIELDS] for f in message.facts]
        meta["facts"] = _seal_secret(keyring, {"facts": facts}, f"{message.id}:facts")
    return frame(meta, sealed_envelope)


def read_message(
    keyring: Keyring | None,
    meta: dict[str, Any],
    blob: bytes,
    *,
    open_secret: bool = True,
    open_facts: bool = False,
) -> tuple[NewMessage, tuple[str, bytes], float]:
    """The message (envelope left empty), its sealed envelope (key id, blob), when received.
    ``open_secret=False`` (or no keyring) leaves the BSNs and payload digest sealed (and the
    message without them): for readers that only route it. ``open_facts`` opens the
    beleidsinformatie (for the view that counts it)."""
    sealed = meta.get("secret") if open_secret and keyring is not None else None
    secret = _open_secret(keyring, sealed, meta["id"]) if sealed and keyring else {}
    sealed_facts = meta.get("facts") if open_facts and keyring is not None else None
    try:
        facts = (
            tuple(
                Fact(FactKind(kind), *rest)
                for kind, *rest in _open_secret(keyring, sealed_facts, f"{meta['id']}:facts")[
                    "facts"
                ]
            )
            if sealed_facts and keyring
            else ()
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"message record with unreadable facts: {exc}") from None
    try:
        message = NewMessage(
            **{name: meta[name] for name in _MESSAGE_CLEAR},
            envelope=b"",
            deliveries=tuple(PlannedDelivery(**d) for d in meta["deliveries"]),
            bsns=tuple(secret.get("bsns", ())),
            payload_digest=secret.get("payload_digest", ""),
            facts=facts,
        )
    except (KeyError, TypeError) as exc:
        raise RecordError(f"message record incomplete: {exc}") from None
    return message, (meta["key_id"], blob), float(meta["at"])


def audit_record(
    keyring: Keyring, event: AuditEvent, at: float, nonce: str, refused_by: str | None = None
) -> bytes:
    """An audit record; ``refused_by`` names the authenticated partner a refusal answers
    (each view lists it among that partner's refusals)."""
    meta: dict[str, Any] = {"t": "audit", "at": at, "nonce": nonce}
    if refused_by is not None:
        meta["refused_by"] = refused_by
    clear = asdict(event)
    secret = {"bsns": list(clear.pop("bsns")), "secret": clear.pop("secret")}
    meta["event"] = clear
    meta["secret"] = _seal_secret(keyring, secret, nonce)
    return frame(meta)


def read_audit(keyring: Keyring, meta: dict[str, Any]) -> tuple[AuditEvent, float]:
    secret = _open_secret(keyring, meta["secret"], meta["nonce"])
    event = AuditEvent(**meta["event"], bsns=tuple(secret["bsns"]), secret=secret["secret"])
    return event, float(meta["at"])
