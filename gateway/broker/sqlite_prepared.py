"""What an accepted message's rows need that no transaction does: computed before the message
joins the embedded store's writer queue.

Why: the store has one writer, and every message accepted after another waits for that one's
group commit. A declaratie of 1 MB names some 870 clients: encrypting it, keying 870 BSN
pseudonyms and building 870 rows of beleidsinformatie held the writer for a third of its
25–40 ms commit under load, and each message queued behind it waited as long (the Bv03 p99
of the load runs was those messages; docs/benchmarks.md, "The slowest one per cent at 100
msg/s"). None of that work depends on the transaction (the message's id and
arrival time are fixed before it), so it is done here, before the queue: in a thread for a
large message (:func:`is_large`), on the caller's loop for a small one (about 10 µs for the
few KB most messages are). The writer then only inserts them; the audit record's own parts
(its sequence number, the hash of the one before) are still made in the transaction. A
duplicate is prepared too and the work dropped when the writer finds it one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.broker import packing
from gateway.broker.base import NewMessage
from gateway.broker.sqlite_core import envelope_aad
from gateway.broker.sqlite_deferred import FactRow, chunks, defers
from gateway.figures import Fact
from gateway.keyring import Keyring

LARGE_ROWS = 64
"""A message with more BSNs and facts than this is prepared in a thread (a few hundred µs)."""

LARGE_ENVELOPE_BYTES = packing.PACK_FROM_BYTES
"""A message whose envelope is larger than this is prepared in a thread: it is packed
(gateway/broker/packing.py), and sealing 256 KB alone took about 160 µs of the event loop."""


@dataclass(frozen=True, slots=True)
class PreparedAccept:
    """The parts of an accepted message's rows made before its transaction."""

    key_id: str
    ciphertext: bytes
    """The sealed envelope (nonce + AES-GCM ciphertext, bound to the message id)."""
    pseudonyms: tuple[str, ...]
    """Keyed pseudonyms of the payload's BSNs, sorted, for its ``accepted`` audit record."""
    fact_rows: tuple[FactRow, ...]
    """Its beleidsinformatie, as rows of the ``facts`` table (:func:`fact_rows`)."""
    deferred: tuple[str, ...] | None = None
    """A large message's fact rows in the chunks its commit keeps for later, when its BSN
    index entries and facts are written after its commit (gateway/broker/sqlite_deferred.py);
    None when they are written with it."""


def is_large(message: NewMessage) -> bool:
    """Whether preparing ``message`` is worth a thread (off the event loop)."""
    return (
        len(message.envelope) > LARGE_ENVELOPE_BYTES
        or len(message.bsns) + len(message.facts) > LARGE_ROWS
    )


def prepare(
    keyring: Keyring,
    message: NewMessage,
    at: float,
    sealed: tuple[str, bytes] | None = None,
) -> PreparedAccept:
    """The rows' parts of ``message`` accepted ``at``. ``sealed``: the envelope already
    encrypted (key id, ciphertext), as the Kafka backend's view receives it."""
    key_id, ciphertext = sealed or keyring.encrypt(
        packing.pack(message.envelope), envelope_aad(message.id)
    )
    rows = fact_rows(at, message.facts)
    return PreparedAccept(
        key_id,
        ciphertext,
        keyring.pseudonyms(message.bsns),
        rows,
        chunks(rows) if defers(len(message.bsns), len(message.facts)) else None,
    )


def fact_rows(at: float, facts: tuple[Fact, ...]) -> tuple[FactRow, ...]:
    """Beleidsinformatie of a message arrived ``at`` as rows of the ``facts`` table; a fact
    without a business date counts in the month the message arrived (UTC)."""
    arrived = time.strftime("%Y-%m", time.gmtime(at))
    return tuple(
        (
            f.kind.value,
            f.standard,
            f.gemeente,
            f.aanbieder,
            f.categorie,
            f.month or arrived,
            f.client,
            f.key,
            f.amount,
            f.link,
            f.follows,
        )
        for f in facts
    )
