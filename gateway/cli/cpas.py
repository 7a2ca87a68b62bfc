"""``ggk cpa``: import, list and show the Digikoppeling ebMS2 CPAs."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from gateway.cli.common import (
    EXIT_INVALID,
    UsageOrIOError,
    config_option,
    emit,
    json_option,
    read_config,
)
from gateway.ebms.cpa import CpaError
from gateway.ebms.cpastore import CpaStore, describe
from gateway.ebms.lifecycle import WARN_BEFORE, days_left
from routing.partners import PartnerRegistry, RegistryError


@click.group()
def cpa() -> None:
    """Digikoppeling ebMS2 CPAs: import, list and show the agreements of the gateway's links."""


def _cpa_store(config_path: Path) -> CpaStore:
    config = read_config(config_path)
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
@config_option
@json_option
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
    emit(data, as_json, human)


@cpa.command("list")
@config_option
@json_option
def cpa_list(config_path: Path, as_json: bool) -> None:
    """The imported CPAs; one that no longer checks (ended, partner gone) is named with why."""
    store = _cpa_store(config_path)
    links = store.load()
    now = datetime.now(UTC)
    rows = [{**describe(link), "days_left": days_left(link.cpa, now)} for link in links.values()]
    if as_json:
        click.echo(json.dumps({"cpas": rows, "unusable": store.problems}, indent=2))
        return
    for row, link in zip(rows, links.values(), strict=True):
        click.echo(
            f"{row['cpaid']}  {row['partner']}  {', '.join(row['profiles'])}  "  # type: ignore[arg-type]
            f"until {row['end']}  ({_left(link.cpa.end - now)})"
        )
    for cpaid, problems in store.problems.items():
        click.echo(f"{cpaid}  UNUSABLE: {'; '.join(problems)}")
    unusable = f", {len(store.problems)} unusable" if store.problems else ""
    click.echo(f"{len(rows)} CPAs{unusable}")


def _left(left: timedelta) -> str:
    """The time a CPA has left, as an operator reads it; flagged within 30 days."""
    days = int(left.total_seconds() // 86400)
    if left.total_seconds() <= 0:
        return "ENDED"
    text = f"{days} day{'s' if days != 1 else ''} left"
    return f"{text}, RENEW" if left <= WARN_BEFORE else text


@cpa.command("show")
@click.argument("cpaid")
@config_option
@json_option
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
    emit(data, as_json, "\n".join(lines))
