"""The ``ggk`` command line: operators' and integrators' entry point.

Exit codes everywhere: 0 success (all valid), 1 the input was processed and something in it is
invalid, 2 usage or I/O error (bad option, unreadable file, broken schema bundle).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import click

from gateway.report import ValidationReport
from gateway.schemas import SchemaError, SchemaRegistry
from gateway.standards import parse_namespace
from gateway.validation import Validator
from gateway.xmlsafe import DEFAULT_MAX_BYTES, ParseLimits

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


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
    """List the message schemas found, by namespace."""
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
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(
            f"{row['message'] or '?':8} {row['release'] or '?':5} {row['namespace']}  {row['file']}"
        )
    click.echo(f"{len(rows)} message schemas")


if __name__ == "__main__":
    main()
