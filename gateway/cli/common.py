"""What every ``ggk`` command shares: exit codes and the usage error (exit 2), the
``--config``, ``--url`` and ``--json`` options, loading the configuration and the keyring, the
client of a running gateway with its errors as CLI errors, output and progress bars.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from gateway.client import ClientError, GatewayClient, Unreachable
from gateway.config import ConfigError, GatewayConfig
from gateway.config import load as load_config
from gateway.keyring import Keyring, KeyringError

T = TypeVar("T")


EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


class UsageOrIOError(click.ClickException):
    """A problem with how ggk was called or with reading its inputs: exit code 2."""

    exit_code = EXIT_USAGE


DEFAULT_CONFIG = "demo/gateway.toml"


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=DEFAULT_CONFIG,
    show_default=True,
    envvar="GGK_CONFIG",
    help="Gateway configuration file.",
)


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def read_config(path: Path) -> GatewayConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise UsageOrIOError(str(exc)) from None


def _remember_url(ctx: click.Context, _: click.Parameter, value: str | None) -> None:
    ctx.meta["ggk.url"] = value


url_option = click.option(
    "--url",
    default=None,
    expose_value=False,
    callback=_remember_url,
    envvar="GGK_URL",
    help="The gateway's address (default: from the configuration, public_url or host:port).",
)


def gateway_client(config_path: Path, partner: str | None = None) -> GatewayClient:
    url = click.get_current_context().meta.get("ggk.url")
    try:
        return GatewayClient.for_config(read_config(config_path), partner=partner, url=url)
    except ClientError as exc:
        raise UsageOrIOError(str(exc)) from None


def emit(data: object, as_json: bool, human: str) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False) if as_json else human)


def call(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except Unreachable as exc:
        raise UsageOrIOError(str(exc)) from None
    except ClientError as exc:
        raise click.ClickException(str(exc)) from None


class Progress:
    """How far long work is, on a progress line (click's progressbar) on stderr; silent for
    --json and when stderr is not a terminal. Without a total it counts (no percentage)."""

    def __init__(self, label: str, total: int | None, shown: bool) -> None:
        # a generator has no length: click then shows a moving bar and the count
        items: Iterator[None] = (None for _ in ())
        self._bar: Any = (
            click.progressbar(items, length=total, label=label, file=sys.stderr, show_pos=True)
            if shown
            else None
        )
        self.done = 0

    def advance(self, steps: int = 1) -> None:
        self.done += steps
        if self._bar is not None:
            self._bar.update(steps)

    def update(self, done: int) -> None:
        """Set how much is done (a callback that reports a running total)."""
        self.advance(done - self.done)

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def progress_bar(as_json: bool, label: str, total: int | None = None) -> Progress:
    """A progress line on stderr for long work (not for --json or when not a terminal)."""
    return Progress(label, total, shown=not as_json and sys.stderr.isatty())


def each_page(pages: Iterator[list[dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
    """Pages from the gateway, its errors as clear CLI errors."""
    while True:
        page = call(lambda: next(pages, None))
        if page is None:
            return
        yield page


def keyring_of(config: GatewayConfig) -> Keyring:
    try:
        return Keyring.load(config.keyring)
    except KeyringError as exc:
        raise UsageOrIOError(str(exc)) from None


def local_time(timestamp: float | str) -> str:
    """Local time of an epoch number (audit records) or an RFC 3339 string (REST answers)."""
    if isinstance(timestamp, str):
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone()
    else:
        moment = datetime.fromtimestamp(timestamp)
    return moment.strftime("%Y-%m-%d %H:%M:%S")
