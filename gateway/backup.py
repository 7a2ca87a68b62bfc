"""``ggk backup`` and ``ggk restore``: a gateway folder copied while it serves, and put back
in a new folder that a gateway can start on.

A backup is a folder: the gateway's configuration and the files it names (partners, TLS
certificates and keys, CPAs, file drops), the store files as consistent copies (SQLite's
online backup: one commit's state, whatever the gateway writes meanwhile), and
``manifest.json`` with every file's SHA-256 and what the stores hold. The keyring is not in
it: it opens every payload and seals the audit chain, so it is written only where the
operator says (``--keyring FILE``), to be kept apart from the data (offline, another medium);
a restore needs it. On Kafka the data lives in the cluster's topics and is backed up as the
cluster is (docs/operations.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from gateway.broker.base import StorageError, StoreFacts
from gateway.broker.factory import backup_refused, check_store_copy, snapshot_store
from gateway.config import ConfigError, GatewayConfig
from gateway.config import load as load_config
from gateway.keyring import Keyring, KeyringError

MANIFEST = "manifest.json"
FORMAT = 1
SKIPPED_SUFFIXES = ("-wal", "-shm", "-journal", ".lock")
"""A live store's companions and locks: the copy of the store is self-contained."""
STORE_SUFFIX = ".sqlite"
KEPT_ASIDE = re.compile(r"^replaced-[0-9-]+$")
"""``ggk init --force`` keeps an old setup in ``replaced-<time>/``: not part of this one."""

Progress = Callable[[str, int, int], None]
"""(what, done, total): how far the copy is, for a progress line."""


class BackupError(Exception):
    """A backup or restore cannot be made; the text says why and what to do."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a backup holds (``manifest.json``)."""

    created_at: str
    gateway_version: str
    config: str
    data_dir: str
    files: dict[str, dict[str, Any]]
    stores: dict[str, dict[str, Any]]
    keyring: str

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        try:
            raw = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BackupError(f"{folder} is not a backup (no {MANIFEST})") from None
        except (OSError, ValueError) as exc:
            raise BackupError(f"{folder / MANIFEST} is unreadable: {exc}") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise BackupError(f"{folder / MANIFEST}: not a backup format this version reads")
        try:
            return cls(**{f.name: raw[f.name] for f in dataclasses.fields(cls)})
        except (KeyError, TypeError) as exc:
            raise BackupError(f"{folder / MANIFEST} is incomplete: {exc}") from None


def back_up(
    config: GatewayConfig, target: Path, keyring_out: Path | None, progress: Progress
) -> Manifest:
    """Copy the gateway of ``config`` into the new folder ``target`` (while it serves)."""
    refused = backup_refused(config)
    if refused is not None:
        raise BackupError(refused)
    root = config.path.parent.resolve()
    target = target.resolve()
    _must_be_new(target)
    keyring_path = _keyring_path(config)
    if keyring_out is not None:
        keyring_out = keyring_out.resolve()
        if keyring_out.is_relative_to(target) or keyring_out.is_relative_to(root):
            raise BackupError(
                "--keyring must be outside the backup and the gateway folder: kept beside the "
                "data, it protects nothing"
            )
        if keyring_out.exists():
            raise BackupError(f"{keyring_out} exists; give a new file for the keyring")
    data_dir = config.data_dir.resolve()
    data_name = _relative_name(data_dir, root) or "data"
    target.mkdir(mode=0o700, parents=True)
    files: dict[str, dict[str, Any]] = {}
    stores: dict[str, dict[str, Any]] = {}
    skip = {p for p in (keyring_path, data_dir, target) if p is not None}
    for source in _files(root, skip):
        name = source.relative_to(root).as_posix()
        files[name] = _copy(source, target / name)
    for source in sorted(_files(data_dir, {target})) if data_dir.is_dir() else []:
        name = f"{data_name}/{source.relative_to(data_dir).as_posix()}"
        if source.name.endswith(STORE_SUFFIX):
            (target / name).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            found = snapshot_store(source, target / name, _reporting(progress, name))
            stores[name] = dataclasses.asdict(found)
            files[name] = _digest(target / name)
        else:
            files[name] = _copy(source, target / name)
    if keyring_out is not None:
        if keyring_path is None or not keyring_path.is_file():
            raise BackupError(
                "the configuration names no keyring file to write (is it in $GGK_KEYRING?)"
            )
        _copy(keyring_path, keyring_out)
    manifest = Manifest(
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        gateway_version=_version(),
        config=config.path.resolve().relative_to(root).as_posix(),
        data_dir=data_name,
        files=files,
        stores=stores,
        keyring="written separately" if keyring_out is not None else "not included",
    )
    _write_private(target / MANIFEST, json.dumps(manifest.to_dict(), indent=2) + "\n")
    return manifest


@dataclass(frozen=True, slots=True)
class Restored:
    """What ``ggk restore`` put in place."""

    config: Path
    stores: dict[str, StoreFacts]
    keyring_placed: Path | None


def restore(source: Path, target: Path, keyring_file: Path | None, progress: Progress) -> Restored:
    """Put the backup ``source`` into the new folder ``target``, checked: every file's digest,
    every store sound, and the keyring (when given) the one that opens them."""
    manifest = Manifest.read(source)
    target = target.resolve()
    _must_be_new(target)
    keyring = None
    if keyring_file is not None:
        try:
            keyring = Keyring.load(keyring_file)
        except KeyringError as exc:
            raise BackupError(f"--keyring {keyring_file}: {exc}") from None
    _safe_manifest(manifest)
    root = source.resolve()
    for done, (name, expected) in enumerate(sorted(manifest.files.items()), 1):
        _safe_member(name)
        if (source / name).is_symlink() or not (source / name).resolve().is_relative_to(root):
            raise BackupError(f"{name} in the backup is a link out of it: refused")
        found = _digest(source / name)
        if found["sha256"] != expected.get("sha256"):
            raise BackupError(
                f"{name} in the backup differs from its manifest: the backup is damaged"
            )
        progress("checked", done, len(manifest.files))
    target.mkdir(mode=0o700, parents=True)
    for name in sorted(manifest.files):
        _copy(source / name, target / name)
    config_path = target / manifest.config
    _point_data_dir(config_path, manifest.data_dir)
    try:
        config = load_config(config_path)
    except (ConfigError, OSError) as exc:
        raise BackupError(f"the restored configuration does not load: {exc}") from None
    placed = None
    if keyring_file is not None:
        placed = _keyring_path(config)
        if placed is None:
            raise BackupError("the configuration names no keyring file (it reads $GGK_KEYRING)")
        placed.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _copy(keyring_file, placed)
    stores: dict[str, StoreFacts] = {}
    for name in sorted(manifest.stores):
        try:
            stores[name] = check_store_copy(target / name, keyring)
        except StorageError as exc:
            raise BackupError(f"restored {name}: {exc}") from None
    return Restored(config_path, stores, placed)


def _version() -> str:
    try:
        return version("ggk-gateway")
    except PackageNotFoundError:  # a source tree without an installed distribution
        return "unknown"


def _reporting(progress: Progress, name: str) -> Callable[[int, int], None]:
    return lambda done, total: progress(name, done, total)


def _must_be_new(target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"{target} exists and is not empty; give a new folder")


def _keyring_path(config: GatewayConfig) -> Path | None:
    """The keyring file the configuration names (``[audit] keyring``), resolved."""
    return config.keyring.resolve() if config.keyring is not None else None


def _relative_name(path: Path, root: Path) -> str | None:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else None


def _files(folder: Path, skip: set[Path]) -> Iterator[Path]:
    """The regular files under ``folder`` a backup copies (symbolic links are not followed:
    a link could point anywhere on the host)."""
    for entry in sorted(folder.iterdir()):
        resolved = entry.resolve() if not entry.is_symlink() else None
        if resolved is None or resolved in skip or KEPT_ASIDE.match(entry.name):
            continue
        if entry.is_dir():
            yield from _files(entry, skip)
        elif entry.is_file() and not entry.name.endswith(SKIPPED_SUFFIXES):
            yield entry


def _safe_member(name: str) -> None:
    """A manifest's file name stays inside the backup (a crafted manifest cannot write
    elsewhere on restore)."""
    if not isinstance(name, str):
        raise BackupError(f"the manifest names {name!r}, not a file name: refused")
    parts = Path(name).parts
    if Path(name).is_absolute() or ".." in parts or not parts:
        raise BackupError(f"the manifest names {name!r}, outside the backup: refused")


PLAIN_NAME = re.compile(r"^[A-Za-z0-9._/-]+$")
"""A folder name written into the restored configuration: nothing that could end its string."""


def _safe_manifest(manifest: Manifest) -> None:
    """The names the manifest gives besides its files (the configuration, the stores, the
    data folder) stay inside the restored folder, and name files the digests cover: a
    crafted one cannot have the restore rewrite or open a file elsewhere, nor smuggle
    settings into the configuration through the data folder's name."""
    for name in (manifest.config, *manifest.stores):
        _safe_member(name)
        if name not in manifest.files:
            raise BackupError(f"the manifest names {name!r}, not among its files: refused")
    _safe_member(manifest.data_dir)
    if not PLAIN_NAME.fullmatch(manifest.data_dir):
        raise BackupError(f"the manifest's data folder {manifest.data_dir!r}: refused")


def _copy(source: Path, target: Path) -> dict[str, Any]:
    """Copy with the source's mode, never wider than it was; the copy's digest."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = source.stat().st_mode & 0o777
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with source.open("rb") as reader, os.fdopen(fd, "wb") as writer:
        shutil.copyfileobj(reader, writer, 1024 * 1024)
        writer.flush()
        os.fsync(writer.fileno())
    return _digest(target)


def _digest(path: Path) -> dict[str, Any]:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            sha.update(block)
    return {"sha256": sha.hexdigest(), "bytes": path.stat().st_size}


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _point_data_dir(config_path: Path, data_dir: str) -> None:
    """A configuration whose data directory was outside its folder (an absolute path) gets
    the restored copy's place instead, so the restored gateway never opens the original's."""
    text = config_path.read_text(encoding="utf-8")
    line = re.search(r'^data_dir\s*=\s*"([^"]*)"', text, flags=re.M)
    if line is not None and line.group(1) != data_dir:
        text = text[: line.start()] + f'data_dir = "{data_dir}"' + text[line.end() :]
        config_path.write_text(text, encoding="utf-8")
