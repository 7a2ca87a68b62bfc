"""Beleidsinformatie: the published figures, every count rounded to a base.

The facts (:mod:`gateway.figures`) are counted per gemeente, month and product category;
nothing leaves this module but counts, sums and durations, and of those only what cannot
point at a person. How a true count becomes a published one, and why no combination of
published figures narrows it below ``[figures] min_cell`` possible values, is
:mod:`gateway.disclosure` (and docs/figures.md). Here:

- every count (cells, totals, a doorlooptijd's cases) is rounded by that method;
- an amount is shown only when at least the threshold of clients declared in its cell and
  the cell's rounded clienten say so already; a total amount only when all its cells are
  shown (``x`` otherwise);
- a doorlooptijd (median, p90) is shown only when measured over enough cases.

Totals are only ever over categories within one gemeente-month, each gemeente-month is
published from its own facts alone, and a gemeente sees only its own rows.
"""

from __future__ import annotations

import csv
import io
import re
import statistics
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from gateway import disclosure

DEFAULT_THRESHOLD = 5
TOTAL = "totaal"

COUNTS = ("verzoeken", "toewijzingen", "starts", "stops", "clienten")
"""Counted measures of a cell; ``clienten`` is distinct clients over every kind of fact."""
AMOUNTS = ("gedeclareerd_eurocent", "toegekend_eurocent")
"""Summed measures; shown when enough clients of the cell declared (:func:`publish`)."""
MEASURES = COUNTS + AMOUNTS

DURATIONS = {
    "verzoek_toewijzing": ("verzoek", "toewijzing"),
    "toewijzing_start": ("toewijzing", "start"),
    "declaratie_antwoord": ("declaratie", "antwoord"),
}
"""Doorlooptijd name → (kind of the earlier fact, kind of the later one that follows it)."""

MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
"""A month as the figures name it, ``YYYY-MM`` (matched whole: ``MONTH.fullmatch``)."""

Value = int | str
"""A published figure: a rounded count or an amount, or ``x`` for an amount not shown."""


@dataclass(frozen=True, slots=True)
class Scope:
    """Which figures are asked for: one gemeente (None: all) and a range of months."""

    gemeente: str | None = None
    first: str | None = None
    """``YYYY-MM``, inclusive."""
    last: str | None = None


@dataclass(slots=True)
class Cell:
    """Raw (unsuppressed) figures of one gemeente, month and category."""

    gemeente: str
    month: str
    categorie: str
    counts: dict[str, int] = field(default_factory=dict)
    amounts: dict[str, int] = field(default_factory=dict)
    declaring_clients: int = 0


@dataclass(frozen=True, slots=True)
class Duration:
    gemeente: str
    month: str
    """The month the later fact arrived."""
    name: str
    days: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class RawFigures:
    """What the store counted; :func:`publish` decides what may be shown."""

    cells: tuple[Cell, ...]
    month_clients: dict[tuple[str, str], int]
    """Distinct clients per (gemeente, month) over all categories (not a sum of cells)."""
    month_declaring: dict[tuple[str, str], int]
    """Distinct declaring clients per (gemeente, month); not published (an amount's total is
    shown only when all its cells are, each on its own declaring clients)."""
    durations: tuple[Duration, ...]


def in_scope(scope: Scope, gemeente: str, month: str) -> bool:
    return (
        (scope.gemeente is None or gemeente == scope.gemeente)
        and (not scope.first or month >= scope.first)
        and (not scope.last or month <= scope.last)
    )


# --- publishing (pure) ---------------------------------------------------------------------


HIDDEN = "x"
"""An amount that is not shown (CBS: "x", confidential): too few declaring clients behind it,
or, for a total, one of its cells hidden."""


def publish(raw: RawFigures, threshold: int = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """The figures as they may be shown: cells, totals per gemeente-month, doorlooptijden.

    Every count is rounded to the base ``threshold`` by :mod:`gateway.disclosure`, which
    holds the method and its guarantee; this function only applies it. Each gemeente-month
    is published from its own facts alone, whichever range of months was asked, so asking
    overlapping ranges returns the same numbers for the months they share."""
    if threshold < 1:
        raise ValueError("the threshold is at least 1")
    groups: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for cell in raw.cells:
        groups[cell.gemeente, cell.month].append(cell)
    rows: list[dict[str, Any]] = []
    totals: list[dict[str, Any]] = []
    for (gemeente, month), cells in sorted(groups.items()):
        shown, total = _month(cells, raw.month_clients.get((gemeente, month), 0), threshold)
        for categorie in sorted(shown):
            rows.append(
                {"gemeente": gemeente, "month": month, "categorie": categorie} | shown[categorie]
            )
        totals.append({"gemeente": gemeente, "month": month, "categorie": TOTAL} | total)
    return {
        "threshold": threshold,
        "method": {"name": disclosure.METHOD, "base": threshold},
        "rows": rows,
        "totals": totals,
        "doorlooptijden": [_duration(d, threshold) for d in raw.durations],
    }


def _month(
    cells: list[Cell], month_clients: int, base: int
) -> tuple[dict[str, dict[str, Value]], dict[str, Value]]:
    """One gemeente-month's category figures and its totals."""
    shown: dict[str, dict[str, Value]] = {c.categorie: {} for c in cells}
    total: dict[str, Value] = {}
    for name in COUNTS:
        for c in cells:
            shown[c.categorie][name] = disclosure.round_count(c.counts[name], base)
        published = [int(shown[c.categorie][name]) for c in cells]
        total[name] = (
            disclosure.distinct_total(month_clients, published, base)
            if name == "clienten"  # distinct clients do not add up
            else disclosure.sum_total(published)
        )
    for name in AMOUNTS:
        for c in cells:
            shown[c.categorie][name] = (
                c.amounts[name]
                if _amounts_shown(c, int(shown[c.categorie]["clienten"]), base)
                else HIDDEN
            )
        values = [shown[c.categorie][name] for c in cells]
        total[name] = HIDDEN if HIDDEN in values else sum(int(v) for v in values)
    return shown, total


def _amounts_shown(cell: Cell, clienten: int, base: int) -> bool:
    """Whether a cell's amounts may be shown: nobody declared and there is nothing to show,
    or at least ``base`` clients declared and the cell's published clienten say as much
    already (declaring clients are among its clients: the rule must not narrow that band)."""
    if cell.declaring_clients == 0 and not any(cell.amounts.values()):
        return True
    return cell.declaring_clients >= base and disclosure.band_at_least(clienten, base)


def _duration(duration: Duration, base: int) -> dict[str, Any]:
    """A doorlooptijd: its number of cases rounded like any count, its median and p90 only
    when that rounded number says there are enough cases behind them."""
    n = disclosure.round_count(len(duration.days), base)
    enough = len(duration.days) >= base and disclosure.band_at_least(n, base)
    return {
        "gemeente": duration.gemeente,
        "month": duration.month,
        "doorlooptijd": duration.name,
        "n": n,
        "median_days": round(statistics.median(duration.days), 1) if enough else None,
        "p90_days": round(_p90(duration.days), 1) if enough else None,
    }


def _p90(days: tuple[float, ...]) -> float:
    """The nearest-rank 90th percentile (a value that occurred, not an interpolation)."""
    ordered = sorted(days)
    return ordered[max(0, -(-len(ordered) * 9 // 10) - 1)]


def long_rows(published: dict[str, Any]) -> Iterator[tuple[str, str, str, str, Value]]:
    """The figures as tidy rows (gemeente, maand, categorie, maat, waarde): the CSV."""
    for row in cells_and_totals(published):
        for name in MEASURES:
            yield row["gemeente"], row["month"], row["categorie"], name, row[name]
    for d in published["doorlooptijden"]:
        base = f"doorlooptijd_{d['doorlooptijd']}"
        yield d["gemeente"], d["month"], TOTAL, f"{base}_n", d["n"]
        for stat in ("median_days", "p90_days"):
            value = d[stat]
            yield (
                d["gemeente"],
                d["month"],
                TOTAL,
                f"{base}_{stat}",
                value if value is not None else HIDDEN,
            )


def to_csv(published: dict[str, Any]) -> str:
    """The published figures as CSV (one figure per line: long format, for spreadsheets and
    statistics tools alike)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("gemeente", "maand", "categorie", "maat", "waarde"))
    writer.writerows(long_rows(published))
    return out.getvalue()


def cells_and_totals(published: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Each gemeente-month's category rows, then its total."""
    rows: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in published["rows"]:
        rows[row["gemeente"], row["month"]].append(row)
    for total in published["totals"]:
        yield from rows[total["gemeente"], total["month"]]
        yield total
