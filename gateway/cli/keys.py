"""``ggk keys rotate``: a new data key for the audit log and the payload store."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.broker.base import StorageError
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
from gateway.keyring import KeyringError


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
            with progress_bar(as_json, "re-encrypting payloads") as bar:
                count = reencrypt_payloads(config, ring, lambda done, _total: bar.update(done))
        except (StorageError, KeyringError) as exc:
            raise UsageOrIOError(
                f"key rotated to {new}, payloads not re-encrypted: {exc}"
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
