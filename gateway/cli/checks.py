"""Commands that need no running gateway: ``validate`` messages and envelopes, list the
``schemas`` and the ``rules`` catalogue, and ``routes check`` where a message would go.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import click

from gateway import codelists, envelope
from gateway.cli.common import (
    EXIT_INVALID,
    EXIT_OK,
    UsageOrIOError,
    config_option,
    emit,
    json_option,
    read_config,
)
from gateway.identify import parties
from gateway.report import ValidationReport
from gateway.rules import catalogue as rule_catalogue
from gateway.rules import render as render_rules
from gateway.schemas import SchemaError, SchemaRegistry
from gateway.standards import MESSAGES, parse_namespace
from gateway.validation import Validator
from gateway.xmlsafe import DEFAULT_MAX_BYTES, ParseLimits, UnsafeXml, parse_untrusted
from routing.partners import PartnerRegistry
from routing.table import Refusal, RoutedMessage, RouteTable


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


@click.command()
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
@click.option(
    "--codelists",
    "codelists_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Drop-in code lists over the bundled ones (TR378, TR381), as [codelists] directory.",
)
def validate(
    paths: tuple[str, ...],
    as_json: bool,
    schema_dirs: tuple[Path, ...],
    max_size: int,
    today: datetime | None,
    quiet: bool,
    codelists_dir: Path | None,
) -> None:
    """Validate iWmo/iJw messages, StUF-GGk envelopes or SOAP requests.

    PATHS are files, directories (searched for *.xml) or - for standard input.
    """
    if codelists_dir is not None:
        try:
            codelists.configure(codelists_dir)
        except codelists.CodeListError as exc:
            raise UsageOrIOError(str(exc)) from None
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


@click.group()
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
        info = parse_namespace(ns)
        message = info.message if info else None
        # every XsdVersie of a namespace: an onderhoudsrelease (3.2.1) sits beside 3.2.0
        for described in registry.versions(ns):
            if compile_all:
                try:
                    registry.get(ns, described.bericht_xsd_versie)
                except SchemaError as exc:
                    raise UsageOrIOError(str(exc)) from None
            rows.append(
                {
                    "namespace": ns,
                    "message": message.code if message else None,
                    "release": info.release if info else None,
                    "file": str(described.path),
                    "bericht_xsd_versie": described.bericht_xsd_versie,
                    "bericht_xsd_min": described.bericht_xsd_min,
                    "bericht_xsd_max": described.bericht_xsd_max,
                    "rules": bool(info and rule_catalogue.has_rules(info.standard, info.release)),
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
        versie = row.get("bericht_xsd_versie") or "-"
        note = "" if row.get("rules", True) else "  (no rules known: XSD + independent rules)"
        click.echo(
            f"{row['message'] or '-':8} {row['release'] or '-':5} {versie:7} {row['namespace']}"
            f"  {row['file']}{note}"
        )
    click.echo(f"{len(rows)} message schemas, {len(envelopes)} envelope schemas")


@click.group()
def rules() -> None:
    """The iWmo/iJw rule catalogue per release and how the gateway checks each rule."""


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
@click.option(
    "--release",
    metavar="RELEASE",
    help="Only the rules a message of this release gets, e.g. 3.2 (a release without rules "
    "gets the release-independent ones only).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def rules_list(
    message_code: str | None, status: str | None, release: str | None, as_json: bool
) -> None:
    """List the rules: id, control level, retourcode, status, release, messages, summary."""
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
    if release is not None:
        known = {e.release for e in rule_catalogue.catalogue().values()}
        if release not in known:
            click.echo(
                f"no rules known for release {release} (known: "
                f"{', '.join(rule_catalogue.known_releases())}): its messages get their XSD "
                "and the release-independent rules only",
                err=True,
            )
        entries = [e for e in entries if e.independent or e.release == release]
    if as_json:
        click.echo(json.dumps([e.as_dict() for e in entries], indent=2, ensure_ascii=False))
        return
    for entry in entries:
        click.echo(render_rules.line(entry))
    click.echo(f"{len(entries)} rules")


@click.group()
def routes() -> None:
    """The route table."""


@routes.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@config_option
@json_option
def routes_check(file: Path, config_path: Path, as_json: bool) -> None:
    """Show where a message (raw or envelope) would go, without sending anything."""
    config = read_config(config_path)
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
        emit(
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
    emit(
        {"functie": functie, "sender": sender, "destinations": rows, "valid": report.valid},
        as_json,
        human,
    )
