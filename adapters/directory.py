"""Directory: an atomic file drop for batch or SFTP pick-up.

Each message becomes one file, named ``<functie>_<referentienummer>_<message id>.xml``: unique
per message (a referentienummer is unique per zender only, so it alone would let one sender
overwrite another's file), built only from checked components (never a path), written under
a temporary name, flushed, and linked into place so a reader never sees half a file and a
crash never loses an acknowledged one. An existing name is never overwritten: a retry or
replay of a message whose file is already there with the same bytes counts as delivered;
anything else under that name (another file, a symlink) is a permanent failure for an
operator to look at. The folder is 0700 and files 0600 (see gateway.safefiles).
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

from adapters.base import AdapterError, Outbound, PermanentError, RetryableError
from gateway.safefiles import UnsafeName, file_name, private_dir, write_new


class DirectoryAdapter:
    holds = False
    setting_keys = frozenset({"path"})

    def __init__(self, settings: dict[str, Any], *, timeout: float) -> None:
        del timeout
        path = settings.get("path")
        if not path:
            raise AdapterError("the directory adapter needs a 'path'")
        self.path = Path(str(path))

    def _write(self, item: Outbound) -> None:
        try:
            functie_part = file_name(item.functie or "bericht", suffix="")
        except UnsafeName:
            functie_part = "bericht"
        name = file_name(functie_part, item.referentienummer, item.message_id)
        try:
            written = write_new(self.path, name, item.envelope)
        except FileNotFoundError:  # the first file, or the folder was removed since
            private_dir(self.path)
            written = write_new(self.path, name, item.envelope)
        if not written and not _holds(self.path / name, item.envelope):
            raise UnsafeName(f"{name} exists and is not this message; not overwritten")

    async def deliver(self, item: Outbound) -> None:
        try:
            await asyncio.to_thread(self._write, item)
        except UnsafeName as exc:
            raise PermanentError(str(exc)) from None
        except PermissionError as exc:
            raise PermanentError(f"cannot write to {self.path}: {exc.strerror}") from None
        except OSError as exc:
            raise RetryableError(f"cannot write to {self.path}: {exc.strerror}") from None

    async def close(self) -> None:
        return None


def _holds(path: Path, data: bytes) -> bool:
    """True when ``path`` is a regular file (not a symlink) with exactly ``data``: the same
    message delivered before (a retry after a lost acknowledgement, or a replay)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as handle:
        return handle.read(len(data) + 1) == data
