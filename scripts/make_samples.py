"""Write ``samples/``: a valid message of every iWmo/iJw 3.2 type, envelopes, invalid cases.

The heenberichten are written out below as realistic DOWR traffic (gemeenten Deventer 0150,
Olst-Wijhe 0175, Raalte 0177; zorgaanbieders 12345678 and 87654321; test BSNs that pass the
eleven-test). iJw versions use the iJw code lists; retourberichten are derived from their
heenbericht by the rule of facts sheet 2.3, so they stay in step with the schemas.

Each invalid sample breaks exactly one named rule (``also`` lists a second id where the standard
gives one fault two ids); ``samples/invalid/expected.json`` names it
and ``tests/test_samples.py`` checks that the rule, and only that rule, fires.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable
from pathlib import Path

from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from schema_spec import Cls, heen_bodies

from gateway import envelope
from gateway.standards import MESSAGES, Kind, Standard, basis_namespace, message_namespace

OUT = Path(__file__).resolve().parent.parent / "samples"

# Per-standard values: product categories/codes and stop reasons differ between iWmo and iJw.
VALUES = {
    Standard.IWMO: {
        "cat": "02",
        "code": "02A01",
        "cat2": "01",
        "code2": "01A03",
        "stop": "19",
        "afwijzing": "3",
        "gemeente": "0150",
    },
    Standard.IJW: {
        "cat": "45",
        "code": "45A48",
        "cat2": "43",
        "code2": "43A11",
        "stop": "31",
        "afwijzing": "8",
        "gemeente": "0175",
    },
}

HEADER = """  <m:Header>
    <m:BerichtCode>{berichtcode}</m:BerichtCode>
    <m:BerichtVersie>3</m:BerichtVersie>
    <m:BerichtSubversie>2</m:BerichtSubversie>
    <m:Afzender>{afzender}</m:Afzender>
    <m:Ontvanger>{ontvanger}</m:Ontvanger>
    <m:BerichtIdentificatie>
      <b:Identificatie>{ident}</b:Identificatie>
      <b:Dagtekening>{dagtekening}</b:Dagtekening>
    </m:BerichtIdentificatie>
    <m:XsdVersie>
      <b:BasisschemaXsdVersie>1.0.0</b:BasisschemaXsdVersie>
      <b:BerichtXsdVersie>1.0.0</b:BerichtXsdVersie>
    </m:XsdVersie>
{header_extra}  </m:Header>
"""

VERKORTE_NAAM = """    <m:Naam>
      <b:Geslachtsnaam>
        <b:Achternaam>Mulder</b:Achternaam>
        <b:Voorvoegsel>de</b:Voorvoegsel>
      </b:Geslachtsnaam>
      <b:Voorletters>JP</b:Voorletters>
    </m:Naam>
"""

CLIENT_HEAD = (
    """    <m:Bsn>{bsn}</m:Bsn>
    <m:Geboortedatum>
      <b:Datum>{geboren}</b:Datum>
    </m:Geboortedatum>
    <m:Geslacht>1</m:Geslacht>
"""
    + VERKORTE_NAAM
)

BODIES: dict[int, str] = {
    301: """  <m:Client>
    <m:Bsn>{bsn}</m:Bsn>
    <m:Geboortedatum>
      <b:Datum>{geboren}</b:Datum>
    </m:Geboortedatum>
    <m:Geslacht>2</m:Geslacht>
    <m:Naam>
      <b:Geslachtsnaam>
        <b:Achternaam>Jansen</b:Achternaam>
      </b:Geslachtsnaam>
      <b:Voornamen>Hendrika Maria</b:Voornamen>
      <b:Voorletters>HM</b:Voorletters>
      <b:NaamGebruik>1</b:NaamGebruik>
    </m:Naam>
    <m:Communicatie>
      <b:Vorm>1</b:Vorm>
      <b:Taal>Turks</b:Taal>
    </m:Communicatie>
    <m:Commentaar>Client is slechtziend; bel voor een huisbezoek.</m:Commentaar>
    <m:Relaties>
      <m:Relatie>
        <m:Nummer>R0001</m:Nummer>
        <m:Volgorde>1</m:Volgorde>
        <m:Soort>16</m:Soort>
        <m:Naam>
          <b:Geslachtsnaam>
            <b:Achternaam>Jansen</b:Achternaam>
          </b:Geslachtsnaam>
          <b:Voorletters>K</b:Voorletters>
          <b:NaamGebruik>1</b:NaamGebruik>
        </m:Naam>
        <m:Contact>
          <m:Soort>02</m:Soort>
          <m:Telefoon>
            <b:Telefoon01>
              <b:Telefoonnummer>0612345678</b:Telefoonnummer>
              <b:Landnummer>0031</b:Landnummer>
            </b:Telefoon01>
          </m:Telefoon>
          <m:Emailadres>k.jansen@example.nl</m:Emailadres>
        </m:Contact>
      </m:Relatie>
    </m:Relaties>
    <m:Contactgegevens>
      <m:Contact>
        <m:Soort>01</m:Soort>
        <m:Adres>
          <b:Huis>
            <b:Huisnummer>12</b:Huisnummer>
            <b:Huisletter>a</b:Huisletter>
          </b:Huis>
          <b:Postcode>7411AB</b:Postcode>
          <b:Straatnaam>Brink</b:Straatnaam>
          <b:Plaatsnaam>Deventer</b:Plaatsnaam>
          <b:LandCode>NL</b:LandCode>
        </m:Adres>
      </m:Contact>
    </m:Contactgegevens>
    <m:ToegewezenProducten>
      <m:ToegewezenProduct>
        <m:ToewijzingNummer>1001</m:ToewijzingNummer>
        <m:Product>
          <b:Categorie>{cat}</b:Categorie>
          <b:Code>{code}</b:Code>
        </m:Product>
        <m:Toewijzingsdatum>2026-10-01</m:Toewijzingsdatum>
        <m:Toewijzingstijd>09:30:00</m:Toewijzingstijd>
        <m:Ingangsdatum>2026-10-05</m:Ingangsdatum>
        <m:Einddatum>2027-10-04</m:Einddatum>
        <m:Omvang>
          <b:Volume>4</b:Volume>
          <b:Eenheid>04</b:Eenheid>
          <b:Frequentie>2</b:Frequentie>
        </m:Omvang>
      </m:ToegewezenProduct>
      <m:ToegewezenProduct>
        <m:ToewijzingNummer>1002</m:ToewijzingNummer>
        <m:Product>
          <b:Categorie>{cat2}</b:Categorie>
        </m:Product>
        <m:Toewijzingsdatum>2026-10-01</m:Toewijzingsdatum>
        <m:Toewijzingstijd>09:30:00</m:Toewijzingstijd>
        <m:Ingangsdatum>2026-10-05</m:Ingangsdatum>
        <m:Einddatum>2027-04-04</m:Einddatum>
        <m:Budget>240000</m:Budget>
        <m:Commentaar>Budget voor zes maanden.</m:Commentaar>
      </m:ToegewezenProduct>
    </m:ToegewezenProducten>
  </m:Client>
""",
    305: """  <m:Client>
"""
    + CLIENT_HEAD
    + """    <m:StartProducten>
      <m:StartProduct>
        <m:ToewijzingNummer>1001</m:ToewijzingNummer>
        <m:Product>
          <b:Categorie>{cat}</b:Categorie>
          <b:Code>{code}</b:Code>
        </m:Product>
        <m:ToewijzingIngangsdatum>2026-10-05</m:ToewijzingIngangsdatum>
        <m:Begindatum>2026-10-07</m:Begindatum>
        <m:StatusAanlevering>1</m:StatusAanlevering>
      </m:StartProduct>
    </m:StartProducten>
  </m:Client>
""",
    307: """  <m:Client>
"""
    + CLIENT_HEAD
    + """    <m:StopProducten>
      <m:StopProduct>
        <m:ToewijzingNummer>1001</m:ToewijzingNummer>
        <m:Product>
          <b:Categorie>{cat}</b:Categorie>
          <b:Code>{code}</b:Code>
        </m:Product>
        <m:ToewijzingIngangsdatum>2026-10-05</m:ToewijzingIngangsdatum>
        <m:Begindatum>2026-10-07</m:Begindatum>
        <m:RedenBeeindiging>{stop}</m:RedenBeeindiging>
        <m:Einddatum>2026-10-30</m:Einddatum>
        <m:StatusAanlevering>1</m:StatusAanlevering>
      </m:StopProduct>
    </m:StopProducten>
  </m:Client>
""",
    315: """  <m:Client>
"""
    + CLIENT_HEAD
    + """{gezag}    <m:Commentaar>Aanvraag na intake op 2026-10-20.</m:Commentaar>
    <m:AangevraagdeProducten>
      <m:AangevraagdProduct>
        <m:ReferentieAanbieder>VOT-2026-0042</m:ReferentieAanbieder>
        <m:Product>
          <b:Categorie>{cat}</b:Categorie>
          <b:Code>{code}</b:Code>
        </m:Product>
        <m:ToewijzingIngangsdatum>2026-11-02</m:ToewijzingIngangsdatum>
        <m:ToewijzingEinddatum>2027-11-01</m:ToewijzingEinddatum>
        <m:Omvang>
          <b:Volume>3</b:Volume>
          <b:Eenheid>04</b:Eenheid>
          <b:Frequentie>2</b:Frequentie>
        </m:Omvang>
        <m:Verwijzer>
          <b:Type>02</b:Type>
          <b:ZorgverlenerCode>01234567</b:ZorgverlenerCode>
        </m:Verwijzer>
        <m:Raamcontract>2</m:Raamcontract>
      </m:AangevraagdProduct>
    </m:AangevraagdeProducten>
  </m:Client>
""",
    317: """  <m:Client>
    <m:Bsn>{bsn}</m:Bsn>
    <m:Verzoek>
      <m:ReferentieAanbieder>VOW-2026-0007</m:ReferentieAanbieder>
      <m:RedenVerzoek>1</m:RedenVerzoek>
      <m:OngewijzigdeProducten>
        <m:OngewijzigdProduct>
          <m:ToewijzingNummer>1002</m:ToewijzingNummer>
        </m:OngewijzigdProduct>
      </m:OngewijzigdeProducten>
      <m:TeWijzigenProducten>
        <m:TeWijzigenProduct>
          <m:ToewijzingNummer>1001</m:ToewijzingNummer>
          <m:GewensteIngangsdatum>2026-12-01</m:GewensteIngangsdatum>
          <m:Einddatum>2027-10-04</m:Einddatum>
          <m:Omvang>
            <b:Volume>6</b:Volume>
            <b:Eenheid>04</b:Eenheid>
            <b:Frequentie>2</b:Frequentie>
          </m:Omvang>
        </m:TeWijzigenProduct>
      </m:TeWijzigenProducten>
      <m:NieuweProducten>
        <m:NieuwProduct>
          <m:Product>
            <b:Categorie>{cat2}</b:Categorie>
            <b:Code>{code2}</b:Code>
          </m:Product>
          <m:GewensteIngangsdatum>2026-12-01</m:GewensteIngangsdatum>
          <m:Einddatum>2027-05-31</m:Einddatum>
          <m:Omvang>
            <b:Volume>2</b:Volume>
            <b:Eenheid>04</b:Eenheid>
            <b:Frequentie>2</b:Frequentie>
          </m:Omvang>
        </m:NieuwProduct>
      </m:NieuweProducten>
    </m:Verzoek>
  </m:Client>
""",
    319: """  <m:Antwoord>
    <m:ReferentieAanbieder>VOT-2026-0042</m:ReferentieAanbieder>
    <m:VerzoekAntwoord>1</m:VerzoekAntwoord>
    <m:RedenAfwijzingVerzoek>{afwijzing}</m:RedenAfwijzingVerzoek>
{woonplaats}  </m:Antwoord>
""",
    323: """  <m:Declaratie>
    <m:DeclaratieNummer>D20261000017</m:DeclaratieNummer>
    <m:DeclaratiePeriode>
      <b:Begindatum>2026-10-01</b:Begindatum>
      <b:Einddatum>2026-10-31</b:Einddatum>
    </m:DeclaratiePeriode>
    <m:DeclaratieDagtekening>2026-11-03</m:DeclaratieDagtekening>
    <m:TotaalIngediendBedrag>
      <b:TotaalBedrag>132500</b:TotaalBedrag>
      <b:DebetCredit>D</b:DebetCredit>
    </m:TotaalIngediendBedrag>
    <m:Clienten>
      <m:Client>
        <m:Bsn>{bsn}</m:Bsn>
        <m:Prestaties>
          <m:Prestatie>
            <m:ProductReferentie>
              <b:ReferentieNummer>P2026100001</b:ReferentieNummer>
            </m:ProductReferentie>
            <m:ToewijzingNummer>1001</m:ToewijzingNummer>
            <m:ProductCategorie>{cat}</m:ProductCategorie>
            <m:ProductCode>{code}</m:ProductCode>
            <m:ProductPeriode>
              <b:Begindatum>2026-10-07</b:Begindatum>
              <b:Einddatum>2026-10-31</b:Einddatum>
            </m:ProductPeriode>
            <m:GeleverdVolume>16</m:GeleverdVolume>
            <m:Eenheid>04</m:Eenheid>
            <m:ProductTarief>6250</m:ProductTarief>
            <m:IngediendBedrag>
              <b:Bedrag>100000</b:Bedrag>
              <b:DebetCredit>D</b:DebetCredit>
            </m:IngediendBedrag>
          </m:Prestatie>
          <m:Prestatie>
            <m:ProductReferentie>
              <b:ReferentieNummer>P2026100003</b:ReferentieNummer>
              <b:VorigReferentieNummer>P2026090007</b:VorigReferentieNummer>
            </m:ProductReferentie>
            <m:ToewijzingNummer>1001</m:ToewijzingNummer>
            <m:ProductCategorie>{cat}</m:ProductCategorie>
            <m:ProductCode>{code}</m:ProductCode>
            <m:ProductPeriode>
              <b:Begindatum>2026-09-01</b:Begindatum>
              <b:Einddatum>2026-09-30</b:Einddatum>
            </m:ProductPeriode>
            <m:GeleverdVolume>2</m:GeleverdVolume>
            <m:Eenheid>04</m:Eenheid>
            <m:ProductTarief>6250</m:ProductTarief>
            <m:IngediendBedrag>
              <b:Bedrag>12500</b:Bedrag>
              <b:DebetCredit>C</b:DebetCredit>
            </m:IngediendBedrag>
          </m:Prestatie>
        </m:Prestaties>
      </m:Client>
      <m:Client>
        <m:Bsn>{bsn2}</m:Bsn>
        <m:Prestaties>
          <m:Prestatie>
            <m:ProductReferentie>
              <b:ReferentieNummer>P2026100002</b:ReferentieNummer>
            </m:ProductReferentie>
            <m:ToewijzingNummer>1002</m:ToewijzingNummer>
            <m:ProductCategorie>{cat2}</m:ProductCategorie>
            <m:ProductCode>{code2}</m:ProductCode>
            <m:ProductPeriode>
              <b:Begindatum>2026-10-01</b:Begindatum>
              <b:Einddatum>2026-10-31</b:Einddatum>
            </m:ProductPeriode>
            <m:GeleverdVolume>45000</m:GeleverdVolume>
            <m:Eenheid>83</m:Eenheid>
            <m:IngediendBedrag>
              <b:Bedrag>45000</b:Bedrag>
              <b:DebetCredit>D</b:DebetCredit>
            </m:IngediendBedrag>
          </m:Prestatie>
        </m:Prestaties>
      </m:Client>
    </m:Clienten>
  </m:Declaratie>
""",
    325: """  <m:DeclaratieAntwoord>
    <m:DeclaratieNummer>D20261000017</m:DeclaratieNummer>
    <m:TotaalIngediendBedrag>
      <b:TotaalBedrag>132500</b:TotaalBedrag>
      <b:DebetCredit>D</b:DebetCredit>
    </m:TotaalIngediendBedrag>
    <m:TotaalToegekendBedrag>
      <b:TotaalBedrag>87500</b:TotaalBedrag>
      <b:DebetCredit>D</b:DebetCredit>
    </m:TotaalToegekendBedrag>
    <m:Clienten>
      <m:Client>
        <m:Bsn>{bsn2}</m:Bsn>
        <m:Prestaties>
          <m:Prestatie>
            <m:ProductReferentie>
              <b:ReferentieNummer>P2026100002</b:ReferentieNummer>
            </m:ProductReferentie>
            <m:ToewijzingNummer>1002</m:ToewijzingNummer>
            <m:ProductCategorie>{cat2}</m:ProductCategorie>
            <m:ProductCode>{code2}</m:ProductCode>
            <m:ProductPeriode>
              <b:Begindatum>2026-10-01</b:Begindatum>
              <b:Einddatum>2026-10-31</b:Einddatum>
            </m:ProductPeriode>
            <m:GeleverdVolume>45000</m:GeleverdVolume>
            <m:Eenheid>83</m:Eenheid>
            <m:IngediendBedrag>
              <b:Bedrag>45000</b:Bedrag>
              <b:DebetCredit>D</b:DebetCredit>
            </m:IngediendBedrag>
            <m:RetourCodes>
              <m:RetourCode>0611</m:RetourCode>
            </m:RetourCodes>
          </m:Prestatie>
        </m:Prestaties>
        <m:RetourCodes>
          <m:RetourCode>0200</m:RetourCode>
        </m:RetourCodes>
      </m:Client>
    </m:Clienten>
    <m:RetourCodes>
      <m:RetourCode>0200</m:RetourCode>
    </m:RetourCodes>
  </m:DeclaratieAntwoord>
""",
}

HEADER_325 = """    <m:DeclaratieIdentificatie>
      <b:Identificatie>{claim_ident}</b:Identificatie>
      <b:Dagtekening>2026-11-03</b:Dagtekening>
    </m:DeclaratieIdentificatie>
    <m:XsdVersieDeclaratie>
      <b:BasisschemaXsdVersie>1.0.0</b:BasisschemaXsdVersie>
      <b:BerichtXsdVersie>1.0.0</b:BerichtXsdVersie>
    </m:XsdVersieDeclaratie>
    <m:RetourCodes>
      <m:RetourCode>0200</m:RetourCode>
    </m:RetourCodes>
"""

DAGTEKENING = {
    301: "2026-10-01",
    305: "2026-10-08",
    307: "2026-11-02",
    315: "2026-10-21",
    317: "2026-11-10",
    319: "2026-10-26",
    323: "2026-11-03",
    325: "2026-11-12",
}
AANBIEDER = "12345678"
BSN, BSN2 = "999990019", "999990032"


def heen_xml(std: Standard, number: int) -> bytes:
    msg = MESSAGES[(std, number)]
    values = VALUES[std]
    gemeente = values["gemeente"]
    afzender, ontvanger = (
        (gemeente, AANBIEDER) if msg.sender.value == "gemeente" else (AANBIEDER, gemeente)
    )
    prefix = msg.code.lower()
    ident = f"{std.message_prefix}{number}{'A' if std is Standard.IWMO else 'B'}0001"
    claim_ident = f"{std.message_prefix}323{'A' if std is Standard.IWMO else 'B'}0001"
    header = HEADER.format(
        berichtcode=msg.bericht_code,
        afzender=afzender,
        ontvanger=ontvanger,
        ident=ident,
        dagtekening=DAGTEKENING[number],
        header_extra=HEADER_325.format(claim_ident=claim_ident) if number == 325 else "",
    )
    woonplaats = (
        "    <m:Woonplaatsbeginsel>\n      <m:Gemeente>0177</m:Gemeente>\n"
        "    </m:Woonplaatsbeginsel>\n"
        if std is Standard.IJW
        else ""
    )
    gezag = "    <m:GezagsdragerBekend>1</m:GezagsdragerBekend>\n" if std is Standard.IJW else ""
    body = BODIES[number].format(
        bsn=BSN,
        bsn2=BSN2,
        geboren="2009-05-17" if std is Standard.IJW else "1948-03-12",
        woonplaats=woonplaats,
        gezag=gezag,
        **values,
    )
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<m:Bericht xmlns:b="{basis_namespace(std)}" '
        f'xmlns:m="{message_namespace(std, number)}">\n{header}{body}</m:Bericht>\n'
    )
    text = text.replace("<m:", f"<{prefix}:").replace("</m:", f"</{prefix}:")
    text = text.replace("xmlns:m=", f"xmlns:{prefix}=").replace("<b:", f"<{std.value}:")
    text = text.replace("</b:", f"</{std.value}:").replace("xmlns:b=", f"xmlns:{std.value}=")
    return text.encode()


def _retour_codes(parent: etree._Element, ns: str, code: str = "0200") -> None:
    codes = etree.SubElement(parent, f"{{{ns}}}RetourCodes")
    etree.SubElement(codes, f"{{{ns}}}RetourCode").text = code


def _mark_classes(el: etree._Element, spec: Cls, ns: str) -> None:
    for child_spec in spec.children:
        if isinstance(child_spec, Cls):
            for child in el.findall(f"{{{ns}}}{child_spec.name}"):
                _mark_classes(child, child_spec, ns)
    if spec.retour:
        _retour_codes(el, ns)


def retour_xml(std: Standard, number: int) -> bytes:
    """Derive the retour of a heenbericht: every class echoed with RetourCode 0200."""
    msg = MESSAGES[(std, number)]
    assert msg.kind is Kind.RETOUR and msg.pair is not None
    heen = MESSAGES[(std, msg.pair)]
    text = heen_xml(std, heen.number).decode()
    text = text.replace(heen.code.lower(), msg.code.lower())
    text = text.replace(
        f"<{msg.code.lower()}:BerichtCode>{heen.bericht_code}<",
        f"<{msg.code.lower()}:BerichtCode>{msg.bericht_code}<",
    )
    root = etree.fromstring(text.encode())
    ns = message_namespace(std, number)
    basis = basis_namespace(std)
    header = root.find(f"{{{ns}}}Header")
    assert header is not None
    etree.SubElement(
        header, f"{{{ns}}}IdentificatieRetour"
    ).text = f"{std.message_prefix}{number}R0001"
    etree.SubElement(header, f"{{{ns}}}DagtekeningRetour").text = "2026-11-13"
    versie = etree.SubElement(header, f"{{{ns}}}XsdVersieRetour")
    etree.SubElement(versie, f"{{{basis}}}BasisschemaXsdVersie").text = "1.0.0"
    etree.SubElement(versie, f"{{{basis}}}BerichtXsdVersie").text = "1.0.0"
    _retour_codes(header, ns)
    (body_spec,) = heen_bodies(std)[heen.number]
    assert isinstance(body_spec, Cls)
    body = root.find(f"{{{ns}}}{body_spec.name}")
    assert body is not None
    _mark_classes(body, body_spec, ns)
    etree.indent(root, space="  ")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(root) + b"\n"


def valid_messages() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for (std, number), msg in sorted(MESSAGES.items()):
        data = retour_xml(std, number) if msg.kind is Kind.RETOUR else heen_xml(std, number)
        out[f"{std.value}/{msg.code.lower()}.xml"] = data
    return out


Mutation = Callable[[str], str]


def _sub(old: str, new: str, count: int = 1) -> Mutation:
    def apply(text: str) -> str:
        if old not in text:
            raise ValueError(f"mutation target not found: {old!r}")
        return text.replace(old, new, count)

    return apply


def _bytes_prefix(prefix: str) -> Mutation:
    return lambda text: prefix + text


# (file name, base sample, mutation, expected rule id, what it shows)
# rule: one id, or ids joined by '+' when one fault carries several
INVALID: list[tuple[str, str, Mutation, str, str]] = [
    (
        "wmo301-bsn-elfproef.xml",
        "iwmo/wmo301.xml",
        _sub("<wmo301:Bsn>999990019<", "<wmo301:Bsn>123456789<"),
        "CS002",
        "BSN that fails the eleven-test",
    ),
    (
        "wmo301-bsn-letters.xml",
        "iwmo/wmo301.xml",
        _sub("<wmo301:Bsn>999990019<", "<wmo301:Bsn>99999001A<"),
        "XSD-PATTERN",
        "BSN with a letter (pattern of LDT_BurgerServicenummer)",
    ),
    (
        "wmo301-geslacht-code.xml",
        "iwmo/wmo301.xml",
        _sub("<wmo301:Geslacht>2<", "<wmo301:Geslacht>7<"),
        "XSD-ENUMERATION",
        "Geslacht outside COD046",
    ),
    (
        "wmo301-identificatie-te-lang.xml",
        "iwmo/wmo301.xml",
        _sub("WMO301A0001", "WMO301A000100"),
        "XSD-LENGTH",
        "Identificatie longer than 12 characters",
    ),
    (
        "wmo301-dagtekening-tijdzone.xml",
        "iwmo/wmo301.xml",
        _sub("<iwmo:Dagtekening>2026-10-01<", "<iwmo:Dagtekening>2026-10-01Z<"),
        "XSD-PATTERN",
        "date with a time zone (RS032)",
    ),
    (
        "wmo301-zonder-contactgegevens.xml",
        "iwmo/wmo301.xml",
        lambda t: (
            t[: t.index("    <wmo301:Contactgegevens>")]
            + t[t.index("    <wmo301:ToegewezenProducten>") :]
        ),
        "XSD-STRUCTURE",
        "mandatory Contactgegevens missing",
    ),
    (
        "wmo301-volgorde.xml",
        "iwmo/wmo301.xml",
        _sub(
            "<wmo301:Geslacht>2</wmo301:Geslacht>\n    <wmo301:Geboortedatum>",
            "<wmo301:Geboortedatum>",
            0,
        ),
        "XSD-STRUCTURE",
        "placeholder replaced below",
    ),
    (
        "wmo301-berichtcode.xml",
        "iwmo/wmo301.xml",
        _sub("<wmo301:BerichtCode>414<", "<wmo301:BerichtCode>415<"),
        "RS047",
        "BerichtCode of WMO302 inside a WMO301 namespace",
    ),
    (
        "wmo301-berichtversie.xml",
        "iwmo/wmo301.xml",
        _sub("<wmo301:BerichtSubversie>2<", "<wmo301:BerichtSubversie>1<"),
        "CS015",
        "BerichtSubversie 1 in a 3.2 message",
    ),
    (
        "wmo301-einddatum-voor-ingangsdatum.xml",
        "iwmo/wmo301.xml",
        _sub("<wmo301:Einddatum>2027-10-04<", "<wmo301:Einddatum>2026-10-04<"),
        "CS003",
        "Einddatum before Ingangsdatum",
    ),
    (
        "wmo301-taal-ontbreekt.xml",
        "iwmo/wmo301.xml",
        _sub("      <iwmo:Taal>Turks</iwmo:Taal>\n", ""),
        "CD007",
        "interpreter requested without a language",
    ),
    (
        "wmo301-postcode-formaat.xml",
        "iwmo/wmo301.xml",
        _sub("<iwmo:Postcode>7411AB<", "<iwmo:Postcode>0411AB<"),
        "CS089",
        "Dutch postcode that does not match [1-9][0-9]{3}[a-zA-Z]{2}",
    ),
    (
        "wmo301-reden-verwijderd.xml",
        "iwmo/wmo301.xml",
        _sub(
            "</wmo301:Einddatum>\n        <wmo301:Omvang>",
            "</wmo301:Einddatum>\n        <wmo301:RedenWijziging>13</wmo301:RedenWijziging>\n"
            "        <wmo301:Omvang>",
        ),
        "CS335",
        "RedenWijziging 13 while Einddatum differs from Ingangsdatum",
    ),
    (
        "wmo301-budget-en-omvang.xml",
        "iwmo/wmo301.xml",
        _sub(
            "</wmo301:Omvang>\n      </wmo301:ToegewezenProduct>",
            "</wmo301:Omvang>\n        <wmo301:Budget>1000</wmo301:Budget>\n"
            "      </wmo301:ToegewezenProduct>",
        ),
        "CD077+CD078",
        "Omvang and Budget both present (one fault, the two sides of one condition)",
    ),
    (
        "jw305-dagtekening-toekomst.xml",
        "ijw/jw305.xml",
        _sub("<ijw:Dagtekening>2026-10-08<", "<ijw:Dagtekening>2099-10-08<"),
        "TR135",
        "Dagtekening after the system date",
    ),
    (
        "wmo305-status-gewijzigd.xml",
        "iwmo/wmo305.xml",
        _sub("<wmo305:StatusAanlevering>1<", "<wmo305:StatusAanlevering>2<"),
        "CS058",
        "StatusAanlevering 2 (not allowed)",
    ),
    (
        "wmo315-verwijzer-naam-en-code.xml",
        "iwmo/wmo315.xml",
        _sub(
            "<iwmo:Type>02</iwmo:Type>",
            "<iwmo:Type>02</iwmo:Type>\n          <iwmo:Naam>Huisarts Bos</iwmo:Naam>",
        ),
        "CD066",
        "Verwijzer with both a Naam and a ZorgverlenerCode",
    ),
    (
        "wmo317-alleen-nieuw.xml",
        "iwmo/wmo317.xml",
        lambda t: (
            t[: t.index("      <wmo317:OngewijzigdeProducten>")]
            + t[t.index("      <wmo317:NieuweProducten>") :]
        ),
        "TR352",
        "VOW without OngewijzigdProduct or TeWijzigenProduct",
    ),
    (
        "wmo319-reden-ontbreekt.xml",
        "iwmo/wmo319.xml",
        _sub("    <wmo319:RedenAfwijzingVerzoek>3</wmo319:RedenAfwijzingVerzoek>\n", ""),
        "CD085",
        "rejection without a reason",
    ),
    (
        "jw319-woonplaatsbeginsel-zonder-reden-8.xml",
        "ijw/jw319.xml",
        _sub("<jw319:RedenAfwijzingVerzoek>8<", "<jw319:RedenAfwijzingVerzoek>3<"),
        "TR409",
        "Woonplaatsbeginsel filled while the reason is not 8",
    ),
    (
        "jw319-reden-8-zonder-woonplaatsbeginsel.xml",
        "ijw/jw319.xml",
        _sub(
            "    <jw319:Woonplaatsbeginsel>\n      <jw319:Gemeente>0177</jw319:Gemeente>\n"
            "    </jw319:Woonplaatsbeginsel>\n",
            "",
        ),
        "TR377",
        "RedenAfwijzingVerzoek 8 (woonplaatsbeginsel) without the Woonplaatsbeginsel class",
    ),
    (
        "wmo323-totaal-klopt-niet.xml",
        "iwmo/wmo323.xml",
        _sub("<iwmo:TotaalBedrag>132500<", "<iwmo:TotaalBedrag>145000<"),
        "TR358",
        "TotaalIngediendBedrag is not the signed sum of the prestaties",
    ),
    (
        "wmo323-bedrag-volume-tarief.xml",
        "iwmo/wmo323.xml",
        lambda t: _sub("<iwmo:TotaalBedrag>132500<", "<iwmo:TotaalBedrag>132600<")(
            _sub("<iwmo:Bedrag>100000<", "<iwmo:Bedrag>100100<")(t)
        ),
        "TR346",
        "IngediendBedrag differs from GeleverdVolume x ProductTarief (and the total follows it)",
    ),
    (
        "wmo323-periode-twee-maanden.xml",
        "iwmo/wmo323.xml",
        _sub(
            "<iwmo:Begindatum>2026-10-01</iwmo:Begindatum>\n      <iwmo:Einddatum>2026-10-31"
            "</iwmo:Einddatum>\n    </wmo323:DeclaratiePeriode>",
            "<iwmo:Begindatum>2026-09-01</iwmo:Begindatum>\n      <iwmo:Einddatum>2026-10-31"
            "</iwmo:Einddatum>\n    </wmo323:DeclaratiePeriode>",
        ),
        "CS340",
        "DeclaratiePeriode of two months",
    ),
    (
        "wmo323-credit-zonder-vorig.xml",
        "iwmo/wmo323.xml",
        _sub(
            "\n              <iwmo:VorigReferentieNummer>P2026090007</iwmo:VorigReferentieNummer>",
            "",
        ),
        "CD060",
        "credit prestatie without VorigReferentieNummer",
    ),
    (
        "jw323-euro-tarief.xml",
        "ijw/jw323.xml",
        _sub(
            "<jw323:Eenheid>83</jw323:Eenheid>\n",
            "<jw323:Eenheid>83</jw323:Eenheid>\n            <jw323:ProductTarief>100</jw323:ProductTarief>\n",
        ),
        "CD087",
        "ProductTarief filled for Eenheid 83 (euro's)",
    ),
    (
        "jw325-som-afgewezen.xml",
        "ijw/jw325.xml",
        _sub("<ijw:TotaalBedrag>87500<", "<ijw:TotaalBedrag>90000<"),
        "TR342",
        "rejected prestaties do not add up to ingediend minus toegekend",
    ),
    (
        "onbekende-namespace.xml",
        "iwmo/wmo301.xml",
        lambda t: t.replace(
            "http://www.istandaarden.nl/iwmo/3_2/wmo301/schema",
            "http://example.org/berichten/wmo301",
        ),
        "NS-UNKNOWN",
        "root namespace that is no iStandaarden namespace",
    ),
    (
        "release-zonder-schema.xml",
        "iwmo/wmo301.xml",
        lambda t: t.replace("iwmo/3_2/", "iwmo/3_9/"),
        "NS-UNSUPPORTED",
        "an iWmo release for which no schema is loaded",
    ),
    (
        "doctype-entiteit.xml",
        "iwmo/wmo301.xml",
        lambda t: t.replace(
            '<?xml version="1.0" encoding="UTF-8"?>\n',
            '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE x [<!ENTITY e "lol">]>\n',
        ),
        "XML-DTD",
        "DOCTYPE with an entity declaration",
    ),
    (
        "niet-welgevormd.xml",
        "iwmo/wmo301.xml",
        lambda t: t[: len(t) // 2],
        "XML-SYNTAX",
        "truncated document",
    ),
    ("bom.xml", "iwmo/wmo305.xml", _bytes_prefix("\ufeff"), "OP192-BOM", "UTF-8 byte-order mark"),
]


def _fix_order_mutation() -> None:
    """The element-order case: Geboortedatum moved after Geslacht."""

    def swap(text: str) -> str:
        head = (
            "    <wmo301:Geboortedatum>\n      <iwmo:Datum>1948-03-12</iwmo:Datum>\n"
            "    </wmo301:Geboortedatum>\n"
        )
        gender = "    <wmo301:Geslacht>2</wmo301:Geslacht>\n"
        if head + gender not in text:
            raise ValueError("order mutation target not found")
        return text.replace(head + gender, gender + head, 1)

    for i, case in enumerate(INVALID):
        if case[0] == "wmo301-volgorde.xml":
            INVALID[i] = (
                case[0],
                case[1],
                swap,
                "XSD-STRUCTURE",
                "Geboortedatum after Geslacht (wrong element order)",
            )


_fix_order_mutation()


Expected = dict[str, dict[str, str | list[str]]]


def invalid_messages(valid: dict[str, bytes]) -> tuple[dict[str, bytes], Expected]:
    files: dict[str, bytes] = {}
    expected: Expected = {}
    for name, base, mutate, rule, why in INVALID:
        files[name] = mutate(valid[base].decode()).encode()
        first, *also = rule.split("+")
        expected[name] = {"rule": first, "breaks": why, "based_on": base}
        if also:
            expected[name]["also"] = also
    return files, expected


def envelopes(valid: dict[str, bytes]) -> dict[str, bytes]:
    """Di01/Du01 envelopes in both namespaces, and a Fo01."""
    di01_ref = "3f2b8c1e-6a4d-4c9b-9e2f-1a7d5c3b8e01"
    du01_ref = "8d4e2a6f-1b3c-4d5e-8f7a-9b0c1d2e3f40"
    wmo301 = valid["iwmo/wmo301.xml"]
    wmo302 = valid["iwmo/wmo302.xml"]
    out = {
        "di01-wmo301-ggk0210.xml": envelope.build_di01(
            wmo301,
            zender="0150",
            zender_applicatie="DOWRsociaal",
            ontvanger="12345678",
            functie="WMO301",
            referentienummer=di01_ref,
            tijdstip="20261001093012345",
            generation=envelope.Generation.GGK0210,
        ),
        "du01-wmo302-ggk0210.xml": envelope.build_du01(
            wmo302,
            zender="12345678",
            zender_applicatie="ZorgSuite",
            ontvanger="0150",
            functie="WMO302",
            referentienummer=du01_ref,
            cross_ref=di01_ref,
            tijdstip="20261113101500000",
            generation=envelope.Generation.GGK0210,
        ),
        "di01-jw315-ggk0310.xml": envelope.build_di01(
            valid["ijw/jw315.xml"],
            zender="12345678",
            zender_applicatie="ZorgSuite",
            ontvanger="0175",
            functie="JW315",
            referentienummer="5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d",
            tijdstip="20261021140000",
            generation=envelope.Generation.GGK0310,
        ),
        "fo01-stuf055.xml": envelope.build_fo01(
            zender="0150",
            zender_applicatie="DOWRsociaal",
            ontvanger="12345678",
            referentienummer="0b1c2d3e-4f5a-4b6c-9d7e-8f9a0b1c2d3e",
            cross_ref=du01_ref,
            tijdstip="20261113103000000",
            code="StUF055",
            plek="client",
            omschrijving="Berichtbody is niet conform schema in sectormodel",
            details="WMO302-00010000",
        ),
    }
    return out


def envelope_invalid(valid: dict[str, bytes]) -> tuple[dict[str, bytes], Expected]:
    good = envelopes(valid)["di01-wmo301-ggk0210.xml"].decode()
    cases = {
        "env-uuid-hoofdletters.xml": (
            good.replace(
                "3f2b8c1e-6a4d-4c9b-9e2f-1a7d5c3b8e01", "3F2B8C1E-6A4D-4C9B-9E2F-1A7D5C3B8E01"
            ),
            "IB009",
            "referentienummer not a lower-case UUID v4",
        ),
        "env-functie-payload-verschil.xml": (
            good.replace("<StUF:functie>WMO301<", "<StUF:functie>WMO305<"),
            "ENV-FUNCTIE",
            "envelope functie does not match the payload's message type",
        ),
        "env-payload-geen-base64.xml": (
            good.replace("<GGK:xmlBestand>", "<GGK:xmlBestand>!!").replace(
                "</GGK:xmlBestand>", "</GGK:xmlBestand>"
            ),
            "ENV-XSD",
            "payload is not base64",
        ),
        "env-ontvanger-verschil.xml": (
            good.replace("<StUF:organisatie>12345678<", "<StUF:organisatie>87654321<"),
            "ENV-ONTVANGER",
            "envelope ontvanger differs from the payload's Ontvanger",
        ),
        "env-payload-ongeldig.xml": (
            good.replace(
                base64.b64encode(valid["iwmo/wmo301.xml"]).decode(),
                base64.b64encode(
                    valid["iwmo/wmo301.xml"].replace(b">999990019<", b">123456789<")
                ).decode(),
            ),
            "CS002",
            "valid envelope around a payload that breaks CS002",
        ),
    }
    files = {name: text.encode() for name, (text, _, _) in cases.items()}
    expected: Expected = {
        name: {"rule": rule, "breaks": why, "based_on": "envelopes/di01-wmo301-ggk0210.xml"}
        for name, (_, rule, why) in cases.items()
    }
    return files, expected


def main() -> None:
    valid = valid_messages()
    for name, data in valid.items():
        _write(OUT / name, data)
    for name, data in envelopes(valid).items():
        _write(OUT / "envelopes" / name, data)
    files, expected = invalid_messages(valid)
    env_files, env_expected = envelope_invalid(valid)
    files.update(env_files)
    expected.update(env_expected)
    for name, data in files.items():
        _write(OUT / "invalid" / name, data)
    _write(
        OUT / "invalid" / "expected.json",
        (json.dumps(expected, indent=2, ensure_ascii=False) + "\n").encode(),
    )


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    print(f"wrote {path.relative_to(OUT.parent)}")


if __name__ == "__main__":
    main()
