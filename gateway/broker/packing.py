"""Large envelopes compressed before they are sealed into the embedded store.

Why: a declaratie of 1 MB is some 45 times smaller compressed (zlib at its fastest level:
about 23 KB, in about 1.3 ms, in the thread that prepares it; gateway/broker/sqlite_prepared.py).
Stored as it came, its commit wrote a megabyte into the WAL and onto the disk while every
message accepted after it waited (docs/benchmarks.md, "Copies in the window; rows that
follow their message"), the checkpointer copied it again, and the file grew by it. Small
envelopes, most of the traffic, are stored as they came: compressing a few KB would cost
more than it saves.

A packed envelope is the marker and the zlib stream. No envelope starts with the marker:
a NUL byte is not allowed anywhere in an XML document, and only XML is stored. The packed
bytes are sealed (AES-GCM) like any other, so nothing but this gateway's keyring could have
made them; what comes out is at most what went in.
"""

from __future__ import annotations

import zlib

PACKED = b"\x00zlib\x00"
"""What a packed envelope's plaintext starts with."""

PACK_FROM_BYTES = 64 * 1024
"""Envelopes larger than this are stored packed."""


def pack(envelope: bytes) -> bytes:
    """What is sealed for ``envelope``: packed when it is large, else itself."""
    if len(envelope) <= PACK_FROM_BYTES:
        return envelope
    return PACKED + zlib.compress(envelope, 1)


def unpack(plaintext: bytes) -> bytes:
    """The envelope of a stored plaintext (:func:`pack`'s, or one stored before packing)."""
    if plaintext.startswith(PACKED):
        return zlib.decompress(plaintext[len(PACKED) :])
    return plaintext
