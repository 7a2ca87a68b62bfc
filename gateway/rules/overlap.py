"""TR302 / TR386 / TR410: a product may recur in a message only with periods that do not overlap.

Who conflicts with whom (rule texts, iWmo and iJw 3.2):

* two products with a Code conflict when their Categorie and Code are equal;
* a product without Code stands for its whole Categorie: it conflicts with every product of
  that Categorie, with or without Code;
* a product without Categorie (no Product class, a Budget only) conflicts with every product;
* iWmo only: products of categories 11-14 (hulpmiddelen) may overlap, also at category level,
  also with a product without Categorie;
* deleted assignments (RedenWijziging 13, or 01, with Einddatum = Ingangsdatum) do not count.

Periods are closed; no end date is open-ended. One sweep over the products sorted by start
finds every conflict in O(n log n): an earlier product overlaps the current one exactly when
its end is on or after the current start, so per conflict group only the latest end seen so
far matters. A message with thousands of products costs no more than sorting them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

from gateway.rules.base import Finding, MessageContext, rule, text
from gateway.rules.products import ProductView, products
from gateway.standards import Standard

FREE_TO_OVERLAP = {Standard.IWMO: frozenset({"11", "12", "13", "14"}), Standard.IJW: frozenset()}


@dataclass(frozen=True, slots=True)
class _Span:
    start: date
    end: date
    categorie: str | None
    code: str | None
    product: ProductView


def _is_deleted(p: ProductView) -> bool:
    return text(p.el, "RedenWijziging") in ("13", "01") and p.start == p.end


def _spans(ctx: MessageContext) -> list[_Span]:
    spans = [
        _Span(
            p.start or date.min,
            p.end or date.max,
            text(p.el, "Product/Categorie"),
            text(p.el, "Product/Code"),
            p,
        )
        for p in products(ctx, with_product_only=True)
        if not _is_deleted(p)
    ]
    spans.sort(key=lambda s: s.start)
    return spans


def _later(current: date | None, end: date) -> date:
    return end if current is None or end > current else current


def overlapping(ctx: MessageContext) -> Iterator[tuple[_Span, str]]:
    """Each product that overlaps an earlier one it may not overlap, with what it overlaps."""
    free = FREE_TO_OVERLAP[ctx.message.standard]
    without_categorie: date | None = None  # latest end of a product without Categorie
    any_counted: date | None = None  # latest end of any product outside the free categories
    categorie_level: dict[str, date] = {}  # per Categorie: latest end of a product without Code
    in_categorie: dict[str, date] = {}  # per Categorie: latest end of any product
    same_code: dict[tuple[str, str], date] = {}
    for span in _spans(ctx):
        cat, code, start = span.categorie, span.code, span.start
        if cat in free:
            continue
        if cat is None:
            if any_counted is not None and any_counted >= start:
                yield span, "a product (this one has no Categorie)"
            without_categorie = _later(without_categorie, span.end)
        else:
            if without_categorie is not None and without_categorie >= start:
                yield span, "a product without Categorie"
            elif cat in categorie_level and categorie_level[cat] >= start:
                yield span, f"a product of Categorie {cat} without Code"
            elif code is None and cat in in_categorie and in_categorie[cat] >= start:
                yield span, f"a product of Categorie {cat} (this one has no Code)"
            elif code is not None and same_code.get((cat, code), date.min) >= start:
                yield span, f"product {cat}/{code}"
            in_categorie[cat] = _later(in_categorie.get(cat), span.end)
            if code is None:
                categorie_level[cat] = _later(categorie_level.get(cat), span.end)
            else:
                same_code[(cat, code)] = _later(same_code.get((cat, code)), span.end)
        any_counted = _later(any_counted, span.end)


def _register(rule_id: str) -> None:
    @rule(rule_id)
    def check(ctx: MessageContext) -> Iterator[Finding]:
        for span, other in overlapping(ctx):
            p = span.product
            yield Finding(
                p.el,
                f"period overlaps that of {other} earlier in the message",
                "periods that do not overlap",
                f"{p.start_field} {span.start}",
            )


_register("TR302")
_register("TR386")
_register("TR410")
