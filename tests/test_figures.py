"""Beleidsinformatie: facts taken from accepted messages, counted, and published with every
count rounded to a base; through a real gateway (REST, CLI, portal) on a real SQLite file.
The disclosure guarantee itself is proven in tests/test_disclosure.py."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from gateway import disclosure, stats
from gateway.broker import sqlite_figures
from gateway.broker.kafka_records import message_record, read_message, unframe
from gateway.cli import figures as figures_cli
from gateway.figures import Fact, FactKind, FigureKeys, extract
from gateway.keyring import Keyring
from gateway.portal.explain import PRODUCTCATEGORIE, code_name
from gateway.portal.i18n import language
from gateway.standards import parse_namespace
from kit.gateway import Setup, Sink, ggk, make_setup, portal_session, rest, running

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
KEYS = FigureKeys(b"k" * 32)


def facts_of(name: str, text: str | None = None) -> tuple[Fact, ...]:
    root = etree.fromstring((text or (SAMPLES / name).read_text()).encode())
    info = parse_namespace(etree.QName(root).namespace)
    assert info is not None and info.message is not None
    return extract(root, info.message, KEYS)


def bsn(n: int) -> str:
    """The n-th nine-digit number from 100000000 up that passes the elfproef."""
    candidate = 100_000_000
    found = -1
    while True:
        digits = [int(c) for c in str(candidate)]
        if (
            sum(d * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True)) - digits[8]
        ) % 11 == 0:
            found += 1
            if found == n:
                return str(candidate)
        candidate += 1


# --- taking the facts --------------------------------------------------------------------


def test_a_toewijzing_counts_each_product_with_its_category_and_month() -> None:
    facts = facts_of("ijw/jw301.xml")
    assert [(f.kind, f.gemeente, f.aanbieder, f.categorie, f.month) for f in facts] == [
        (FactKind.TOEWIJZING, "0175", "12345678", "45", "2026-10"),
        (FactKind.TOEWIJZING, "0175", "12345678", "43", "2026-10"),
    ]
    assert facts[0].client == facts[1].client  # one client, two products


def test_declaratie_amounts_are_signed_cents_and_the_antwoord_follows_it() -> None:
    declared = facts_of("ijw/jw323.xml")
    assert [(f.categorie, f.month, f.amount) for f in declared] == [
        ("45", "2026-10", 100000),
        ("45", "2026-09", -12500),  # DebetCredit C
        ("43", "2026-10", 45000),
    ]
    answer = facts_of("ijw/jw325.xml")
    assert [(f.kind, f.amount) for f in answer] == [
        (FactKind.ANTWOORD, 87500),
        (FactKind.AFGEWEZEN, 45000),
    ]
    assert {f.follows for f in answer} == {declared[0].link}


def test_prestaties_out_of_their_order_are_read_one_by_one_never_misaligned() -> None:
    """The fast walk expects category, begin, amount and debet/credit per prestatie; one
    without its DebetCredit (not valid, but the walk must not pair the next prestatie's
    fields with this one) is read element by element."""
    text = (SAMPLES / "ijw/jw323.xml").read_text()
    credit = "<ijw:DebetCredit>C</ijw:DebetCredit>"
    assert text.count(credit) == 1
    facts = facts_of("", text.replace(credit, ""))
    assert [(f.categorie, f.month, f.amount) for f in facts] == [
        ("45", "2026-10", 100000),
        ("45", "2026-09", 12500),  # no DebetCredit: read as debet
        ("43", "2026-10", 45000),
    ]


def test_a_declaratie_is_summed_per_client_category_and_month() -> None:
    text = (SAMPLES / "ijw/jw323.xml").read_text()
    september = "<ijw:Begindatum>2026-09-01</ijw:Begindatum>"
    assert september in text
    facts = facts_of("", text.replace(september, "<ijw:Begindatum>2026-10-01</ijw:Begindatum>"))
    assert [(f.categorie, f.month, f.amount) for f in facts] == [
        ("45", "2026-10", 100000 - 12500),  # one client's two October lines: one row
        ("43", "2026-10", 45000),
    ]


def test_a_start_follows_its_toewijzing_and_a_withdrawn_one_counts_nothing() -> None:
    toewijzing = facts_of("ijw/jw301.xml")[0]
    start = facts_of("ijw/jw305.xml")
    assert len(start) == 1 and start[0].follows == toewijzing.link
    withdrawn = (SAMPLES / "ijw/jw305.xml").read_text()
    status = "<jw305:StatusAanlevering>1</jw305:StatusAanlevering>"
    assert status in withdrawn
    assert facts_of("", withdrawn.replace(status, status.replace(">1<", ">3<"))) == ()


def test_facts_carry_no_bsn_and_a_pseudonym_of_their_own() -> None:
    keyring = Keyring.generate()
    keys = FigureKeys(keyring.figures_key)
    root = etree.fromstring((SAMPLES / "ijw/jw323.xml").read_bytes())
    info = parse_namespace(etree.QName(root).namespace)
    assert info is not None and info.message is not None
    facts = extract(root, info.message, keys)
    text = repr(facts)
    for number in ("999990019", "999990032", "P2026100001", "JW323B0001"):
        assert number not in text
    assert facts[0].client != keyring.pseudonym("999990019")  # not joinable to the audit log


def test_retourberichten_and_requests_to_change_count_nothing() -> None:
    for name in ("ijw/jw302.xml", "iwmo/wmo317.xml", "iwmo/wmo319.xml", "iwmo/wmo320.xml"):
        assert facts_of(name) == ()


def test_facts_travel_sealed_in_a_kafka_record() -> None:
    from kit.harness import stored_message

    keyring = Keyring.generate()
    facts = facts_of("ijw/jw323.xml")
    message = stored_message(1)
    message = dataclasses.replace(message, facts=facts)
    value = message_record(keyring, message, 1.0)
    assert b"2026-10" not in value and b"declaratie" not in value
    meta, blob = unframe(value)
    assert read_message(keyring, meta, blob, open_secret=False)[0].facts == ()
    opened = read_message(keyring, meta, blob, open_secret=False, open_facts=True)[0]
    assert opened.facts == facts


# --- publishing ------------------------------------------------------------------------------


def test_rounding_to_the_base_handles_small_counts_and_names_its_bands() -> None:
    assert [disclosure.round_count(v, 5) for v in (0, 1, 4, 7, 8, 12, 13, 1234)] == [
        0, 5, 5, 5, 10, 10, 15, 1235,
    ]  # fmt: skip
    assert disclosure.band(5, 5) == (1, 7) and disclosure.band(10, 5) == (8, 12)
    assert disclosure.band(0, 5) == (0, 0)


@given(st.integers(1, 40), st.integers(0, 300))
def test_a_band_is_exactly_what_rounds_to_it_and_holds_at_least_the_base(
    base: int, value: int
) -> None:
    published = disclosure.round_count(value, base)
    lo, hi = disclosure.band(published, base)
    assert lo <= value <= hi
    assert disclosure.round_count(lo, base) == disclosure.round_count(hi, base) == published
    assert lo == 0 or disclosure.round_count(lo - 1, base) != published
    assert disclosure.round_count(hi + 1, base) != published
    assert value == 0 or hi - lo + 1 >= base


def raw_figures(cells: list[stats.Cell]) -> stats.RawFigures:
    months: dict[tuple[str, str], int] = {}
    for c in cells:
        months[c.gemeente, c.month] = months.get((c.gemeente, c.month), 0) + c.counts["clienten"]
    return stats.RawFigures(tuple(cells), months, months, ())


def cell(categorie: str, toewijzingen: int) -> stats.Cell:
    counts = dict.fromkeys(stats.COUNTS, 0) | {
        "toewijzingen": toewijzingen,
        "clienten": toewijzingen,
    }
    amounts = {"gedeclareerd_eurocent": 100 * toewijzingen, "toegekend_eurocent": 90 * toewijzingen}
    return stats.Cell("0175", "2026-10", categorie, counts, amounts, toewijzingen)


def test_published_counts_are_rounded_and_totals_are_their_sums() -> None:
    published = stats.publish(raw_figures([cell("43", 13), cell("44", 1), cell("45", 9)]), 5)
    assert published["method"] == {"name": "afronding", "base": 5}
    shown = {r["categorie"]: r for r in published["rows"]}
    assert [shown[c]["toewijzingen"] for c in ("43", "44", "45")] == [15, 5, 10]
    assert published["totals"][0]["toewijzingen"] == 30  # 15 + 5 + 10, not 23 rounded
    assert shown["43"]["gedeclareerd_eurocent"] == 1300  # 13 declaring clients
    assert shown["44"]["gedeclareerd_eurocent"] == "x"  # one
    assert shown["45"]["toegekend_eurocent"] == 810  # 9 declaring, clienten shown as 10: 8..12
    assert published["totals"][0]["gedeclareerd_eurocent"] == "x"  # 44's is hidden


def test_csv_is_one_figure_per_line() -> None:
    published = stats.publish(raw_figures([cell("45", 7)]), 5)
    rows = list(csv.reader(io.StringIO(stats.to_csv(published))))
    assert rows[0] == ["gemeente", "maand", "categorie", "maat", "waarde"]
    assert ["0175", "2026-10", "45", "toewijzingen", "5"] in rows
    assert ["0175", "2026-10", "totaal", "toewijzingen", "5"] in rows
    assert len(rows) == 1 + 2 * len(stats.MEASURES)


def test_a_threshold_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        stats.publish(raw_figures([]), 0)


# --- through a running gateway -------------------------------------------------------------


def jw(name: str, **swap: str) -> bytes:
    text = (SAMPLES / "ijw" / f"{name}.xml").read_text()
    for old, new in swap.items():
        assert old in text, old
        text = text.replace(old, new)
    return text.encode()


async def post(setup: Setup, partner: str, payload: bytes) -> None:
    status, body = await rest(
        setup, "POST", "/api/v1/messages", token=setup.token(partner), data=payload
    )
    assert status == 202, body


async def the_flow(setup: Setup) -> None:
    """Gemeente 0175: seven clients get a toewijzing of category 45 and one of 43 (one of
    them 44 instead); one start; one declaratie with its antwoord."""
    await post(setup, "12345678", jw("jw315"))  # a verzoek om toewijzing, VOT-2026-0042
    for i in range(7):
        second = "44" if i == 0 else "43"
        # the first client's toewijzing answers the verzoek
        answer = "<jw301:ReferentieAanbieder>VOT-2026-0042</jw301:ReferentieAanbieder>" * (i == 0)
        await post(
            setup,
            "0175",
            jw(
                "jw301",
                JW301B0001=f"T{uuid.uuid4().hex[:10]}",
                **{
                    "999990019": bsn(i),
                    ">1001</jw301:ToewijzingNummer>": f">3{i}01</jw301:ToewijzingNummer>{answer}",
                    ">1002<": f">3{i}02<",
                    "<ijw:Categorie>43<": f"<ijw:Categorie>{second}<",
                },
            ),
        )
    await post(setup, "12345678", jw("jw305", **{"999990019": bsn(0), ">1001<": ">3001<"}))
    await post(setup, "12345678", jw("jw323"))
    await post(setup, "0175", jw("jw325"))


async def same_figures_everywhere(setup: Setup, figures: dict[str, Any]) -> None:
    """Gemeente 0175's figures as REST JSON are what its CSV, the CLI (JSON, CSV, table) and
    its portal page show: every channel publishes the one document, so what is proven of it
    (tests/test_disclosure.py) holds for them all."""
    code, text = await ggk(setup, "stats", "--as-partner", "0175", "--json")
    assert code == 0 and json.loads(text) == figures, text
    code, cli_csv = await ggk(setup, "stats", "--as-partner", "0175", "--csv")
    assert code == 0 and cli_csv == stats.to_csv(figures), cli_csv
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{setup.url}/api/v1/stats?format=csv",
            headers={"Authorization": f"Bearer {setup.token('0175')}"},
            ssl=setup.ssl_context(),
        ) as answer,
    ):
        assert answer.status == 200 and await answer.text() == cli_csv
    code, table = await ggk(setup, "stats", "--as-partner", "0175")
    assert code == 0, table
    columns = ("verzoeken", "toewijzingen", "starts", "stops", "clienten")
    for row in stats.cells_and_totals(figures):
        assert figures_cli._figures_line(row, columns) in table.splitlines(), row
    client, _ = await portal_session(setup, "0175")
    async with client, client.get(f"{setup.url}/portal/figures", ssl=setup.ssl_context()) as page:
        assert page.status == 200
        html = await page.text()
    shown = re.findall(
        r"<td>([^<]*)</td><td>([^<]*)</td><th scope=\"row\">([^<]*)</th>\s*"
        + r"\s*<td>([^<]*)</td>" * 7,
        html,
    )
    assert shown == [
        (
            row["gemeente"],
            row["month"],
            # a category with its official name (gateway.codelists)
            " ".join(
                filter(None, (row["categorie"], code_name(PRODUCTCATEGORIE, row["categorie"])))
            ),
            *(language("nl").number(row[name]) for name in columns),
            *(language("nl").euro(row[name]) for name in stats.AMOUNTS),
        )
        for row in stats.cells_and_totals(figures)
    ]


@pytest.fixture
def setup(tmp_path: Path, sink: Sink) -> Setup:
    return make_setup(tmp_path / "gw", sink.port)


@pytest.mark.slow
async def test_figures_over_rest_and_cli(setup: Setup) -> None:
    async with running(setup):
        before = time.strftime("%Y-%m", time.gmtime())
        await the_flow(setup)
        code, figures = await rest(setup, "GET", "/api/v1/stats", token=setup.token())
        assert code == 200, figures
        rows = {(r["month"], r["categorie"]): r for r in figures["rows"]}
        october = {k[1]: v for k, v in rows.items() if k[0] == "2026-10"}
        assert october["45"]["toewijzingen"] == 5  # 7, rounded: 5 stands for 1..7
        # a verzoek has no business date: it counts in the month it arrived
        arrived = {r["month"] for r in figures["rows"] if r["verzoeken"] != 0}
        assert arrived and arrived <= {before, time.strftime("%Y-%m", time.gmtime())}
        assert october["44"]["toewijzingen"] == 5  # 1
        assert october["43"]["toewijzingen"] == 5  # 6
        assert october["45"]["starts"] == 5  # 1
        assert october["45"]["clienten"] == 10  # 8: seven toewijzingen plus a declared client
        assert october["45"]["gedeclareerd_eurocent"] == "x"  # two declaring clients
        total = next(t for t in figures["totals"] if t["month"] == "2026-10")
        assert total["toewijzingen"] == 15  # the sum of the rounded cells (true: 14)
        assert total["clienten"] == 10  # 9 distinct, with the client declared under 43
        assert "999990019" not in str(figures)

        # a gemeente sees its own figures only; an aanbieder none; nobody without a credential
        code, own = await rest(setup, "GET", "/api/v1/stats", token=setup.token("0175"))
        assert code == 200 and own["rows"] == figures["rows"]
        code, other = await rest(setup, "GET", "/api/v1/stats", token=setup.token("0150"))
        assert code == 200 and other["rows"] == []
        for query, token, expected in (
            ("?gemeente=0175", setup.token("0150"), 403),
            ("", setup.token("12345678"), 403),
            ("", None, 401),
            ("?from=2026-13", setup.token(), 400),
            ("?format=xlsx", setup.token(), 400),
        ):
            code, problem = await rest(setup, "GET", f"/api/v1/stats{query}", token=token)
            assert code == expected, (query, problem)
        code, september = await rest(
            setup, "GET", "/api/v1/stats?from=2026-09&to=2026-09", token=setup.token()
        )
        assert {r["month"] for r in september["rows"]} == {"2026-09"}
        # overlapping ranges give the same numbers for the months they share
        for query in ("?from=2026-09&to=2026-10", "?from=2026-10&to=2026-10", "?to=2026-10"):
            code, ranged = await rest(setup, "GET", f"/api/v1/stats{query}", token=setup.token())
            assert code == 200, ranged
            for key in ("rows", "totals", "doorlooptijden"):
                assert [r for r in ranged[key] if r["month"] == "2026-10"] == [
                    r for r in figures[key] if r["month"] == "2026-10"
                ]
        await same_figures_everywhere(setup, own)

        code, text = await ggk(setup, "stats", "--csv")
        assert code == 0, text
        assert "0175,2026-10,45,toewijzingen,5" in text
        code, text = await ggk(setup, "stats", "--as-partner", "0175")
        assert code == 0 and "gemeente 0175, 2026-10" in text, text
        code, text = await ggk(setup, "stats", "--as-partner", "12345678")
        assert code != 0 and "Traceback" not in text and "403" in text, text

    # the raw counts behind the rounding, read from the store file itself
    db = sqlite3.connect(setup.config().database)
    db.row_factory = sqlite3.Row
    raw = sqlite_figures.count(db, stats.Scope("0175"))
    cells = {(c.month, c.categorie): c for c in raw.cells}
    assert cells["2026-10", "45"].amounts == {
        "gedeclareerd_eurocent": 100000,
        "toegekend_eurocent": 100000,
    }
    assert cells["2026-09", "45"].amounts["toegekend_eurocent"] == -12500  # a credit line
    assert cells["2026-10", "43"].amounts == {
        "gedeclareerd_eurocent": 45000,
        "toegekend_eurocent": 0,  # rejected in the antwoord
    }
    assert cells["2026-10", "43"].counts["toewijzingen"] == 6
    names = {d.name: d for d in raw.durations}
    assert len(names["declaratie_antwoord"].days) == 1
    assert len(names["toewijzing_start"].days) == 1
    assert len(names["verzoek_toewijzing"].days) == 1
    published = stats.publish(raw, 1)
    assert published["doorlooptijden"][0]["median_days"] is not None
    dumped = "\n".join(str(tuple(r)) for r in db.execute("SELECT * FROM facts"))
    assert bsn(0) not in dumped and "999990019" not in dumped
    db.close()
