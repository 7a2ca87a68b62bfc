"""Beleidsinformatie on the embedded backend: the facts table counted in SQL.

What may be published of these counts, and how, is gateway/stats.py's (pure); this module
only counts, on the store's read connection.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict

from gateway import stats


def _where(scope: stats.Scope, alias: str = "") -> tuple[str, list[str]]:
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


def count(db: sqlite3.Connection, scope: stats.Scope) -> stats.RawFigures:
    """Count the facts of ``scope`` (no suppression: that is :func:`publish`'s)."""
    where, params = _where(scope)
    cells = tuple(
        stats.Cell(
            row["gemeente"],
            row["month"],
            row["categorie"],
            {name: row[name] for name in stats.COUNTS},
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
    for name, (earlier, later) in stats.DURATIONS.items():
        bound = (earlier, later, scope.gemeente) if one else (earlier, later)
        for row in db.execute(query, bound):
            if stats.in_scope(scope, row["gemeente"], row["month"]):
                durations[row["gemeente"], row["month"], name].append(max(0.0, row["days"]))
    return stats.RawFigures(
        cells,
        month_clients,
        month_declaring,
        tuple(
            stats.Duration(g, m, n, tuple(sorted(d))) for (g, m, n), d in sorted(durations.items())
        ),
    )
