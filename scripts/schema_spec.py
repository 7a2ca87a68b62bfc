"""The iWmo/iJw 3.2 message structures as data (facts sheet sections 2 and 3).

This module is the single written-down form of the element trees; ``generate_schemas.py`` turns
it into the XSD files under ``schemas/``. Keeping the trees as data lets the retour derivation
rule (facts sheet 2.3) be applied mechanically instead of by hand 12 times.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.standards import Standard

UNBOUNDED = "unbounded"


@dataclass(frozen=True)
class El:
    """An element of a basisschema type (``LDT_…``/``CDT_…``) or of a message-local type."""

    name: str
    type: str
    min: int = 1
    max: str = "1"


@dataclass(frozen=True)
class Cls:
    """An element with a local complex type named after it (a berichtklasse or a wrapper).

    ``retour`` marks the classes that get a trailing ``RetourCodes`` in the retourbericht.
    """

    name: str
    children: tuple[Node, ...]
    min: int = 1
    max: str = "1"
    retour: bool = False


Node = El | Cls


@dataclass(frozen=True)
class Inline:
    """An anonymous restriction of a basisschema type by one pattern (BerichtCode & co)."""

    base: str
    pattern: str


@dataclass(frozen=True)
class SimpleType:
    name: str
    base: str
    facets: tuple[tuple[str, str], ...] = ()
    enumeration: tuple[str, ...] = ()
    doc: str = ""


@dataclass(frozen=True)
class ComplexType:
    name: str
    children: tuple[El, ...]
    doc: str = ""


@dataclass
class MessageSpec:
    number: int
    body: tuple[Node, ...]
    header: str = "heen"  # heen | retour | declaratie-antwoord
    extra_types: dict[str, tuple[Node, ...]] = field(default_factory=dict)


NB = ("pattern", r".*[^\s].*")
# Free text: at least one non-space character, line breaks allowed ("." stops at a line end).
# Accepts exactly what the official ``([.\s]*\S+[.\s]*)+`` accepts, without its nested
# quantifiers (exponential backtracking in a backtracking regex engine such as Python's).
FREE_TEXT = ("pattern", r"\s*\S[\s\S]*")


def _text(
    name: str,
    max_len: int | None,
    doc: str,
    min_len: int = 1,
    pattern: tuple[str, str] | None = NB,
) -> SimpleType:
    """A string type; ``pattern`` None where the official type has lengths only."""
    facets: list[tuple[str, str]] = [("minLength", str(min_len))]
    if max_len is not None:
        facets.append(("maxLength", str(max_len)))
    if pattern is not None:
        facets.append(pattern)
    return SimpleType(name, "xs:string", tuple(facets), doc=doc)


def _code(name: str, max_len: int, values: list[str], doc: str) -> SimpleType:
    return SimpleType(name, "xs:string", (("maxLength", str(max_len)),), tuple(values), doc)


def _int(name: str, lo: int, hi: int, doc: str) -> SimpleType:
    return SimpleType(
        name, "xs:integer", (("minInclusive", str(lo)), ("maxInclusive", str(hi))), doc=doc
    )


COUNTRIES = (
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ "
    "BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM "
    "DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS "
    "GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN "
    "KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ "
    "MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM "
    "PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV "
    "SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI "
    "VN VU WF WS YE YT ZA ZM ZW"
).split()

RETOURCODES_WJ001 = (
    "0001 0200 0233 8848 9056 S300 S329 9019 9063 9069 9071 9074 9326 9413 9414 9415 9332 9379 "
    "9385 9347 9374 8187 9349 9350 9351 9357 9361 9373 9375 9411 9412 9355 9359 9360 9365 0611 "
    "8001 8017 8021 8214 9307 9308 9319 9321 9322 9333 9338 9339 9340 9341 9346 9369 9384 9387 "
    "9388 9389 9390 9366 9367"
).split()

PRODUCTCATEGORIE = {
    Standard.IWMO: [f"{n:02d}" for n in range(1, 19)],  # WMO020 (2.1 values; see README)
    Standard.IJW: [str(n) for n in range(31, 39)] + [str(n) for n in range(40, 56)],  # JZ020
}
REDEN_BEEINDIGING = {
    Standard.IWMO: ["02", "19", "20", "21", "22", "23", "31", "36", "37", "38", "39"],  # WMO588
    Standard.IJW: ["02", "20", "31", "32", "33", "34", "35", "36", "37", "38", "39"],  # JZ588
}


def simple_types(std: Standard) -> list[SimpleType]:
    """The basisschema's LDT_ types (facts sheet 3.3; 3.2 facts win over 2.1 facets)."""
    s = std
    return [
        SimpleType(
            "LDT_AanduidingWoonadres",
            "xs:string",
            (("maxLength", "2"),),
            ("AB", "BY", "TO", "WW"),
            "NUM061",
        ),
        _code("LDT_AdresSoort", 2, ["01", "02", "03", "04"], "COD757"),
        SimpleType(
            "LDT_AgbCode",
            "xs:string",
            (("maxLength", "8"), ("pattern", "[0-9]{8}")),
            doc="AGB-code, 8 digits (RS014, RS036)",
        ),
        _int("LDT_Bedrag", 0, 99999999, "Amount in euro-cents (RS001/RS005, IV024)"),
        SimpleType(
            "LDT_BerichtCode",
            "xs:string",
            (("minLength", "1"), ("maxLength", "3")),
            doc="COD002-VEKT; pinned per message by an inline pattern (RS010, RS047)",
        ),
        SimpleType(
            "LDT_BerichtSubversie",
            "xs:integer",
            (("minInclusive", "0"), ("maxInclusive", "99")),
            doc="CS015 pins 2",
        ),
        SimpleType(
            "LDT_BerichtVersie",
            "xs:integer",
            (("minInclusive", "0"), ("maxInclusive", "99")),
            doc="CS025 pins 3",
        ),
        _int("LDT_Budget", 0, 99999999, "Budget in euro-cents (RS001/RS005)"),
        SimpleType(
            "LDT_BurgerServicenummer",
            "xs:string",
            (("maxLength", "9"), ("pattern", "[0-9]{9}")),
            doc="BSN, 9 digits (RS015, RS037); eleven-test CS002 is a business rule",
        ),
        _text(
            "LDT_Commentaar",
            None,
            "Free text, not empty (RS031), line breaks allowed; no maximum length",
            pattern=FREE_TEXT,
        ),
        _code("LDT_Communicatievorm", 1, ["1", "2", "3"], "COD747"),
        SimpleType(
            "LDT_Datum", "xs:date", (("pattern", "[^:Z]*"),), doc="Date without time zone (RS032)"
        ),
        _code("LDT_DatumGebruik", 1, ["1", "2", "3"], "COD170"),
        _code("LDT_DebetCredit", 1, ["C", "D"], "COD043"),
        _code("LDT_Eenheid", 2, ["01", "04", "14", "16", "82", "83", "84"], "WJ756"),
        _text("LDT_Emailadres", 80, "RS026"),
        _code("LDT_Frequentie", 1, ["1", "2", "4", "6"], "WMO757"),
        SimpleType(
            "LDT_Gemeente",
            "xs:string",
            (("maxLength", "4"), ("pattern", "[0-9]{4}")),
            doc="CBS gemeentecode, 4 digits (RS035)",
        ),
        _code("LDT_Geslacht", 1, ["0", "1", "2"], "COD046"),
        _text("LDT_Huisletter", 1, "RS033"),
        _int("LDT_Huisnummer", 0, 99999, "RS001/RS004"),
        _text("LDT_HuisnummerToevoeging", 4, "RS011"),
        _text("LDT_IdentificatieBericht", 12, "RS017, RS033"),
        _text(
            "LDT_IdentificatieDeclaratie",
            12,
            "RS017; CS319 applies in WMO323/JW323",
            pattern=None,
        ),
        _code("LDT_JaNee", 1, ["1", "2"], "COD260"),
        _code("LDT_JuridischeStatus", 2, ["01", "02", "03", "04", "05", "11", "12"], "WJ232"),
        _code("LDT_LandCode", 2, COUNTRIES, "COD032"),
        _text("LDT_Landnummer", 4, "RS011"),
        _text("LDT_Naam", 200, "RS028, RS033"),
        _code("LDT_NaamGebruik", 1, ["1", "2", "3", "4", "5", "6"], "COD700"),
        _text("LDT_NaamVerwijzer", 64, "RS025"),
        _int("LDT_Nummer", 0, 999999999, "ToewijzingNummer, BeschikkingNummer (RS006)"),
        _text("LDT_Organisatienaam", 35, "RS023"),
        _text("LDT_Persoonsid", 20, "RS019"),
        _text("LDT_Plaatsnaam", 80, "RS026"),
        _text("LDT_Postcode", 8, "Dutch format when LandCode = NL is CS089"),
        _code(
            "LDT_ProductCategorie",
            2,
            PRODUCTCATEGORIE[s],
            "WMO020" if s is Standard.IWMO else "JZ020",
        ),
        _text("LDT_ProductCode", 5, "RS012; list 021 or contract-specific"),
        _code("LDT_RedenAfwijzingVerzoek", 2, [str(n) for n in range(1, 10)], "WJ759"),
        _code(
            "LDT_RedenBeeindiging",
            2,
            REDEN_BEEINDIGING[s],
            "WMO588" if s is Standard.IWMO else "JZ588",
        ),
        _code("LDT_RedenVerzoek", 1, ["1", "2"], "WJ758"),
        _code("LDT_RedenWijziging", 2, [f"{n:02d}" for n in range(1, 15)], "WMO002/JZ002"),
        _text("LDT_Referentie", 36, "ReferentieAanbieder (RS024)"),
        _text("LDT_ReferentieNummer", 20, "ProductReferentie numbers (RS019)", pattern=None),
        _int("LDT_RelatieVolgorde", 0, 99, "RS001/RS002"),
        _code("LDT_RetourCode", 4, RETOURCODES_WJ001, "WJ001"),
        _code("LDT_SoortRelatie", 2, [f"{n:02d}" for n in range(3, 26)], "COD472"),
        _code("LDT_StatusAanlevering", 1, ["1", "2", "3", "9"], "COD467; CS058 allows 1 and 3"),
        _text("LDT_Straatnaam", 24, "RS020"),
        _text("LDT_Taal", 25, "RS021"),
        SimpleType(
            "LDT_Telefoonnummer",
            "xs:string",
            (("minLength", "1"), ("maxLength", "15"), ("pattern", "[0-9]+")),
            doc="Digits only (RS018, RS046)",
        ),
        SimpleType(
            "LDT_Tijd", "xs:time", (("pattern", "[^Z+\\-]+"),), doc="Time without time zone (RS034)"
        ),
        _int("LDT_TotaalBedrag", 0, 999999999999, "RS001/RS040"),
        _code("LDT_TypeVerwijzer", 2, ["01", "02", "03", "04", "05", "06", "08"], "COD327"),
        SimpleType(
            "LDT_Versie",
            "xs:string",
            (("minLength", "1"), ("pattern", r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")),
            doc="Three dot-separated integers (RS048)",
        ),
        SimpleType(
            "LDT_Voorletters",
            "xs:string",
            (("minLength", "1"), ("maxLength", "6"), ("pattern", "[a-zA-ZÀ-ỳ]+")),
            doc="Letters written together (RS013, RS045)",
        ),
        _text("LDT_Voorvoegsel", 10, "RS016"),
        _int("LDT_Volume", 0, 99999999, "RS001/RS005"),
        _code("LDT_VerzoekAntwoord", 1, ["1", "2"], "WJ760"),
        _code("LDT_WettelijkeVertegenwoordiging", 2, ["06", "07", "08", "09", "10"], "WJ003"),
    ]


def complex_types() -> list[ComplexType]:
    """The basisschema's CDT_ types (facts sheet 3.2), children in sequence order."""
    return [
        ComplexType(
            "CDT_Achternaam",
            (El("Achternaam", "LDT_Naam"), El("Voorvoegsel", "LDT_Voorvoegsel", 0)),
        ),
        ComplexType(
            "CDT_Adres",
            (
                El("Huis", "CDT_Huis", 0),
                El("Postcode", "LDT_Postcode", 0),
                El("Straatnaam", "LDT_Straatnaam", 0),
                El("Plaatsnaam", "LDT_Plaatsnaam", 0),
                El("LandCode", "LDT_LandCode", 0),
            ),
        ),
        ComplexType(
            "CDT_BedragMetDC", (El("Bedrag", "LDT_Bedrag"), El("DebetCredit", "LDT_DebetCredit"))
        ),
        ComplexType(
            "CDT_BerichtIdentificatie",
            (El("Identificatie", "LDT_IdentificatieBericht"), El("Dagtekening", "LDT_Datum")),
        ),
        ComplexType(
            "CDT_Communicatie", (El("Vorm", "LDT_Communicatievorm"), El("Taal", "LDT_Taal", 0))
        ),
        ComplexType(
            "CDT_Geboortedatum",
            (El("Datum", "LDT_Datum"), El("DatumGebruik", "LDT_DatumGebruik", 0)),
        ),
        ComplexType(
            "CDT_GeslotenPeriode", (El("Begindatum", "LDT_Datum"), El("Einddatum", "LDT_Datum"))
        ),
        ComplexType(
            "CDT_Huis",
            (
                El("Huisnummer", "LDT_Huisnummer"),
                El("Huisletter", "LDT_Huisletter", 0),
                El("HuisnummerToevoeging", "LDT_HuisnummerToevoeging", 0),
                El("AanduidingWoonadres", "LDT_AanduidingWoonadres", 0),
            ),
        ),
        ComplexType(
            "CDT_Omvang",
            (
                El("Volume", "LDT_Volume"),
                El("Eenheid", "LDT_Eenheid"),
                El("Frequentie", "LDT_Frequentie"),
            ),
        ),
        ComplexType(
            "CDT_OpenPeriode", (El("Begindatum", "LDT_Datum", 0), El("Einddatum", "LDT_Datum", 0))
        ),
        ComplexType(
            "CDT_Product",
            (El("Categorie", "LDT_ProductCategorie"), El("Code", "LDT_ProductCode", 0)),
        ),
        ComplexType(
            "CDT_Referentie",
            (
                El("ReferentieNummer", "LDT_ReferentieNummer"),
                El("VorigReferentieNummer", "LDT_ReferentieNummer", 0),
            ),
        ),
        ComplexType(
            "CDT_Telefoon",
            (El("Telefoonnummer", "LDT_Telefoonnummer"), El("Landnummer", "LDT_Landnummer")),
        ),
        ComplexType(
            "CDT_Telefoonnummers",
            (El("Telefoon01", "CDT_Telefoon"), El("Telefoon02", "CDT_Telefoon", 0)),
        ),
        ComplexType(
            "CDT_TotaalBedragMetDC",
            (El("TotaalBedrag", "LDT_TotaalBedrag"), El("DebetCredit", "LDT_DebetCredit")),
        ),
        ComplexType(
            "CDT_VerkorteNaam",
            (
                El("Geslachtsnaam", "CDT_Achternaam"),
                El("Voornamen", "LDT_Naam", 0),
                El("Voorletters", "LDT_Voorletters", 0),
            ),
        ),
        ComplexType(
            "CDT_Verwijzer",
            (
                El("Type", "LDT_TypeVerwijzer"),
                El("Naam", "LDT_NaamVerwijzer", 0),
                El("ZorgverlenerCode", "LDT_AgbCode", 0),
            ),
        ),
        ComplexType(
            "CDT_VolledigeNaam",
            (
                El("Geslachtsnaam", "CDT_Achternaam"),
                El("Partnernaam", "CDT_Achternaam", 0),
                El("Voornamen", "LDT_Naam", 0),
                El("Voorletters", "LDT_Voorletters", 0),
                El("NaamGebruik", "LDT_NaamGebruik"),
            ),
        ),
        ComplexType(
            "CDT_XsdVersie",
            (El("BasisschemaXsdVersie", "LDT_Versie"), El("BerichtXsdVersie", "LDT_Versie")),
        ),
    ]


# --- message bodies (iWmo outlines, facts sheet 2.4; iJw differences applied in heen_bodies) ---


def _contact() -> Cls:
    return Cls(
        "Contact",
        (
            El("Soort", "LDT_AdresSoort"),
            El("Adres", "CDT_Adres", 0),
            El("Organisatie", "LDT_Organisatienaam", 0),
            El("Telefoon", "CDT_Telefoonnummers", 0),
            El("Emailadres", "LDT_Emailadres", 0),
            El("Periode", "CDT_OpenPeriode", 0),
        ),
        retour=True,
    )


def _client_head(naam: str) -> tuple[El, ...]:
    return (
        El("Bsn", "LDT_BurgerServicenummer"),
        El("Geboortedatum", "CDT_Geboortedatum"),
        El("Geslacht", "LDT_Geslacht"),
        El("Naam", naam),
    )


def _start_stop(stop: bool) -> Cls:
    name = "StopProduct" if stop else "StartProduct"
    middle = (El("RedenBeeindiging", "LDT_RedenBeeindiging"), El("Einddatum", "LDT_Datum"))
    product = Cls(
        name,
        (
            El("ToewijzingNummer", "LDT_Nummer", 0),
            El("Product", "CDT_Product", 0),
            El("ToewijzingIngangsdatum", "LDT_Datum", 0),
            El("Begindatum", "LDT_Datum"),
            *(middle if stop else ()),
            El("StatusAanlevering", "LDT_StatusAanlevering"),
        ),
        max=UNBOUNDED,
        retour=True,
    )
    wrapper = "StopProducten" if stop else "StartProducten"
    return Cls("Client", (*_client_head("CDT_VerkorteNaam"), Cls(wrapper, (product,))), retour=True)


def _prestatie(extra: tuple[Node, ...] = ()) -> Cls:
    return Cls(
        "Prestatie",
        (
            El("ProductReferentie", "CDT_Referentie"),
            El("ToewijzingNummer", "LDT_Nummer"),
            El("ProductCategorie", "LDT_ProductCategorie"),
            El("ProductCode", "LDT_ProductCode"),
            El("ProductPeriode", "CDT_GeslotenPeriode"),
            El("GeleverdVolume", "LDT_Volume"),
            El("Eenheid", "LDT_Eenheid"),
            El("ProductTarief", "LDT_Bedrag", 0),
            El("IngediendBedrag", "CDT_BedragMetDC"),
            *extra,
        ),
        max=UNBOUNDED,
    )


_RC = El("RetourCodes", "RetourCodes")


def heen_bodies(std: Standard) -> dict[int, tuple[Node, ...]]:
    """The children of Root after the Header, for every heenbericht and for 325."""
    jw = std is Standard.IJW
    return {
        301: (
            Cls(
                "Client",
                (
                    *_client_head("CDT_VolledigeNaam"),
                    El("Communicatie", "CDT_Communicatie", 0),
                    El("JuridischeStatus", "LDT_JuridischeStatus", 0),
                    El("WettelijkeVertegenwoordiging", "LDT_WettelijkeVertegenwoordiging", 0),
                    El("Commentaar", "LDT_Commentaar", 0),
                    Cls(
                        "Relaties",
                        (
                            Cls(
                                "Relatie",
                                (
                                    El("Nummer", "LDT_Persoonsid"),
                                    El("Volgorde", "LDT_RelatieVolgorde", 0),
                                    El("Soort", "LDT_SoortRelatie"),
                                    El("Geboortedatum", "CDT_Geboortedatum", 0),
                                    El("Geslacht", "LDT_Geslacht", 0),
                                    El("Naam", "CDT_VolledigeNaam"),
                                    _contact(),
                                ),
                                max=UNBOUNDED,
                                retour=True,
                            ),
                        ),
                        min=0,
                    ),
                    Cls(
                        "Contactgegevens",
                        (Cls("Contact", _contact().children, max=UNBOUNDED, retour=True),),
                    ),
                    Cls(
                        "ToegewezenProducten",
                        (
                            Cls(
                                "ToegewezenProduct",
                                (
                                    El("ToewijzingNummer", "LDT_Nummer"),
                                    El("ReferentieAanbieder", "LDT_Referentie", 0),
                                    El("Product", "CDT_Product", 0),
                                    El("Toewijzingsdatum", "LDT_Datum"),
                                    El("Toewijzingstijd", "LDT_Tijd"),
                                    El("Ingangsdatum", "LDT_Datum"),
                                    El("Einddatum", "LDT_Datum", 0),
                                    El("RedenWijziging", "LDT_RedenWijziging", 0),
                                    El("Omvang", "CDT_Omvang", 0),
                                    El("Budget", "LDT_Budget", 0),
                                    El("Commentaar", "LDT_Commentaar", 0),
                                ),
                                max=UNBOUNDED,
                                retour=True,
                            ),
                        ),
                    ),
                ),
                retour=True,
            ),
        ),
        305: (_start_stop(stop=False),),
        307: (_start_stop(stop=True),),
        315: (
            Cls(
                "Client",
                (
                    *_client_head("CDT_VerkorteNaam"),
                    *((El("GezagsdragerBekend", "LDT_JaNee", 0),) if jw else ()),
                    El("Commentaar", "LDT_Commentaar", 0),
                    Cls(
                        "AangevraagdeProducten",
                        (
                            Cls(
                                "AangevraagdProduct",
                                (
                                    El("ReferentieAanbieder", "LDT_Referentie"),
                                    El("BeschikkingNummer", "LDT_Nummer", 0),
                                    El("Product", "CDT_Product", 0),
                                    El("BeschikkingIngangsdatum", "LDT_Datum", 0),
                                    El("ToewijzingIngangsdatum", "LDT_Datum"),
                                    El("ToewijzingEinddatum", "LDT_Datum", 0),
                                    El("Omvang", "CDT_Omvang", 0),
                                    El("Budget", "LDT_Budget", 0),
                                    El("Verwijzer", "CDT_Verwijzer"),
                                    El("Raamcontract", "LDT_JaNee", 0),
                                    El("Commentaar", "LDT_Commentaar", 0),
                                ),
                                max=UNBOUNDED,
                                retour=True,
                            ),
                        ),
                    ),
                ),
                retour=True,
            ),
        ),
        317: (
            Cls(
                "Client",
                (
                    El("Bsn", "LDT_BurgerServicenummer"),
                    Cls(
                        "Verzoek",
                        (
                            El("ReferentieAanbieder", "LDT_Referentie"),
                            El("RedenVerzoek", "LDT_RedenVerzoek"),
                            Cls(
                                "OngewijzigdeProducten",
                                (
                                    Cls(
                                        "OngewijzigdProduct",
                                        (El("ToewijzingNummer", "LDT_Nummer"),),
                                        max=UNBOUNDED,
                                        retour=True,
                                    ),
                                ),
                                min=0,
                            ),
                            Cls(
                                "TeWijzigenProducten",
                                (
                                    Cls(
                                        "TeWijzigenProduct",
                                        (
                                            El("ToewijzingNummer", "LDT_Nummer"),
                                            El("GewensteIngangsdatum", "LDT_Datum"),
                                            El("Einddatum", "LDT_Datum", 0),
                                            El("Omvang", "CDT_Omvang", 0),
                                            El("Budget", "LDT_Budget", 0),
                                        ),
                                        max=UNBOUNDED,
                                        retour=True,
                                    ),
                                ),
                                min=0,
                            ),
                            Cls(
                                "NieuweProducten",
                                (
                                    Cls(
                                        "NieuwProduct",
                                        (
                                            El("Product", "CDT_Product", 0),
                                            El("GewensteIngangsdatum", "LDT_Datum"),
                                            El("Einddatum", "LDT_Datum", 0),
                                            El("Omvang", "CDT_Omvang", 0),
                                            El("Budget", "LDT_Budget", 0),
                                        ),
                                        max=UNBOUNDED,
                                        retour=True,
                                    ),
                                ),
                                min=0,
                            ),
                        ),
                        retour=True,
                    ),
                ),
                retour=True,
            ),
        ),
        319: (
            Cls(
                "Antwoord",
                (
                    El("ReferentieAanbieder", "LDT_Referentie"),
                    El("VerzoekAntwoord", "LDT_VerzoekAntwoord"),
                    El("RedenAfwijzingVerzoek", "LDT_RedenAfwijzingVerzoek", 0),
                    *(
                        (
                            Cls(
                                "Woonplaatsbeginsel",
                                (El("Gemeente", "LDT_Gemeente"),),
                                min=0,
                                retour=True,
                            ),
                        )
                        if jw
                        else ()
                    ),
                ),
                retour=True,
            ),
        ),
        323: (
            Cls(
                "Declaratie",
                (
                    El("DeclaratieNummer", "@DeclaratieNummer"),
                    El("DeclaratiePeriode", "CDT_GeslotenPeriode"),
                    El("DeclaratieDagtekening", "LDT_Datum"),
                    El("TotaalIngediendBedrag", "CDT_TotaalBedragMetDC"),
                    Cls(
                        "Clienten",
                        (
                            Cls(
                                "Client",
                                (
                                    El("Bsn", "LDT_BurgerServicenummer"),
                                    Cls("Prestaties", (_prestatie(),)),
                                ),
                                max=UNBOUNDED,
                            ),
                        ),
                    ),
                ),
            ),
        ),
        325: (
            Cls(
                "DeclaratieAntwoord",
                (
                    El("DeclaratieNummer", "LDT_IdentificatieDeclaratie"),
                    El("TotaalIngediendBedrag", "CDT_TotaalBedragMetDC"),
                    El("TotaalToegekendBedrag", "CDT_TotaalBedragMetDC"),
                    Cls(
                        "Clienten",
                        (
                            Cls(
                                "Client",
                                (
                                    El("Bsn", "LDT_BurgerServicenummer"),
                                    Cls("Prestaties", (_prestatie((_RC,)),)),
                                    _RC,
                                ),
                                max=UNBOUNDED,
                            ),
                        ),
                        min=0,
                    ),
                    _RC,
                ),
                min=0,
            ),
        ),
    }


def derive_retour(node: Node) -> Node:
    """Facts sheet 2.3: every class marked (R) ends with RetourCodes [1..1]."""
    if isinstance(node, El):
        return node
    children = tuple(derive_retour(c) for c in node.children)
    if node.retour:
        children = (*children, _RC)
    return Cls(node.name, children, node.min, node.max, node.retour)


def retour_body(heen: tuple[Node, ...]) -> tuple[Node, ...]:
    """The retour body: the heen body derived, with the top element made optional (0..1)."""
    (top,) = heen
    derived = derive_retour(top)
    assert isinstance(derived, Cls)
    return (Cls(derived.name, derived.children, 0, derived.max, derived.retour),)
