"""The beleidsinformatie's disclosure guarantee, proven by solving what is published.

A reader (a gemeente, or anyone its figures reach) knows the published figures, how they
tie together (cells add up to totals; a category's clients are among the month's; an amount
is shown only for enough declaring clients, who are among the clients) and the method. The
guarantee (docs/figures.md): for every count that is not 0, the true values that agree with
everything published, over every channel and every range of months asked, are at least
``min_cell`` in number. The solver here is exact for those ties; it takes a published
number for what the documented band of that number allows, computed from the method's own
rounding function, and a total for exactly the true totals the method maps to it.
"""

from __future__ import annotations

import calendar
import csv
import io
import itertools
import json
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway import disclosure, stats
from gateway.broker import sqlite_figures
from gateway.broker.sqlite_deferred import store_facts
from gateway.broker.sqlite_prepared import fact_rows
from gateway.broker.sqlite_schema import SCHEMA
from gateway.figures import Fact, FactKind

ADDITIVE = ("verzoeken", "toewijzingen", "starts", "stops")
BIG = 80
"""Above any count the tests generate: the solver's upper end for an unbounded figure."""


# --- a reader's decoding, knowing no more than the published figures say ------------------


def decode(published: dict[str, Any], value: object) -> set[int]:
    """The true counts a published count may stand for, read as its publication documents:
    ``<N`` is 1..N-1, ``x`` anything, a number itself or, when the figures say they are
    rounded (``method``), its band."""
    if isinstance(value, str):
        if value.startswith("<"):
            return set(range(1, int(value[1:])))
        return set(range(BIG + 1))
    assert isinstance(value, int)
    method = published.get("method")
    if method is None:
        return {value}
    lo, hi = disclosure.band(value, method["base"])
    return set(range(lo, hi + 1))


def solve(
    domains: dict[str, set[int]], constraints: Iterable[Callable[[dict[str, int]], bool]]
) -> dict[str, set[int]]:
    """Every value of every variable that some assignment satisfying all constraints has
    (exhaustive: for the few small variables of a regression case)."""
    names = list(domains)
    rules = list(constraints)
    feasible: dict[str, set[int]] = {name: set() for name in names}
    for values in itertools.product(*(sorted(domains[n]) for n in names)):
        assignment = dict(zip(names, values, strict=True))
        if all(rule(assignment) for rule in rules):
            for name, value in assignment.items():
                feasible[name].add(value)
    return feasible


def month_cells(toewijzingen: dict[str, int], clienten: dict[str, int]) -> stats.RawFigures:
    """One gemeente-month whose clients each had one toewijzing (so a category's clienten
    equal its toewijzingen, as a reader sees in the categories shown), all different people."""
    cells = tuple(
        stats.Cell(
            "0175",
            "2026-10",
            categorie,
            dict.fromkeys(stats.COUNTS, 0) | {"toewijzingen": n, "clienten": clienten[categorie]},
            dict.fromkeys(stats.AMOUNTS, 0),
            0,
        )
        for categorie, n in toewijzingen.items()
    )
    everyone = sum(clienten.values())
    return stats.RawFigures(cells, {("0175", "2026-10"): everyone}, {("0175", "2026-10"): 0}, ())


def figure(published: dict[str, Any], categorie: str, measure: str) -> object:
    rows = published["rows"] if categorie != stats.TOTAL else published["totals"]
    return next(r[measure] for r in rows if r["categorie"] in (categorie, stats.TOTAL))


def additive_total_rule(
    published: dict[str, Any], measure: str, names: dict[str, str]
) -> list[Callable[[dict[str, int]], bool]]:
    """The tie of an additive total: the cells' true values add up to a total the published
    total allows (when the figures are rounded, the total is the sum of the rounded cells, a
    function of the cells: it allows every sum of values in their bands)."""
    total = figure(published, stats.TOTAL, measure)
    if "method" in published:
        return []
    allowed = decode(published, total)
    return [lambda a: sum(a[v] for v in names.values()) in allowed]


def test_a_small_cell_is_not_recovered_from_the_total_and_its_neighbours() -> None:
    """Observed: toewijzingen 1/1/6 were published as <5, <5, 6 with total 8, and 8 - 6 = 2
    makes both hidden cells exactly 1."""
    counts = {"43": 1, "44": 1, "45": 6}
    published = stats.publish(month_cells(counts, counts), 5)
    names = {c: f"t{c}" for c in counts}
    domains = {names[c]: decode(published, figure(published, c, "toewijzingen")) for c in counts}
    feasible = solve(domains, additive_total_rule(published, "toewijzingen", names))
    for categorie, true in counts.items():
        assert true in feasible[names[categorie]]
        assert len(feasible[names[categorie]]) >= 5, (categorie, feasible)


def test_clienten_do_not_reveal_a_cell_hidden_under_toewijzingen() -> None:
    """Observed: toewijzingen <5, x, 9 beside clienten <5, 7, 9 (no secondary suppression for
    clienten). Every client had one toewijzing, as category 45 shows (9 and 9): the reader
    takes a category's toewijzingen to equal its clienten, and the x is 7. The month's
    distinct clients (18 here, all different people) pin the <5 besides."""
    counts = {"43": 2, "44": 7, "45": 9}
    published = stats.publish(month_cells(counts, counts), 5)
    names = {c: f"n{c}" for c in counts}  # toewijzingen = clienten, one variable per category
    domains = {
        names[c]: decode(published, figure(published, c, "toewijzingen"))
        & decode(published, figure(published, c, "clienten"))
        for c in counts
    }
    rules = additive_total_rule(published, "toewijzingen", names)
    shown_total = figure(published, stats.TOTAL, "clienten")
    cells = [figure(published, c, "clienten") for c in counts]
    if "method" in published:
        base = published["method"]["base"]
        allowed = {
            t
            for t in range(BIG + 1)
            if disclosure.distinct_total(t, cells, base) == shown_total  # type: ignore[arg-type]
        }
    else:
        allowed = decode(published, shown_total)
    domains["clients"] = allowed
    rules.append(
        lambda a: (
            max(a[n] for n in names.values()) <= a["clients"] <= sum(a[n] for n in names.values())
        )
    )
    feasible = solve(domains, rules)
    for categorie, true in counts.items():
        assert true in feasible[names[categorie]]
        assert len(feasible[names[categorie]]) >= 5, (categorie, feasible)


# --- the guarantee, over generated facts, every channel and overlapping ranges ------------

GEMEENTEN = ("0175", "0150")
MONTHS = ("2026-01", "2026-02", "2026-03")
CATEGORIES = ("43", "44", "45")
KINDS = ("verzoek", "toewijzing", "start", "stop", "declaratie")
SOLVER_TOP = 400
"""Above any count generated here (at most 12 lines of 12 facts in one cell)."""

line = st.tuples(
    st.integers(0, len(GEMEENTEN) - 1),
    st.integers(0, len(MONTHS) - 1),
    st.integers(0, len(CATEGORIES) - 1),
    st.sampled_from(KINDS),
    st.integers(1, 12),  # facts on the line, each of its own client from `first` on
    st.integers(0, 15),  # first client: clients recur across categories, kinds and lines
    st.booleans(),  # a declaratie answered, a part of it rejected
    st.booleans(),  # clients of the line's category only (else shared across the month)
)
Line = tuple[int, int, int, str, int, int, bool, bool]


def at(month: str, second: int) -> float:
    year, number = (int(part) for part in month.split("-"))
    return float(calendar.timegm((year, number, 10, 0, 0, 0, 0, 0, 0)) + second * 3600)


def store(lines: list[Line]) -> sqlite3.Connection:
    """The facts of ``lines`` in a real store schema, written by the store's own function."""
    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    db.executescript(SCHEMA)
    for i, (g, m, c, kind, n, first, answered, own) in enumerate(lines):
        gemeente, month, categorie = GEMEENTEN[g], MONTHS[m], CATEGORIES[c]
        for k in range(n):
            client = f"{gemeente}-{month}-{categorie if own else ''}-{first + k}"
            fact = Fact(FactKind(kind), "jw", gemeente, "aanbieder", categorie, month, client, "")
            later: list[Fact] = []
            if kind == "verzoek":
                fact = replace(fact, key=f"v{i}-{k}", link=f"v{i}-{k}")
            elif kind in ("toewijzing", "start", "stop"):
                before = "v" if kind == "toewijzing" else "t"
                link = f"t{i}-{k}" if kind == "toewijzing" else None
                fact = replace(
                    fact, key=f"{kind}{i}-{k}", link=link, follows=f"{before}{i - 1}-{k}"
                )
            else:
                link = f"d{i}-{k}"
                fact = replace(fact, key=link, link=link, amount=1000 * (k + 1) - 300)
                if answered:
                    later.append(
                        Fact(
                            FactKind.ANTWOORD,
                            "jw",
                            gemeente,
                            "g",
                            "-",
                            "",
                            None,
                            f"a{link}",
                            0,
                            follows=link,
                        )
                    )
                    later.append(
                        replace(fact, kind=FactKind.AFGEWEZEN, amount=250, link=None, follows=link)
                    )
            store_facts(db, f"m{i}-{k}", at(month, i), fact_rows(at(month, i), (fact,)))
            if later:
                store_facts(
                    db,
                    f"a{i}-{k}",
                    at(month, i + 2 + k),
                    fact_rows(at(month, i + 2 + k), tuple(later)),
                )
    return db


def scopes() -> list[stats.Scope]:
    """What a gemeente or the operator may ask: everything, from, to, and every range."""
    asked = [stats.Scope(), stats.Scope(first=MONTHS[1]), stats.Scope(last=MONTHS[1])]
    for gemeente in (None, *GEMEENTEN):
        for a, b in itertools.combinations_with_replacement(range(len(MONTHS)), 2):
            asked.append(stats.Scope(gemeente, MONTHS[a], MONTHS[b]))
    return asked


Key = tuple[str, str, str, str]
"""(gemeente, month, categorie or totaal or doorlooptijd_<name>, measure)"""


def channels(published: dict[str, Any]) -> Iterable[tuple[Key, object]]:
    """Every published count and amount as a reader gets it: the JSON document parsed, and
    the CSV parsed (the portal and the CLI render the same document: tested in
    test_figures.py)."""
    document = json.loads(json.dumps(published))
    for row in [*document["rows"], *document["totals"]]:
        for name in stats.MEASURES:
            yield (row["gemeente"], row["month"], row["categorie"], name), row[name]
    for d in document["doorlooptijden"]:
        key = (d["gemeente"], d["month"], f"doorlooptijd_{d['doorlooptijd']}")
        yield (*key, "n"), d["n"]
        yield (*key, "median_days"), d["median_days"]
    lines = list(csv.reader(io.StringIO(stats.to_csv(published))))
    assert lines[0] == ["gemeente", "maand", "categorie", "maat", "waarde"]
    for gemeente, month, categorie, name, value in lines[1:]:
        parsed: object = int(value) if value.lstrip("-").isdigit() else value
        if name.startswith("doorlooptijd_"):
            name, _, stat = name.removeprefix("doorlooptijd_").partition("_")
            while stat not in ("n", "median_days", "p90_days"):  # the name has underscores
                more, _, stat = stat.partition("_")
                name = f"{name}_{more}"
            categorie, name = f"doorlooptijd_{name}", stat
            if name == "median_days":
                parsed = None if value == stats.HIDDEN else value
        yield (gemeente, month, categorie, name), parsed


def preimage(published: int, base: int) -> set[int]:
    """The true counts the method maps to ``published`` (by its own function, not its
    documentation: the reader knows the method)."""
    return {v for v in range(SOLVER_TOP + 1) if disclosure.round_count(v, base) == published}


def clienten_feasible(
    cells: dict[str, set[int]], totals: set[int]
) -> tuple[dict[str, set[int]], set[int]]:
    """Exact: the values of each category's clients, and of the month's distinct clients T,
    for which sets of those sizes exist (max(cells) <= T <= sum(cells)) within the domains."""
    names = list(cells)

    def fits(v: int, j: str, t: int) -> bool:
        if t < v:
            return False
        room = v
        for other in names:
            if other == j:
                continue
            below = [s for s in cells[other] if s <= t]
            if not below:
                return False
            room += max(below)
        return t <= room

    feasible = {j: {v for v in cells[j] if any(fits(v, j, t) for t in totals)} for j in names}
    feasible_totals = {
        t for t in totals if names and any(fits(v, names[0], t) for v in cells[names[0]])
    }
    return feasible, feasible_totals


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line, max_size=12), st.sampled_from([1, 2, 3, 5, 10]))
@example([(0, 0, c, "toewijzing", 7, 0, False, True) for c in range(3)], 5)  # disjoint, at the top
@example([(0, 0, 0, "declaratie", 5, 0, True, False), (0, 0, 0, "verzoek", 1, 5, False, False)], 5)
def test_no_published_figure_narrows_a_count_below_the_base(lines: list[Line], base: int) -> None:
    db = store(lines)
    truth = sqlite_figures.count(db, stats.Scope())
    seen: dict[Key, list[object]] = defaultdict(list)
    for scope in scopes():
        published = stats.publish(sqlite_figures.count(db, scope), base)
        for key, value in channels(published):
            seen[key].append(value)
        for total in published["totals"]:  # the additive totals are the sums of the cells
            cells = [
                r
                for r in published["rows"]
                if (r["gemeente"], r["month"]) == (total["gemeente"], total["month"])
            ]
            for name in ADDITIVE:
                assert total[name] == disclosure.sum_total(r[name] for r in cells)
            for name in stats.AMOUNTS:
                if any(r[name] == stats.HIDDEN for r in cells):
                    assert total[name] == stats.HIDDEN  # nothing to subtract a hidden one from

    def domain(key: Key) -> set[int]:
        values = seen[key]
        assert values, key
        assert len(set(values)) == 1, (key, values)  # every range and channel: one number
        found = set(range(SOLVER_TOP + 1))
        for value in values:
            assert isinstance(value, int), (key, value)
            found &= preimage(value, base)
        return found

    months = {(c.gemeente, c.month) for c in truth.cells}
    for gemeente, month in months:
        raw = {c.categorie: c for c in truth.cells if (c.gemeente, c.month) == (gemeente, month)}
        for name in ADDITIVE:  # ties: only the total, a function of the cells
            for categorie, c in raw.items():
                check(domain((gemeente, month, categorie, name)), c.counts[name], base)
        clients: dict[str, set[int]] = {}
        for categorie in raw:
            clients[categorie] = domain((gemeente, month, categorie, "clienten"))
            amounts = [v for n in stats.AMOUNTS for v in seen[gemeente, month, categorie, n]]
            if any(isinstance(v, int) and v != 0 for v in amounts):
                clients[categorie] &= set(range(base, SOLVER_TOP + 1))  # >= base declared
        total_key = (gemeente, month, stats.TOTAL, "clienten")
        shown_cells = [int(str(seen[gemeente, month, c, "clienten"][0])) for c in raw]
        totals = {
            t
            for t in range(SOLVER_TOP + 1)
            if all(disclosure.distinct_total(t, shown_cells, base) == v for v in seen[total_key])
        }
        feasible, feasible_totals = clienten_feasible(clients, totals)
        for categorie, c in raw.items():
            check(feasible[categorie], c.counts["clienten"], base)
        check(feasible_totals, truth.month_clients[gemeente, month], base)
    for d in truth.durations:
        where = (d.gemeente, d.month, f"doorlooptijd_{d.name}")
        cases = domain((*where, "n"))
        if any(v is not None for v in seen[(*where, "median_days")]):
            cases &= set(range(base, SOLVER_TOP + 1))
        check(cases, len(d.days), base)


def check(feasible: set[int], true: int, base: int) -> None:
    """The guarantee for one count: the truth is among the values the published figures
    leave, and unless it is 0 (published as 0: nobody), they are at least ``base``."""
    assert true in feasible, (true, sorted(feasible))
    if true:
        assert len(feasible) >= base, (true, sorted(feasible))
