"""``ggk keys rotate``: a new data key for the audit log and the payload store."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.broker.base import ReencryptionStopped, StorageError
from gateway.broker.factory import reencrypt_payloads, reencryption_refused
from gateway.cli.audit_trail import audit_admin_act
from gateway.cli.common import (
    UsageOrIOError,
    config_option,
    emit,
    json_option,
    keyring_of,
    progress_bar,
    read_config,
)
from gateway.config import GatewayConfig
from gateway.keyring import Keyring


@click.group()
def keys() -> None:
    """The keyring of the audit log and the payload store."""


@keys.command("rotate")
@click.option(
    "--reencrypt",
    is_flag=True,
    help="Also re-encrypt stored payloads with the new key (gateway stopped).",
)
@config_option
@json_option
def keys_rotate(reencrypt: bool, config_path: Path, as_json: bool) -> None:
    """Add a new data key and make it active; older records stay readable.

    A running gateway keeps encrypting with the key it loaded until it is restarted.
    --reencrypt needs the gateway stopped; audit records keep their key (the hash chain
    covers their ciphertext).
    """
    config = read_config(config_path)
    if config.keyring is None:
        raise UsageOrIOError("the keyring comes from $GGK_KEYRING; rotate it where it is kept")
    refused = reencryption_refused(config) if reencrypt else None
    if refused is not None:
        raise click.UsageError(refused)
    ring = keyring_of(config)
    old = ring.active
    new = ring.rotate()
    ring.save(config.keyring)  # first: payloads may only move to a key that is on disk
    count = 0
    if reencrypt and config.database.exists():
        try:
            count = _reencrypt(config, ring, as_json)
        except StorageError as exc:
            stopped = _stopped(exc)
            audit_admin_act(  # the key was rotated either way
                config,
                ring,
                "key_rotated",
                f"{old} -> {new}, {stopped or 'payloads not re-encrypted'}",
            )
            raise UsageOrIOError(
                f"key rotated to {new}, payloads not re-encrypted: {exc}"
                if stopped is None
                else f"key rotated to {new}; re-encryption {exc}. The rest still open with "
                "their old key; `ggk keys reencrypt` (gateway stopped) finishes it"
            ) from None
    if config.database.exists():
        done = f", {count} payloads re-encrypted" if reencrypt else ""
        audit_admin_act(config, ring, "key_rotated", f"{old} -> {new}{done}")
    emit(
        {"previous": old, "active": new, "reencrypted": count},
        as_json,
        f"active data key is now {new} (was {old})"
        + (
            f"; {count} stored payloads re-encrypted"
            if reencrypt
            else "; restart the gateway to use it"
        ),
    )


@keys.command("reencrypt")
@config_option
@json_option
def keys_reencrypt(config_path: Path, as_json: bool) -> None:
    """Re-encrypt stored payloads with the active data key (gateway stopped).

    Finishes a `ggk keys rotate --reencrypt` that stopped partway, or moves the payloads to
    the key a plain `ggk keys rotate` made. Payloads already under the active key are left
    as they are; audit records keep their key (the hash chain covers their ciphertext).
    """
    config = read_config(config_path)
    refused = reencryption_refused(config)
    if refused is not None:
        raise click.UsageError(refused)
    ring = keyring_of(config)
    count = 0
    if config.database.exists():
        try:
            count = _reencrypt(config, ring, as_json)
        except StorageError as exc:
            stopped = _stopped(exc)
            if stopped is not None:
                audit_admin_act(config, ring, "payloads_reencrypted", f"{ring.active}: {stopped}")
            raise UsageOrIOError(
                f"payloads not re-encrypted: {exc}"
                if stopped is None
                else f"re-encryption {exc}. Run it again to do the rest"
            ) from None
        audit_admin_act(config, ring, "payloads_reencrypted", f"{ring.active}: {count} payloads")
    emit(
        {"active": ring.active, "reencrypted": count},
        as_json,
        f"{count} stored payloads re-encrypted with {ring.active}",
    )


def _reencrypt(config: GatewayConfig, ring: Keyring, as_json: bool) -> int:
    """Re-encrypt with a progress line; a failure is a :class:`StorageError` (one that
    stopped after some commits: :class:`ReencryptionStopped`)."""
    with progress_bar(as_json, "re-encrypting payloads") as bar:
        return reencrypt_payloads(config, ring, lambda done, _total: bar.update(done))


def _stopped(exc: StorageError) -> str | None:
    """What the audit record says of a re-encryption that stopped partway (its commits
    hold); None when nothing was re-encrypted."""
    if isinstance(exc, ReencryptionStopped) and exc.done:
        return f"{exc.done} of {exc.total} payloads re-encrypted, then stopped"
    return None
