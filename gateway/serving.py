"""Whether a ``ggk serve`` process runs on a gateway directory, for the commands that must
not change it underneath (``ggk init --force`` replaces keys and certificates: a running
gateway would keep the old ones and every client would fail its TLS handshake).

Every serving process holds a shared lock on ``<data_dir>/serving.lock`` for its lifetime
(several processes of a Kafka deployment may share a directory); a command that needs the
directory to itself asks for the exclusive lock without waiting. The kernel drops the lock
when the process ends, also on ``kill -9``, so a crash never leaves a stale "serving" mark.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = "serving.lock"


@contextmanager
def serving(data_dir: Path) -> Iterator[None]:
    """Mark ``data_dir`` as served by this process until the block ends."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_NAME, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def is_served(data_dir: Path) -> bool:
    """A gateway process serves ``data_dir`` right now."""
    try:
        fd = os.open(data_dir / LOCK_NAME, os.O_WRONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
