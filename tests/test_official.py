"""Exactness against the official iStandaarden 3.2 material.

* Our XSDs give the official XSDs' verdict on 11,000 probes (every leaf of every sample, 18
  values each): always, from the recorded official verdicts.
* The recorded verdicts are still the official XSDs' (skips without the official material).
* Every official example message gets exactly the verdict its content deserves (skips without
  the material); the faults some examples carry are listed in docs/rules.md.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from lxml import etree

from gateway.schemas import SchemaRegistry
from gateway.validation import Validator
from tests.official import SKIP_REASON, examples, official_root, xml_bytes
from tests.schema_mutations import VERDICTS, official_registry, unpack, verdicts

OFFICIAL = official_root()
needs_official = pytest.mark.skipif(OFFICIAL is None, reason=SKIP_REASON)

# What each official example deserves: the ids of the rules it breaks (empty: valid).
EXAMPLE_VERDICTS: dict[str, set[str]] = {
    "JW301": set(),
    "JW302": set(),
    "JW305": set(),
    "JW306": set(),
    "JW307": set(),
    "JW308": set(),
    "JW315": {"XSD-TYPE"},  # ToewijzingEinddatum 2027-06-31: June has 30 days
    "JW316": set(),
    "JW317": {"CS003"},  # NieuwProduct Einddatum 2024-02-28 before GewensteIngangsdatum
    "JW318": {"XSD-STRUCTURE"},  # a RetourCode directly in Verzoek, outside RetourCodes
    "JW319": set(),
    "JW320": set(),
    "JW323": {"TR101"},  # ReferentieNummer RN004 twice under one client
    "JW325": set(),
    "WMO301": set(),
    "WMO305": set(),
    "WMO307": set(),
    "WMO315": set(),
    "WMO317": set(),
    "WMO319": set(),
    "WMO323": set(),
}


@pytest.mark.slow
def test_our_xsds_give_the_official_verdict_on_every_probe(registry: SchemaRegistry) -> None:
    recorded = unpack(json.loads(VERDICTS.read_text()))
    assert len(recorded) > 10_000 and 0 < sum(recorded.values()) < len(recorded)
    ours = verdicts(registry, set(recorded))
    assert ours.keys() == recorded.keys()
    differing = sorted(k for k in recorded if ours[k] != recorded[k])
    assert not differing, differing[:20]


@needs_official
def test_recorded_verdicts_are_the_official_xsds(tmp_path: Path) -> None:
    assert OFFICIAL is not None
    recorded = unpack(json.loads(VERDICTS.read_text()))
    official = verdicts(official_registry(OFFICIAL, tmp_path), set(recorded))
    assert official == recorded


@needs_official
def test_official_examples_get_the_verdict_their_content_deserves(
    registry: SchemaRegistry,
) -> None:
    assert OFFICIAL is not None
    validator = Validator(registry, today=date(2026, 11, 30))
    seen: dict[str, set[str]] = {}
    for path in examples(OFFICIAL):
        report = validator.validate(xml_bytes(path), path.name)
        seen[path.stem] = {p.rule for p in report.errors}
    assert seen == EXAMPLE_VERDICTS


@needs_official
def test_official_xsds_agree_on_the_examples(tmp_path: Path, registry: SchemaRegistry) -> None:
    """Where an example fails our XSD it fails the official one, and the other way round."""
    assert OFFICIAL is not None
    official = official_registry(OFFICIAL, tmp_path)
    for path in examples(OFFICIAL):
        doc = etree.fromstring(xml_bytes(path))
        namespace = etree.QName(doc).namespace or ""
        theirs, ours = official.get(namespace), registry.get(namespace)
        assert ours is not None
        if theirs is None:
            continue  # the iWmo copies lack the retour XSDs
        assert theirs.xsd.validate(doc) == ours.xsd.validate(doc), path.name
