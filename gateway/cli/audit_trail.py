"""``ggk audit``: verify, search, export and checkpoint the tamper-evident audit log, in
the gateway's database or (Kafka backend) across the cluster; and the audit record of an
operator's act on the command line.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import click

from gateway import audit
from gateway.broker.trail import BadCheckpoints, OfflineTrail, TrailCheck, TrailError, open_trail
from gateway.cli.common import (
    EXIT_INVALID,
    EXIT_OK,
    UsageOrIOError,
    config_option,
    emit,
    json_option,
    keyring_of,
    local_time,
    progress_bar,
    read_config,
)
from gateway.config import GatewayConfig
from gateway.keyring import Keyring, KeyringError


def audit_admin_act(config: GatewayConfig, keyring: Keyring, action: str, outcome: str) -> None:
    event = audit.AuditEvent(
        action=action, actor=f"operator {getpass.getuser()}", origin="cli", outcome=outcome
    )
    with _trail_errors():
        _trail(config, keyring).append(event)


def _trail(config: GatewayConfig, keyring: Keyring) -> OfflineTrail:
    return open_trail(config, keyring)


@contextlib.contextmanager
def _trail_errors() -> Iterator[None]:
    """The trail's errors (:class:`~gateway.broker.trail.TrailError`) as the CLI's."""
    try:
        yield
    except TrailError as exc:
        raise UsageOrIOError(str(exc)) from None


@click.group(name="audit")
def audit_group() -> None:
    """The encrypted, tamper-evident audit log."""


@audit_group.command("verify")
@click.option(
    "--checkpoints",
    "checkpoint_file",
    type=click.Path(exists=True, path_type=Path),
    help="Checkpoints exported earlier (ggk audit checkpoint --export).",
)
@config_option
@json_option
def audit_verify(checkpoint_file: Path | None, config_path: Path, as_json: bool) -> None:
    """Check the whole chain and every signed checkpoint; name the first bad record.

    On the Kafka backend: every partition's chain, recomputed from the cluster, against every
    checkpoint on the ledger (the whole cluster, from any process's configuration)."""
    config = read_config(config_path)
    ring = keyring_of(config)
    try:
        external = audit.load_exported_checkpoints(checkpoint_file) if checkpoint_file else None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UsageOrIOError(f"{checkpoint_file}: not a checkpoint file ({exc})") from None
    trail = _trail(config, ring)
    with _trail_errors():
        total = trail.size()
        what = "verifying" if total is not None else "verifying the cluster's chains"
        with progress_bar(as_json, what, total) as bar:
            try:
                verdict = trail.verify(external, progress=bar.update)
            except BadCheckpoints as exc:
                raise UsageOrIOError(f"{checkpoint_file}: {exc}") from None
    if verdict.partitions is not None:
        _cluster_verdict(verdict, as_json)
    data = {
        "ok": verdict.ok,
        "records": verdict.records,
        "checkpoints": verdict.checkpoints,
        "unsigned_tail": verdict.unsigned_tail,
        "bad_record": verdict.bad_record,
        "reason": verdict.reason,
    }
    tail = (
        f"; {verdict.unsigned_tail} record(s) after the last signed checkpoint (a gateway "
        "that is running or was killed; those could be cut off unnoticed)"
        if verdict.unsigned_tail
        else "; every record is covered by a signed checkpoint"
    )
    human = (
        f"audit log intact: {verdict.records} records, {verdict.checkpoints} signed "
        f"checkpoints{tail}"
        if verdict.ok
        else f"AUDIT LOG DAMAGED at record {verdict.bad_record}: {verdict.reason}"
    )
    emit(data, as_json, human)
    sys.exit(EXIT_OK if verdict.ok else EXIT_INVALID)


def _cluster_verdict(verdict: TrailCheck, as_json: bool) -> None:
    """A cluster's verdict, chain by chain (``verdict.partitions``)."""
    partitions = list(verdict.partitions or ())
    data = {
        "ok": verdict.ok,
        "records": verdict.records,
        "checkpoints": verdict.checkpoints,
        "unsigned_tail": verdict.unsigned_tail,
        "reason": verdict.reason,
        "partitions": partitions,
    }
    tail = (
        f"; {verdict.unsigned_tail} record(s) after the last signed checkpoints (written "
        "since the owners last signed; those could be cut off unnoticed)"
        if verdict.unsigned_tail
        else "; every record is covered by a signed checkpoint"
    )
    human = (
        f"cluster audit trail intact: {verdict.records} records in "
        f"{len(partitions)} partition chains, {verdict.checkpoints} signed "
        f"checkpoints{tail}"
        if verdict.ok
        else f"AUDIT TRAIL DAMAGED: {verdict.reason}"
    )
    emit(data, as_json, human)
    sys.exit(EXIT_OK if verdict.ok else EXIT_INVALID)


@audit_group.command("search")
@click.option("--message", default=None, help="Message id or referentienummer.")
@click.option("--bsn", default=None, help="Found through its keyed pseudonym only.")
@click.option("--partner", default=None)
@click.option("--since", type=click.DateTime(), default=None)
@click.option("--limit", type=click.IntRange(1), default=1000, show_default=True)
@config_option
@json_option
def audit_search(
    message: str | None,
    bsn: str | None,
    partner: str | None,
    since: datetime | None,
    limit: int,
    config_path: Path,
    as_json: bool,
) -> None:
    """Audit records by message, BSN, partner and/or time."""
    if not (message or bsn or partner or since):
        raise click.UsageError("give at least one of --message, --bsn, --partner, --since")
    config = read_config(config_path)
    with _trail_errors():
        rows = _trail(config, keyring_of(config)).search(
            message=message,
            bsn=bsn,
            partner=partner,
            since=since.timestamp() if since else None,
            limit=limit,
        )
    emit(rows, as_json, _audit_lines(rows) or "no matching audit records")


def _audit_lines(rows: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{r['seq']:>7}  {local_time(r['at'])}  {r['action']:<18} {r['functie']:<7} "
        f"{r['zender']} → {r['ontvanger']}  {r['outcome']}  [{r['actor']}]"
        for r in rows
    )


@audit_group.command("export")
@click.option(
    "--decrypt",
    is_flag=True,
    required=True,
    help="Decrypt the sensitive fields (needs the keyring; the export is audited).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (mode 0600, never through a symlink); default standard output.",
)
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@config_option
def audit_export(decrypt: bool, out: Path | None, force: bool, config_path: Path) -> None:
    """Every audit record as JSON lines, sensitive fields decrypted (on the Kafka backend:
    the whole cluster's, read from its topics)."""
    config = read_config(config_path)
    ring = keyring_of(config)
    if out is not None and out.is_symlink():
        raise UsageOrIOError(f"{out} is a symbolic link; not followed")
    if out is not None and out.exists() and not force:
        raise UsageOrIOError(f"{out} exists; give --force to replace it")
    trail = _trail(config, ring)
    with _trail_errors():
        trail.check()
        handle = _export_handle(out, force)
        try:
            count = trail.export(
                lambda record: handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            )
        except KeyringError as exc:
            raise UsageOrIOError(str(exc)) from None
        finally:
            if out is not None:
                handle.close()
    audit_admin_act(config, ring, "audit_exported", f"{count} records decrypted")
    if out is not None:
        click.echo(f"exported {count} records to {out}", err=True)


def _cluster_checkpoints(
    items: list[dict[str, Any]], export_to: Path | None, as_json: bool
) -> None:
    if export_to is not None:
        with export_to.open("a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(item) + "\n" for item in items)
    emit(
        items,
        as_json,
        "\n".join(
            f"{c['topic']} partition {c['partition']}: {c['records']} records up to offset "
            f"{c['offset']} ({c['hash'][:16]}…, by {c['node']})"
            for c in items
        )
        + (f"\nappended to {export_to}" if export_to else ""),
    )


def _export_handle(out: Path | None, force: bool) -> TextIO:
    """``out`` opened for the export (mode 0600, never through a symlink), or stdout."""
    if out is None:
        return sys.stdout
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(out, flags, 0o600)
    except OSError as exc:
        raise UsageOrIOError(f"cannot write {out}: {exc.strerror}") from None
    os.fchmod(fd, 0o600)  # a replaced file may have been more open
    return os.fdopen(fd, "w", encoding="utf-8")


@audit_group.command("checkpoint")
@click.option(
    "--export",
    "export_to",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append the signed checkpoint to this file (keep it elsewhere).",
)
@config_option
@json_option
def audit_checkpoint(export_to: Path | None, config_path: Path, as_json: bool) -> None:
    """Sign the current head of the chain now, and optionally export it.

    On the Kafka backend the chains' owners sign them (every checkpoint_seconds and at a
    clean stop); this shows, and exports, the newest signed head of every chain."""
    config = read_config(config_path)
    ring = keyring_of(config)
    with _trail_errors():
        heads = _trail(config, ring).checkpoint()
    if heads.chains:
        _cluster_checkpoints(list(heads.items), export_to, as_json)
        return
    made = heads.items[0]
    if export_to is not None:
        with export_to.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(made) + "\n")
    emit(
        made,
        as_json,
        f"checkpoint at record {made['seq']} ({made['hash'][:16]}…)"
        + (f", appended to {export_to}" if export_to else ""),
    )
