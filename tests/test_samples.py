"""Every valid sample passes; every invalid sample fails for exactly its intended reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import xmlschema

from gateway.standards import MESSAGES
from gateway.validation import Validator
from tests.conftest import ROOT, SAMPLES

VALID = sorted((SAMPLES / "iwmo").glob("*.xml")) + sorted((SAMPLES / "ijw").glob("*.xml"))
ENVELOPES = sorted((SAMPLES / "envelopes").glob("*.xml"))
EXPECTED: dict[str, dict[str, str]] = json.loads(
    (SAMPLES / "invalid" / "expected.json").read_text(encoding="utf-8")
)


def test_there_is_a_valid_sample_for_every_message_type() -> None:
    names = {p.stem.upper() for p in VALID}
    assert names == {m.code for m in MESSAGES.values()}


@pytest.mark.parametrize("path", VALID + ENVELOPES, ids=lambda p: p.name)
def test_valid_sample_passes(validator: Validator, path: Path) -> None:
    report = validator.validate(path.read_bytes(), path.name)
    assert report.problems == [], [p.message for p in report.problems]


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_sample_also_passes_an_independent_validator(path: Path) -> None:
    """xmlschema (pure Python) agrees with libxml2 on our schemas and samples."""
    std, code = path.parent.name, path.stem
    schema = xmlschema.XMLSchema10(str(ROOT / "schemas" / std / "3_2" / f"{code}.xsd"))
    schema.validate(str(path))


def test_every_invalid_sample_is_listed_and_every_listed_exists() -> None:
    on_disk = {p.name for p in (SAMPLES / "invalid").glob("*.xml")}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_invalid_sample_fails_for_exactly_its_rule(validator: Validator, name: str) -> None:
    data = (SAMPLES / "invalid" / name).read_bytes()
    report = validator.validate(data, name)
    assert not report.valid
    expected = [EXPECTED[name]["rule"], *EXPECTED[name].get("also", [])]
    assert [p.rule for p in report.errors] == expected, [(p.rule, p.message) for p in report.errors]
