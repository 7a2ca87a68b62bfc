"""The rule catalogue: complete, consistent with the registered checks, documented, listed."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner

from cli import main
from gateway.rules import RULES
from gateway.rules.catalogue import Status, catalogue, for_message
from tests.conftest import ROOT
from tests.test_rules import CASES

# scripts/ is a folder of scripts, not a package: they import each other from it (as mypy sees them)
sys.path.insert(0, str(ROOT / "scripts"))
from generate_rules_doc import DOC, render

# Rule ids of the 3.2 release that concern message content (rule texts: xslt, berichtoverstijgend,
# externe bron; the condition/constraint/restriction tables), plus the IV034 instruction and the
# instructions on answers the gateway checks against the stored heenbericht (IV028, IV032,
# IV087, IV088: gateway/rules/pairs.py).
OFFICIAL_IDS = {
    *"TR002 TR006 TR018 TR061 TR101 TR134 TR137 TR302 TR315 TR316 TR335 TR342 TR352 TR353 "
    "TR358 TR377 TR380 TR383 TR386 TR409 TR410 TR416".split(),
    *"TR019 TR056 TR063 TR071 TR074 TR304 TR307 TR308 TR314 TR318 TR319 TR321 TR322 TR323 "
    "TR326 TR332 TR333 TR337 TR338 TR339 TR340 TR341 TR347 TR349 TR350 TR351 TR355 TR357 "
    "TR359 TR360 TR361 TR365 TR366 TR367 TR369 TR371 TR373 TR374 TR375 TR376 TR379 TR382 "
    "TR384 TR385 TR387 TR388 TR389 TR390 TR411 TR412 TR413 TR414 TR415 TR418".split(),
    *"TR135 TR346 TR378 TR381".split(),
    *"CD005 CD007 CD009 CD025 CD034 CD041 CD043 CD060 CD066 CD067 CD068 CD075 CD076 CD077 "
    "CD078 CD079 CD080 CD085 CD086 CD087 CD095 CD096".split(),
    *"CS002 CS003 CS015 CS025 CS050 CS058 CS089 CS100 CS139 CS318 CS319 CS325 CS335 CS336 "
    "CS337 CS338 CS339 CS340 CS343".split(),
    *"RS001 RS002 RS004 RS005 RS006 RS008 RS009 RS010 RS011 RS012 RS013 RS014 RS015 RS016 "
    "RS017 RS018 RS019 RS020 RS021 RS023 RS024 RS025 RS026 RS028 RS031 RS032 RS033 RS034 "
    "RS035 RS036 RS037 RS040 RS045 RS046 RS047 RS048".split(),
    "IV034",
    *"IV028 IV032 IV087 IV088".split(),
}


def test_every_official_content_rule_is_catalogued_once() -> None:
    assert set(catalogue()) == OFFICIAL_IDS


def test_registered_checks_and_catalogued_rules_are_the_same_set() -> None:
    checked = {e.id for e in catalogue().values() if e.status is Status.RULE}
    assert {r.id for r in RULES} == checked


def test_every_checked_rule_has_a_firing_case() -> None:
    checked = {e.id for e in catalogue().values() if e.status is Status.RULE}
    assert checked <= {rule_id for rule_id, _, _ in CASES}


def test_a_check_carries_its_catalogue_metadata() -> None:
    for r in RULES:
        e = catalogue()[r.id]
        assert (r.level, r.retourcode, r.severity) == (e.level, e.retourcode, e.severity)
        assert r.messages <= set(e.messages)


def test_rules_not_checked_in_message_say_how_or_why() -> None:
    for e in catalogue().values():
        if e.status in (Status.GATEWAY, Status.RECEIVER, Status.EXTERNAL):
            assert e.how, e.id
        if e.status is Status.RECEIVER:
            assert e.level == 3, e.id


def test_woonplaatsbeginsel_rules_are_ijw_only() -> None:
    assert [e.id for e in for_message("WMO319") if e.id in ("TR377", "TR409")] == []
    assert {e.id for e in for_message("JW319")} >= {"TR377", "TR409"}


def test_docs_rules_md_is_generated_from_the_catalogue() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), "run python scripts/generate_rules_doc.py"


def test_rules_list_json_for_one_message() -> None:
    result = CliRunner().invoke(main, ["rules", "list", "--json", "--message", "wmo323"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    ids = {row["id"] for row in rows}
    assert {"TR358", "TR416", "TR101", "TR319", "TR314"} <= ids and "TR302" not in ids
    tr319 = next(row for row in rows if row["id"] == "TR319")
    assert (tr319["level"], tr319["retourcode"], tr319["status"]) == (3, "9319", "rule")


def test_rules_list_human_with_status_filter() -> None:
    result = CliRunner().invoke(main, ["rules", "list", "--status", "gateway"])
    assert result.exit_code == 0
    assert result.output.splitlines()[0].startswith("TR056  level 3  9056  gateway")
    gateway = [e for e in catalogue().values() if e.status is Status.GATEWAY]
    assert result.output.splitlines()[-1] == f"{len(gateway)} rules"


@pytest.mark.parametrize("bad", ["XX301", "WMO999"])
def test_rules_list_names_the_messages_for_an_unknown_code(bad: str) -> None:
    result = CliRunner().invoke(main, ["rules", "list", "--message", bad])
    assert result.exit_code == 2
    assert "not an iWmo/iJw 3.2 message" in result.output and "JW323" in result.output
    assert "Traceback" not in result.output
