"""Shared fixtures: the repository's samples and one validator with a fixed system date."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from gateway.broker.base import NewMessage, PlannedDelivery
from gateway.schemas import SchemaRegistry
from gateway.validation import Validator

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
TODAY = date(2026, 11, 22)
"""The samples are dated October/November 2026; TR135 compares against this date."""


@pytest.fixture(scope="session")
def registry() -> SchemaRegistry:
    return SchemaRegistry()


@pytest.fixture(scope="session")
def validator(registry: SchemaRegistry) -> Validator:
    return Validator(registry, today=TODAY)


def sample(name: str) -> str:
    return (SAMPLES / name).read_text(encoding="utf-8")


def stored_message(
    n: int, *, digest: str = "d", held: bool = False, bsns: tuple[str, ...] = ()
) -> NewMessage:
    """A message record as the ingest stage hands it to a broker (for broker-level tests)."""
    return NewMessage(
        id=f"m{n}",
        kind="Di01",
        zender="0150",
        zender_applicatie="App",
        ontvanger="12345678",
        referentienummer=f"ref-{n}",
        cross_ref=None,
        functie="WMO301",
        message_code="WMO301",
        identificatie=f"ID{n}",
        payload_sender="0150",
        digest=digest,
        envelope=b"<e>payload</e>",
        bv03_ref=f"bv-{n}",
        bv03_tijdstip="20260101000000000",
        actor="0150 via token",
        origin="127.0.0.1",
        bsns=bsns,
        payload_digest="ab" * 32,
        deliveries=(PlannedDelivery("12345678", "inbox" if held else "http", False, held),),
    )
