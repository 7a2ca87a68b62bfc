"""TR101: within a message no class occurs twice.

Each keyed class has a logical key (the *Sleutelelement* columns of the 3.2 per-element
tables). Two siblings under the same parent with the same key are duplicates; siblings under
different parents differ in a parent's key already, so comparing siblings is the official
"key together with the keys of the classes above it". Absent key elements take part as absent:
two StartProducts without a Product but otherwise equal are duplicates.

The table is data: a class is added by adding a row, and ``docs/rules.md`` lists the rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from gateway.rules.base import Finding, MessageContext, every, rule, text


@dataclass(frozen=True, slots=True)
class LogicalKey:
    """The key of one class: where its siblings live and which elements identify one."""

    messages: tuple[int, ...]
    parent: str
    child: str
    fields: tuple[str, ...]


_PRESTATIE_KEY = ("ProductReferentie/ReferentieNummer", "ProductReferentie/VorigReferentieNummer")
_PRODUCT = ("Product/Categorie", "Product/Code")

LOGICAL_KEYS: tuple[LogicalKey, ...] = (
    LogicalKey((301,), "Client/Contactgegevens", "Contact", ("Soort",)),
    LogicalKey((301,), "Client/Relaties", "Relatie", ("Nummer",)),
    LogicalKey((301,), "Client/ToegewezenProducten", "ToegewezenProduct", ("ToewijzingNummer",)),
    LogicalKey(
        (305,),
        "Client/StartProducten",
        "StartProduct",
        ("ToewijzingNummer", *_PRODUCT, "Begindatum"),
    ),
    LogicalKey(
        (307,),
        "Client/StopProducten",
        "StopProduct",
        ("ToewijzingNummer", *_PRODUCT, "Begindatum", "Einddatum", "RedenBeeindiging"),
    ),
    LogicalKey(
        (315,), "Client/AangevraagdeProducten", "AangevraagdProduct", ("ReferentieAanbieder",)
    ),
    LogicalKey(
        (317,),
        "Client/Verzoek/OngewijzigdeProducten",
        "OngewijzigdProduct",
        ("ToewijzingNummer",),
    ),
    LogicalKey(
        (317,), "Client/Verzoek/TeWijzigenProducten", "TeWijzigenProduct", ("ToewijzingNummer",)
    ),
    LogicalKey(
        (317,),
        "Client/Verzoek/NieuweProducten",
        "NieuwProduct",
        ("GewensteIngangsdatum", *_PRODUCT),
    ),
    LogicalKey((323,), "Declaratie/Clienten", "Client", ("Bsn",)),
    LogicalKey((323,), "Declaratie/Clienten/Client/Prestaties", "Prestatie", _PRESTATIE_KEY),
    LogicalKey((325,), "DeclaratieAntwoord/Clienten", "Client", ("Bsn",)),
    LogicalKey(
        (325,), "DeclaratieAntwoord/Clienten/Client/Prestaties", "Prestatie", _PRESTATIE_KEY
    ),
)


@rule("TR101")
def unique_logical_keys(ctx: MessageContext) -> Iterator[Finding]:
    number = ctx.message.number
    for key in LOGICAL_KEYS:
        if number not in key.messages:
            continue
        for parent in every(ctx.root, key.parent):
            seen: set[tuple[str | None, ...]] = set()
            for el in parent.iterchildren(f"{{*}}{key.child}"):
                value = tuple(text(el, f) for f in key.fields)
                if value in seen:
                    yield Finding(
                        el,
                        f"a second {key.child} with the same key ({', '.join(key.fields)})",
                        "a unique key",
                        " / ".join(v if v is not None else "-" for v in value),
                    )
                seen.add(value)
