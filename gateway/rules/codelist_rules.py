"""Rules against the public code lists (control level 4, "externe bron"): TR378, a gemeentecode
exists in the CBS gemeentelijke indeling, and TR381, a ProductCode belongs to its ProductCategorie
in the product code list in use. The lists come from :mod:`gateway.codelists` (bundled, or the
operator's drop-in directory).

Both rules refuse only what a list says is wrong. A code is accepted when it is valid on the
Dagtekening or on any date the message is about (an Ingangsdatum, ToewijzingIngangsdatum,
GewensteIngangsdatum or Begindatum in it): TR378 allows "een oudere CBS lijst" around a
herindeling (every 1 January) for the toewijzing's Ingangsdatum, and the gateway, which holds no
toewijzingen, cannot tell which of the message's dates that is. TR381 checks a category only when
the gateway has that category's product code list; the national lists cover few categories and
the codes of the others are agreed per contract, which the receiver checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

from lxml import etree

from gateway.codelists import CodeList, codelists
from gateway.rules.base import Finding, MessageContext, as_date, first, header, rule, text

GEMEENTECODES = "gemeentecodes"

# The messages whose Header/Afzender is a gemeente (LDT_Gemeente); in the others it is the
# Ontvanger (the 3.2 XSDs).
AFZENDER_IS_GEMEENTE = frozenset({301, 302, 319, 320, 325})

# Dates a message is about: a toewijzing's start, a requested or wished start, a delivery's or
# a claim's begin. TR378's "Ingangsdatum of ToewijzingIngangsdatum" are among them.
ABOUT = ("Ingangsdatum", "ToewijzingIngangsdatum", "GewensteIngangsdatum", "Begindatum")
_ABOUT_TAGS = tuple(f"{{*}}{name}" for name in ABOUT)


def _days(ctx: MessageContext, near: etree._Element | None = None) -> list[date]:
    """The Dagtekening, then the dates ``near`` (a product's class) or the whole message is
    about, in document order."""
    days: list[date] = []
    dagtekening = as_date(header(ctx), "BerichtIdentificatie/Dagtekening")
    if dagtekening is not None:
        days.append(dagtekening)
    scope = near if near is not None else ctx.root
    for el in scope.iter(*_ABOUT_TAGS):
        value = (el.text or "").strip()
        try:
            day = date.fromisoformat(value)
        except ValueError:
            continue  # a non-date field of that name: not a date the message is about
        if day not in days:
            days.append(day)
    return days


def _verdict(cl: CodeList, code: str, days: list[date]) -> str | None:
    """Why ``code`` fails against ``cl`` on all of ``days``; None when it passes."""
    found = cl.entry(code)
    if found is None:
        return f"is not in {cl.name} ({cl.source.version or cl.title})"
    if any(found.valid_on(day) for day in days):
        return None
    span = f"{found.begin or '…'} to {found.end or '…'}"
    on = ", ".join(d.isoformat() for d in days) or "the message's dates"
    return f"is valid {span} in {cl.name}, not on {on}"


def _gemeente_elements(ctx: MessageContext) -> Iterator[etree._Element]:
    h = header(ctx)
    field = "Afzender" if ctx.message.number in AFZENDER_IS_GEMEENTE else "Ontvanger"
    found = first(h, field)
    if found is not None:
        yield found
    for el in ctx.root.iter("{*}Gemeente"):
        parent = el.getparent()
        if parent is not None and etree.QName(parent).localname == "Woonplaatsbeginsel":
            yield el


@rule("TR378")
def gemeentecode_in_cbs_list(ctx: MessageContext) -> Iterator[Finding]:
    cl = codelists().get(GEMEENTECODES)
    if cl is None:
        return  # an operator's set without the list: nothing to check against
    for el in _gemeente_elements(ctx):
        code = (el.text or "").strip()
        if not code:
            continue
        entry = cl.entry(code)
        if entry is not None and entry.begin is None and entry.end is None:
            continue  # undated: valid on every day, no dates to read
        why = _verdict(cl, code, _days(ctx))
        if why is not None:
            yield Finding(
                el,
                f"Gemeentecode {code} {why}",
                expected=f"a gemeentecode of the CBS indeling ({cl.name})",
                found=code,
            )


def _products(
    root: etree._Element, categories: frozenset[str]
) -> Iterator[tuple[etree._Element, str, str, etree._Element]]:
    """(element, category, code, the class it belongs to) for every coded product of one of
    ``categories``: the CDT_Product (Categorie, Code) of 301-318 and a 323/325 Prestatie's
    ProductCategorie and ProductCode. Only the category is read of the others (a declaratie
    may hold thousands of prestaties).

    A Prestatie's category is read from its ``ProductCategorie`` element, found by ``iter``
    in C (the XSD allows one per Prestatie): asking the Prestatie (``text``) reads all its
    children and grandchildren into the rule run's cache first, about 25 µs a prestatie and
    33 ms on a 1 MB declaratie whose categories have no list (the common case), against
    0.3 ms this way."""
    for product in root.iter("{*}Product"):
        category = text(product, "Categorie")
        if category not in categories:
            continue
        code = text(product, "Code")
        parent = product.getparent()
        if code and category and parent is not None:
            found = first(product, "Code")
            assert found is not None
            yield found, category, code, parent
    for category_el in root.iter("{*}ProductCategorie"):
        category = (category_el.text or "").strip()
        if category not in categories:
            continue
        prestatie = category_el.getparent()
        if prestatie is None or etree.QName(prestatie).localname != "Prestatie":
            continue
        code = text(prestatie, "ProductCode")
        if code:
            found = first(prestatie, "ProductCode")
            assert found is not None
            yield found, category, code, prestatie


@rule("TR381")
def productcode_in_category_list(ctx: MessageContext) -> Iterator[Finding]:
    lists = codelists()
    standard = ctx.message.standard.value
    categories = lists.productcode_categories(standard)
    if not categories:
        return  # no product code list: the codes are agreed per contract, the receiver checks
    for el, category, code, owner in _products(ctx.root, categories):
        cl = lists.productcodes(standard, category)
        assert cl is not None
        entry = cl.entry(code)
        if entry is not None and entry.begin is None and entry.end is None:
            continue
        why = _verdict(cl, code, _days(ctx, owner))
        if why is not None:
            yield Finding(
                el,
                f"ProductCode {code} of ProductCategorie {category} {why}",
                expected=f"a product code of category {category} ({cl.name})",
                found=code,
            )
