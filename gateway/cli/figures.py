"""``ggk stats``: the beleidsinformatie per gemeente and month, as a table, JSON or CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gateway import disclosure, parameters
from gateway.cli.common import call, config_option, emit, gateway_client, json_option, url_option

_MONTH_HELP = "A month, YYYY-MM (inclusive)."


def _month(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A YYYY-MM month checked before the gateway is asked (a usage error exits 2)."""
    if value is not None and not parameters.MONTH.fits(value):
        raise click.BadParameter(f"{value!r} is not {parameters.MONTH.says} (e.g. 2026-03)")
    return value


@click.command(name="stats")
@click.option("--gemeente", default=None, help="Only this gemeente (operator).")
@click.option("--from", "first", default=None, help=_MONTH_HELP, callback=_month)
@click.option("--to", "last", default=None, help=_MONTH_HELP, callback=_month)
@click.option(
    "--as-partner",
    "partner",
    default=None,
    help="Ask with this gemeente's token (it sees its own figures only).",
)
@click.option("--csv", "as_csv", is_flag=True, help="CSV: gemeente,maand,categorie,maat,waarde.")
@config_option
@url_option
@json_option
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
    if first is not None and last is not None and first > last:
        raise click.UsageError(f"--from {first} is after --to {last}: give the earlier month first")
    client = gateway_client(config_path, partner)
    query = {"gemeente": gemeente, "from": first, "to": last}
    if as_csv:
        click.echo(call(lambda: client.figures_csv(**query)), nl=False)
        return
    data = call(lambda: client.figures(**query))
    emit(data, as_json, _figures_table(data))


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
