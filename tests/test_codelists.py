"""The public code lists (issue 31.3, 30.1/30.4): the bundled data with its provenance, the
look-up API, an operator's drop-in list (validated, never a traceback), ``ggk codelists``, and
TR378/TR381 through a real gateway."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from gateway import codelists as package
from gateway.codelists import CodeListError, UnknownList, codelists, configure
from gateway.config import ConfigError
from gateway.config import load as load_config
from gateway.validation import Validator
from kit.gateway import GGK, Setup, Sink, make_setup, rest, running
from tests.conftest import ROOT, SAMPLES, sample

MIRROR = Path("/work/.mirror/i-Sociaal-Lab+jaapjunior/repo")
WMO301 = "iwmo/wmo301.xml"
CATEGORY_02 = "<iwmo:Categorie>02</iwmo:Categorie>\n          <iwmo:Code>02A01<"


def hulpmiddel(code: str) -> str:
    """The WMO301 sample with its category-02 product turned into hulpmiddel ``code`` (11)."""
    text = sample(WMO301)
    assert CATEGORY_02 in text
    return text.replace(
        CATEGORY_02, f"<iwmo:Categorie>11</iwmo:Categorie>\n          <iwmo:Code>{code}<", 1
    )


@pytest.fixture(autouse=True)
def bundled_only() -> Iterator[None]:
    """Each test starts and ends with the bundled lists (the lists in use are process-wide)."""
    configure(None)
    yield
    configure(None)


def product_list(*extra: str) -> dict[str, object]:
    """The bundled iwmo-productcodes-11 as a drop-in document, with ``extra`` codes added."""
    doc: dict[str, object] = json.loads(
        (ROOT / "gateway/codelists/data/iwmo-productcodes-11.json").read_text(encoding="utf-8")
    )
    entries = doc["entries"]
    assert isinstance(entries, list)
    entries += [{"code": c, "name": f"Contractproduct {c}"} for c in extra]
    doc["version"] = "gemeente Deventer, contract 2026"
    return doc


# --- the bundled data ---------------------------------------------------------------------------


def test_the_lists_the_portal_and_the_rules_need_are_bundled_with_their_source() -> None:
    cl = codelists()
    assert cl.name("iwmo-WMO020", "01") == "Hulp bij het huishouden"
    assert cl.name("ijw-JZ020", "45") == "Jeugdhulp ambulant"
    assert cl.name("iwmo-WJ756", "04") == "Uur" and cl.name("ijw-WJ756", "83") == "Euro's"
    assert cl.name("iwmo-WMO757", "2") == "Per week"
    assert cl.name("ijw-JZ588", "38") == "Overstap naar andere aanbieder"
    assert cl.name("iwmo-WMO002", "13") == "Verwijderd"
    assert cl.name("ijw-WJ001", "S300") == "Gemeentecode ongeldig."
    assert cl.entry("ijw-WJ001", "S329").details["TR-regel"] == "TR381"  # type: ignore[union-attr]
    assert cl.name("Fo01", "IB005") is not None
    assert cl.name("gemeentecodes", "0150") == "Deventer"
    assert cl.name("iwmo-productcodes-11", "11X01") is not None
    for code_list in cl:
        s = code_list.source
        assert s.origin == "bundled" and s.repository == "i-Sociaal-Lab/jaapjunior", code_list.name
        assert s.path and s.path.startswith("packages/api/") and len(s.commit or "") == 40
    gemeenten = cl.source("gemeentecodes")
    assert gemeenten.date == date(2026, 1, 1) and "2026" in (gemeenten.version or "")
    assert cl.for_type("ijw", "LDT_ProductCategorie").name == "ijw-JZ020"  # type: ignore[union-attr]
    assert cl.for_type("iwmo", "LDT_Gemeente").name == "gemeentecodes"  # type: ignore[union-attr]


def test_look_ups_of_unknown_lists_and_codes() -> None:
    cl = codelists()
    assert cl.name("iwmo-WMO020", "99") is None and cl.entry("nope", "01") is None
    assert not cl.valid_on("nope", "01", date(2026, 1, 1))
    with pytest.raises(UnknownList):
        cl.source("nope")


def test_the_lists_in_use_are_cached_and_cannot_be_changed() -> None:
    cl = codelists()
    assert codelists() is cl
    entry = cl.entry("iwmo-WMO020", "01")
    assert entry is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cl.lists["x"] = cl.lists["gemeentecodes"]  # type: ignore[index]
    with pytest.raises(TypeError):
        entry.details["x"] = "y"  # type: ignore[index]


@pytest.mark.skipif(not MIRROR.is_dir(), reason="the mirror of i-Sociaal-Lab/jaapjunior is absent")
def test_the_shipped_data_is_what_the_generator_writes_from_the_mirror(tmp_path: Path) -> None:
    shipped = ROOT / "gateway/codelists/data"
    commit = json.loads((shipped / "gemeentecodes.json").read_text())["source"]["commit"]
    subprocess.run(
        [sys.executable, ROOT / "scripts/make_codelists.py", "--commit", commit, "--out", tmp_path],
        check=True,
        capture_output=True,
    )
    written = {p.name: p.read_bytes() for p in tmp_path.glob("*.json")}
    assert written == {p.name: p.read_bytes() for p in shipped.glob("*.json")}


# --- dates and the drop-in directory --------------------------------------------------------------


def test_validity_dates_bound_a_code_both_days_included(tmp_path: Path) -> None:
    doc = {
        "name": "gemeentecodes",
        "entries": [
            {"code": "0150", "name": "Deventer", "end": "2025-12-31"},
            {"code": "1999", "name": "Nieuwe gemeente", "begin": "2026-01-01"},
        ],
    }
    (tmp_path / "cbs.json").write_text(json.dumps(doc))
    cl = configure(tmp_path)
    assert cl.valid_on("gemeentecodes", "0150", date(2025, 12, 31))
    assert not cl.valid_on("gemeentecodes", "0150", date(2026, 1, 1))
    assert not cl.valid_on("gemeentecodes", "1999", date(2025, 12, 31))
    assert cl.valid_on("gemeentecodes", "1999", date(2026, 1, 1))
    assert cl.replaced == {"gemeentecodes"}
    assert cl.source("gemeentecodes").origin == str(tmp_path / "cbs.json")
    assert codelists() is cl


@pytest.mark.parametrize(
    ("content", "fault"),
    [
        (b"{", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[]", "not a JSON object"),
        (b'{"entries": [{"code": "1", "name": "a"}]}', "name is missing"),
        (b'{"name": "../x", "entries": [{"code": "1", "name": "a"}]}', "name '../x'"),
        (b'{"name": "x", "entries": []}', "entries is not a non-empty list"),
        (b'{"name": "x", "entries": [{"code": "1"}]}', "entries[0]: name is missing"),
        (
            b'{"name": "x", "entries": [{"code": "1", "name": "a"}, {"code": "1", "name": "b"}]}',
            "entries[1]: code '1' is listed twice",
        ),
        (
            b'{"name": "x", "entries": [{"code": "1", "name": "a", "begin": "2026-02-30"}]}',
            "begin '2026-02-30' is not a date",
        ),
        (
            b'{"name": "x", "entries": [{"code": "1", "name": "a", "begin": "2026-02-01",'
            b' "end": "2026-01-01"}]}',
            "ends (2026-01-01) before it begins",
        ),
        (b'{"name": "x", "format": 2, "entries": [{"code": "1", "name": "a"}]}', "format 2"),
        (b'{"name": "x", "entries": [{"code": "a b", "name": "a"}]}', "has spaces"),
    ],
)
def test_a_malformed_drop_in_is_refused_with_its_file_and_fault(
    tmp_path: Path, content: bytes, fault: str
) -> None:
    (tmp_path / "bad.json").write_bytes(content)
    with pytest.raises(CodeListError) as caught:
        configure(tmp_path)
    assert str(tmp_path / "bad.json") in str(caught.value) and fault in str(caught.value)
    assert codelists().replaced == frozenset()  # the lists in use are unchanged


def test_two_drop_in_files_with_one_list_are_refused(tmp_path: Path) -> None:
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text(json.dumps(product_list()))
    with pytest.raises(CodeListError, match="also in"):
        configure(tmp_path)


# --- the rules ----------------------------------------------------------------------------------


def codes(validator: Validator, text: str) -> set[tuple[str, str | None]]:
    report = validator.validate(text.encode(), WMO301)
    assert not [p for p in report.problems if p.rule.startswith("XSD")], report.problems
    return {(p.rule, p.retourcode) for p in report.problems}


def test_tr378_allows_an_older_list_for_the_dates_the_message_is_about(
    validator: Validator, tmp_path: Path
) -> None:
    """Deventer (0150) dissolved at a herindeling: a 301 dated after it is refused (S300),
    unless it is about a toewijzing from before (its Ingangsdatum), as TR378's text allows."""
    text = sample(WMO301)
    assert ("TR378", "S300") not in codes(validator, text)
    doc = {"name": "gemeentecodes", "entries": [{"code": "0150", "name": "Deventer"}]}
    doc["entries"][0]["end"] = "2026-09-30"  # type: ignore[index]
    (tmp_path / "gemeentecodes.json").write_text(json.dumps(doc))
    configure(tmp_path)
    assert ("TR378", "S300") in codes(validator, text)  # Dagtekening, Ingangsdatum: October
    older = text.replace("<wmo301:Ingangsdatum>2026-10-05<", "<wmo301:Ingangsdatum>2026-09-01<", 1)
    assert older != text
    assert ("TR378", "S300") not in codes(validator, older)


def test_tr381_only_judges_categories_it_has_a_list_for(validator: Validator) -> None:
    assert ("TR381", "S329") in codes(validator, hulpmiddel("11X98"))
    assert ("TR381", "S329") not in codes(validator, hulpmiddel("11X01"))
    other = sample(WMO301).replace("<iwmo:Code>02A01<", "<iwmo:Code>99Z99<", 1)
    assert "TR381" not in {rule for rule, _ in codes(validator, other)}


# --- ggk codelists ------------------------------------------------------------------------------


def with_directory(setup_dir: Path) -> Path:
    config = setup_dir / "gateway.toml"
    config.write_text(config.read_text() + '\n[codelists]\ndirectory = "codelists"\n')
    return config


def test_ggk_codelists_list_and_show() -> None:
    runner = CliRunner()
    done = runner.invoke(main, ["codelists", "list", "--json", "--config", "absent.toml"])
    assert done.exit_code == 2 and "absent.toml" in done.output  # an explicit config must exist
    done = runner.invoke(main, ["codelists", "list", "--json"])
    assert done.exit_code == 0, done.output
    names = {row["name"]: row for row in json.loads(done.output)["lists"]}
    assert names["gemeentecodes"]["entries"] == 342
    done = runner.invoke(main, ["codelists", "show", "iwmo-WMO020"])
    assert done.exit_code == 0 and "01       Hulp bij het huishouden" in done.output
    assert "i-Sociaal-Lab/jaapjunior@" in done.output
    done = runner.invoke(main, ["codelists", "show", "nope"])
    assert done.exit_code == 2 and "no code list named 'nope'" in done.output


def test_ggk_codelists_update_validates_installs_and_says_what_changed(tmp_path: Path) -> None:
    (tmp_path / "gw").mkdir()
    (tmp_path / "gw/gateway.toml").write_text('[gateway]\nhost = "127.0.0.1"\nplain_http = true\n')
    runner = CliRunner()
    good = tmp_path / "mine.json"
    good.write_text(json.dumps(product_list("11X98")))
    # no [codelists] directory configured: a usage error
    done = runner.invoke(
        main, ["codelists", "update", str(good), "--config", str(tmp_path / "gw/gateway.toml")]
    )
    assert done.exit_code == 2 and "[codelists] directory" in done.output
    config = with_directory(tmp_path / "gw")
    args = ["--config", str(config)]
    assert (
        runner.invoke(main, ["codelists", "update", str(tmp_path / "nothing"), *args]).exit_code
        == 2
    )
    # a malformed file: exit 1, its fault, nothing installed (the good one neither)
    folder = tmp_path / "lists"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(product_list("11X98")))
    (folder / "b.json").write_text('{"name": "iwmo-WMO020", "entries": [{"code": "01"}]}')
    done = runner.invoke(main, ["codelists", "update", str(folder), *args])
    assert done.exit_code == 1 and "b.json: entries[0]: name is missing" in done.output
    assert "Traceback" not in done.output and not (tmp_path / "gw/codelists").exists()
    # dry run: says what would change, installs nothing
    done = runner.invoke(main, ["codelists", "update", str(good), "--dry-run", *args])
    assert done.exit_code == 0 and "would install iwmo-productcodes-11" in done.output
    assert "37 → 38 codes; added 11X98" in done.output
    assert not (tmp_path / "gw/codelists").exists()
    done = runner.invoke(main, ["codelists", "update", str(good), *args])
    assert done.exit_code == 0, done.output
    assert "installed iwmo-productcodes-11" in done.output and "replaces bundled" in done.output
    installed = tmp_path / "gw/codelists/iwmo-productcodes-11.json"
    assert installed.read_bytes() == good.read_bytes()
    done = runner.invoke(main, ["codelists", "show", "iwmo-productcodes-11", "--json", *args])
    shown = json.loads(done.output)
    assert shown["origin"] == str(installed) and "11X98" in {c["code"] for c in shown["codes"]}
    # again: nothing changes, against the installed drop-in now
    done = runner.invoke(main, ["codelists", "update", str(good), *args])
    assert "no change in codes (38), replaces " + str(installed) in done.output


# --- through a real gateway -----------------------------------------------------------------------


@pytest.fixture
def setup(tmp_path: Path, sink: Sink) -> Setup:
    built = make_setup(tmp_path / "gw", sink.port)
    with_directory(built.directory)
    return built


async def submit(setup: Setup, payload: str) -> tuple[int, object]:
    return await rest(
        setup,
        "POST",
        "/api/v1/messages",
        token=setup.token("0150"),
        data=payload.encode(),
        headers={"Content-Type": "application/xml"},
    )


async def test_a_drop_in_product_list_makes_a_refused_code_pass_through_the_gateway(
    setup: Setup, tmp_path: Path
) -> None:
    wrong = hulpmiddel("11X98").replace("WMO301A0001", "CODES0000001")
    async with running(setup):
        status, body = await submit(setup, wrong)
        assert status == 422 and isinstance(body, dict), body
        assert body["code"] == "StUF058" and "TR381" in json.dumps(body), body
        assert "S329" in json.dumps(body), body
        status, body = await submit(
            setup, hulpmiddel("11X01").replace("WMO301A0001", "CODES0000002")
        )
        assert status == 202, body
    mine = tmp_path / "contract.json"
    mine.write_text(json.dumps(product_list("11X98")))
    done = subprocess.run(
        [GGK, "codelists", "update", str(mine), "--config", str(setup.config_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "added 11X98" in done.stdout, done.stdout + done.stderr
    async with running(setup):  # the gateway reads the lists when it starts
        assert package.codelists().replaced == {"iwmo-productcodes-11"}
        status, body = await submit(setup, wrong.replace("CODES0000001", "CODES0000003"))
        assert status == 202, body


async def test_a_malformed_drop_in_stops_the_start_with_a_clear_error(setup: Setup) -> None:
    folder = setup.directory / "codelists"
    folder.mkdir()
    (folder / "broken.json").write_text("{not json")
    done = subprocess.run(
        [GGK, "serve", "--config", str(setup.config_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot start" in done.stderr and "broken.json: not JSON" in done.stderr
    assert "Traceback" not in done.stderr


def test_samples_pass_both_rules(validator: Validator) -> None:
    for path in sorted((SAMPLES / "iwmo").glob("*.xml")) + sorted((SAMPLES / "ijw").glob("*.xml")):
        report = validator.validate(path.read_bytes(), path.name)
        assert not {"TR378", "TR381"} & {p.rule for p in report.problems}, path.name


def test_every_datatype_is_a_type_of_the_schemas_so_the_portal_finds_the_list() -> None:
    """``for_type`` maps a value's XSD type to its list: the data must name real types."""
    for code_list in codelists():
        if code_list.datatype is None or code_list.category is not None:
            continue
        standards = [code_list.standard] if code_list.standard else ["iwmo", "ijw"]
        for standard in standards:
            xsd = (ROOT / "schemas" / standard / "3_2" / "basisschema.xsd").read_text()
            assert re.search(rf'simpleType name="{code_list.datatype}"', xsd), code_list.name
            assert codelists().for_type(standard, code_list.datatype) is not None


def test_the_codelists_table_of_the_configuration(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\nplain_http = true\n[codelists]\ndirectory = "lists"\n')
    assert load_config(config).codelists_dir == tmp_path / "lists"
    config.write_text('[gateway]\nplain_http = true\n[codelists]\ndirectroy = "lists"\n')
    with pytest.raises(ConfigError, match="directroy"):
        load_config(config)
    config.write_text("[gateway]\nplain_http = true\n")
    assert load_config(config).codelists_dir is None


def test_a_gemeentecodes_list_from_before_this_years_indeling_is_called_stale() -> None:
    cl = codelists()
    assert package.stale_gemeentecodes(cl, date(2026, 12, 31)) is None
    why = package.stale_gemeentecodes(cl, date(2027, 1, 1))
    assert why is not None and "1 January 2027" in why


def test_ggk_validate_checks_with_drop_in_lists(tmp_path: Path) -> None:
    message = tmp_path / "wmo301.xml"
    message.write_text(hulpmiddel("11X98"))
    runner = CliRunner()
    done = runner.invoke(main, ["validate", str(message), "--json"])
    assert done.exit_code == 1 and "TR381" in done.output and "S329" in done.output
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "contract.json").write_text(json.dumps(product_list("11X98")))
    done = runner.invoke(main, ["validate", str(message), "--codelists", str(lists)])
    assert done.exit_code == 0, done.output
    (lists / "contract.json").write_text("{")
    done = runner.invoke(main, ["validate", str(message), "--codelists", str(lists)])
    assert done.exit_code == 2 and "contract.json: not JSON" in done.output


def test_an_exported_list_edited_and_installed_replaces_the_list(tmp_path: Path) -> None:
    (tmp_path / "gw").mkdir()
    (tmp_path / "gw/gateway.toml").write_text("[gateway]\nplain_http = true\n")
    args = ["--config", str(with_directory(tmp_path / "gw"))]
    runner = CliRunner()
    done = runner.invoke(main, ["codelists", "export", "gemeentecodes", *args])
    assert done.exit_code == 0, done.output
    doc = json.loads(done.output)
    assert doc["source"]["repository"] == "i-Sociaal-Lab/jaapjunior" and len(doc["entries"]) == 342
    doc["entries"].append({"code": "0999", "name": "Nieuwe gemeente", "begin": "2027-01-01"})
    doc["version"] = "CBS gemeentelijke indeling per 2027-01-01"
    edited = tmp_path / "gemeentecodes-2027.json"
    edited.write_text(json.dumps(doc))
    done = runner.invoke(main, ["codelists", "update", str(edited), *args])
    assert done.exit_code == 0 and "342 → 343 codes; added 0999" in done.output, done.output
    lists = configure(tmp_path / "gw/codelists")
    assert lists.valid_on("gemeentecodes", "0999", date(2027, 1, 1))
    assert not lists.valid_on("gemeentecodes", "0999", date(2026, 12, 31))
    assert lists.source("gemeentecodes").version == doc["version"]
    assert runner.invoke(main, ["codelists", "export", "nope", *args]).exit_code == 2
