"""Rules per release (issue 31.5): a release without known rules gets its XSD and the
release-independent rules only, never 3.2's; an onderhoudsrelease that keeps the namespace
(3.2.1) sits beside 3.2.0, and a message's XsdVersie chooses between them.

The bundles are made here from the project's 3.2 XSDs: a "3.3" with the namespace and release
changed, a "3.2.1" with the namespace kept and BerichtXsdVersie 1.1.0 (Min/Max 1.1.0 in the
appinfo, as official bundles declare them).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from cli import main
from gateway import envelope as env
from gateway.bundled import schema_root
from gateway.rules.catalogue import by_release, has_rules, known_releases
from gateway.schemas import SchemaRegistry
from gateway.standards import Standard, message_namespace
from gateway.validation import Validator
from kit.gateway import (
    Setup,
    Sink,
    fo03_code,
    make_setup,
    portal_session,
    post_soap,
    rest,
    running,
)
from tests.conftest import SAMPLES

WMO301 = (SAMPLES / "iwmo" / "wmo301.xml").read_text(encoding="utf-8")
BAD_BSN = ("<wmo301:Bsn>999990019<", "<wmo301:Bsn>123456789<")  # fails the eleven-test: CS002


def bundle_33(into: Path) -> Path:
    """The 3.2 iWmo XSDs as a fabricated release 3.3 (namespace, appinfo, BerichtSubversie)."""
    out = into / "iwmo-3.3"
    out.mkdir(parents=True)
    for xsd in (schema_root() / "iwmo" / "3_2").glob("*.xsd"):
        text = xsd.read_text(encoding="utf-8").replace("/iwmo/3_2/", "/iwmo/3_3/")
        text = re.sub(r"(:release>)3\.2(<)", r"\g<1>3.3\2", text)
        text = re.sub(
            r'(<xs:element name="BerichtSubversie">\s*<xs:simpleType>\s*<xs:restriction '
            r'base="iwmo:LDT_BerichtSubversie">\s*<xs:pattern value=")2(")',
            r"\g<1>3\2",
            text,
        )
        (out / xsd.name).write_text(text, encoding="utf-8")
    return out


def bundle_321(into: Path, minimum: str = "1.1.0") -> Path:
    """The 3.2 iWmo XSDs as onderhoudsrelease 3.2.1: same namespace, BerichtXsdVersie 1.1.0,
    for messages quoting ``minimum``..1.1.0."""
    out = into / f"iwmo-3.2.1-from-{minimum}"
    out.mkdir(parents=True)
    for xsd in (schema_root() / "iwmo" / "3_2").glob("*.xsd"):
        text = re.sub(
            r"<(\w+):BerichtXsdVersie>1\.0\.0</\1:BerichtXsdVersie>",
            r"<\1:BerichtXsdVersie>1.1.0</\1:BerichtXsdVersie>"
            rf"<\1:BerichtXsdMinVersie>{minimum}</\1:BerichtXsdMinVersie>"
            r"<\1:BerichtXsdMaxVersie>1.1.0</\1:BerichtXsdMaxVersie>",
            xsd.read_text(encoding="utf-8"),
        )
        (out / xsd.name).write_text(text, encoding="utf-8")
    return out


def as_33(text: str) -> str:
    text = text.replace("/iwmo/3_2/", "/iwmo/3_3/")
    return text.replace(">2</wmo301:BerichtSubversie>", ">3</wmo301:BerichtSubversie>")


def quoting(text: str, versie: str) -> str:
    """The message quoting BerichtXsdVersie ``versie`` in its header."""
    old = "<iwmo:BerichtXsdVersie>1.0.0</iwmo:BerichtXsdVersie>"
    assert old in text
    return text.replace(old, f"<iwmo:BerichtXsdVersie>{versie}</iwmo:BerichtXsdVersie>")


def rule_ids(report: Any) -> set[str]:
    return {p.rule for p in report.problems}


# --- the catalogue keyed by standard and release ------------------------------------------------


def test_the_catalogue_is_keyed_by_standard_and_release() -> None:
    assert set(by_release()) == {(Standard.IWMO, "3.2"), (Standard.IJW, "3.2")}
    assert "CS002" in by_release()[(Standard.IWMO, "3.2")]
    assert "TR377" not in by_release()[(Standard.IWMO, "3.2")]  # iJw only
    assert has_rules(Standard.IJW, "3.2") and not has_rules(Standard.IWMO, "3.3")
    assert known_releases() == ["iJw 3.2", "iWmo 3.2"]


def test_rules_list_shows_the_release() -> None:
    result = CliRunner().invoke(main, ["rules", "list", "--json", "--message", "WMO301"])
    rows = {r["id"]: r for r in json.loads(result.output)}
    assert rows["CS002"]["release"] == "3.2" and rows["CS002"]["releases"] == [
        "iWmo 3.2",
        "iJw 3.2",
    ]
    assert rows["IV034"]["independent"] is True and rows["CS002"]["independent"] is False
    human = CliRunner().invoke(main, ["rules", "list", "--message", "WMO301"]).output
    assert "CS002  level 2  0001  rule      release 3.2  " in human
    assert "IV034  level 2  -     rule      every release  " in human


def test_rules_list_for_a_release_without_rules_names_only_the_independent_ones() -> None:
    result = CliRunner().invoke(main, ["rules", "list", "--json", "--release", "3.3"])
    assert result.exit_code == 0
    assert [r["id"] for r in json.loads(result.stdout)] == ["IV034"]
    assert "no rules known for release 3.3" in result.stderr


# --- a release without known rules --------------------------------------------------------------


def test_a_33_message_gets_its_xsd_and_no_32_rule(tmp_path: Path) -> None:
    validator = Validator(SchemaRegistry([bundle_33(tmp_path)]))
    clean = validator.validate(as_33(WMO301).encode())
    assert clean.valid, clean.problems
    assert rule_ids(clean) == {"RULES-RELEASE"}
    note = clean.warnings[0]
    assert "iWmo 3.3" in note.message and "IV034" in note.message
    bad = validator.validate(as_33(WMO301.replace(*BAD_BSN)).encode())
    assert "CS002" not in rule_ids(bad) and bad.valid
    broken = validator.validate(as_33(WMO301).replace("999990019", "12345678").encode())
    assert "XSD-PATTERN" in rule_ids(broken) and not broken.valid  # the XSD still holds
    quoting_other = validator.validate(quoting(as_33(WMO301), "1.0.9").encode())
    assert "IV034" in rule_ids(quoting_other)  # the release-independent rule runs
    as_32 = validator.validate(WMO301.replace(*BAD_BSN).encode())  # 3.2 keeps its rules
    assert "CS002" in rule_ids(as_32) and "RULES-RELEASE" not in rule_ids(as_32)


def test_the_unknown_release_is_logged_once_per_message_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    validator = Validator(SchemaRegistry([bundle_33(tmp_path)]))
    for _ in range(3):
        validator.validate(as_33(WMO301).encode())
    logged = capsys.readouterr()
    lines = [x for x in (logged.out + logged.err).splitlines() if "rules_unknown_release" in x]
    assert len(lines) == 1 and "iWmo 3.3" in lines[0] and "999990019" not in lines[0]


# --- an onderhoudsrelease beside 3.2.0 ----------------------------------------------------------


def test_the_xsd_versie_chooses_between_320_and_321(tmp_path: Path) -> None:
    directory = bundle_321(tmp_path)
    registry = SchemaRegistry([directory])
    validator = Validator(registry)
    for versie in ("1.0.0", "1.1.0"):  # each meets the appinfo of its own XSD: no IV034
        report = validator.validate(quoting(WMO301, versie).encode())
        assert report.problems == [], (versie, report.problems)
    namespace = message_namespace(Standard.IWMO, 301)
    assert [f.bericht_xsd_versie for f in registry.versions(namespace)] == ["1.0.0", "1.1.0"]
    chosen = {v: registry.get(namespace, v) for v in ("1.0.0", "1.1.0", "9.9.9")}
    assert chosen["1.0.0"] is not None and chosen["1.0.0"].file.path.parent != directory
    assert chosen["1.1.0"] is not None and chosen["1.1.0"].file.path.parent == directory
    assert chosen["9.9.9"] is not None and chosen["9.9.9"].file.path.parent == directory
    outside = validator.validate(quoting(WMO301, "9.9.9").encode())
    assert rule_ids(outside) == {"IV034"}  # no XSD's range holds it: the newest, and a warning
    assert "CS002" in rule_ids(
        validator.validate(quoting(WMO301, "1.1.0").replace(*BAD_BSN).encode())
    )


def test_a_message_gets_the_xsd_of_its_own_version_before_a_wider_range(tmp_path: Path) -> None:
    """3.2.1 declares 1.1.0 but admits 1.0.0..1.1.0 and is loaded last; a message quoting 1.0.0
    still gets the 1.0.0 XSD it was made with (IV034), one quoting 1.0.5 the 3.2.1 XSD."""
    wide = bundle_321(tmp_path, minimum="1.0.0")
    validator = Validator(SchemaRegistry([wide]))
    assert validator.validate(quoting(WMO301, "1.0.0").encode()).problems == []
    namespace = message_namespace(Standard.IWMO, 301)
    chosen = validator.registry.get(namespace, "1.0.5")
    assert chosen is not None and chosen.file.path.parent == wide


# --- through a real gateway ---------------------------------------------------------------------


def with_schema_dirs(setup: Setup, *directories: Path) -> Setup:
    text = setup.config_path.read_text()
    listed = ", ".join(json.dumps(str(d)) for d in directories)
    text = text.replace("[gateway]\n", f"[gateway]\nschema_dirs = [{listed}]\n", 1)
    setup.config_path.write_text(text)
    return setup


async def submit(setup: Setup, payload: str) -> tuple[int, Any]:
    status, body = await rest(
        setup, "POST", "/api/v1/messages", token=setup.token("0150"), data=payload.encode()
    )
    assert isinstance(body, dict), body
    return status, body


def identificatie(text: str, value: str) -> str:
    return re.sub(
        r"(<iwmo:Identificatie>)[^<]*(</iwmo:Identificatie>)", rf"\g<1>{value}\2", text, count=1
    )


@pytest.mark.slow
async def test_a_real_gateway_keeps_32_rules_off_a_33_message_and_says_so(
    tmp_path: Path, sink: Sink
) -> None:
    setup = with_schema_dirs(
        make_setup(tmp_path / "gw", sink.port), bundle_33(tmp_path), bundle_321(tmp_path)
    )
    async with running(setup):
        status, body = await submit(setup, identificatie(as_33(WMO301.replace(*BAD_BSN)), "R33A"))
        assert status == 202, body
        assert [w["rule"] for w in body["warnings"]] == ["RULES-RELEASE"]
        assert "iWmo 3.3" in body["warnings"][0]["message"]
        # over SOAP the same: a Bv03, not a Fo03 for 3.2's CS002
        payload = identificatie(as_33(WMO301.replace(*BAD_BSN)), "S33A").encode()
        di01 = env.build_di01(
            payload,
            zender="0150",
            zender_applicatie="DOWRsociaal",
            ontvanger="12345678",
            functie="WMO301",
        )
        status, answer = await post_soap(setup, di01, partner="0150")
        assert status == 200 and fo03_code(answer) is None, answer
        # the portal's upload check shows the note beside the report
        client, csrf = await portal_session(setup, "0150")
        async with client:
            form = aiohttp.FormData()
            form.add_field("csrf", csrf)
            form.add_field("action", "check")
            form.add_field("file", payload, filename="wmo301-3.3.xml", content_type="text/xml")
            async with client.post(
                f"{setup.url}/portal/upload", data=form, ssl=setup.ssl_context()
            ) as page:
                html = await page.text()
        assert page.status == 200 and "RULES-RELEASE" in html and "CS002" not in html, html
        # the same fault in a 3.2 message is refused for CS002, whichever 3.2.x XSD it quotes
        for n, versie in enumerate(("1.0.0", "1.1.0")):
            text = identificatie(quoting(WMO301.replace(*BAD_BSN), versie), f"R32B{n}")
            status, body = await submit(setup, text)
            assert status == 422 and "CS002" in json.dumps(body), body
        # a clean 3.2.0 and 3.2.1 message each meet their own XSD: accepted, no IV034 warning
        for n, versie in enumerate(("1.0.0", "1.1.0")):
            status, body = await submit(setup, identificatie(quoting(WMO301, versie), f"R32C{n}"))
            assert status == 202 and "warnings" not in body, (versie, body)


def test_schemas_list_shows_each_xsd_versie_and_the_releases_without_rules(tmp_path: Path) -> None:
    dirs = [str(bundle_33(tmp_path)), str(bundle_321(tmp_path))]
    args = ["schemas", "list", "--json"] + [x for d in dirs for x in ("--schema-dir", d)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = [r for r in json.loads(result.output) if r["message"] == "WMO301"]
    got = sorted((r["release"], r["bericht_xsd_versie"], r["rules"]) for r in rows)
    assert got == [("3.2", "1.0.0", True), ("3.2", "1.1.0", True), ("3.3", "1.0.0", False)]
    human = CliRunner().invoke(main, args[:2] + args[3:]).output
    assert "(no rules known: XSD + independent rules)" in human
