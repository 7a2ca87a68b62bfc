"""The screen tests: for each screened rule and message number, an XPath 1.0 test that holds
whenever the rule's Python check could report something (see :mod:`gateway.rules.screen`).

Each test is read beside its Python rule: the same paths, the same "first element" or "any
element" reading (a test may look at *any* where Python looks at the first: that only widens
it), the same treatment of absent values. Where exactness in XPath 1.0 would be long (the
overlap rules), a test widens on purpose and says so. Tables the Python rules own (dated
paths, closed periods, logical keys) are read from those modules, so the two cannot drift.
The message types screened are the ones that make up the traffic (301, 305, 307, 315, 323);
the rules of the rarer types run in Python only.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.rules.dates import CLOSED_PERIODS, PAST_DATES
from gateway.rules.keys import LOGICAL_KEYS
from gateway.rules.screen import Key, Unique
from gateway.standards import Kind, MessageType

Tests = dict[str, str]


def _any(*tests: str) -> str:
    return " or ".join(f"({t})" for t in tests)


def _one_of(value: str, codes: Iterable[str]) -> str:
    return "(" + " or ".join(f"S({value}) = '{c}'" for c in codes) + ")"


def _absent(path: str) -> str:
    """No element at ``path`` with text: where the Python rule reads None."""
    return f"not({path}[S(.) != ''])"


KEY_SET_LIMIT = 2000
"""Above this many candidates a uniqueness test flags its rule without looking. ``key()``
copies a value's whole group on every call, so n equal values cost n² in libxslt (8,000 equal
products: 3 s, the Python rule 1.3 s); the Python rules are linear, so a big set is theirs.
(The uniqueness sets, :data:`SETS`, are linear, but keep the limit: the same flags.)"""


def _repeated(name: str) -> str:
    """Some node of the set ``name`` (:data:`SETS`) shares its value with another."""
    return f"repeated('{name}')"


# --- header -----------------------------------------------------------------------------------


def _header(message: MessageType) -> Tests:
    own = "XsdVersieRetour" if message.kind is Kind.RETOUR else "XsdVersie"
    tests = {
        "IV034": _any(
            f"$basis_known and not(S(Header/{own}/BasisschemaXsdVersie) = $basis_xsd)",
            f"$bericht_known and not(S(Header/{own}/BerichtXsdVersie) = $bericht_xsd)",
        )
    }
    if message.kind is not Kind.RETOUR:
        tests["TR135"] = "$dag > $today"
    return tests


# --- client -----------------------------------------------------------------------------------

_BIRTH = "(Client/Geboortedatum | Client/Relaties/Relatie/Geboortedatum)"
_NAMES = "(Client/Naam | Client/Relaties/Relatie/Naam)"
_CONTACTS = "(Client/Relaties/Relatie/Contact | Client/Contactgegevens/Contact)"
_NL = "S(LandCode) = 'NL'"
_POSTCODE = (
    "string-length(S(Postcode)) = 6 and contains('123456789', substring(S(Postcode), 1, 1))"
    " and translate(substring(S(Postcode), 2, 3), '0123456789', '') = ''"
    " and translate(substring(S(Postcode), 5, 2),"
    " 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ', '') = ''"
)

CLIENT: Tests = {
    "CS139": (
        f"{_BIRTH}[DatumGebruik and Datum[S(.) != '']][not("
        "(S(DatumGebruik) = '1' and substring(S(Datum), 9, 2) = '01')"
        " or (S(DatumGebruik) = '2' and substring(S(Datum), 6, 5) = '01-01')"
        " or (S(DatumGebruik) = '3' and S(Datum) = '1900-01-01'))]"
    ),
    "TR002": (
        f"{_BIRTH}[not(S(Datum) = '1900-01-01' and S(DatumGebruik) = '3')]"
        "[D(Datum) + 1200000 < $dag]"
    ),
}
PERSON: Tests = {
    "CS318": "Client/Naam/NaamGebruik[S(.) = '6']",
    "CS050": (
        f"{_NAMES}[(Partnernaam and not({_one_of('NaamGebruik', '1234')}))"
        f" or (not(Partnernaam) and not({_one_of('NaamGebruik', '16')}))]"
    ),
    "CD007": (
        "Client/Communicatie[(S(Vorm) = '1' and not(Taal)) or (not(S(Vorm) = '1') and Taal)]"
    ),
    "CD025": f"{_CONTACTS}/Adres[{_NL} and not(Huis)]",
    "CD034": f"{_CONTACTS}[{_one_of('Soort', ('01', '03'))} and {_absent('Adres/Postcode')}]",
    "CS089": f"{_CONTACTS}/Adres[{_NL} and S(Postcode) != ''][not({_POSTCODE})]",
    "CD005": f"{_CONTACTS}/Adres[boolean(Postcode) != boolean(LandCode)]",
    "CD009": f"{_CONTACTS}[Periode and not(S(Soort) = '04')]",
    "TR006": f"{_CONTACTS}[not(Telefoon) and not(Adres/Huis and Adres/Postcode)]",
    "TR061": (
        f"Client/Contactgegevens[Contact][not(Contact[{_one_of('Soort', ('01', '02', '03'))}])]"
    ),
}
_CONTACT_PERIOD = f"{_CONTACTS}[D(Periode/Einddatum) < D(Periode/Begindatum)]"


# --- products (301, 315) ----------------------------------------------------------------------

_PRODUCTS = {
    301: ("Client/ToegewezenProducten/ToegewezenProduct", "Ingangsdatum", "Einddatum"),
    315: (
        "Client/AangevraagdeProducten/AangevraagdProduct",
        "ToewijzingIngangsdatum",
        "ToewijzingEinddatum",
    ),
}


def _products(number: int) -> Tests:
    p, start, end = _PRODUCTS[number]
    open_after_cutoff = f"({_absent(end)} or D({end}) > 20201231)"
    tests = {
        "CS003": f"{p}[D({end}) < D({start})]",
        "CD079": f"{p}[not(Budget) and not(Product)]",
        "CD075": f"{p}[Budget and {_absent(end)}]",
        "CD076": f"{p}[S(Omvang/Frequentie) = '2' and {_absent(end)}]",
        "CD041": f"{p}[S(Product/Code) != '' and not(Omvang)]",
        "CD077": f"{p}[Omvang and Budget]",
        "CD078": f"{p}[Omvang and Budget]",
        "CD080" if number == 301 else "CD095": (
            f"{p}[Omvang and S(Product/Code) = '' and {open_after_cutoff}]"
        ),
        "CS338" if number == 301 else "CS343": (
            f"{p}[{_one_of('Omvang/Eenheid', ('14', '16', '83', '84'))} and {open_after_cutoff}"
            f" and not({_one_of('Omvang/Frequentie', '246')})]"
        ),
        # Widened: two products share a Categorie (found through a key: a comparison with the
        # following siblings is quadratic, 12 s for 4,000 products), or one has none (dates,
        # codes, the free categories and deleted assignments are left to the Python sweep).
        "TR302" if number == 301 else "TR386": (
            f"count({p}) > 1 and ({p}[not(Product/Categorie)]"
            f" or {_repeated(f'categorie-{number}')})"
        ),
    }
    if number == 301:
        tests["CS335"] = f"{p}[S(RedenWijziging) = '13' and not(D({start}) = D({end}))]"
        tests["CS336"] = f"{p}[S(RedenWijziging) = '01']"
    if number == 315:
        professional = _one_of("Type", ("02", "03", "04", "05"))
        v = f"{p}/Verwijzer"
        tests |= {
            "TR383": _repeated("tr383"),
            "CD043": f"{p}[boolean(BeschikkingNummer) != boolean(BeschikkingIngangsdatum)]",
            "CD066": f"{v}[{professional} and ZorgverlenerCode and Naam]",
            "CD067": f"{v}[{professional} and not(ZorgverlenerCode) and not(Naam)]",
            "CD068": f"{v}[not({professional}) and ZorgverlenerCode]",
        }
    return tests


# --- start and stop (305, 307) ----------------------------------------------------------------

_STARTS, _STOPS = "Client/StartProducten/StartProduct", "Client/StopProducten/StopProduct"
_STATUS = "[not(S(StatusAanlevering) = '1' or S(StatusAanlevering) = '3')]"
START_STOP: dict[int, Tests] = {
    305: {"CS058": f"{_STARTS}{_STATUS}"},
    307: {
        "CS058": f"{_STOPS}{_STATUS}",
        "TR018": f"{_STOPS}[D(Einddatum) < D(Begindatum)]",
    },
}


# --- claims (323) -----------------------------------------------------------------------------

_P = "Declaratie/Clienten/Client/Prestaties/Prestatie"
_EURO = "S(Eenheid) = '83'"
_MAYBE_OFF = "number(IngediendBedrag/Bedrag) != number(GeleverdVolume) * number(ProductTarief)"
_ZERO = "translate(S({}), '+-0', '') = ''"
_SIGNED = "(1 - 2 * (S(DebetCredit) = 'C')) * N({})"
_LAST_DAY = (
    "31 - contains('04 06 09 11', substring(S(Begindatum), 6, 2))"
    " - (substring(S(Begindatum), 6, 2) = '02') * (3 - ("
    "substring(S(Begindatum), 1, 4) mod 4 = 0 and (substring(S(Begindatum), 1, 4) mod 100 != 0"
    " or substring(S(Begindatum), 1, 4) mod 400 = 0)))"
)
_DIFF = "N(IngediendBedrag/Bedrag) - N(GeleverdVolume) * N(ProductTarief)"
_TOLERANCE = "(S(Eenheid) = '01') * (floor(N(GeleverdVolume) div 2) + 1)"
_IS_NAN = "string(N({0})) = 'NaN'"
_VORIG = "S(ProductReferentie/VorigReferentieNummer)"
_CREDITS = f"{_P}[ProductReferentie/VorigReferentieNummer]"
_DEBIT = "S(IngediendBedrag/DebetCredit) = 'D'"
_TR416_USE = (
    "concat(S(../../Bsn), '|', S(ProductPeriode/Begindatum), '|', S(ProductPeriode/Einddatum),"
    " '|', S(ProductCategorie), '|', S(ProductCode), '|', S(ToewijzingNummer))"
)

CLAIMS: Tests = {
    "CS100": (f"(Declaratie/DeclaratiePeriode | {_P}/ProductPeriode)[D(Begindatum) < 20210101]"),
    "CS340": (
        "Declaratie/DeclaratiePeriode[Begindatum[S(.) != ''] and Einddatum[S(.) != '']]"
        "[not(substring(S(Begindatum), 9, 2) = '01'"
        " and substring(S(Einddatum), 1, 8) = substring(S(Begindatum), 1, 8)"
        f" and substring(S(Einddatum), 9, 2) = {_LAST_DAY})]"
    ),
    "CS337": (
        f"{_P}/ProductPeriode[Begindatum[S(.) != ''] and Einddatum[S(.) != '']]"
        "[not(substring(S(Begindatum), 1, 7) = substring(S(Einddatum), 1, 7))]"
    ),
    "TR319": f"{_P}[D(ProductPeriode/Einddatum) > $claim_end]",
    "TR335": f"{_P}[D(ProductPeriode/Einddatum) + 50000 < $claim_dag]",
    "CS325": (
        f"Declaratie/TotaalIngediendBedrag[{_ZERO.format('TotaalBedrag')}"
        " and not(S(DebetCredit) = 'D')]"
        f" or {_P}/IngediendBedrag[{_ZERO.format('Bedrag')} and not(S(DebetCredit) = 'D')]"
    ),
    "CD060": (
        f"{_P}[(S(IngediendBedrag/DebetCredit) = 'C')"
        " != boolean(ProductReferentie/VorigReferentieNummer)]"
    ),
    "CD087": f"{_P}[({_EURO}) = boolean(ProductTarief)]",
    "CS339": f"{_P}[{_EURO}][not(N(GeleverdVolume) = N(IngediendBedrag/Bedrag))]",
    # first a cheap number() filter the exact test implies (a string test costs ~2 µs per
    # prestatie on a 1 MB declaratie, number() ~0.5): TR346 13 ms → 2.5 ms there
    "TR346": (
        f"{_P}[{_MAYBE_OFF}][not({_EURO}) and ProductTarief[S(.) != '']]"
        f"[{_IS_NAN.format('GeleverdVolume')} or {_IS_NAN.format('IngediendBedrag/Bedrag')}"
        f" or {_DIFF} > {_TOLERANCE} or -({_DIFF}) > {_TOLERANCE}]"
    ),
    "TR358": (
        f"not(sum({_P}/IngediendBedrag[not(S(DebetCredit) = 'C')]/Bedrag)"
        f" - sum({_P}/IngediendBedrag[S(DebetCredit) = 'C']/Bedrag)"
        " = (1 - 2 * (S(Declaratie/TotaalIngediendBedrag/DebetCredit) = 'C'))"
        " * N(Declaratie/TotaalIngediendBedrag/TotaalBedrag))"
    ),
    "TR315": _repeated("tr315"),
    # own references indexed; n prestaties sharing one cost n² as in _repeated
    "TR316": f"(count({_P}) > {KEY_SET_LIMIT} or {_CREDITS}[key('tr316', {_VORIG})])",
    "TR416": _repeated("tr416"),
}


def _logical_key_use(fields: tuple[str, ...]) -> str:
    return "concat(generate-id(..), " + ", '|', ".join(f"S({f})" for f in fields) + ")"


KEYS: dict[str, Key] = {
    "tr316": Key("Prestaties/Prestatie", "S(ProductReferentie/ReferentieNummer)"),
}
"""Keys by name; a stylesheet declares only the keys its tests use."""


def _unique(nodes: str, use: str) -> Unique:
    return Unique(nodes, use, KEY_SET_LIMIT)


SETS: dict[str, Unique] = {
    "tr383": _unique(_PRODUCTS[315][0], "S(ReferentieAanbieder)"),
    "categorie-301": _unique(_PRODUCTS[301][0], "S(Product/Categorie)"),
    "categorie-315": _unique(_PRODUCTS[315][0], "S(Product/Categorie)"),
    "tr315": _unique(_CREDITS, _VORIG),
    "tr416": _unique(f"{_P}[{_DEBIT}]", _TR416_USE),
} | {
    f"tr101-{i}": _unique(f"{k.parent}/{k.child}", _logical_key_use(k.fields))
    for i, k in enumerate(LOGICAL_KEYS)
}
"""Uniqueness sets by name (``repeated('name')`` in a test); a stylesheet builds only the
sets its tests use."""


def _logical_keys(number: int) -> str | None:
    tests = [_repeated(f"tr101-{i}") for i, k in enumerate(LOGICAL_KEYS) if number in k.messages]
    return _any(*tests) if tests else None


def _dates(table: dict[int, tuple[str, ...]], number: int, test: str) -> str | None:
    paths = table.get(number, ())
    return _any(*(f"{path}[{test}]" for path in paths)) if paths else None


SCREENED_NUMBERS = frozenset({301, 305, 307, 315, 323})

IN_PYTHON = frozenset({"CS002", "TR378", "TR381"})
"""Rules of the screened types that have no test because their Python check is cheaper than
any XPath for it: CS002 (the BSN eleven-test) is one ``iter()`` walk in C and a sum per Bsn,
5 µs on a WMO301 and 3 ms on a 1 MB declaratie against 11 µs and 8 ms in the screen
(``normalize-space`` and ``substring`` nine times per Bsn). TR378 and TR381 look codes up in
the code lists (gateway/codelists), which an operator may replace at start: a compiled screen
would have to embed the lists."""


def tests_for(message: MessageType) -> Tests:
    """Every screen test of one message type; empty for the types left to Python."""
    n = message.number
    if n not in SCREENED_NUMBERS:
        return {}
    tests = _header(message)
    if n in (301, 305, 307, 315):
        tests |= CLIENT
    if n == 301:
        tests |= PERSON
    if n in _PRODUCTS:
        tests |= _products(n)
    if n == 301:
        tests["CS003"] = _any(tests["CS003"], _CONTACT_PERIOD)
    tests |= START_STOP.get(n, {})
    if n == 323:
        tests |= CLAIMS
    optional = {
        "TR101": _logical_keys(n),
        "TR134": _dates(PAST_DATES, n, "D(.) > $dag"),
        "TR137": _dates(
            CLOSED_PERIODS,
            n,
            "Begindatum[S(.) != ''] and Einddatum[S(.) != '']"
            " and (D(Einddatum) < D(Begindatum) or D(Einddatum) > $dag)",
        ),
    }
    tests |= {rule_id: test for rule_id, test in optional.items() if test is not None}
    return tests
