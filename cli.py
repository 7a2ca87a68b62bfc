"""The ``ggk`` command line: operators' and integrators' entry point.

Exit codes everywhere: 0 success (all valid), 1 the input was processed and something in it is
invalid, 2 usage or I/O error (bad option, unreadable file, broken schema bundle).
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
from collections.abc import Callable, Coroutine, Iterator
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.progress import Progress

from gateway import audit, demo, disclosure, envelope, freshen, logs, server, soap
from gateway.broker import kafka_audit, kafka_ledger, kafka_topics, sqlite_audit
from gateway.broker.base import StorageError
from gateway.broker.kafka import client_settings
from gateway.broker.sqlite import reencrypt_payloads
from gateway.bundled import SchemasMissing
from gateway.client import ClientError, GatewayClient, Unreachable
from gateway.config import ConfigError, GatewayConfig
from gateway.config import check as check_config
from gateway.config import load as load_config
from gateway.devpki import DevCA
from gateway.ebms.cpa import CpaError
from gateway.ebms.cpastore import CpaStore, describe
from gateway.envelope import named_message
from gateway.identify import parties
from gateway.keyring import Keyring, KeyringError
from gateway.report import ValidationReport
from gateway.rules import catalogue as rule_catalogue
from gateway.rules import render as render_rules
from gateway.safefiles import UnsafeName, file_name, private_dir, write_new
from gateway.schemas import SchemaError, SchemaRegistry
from gateway.standards import MESSAGES, parse_namespace
from gateway.validation import Validator
from gateway.xmlsafe import DEFAULT_MAX_BYTES, ParseLimits, UnsafeXml, parse_untrusted
from routing.partners import PartnerRegistry, RegistryError
from routing.table import Refusal, RoutedMessage, RouteTable

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
T = TypeVar("T")


class UsageOrIOError(click.ClickException):
    """A problem with how ggk was called or with reading its inputs: exit code 2."""

    exit_code = EXIT_USAGE


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ggk-gateway")
def main() -> None:
    """ggk-gateway: iWmo/iJw message gateway for the GGk."""


def _registry(schema_dirs: tuple[Path, ...]) -> SchemaRegistry:
    try:
        return SchemaRegistry(list(schema_dirs))
    except SchemaError as exc:
        raise UsageOrIOError(str(exc)) from None


def _inputs(paths: tuple[str, ...]) -> Iterator[tuple[str, Path | None]]:
    """Expand files, directories (recursively, *.xml) and '-' (stdin) into sources."""
    for raw in paths:
        if raw == "-":
            yield "-", None
            continue
        path = Path(raw)
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                if found.is_file() and found.suffix.lower() == ".xml":
                    yield str(found), found
        elif path.is_file():
            yield raw, path
        else:
            raise click.BadParameter(f"{raw}: no such file or directory", param_hint="PATH")


def _print_human(report: ValidationReport, quiet: bool) -> None:
    if report.valid and quiet and not report.warnings:
        return
    mark = click.style("valid  ", fg="green") if report.valid else click.style("INVALID", fg="red")
    what = report.describe_message()
    if report.envelope == "Fo01Bericht":
        what = "Fo01Bericht (StUF error message, no payload)"
    elif report.envelope:
        what = f"{report.envelope} envelope, payload {what}"
    click.echo(f"{mark} {report.source}  {what}")
    for p in report.problems:
        where = p.path or "document"
        if p.line:
            where += f" (line {p.line})"
        code = f" [retourcode {p.retourcode}]" if p.retourcode else ""
        tag = "warning " if p.severity.value == "warning" else ""
        click.echo(f"    {tag}{p.rule}{code} at {where}: {p.message}")
        if p.expected or p.found:
            click.echo(f"        expected: {p.expected or '-'}; found: {p.found or '-'}")


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.option(
    "--schema-dir",
    "schema_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Extra XSD bundle (e.g. official iStandaarden XSDs); repeatable.",
)
@click.option(
    "--max-size",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_BYTES,
    show_default=True,
    help="Refuse documents larger than this many bytes.",
)
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="System date for TR135 (default: today).",
)
@click.option("-q", "--quiet", is_flag=True, help="Only print invalid documents.")
def validate(
    paths: tuple[str, ...],
    as_json: bool,
    schema_dirs: tuple[Path, ...],
    max_size: int,
    today: datetime | None,
    quiet: bool,
) -> None:
    """Validate iWmo/iJw messages, StUF-GGk envelopes or SOAP requests.

    PATHS are files, directories (searched for *.xml) or - for standard input.
    """
    registry = _registry(schema_dirs)
    system_date = today.date() if today is not None else None
    validator = Validator(registry, ParseLimits(max_bytes=max_size), today=system_date)
    reports: list[ValidationReport] = []
    started = time.perf_counter()
    progress = as_json and sys.stderr.isatty()
    sources = list(_inputs(paths))
    try:
        for source, path in sources:
            try:
                data = sys.stdin.buffer.read() if path is None else path.read_bytes()
            except OSError as exc:
                raise UsageOrIOError(f"{source}: {exc.strerror}") from None
            report = validator.validate(data, source)
            reports.append(report)
            if as_json:
                if progress and len(reports) % 500 == 0:
                    click.echo(f"\r{len(reports)} documents…", err=True, nl=False)
            else:
                _print_human(report, quiet)
    except SchemaError as exc:
        raise UsageOrIOError(str(exc)) from None
    elapsed = time.perf_counter() - started
    invalid = sum(1 for r in reports if not r.valid)
    summary = {
        "documents": len(reports),
        "valid": len(reports) - invalid,
        "invalid": invalid,
        "seconds": round(elapsed, 3),
    }
    if as_json:
        if progress:
            click.echo("", err=True)
        json.dump(
            {"summary": summary, "reports": [r.to_dict() for r in reports]},
            sys.stdout,
            ensure_ascii=False,
            indent=2,
        )
        sys.stdout.write("\n")
    else:
        rate = len(reports) / elapsed if elapsed > 0 else 0.0
        click.echo(
            f"{len(reports)} documents: {summary['valid']} valid, {invalid} invalid "
            f"({elapsed:.2f} s, {rate:,.0f}/s)"
        )
    sys.exit(EXIT_INVALID if invalid else EXIT_OK)


@main.group()
def schemas() -> None:
    """Inspect the schema registry."""


@schemas.command("list")
@click.option(
    "--schema-dir",
    "schema_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option("--json", "as_json", is_flag=True)
@click.option("--compile", "compile_all", is_flag=True, help="Also compile every schema.")
def schemas_list(schema_dirs: tuple[Path, ...], as_json: bool, compile_all: bool) -> None:
    """List the message schemas found, by namespace, and the StUF-GGk envelope schemas."""
    registry = _registry(schema_dirs)
    rows = []
    for ns in registry.namespaces():
        described = registry.file_for(ns)
        assert described is not None
        info = parse_namespace(ns)
        message = info.message if info else None
        if compile_all:
            try:
                registry.get(ns)
            except SchemaError as exc:
                raise UsageOrIOError(str(exc)) from None
        rows.append(
            {
                "namespace": ns,
                "message": message.code if message else None,
                "release": info.release if info else None,
                "file": str(described.path),
                "bericht_xsd_versie": described.bericht_xsd_versie,
            }
        )
    envelopes = [
        {"namespace": ns, "message": label, "release": None, "file": str(path)}
        for ns, label, path in envelope.envelope_schemas()
    ]
    if as_json:
        click.echo(json.dumps(rows + envelopes, indent=2))
        return
    for row in rows + envelopes:
        click.echo(
            f"{row['message'] or '-':8} {row['release'] or '-':5} {row['namespace']}  {row['file']}"
        )
    click.echo(f"{len(rows)} message schemas, {len(envelopes)} envelope schemas")


@main.group()
def rules() -> None:
    """The iWmo/iJw 3.2 rule catalogue and how the gateway checks each rule."""


@rules.command("list")
@click.option(
    "--message",
    "message_code",
    metavar="CODE",
    help="Only the rules that concern one message, e.g. WMO301 or JW323.",
)
@click.option(
    "--status",
    type=click.Choice([s.value for s in rule_catalogue.Status]),
    help="Only rules the gateway treats this way.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def rules_list(message_code: str | None, status: str | None, as_json: bool) -> None:
    """List the rules: id, control level, retourcode, status, messages, summary."""
    if message_code is not None:
        known = {m.code for m in MESSAGES.values()}
        if message_code.upper() not in known:
            raise click.BadParameter(
                f"{message_code!r} is not an iWmo/iJw 3.2 message; one of "
                + ", ".join(sorted(known)),
                param_hint="--message",
            )
        entries = rule_catalogue.for_message(message_code)
    else:
        entries = list(rule_catalogue.catalogue().values())
    if status is not None:
        entries = [e for e in entries if e.status.value == status]
    if as_json:
        click.echo(json.dumps([e.as_dict() for e in entries], indent=2, ensure_ascii=False))
        return
    for entry in entries:
        click.echo(render_rules.line(entry))
    click.echo(f"{len(entries)} rules")


# --- the gateway ----------------------------------------------------------------------------

DEFAULT_CONFIG = "demo/gateway.toml"
_config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=DEFAULT_CONFIG,
    show_default=True,
    envvar="GGK_CONFIG",
    help="Gateway configuration file.",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _load_config(path: Path) -> GatewayConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise UsageOrIOError(str(exc)) from None


def _remember_url(ctx: click.Context, _: click.Parameter, value: str | None) -> None:
    ctx.meta["ggk.url"] = value


_url_option = click.option(
    "--url",
    default=None,
    expose_value=False,
    callback=_remember_url,
    envvar="GGK_URL",
    help="The gateway's address (default: from the configuration, public_url or host:port).",
)


def _client(config_path: Path, partner: str | None = None) -> GatewayClient:
    url = click.get_current_context().meta.get("ggk.url")
    try:
        return GatewayClient.for_config(_load_config(config_path), partner=partner, url=url)
    except ClientError as exc:
        raise UsageOrIOError(str(exc)) from None


def _emit(data: object, as_json: bool, human: str) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False) if as_json else human)


def _call(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except Unreachable as exc:
        raise UsageOrIOError(str(exc)) from None
    except ClientError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--port", type=click.IntRange(1, 65535), default=8443, show_default=True)
@click.option(
    "--force",
    is_flag=True,
    help="Make new keys, certificates and tokens; the old data is moved aside.",
)
@_json_option
def init(directory: Path, port: int, force: bool, as_json: bool) -> None:
    """Write a working demo setup: config, partners, dev CA, tokens, data directory."""
    try:
        config = demo.init(directory, port=port, force=force)
    except demo.DemoExists as exc:
        _emit({"config": str(directory / "gateway.toml"), "kept": True}, as_json, str(exc))
        return
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
    _emit(
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


@main.command()
@_config_option
@click.option("--host", default=None, help="Override [gateway] host.")
@click.option("--port", type=click.IntRange(1, 65535), default=None)
@click.option("--log-level", default="INFO", show_default=True)
def serve(config_path: Path, host: str | None, port: int | None, log_level: str) -> None:
    """Run the gateway (SOAP, REST, delivery workers) until interrupted."""
    config = _load_config(config_path)
    if host or port:
        config = dataclasses.replace(config, host=host or config.host, port=port or config.port)
        try:
            check_config(config)
        except ConfigError as exc:
            raise UsageOrIOError(str(exc)) from None
    logs.configure(log_level.upper())
    try:
        asyncio.run(server.run(config))
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


@main.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--as", "partner", required=True, help="Partner id to submit as (its token).")
@click.option(
    "--fresh",
    is_flag=True,
    help="Send with a new Identificatie (and referentienummer), so a sample can be sent again.",
)
@_config_option
@_url_option
@_json_option
def submit(
    files: tuple[Path, ...], partner: str, fresh: bool, config_path: Path, as_json: bool
) -> None:
    """Submit messages through a running gateway: raw iWmo/iJw (REST) or envelopes (SOAP)."""
    client = _client(config_path, partner)
    results: list[dict[str, Any]] = []
    failed = 0
    for path in files:
        data = path.read_bytes()
        try:
            root = parse_untrusted(data)
        except UnsafeXml as exc:
            results.append({"file": str(path), "error": exc.message})
            failed += 1
            continue
        if envelope.is_envelope(root):
            if fresh:
                data = freshen.fresh_envelope(data)
            response = _call(partial(client.submit_envelope, data, soap.soap_action_for(root)))
            if response.status_code == 200:
                ref = parse_untrusted(data).findtext(f".//{{{envelope.STUF_NS}}}referentienummer")
                results.append({"file": str(path), "result": "Bv03", "referentienummer": ref})
            else:
                fout = _fo03_body(response.content)
                results.append(
                    {
                        "file": str(path),
                        "error": "Fo03",
                        "code": fout.findtext(f"{{{envelope.STUF_NS}}}code")
                        if fout is not None
                        else None,
                        "omschrijving": fout.findtext(f"{{{envelope.STUF_NS}}}omschrijving")
                        if fout is not None
                        else response.text[:200],
                    }
                )
                failed += 1
        else:
            if fresh:
                data = freshen.fresh_payload(data)
            try:
                results.append({"file": str(path), **client.submit_raw(data)})
            except Unreachable as exc:
                raise UsageOrIOError(str(exc)) from None
            except ClientError as exc:
                results.append({"file": str(path), "error": str(exc)})
                failed += 1
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        for r in results:
            if "error" in r:
                code = f" {r['code']}" if r.get("code") else ""
                click.echo(
                    f"REFUSED  {r['file']}: {r['error']}{code} {r.get('omschrijving') or ''}"
                )
            else:
                follow = r.get("id") or r.get("referentienummer")
                click.echo(
                    f"accepted {r['file']}: {follow} "
                    f"→ {', '.join(r.get('destinations', [])) or 'routed'} "
                    f"(ggk status {follow})"
                )
    sys.exit(EXIT_INVALID if failed else EXIT_OK)


def _fo03_body(answer: bytes) -> Any:
    """The StUF body of a Fo03 answer, or None when the answer is not XML (a proxy's page)."""
    try:
        return parse_untrusted(answer).find(f".//{{{envelope.STUF_NS}}}body")
    except UnsafeXml:
        return None


@main.command()
@click.argument("message_id")
@_config_option
@_url_option
@_json_option
def status(message_id: str, config_path: Path, as_json: bool) -> None:
    """Status, deliveries, history and conversation of a message (id or referentienummer)."""
    view = _call(lambda: _client(config_path).status(message_id))
    lines = [
        f"{view['id']}  {view['kind']} {view.get('functie') or ''}  "
        f"{view['zender']} → {view['ontvanger']}  ref {view['referentienummer']}"
    ]
    for d in view["deliveries"]:
        err = f"  ({d['last_error']})" if d.get("last_error") else ""
        lines.append(
            f"  delivery → {d['destination']} [{d['adapter']}]: {d['state']}, "
            f"{d['attempts']} attempt(s){err}"
        )
    for e in view["events"]:
        lines.append(f"  {_when(e['at'])}  {e['event']}  {e['detail']}")
    if len(view["conversation"]) > 1:
        lines.append("  conversation:")
        lines += [
            f"    {c['functie'] or c['kind']} {c['id']} {c.get('retourcodes') or ''}"
            for c in view["conversation"]
        ]
    _emit(view, as_json, "\n".join(lines))


@main.command()
@click.argument("partner")
@click.option(
    "--save",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Fetch the envelopes into this directory and acknowledge them.",
)
@_config_option
@_url_option
@_json_option
def inbox(partner: str, save: Path | None, config_path: Path, as_json: bool) -> None:
    """List (and with --save: fetch and acknowledge) a partner's waiting messages, all of
    them, a page of 1,000 at a time."""
    client = _client(config_path, partner)
    items: list[dict[str, Any]] = []
    with _progress(as_json) as bar:
        task = bar.add_task("saving" if save else "listing", total=None)
        if save is None:
            for page in _pages(client.inbox_pages()):
                items += page
                bar.advance(task, len(page))
        else:
            private_dir(save)
            # acknowledged messages leave the inbox: the first page is always the next one
            while page := _call(lambda: client.inbox(1000))["messages"]:
                for item in page:
                    _save_and_ack(client, save, item)
                    bar.advance(task)
                items += page
    human = (
        "\n".join(
            f"{i['id']}  {i['functie'] or i['kind']}  from {i['zender']}  {_when(i['received_at'])}"
            for i in items
        )
        or "inbox is empty"
    )
    if save is not None:
        human += f"\nsaved and acknowledged {len(items)} message(s) in {save}"
    _emit({"partner": partner, "messages": items}, as_json, human)


def _save_and_ack(client: GatewayClient, folder: Path, item: dict[str, Any]) -> None:
    """Write one inbox message to ``folder`` and only then acknowledge it."""
    name = _inbox_file_name(item)
    data = _call(partial(client.inbox_envelope, item["id"]))
    if not write_new(folder, name, data):
        raise click.ClickException(
            f"{folder / name} exists; not overwritten (message {item['id']} is not "
            "acknowledged and stays in the inbox)"
        )
    _call(partial(client.ack, item["id"]))


def _progress(as_json: bool) -> Progress:
    """A progress line on stderr for long work (not for --json or when not a terminal)."""
    return Progress(disable=as_json or not sys.stderr.isatty(), console=Console(stderr=True))


def _pages(pages: Iterator[list[dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
    """Pages from the gateway, its errors as clear CLI errors."""
    while True:
        page = _call(lambda: next(pages, None))
        if page is None:
            return
        yield page


def _inbox_file_name(item: dict[str, Any]) -> str:
    """``<functie>_<id>.xml`` from checked parts only: the functie is the sender's choice, so
    anything but a known message code (or Di01/Du01/Fo01) becomes ``bericht``."""
    functie = str(item.get("functie") or item.get("kind") or "")
    message = named_message(functie)
    known = message.code if message is not None else functie
    if known not in {m.code for m in MESSAGES.values()} | {"Di01", "Du01", "Fo01"}:
        known = "bericht"
    try:
        return file_name(known, str(item["id"]))
    except UnsafeName:
        raise click.ClickException(
            f"the gateway sent an unusable message id: {item['id']!r}"
        ) from None


@main.group()
def dlq() -> None:
    """Dead-lettered deliveries."""


@dlq.command("list")
@click.option("--partner", default=None)
@_config_option
@_url_option
@_json_option
def dlq_list(partner: str | None, config_path: Path, as_json: bool) -> None:
    """List dead-lettered deliveries (all of them, a page at a time)."""
    letters = _all_dead_letters(_client(config_path), partner, as_json)
    human = "\n".join(
        f"{d['id']}  {d['functie'] or d.get('kind') or '-'}  → {d['destination']}  "
        f"{d['attempts']} attempt(s): {d['last_error'] or '-'}"
        for d in letters
    )
    _emit({"dead_letters": letters}, as_json, human or "no dead letters")


def _all_dead_letters(
    client: GatewayClient, partner: str | None, as_json: bool
) -> list[dict[str, Any]]:
    letters: list[dict[str, Any]] = []
    with _progress(as_json) as bar:
        task = bar.add_task("dead letters", total=None)
        for page in _pages(client.all_dead_letters(partner)):
            letters += page
            bar.advance(task, len(page))
    return letters


@main.command()
@click.argument("message_id", required=False)
@click.option("--dlq", "all_dead", is_flag=True, help="Replay every dead-lettered delivery.")
@click.option(
    "--since",
    type=click.DateTime(),
    default=None,
    help="Replay every delivery of messages received since then.",
)
@click.option("--partner", default=None, help="Only deliveries to this partner.")
@_config_option
@_url_option
@_json_option
def replay(
    message_id: str | None,
    all_dead: bool,
    since: datetime | None,
    partner: str | None,
    config_path: Path,
    as_json: bool,
) -> None:
    """Deliver again: one message, all dead letters (--dlq), or --since T [--partner P]."""
    if sum(bool(x) for x in (message_id, all_dead, since)) != 1:
        raise click.UsageError("give exactly one of MESSAGE_ID, --dlq or --since")
    client = _client(config_path)
    if message_id:
        result = _call(
            lambda: client.replay(message_id=message_id, dead_only=False, partner=partner)
        )
        if not result["replayed"]:
            _emit(result, as_json, f"nothing to replay: no deliveries of {message_id}")
            sys.exit(EXIT_INVALID)
        _emit(result, as_json, f"replayed {result['replayed']} delivery(ies)")
        return
    if since is not None:
        with _progress(as_json) as bar:  # one transaction in the gateway: a spinner, no total
            bar.add_task("replaying", total=None)
            result = _call(
                lambda: client.replay(since=since.timestamp(), dead_only=False, partner=partner)
            )
        _emit(result, as_json, f"replayed {result['replayed']} delivery(ies)")
        return
    dead = _all_dead_letters(client, partner, as_json)
    ids = sorted({d["id"] for d in dead})
    total = 0
    with _progress(as_json) as bar:
        task = bar.add_task("replaying", total=len(ids))
        for mid in ids:
            total += _call(partial(client.replay, message_id=mid, partner=partner))["replayed"]
            bar.advance(task)
    _emit({"replayed": total}, as_json, f"replayed {total} dead-lettered delivery(ies)")


@main.command()
@click.option("--days", type=float, default=None, help="Default: [retour] overdue_days.")
@_config_option
@_url_option
@_json_option
def overdue(days: float | None, config_path: Path, as_json: bool) -> None:
    """Heenberichten still without a retourbericht after N days (OP090)."""
    data = _call(lambda: _client(config_path).overdue(days))
    human = "\n".join(
        f"{o['id']}  {o['functie']}  {o['zender']} → {o['ontvanger']}  "
        f"since {_when(o['received_at'])}"
        for o in data["overdue"]
    )
    _emit(data, as_json, human or f"nothing overdue (> {data['days']:g} days)")


_MONTH_HELP = "A month, YYYY-MM (inclusive)."


@main.command(name="stats")
@click.option("--gemeente", default=None, help="Only this gemeente (operator).")
@click.option("--from", "first", default=None, help=_MONTH_HELP)
@click.option("--to", "last", default=None, help=_MONTH_HELP)
@click.option(
    "--as-partner",
    "partner",
    default=None,
    help="Ask with this gemeente's token (it sees its own figures only).",
)
@click.option("--csv", "as_csv", is_flag=True, help="CSV: gemeente,maand,categorie,maat,waarde.")
@_config_option
@_url_option
@_json_option
def stats_command(
    gemeente: str | None,
    first: str | None,
    last: str | None,
    partner: str | None,
    as_csv: bool,
    config_path: Path,
    as_json: bool,
) -> None:
    """Beleidsinformatie per gemeente, month and product category: toewijzingen, starts,
    stops, verzoeken, unique clients, declared and granted amounts, doorlooptijden. Every
    count is rounded to a multiple of N ([figures] min_cell; docs/figures.md)."""
    if as_csv and as_json:
        raise click.UsageError("give --json or --csv, not both")
    client = _client(config_path, partner)
    query = {"gemeente": gemeente, "from": first, "to": last}
    if as_csv:
        click.echo(_call(lambda: client.figures_csv(**query)), nl=False)
        return
    data = _call(lambda: client.figures(**query))
    _emit(data, as_json, _figures_table(data))


def _figures_table(data: dict[str, Any]) -> str:
    """The figures for a terminal: one block per gemeente-month, categories as lines."""
    if not data["rows"]:
        return "no figures yet (no toewijzing, start, stop, verzoek or declaratie in range)"
    columns = ("verzoeken", "toewijzingen", "starts", "stops", "clienten")
    head = f"{'categorie':<10}" + "".join(f"{c:>13}" for c in columns)
    head += f"{'gedeclareerd':>15}{'toegekend':>15}"
    base = data["method"]["base"]
    lines = [
        f"(counts rounded to a multiple of {base}: {base} stands for 1 to "
        f"{disclosure.band(base, base)[1]}, {2 * base} for {disclosure.band(2 * base, base)[0]} "
        f"to {disclosure.band(2 * base, base)[1]}; a total is the sum of its rounded figures, "
        "clienten's the distinct clients rounded; x: an amount not shown)"
    ]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in data["rows"]:
        groups.setdefault((row["gemeente"], row["month"]), []).append(row)
    for total in data["totals"]:
        lines += ["", f"gemeente {total['gemeente']}, {total['month']}", head]
        rows = groups.get((total["gemeente"], total["month"]), [])
        lines += [_figures_line(row, columns) for row in [*rows, total]]
    for d in data["doorlooptijden"]:
        shown = (
            f"median {d['median_days']} d, p90 {d['p90_days']} d over {d['n']}"
            if d["median_days"] is not None
            else f"{d['n']} cases: not shown"
        )
        lines.append(f"doorlooptijd {d['doorlooptijd']}  {d['gemeente']} {d['month']}: {shown}")
    return "\n".join(lines)


def _figures_line(row: dict[str, Any], columns: tuple[str, ...]) -> str:
    def euro(value: object) -> str:
        return f"{value / 100:,.2f}" if isinstance(value, int) else str(value)

    return (
        f"{row['categorie']:<10}"
        + "".join(f"{row[c]!s:>13}" for c in columns)
        + f"{euro(row['gedeclareerd_eurocent']):>15}{euro(row['toegekend_eurocent']):>15}"
    )


@main.group()
def routes() -> None:
    """The route table."""


@routes.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_config_option
@_json_option
def routes_check(file: Path, config_path: Path, as_json: bool) -> None:
    """Show where a message (raw or envelope) would go, without sending anything."""
    config = _load_config(config_path)
    partners = PartnerRegistry.load(config.partners_file)
    table = RouteTable.from_config(config.routes) if config.routes else RouteTable.default()
    validator = Validator(SchemaRegistry(list(config.schema_dirs)))
    data = file.read_bytes()
    report = validator.validate(data, str(file))
    try:
        root = parse_untrusted(data)
    except UnsafeXml as exc:
        raise UsageOrIOError(f"{file}: {exc.message}") from None
    if envelope.is_envelope(root):
        parsed = envelope.parse(root)
        sender, receiver, functie = (
            parsed.zender.organisatie,
            parsed.ontvanger.organisatie,
            parsed.functie or parsed.kind.value,
        )
    elif report.message is not None:
        found = parties(root, report.message)
        sender, receiver = (found.sender, found.receiver) if found else ("", "")
        functie = report.message.code
    else:
        raise UsageOrIOError(f"{file}: not an iWmo/iJw message or envelope")
    partner = partners.get(sender or "")
    if partner is None:
        raise click.ClickException(f"sender {sender} is not a known partner (IB213)")
    outcome = table.route(
        RoutedMessage(
            functie,
            report.message.standard.value if report.message else None,
            partner.id,
            partner.kind,
            receiver or "",
        )
    )
    if isinstance(outcome, Refusal):
        _emit(
            {"refused": outcome.code, "reason": outcome.reason},
            as_json,
            f"REFUSED {outcome.code}: {outcome.reason}",
        )
        sys.exit(EXIT_INVALID)
    rows = []
    for d in outcome:
        target = partners.get(d.partner)
        rows.append(
            {
                "partner": d.partner,
                "copy": d.copy,
                "rule": d.rule,
                "adapter": target.delivery.adapter if target else None,
                "known": target is not None,
            }
        )
    human = "\n".join(
        f"→ {r['partner']} via {r['adapter']}{' (copy)' if r['copy'] else ''}  [{r['rule']}]"
        for r in rows
    )
    if not report.valid:
        human += f"\n(note: the message itself is invalid: {report.errors[0].rule})"
    _emit(
        {"functie": functie, "sender": sender, "destinations": rows, "valid": report.valid},
        as_json,
        human,
    )


def _keyring(config: GatewayConfig) -> Keyring:
    try:
        return Keyring.load(config.keyring)
    except KeyringError as exc:
        raise UsageOrIOError(str(exc)) from None


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


def _audit_admin_act(config: GatewayConfig, keyring: Keyring, action: str, outcome: str) -> None:
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
        sqlite_audit.append(db, keyring, event, time.time())
        db.execute("COMMIT")
    finally:
        db.close()


@main.group()
def keys() -> None:
    """The keyring of the audit log and the payload store."""


@keys.command("rotate")
@click.option(
    "--reencrypt",
    is_flag=True,
    help="Also re-encrypt stored payloads with the new key (gateway stopped).",
)
@_config_option
@_json_option
def keys_rotate(reencrypt: bool, config_path: Path, as_json: bool) -> None:
    """Add a new data key and make it active; older records stay readable.

    A running gateway keeps encrypting with the key it loaded until it is restarted.
    --reencrypt needs the gateway stopped; audit records keep their key (the hash chain
    covers their ciphertext).
    """
    config = _load_config(config_path)
    if config.keyring is None:
        raise UsageOrIOError("the keyring comes from $GGK_KEYRING; rotate it where it is kept")
    if reencrypt and config.broker == "kafka":
        raise click.UsageError(
            "--reencrypt is for the embedded backend: on Kafka the payloads stay sealed in the "
            "cluster's topics under the key they were written with (docs/kafka.md)"
        )
    ring = _keyring(config)
    old = ring.active
    new = ring.rotate()
    ring.save(config.keyring)  # first: payloads may only move to a key that is on disk
    count = 0
    if reencrypt and config.database.exists():
        try:
            count = reencrypt_payloads(config.database, ring)
        except (StorageError, KeyringError) as exc:
            raise UsageOrIOError(
                f"key rotated to {new}, payloads not re-encrypted: {exc}"
            ) from None
    if config.database.exists():
        done = f", {count} payloads re-encrypted" if reencrypt else ""
        _audit_admin_act(config, ring, "key_rotated", f"{old} -> {new}{done}")
    _emit(
        {"previous": old, "active": new, "reencrypted": count},
        as_json,
        f"active data key is now {new} (was {old})"
        + (
            f"; {count} stored payloads re-encrypted"
            if reencrypt
            else "; restart the gateway to use it"
        ),
    )


@main.group(name="audit")
def audit_group() -> None:
    """The encrypted, tamper-evident audit log."""


@audit_group.command("verify")
@click.option(
    "--checkpoints",
    "checkpoint_file",
    type=click.Path(exists=True, path_type=Path),
    help="Checkpoints exported earlier (ggk audit checkpoint --export).",
)
@_config_option
@_json_option
def audit_verify(checkpoint_file: Path | None, config_path: Path, as_json: bool) -> None:
    """Check the whole chain and every signed checkpoint; name the first bad record.

    On the Kafka backend: every partition's chain, recomputed from the cluster, against every
    checkpoint on the ledger (the whole cluster, from any process's configuration)."""
    config = _load_config(config_path)
    ring = _keyring(config)
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
        with _progress(as_json) as bar:
            task = bar.add_task("verifying", total=total)
            verdict = sqlite_audit.verify(
                db, ring, external, progress=lambda done: bar.update(task, completed=done)
            )
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
    _emit(data, as_json, human)
    sys.exit(EXIT_OK if verdict.ok else EXIT_INVALID)


def _verify_cluster(
    config: GatewayConfig,
    ring: Keyring,
    as_json: bool,
    exported: list[kafka_ledger.Checkpoint],
) -> None:
    assert config.kafka is not None  # config.check
    settings = _kafka_settings(config)
    with _progress(as_json) as bar:
        task = bar.add_task("verifying the cluster's chains", total=None)
        verdict = _on_cluster(
            config,
            kafka_ledger.verify_cluster(
                settings,
                config.kafka.prefix,
                ring,
                progress=lambda done: bar.update(task, completed=done),
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
    _emit(data, as_json, human)
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
@_config_option
@_json_option
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
    config = _load_config(config_path)
    if config.broker == "kafka":
        assert config.kafka is not None
        criteria = {"message": message, "bsn": bsn, "partner": partner}
        rows = _on_cluster(
            config,
            kafka_audit.search(
                _kafka_settings(config),
                config.kafka.prefix,
                _keyring(config),
                limit=limit,
                since=since.timestamp() if since else None,
                **criteria,
            ),
        )
        _emit(rows, as_json, _audit_lines(rows) or "no matching audit records")
        return
    ring = _keyring(config) if bsn else None
    db = _audit_db(config)
    try:
        rows = sqlite_audit.search(
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
    _emit(rows, as_json, _audit_lines(rows) or "no matching audit records")


def _audit_lines(rows: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{r['seq']:>7}  {_when(r['at'])}  {r['action']:<18} {r['functie']:<7} "
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
@_config_option
def audit_export(decrypt: bool, out: Path | None, force: bool, config_path: Path) -> None:
    """Every audit record as JSON lines, sensitive fields decrypted (on the Kafka backend:
    the whole cluster's, read from its topics)."""
    config = _load_config(config_path)
    ring = _keyring(config)
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
                for record in sqlite_audit.export(db, ring):
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
    _audit_admin_act(config, ring, "audit_exported", f"{count} records decrypted")
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
    _emit(
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
@_config_option
@_json_option
def audit_checkpoint(export_to: Path | None, config_path: Path, as_json: bool) -> None:
    """Sign the current head of the chain now, and optionally export it.

    On the Kafka backend the chains' owners sign them (every checkpoint_seconds and at a
    clean stop); this shows, and exports, the newest signed head of every chain."""
    config = _load_config(config_path)
    ring = _keyring(config)
    if config.broker == "kafka":
        _cluster_checkpoints(config, ring, export_to, as_json)
        return
    db = _audit_db(config, write=True)
    try:
        db.execute("BEGIN IMMEDIATE")
        made = sqlite_audit.checkpoint(db, ring, time.time())
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
    _emit(
        made,
        as_json,
        f"checkpoint at record {made['seq']} ({made['hash'][:16]}…)"
        + (f", appended to {export_to}" if export_to else ""),
    )


@main.group()
def cpa() -> None:
    """Digikoppeling ebMS2 CPAs: import, list and show the agreements of the gateway's links."""


def _cpa_store(config_path: Path) -> CpaStore:
    config = _load_config(config_path)
    if config.ebms is None:
        raise UsageOrIOError(f"{config.path}: no [ebms] table (oin, cpa_dir): ebMS2 is off")
    try:
        partners = PartnerRegistry.load(config.partners_file)
        return CpaStore(config.ebms, partners)
    except (RegistryError, CpaError) as exc:
        raise UsageOrIOError(str(exc)) from None


def _cpa_refused(exc: CpaError, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"imported": False, "problems": exc.problems}, indent=2))
    else:
        click.echo("CPA refused:", err=True)
        for problem in exc.problems:
            click.echo(f"  - {problem}", err=True)
    sys.exit(EXIT_INVALID)


@cpa.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="Renew an imported CPA of the same cpaid.")
@_config_option
@_json_option
def cpa_import(file: Path, replace: bool, config_path: Path, as_json: bool) -> None:
    """Check a CPA (OASIS schema, Digikoppeling profile, parties) and import it."""
    store = _cpa_store(config_path)
    try:
        link = store.add(file.read_bytes(), replace=replace)
    except CpaError as exc:
        _cpa_refused(exc, as_json)
        return
    data = {"imported": True, "schema_validated": store.validates_schema, **describe(link)}
    human = (
        f"imported {link.cpa.cpaid}: {link.ours.role} (us) <-> {link.theirs.role} "
        f"{link.partner.id} ({link.theirs.oin}); profiles "
        + ", ".join(sorted(p.value for p in link.cpa.profiles))
        + (
            ""
            if store.validates_schema
            else "; not checked against the OASIS schema ([ebms] schema_dir is not set)"
        )
    )
    _emit(data, as_json, human)


@cpa.command("list")
@_config_option
@_json_option
def cpa_list(config_path: Path, as_json: bool) -> None:
    """The imported CPAs; one that no longer checks (ended, partner gone) is named with why."""
    store = _cpa_store(config_path)
    links = store.load()
    rows = [describe(link) for link in links.values()]
    if as_json:
        click.echo(json.dumps({"cpas": rows, "unusable": store.problems}, indent=2))
        return
    for row in rows:
        click.echo(
            f"{row['cpaid']}  {row['partner']}  {', '.join(row['profiles'])}  "  # type: ignore[arg-type]
            f"until {row['end']}"
        )
    for cpaid, problems in store.problems.items():
        click.echo(f"{cpaid}  UNUSABLE: {'; '.join(problems)}")
    unusable = f", {len(store.problems)} unusable" if store.problems else ""
    click.echo(f"{len(rows)} CPAs{unusable}")


@cpa.command("show")
@click.argument("cpaid")
@_config_option
@_json_option
def cpa_show(cpaid: str, config_path: Path, as_json: bool) -> None:
    """One CPA: parties, and per action the profile, retries and endpoint."""
    store = _cpa_store(config_path)
    try:
        link = store.get(cpaid)
    except CpaError as exc:
        _cpa_refused(exc, as_json)
        return
    if link is None:
        raise click.ClickException(f"no imported CPA {cpaid[:80]!r} (ggk cpa list)")
    data = describe(link)
    lines = [
        f"{link.cpa.cpaid}: {link.cpa.start.isoformat()} .. {link.cpa.end.isoformat()}",
        f"  us:   {link.ours.name} {link.ours.oin} role {link.ours.role}",
        f"  them: {link.theirs.name} {link.theirs.oin} role {link.theirs.role} "
        f"= partner {link.partner.id}",
    ]
    for label, key in (("we send", "we_send"), ("we receive", "we_receive")):
        for a in data[key]:  # type: ignore[attr-defined]
            lines.append(
                f"  {label}: {a['service']} {a['action']} [{a['profile']}, "
                f"sync={a['sync_reply_mode']}, retries={a['retries']}] -> {a['endpoint']}"
            )
    _emit(data, as_json, "\n".join(lines))


@main.group()
def kafka() -> None:
    """The Apache Kafka backend (for gateways that outgrow one machine)."""


@kafka.command("init")
@click.option(
    "--bootstrap",
    required=True,
    envvar="GGK_KAFKA_BOOTSTRAP",
    help="Bootstrap servers, e.g. 127.0.0.1:9092.",
)
@click.option("--prefix", default="ggk", show_default=True)
@click.option("--partitions", type=click.IntRange(1), default=12, show_default=True)
@click.option(
    "--replication",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Use 1 for a single-broker development cluster.",
)
@_json_option
def kafka_init(
    bootstrap: str, prefix: str, partitions: int, replication: int, as_json: bool
) -> None:
    """Create the backend's topics (idempotent: existing topics are left as they are)."""
    topics = kafka_topics.plan(prefix, partitions=partitions, replication=replication)
    try:
        created, existing = asyncio.run(kafka_topics.create(bootstrap, topics))
    except KafkaError as exc:
        raise UsageOrIOError(f"kafka at {bootstrap}: {exc}") from None
    _emit(
        {"created": created, "existing": existing},
        as_json,
        "\n".join(
            [f"created  {name}" for name in created] + [f"exists   {name}" for name in existing]
        ),
    )


@main.group()
def certs() -> None:
    """Certificates of the development CA written by ggk init."""


@certs.command("revoke")
@click.argument("partner")
@_config_option
@_json_option
def certs_revoke(partner: str, config_path: Path, as_json: bool) -> None:
    """Revoke a partner's development client certificate (add it to pki/crl.pem).

    The gateway reads the CRL at start: restart it to refuse the certificate.
    """
    config = _load_config(config_path)
    pki = config.path.parent / "pki"
    cert = pki / f"client-{partner}.crt"
    if not cert.is_file() or not (pki / "ca.key").is_file():
        raise UsageOrIOError(f"no development certificate for {partner} in {pki}")
    ca = DevCA.load(pki)
    if ca.is_revoked(cert):
        _emit(
            {"partner": partner, "certificate": str(cert), "revoked": True, "changed": False},
            as_json,
            f"{cert.name} was revoked already; nothing changed",
        )
        return
    crl = ca.revoke(cert)
    _emit(
        {"partner": partner, "certificate": str(cert), "revoked": True, "changed": True},
        as_json,
        f"revoked {cert.name}; {crl} updated; restart the gateway to apply",
    )


def _when(timestamp: float | str) -> str:
    """Local time of an epoch number (audit records) or an RFC 3339 string (REST answers)."""
    if isinstance(timestamp, str):
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone()
    else:
        moment = datetime.fromtimestamp(timestamp)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


if __name__ == "__main__":
    main()
