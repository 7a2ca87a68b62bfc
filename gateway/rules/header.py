"""Header rules (iwmo-ijw.md 5.2) that need no state: TR135 and IV034."""

from __future__ import annotations

from collections.abc import Iterator

from gateway.report import Severity
from gateway.rules.base import Finding, MessageContext, as_date, first, header, rule, text
from gateway.standards import Kind

ALL = (301, 302, 305, 306, 307, 308, 315, 316, 317, 318, 319, 320, 323, 325)


@rule(
    "TR135",
    "Dagtekening must not be later than the receiver's system date",
    messages=ALL,
    level=4,
    retourcode="8848",
)
def dagtekening_not_in_future(ctx: MessageContext) -> Iterator[Finding]:
    h = header(ctx)
    path = (
        "DagtekeningRetour"
        if ctx.message.kind is Kind.RETOUR
        else ("BerichtIdentificatie/Dagtekening")
    )
    value = as_date(h, path)
    if value is not None and value > ctx.today:
        yield Finding(
            first(h, path),
            f"{path} {value} is after today ({ctx.today})",
            expected=f"on or before {ctx.today}",
            found=str(value),
        )


@rule(
    "IV034",
    "XsdVersie must quote the versions declared in the XSD's appinfo",
    messages=ALL,
    level=2,
    severity=Severity.WARNING,
)
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
