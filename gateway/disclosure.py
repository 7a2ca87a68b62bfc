"""The disclosure method of the beleidsinformatie: rounding every count to a base.

Every count that is published (per cell, per total, a doorlooptijd's number of cases) is
rounded to a multiple of the base B (``[figures] min_cell``), and small counts are handled
so that no published number stands for fewer than B possible true values:

- 0 is published as 0 (nobody is in it);
- 1 .. ⌈1.5·B⌉−1 are published as B (for B = 5: 1..7 → 5);
- larger counts as the nearest multiple of B, halves up (for B = 5: 8..12 → 10, 13..17 → 15).

Why rounding and not cell suppression: published figures are tied together (cells add up
to totals, the clients of a category are among the month's, an amount is shown only for
enough declaring clients), and a gemeente may ask any range of months. A rounding whose
every published number, *including the totals*, is a function of figures that are
themselves rounded leaves nothing for a solver to subtract: each cell's true value may
still be any of the B or more values of its band (docs/figures.md has the proof, and
tests/test_disclosure.py checks it by solving the published figures). Three rules keep the
ties from narrowing a band:

- an additive total (verzoeken, toewijzingen, starts, stops) is the sum of the rounded
  cells (:func:`sum_total`), not the rounded true total: rounding both independently lets
  the total cut the cells' bands (four cells of 2, each shown as 5, with a total of 8
  rounded to 10 would pin all four);
- the month's distinct clients, which are not a sum, are rounded after capping at what
  the category figures still allow (:func:`distinct_total`);
- a figure shown only above a threshold (an amount, a doorlooptijd) is shown only when the
  threshold is implied by the published band already (:func:`band_at_least`), so that
  showing it tells nothing the band did not.

This module only maps numbers; :mod:`gateway.stats` decides which numbers there are.
"""

from __future__ import annotations

from collections.abc import Iterable

METHOD = "afronding"
"""The method's name in the published figures (``method.name``)."""


def round_count(value: int, base: int) -> int:
    """The published form of a true count ``value`` >= 0."""
    if value < 0 or base < 1:
        raise ValueError("a count and a base are not negative, a base at least 1")
    if value == 0:
        return 0
    return max(base, base * ((2 * value + base) // (2 * base)))


def band(published: int, base: int) -> tuple[int, int]:
    """The true counts (inclusive) that :func:`round_count` publishes as ``published``: what a
    reader may infer from a single published count."""
    if published == 0:
        return 0, 0
    if published < 0 or published % base:
        raise ValueError(f"{published} is not a count rounded to base {base}")
    if published == base:
        return 1, base + (base + 1) // 2 - 1
    return published - base // 2, published + (base + 1) // 2 - 1


def sum_total(published: Iterable[int]) -> int:
    """An additive total: the sum of its rounded cells (the true total lies between the sums
    of their bands' ends). It says nothing the cells did not."""
    return sum(published)


def distinct_total(value: int, cells: Iterable[int], base: int) -> int:
    """The published number of distinct clients over categories whose published clienten are
    ``cells``.

    The true total T lies between the largest cell and the sum of the cells; a rounded T
    near that sum would tell that every cell is near the top of its band. So T is capped at
    the sum of the bands' upper ends minus the widest band's width before it is rounded:
    then for every cell, and every value in its band, the other cells and a total within
    what is published can still be chosen (docs/figures.md, "the proof")."""
    bands = [band(cell, base) for cell in cells if cell]
    if not bands:
        return round_count(value, base)
    cap = sum(hi for _, hi in bands) - max(hi - lo for lo, hi in bands)
    return round_count(min(value, cap), base)


def band_at_least(published: int, base: int) -> bool:
    """Whether a published count's whole band is at least ``base``: a figure that needs
    ``base`` cases behind it may then be shown without narrowing the band."""
    return band(published, base)[0] >= base
