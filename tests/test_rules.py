"""Every business rule, shown firing on a mutated sample and silent on the clean one."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.rules import RULES
from gateway.rules.claims import expected_amount
from gateway.rules.client import bsn_is_valid
from gateway.validation import Validator
from tests.conftest import sample

Edit = Callable[[str], str]


def sub(old: str, new: str, nth: int = 1) -> Edit:
    """Replace the nth occurrence of ``old``; fails loudly when the sample lacks it."""

    def apply(text: str) -> str:
        at = -1
        for _ in range(nth):
            at = text.find(old, at + 1)
            assert at >= 0, f"sample lacks {old!r}"
        return text[:at] + new + text[at + len(old) :]

    return apply


def dup(tag: str, *edits: Edit) -> Edit:
    """Insert a copy of the first ``<tag>…</tag>`` block right after it, edited."""

    def apply(text: str) -> str:
        start = text.index(f"<{tag}>")
        start = text.rindex("\n", 0, start) + 1
        end = text.index(f"</{tag}>", start) + len(tag) + 4
        block = text[start:end]
        for edit in edits:
            block = edit(block)
        return text[:end] + block + text[end:]

    return apply


def cut(first_line: str, last_line: str) -> Edit:
    """Remove the lines from the one holding ``first_line`` to the one holding ``last_line``."""

    def apply(text: str) -> str:
        start = text.rindex("\n", 0, text.index(first_line)) + 1
        end = text.index("\n", text.index(last_line, start)) + 1
        return text[:start] + text[end:]

    return apply


W301, W305, W307, W315, W317, W319 = (f"iwmo/wmo{n}.xml" for n in (301, 305, 307, 315, 317, 319))
W323, J319, J323, J325, J305 = (
    "iwmo/wmo323.xml",
    "ijw/jw319.xml",
    "ijw/jw323.xml",
    "ijw/jw325.xml",
    "ijw/jw305.xml",
)

J306 = "ijw/jw306.xml"
CONTACTS_END = "</wmo301:Contact>\n    </wmo301:Contactgegevens>"
CONTACT_01 = (
    "</wmo301:Contact><wmo301:Contact><wmo301:Soort>01</wmo301:Soort><wmo301:Telefoon>"
    "<iwmo:Telefoon01><iwmo:Telefoonnummer>0570123456</iwmo:Telefoonnummer>"
    "<iwmo:Landnummer>0031</iwmo:Landnummer></iwmo:Telefoon01>"
    "</wmo301:Telefoon>"
)
PRODUCT_01 = (
    "<wmo301:Product>\n          <iwmo:Categorie>01</iwmo:Categorie>\n        </wmo301:Product>\n"
)

W317_OMVANG = (
    "<wmo317:Omvang>\n            <iwmo:Volume>{}</iwmo:Volume>\n"
    "            <iwmo:Eenheid>04</iwmo:Eenheid>\n"
    "            <iwmo:Frequentie>2</iwmo:Frequentie>\n          </wmo317:Omvang>"
)
NIEUW_OMVANG, TEWIJZIGEN_OMVANG = W317_OMVANG.format(2), W317_OMVANG.format(6)
"""The Omvang of the 317 sample's NieuwProduct (Volume 2) and TeWijzigenProduct (Volume 6)."""
BUDGET_317 = "<wmo317:Budget>5</wmo317:Budget>"
NIEUW_END, TEWIJZIGEN_END = "<wmo317:Einddatum>2027-05-31<", "<wmo317:Einddatum>2027-10-04<"
DAY_UNKNOWN = (
    "<iwmo:Datum>1948-03-12</iwmo:Datum>",
    "<iwmo:Datum>1948-03-12</iwmo:Datum><iwmo:DatumGebruik>1</iwmo:DatumGebruik>",
)
RELATIE_BORN = (
    "<wmo301:Soort>16</wmo301:Soort>",
    "<wmo301:Soort>16</wmo301:Soort><wmo301:Geboortedatum><iwmo:Datum>1950-03-12</iwmo:Datum>"
    "<iwmo:DatumGebruik>1</iwmo:DatumGebruik></wmo301:Geboortedatum>",
)

PRESTATIE_HULPMIDDEL = (
    sub(
        "<wmo323:ProductCategorie>01</wmo323:ProductCategorie>\n"
        "            <wmo323:ProductCode>01A03<",
        "<wmo323:ProductCategorie>11</wmo323:ProductCategorie>\n"
        "            <wmo323:ProductCode>11X01<",
    ),
)
"""The 323 sample's third Prestatie as a hulpmiddel of category 11, which has a code list."""

CASES: list[tuple[str, str, list[Edit]]] = [
    ("TR135", J305, [sub("<ijw:Dagtekening>2026-10-08<", "<ijw:Dagtekening>2099-10-08<")]),
    # the public code lists (gateway/codelists): a code the CBS list lacks (0999), a product
    # code the hulpmiddelen list of category 11 lacks (11X98)
    ("TR378", W301, [sub("<wmo301:Afzender>0150<", "<wmo301:Afzender>0999<")]),
    ("TR378", J323, [sub("<jw323:Ontvanger>0175<", "<jw323:Ontvanger>0999<")]),
    ("TR378", J319, [sub("<jw319:Gemeente>0177<", "<jw319:Gemeente>0999<")]),
    (
        "TR381",
        W301,
        [
            sub(
                "<iwmo:Categorie>02</iwmo:Categorie>\n          <iwmo:Code>02A01<",
                "<iwmo:Categorie>11</iwmo:Categorie>\n          <iwmo:Code>11X98<",
            )
        ],
    ),
    ("TR381", W323, [*PRESTATIE_HULPMIDDEL, sub(">11X01<", ">11X98<")]),
    ("IV034", W301, [sub("<iwmo:BerichtXsdVersie>1.0.0<", "<iwmo:BerichtXsdVersie>1.0.9<")]),
    ("CS002", W301, [sub(">999990019<", ">999990018<")]),
    ("CS002", W323, [sub(">999990032<", ">999990031<")]),
    (
        "CS139",
        W301,
        [
            sub(
                "<iwmo:Datum>1948-03-12</iwmo:Datum>",
                "<iwmo:Datum>1948-03-12</iwmo:Datum><iwmo:DatumGebruik>1</iwmo:DatumGebruik>",
            )
        ],
    ),
    ("TR002", W301, [sub("<iwmo:Datum>1948-03-12<", "<iwmo:Datum>1900-03-12<")]),
    ("CS318", W301, [sub("<iwmo:NaamGebruik>1<", "<iwmo:NaamGebruik>6<")]),
    ("CS050", W301, [sub("<iwmo:NaamGebruik>1<", "<iwmo:NaamGebruik>2<")]),
    ("CD007", W301, [sub("<iwmo:Vorm>1<", "<iwmo:Vorm>2<")]),
    ("CD025", W301, [cut("<iwmo:Huis>", "</iwmo:Huis>")]),
    ("CD034", W301, [cut("<iwmo:Postcode>7411AB<", "<iwmo:Postcode>7411AB<")]),
    ("CS089", W301, [sub("<iwmo:Postcode>7411AB<", "<iwmo:Postcode>7411 AB<")]),
    ("CD005", W301, [cut("<iwmo:LandCode>NL<", "<iwmo:LandCode>NL<")]),
    (
        "CD009",
        W301,
        [
            sub(
                "</wmo301:Emailadres>",
                "</wmo301:Emailadres><wmo301:Periode>"
                "<iwmo:Begindatum>2026-01-01</iwmo:Begindatum></wmo301:Periode>",
            )
        ],
    ),
    ("TR006", W301, [cut("<wmo301:Telefoon>", "</wmo301:Telefoon>")]),
    ("TR061", W301, [sub("<wmo301:Soort>01<", "<wmo301:Soort>04<")]),
    (
        "CS003",
        W301,
        [
            sub("<wmo301:Soort>01<", "<wmo301:Soort>04<"),
            sub(
                "</iwmo:LandCode>\n        </wmo301:Adres>",
                "</iwmo:LandCode>\n        </wmo301:Adres><wmo301:Periode><iwmo:Begindatum>"
                "2026-05-01</iwmo:Begindatum><iwmo:Einddatum>2026-04-01</iwmo:Einddatum>"
                "</wmo301:Periode>",
            ),
        ],
    ),
    ("CS003", W301, [sub("<wmo301:Einddatum>2027-10-04<", "<wmo301:Einddatum>2026-10-04<")]),
    ("CS003", W317, [sub("<wmo317:Einddatum>2027-05-31<", "<wmo317:Einddatum>2026-05-31<")]),
    (
        "CD079",
        W301,
        [
            sub(
                "<wmo301:Product>\n          <iwmo:Categorie>01</iwmo:Categorie>\n"
                "        </wmo301:Product>",
                "",
            ),
            cut("<wmo301:Budget>", "<wmo301:Budget>"),
        ],
    ),
    ("CD075", W301, [cut("<wmo301:Einddatum>2027-04-04<", "<wmo301:Einddatum>2027-04-04<")]),
    ("CD076", W315, [cut("<wmo315:ToewijzingEinddatum>", "<wmo315:ToewijzingEinddatum>")]),
    # The official tables attach CD076 to the 301's ToegewezenProduct too (issue 31.1).
    ("CD076", W301, [cut("<wmo301:Einddatum>2027-10-04<", "<wmo301:Einddatum>2027-10-04<")]),
    ("CD076", "ijw/jw301.xml", [cut("<jw301:Einddatum>2027-10-04<", "<jw301:Einddatum>2")]),
    # Every official (rule, message, class) of a checked CS/CD fires somewhere here
    # (tests/test_attachments.py): the attachments the cases above did not reach yet.
    ("CD076", W317, [cut(NIEUW_END, NIEUW_END)]),
    ("CD076", W317, [cut(TEWIJZIGEN_END, TEWIJZIGEN_END)]),
    ("CS002", W305, [sub(">999990019<", ">999990018<")]),
    ("CS002", W307, [sub(">999990019<", ">999990018<")]),
    ("CS002", W315, [sub(">999990019<", ">999990018<")]),
    ("CS002", W317, [sub(">999990019<", ">999990018<")]),
    ("CS002", J325, [sub(">999990032<", ">999990031<")]),
    ("CS139", W305, [sub(*DAY_UNKNOWN)]),
    ("CS139", W307, [sub(*DAY_UNKNOWN)]),
    ("CS139", W315, [sub(*DAY_UNKNOWN)]),
    ("CS139", W301, [sub(*RELATIE_BORN)]),
    ("CS050", W301, [sub("<iwmo:NaamGebruik>1<", "<iwmo:NaamGebruik>2<", nth=2)]),
    ("CD041", W315, [cut("<wmo315:Omvang>", "</wmo315:Omvang>")]),
    ("CD041", W317, [sub(NIEUW_OMVANG, "")]),
    (
        "CD075",
        W315,
        [
            cut("<wmo315:Omvang>", "</wmo315:Omvang>"),
            sub("<wmo315:Verwijzer>", "<wmo315:Budget>5</wmo315:Budget><wmo315:Verwijzer>"),
            cut("<wmo315:ToewijzingEinddatum>", "<wmo315:ToewijzingEinddatum>"),
        ],
    ),
    ("CD075", W317, [sub(NIEUW_OMVANG, BUDGET_317), cut(NIEUW_END, NIEUW_END)]),
    ("CD075", W317, [sub(TEWIJZIGEN_OMVANG, BUDGET_317), cut(TEWIJZIGEN_END, TEWIJZIGEN_END)]),
    ("CD077", W315, [sub("</wmo315:Omvang>", "</wmo315:Omvang><wmo315:Budget>5</wmo315:Budget>")]),
    ("CD077", W317, [sub(NIEUW_OMVANG, NIEUW_OMVANG + BUDGET_317)]),
    ("CD077", W317, [sub(TEWIJZIGEN_OMVANG, TEWIJZIGEN_OMVANG + BUDGET_317)]),
    ("CD078", W315, [sub("</wmo315:Omvang>", "</wmo315:Omvang><wmo315:Budget>5</wmo315:Budget>")]),
    ("CD078", W317, [sub(NIEUW_OMVANG, NIEUW_OMVANG + BUDGET_317)]),
    ("CD078", W317, [sub(TEWIJZIGEN_OMVANG, TEWIJZIGEN_OMVANG + BUDGET_317)]),
    ("CD079", W315, [cut("<wmo315:Product>", "</wmo315:Product>")]),
    ("CD079", W317, [cut("<wmo317:Product>", "</wmo317:Product>")]),
    (
        "CS003",
        W315,
        [
            sub(
                ">2027-11-01</wmo315:ToewijzingEinddatum>",
                ">2026-11-01</wmo315:ToewijzingEinddatum>",
            )
        ],
    ),
    ("CS003", W317, [sub(TEWIJZIGEN_END, "<wmo317:Einddatum>2026-10-04<")]),
    (
        "CS338",
        W317,
        [
            sub(
                NIEUW_OMVANG,
                NIEUW_OMVANG.replace(">04<", ">14<").replace("Frequentie>2<", "Frequentie>1<"),
            )
        ],
    ),
    (
        "CS338",
        W317,
        [
            sub(
                TEWIJZIGEN_OMVANG,
                TEWIJZIGEN_OMVANG.replace(">04<", ">83<").replace("Frequentie>2<", "Frequentie>1<"),
            )
        ],
    ),
    (
        "CS100",
        W323,
        [
            sub(
                "<iwmo:Begindatum>2026-09-01</iwmo:Begindatum>\n              <iwmo:Einddatum>2026-09-30",
                "<iwmo:Begindatum>2020-12-01</iwmo:Begindatum>\n              <iwmo:Einddatum>2020-12-31",
            )
        ],
    ),
    (
        "CS325",
        W323,
        [
            sub(
                "<iwmo:TotaalBedrag>132500</iwmo:TotaalBedrag>\n      <iwmo:DebetCredit>D<",
                "<iwmo:TotaalBedrag>0</iwmo:TotaalBedrag>\n      <iwmo:DebetCredit>C<",
            )
        ],
    ),
    (
        "CS325",
        J325,
        [
            sub(
                "<ijw:TotaalBedrag>132500</ijw:TotaalBedrag>\n      <ijw:DebetCredit>D<",
                "<ijw:TotaalBedrag>0</ijw:TotaalBedrag>\n      <ijw:DebetCredit>C<",
            )
        ],
    ),
    (
        "CS325",
        J325,
        [
            sub(
                "<ijw:TotaalBedrag>87500</ijw:TotaalBedrag>\n      <ijw:DebetCredit>D<",
                "<ijw:TotaalBedrag>0</ijw:TotaalBedrag>\n      <ijw:DebetCredit>C<",
            )
        ],
    ),
    (
        "CS325",
        J325,
        [
            sub(
                "<ijw:Bedrag>45000</ijw:Bedrag>\n              <ijw:DebetCredit>D<",
                "<ijw:Bedrag>0</ijw:Bedrag>\n              <ijw:DebetCredit>C<",
            )
        ],
    ),
    (
        "CD060",
        J325,
        [
            sub(
                "</ijw:ReferentieNummer>",
                "</ijw:ReferentieNummer><ijw:VorigReferentieNummer>X1</ijw:VorigReferentieNummer>",
            )
        ],
    ),
    ("CD041", W301, [cut("<wmo301:Omvang>", "</wmo301:Omvang>")]),
    ("CD077", W301, [sub("</wmo301:Omvang>", "</wmo301:Omvang><wmo301:Budget>5</wmo301:Budget>")]),
    ("CD078", W301, [sub("</wmo301:Omvang>", "</wmo301:Omvang><wmo301:Budget>5</wmo301:Budget>")]),
    ("CD080", W301, [cut("<iwmo:Code>02A01<", "<iwmo:Code>02A01<")]),
    ("CD095", W315, [cut("<iwmo:Code>02A01<", "<iwmo:Code>02A01<")]),
    ("CD096", W317, [cut("<iwmo:Code>01A03<", "<iwmo:Code>01A03<")]),
    (
        "CS338",
        W301,
        [
            sub("<iwmo:Eenheid>04<", "<iwmo:Eenheid>14<"),
            sub("<iwmo:Frequentie>2<", "<iwmo:Frequentie>1<"),
        ],
    ),
    (
        "CS343",
        W315,
        [
            sub("<iwmo:Eenheid>04<", "<iwmo:Eenheid>16<"),
            sub("<iwmo:Frequentie>2<", "<iwmo:Frequentie>1<"),
        ],
    ),
    (
        "CS335",
        W301,
        [
            sub(
                "</wmo301:Einddatum>",
                "</wmo301:Einddatum><wmo301:RedenWijziging>13</wmo301:RedenWijziging>",
            )
        ],
    ),
    (
        "CS336",
        W301,
        [
            sub(
                "</wmo301:Einddatum>",
                "</wmo301:Einddatum><wmo301:RedenWijziging>01</wmo301:RedenWijziging>",
            )
        ],
    ),
    (
        "TR302",
        W301,
        [
            sub(
                "<iwmo:Categorie>02</iwmo:Categorie>\n          <iwmo:Code>02A01</iwmo:Code>",
                "<iwmo:Categorie>01</iwmo:Categorie>",
            )
        ],
    ),
    ("TR386", W315, [dup("wmo315:AangevraagdProduct", sub("VOT-2026-0042", "VOT-2026-0043"))]),
    (
        "TR383",
        W315,
        [dup("wmo315:AangevraagdProduct", sub("<iwmo:Code>02A01<", "<iwmo:Code>02A02<"))],
    ),
    ("TR410", W317, [dup("wmo317:NieuwProduct")]),
    (
        "CD043",
        W315,
        [
            sub(
                "</wmo315:ReferentieAanbieder>",
                "</wmo315:ReferentieAanbieder>"
                "<wmo315:BeschikkingNummer>55</wmo315:BeschikkingNummer>",
            )
        ],
    ),
    (
        "CD066",
        W315,
        [
            sub(
                "<iwmo:Type>02</iwmo:Type>",
                "<iwmo:Type>02</iwmo:Type><iwmo:Naam>Huisarts Bos</iwmo:Naam>",
            )
        ],
    ),
    ("CD067", W315, [cut("<iwmo:ZorgverlenerCode>", "<iwmo:ZorgverlenerCode>")]),
    ("CD068", W315, [sub("<iwmo:Type>02<", "<iwmo:Type>06<")]),
    ("TR352", W317, [cut("<wmo317:OngewijzigdeProducten>", "</wmo317:TeWijzigenProducten>")]),
    ("TR353", W317, [cut("<wmo317:TeWijzigenProducten>", "</wmo317:NieuweProducten>")]),
    ("CS058", W305, [sub("<wmo305:StatusAanlevering>1<", "<wmo305:StatusAanlevering>9<")]),
    ("CS058", W307, [sub("<wmo307:StatusAanlevering>1<", "<wmo307:StatusAanlevering>2<")]),
    ("TR018", W307, [sub("<wmo307:Einddatum>2026-10-30<", "<wmo307:Einddatum>2026-10-01<")]),
    ("TR101", W305, [dup("wmo305:StartProduct", sub(">1<", ">3<"))]),
    ("CD085", W319, [cut("<wmo319:RedenAfwijzingVerzoek>", "<wmo319:RedenAfwijzingVerzoek>")]),
    ("CD086", W319, [sub("<wmo319:VerzoekAntwoord>1<", "<wmo319:VerzoekAntwoord>2<")]),
    ("TR377", J319, [cut("<jw319:Woonplaatsbeginsel>", "</jw319:Woonplaatsbeginsel>")]),
    ("TR409", J319, [sub("<jw319:RedenAfwijzingVerzoek>8<", "<jw319:RedenAfwijzingVerzoek>5<")]),
    (
        "CS100",
        W323,
        [
            sub(
                "<iwmo:Begindatum>2026-10-01</iwmo:Begindatum>\n      <iwmo:Einddatum>2026-10-31",
                "<iwmo:Begindatum>2020-12-01</iwmo:Begindatum>\n      <iwmo:Einddatum>2020-12-31",
            )
        ],
    ),
    ("TR137", W323, [sub("<iwmo:Einddatum>2026-09-30<", "<iwmo:Einddatum>2026-08-30<")]),
    ("TR137", W323, [sub("<iwmo:Dagtekening>2026-11-03<", "<iwmo:Dagtekening>2026-10-30<")]),
    (
        "CS340",
        W323,
        [
            sub(
                "<iwmo:Begindatum>2026-10-01</iwmo:Begindatum>\n      <iwmo:Einddatum>",
                "<iwmo:Begindatum>2026-10-02</iwmo:Begindatum>\n      <iwmo:Einddatum>",
            )
        ],
    ),
    ("CS337", W323, [sub("<iwmo:Einddatum>2026-09-30<", "<iwmo:Einddatum>2026-10-02<")]),
    (
        "TR319",
        W323,
        [
            sub(
                "<iwmo:Begindatum>2026-09-01</iwmo:Begindatum>\n              <iwmo:Einddatum>2026-09-30",
                "<iwmo:Begindatum>2026-11-01</iwmo:Begindatum>\n              <iwmo:Einddatum>2026-11-30",
            )
        ],
    ),
    (
        "TR335",
        W323,
        [
            sub(
                "<iwmo:Begindatum>2026-09-01</iwmo:Begindatum>\n              <iwmo:Einddatum>2026-09-30",
                "<iwmo:Begindatum>2021-09-01</iwmo:Begindatum>\n              <iwmo:Einddatum>2021-09-30",
            )
        ],
    ),
    (
        "CS325",
        W323,
        [
            sub("<iwmo:Bedrag>12500</iwmo:Bedrag>", "<iwmo:Bedrag>0</iwmo:Bedrag>"),
            sub("<wmo323:GeleverdVolume>2<", "<wmo323:GeleverdVolume>0<"),
            sub("<iwmo:TotaalBedrag>132500<", "<iwmo:TotaalBedrag>145000<"),
        ],
    ),
    ("CD060", W323, [cut("<iwmo:VorigReferentieNummer>", "<iwmo:VorigReferentieNummer>")]),
    (
        "CD060",
        W323,
        [
            sub(
                "</iwmo:ReferentieNummer>",
                "</iwmo:ReferentieNummer>"
                "<iwmo:VorigReferentieNummer>X1</iwmo:VorigReferentieNummer>",
            )
        ],
    ),
    ("CD087", J323, [cut("<jw323:ProductTarief>6250<", "<jw323:ProductTarief>6250<")]),
    ("CS339", W323, [sub("<iwmo:Bedrag>45000<", "<iwmo:Bedrag>44000<")]),
    ("TR346", W323, [sub("<iwmo:Bedrag>100000<", "<iwmo:Bedrag>100100<")]),
    (
        "TR358",
        W323,
        [
            sub("<iwmo:TotaalBedrag>132500<", "<iwmo:TotaalBedrag>132500<"),
            sub(
                "<iwmo:DebetCredit>D</iwmo:DebetCredit>\n    </wmo323:TotaalIngediendBedrag>",
                "<iwmo:DebetCredit>C</iwmo:DebetCredit>\n    </wmo323:TotaalIngediendBedrag>",
            ),
        ],
    ),
    (
        "TR315",
        W323,
        [
            dup(
                "wmo323:Prestatie",
                sub("P2026100001", "P2026100009"),
                sub(
                    "</iwmo:ReferentieNummer>",
                    "</iwmo:ReferentieNummer><iwmo:"
                    "VorigReferentieNummer>P2026090007</iwmo:VorigReferentieNummer>",
                ),
                sub(">D<", ">C<", 1),
            )
        ],
    ),
    ("TR316", W323, [sub(">P2026090007<", ">P2026100001<")]),
    ("TR101", W323, [dup("wmo323:Prestatie")]),
    ("TR101", W301, [dup("wmo301:Relatie")]),
    ("TR101", W301, [sub("<wmo301:ToewijzingNummer>1002<", "<wmo301:ToewijzingNummer>1001<")]),
    ("TR101", W301, [sub(CONTACTS_END, CONTACT_01 + CONTACTS_END)]),
    ("TR101", W307, [dup("wmo307:StopProduct", sub(">1<", ">3<"))]),
    ("TR101", W315, [dup("wmo315:AangevraagdProduct")]),
    ("TR101", W317, [dup("wmo317:OngewijzigdProduct")]),
    ("TR101", W317, [dup("wmo317:NieuwProduct")]),
    ("TR101", J325, [dup("jw325:Prestatie")]),
    (
        "TR416",
        W323,
        [
            dup("wmo323:Prestatie", sub("P2026100001", "P2026100009")),
            sub("<iwmo:TotaalBedrag>132500<", "<iwmo:TotaalBedrag>232500<"),
        ],
    ),
    (
        "TR134",
        W301,
        [sub("<wmo301:Toewijzingsdatum>2026-10-01<", "<wmo301:Toewijzingsdatum>2026-10-02<")],
    ),
    ("TR134", W305, [sub("<wmo305:Begindatum>2026-10-07<", "<wmo305:Begindatum>2026-10-09<")]),
    ("TR134", W307, [sub("<wmo307:Einddatum>2026-10-30<", "<wmo307:Einddatum>2026-11-03<")]),
    (
        "TR134",
        W323,
        [
            sub(
                "<wmo323:DeclaratieDagtekening>2026-11-03<",
                "<wmo323:DeclaratieDagtekening>2026-11-04<",
            )
        ],
    ),
    (
        "TR134",
        J325,
        [
            sub("<ijw:Begindatum>2026-10-01<", "<ijw:Begindatum>2026-11-20<"),
            sub("<ijw:Einddatum>2026-10-31<", "<ijw:Einddatum>2026-11-21<"),
        ],
    ),
    (
        "TR380",
        W317,
        [
            sub(
                "<wmo317:GewensteIngangsdatum>2026-12-01<",
                "<wmo317:GewensteIngangsdatum>2026-11-01<",
            ),
            sub("<wmo317:Einddatum>2027-10-04<", "<wmo317:Einddatum>2026-11-10<"),
        ],
    ),
    ("TR342", J325, [sub("<jw325:RetourCode>0611<", "<jw325:RetourCode>0200<")]),
    ("TR342", J325, [cut("<jw325:Clienten>", "</jw325:Clienten>")]),
    ("TR342", J325, [sub("<jw325:RetourCode>0200<", "<jw325:RetourCode>0001<", 3)]),
    (
        "TR302",
        W301,
        [sub("<iwmo:Categorie>01</iwmo:Categorie>", "<iwmo:Categorie>02</iwmo:Categorie>")],
    ),
    ("TR302", W301, [sub(PRODUCT_01, "")]),
    ("TR002", W301, [sub("<iwmo:Datum>1948-03-12<", "<iwmo:Datum>1906-09-30<")]),
    (
        "TR335",
        W323,
        [
            sub(
                "<iwmo:Begindatum>2026-09-01</iwmo:Begindatum>\n              <iwmo:Einddatum>2026-09-30",
                "<iwmo:Begindatum>2021-11-01</iwmo:Begindatum>\n              <iwmo:Einddatum>2021-11-02",
            )
        ],
    ),
    ("TR342", J325, [sub("<ijw:TotaalBedrag>87500<", "<ijw:TotaalBedrag>80000<")]),
]


HULPMIDDEL = (
    sub(
        "<iwmo:Categorie>02</iwmo:Categorie>\n          <iwmo:Code>02A01<",
        "<iwmo:Categorie>11</iwmo:Categorie>\n          <iwmo:Code>11X01<",
    ),
)

NEAR_MISSES: list[tuple[str, str, list[Edit]]] = [
    # TR381: a code of the category's list; a category without a list is not judged
    ("TR381", W301, [*HULPMIDDEL]),
    ("TR381", W301, [sub("<iwmo:Code>02A01<", "<iwmo:Code>99Z99<")]),
    ("TR381", W323, [*PRESTATIE_HULPMIDDEL]),
    # overlap: iWmo hulpmiddelen (11-14) may overlap, also at category level and with a
    # product without Categorie; deleted and adjacent assignments do not overlap
    ("TR302", W301, [*HULPMIDDEL, sub("<iwmo:Categorie>01<", "<iwmo:Categorie>11<")]),
    ("TR302", W301, [*HULPMIDDEL, sub(PRODUCT_01, "")]),
    (
        "TR302",
        W301,
        [
            sub("<iwmo:Categorie>01<", "<iwmo:Categorie>02<"),
            sub("<wmo301:Einddatum>2027-04-04<", "<wmo301:Einddatum>2026-10-05<"),
            sub(
                "<wmo301:Einddatum>2026-10-05</wmo301:Einddatum>",
                "<wmo301:Einddatum>2026-10-05</wmo301:Einddatum>"
                "<wmo301:RedenWijziging>13</wmo301:RedenWijziging>",
            ),
        ],
    ),
    (
        "TR302",
        W301,
        [
            sub("<iwmo:Categorie>01<", "<iwmo:Categorie>02<"),
            sub("<wmo301:Ingangsdatum>2026-10-05<", "<wmo301:Ingangsdatum>2027-10-05<", 2),
            sub("<wmo301:Einddatum>2027-04-04<", "<wmo301:Einddatum>2028-04-04<"),
        ],
    ),
    # TR101: a ReferentieNummer may recur under another client; another Soort is another key
    ("TR101", W323, [sub(">P2026100002<", ">P2026100001<")]),
    ("TR101", W301, [sub(CONTACTS_END, CONTACT_01.replace(">01<", ">02<") + CONTACTS_END)]),
    # TR416: a debit and a credit of the same period and product are fine
    (
        "TR416",
        W323,
        [
            sub("<iwmo:Begindatum>2026-09-01<", "<iwmo:Begindatum>2026-10-07<"),
            sub("<iwmo:Einddatum>2026-09-30<", "<iwmo:Einddatum>2026-10-31<"),
        ],
    ),
    # TR416 is per client: another client's prestatie on the same ToewijzingNummer is its own
    (
        "TR416",
        W323,
        [
            sub("<wmo323:ToewijzingNummer>1002<", "<wmo323:ToewijzingNummer>1001<"),
            sub("<wmo323:ProductCategorie>01<", "<wmo323:ProductCategorie>02<"),
            sub("<wmo323:ProductCode>01A03<", "<wmo323:ProductCode>02A01<"),
            sub(
                "<iwmo:Begindatum>2026-10-01</iwmo:Begindatum>\n              <iwmo:Einddatum>",
                "<iwmo:Begindatum>2026-10-07</iwmo:Begindatum>\n              <iwmo:Einddatum>",
            ),
        ],
    ),
    # yyyymmdd arithmetic: exactly 120 (5) years is allowed; an unknown birth date is exempt
    ("TR002", W301, [sub("<iwmo:Datum>1948-03-12<", "<iwmo:Datum>1906-10-01<")]),
    (
        "TR002",
        W301,
        [
            sub(
                "<iwmo:Datum>1948-03-12</iwmo:Datum>",
                "<iwmo:Datum>1900-01-01</iwmo:Datum><iwmo:DatumGebruik>3</iwmo:DatumGebruik>",
            )
        ],
    ),
    (
        "TR335",
        W323,
        [
            sub(
                "<iwmo:Begindatum>2026-09-01</iwmo:Begindatum>\n              <iwmo:Einddatum>2026-09-30",
                "<iwmo:Begindatum>2021-11-01</iwmo:Begindatum>\n              <iwmo:Einddatum>2021-11-03",
            )
        ],
    ),
    # dates on the Dagtekening itself
    ("TR134", W305, [sub("<wmo305:Begindatum>2026-10-07<", "<wmo305:Begindatum>2026-10-08<")]),
    (
        "TR380",
        W317,
        [
            sub(
                "<wmo317:GewensteIngangsdatum>2026-12-01<",
                "<wmo317:GewensteIngangsdatum>2026-11-10<",
            )
        ],
    ),
    (
        "TR380",
        W317,
        [
            sub(
                "<wmo317:GewensteIngangsdatum>2026-12-01<",
                "<wmo317:GewensteIngangsdatum>2026-10-01<",
                2,
            ),
            sub("<wmo317:Einddatum>2027-05-31<", "<wmo317:Einddatum>2026-10-31<"),
        ],
    ),
    # TR342: nothing rejected, everything granted; a rejected claim grants 0
    (
        "TR342",
        J325,
        [
            cut("<jw325:Clienten>", "</jw325:Clienten>"),
            sub("<ijw:TotaalBedrag>87500<", "<ijw:TotaalBedrag>132500<"),
        ],
    ),
    (
        "TR342",
        J325,
        [
            sub("<jw325:RetourCode>0200<", "<jw325:RetourCode>0001<", 3),
            sub("<ijw:TotaalBedrag>87500<", "<ijw:TotaalBedrag>0<"),
        ],
    ),
    # TR342: a rejected Client's prestaties carry 0233 (not judged) and count as rejected
    # (IV087)
    (
        "TR342",
        J325,
        [
            sub("<jw325:RetourCode>0200<", "<jw325:RetourCode>8187<", 2),
            sub("<jw325:RetourCode>0611<", "<jw325:RetourCode>0233<"),
        ],
    ),
    # TR135 and TR056 concern heenberichten: a retour copies the heen Dagtekening as it was
    ("TR135", J306, [sub("<ijw:Dagtekening>2026-10-08<", "<ijw:Dagtekening>2099-10-08<")]),
]


def _apply(base: str, edits: list[Edit]) -> bytes:
    text = sample(base)
    for edit in edits:
        text = edit(text)
    return text.encode()


@pytest.mark.parametrize(
    ("rule_id", "base", "edits"),
    CASES,
    ids=[f"{r}-{b.split('/')[-1][:-4]}-{i}" for i, (r, b, _) in enumerate(CASES)],
)
def test_rule_fires_on_mutation_and_not_on_clean_sample(
    validator: Validator, rule_id: str, base: str, edits: list[Edit]
) -> None:
    clean = validator.validate(sample(base).encode(), base)
    assert rule_id not in {p.rule for p in clean.problems}
    report = validator.validate(_apply(base, edits), base)
    xsd = [p for p in report.problems if p.rule.startswith("XSD")]
    assert not xsd, f"mutation broke the XSD instead: {xsd}"
    fired = [p for p in report.problems if p.rule == rule_id]
    assert fired, f"{rule_id} did not fire; got {[p.rule for p in report.problems]}"
    rule = next(r for r in RULES if r.id == rule_id)
    assert fired[0].level == rule.level and fired[0].retourcode == rule.retourcode
    assert fired[0].path and fired[0].line


@pytest.mark.parametrize(
    ("rule_id", "base", "edits"),
    NEAR_MISSES,
    ids=[f"{r}-{b.split('/')[-1][:-4]}-{i}" for i, (r, b, _) in enumerate(NEAR_MISSES)],
)
def test_rule_stays_silent_on_a_near_miss(
    validator: Validator, rule_id: str, base: str, edits: list[Edit]
) -> None:
    report = validator.validate(_apply(base, edits), base)
    xsd = [p for p in report.problems if p.rule.startswith("XSD")]
    assert not xsd, f"mutation broke the XSD instead: {xsd}"
    assert rule_id not in {p.rule for p in report.problems}, report.problems


def test_every_registered_rule_has_a_case() -> None:
    covered = {rule_id for rule_id, _, _ in CASES}
    missing = sorted({r.id for r in RULES} - covered)
    assert not missing, f"rules without a firing test: {missing}"


def test_in_message_rules_map_to_0001_and_cross_rules_to_their_own_code() -> None:
    by_id = {r.id: r for r in RULES}
    assert by_id["CS002"].retourcode == "0001" and by_id["CS002"].level == 2
    assert by_id["TR346"].retourcode == "9346" and by_id["TR346"].level == 4
    assert by_id["TR319"].retourcode == "9319"
    assert by_id["TR135"].retourcode == "8848" and by_id["TR135"].level == 4


@pytest.mark.parametrize(
    ("bsn", "valid"),
    [
        ("999990019", True),
        ("111222011", True),
        ("123456782", True),
        ("123456789", False),
        ("999990018", False),
        ("12345678", False),
        ("12345678a", False),
    ],
)
def test_bsn_eleven_test(bsn: str, valid: bool) -> None:
    assert bsn_is_valid(bsn) is valid


def test_minute_tariff_tolerance_follows_iv081() -> None:
    # Hourly tariff 7000 cents, 45 minutes: per-minute tariff shown 117 (116.67 rounded),
    # amount (7000 × 45) / 60 = 5250; 45 × 117 = 5265 differs by 15, within 45 // 2 + 1.
    want, tolerance = expected_amount(45, 117, "01")
    assert abs(5250 - want) <= tolerance
    want, tolerance = expected_amount(3, 6250, "04")
    assert (want, tolerance) == (18750, 0)


def test_rules_do_not_run_on_xsd_invalid_messages(validator: Validator) -> None:
    text = sample(W301).replace(">999990019<", ">12345678<")  # 8 digits: XSD pattern
    report = validator.validate(text.encode())
    assert {p.rule for p in report.problems} == {"XSD-PATTERN"}
    assert report.level == 1 and report.retourcodes == []
