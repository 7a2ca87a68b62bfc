"""Write docs/rules.md from the rule catalogue (gateway/rules/catalogue.toml)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.rules.render import markdown  # noqa: E402

DOC = ROOT / "docs" / "rules.md"

# The official 3.2 example messages that carry a fault, and the verdict they get.
EXAMPLE_FAULTS: list[tuple[str, str, str]] = [
    ("JW315", "refused: XSD-TYPE", "ToewijzingEinddatum `2027-06-31`: June has 30 days"),
    (
        "JW317",
        "refused: CS003",
        "the NieuwProduct's Einddatum 2024-02-28 lies before its GewensteIngangsdatum 2026-11-01",
    ),
    (
        "JW318",
        "refused: XSD-STRUCTURE",
        "a `RetourCode` directly inside `Verzoek` instead of inside `RetourCodes`",
    ),
    (
        "JW323",
        "refused: TR101",
        "ReferentieNummer RN004 twice under one client (another client repeats "
        "ToewijzingNummer 10073, which TR416, per client, allows)",
    ),
    ("all others", "valid", "JW301-308, JW316, JW319-320, JW325, WMO301-323"),
]


def render() -> str:
    return markdown(EXAMPLE_FAULTS)


if __name__ == "__main__":
    DOC.write_text(render(), encoding="utf-8")
    print(f"wrote {DOC.relative_to(ROOT)}")
