"""Files the gateway writes from partner data: safe names, private modes, never overwrite.

A partner chooses its functie and referentienummer; a file name built from them must not
reach outside its folder (``../../x``), collide with another sender's file (a
referentienummer is unique per zender only) or follow a symlink planted in the folder. So:
names are made only from components checked against a strict pattern, each file is created
under a temporary name with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (mode 0600), flushed, and then
*linked* to its final name, which fails instead of replacing whatever is there.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path

_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")


class UnsafeName(ValueError):
    """A file-name component that is not a plain word (letters, digits, hyphens)."""


def file_name(*components: str, suffix: str = ".xml") -> str:
    """``a_b_c.xml`` from components that are each a plain word, or :class:`UnsafeName`."""
    for component in components:
        if not _COMPONENT.match(component):
            raise UnsafeName(f"not usable in a file name: {component[:40]!r}")
    return "_".join(components) + suffix


def private_dir(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700; an existing one keeps its mode."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def write_new(directory: Path, name: str, data: bytes, *, durable: bool = True) -> bool:
    """Write ``data`` as ``directory/name`` (mode 0600) unless that name exists.

    Returns False, writing nothing, when the name is taken (by a file, a directory or a
    symlink, which is not followed). With ``durable`` the file and the directory entry are
    on disk before this returns, so an acknowledged delivery survives a crash.
    """
    if "/" in name or name in (".", ".."):
        raise UnsafeName(f"not a plain file name: {name[:40]!r}")
    temp = directory / f".{name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temp, directory / name, follow_symlinks=False)
        except FileExistsError:
            return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    if durable:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return True
