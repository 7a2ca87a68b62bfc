"""The gateway's message ids: time-ordered, so the store writes them near each other.

A message id is a key in four indexes of the embedded store (the messages table's, a
delivery's, every history event's and audit record's). A random id (UUID v4) lands on a
random leaf page of each of them, so a group commit dirtied a page per message in each index,
and every such page went to the WAL and back into the database; ids that grow with time all
land on the rightmost leaves. Measured on the store alone (``python -m benchmarks.store``,
20,000 messages stored first; docs/benchmarks.md): in group commits of 20 (saturation) a
fifth less written to disk per message and an eighth less CPU; in groups of 2 (about 100
msg/s) a tenth less written, the same CPU.

The form is a UUID v7 (RFC 9562: 48 bits of Unix milliseconds, then 74 random bits) written
as 32 lower-case hexadecimal digits, the shape message ids always had
(:data:`gateway.parameters.MESSAGE_ID`), so nothing that reads them changes. The random part
keeps them unguessable; what they add is the millisecond the gateway made them, which the
message's own record shows anyway.
"""

from __future__ import annotations

import os
import time


def message_id(now_ns: int | None = None) -> str:
    """A new message id: a UUID v7 as 32 hexadecimal digits (``now_ns``: the time to use,
    in nanoseconds since the epoch; now when left out)."""
    millis = ((time.time_ns() if now_ns is None else now_ns) // 1_000_000) & (1 << 48) - 1
    random = int.from_bytes(os.urandom(10), "big")  # 80 bits, 74 of them used
    rand_a = random >> 68  # 12 bits
    rand_b = random & (1 << 62) - 1  # 62 bits
    value = millis << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return f"{value:032x}"
