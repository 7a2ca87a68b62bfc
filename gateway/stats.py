"""Beleidsinformatie: the published figures, with small cells suppressed.

The facts (:mod:`gateway.figures`) are counted per gemeente, month and product category;
nothing leaves this module but counts, sums and durations, and of those only what cannot
point at a person:

- a count below the threshold (default 5) is shown as ``"<5"`` (zero stays 0: nobody is in
  it); a cell hidden for another's sake (below) as ``"x"``;
- an amount is shown only when the clients behind it reach the threshold;
- **secondary suppression**: every gemeente-month has totals over its categories, so one
  suppressed cell could be recovered as total minus the others. When a group has exactly
  one suppressed cell, the next smallest cell is suppressed too; when there is none to
  take (the others are zero), the total is. A total below the threshold is suppressed;
- a doorlooptijd (median, p90) is shown only when it is measured over enough cases.

Totals are only ever over categories within one gemeente-month, and a gemeente sees only
its own rows: no other sum is published, so no difference of published figures isolates a
suppressed cell.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
import statistics
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

DEFAULT_THRESHOLD = 5
TOTAL = "totaal"

COUNTS = ("verzoeken", "toewijzingen", "starts", "stops", "clienten")
"""Counted measures of a cell; ``clienten`` is distinct clients over every kind of fact."""
AMOUNTS = ("gedeclareerd_eurocent", "toegekend_eurocent")
"""Summed measures; shown when the declaring clients of the cell reach the threshold."""
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
"""A published figure: a number, or the suppression mark (``"<5"``)."""


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
    durations: tuple[Duration, ...]


# --- counting (runs on the store's read connection) -----------------------------------------


def _where(scope: Scope, alias: str = "") -> tuple[str, list[str]]:
    prefix = f"{alias}." if alias else ""
    clauses, params = ["1 = 1"], []
    if scope.gemeente is not None:
        clauses.append(f"{prefix}gemeente = ?")
        params.append(scope.gemeente)
    if scope.first:
        clauses.append(f"{prefix}month >= ?")
        params.append(scope.first)
    if scope.last:
        clauses.append(f"{prefix}month <= ?")
        params.append(scope.last)
    return " AND ".join(clauses), params


_CELLS = """
SELECT gemeente, month, categorie,
  COUNT(DISTINCT CASE WHEN kind = 'verzoek' THEN key END) AS verzoeken,
  COUNT(DISTINCT CASE WHEN kind = 'toewijzing' THEN key END) AS toewijzingen,
  COUNT(DISTINCT CASE WHEN kind = 'start' THEN key END) AS starts,
  COUNT(DISTINCT CASE WHEN kind = 'stop' THEN key END) AS stops,
  COUNT(DISTINCT CASE WHEN kind != 'afgewezen' THEN client END) AS clienten,
  COUNT(DISTINCT CASE WHEN kind = 'declaratie' THEN client END) AS declaring,
  COALESCE(SUM(CASE WHEN kind = 'declaratie' THEN amount END), 0) AS gedeclareerd,
  COALESCE(SUM(CASE WHEN kind = 'declaratie' AND link IN (
      SELECT follows FROM facts WHERE kind = 'antwoord') THEN amount END), 0)
    - COALESCE(SUM(CASE WHEN kind = 'afgewezen' THEN amount END), 0) AS toegekend
FROM facts WHERE kind != 'antwoord' AND {where}
GROUP BY gemeente, month, categorie
ORDER BY gemeente, month, categorie
"""

_MONTH_CLIENTS = """
SELECT gemeente, month,
  COUNT(DISTINCT CASE WHEN kind != 'afgewezen' THEN client END) AS clienten,
  COUNT(DISTINCT CASE WHEN kind = 'declaratie' THEN client END) AS declaring
FROM facts WHERE kind != 'antwoord' AND {where}
GROUP BY gemeente, month
"""

_DURATIONS = """
SELECT gemeente, month, days FROM (
  SELECT later.gemeente AS gemeente, strftime('%Y-%m', later.first_at, 'unixepoch') AS month,
    (later.first_at - (SELECT MIN(earlier.at) FROM facts AS earlier
                       WHERE earlier.link = later.follows AND earlier.kind = ?
                       AND earlier.gemeente = later.gemeente)) / 86400.0 AS days
  FROM (SELECT gemeente, key, follows, MIN(at) AS first_at FROM facts
        WHERE kind = ? AND follows IS NOT NULL AND {gemeente} GROUP BY gemeente, key, follows)
    AS later)
WHERE days IS NOT NULL
"""
"""Each later fact (its first arrival) with the first arrival of the fact it follows, found
through the link index: one pass over the later kind, one index probe each."""


def count(db: sqlite3.Connection, scope: Scope) -> RawFigures:
    """Count the facts of ``scope`` (no suppression: that is :func:`publish`'s)."""
    where, params = _where(scope)
    cells = tuple(
        Cell(
            row["gemeente"],
            row["month"],
            row["categorie"],
            {name: row[name] for name in COUNTS},
            {"gedeclareerd_eurocent": row["gedeclareerd"], "toegekend_eurocent": row["toegekend"]},
            row["declaring"],
        )
        for row in db.execute(_CELLS.format(where=where), params)
    )
    month_clients: dict[tuple[str, str], int] = {}
    month_declaring: dict[tuple[str, str], int] = {}
    for row in db.execute(_MONTH_CLIENTS.format(where=where), params):
        month_clients[row["gemeente"], row["month"]] = row["clienten"]
        month_declaring[row["gemeente"], row["month"]] = row["declaring"]
    durations: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    one = scope.gemeente is not None
    query = _DURATIONS.format(gemeente="gemeente = ?" if one else "1 = 1")
    for name, (earlier, later) in DURATIONS.items():
        bound = (earlier, later, scope.gemeente) if one else (earlier, later)
        for row in db.execute(query, bound):
            if _in_scope(scope, row["gemeente"], row["month"]):
                durations[row["gemeente"], row["month"], name].append(max(0.0, row["days"]))
    return RawFigures(
        cells,
        month_clients,
        month_declaring,
        tuple(Duration(g, m, n, tuple(sorted(d))) for (g, m, n), d in sorted(durations.items())),
    )


def _in_scope(scope: Scope, gemeente: str, month: str) -> bool:
    return (
        (scope.gemeente is None or gemeente == scope.gemeente)
        and (not scope.first or month >= scope.first)
        and (not scope.last or month <= scope.last)
    )


# --- publishing (pure) ---------------------------------------------------------------------


SECONDARY = "x"
"""A cell hidden only so that another cannot be recovered from the total (CBS: "x",
confidential): unlike ``<N`` it says nothing about the size."""


def mark(threshold: int) -> str:
    return f"<{threshold}"


def _hidden(value: int, threshold: int) -> str:
    """The mark of a hidden figure: ``<N`` when it is small, ``x`` when it was hidden for
    another's sake."""
    return mark(threshold) if value < threshold else SECONDARY


def suppressed_in_group(sizes: dict[str, int], threshold: int) -> tuple[set[str], bool]:
    """Which cells of one group (and whether its total) must not be shown.

    ``sizes`` are the cells' counts (for amounts: the clients behind them). Primary: a size
    between 1 and threshold-1. Secondary: a lone suppressed cell takes the next smallest
    non-zero cell with it, or, when there is none, the total; a total below the threshold is
    suppressed itself."""
    hidden = {name for name, size in sizes.items() if 0 < size < threshold}
    total = sum(sizes.values())
    hide_total = 0 < total < threshold
    if len(hidden) == 1:
        others = sorted(
            (size, name) for name, size in sizes.items() if name not in hidden and size > 0
        )
        if others:
            hidden.add(others[0][1])
        else:
            hide_total = True
    return hidden, hide_total


def publish(raw: RawFigures, threshold: int = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """The figures as they may be shown: cells, totals per gemeente-month, doorlooptijden."""
    if threshold < 1:
        raise ValueError("the threshold is at least 1")
    groups: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for cell in raw.cells:
        groups[cell.gemeente, cell.month].append(cell)
    rows: list[dict[str, Any]] = []
    totals: list[dict[str, Any]] = []
    for (gemeente, month), cells in sorted(groups.items()):
        shown: dict[str, dict[str, Value]] = {c.categorie: {} for c in cells}
        total: dict[str, Value] = {}
        for name in COUNTS:
            sizes = {c.categorie: c.counts[name] for c in cells}
            if name == "clienten":  # distinct clients do not add up: no secondary step
                hidden = {k for k, v in sizes.items() if 0 < v < threshold}
                value = raw.month_clients.get((gemeente, month), 0)
                total[name] = _hidden(value, threshold) if 0 < value < threshold else value
            else:
                hidden, hide_total = suppressed_in_group(sizes, threshold)
                value = sum(sizes.values())
                total[name] = _hidden(value, threshold) if hide_total else value
            for categorie, size in sizes.items():
                shown[categorie][name] = _hidden(size, threshold) if categorie in hidden else size
        clients = {c.categorie: c.declaring_clients for c in cells}
        hidden, hide_total = suppressed_in_group(clients, threshold)
        declaring = raw.month_declaring.get((gemeente, month), 0)
        hide_total = hide_total or 0 < declaring < threshold
        for name in AMOUNTS:
            for c in cells:
                shown[c.categorie][name] = (
                    _hidden(c.declaring_clients, threshold)
                    if c.categorie in hidden
                    else c.amounts[name]
                )
            value = sum(c.amounts[name] for c in cells)
            total[name] = _hidden(declaring, threshold) if hide_total else value
        for categorie in sorted(shown):
            rows.append(
                {"gemeente": gemeente, "month": month, "categorie": categorie} | shown[categorie]
            )
        totals.append({"gemeente": gemeente, "month": month, "categorie": TOTAL} | total)
    return {
        "threshold": threshold,
        "rows": rows,
        "totals": totals,
        "doorlooptijden": [_duration(d, threshold) for d in raw.durations],
    }


def _duration(duration: Duration, threshold: int) -> dict[str, Any]:
    n = len(duration.days)
    enough = n >= threshold
    return {
        "gemeente": duration.gemeente,
        "month": duration.month,
        "doorlooptijd": duration.name,
        "n": n if enough else mark(threshold),
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
                value if value is not None else d["n"],
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
