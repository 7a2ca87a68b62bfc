"""The project's XSDs: in step with the spec, exact to the facts sheet where it matters."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import xmlschema
from lxml import etree

from gateway.standards import MESSAGES, Kind, Standard, basis_namespace, message_namespace
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import generate_schemas

XS = "{http://www.w3.org/2001/XMLSchema}"
SCHEMAS = ROOT / "schemas"


def _xsd(std: Standard, name: str) -> etree._Element:
    return etree.parse(str(SCHEMAS / std.value / "3_2" / f"{name}.xsd")).getroot()


def _sequence(schema: etree._Element, type_name: str) -> list[tuple[str, str, str]]:
    ctype = schema.find(f"{XS}complexType[@name='{type_name}']")
    assert ctype is not None, type_name
    return [
        (e.get("name", ""), e.get("minOccurs", "1"), e.get("maxOccurs", "1"))
        for e in ctype.iterfind(f"{XS}sequence/{XS}element")
    ]


def test_committed_schemas_equal_what_the_spec_generates() -> None:
    for path, content in generate_schemas.generate().items():
        assert path.read_bytes() == content, f"{path} is stale: run scripts/generate_schemas.py"


@pytest.mark.parametrize("msg", list(MESSAGES.values()), ids=lambda m: m.code)
def test_message_schema_namespace_root_and_import(msg: object) -> None:
    from gateway.standards import MessageType

    assert isinstance(msg, MessageType)
    schema = _xsd(msg.standard, msg.code.lower())
    assert schema.get("targetNamespace") == message_namespace(msg.standard, msg.number)
    assert schema.get("elementFormDefault") == "qualified"
    imp = schema.find(f"{XS}import")
    assert imp is not None
    assert imp.get("namespace") == basis_namespace(msg.standard)
    assert imp.get("schemaLocation") == "basisschema.xsd"
    globals_ = [e.get("name") for e in schema.iterfind(f"{XS}element")]
    assert globals_ == ["Bericht"]
    code = schema.find(
        f"{XS}complexType[@name='Header']//{XS}element[@name='BerichtCode']//{XS}pattern"
    )
    assert code is not None and code.get("value") == msg.bericht_code


HEEN_HEADER = [
    "BerichtCode",
    "BerichtVersie",
    "BerichtSubversie",
    "Afzender",
    "Ontvanger",
    "BerichtIdentificatie",
    "XsdVersie",
]


def test_header_variants_have_the_exact_order_and_cardinality() -> None:
    heen = _sequence(_xsd(Standard.IWMO, "wmo301"), "Header")
    assert [n for n, _, _ in heen] == HEEN_HEADER
    retour = _sequence(_xsd(Standard.IJW, "jw302"), "Header")
    assert retour[7:] == [
        ("IdentificatieRetour", "1", "1"),
        ("DagtekeningRetour", "1", "1"),
        ("XsltVersie", "0", "1"),
        ("XsdVersieRetour", "1", "1"),
        ("RetourCodes", "0", "1"),
    ]
    antwoord = _sequence(_xsd(Standard.IWMO, "wmo325"), "Header")
    assert antwoord[7:] == [
        ("DeclaratieIdentificatie", "1", "1"),
        ("XsltVersie", "0", "1"),
        ("XsdVersieDeclaratie", "1", "1"),
        ("RetourCodes", "1", "1"),
    ]


def test_header_party_types_follow_direction_and_retour_copy_rule() -> None:
    def types(std: Standard, name: str) -> tuple[str | None, str | None]:
        header = _xsd(std, name).find(f"{XS}complexType[@name='Header']")
        assert header is not None
        afz = header.find(f".//{XS}element[@name='Afzender']")
        ont = header.find(f".//{XS}element[@name='Ontvanger']")
        assert afz is not None and ont is not None
        return afz.get("type"), ont.get("type")

    assert types(Standard.IWMO, "wmo301") == ("iwmo:LDT_Gemeente", "iwmo:LDT_AgbCode")
    assert types(Standard.IWMO, "wmo302") == ("iwmo:LDT_Gemeente", "iwmo:LDT_AgbCode")
    assert types(Standard.IJW, "jw305") == ("ijw:LDT_AgbCode", "ijw:LDT_Gemeente")
    assert types(Standard.IJW, "jw306") == ("ijw:LDT_AgbCode", "ijw:LDT_Gemeente")


RETOUR_CLASSES = {
    302: {"Client", "Relatie", "Contact", "ToegewezenProduct"},
    306: {"Client", "StartProduct"},
    308: {"Client", "StopProduct"},
    316: {"Client", "AangevraagdProduct"},
    318: {"Client", "Verzoek", "OngewijzigdProduct", "TeWijzigenProduct", "NieuwProduct"},
}


@pytest.mark.parametrize("std", list(Standard))
def test_retour_classes_end_with_retourcodes_exactly_per_table_2_3(std: Standard) -> None:
    expected = dict(RETOUR_CLASSES)
    expected[320] = {"Antwoord", "Woonplaatsbeginsel"} if std is Standard.IJW else {"Antwoord"}
    for number, classes in expected.items():
        schema = _xsd(std, f"{std.message_prefix.lower()}{number}")
        with_codes = set()
        for ctype in schema.iterfind(f"{XS}complexType"):
            seq = _sequence(schema, ctype.get("name", ""))
            if ctype.get("name") != "Header" and seq and seq[-1][0] == "RetourCodes":
                assert seq[-1][1:] == ("1", "1")
                with_codes.add(ctype.get("name"))
        assert with_codes == classes, (number, with_codes)
        root = _sequence(schema, "Root")
        assert root[1][1] == "0", "the body of a retour is 0..1"


def test_ijw_differs_from_iwmo_only_where_the_sheet_says() -> None:
    wmo315 = [n for n, _, _ in _sequence(_xsd(Standard.IWMO, "wmo315"), "Client")]
    jw315 = [n for n, _, _ in _sequence(_xsd(Standard.IJW, "jw315"), "Client")]
    assert jw315 == [*wmo315[:4], "GezagsdragerBekend", *wmo315[4:]]
    wmo319 = [n for n, _, _ in _sequence(_xsd(Standard.IWMO, "wmo319"), "Antwoord")]
    jw319 = [n for n, _, _ in _sequence(_xsd(Standard.IJW, "jw319"), "Antwoord")]
    assert jw319 == [*wmo319, "Woonplaatsbeginsel"]


def test_declaratie_structure() -> None:
    schema = _xsd(Standard.IWMO, "wmo323")
    assert [n for n, _, _ in _sequence(schema, "Prestatie")] == [
        "ProductReferentie",
        "ToewijzingNummer",
        "ProductCategorie",
        "ProductCode",
        "ProductPeriode",
        "GeleverdVolume",
        "Eenheid",
        "ProductTarief",
        "IngediendBedrag",
    ]
    assert _sequence(schema, "Clienten") == [("Client", "1", "unbounded")]
    antwoord = _xsd(Standard.IWMO, "wmo325")
    assert _sequence(antwoord, "Root")[1] == ("DeclaratieAntwoord", "0", "1")
    assert _sequence(antwoord, "DeclaratieAntwoord")[3] == ("Clienten", "0", "1")


def test_basisschema_appinfo_and_code_lists() -> None:
    basis = _xsd(Standard.IJW, "basisschema")
    cats = [
        e.get("value")
        for e in basis.iterfind(f"{XS}simpleType[@name='LDT_ProductCategorie']//{XS}enumeration")
    ]
    assert "45" in cats and "02" not in cats
    land = basis.findall(f"{XS}simpleType[@name='LDT_LandCode']//{XS}enumeration")
    assert len(land) == 249


INCLUDED_ONLY = {"basisschema.xsd", "xmlmime.xsd", "ggk0210_stuf.xsd", "ggk0310_stuf.xsd"}
"""Files that are only meaningful through the schema that imports them (loaded with it)."""


@pytest.mark.parametrize(
    "path",
    [p for p in sorted(SCHEMAS.rglob("*.xsd")) if p.name not in INCLUDED_ONLY],
    ids=lambda p: p.name,
)
def test_every_schema_is_valid_xsd_10_for_an_independent_processor(path: Path) -> None:
    xmlschema.XMLSchema10(str(path))


def test_kind_catalogue_matches_schema_count() -> None:
    retours = [m for m in MESSAGES.values() if m.kind is Kind.RETOUR]
    assert len(MESSAGES) == 28 and len(retours) == 12
