"""Schema registry: official-bundle quirks, side-by-side releases, compile once, clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.schemas import SchemaError, SchemaRegistry
from gateway.validation import Validator
from tests.conftest import ROOT, TODAY, sample


def _bundle(tmp_path: Path, release: str = "3_2", upper: bool = True) -> Path:
    """Copy our iWmo schemas the way official bundles ship them: 'Basisschema.xsd', 'WMO301.xsd'."""
    target = tmp_path / f"iwmo-{release}"
    target.mkdir()
    for xsd in (ROOT / "schemas" / "iwmo" / "3_2").glob("*.xsd"):
        name = xsd.name.capitalize() if xsd.name == "basisschema.xsd" else xsd.name
        name = name.upper().replace(".XSD", ".xsd") if upper and name != "Basisschema.xsd" else name
        text = xsd.read_text(encoding="utf-8").replace("/3_2/", f"/{release}/")
        if release != "3_2":
            text = text.replace('<xs:pattern value="2"/>', f'<xs:pattern value="{release[-1]}"/>')
        (target / name).write_text(text, encoding="utf-8")
    return target


def test_official_bundle_file_name_case_quirk_resolves(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    assert (bundle / "Basisschema.xsd").exists() and not (bundle / "basisschema.xsd").exists()
    registry = SchemaRegistry([bundle], include_bundled=False)
    assert len(registry.namespaces()) == 14
    assert registry.compile_all() == 14
    report = Validator(registry, today=TODAY).validate(sample("iwmo/wmo301.xml").encode())
    assert report.valid
    assert registry.file_for(report.namespace or "").path.parent == bundle  # type: ignore[union-attr]


def test_two_releases_side_by_side(tmp_path: Path) -> None:
    registry = SchemaRegistry([_bundle(tmp_path, "3_1")])
    validator = Validator(registry, today=TODAY)
    old = (
        sample("iwmo/wmo305.xml")
        .replace("/3_2/", "/3_1/")
        .replace("<wmo305:BerichtSubversie>2<", "<wmo305:BerichtSubversie>1<")
    )
    assert validator.validate(old.encode()).valid
    assert validator.validate(sample("iwmo/wmo305.xml").encode()).valid
    mixed = old.replace("<wmo305:BerichtSubversie>1<", "<wmo305:BerichtSubversie>2<")
    assert [p.rule for p in validator.validate(mixed.encode()).errors] == ["CS015"]


def test_schema_compiled_once_and_reused(registry: SchemaRegistry) -> None:
    ns = "http://www.istandaarden.nl/ijw/3_2/jw301/schema"
    assert registry.get(ns) is registry.get(ns)


def test_later_directory_overrides_same_namespace(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, upper=False)
    registry = SchemaRegistry([bundle])
    described = registry.file_for("http://www.istandaarden.nl/iwmo/3_2/wmo301/schema")
    assert described is not None and described.path.parent == bundle


def test_broken_schema_is_a_clear_error(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, upper=False)
    (bundle / "basisschema.xsd").write_text(
        "<xs:schema xmlns:xs='http://www.w3.org/2001/XMLSchema'><xs:broken/></xs:schema>"
    )
    registry = SchemaRegistry([bundle], include_bundled=False)
    with pytest.raises(SchemaError, match=r"wmo301\.xsd: cannot compile schema"):
        registry.get("http://www.istandaarden.nl/iwmo/3_2/wmo301/schema")


def test_not_a_directory_and_not_a_schema(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="not a directory"):
        SchemaRegistry([tmp_path / "missing"])
    (tmp_path / "x.xsd").write_text("<root/>")
    with pytest.raises(SchemaError, match="not an XML Schema"):
        SchemaRegistry([tmp_path])


def test_no_network_during_schema_import(tmp_path: Path) -> None:
    shutil.copy(ROOT / "schemas" / "iwmo" / "3_2" / "wmo301.xsd", tmp_path / "wmo301.xsd")
    text = (
        (tmp_path / "wmo301.xsd")
        .read_text()
        .replace(
            'schemaLocation="basisschema.xsd"',
            'schemaLocation="http://127.0.0.1:9/basisschema.xsd"',
        )
    )
    (tmp_path / "wmo301.xsd").write_text(text)
    registry = SchemaRegistry([tmp_path], include_bundled=False)
    with pytest.raises(SchemaError):
        registry.get("http://www.istandaarden.nl/iwmo/3_2/wmo301/schema")
