"""Header rules that need no state: TR135 (heenberichten) and IV034 (every message)."""

from __future__ import annotations

from collections.abc import Iterator

from gateway.rules.base import Finding, MessageContext, as_date, first, header, rule, text
from gateway.standards import Kind


@rule("TR135")
def dagtekening_not_in_future(ctx: MessageContext) -> Iterator[Finding]:
    h = header(ctx)
    value = as_date(h, "BerichtIdentificatie/Dagtekening")
    if value is not None and value > ctx.today:
        yield Finding(
            first(h, "BerichtIdentificatie/Dagtekening"),
            f"Dagtekening {value} is after today ({ctx.today})",
            expected=f"on or before {ctx.today}",
            found=str(value),
        )


@rule("IV034")
def xsd_versie_matches_schema(ctx: MessageContext) -> Iterator[Finding]:
    basis_expected, bericht_expected = ctx.xsd_versions
    own = "XsdVersieRetour" if ctx.message.kind is Kind.RETOUR else "XsdVersie"
    h = header(ctx)
    for child, expected in (
        ("BasisschemaXsdVersie", basis_expected),
        ("BerichtXsdVersie", bericht_expected),
    ):
        found = text(h, f"{own}/{child}")
        if expected is not None and found != expected:
            yield Finding(
                first(h, f"{own}/{child}"),
                f"{own}/{child} is {found}, the schema declares {expected}",
                expected=expected,
                found=found,
            )
