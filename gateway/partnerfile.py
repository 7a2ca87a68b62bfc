"""Changing partners.toml safely: one writer at a time, never a file the gateway would refuse.

The partner file stays the source of truth on disk (reviewable, diffable, in configuration
management). ``ggk partners …`` and the operator portal change it through :func:`edit`:

- an exclusive lock (``partners.toml.lock`` beside it, ``flock``) so two operators' changes
  cannot interleave;
- the file is read, changed as data, written out whole to a temporary file in the same
  folder, and that file is loaded with the gateway's own loader
  (:meth:`routing.partners.PartnerRegistry.load`): a change that would make the file
  unloadable is refused and the file left as it was;
- the temporary file is flushed to disk (fsync), the previous version kept as
  ``partners.toml.bak``, and the new one renamed over the old (atomic: a reader sees the old
  file or the new one, never half of one), then the folder is fsynced.

The file is written in a fixed layout; comments of a hand-edited file are not kept (the
previous version is, in the ``.bak``). No name of a file written here comes from a partner or
an operator's input.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tomllib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from routing.partners import PartnerRegistry, RegistryError

HEADER = (
    "# The gateway's partners (docs/operations.md). Changed by `ggk partners` and the\n"
    "# operator portal; edits by hand are fine too (the gateway reloads this file).\n"
)


class PartnerFileError(ValueError):
    """The change cannot be made; the message says why (no secret in it)."""


def read(path: Path) -> dict[str, Any]:
    """The file as data (``{"partner": [...]}``)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PartnerFileError(f"{path}: {exc}") from None
    data.setdefault("partner", [])
    return data


def find(data: Mapping[str, Any], partner_id: str) -> dict[str, Any]:
    """The raw entry of ``partner_id``."""
    for entry in data.get("partner", []):
        if isinstance(entry, dict) and entry.get("id") == partner_id:
            return entry
    raise PartnerFileError(f"no partner {partner_id!r} in the partner file")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the partner file's lock (a sidecar file, so the rename does not lose it)."""
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def edit(path: Path) -> Iterator[dict[str, Any]]:
    """Change the partner file as data: the block changes the yielded dict; on leaving it the
    whole new file is checked and put in place (see the module's docstring). An exception in
    the block leaves the file untouched."""
    with locked(path):
        data = read(path)
        yield data
        replace(path, render(data))


def replace(path: Path, text: str) -> PartnerRegistry:
    """Put ``text`` in place as the partner file, if the gateway's loader accepts it; the
    registry it loads to. Called with the lock held."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        try:
            registry = PartnerRegistry.load(temporary)
        except RegistryError as exc:
            raise PartnerFileError(str(exc).replace(str(temporary), str(path))) from None
        if path.exists():
            shutil.copy2(path, path.with_name(path.name + ".bak"))
        with contextlib.suppress(OSError):
            os.chmod(temporary, path.stat().st_mode & 0o777)
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return registry
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def now() -> datetime:
    """Now, to the second, in UTC (how created/expires are written)."""
    return datetime.now(UTC).replace(microsecond=0)


# --- writing TOML (the subset a partner file uses) -------------------------------------------

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _key(key: str) -> str:
    return key if _BARE.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    """A TOML basic string: JSON's escaping covers TOML's, but for DEL, which TOML wants
    escaped too."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise PartnerFileError(f"cannot write a {type(value).__name__} in the partner file")


def render(data: Mapping[str, Any]) -> str:
    """The partner file for ``data``: each partner's plain keys, then its tokens, then its
    delivery table."""
    blocks = [HEADER]
    for entry in data.get("partner", []):
        lines = ["[[partner]]"]
        tables: dict[str, Any] = {}
        for key, value in entry.items():
            if key in ("token", "delivery"):
                tables[key] = value
            else:
                lines.append(f"{_key(key)} = {_value(value)}")
        for token in tables.get("token", []):
            lines.append("[[partner.token]]")
            lines += [f"{_key(k)} = {_value(v)}" for k, v in token.items()]
        if "delivery" in tables:
            lines.append("[partner.delivery]")
            lines += [f"{_key(k)} = {_value(v)}" for k, v in tables["delivery"].items()]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)
