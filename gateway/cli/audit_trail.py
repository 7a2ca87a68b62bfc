"""``ggk audit``: verify, search, export and checkpoint the tamper-evident audit log, in
the gateway's database or (Kafka backend) across the cluster; and the audit record of an
operator's act on the command line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import json
import os
import sqlite3
import sys
import time
from collections.abc import Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click
from aiokafka.errors import KafkaError

from gateway import audit
from gateway.broker import kafka_audit, kafka_ledger
from gateway.broker.base import StorageError
from gateway.broker.kafka import client_settings
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

T = TypeVar("T")


def _audit_db(config: GatewayConfig, *, write: bool = False) -> sqlite3.Connection:
    """The gateway database; read-only unless an audit record must be appended."""
    if not config.database.exists():
        raise UsageOrIOError(f"no gateway database at {config.database}")
    mode = "rw" if write else "ro"
    db = sqlite3.connect(
        f"file:{config.database}?mode={mode}", uri=True, timeout=30, isolation_level=None
    )
    db.row_factory = sqlite3.Row
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'audit'").fetchone() is None:
        db.close()
        raise UsageOrIOError(f"{config.database} has no audit log (made by an older version?)")
    return db


def audit_admin_act(config: GatewayConfig, keyring: Keyring, action: str, outcome: str) -> None:
    event = audit.AuditEvent(
        action=action, actor=f"operator {getpass.getuser()}", origin="cli", outcome=outcome
    )
    if config.broker == "kafka":
        assert config.kafka is not None
        _on_cluster(
            config,
            kafka_audit.append_act(
                _kafka_settings(config), config.kafka.prefix, keyring, event, time.time()
            ),
        )
        return
    db = _audit_db(config, write=True)
    try:
        db.execute("BEGIN IMMEDIATE")
        audit.append(db, keyring, event, time.time())
        db.execute("COMMIT")
    finally:
        db.close()


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
    if config.broker == "kafka":
        try:
            exported = [kafka_ledger.Checkpoint.from_dict(item) for item in external or []]
        except kafka_ledger.LedgerError as exc:
            raise UsageOrIOError(f"{checkpoint_file}: {exc}") from None
        _verify_cluster(config, ring, as_json, exported)
    db = _audit_db(config)
    try:
        total = db.execute("SELECT COUNT(*) FROM audit").fetchone()[0]
        with progress_bar(as_json, "verifying", total) as bar:
            verdict = audit.verify(db, ring, external, progress=bar.update)
    finally:
        db.close()
    data = {
        "ok": verdict.ok,
        "records": verdict.records,
        "checkpoints": verdict.checkpoints,
        "unsigned_tail": verdict.unsigned_tail,
        "bad_record": verdict.bad_seq,
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
        else f"AUDIT LOG DAMAGED at record {verdict.bad_seq}: {verdict.reason}"
    )
    emit(data, as_json, human)
    sys.exit(EXIT_OK if verdict.ok else EXIT_INVALID)


def _verify_cluster(
    config: GatewayConfig,
    ring: Keyring,
    as_json: bool,
    exported: list[kafka_ledger.Checkpoint],
) -> None:
    assert config.kafka is not None  # config.check
    settings = _kafka_settings(config)
    with progress_bar(as_json, "verifying the cluster's chains") as bar:
        verdict = _on_cluster(
            config,
            kafka_ledger.verify_cluster(
                settings,
                config.kafka.prefix,
                ring,
                progress=bar.update,
                external=exported,
            ),
        )
    data = {
        "ok": verdict.ok,
        "records": verdict.records,
        "checkpoints": verdict.checkpoints,
        "unsigned_tail": verdict.unsigned_tail,
        "reason": verdict.first_problem(),
        "partitions": [dataclasses.asdict(p) for p in verdict.partitions],
    }
    tail = (
        f"; {verdict.unsigned_tail} record(s) after the last signed checkpoints (written "
        "since the owners last signed; those could be cut off unnoticed)"
        if verdict.unsigned_tail
        else "; every record is covered by a signed checkpoint"
    )
    human = (
        f"cluster audit trail intact: {verdict.records} records in "
        f"{len(verdict.partitions)} partition chains, {verdict.checkpoints} signed "
        f"checkpoints{tail}"
        if verdict.ok
        else f"AUDIT TRAIL DAMAGED: {verdict.first_problem()}"
    )
    emit(data, as_json, human)
    sys.exit(EXIT_OK if verdict.ok else EXIT_INVALID)


def _kafka_settings(config: GatewayConfig) -> dict[str, Any]:
    assert config.kafka is not None
    try:
        return client_settings(config.kafka)
    except StorageError as exc:
        raise UsageOrIOError(str(exc)) from None


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
    if config.broker == "kafka":
        assert config.kafka is not None
        criteria = {"message": message, "bsn": bsn, "partner": partner}
        rows = _on_cluster(
            config,
            kafka_audit.search(
                _kafka_settings(config),
                config.kafka.prefix,
                keyring_of(config),
                limit=limit,
                since=since.timestamp() if since else None,
                **criteria,
            ),
        )
        emit(rows, as_json, _audit_lines(rows) or "no matching audit records")
        return
    ring = keyring_of(config) if bsn else None
    db = _audit_db(config)
    try:
        rows = audit.search(
            db,
            ring,
            message=message,
            bsn=bsn,
            partner=partner,
            since=since.timestamp() if since else None,
            limit=limit,
        )
    finally:
        db.close()
    emit(rows, as_json, _audit_lines(rows) or "no matching audit records")


def _audit_lines(rows: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{r['seq']:>7}  {local_time(r['at'])}  {r['action']:<18} {r['functie']:<7} "
        f"{r['zender']} → {r['ontvanger']}  {r['outcome']}  [{r['actor']}]"
        for r in rows
    )


def _on_cluster(config: GatewayConfig, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` against the configuration's Kafka cluster; its errors as CLI errors."""
    assert config.kafka is not None
    try:
        return asyncio.run(work)
    except KafkaError as exc:
        raise UsageOrIOError(f"kafka at {config.kafka.bootstrap}: {exc}") from None
    except KeyringError as exc:
        raise UsageOrIOError(str(exc)) from None


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
    db = _audit_db(config) if config.broker != "kafka" else None
    try:
        handle = _export_handle(out, force)
        try:
            if db is None:
                count = _on_cluster(config, _export_cluster(config, ring, handle))
            else:
                count = 0
                for record in audit.export(db, ring):
                    record["secret_key_id"] = record.pop("key_id")
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                    count += 1
        except KeyringError as exc:
            raise UsageOrIOError(str(exc)) from None
        finally:
            if out is not None:
                handle.close()
    finally:
        if db is not None:
            db.close()
    audit_admin_act(config, ring, "audit_exported", f"{count} records decrypted")
    if out is not None:
        click.echo(f"exported {count} records to {out}", err=True)


def _cluster_checkpoints(
    config: GatewayConfig, ring: Keyring, export_to: Path | None, as_json: bool
) -> None:
    assert config.kafka is not None
    newest = _on_cluster(
        config, kafka_ledger.newest_checkpoints(_kafka_settings(config), config.kafka.prefix, ring)
    )
    if not newest:
        raise UsageOrIOError("no signed checkpoint on the cluster's ledger yet")
    items = [json.loads(c.to_record()[0]) for c in newest]
    if export_to is not None:
        with export_to.open("a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(item) + "\n" for item in items)
    emit(
        items,
        as_json,
        "\n".join(
            f"{c.topic} partition {c.partition}: {c.records} records up to offset {c.offset} "
            f"({c.hash[:16]}…, by {c.node})"
            for c in newest
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


async def _export_cluster(config: GatewayConfig, ring: Keyring, handle: TextIO) -> int:
    assert config.kafka is not None
    count = 0
    settings = _kafka_settings(config)
    async for entry in kafka_audit.entries(settings, config.kafka.prefix, ring, open_secrets=True):
        handle.write(json.dumps(entry.exported(), ensure_ascii=False) + "\n")
        count += 1
    return count


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
    if config.broker == "kafka":
        _cluster_checkpoints(config, ring, export_to, as_json)
        return
    db = _audit_db(config, write=True)
    try:
        db.execute("BEGIN IMMEDIATE")
        made = audit.checkpoint(db, ring, time.time())
        db.execute("COMMIT")
        if made is None:
            row = db.execute("SELECT * FROM audit_checkpoint ORDER BY seq DESC LIMIT 1").fetchone()
            if row is None:
                raise UsageOrIOError("the audit log is empty")
            made = {**dict(row), "public_key": audit.public_key_text(ring.verify_key)}
    finally:
        db.close()
    if export_to is not None:
        with export_to.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(made) + "\n")
    emit(
        made,
        as_json,
        f"checkpoint at record {made['seq']} ({made['hash'][:16]}…)"
        + (f", appended to {export_to}" if export_to else ""),
    )
