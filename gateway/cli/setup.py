"""Getting a gateway running: ``init`` writes a demo setup, ``serve`` runs the gateway."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import click

from gateway import demo, eventloop, logs, memtrace, memtune, server
from gateway.broker.base import StorageError
from gateway.bundled import SchemasMissing
from gateway.cli.common import UsageOrIOError, config_option, emit, json_option, read_config
from gateway.config import ConfigError
from gateway.config import check as check_config
from gateway.keyring import KeyringError
from gateway.schemas import SchemaError
from gateway.serving import serving
from routing.partners import RegistryError


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--port", type=click.IntRange(1, 65535), default=8443, show_default=True)
@click.option(
    "--force",
    is_flag=True,
    help="Make new keys, certificates and tokens; the old data is moved aside.",
)
@json_option
def init(directory: Path, port: int, force: bool, as_json: bool) -> None:
    """Write a working demo setup: config, partners, dev CA, tokens, data directory."""
    try:
        config = demo.init(directory, port=port, force=force)
    except demo.DemoExists as exc:
        emit({"config": str(directory / "gateway.toml"), "kept": True}, as_json, str(exc))
        return
    except demo.DemoServed as exc:
        raise UsageOrIOError(str(exc)) from None
    except OSError as exc:
        raise UsageOrIOError(
            f"cannot write the demo setup to {directory}: {exc.strerror}"
        ) from None
    files = {
        "config": str(config),
        "partners": str(directory / "partners.toml"),
        "pki": str(directory / "pki"),
        "tokens": str(directory / "secrets" / "tokens.toml"),
        "keyring": str(directory / "keys" / "keyring.json"),
        "partner_ids": [p.id for p in demo.DEMO_PARTNERS],
    }
    emit(
        files,
        as_json,
        "\n".join(
            [
                f"wrote {config}",
                f"  partners:     {files['partners']} ({len(demo.DEMO_PARTNERS)} partners)",
                f"  certificates: {files['pki']} (dev CA, server, one client per partner)",
                f"  tokens:       {files['tokens']} (mode 0600)",
                f"  keyring:      {files['keyring']} (mode 0600)",
                f"start it with: ggk serve --config {config}",
            ]
        ),
    )


@click.command()
@config_option
@click.option("--host", default=None, help="Override [gateway] host.")
@click.option("--port", type=click.IntRange(1, 65535), default=None)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
)
def serve(config_path: Path, host: str | None, port: int | None, log_level: str) -> None:
    """Run the gateway (SOAP, REST, delivery workers) until interrupted."""
    config = read_config(config_path)
    if host or port:
        config = dataclasses.replace(config, host=host or config.host, port=port or config.port)
        try:
            check_config(config)
        except ConfigError as exc:
            raise UsageOrIOError(str(exc)) from None
    logs.configure(log_level.upper())
    try:
        memtune.limit_arenas()  # before any thread: RSS that stays flat (gateway/memtune.py)
        memtrace.install_from_env()  # opt-in (GGK_TRACEMALLOC): memory hunts only
        with (
            serving(config.data_dir),
            asyncio.Runner(loop_factory=eventloop.loop_factory()) as runner,
        ):
            runner.run(server.run(config))
    except (
        OSError,
        RegistryError,
        ValueError,
        SchemaError,
        SchemasMissing,
        StorageError,
        KeyringError,
    ) as exc:
        raise UsageOrIOError(f"cannot start: {exc}") from None
