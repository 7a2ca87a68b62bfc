"""Shared fixtures: the repository's samples and one validator with a fixed system date."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

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
