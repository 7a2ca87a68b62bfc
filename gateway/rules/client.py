"""Rules on the client and its relations: BSN, birth dates, names, contacts.

Facts: the iStandaarden iWmo/iJw 3.2 regels (TR, CS, CD, IV) on Client and Product.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date

from lxml import etree

from gateway.rules.base import (
    Finding,
    MessageContext,
    as_date,
    every,
    first,
    header,
    rule,
    text,
    yyyymmdd,
)

_WEIGHTS = (9, 8, 7, 6, 5, 4, 3, 2, -1)


def bsn_is_valid(bsn: str) -> bool:
    """The eleven-test (CS002): Σ weight·digit ≡ 0 (mod 11) with weights 9…2, −1."""
    if len(bsn) != 9 or not bsn.isdigit():
        return False
    return sum(w * int(d) for w, d in zip(_WEIGHTS, bsn, strict=True)) % 11 == 0


@rule("CS002")
def bsn_eleven_test(ctx: MessageContext) -> Iterator[Finding]:
    for el in ctx.root.iter("{*}Bsn"):
        value = (el.text or "").strip()
        if not bsn_is_valid(value):
            yield Finding(
                el,
                "Bsn fails the eleven-test (CS002)",
                expected="a 9-digit number that passes the eleven-test",
                found=f"{value[:2]}…{value[-2:]}" if len(value) > 4 else value,
            )


def _birth_dates(ctx: MessageContext) -> Iterator[etree._Element]:
    yield from every(ctx.root, "Client/Geboortedatum")
    yield from every(ctx.root, "Client/Relaties/Relatie/Geboortedatum")


@rule("CS139")
def birth_date_use(ctx: MessageContext) -> Iterator[Finding]:
    for el in _birth_dates(ctx):
        use = text(el, "DatumGebruik")
        value = as_date(el, "Datum")
        if value is None or use is None:
            continue
        ok = {
            "1": value.day == 1,
            "2": (value.month, value.day) == (1, 1),
            "3": value == date(1900, 1, 1),
        }[use]
        if not ok:
            want = {"1": "YYYY-MM-01", "2": "YYYY-01-01", "3": "1900-01-01"}[use]
            yield Finding(
                first(el, "Datum"),
                f"DatumGebruik {use} requires Datum {want}",
                expected=want,
                found=str(value),
            )


@rule("TR002")
def birth_date_plausible(ctx: MessageContext) -> Iterator[Finding]:
    """yyyymmdd arithmetic as the official check: 120 years = 1200000 on the number."""
    dagtekening = yyyymmdd(header(ctx), "BerichtIdentificatie/Dagtekening")
    assert dagtekening is not None
    for el in _birth_dates(ctx):
        value = yyyymmdd(el, "Datum")
        unknown = text(el, "Datum") == "1900-01-01" and text(el, "DatumGebruik") == "3"
        if value is not None and not unknown and value + 1_200_000 < dagtekening:
            yield Finding(
                first(el, "Datum"),
                "Geboortedatum more than 120 years before the Dagtekening",
                expected=f"on or after {_iso(dagtekening - 1_200_000)}",
                found=text(el, "Datum"),
            )


def _iso(number: int) -> str:
    """A yyyymmdd number as ISO text (the bound may be a date that does not exist)."""
    digits = f"{number:08d}"
    return f"{digits[:4]}-{digits[4:6]}-{digits[6:]}"


@rule("CS318")
def client_is_a_person(ctx: MessageContext) -> Iterator[Finding]:
    el = first(ctx.root, "Client/Naam/NaamGebruik")
    if el is not None and el.text == "6":
        yield Finding(el, "NaamGebruik 6 is not allowed for the client", "1-5", "6")


@rule("CS050")
def name_use_fits_partner(ctx: MessageContext) -> Iterator[Finding]:
    names = every(ctx.root, "Client/Naam") + every(ctx.root, "Client/Relaties/Relatie/Naam")
    for naam in names:
        use = text(naam, "NaamGebruik")
        allowed = ("1", "2", "3", "4") if first(naam, "Partnernaam") is not None else ("1", "6")
        if use not in allowed:
            yield Finding(
                first(naam, "NaamGebruik"),
                "NaamGebruik does not fit "
                + (
                    "a name with a Partnernaam"
                    if len(allowed) == 4
                    else "a name without a Partnernaam"
                ),
                expected="one of " + ", ".join(allowed),
                found=use,
            )


@rule("CD007")
def language_with_interpreter(ctx: MessageContext) -> Iterator[Finding]:
    comm = first(ctx.root, "Client/Communicatie")
    if comm is None:
        return
    vorm, taal = text(comm, "Vorm"), first(comm, "Taal")
    if vorm == "1" and taal is None:
        yield Finding(
            comm, "Taal is required for a language interpreter (Vorm 1)", "Taal present", "no Taal"
        )
    elif vorm != "1" and taal is not None:
        yield Finding(taal, f"Taal must be absent when Vorm is {vorm}", "no Taal", taal.text)


def _contacts(ctx: MessageContext) -> list[etree._Element]:
    return every(ctx.root, "Client/Relaties/Relatie/Contact") + every(
        ctx.root, "Client/Contactgegevens/Contact"
    )


@rule("CD025")
def house_in_dutch_address(ctx: MessageContext) -> Iterator[Finding]:
    for contact in _contacts(ctx):
        adres = first(contact, "Adres")
        if adres is not None and text(adres, "LandCode") == "NL" and first(adres, "Huis") is None:
            yield Finding(adres, "a Dutch address needs Huis", "Huis present", "no Huis")


@rule("CD034")
def postcode_for_home_address(ctx: MessageContext) -> Iterator[Finding]:
    for contact in _contacts(ctx):
        if text(contact, "Soort") in ("01", "03") and text(contact, "Adres/Postcode") is None:
            yield Finding(
                contact,
                f"Contact of Soort {text(contact, 'Soort')} needs a Postcode",
                "Postcode present",
                "no Postcode",
            )


_DUTCH_POSTCODE = re.compile(r"^[1-9][0-9]{3}[a-zA-Z]{2}$")


@rule("CS089")
def dutch_postcode_format(ctx: MessageContext) -> Iterator[Finding]:
    for contact in _contacts(ctx):
        adres = first(contact, "Adres")
        postcode = text(adres, "Postcode")
        if (
            adres is not None
            and postcode
            and text(adres, "LandCode") == "NL"
            and (not _DUTCH_POSTCODE.match(postcode))
        ):
            yield Finding(
                first(adres, "Postcode"),
                "Dutch postcode has the wrong form",
                "[1-9][0-9]{3}[a-zA-Z]{2}, e.g. 7411AB",
                repr(postcode),
            )


@rule("CD005")
def country_with_postcode(ctx: MessageContext) -> Iterator[Finding]:
    for contact in _contacts(ctx):
        adres = first(contact, "Adres")
        if adres is None:
            continue
        has_pc = first(adres, "Postcode") is not None
        has_land = first(adres, "LandCode") is not None
        if has_pc != has_land:
            yield Finding(
                adres,
                "LandCode must accompany Postcode (both or neither)",
                "Postcode and LandCode together",
                "Postcode without LandCode" if has_pc else "LandCode without Postcode",
            )


@rule("CD009")
def period_only_for_temporary(ctx: MessageContext) -> Iterator[Finding]:
    for contact in _contacts(ctx):
        periode = first(contact, "Periode")
        if periode is not None and text(contact, "Soort") != "04":
            yield Finding(
                periode,
                "Periode given for an address that is not temporary",
                "Soort 04",
                text(contact, "Soort"),
            )


@rule("TR006")
def contact_reachable(ctx: MessageContext) -> Iterator[Finding]:
    for contact in _contacts(ctx):
        phone = first(contact, "Telefoon") is not None
        address = (
            first(contact, "Adres/Huis") is not None
            and first(contact, "Adres/Postcode") is not None
        )
        if not (phone or address):
            yield Finding(
                contact,
                "Contact has neither a Telefoon nor Huis and Postcode",
                "Telefoon, or Huis and Postcode",
                "neither",
            )


@rule("TR061")
def client_has_address(ctx: MessageContext) -> Iterator[Finding]:
    contacts = every(ctx.root, "Client/Contactgegevens/Contact")
    if contacts and not any(text(c, "Soort") in ("01", "02", "03") for c in contacts):
        yield Finding(
            first(ctx.root, "Client/Contactgegevens"),
            "no BRP, correspondence or verblijf address",
            "Soort 01, 02 or 03",
            ", ".join(sorted({text(c, "Soort") or "" for c in contacts})),
        )


@rule("CS003", messages=(301,))
def contact_period_order(ctx: MessageContext) -> Iterator[Finding]:
    for contact in _contacts(ctx):
        begin, end = as_date(contact, "Periode/Begindatum"), as_date(contact, "Periode/Einddatum")
        if begin and end and end < begin:
            yield Finding(
                first(contact, "Periode/Einddatum"),
                "Einddatum before Begindatum",
                f"on or after {begin}",
                str(end),
            )
