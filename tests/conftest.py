"""Shared fixtures: the repository's samples and one validator with a fixed system date."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path

import pytest
from hypothesis import settings

from gateway.schemas import SchemaRegistry
from gateway.validation import Validator
from kit.ebms import Capture, capturing
from kit.gateway import Sink
from kit.harness import kafka_node

# Hypothesis: 200 examples per property in the test suite; benchmarks/fuzz.py selects "long".
settings.register_profile("ci", max_examples=200)
settings.register_profile(
    "long", max_examples=int(os.environ.get("GGK_FUZZ_EXAMPLES", "2000")), database=None
)
settings.load_profile(os.environ.get("GGK_HYPOTHESIS_PROFILE", "ci"))

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


GROUPS_OUTSIDE_THE_FAST_LOOP = ("kafka", "ebms", "browser")
"""Tests that need a real Kafka, the Java ebMS peer or Chromium are also ``slow``: the fast loop
(``python -m pytest -m "not slow"``, docs/testing.md) leaves them to the full suite."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark what the markers in the test files do not say themselves: a test that takes the
    ``browser`` fixture (tests/test_portal.py) is ``browser``, and every ``kafka``, ``ebms``
    and ``browser`` test is ``slow``."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
        if any(item.get_closest_marker(group) for group in GROUPS_OUTSIDE_THE_FAST_LOOP):
            item.add_marker(pytest.mark.slow)


def sample(name: str) -> str:
    return (SAMPLES / name).read_text(encoding="utf-8")


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    """A partner's receiving system on loopback (StUF and plain HTTP endpoints)."""
    partner = Sink()
    await partner.start()
    yield partner
    await partner.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real single-node Kafka 4.x (KRaft) on 127.0.0.1, started once for the session by
    scripts/kafka-dev.sh and stopped afterwards. Needs Java 17+ and Maven, no mocks."""
    existing = os.environ.get("GGK_TEST_KAFKA")
    if existing:  # a broker that is already running (development, or an existing cluster)
        yield existing
        return
    require_kafka_tools()
    with kafka_node(tmp_path_factory.mktemp("kafka")) as bootstrap:
        yield bootstrap


def require_kafka_tools() -> None:
    """Skip (fail on CI, which installs them) when Java 17+ or the Kafka jars are missing."""
    missing = missing_kafka_tools()
    if missing:
        if os.environ.get("CI"):  # CI installs them (.ci/run): their absence is a failure
            pytest.fail(f"the Kafka tests need {missing} (.ci/run installs them)")
        pytest.skip(f"the Kafka tests need {missing}: install them or set GGK_TEST_KAFKA")


def missing_kafka_tools() -> str | None:
    """What is missing to start the development broker: Java 17+ and Maven (for the jars,
    unless scripts/kafka-dev.sh fetched them already)."""
    java = shutil.which("java")
    if java is None:
        return "Java 17 or newer (no java on PATH)"
    version = subprocess.run(
        [java, "-version"], capture_output=True, text=True, timeout=60, check=False
    ).stderr
    found = re.search(r'version "(\d+)(?:\.(\d+))?', version)
    major = int(found.group(1)) if found else 0
    if major == 1 and found and found.group(2):  # "1.8.0_x" is Java 8
        major = int(found.group(2))
    if major < 17:
        return f"Java 17 or newer (found {version.splitlines()[0] if version else 'none'})"
    if not (ROOT / ".kafka" / "libs" / ".complete").exists() and shutil.which("mvn") is None:
        return "Maven (to fetch the Kafka jars) or scripts/kafka-dev.sh fetch run once"
    return None


@pytest.fixture
async def capture() -> AsyncIterator[Capture]:
    """A partner MSH's endpoint on loopback (kit/ebms.py)."""
    async with capturing() as cap:
        yield cap
