"""What the portal says instead of protocol: each Fo03 foutcode as a sentence saying what is
wrong and what to do (the situations of docs/errors.md, a test keeps the two in step), the
delivery states in words, and every code with its name from the official code lists.

The sentences are Dutch msgids, marked with ``N_`` for extraction and translated where they
are shown (``Language.gettext``)."""

from __future__ import annotations

from gateway.codelists import codelists


def N_(message: str) -> str:
    """Mark a Dutch text for the catalogue; translated where it is shown."""
    return message


FO03: dict[str, str] = {
    "IB007": N_(
        "Het bestand is groter dan de gateway aanneemt. Stuur het bericht in kleinere delen "
        "of vraag de beheerder naar de grens."
    ),
    "IB009": N_(
        "Een referentienummer is geen geldige UUID (kleine letters, versie 4). Laat uw "
        "software een nieuw referentienummer maken en stuur het bericht opnieuw."
    ),
    "IB102": N_(
        "De gateway weet niet waarheen dit bericht moet. Controleer de ontvanger in het "
        "bericht; klopt die, neem dan contact op met de beheerder."
    ),
    "IB210": N_(
        "De ontvanger in het bericht is onbekend bij de gateway, of de envelop en het bericht "
        "noemen een andere ontvanger. Controleer de gemeentecode of AGB-code van de ontvanger."
    ),
    "IB234": N_(
        "Uw organisatie mag dit soort bericht niet versturen (een zorgaanbieder stuurt "
        "bijvoorbeeld geen toewijzing). Controleer of u het juiste bericht hebt gekozen."
    ),
    "IB240": N_(
        "Het berichttype in de envelop past niet bij het bericht. Laat de gateway de envelop "
        "maken (stuur het bericht zelf op) of corrigeer de functie in de envelop."
    ),
    "StUF001": N_(
        "Het bericht gebruikt SOAP 1.2; de gateway neemt alleen SOAP 1.1 aan. Vraag uw "
        "leverancier om SOAP 1.1."
    ),
    "StUF016": N_(
        "U hebt eerder een ander bericht met hetzelfde referentienummer gestuurd. Geef dit "
        "bericht een nieuw referentienummer."
    ),
    "StUF037": N_(
        "De SOAPAction noemt een andere handeling dan het bericht. Vraag uw leverancier de "
        "SOAPAction te corrigeren."
    ),
    "StUF040": N_(
        "Een retourbericht is als heenbericht verstuurd, of andersom. Controleer het soort "
        "bericht (Di01 voor een heenbericht, Du01 voor een retour)."
    ),
    "StUF043": N_(
        "Het retourbericht verwijst naar een heenbericht dat u niet via deze gateway hebt "
        "ontvangen. Controleer het referentienummer van het heenbericht."
    ),
    "StUF046": N_(
        "De gateway kon het bericht nu niet aannemen. Er is niets ontvangen: stuur hetzelfde "
        "bericht over enkele minuten opnieuw."
    ),
    "StUF052": N_(
        "De afzender in het bericht is niet de organisatie waarmee u bent aangemeld. "
        "Controleer de afzender (uw gemeentecode of AGB-code) in het bericht."
    ),
    "StUF055": N_(
        "Het bestand is geen geldig bericht: het voldoet niet aan het schema (XSD). Bekijk "
        "de bevindingen per veld, corrigeer ze en stuur het bericht opnieuw."
    ),
    "StUF058": N_(
        "Het bericht breekt een regel van de iStandaard, of u hebt dit bericht (met deze "
        "identificatie) al eerder gestuurd. Bekijk de regel en het veld, corrigeer het bericht "
        "en stuur het opnieuw."
    ),
}
"""Every foutcode the gateway answers with (docs/errors.md), as a sentence for a clerk."""

UNKNOWN_FO03 = N_("Het bericht is geweigerd. Neem contact op met de beheerder en noem de foutcode.")

DELIVERY: dict[str, str] = {
    "pending": N_("wordt afgeleverd"),
    "inflight": N_("wordt afgeleverd"),
    "retry": N_("wordt opnieuw geprobeerd"),
    "delivered": N_("afgeleverd"),
    "inbox": N_("klaar in het postvak van de ontvanger"),
    "dead": N_("niet afgeleverd; de beheerder is gewaarschuwd"),
}
"""A delivery's state in words."""

SEVERITY: dict[str, str] = {"error": N_("fout"), "warning": N_("waarschuwing")}

_COMMON = {
    "301": N_("Toewijzing"),
    "302": N_("Retour toewijzing"),
    "306": N_("Retour start"),
    "308": N_("Retour stop"),
    "315": N_("Verzoek om toewijzing"),
    "316": N_("Retour verzoek om toewijzing"),
    "317": N_("Verzoek om wijziging"),
    "318": N_("Retour verzoek om wijziging"),
    "319": N_("Antwoord op verzoek"),
    "320": N_("Retour antwoord op verzoek"),
    "323": N_("Declaratie"),
    "325": N_("Declaratie-antwoord"),
}
MESSAGE_TYPES: dict[str, str] = {
    **{f"WMO{n}": name for n, name in _COMMON.items()},
    **{f"JW{n}": name for n, name in _COMMON.items()},
    "WMO305": N_("Start ondersteuning"),
    "WMO307": N_("Stop ondersteuning"),
    "JW305": N_("Start zorg"),
    "JW307": N_("Stop zorg"),
}
"""What each iWmo/iJw message is, in the standards' own words (iWmo speaks of ondersteuning
where iJw speaks of zorg)."""


def fo03(code: str) -> str:
    """The Dutch sentence (msgid) for a foutcode."""
    return FO03.get(code, UNKNOWN_FO03)


def delivery(states: str | None) -> list[str]:
    """Each state of a comma-separated list as its words (msgids), in order, once each."""
    seen: list[str] = []
    for state in (states or "").split(","):
        words = DELIVERY.get(state.strip(), state.strip())
        if words and words not in seen:
            seen.append(words)
    return seen


# --- the official code lists ---------------------------------------------------------------
# THE single call site of gateway.codelists: a code's name from the official lists (the
# operator's drop-in lists included). iWmo and iJw keep their own lists; the codes of the two
# do not collide (iWmo's product categories are 01-18, iJw's 31-55), so each is asked in turn.
PRODUCTCATEGORIE = ("iwmo-WMO020", "ijw-JZ020")
RETOURCODE = ("iwmo-WJ001", "ijw-WJ001")
GEMEENTE = ("gemeentecodes",)


def code_name(list_names: tuple[str, ...], code: str) -> str | None:
    """The official name of ``code`` in the first of ``list_names`` that names it, or None
    (the page then shows the bare code)."""
    if not code:
        return None
    lists = codelists()
    for list_name in list_names:
        try:
            name = lists.name(list_name, code)
        except KeyError:  # a list the operator's setup does not have
            continue
        if name:
            return name
    return None


def type_code_name(standard: str | None, datatype: str, code: str) -> str | None:
    """The official name of ``code`` of the XSD type ``datatype`` in ``standard`` (``ijw``,
    ``LDT_Eenheid``); '' when the type has a list that does not name the code; None when no
    list codes the type (the value is then not a code)."""
    found = codelists().for_type(standard, datatype)
    if found is None:
        return None
    entry = found.entry(code)
    return entry.name if entry is not None and entry.name else ""
