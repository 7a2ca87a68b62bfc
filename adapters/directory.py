"""Directory: an atomic file drop for batch or SFTP pick-up.

Each message is written to a temporary name, flushed to disk, renamed into place and the
directory entry flushed too, so a reader never sees half a file and a crash never loses an
acknowledged one. The name is derived from the referentienummer, so a retry or replay
overwrites the same file instead of creating a duplicate.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

from adapters.base import AdapterError, Outbound, PermanentError, RetryableError

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class DirectoryAdapter:
    holds = False

    def __init__(self, settings: dict[str, Any], *, timeout: float) -> None:
        del timeout
        path = settings.get("path")
        if not path:
            raise AdapterError("the directory adapter needs a 'path'")
        self.path = Path(str(path))

    def _write(self, item: Outbound) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        name = _SAFE.sub("_", f"{item.functie}_{item.referentienummer}.xml")
        final = self.path / name
        temp = self.path / f".{name}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            os.write(fd, item.envelope)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, final)
        dir_fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    async def deliver(self, item: Outbound) -> None:
        try:
            await asyncio.to_thread(self._write, item)
        except PermissionError as exc:
            raise PermanentError(f"cannot write to {self.path}: {exc.strerror}") from None
        except OSError as exc:
            raise RetryableError(f"cannot write to {self.path}: {exc.strerror}") from None

    async def close(self) -> None:
        return None
