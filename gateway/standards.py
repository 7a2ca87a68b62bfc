"""The iWmo/iJw message catalogue as data.

Every fact the rest of the code needs about *which* messages exist (codes, BerichtCodes,
directions, heen/retour pairs, namespaces) lives here, once, so that the schema generator, the
identifier, the business rules and the router all agree. Source: the iWmo/iJw 3.2 facts sheet,
sections 1.2-1.4.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

DUTCH_TIME = ZoneInfo("Europe/Amsterdam")
"""The iStandaarden's dates (Dagtekening, begin- and einddatum) are dates in the Netherlands."""


def dutch_today(now: float | None = None) -> date:
    """Today's date in the Netherlands (``now``: a Unix time; the clock's when None). Not the
    host's date: a gateway on UTC is a day behind between 22:00/23:00 UTC and midnight, and
    would refuse a Dagtekening of today as one in the future (TR135)."""
    return datetime.fromtimestamp(time.time() if now is None else now, DUTCH_TIME).date()


class Standard(StrEnum):
    """The two iStandaarden this gateway carries."""

    IWMO = "iwmo"
    IJW = "ijw"

    @property
    def label(self) -> str:
        return "iWmo" if self is Standard.IWMO else "iJw"

    @property
    def message_prefix(self) -> str:
        """Prefix of the message number: ``WMO`` for iWmo, ``JW`` for iJw."""
        return "WMO" if self is Standard.IWMO else "JW"


class Kind(StrEnum):
    """heen = request (destination is Header/Ontvanger); retour = answer to one heenbericht."""

    HEEN = "heen"
    RETOUR = "retour"


class Party(StrEnum):
    """Who sends a message type, as the payload header types say it (LDT_Gemeente/LDT_AgbCode)."""

    GEMEENTE = "gemeente"
    AANBIEDER = "aanbieder"


@dataclass(frozen=True, slots=True)
class MessageType:
    """One message of a standard, e.g. WMO301."""

    standard: Standard
    number: int
    name: str
    kind: Kind
    sender: Party
    bericht_code: str
    pair: int | None

    @property
    def code(self) -> str:
        """``WMO301`` / ``JW301``; also the StUF-GGk envelope ``functie``."""
        return f"{self.standard.message_prefix}{self.number}"

    @property
    def header_afzender(self) -> Party:
        """The party type in Header/Afzender.

        Retourberichten copy the heen header unchanged, so their Afzender is the *heen* sender,
        which is the retour's destination (facts sheet 4.2).
        """
        if self.kind is Kind.RETOUR:
            return Party.AANBIEDER if self.sender is Party.GEMEENTE else Party.GEMEENTE
        return self.sender

    @property
    def header_ontvanger(self) -> Party:
        return Party.AANBIEDER if self.header_afzender is Party.GEMEENTE else Party.GEMEENTE

    @property
    def receiver(self) -> Party:
        """The party the message travels to."""
        return Party.AANBIEDER if self.sender is Party.GEMEENTE else Party.GEMEENTE


_G, _A = Party.GEMEENTE, Party.AANBIEDER
_H, _R = Kind.HEEN, Kind.RETOUR

# (number, Dutch name stem, kind, sender, iWmo BerichtCode, iJw BerichtCode, pair)
_CATALOGUE: tuple[tuple[int, str, Kind, Party, str, str, int | None], ...] = (
    (301, "Toewijzing {dom}", _H, _G, "414", "436", 302),
    (302, "Toewijzing {dom} Retour", _R, _A, "415", "437", 301),
    (305, "Start {dom}", _H, _A, "418", "438", 306),
    (306, "Start {dom} Retour", _R, _G, "419", "439", 305),
    (307, "Stop {dom}", _H, _A, "420", "440", 308),
    (308, "Stop {dom} Retour", _R, _G, "421", "441", 307),
    (315, "Verzoek om toewijzing {dom}", _H, _A, "444", "446", 316),
    (316, "Verzoek om toewijzing {dom} Retour", _R, _G, "445", "447", 315),
    (317, "Verzoek om wijziging {dom}", _H, _A, "480", "486", 318),
    (318, "Verzoek om wijziging {dom} Retour", _R, _G, "481", "487", 317),
    (319, "Antwoordbericht", _H, _G, "482", "488", 320),
    (320, "Antwoordbericht Retour", _R, _A, "483", "489", 319),
    (323, "Declaratie {dom}", _H, _A, "484", "490", None),
    (325, "Declaratie-antwoord {dom}", _H, _G, "485", "491", None),
)

_DOMAIN = {Standard.IWMO: "Wmo-ondersteuning", Standard.IJW: "Jeugdhulp"}


def _build() -> dict[tuple[Standard, int], MessageType]:
    table: dict[tuple[Standard, int], MessageType] = {}
    for std in Standard:
        for number, name, kind, sender, wmo_code, jw_code, pair in _CATALOGUE:
            code = wmo_code if std is Standard.IWMO else jw_code
            table[(std, number)] = MessageType(
                std, number, name.format(dom=_DOMAIN[std]), kind, sender, code, pair
            )
    return table


MESSAGES: dict[tuple[Standard, int], MessageType] = _build()
"""All 28 message types of iWmo 3.x and iJw 3.x, keyed by (standard, number)."""

BY_CODE: dict[str, MessageType] = {m.code: m for m in MESSAGES.values()}
"""Message types keyed by ``WMO301`` / ``JW301`` (the envelope ``functie``)."""

BY_BERICHTCODE: dict[str, MessageType] = {m.bericht_code: m for m in MESSAGES.values()}

LEGACY_BERICHTCODES: dict[str, str] = {
    "416": "Wmo-Declaratie (iWmo 2.x)",
    "417": "Wmo-Declaratie-Retour (iWmo 2.x)",
    "448": "Factuur Wmo-ondersteuning (iWmo 2.x)",
    "449": "Factuur Wmo-ondersteuning retour (iWmo 2.x)",
    "432": "Declaratie Jeugdhulp (iJw 2.x)",
    "433": "Declaratie Jeugdhulp retour (iJw 2.x)",
    "450": "Factuur Jeugdhulp (iJw 2.x)",
    "451": "Factuur Jeugdhulp retour (iJw 2.x)",
    "434": "Declaratie Jeugd-GGZ",
    "435": "Declaratie Jeugd-GGZ retour",
}
"""COD002 codes that exist but are not part of the 3.x sets; recognised only to name them."""

BASIS = "basisschema"
NAMESPACE_ROOT = "http://www.istandaarden.nl"

# 3.x: http://www.istandaarden.nl/iwmo/3_2/wmo301/schema
# 2.x: http://www.istandaarden.nl/iwmo/2_1/wmo301/schema/2_1
_NS_RE = re.compile(
    r"^http://www\.istandaarden\.nl/(?P<std>iwmo|ijw)/(?P<major>\d+)_(?P<minor>\d+)/"
    r"(?P<part>basisschema|(?:wmo|jw)(?P<number>\d{3}))/schema(?:/\d+_\d+)?$"
)


@dataclass(frozen=True, slots=True)
class NamespaceInfo:
    """What a namespace URI says: standard, release and (for message schemas) the number."""

    standard: Standard
    major: int
    minor: int
    number: int | None

    @property
    def release(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def message(self) -> MessageType | None:
        if self.number is None:
            return None
        return MESSAGES.get((self.standard, self.number))


@lru_cache(maxsize=256)
def parse_namespace(uri: str) -> NamespaceInfo | None:
    """Read standard, release and message number out of an iStandaarden namespace URI."""
    match = _NS_RE.match(uri)
    if match is None:
        return None
    std = Standard(match["std"])
    number = int(match["number"]) if match["number"] else None
    prefix_ok = match["part"] == BASIS or match["part"].startswith(
        "wmo" if std is Standard.IWMO else "jw"
    )
    if not prefix_ok:
        return None
    return NamespaceInfo(std, int(match["major"]), int(match["minor"]), number)


def message_namespace(standard: Standard, number: int, release: str = "3.2") -> str:
    """The 3.x namespace of one message, e.g. ``…/iwmo/3_2/wmo301/schema``."""
    part = f"{standard.message_prefix.lower()}{number}"
    return f"{NAMESPACE_ROOT}/{standard.value}/{release.replace('.', '_')}/{part}/schema"


def basis_namespace(standard: Standard, release: str = "3.2") -> str:
    """The 3.x basisschema namespace of a standard."""
    return f"{NAMESPACE_ROOT}/{standard.value}/{release.replace('.', '_')}/{BASIS}/schema"
