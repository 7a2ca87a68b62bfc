"""TR056 through the state-store interface: memory and SQLite behave the same."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gateway.broker.sqlite_state import SqliteStateStore
from gateway.rules.state import (
    IdentificatieKey,
    MemoryStateStore,
    StateStore,
    check_unique_identificatie,
    identificatie_key,
)
from gateway.standards import BY_CODE
from gateway.xmlsafe import parse_untrusted
from tests.conftest import sample


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StateStore:
    if request.param == "memory":
        return MemoryStateStore()
    return SqliteStateStore(tmp_path / "state.sqlite")


def test_tr056_fires_only_for_a_repeated_identificatie(store: StateStore) -> None:
    root = parse_untrusted(sample("iwmo/wmo301.xml").encode())
    message = BY_CODE["WMO301"]
    assert check_unique_identificatie(root, message, store) == []
    key = identificatie_key(root, message)
    assert key == IdentificatieKey("0150", "WMO301", "WMO301A0001")
    assert store.remember(key) is True
    problems = check_unique_identificatie(root, message, store)
    assert [(p.rule, p.retourcode, p.level) for p in problems] == [("TR056", "9056", 3)]
    assert store.remember(key) is False
    other_type = IdentificatieKey("0150", "WMO319", "WMO301A0001")
    assert store.seen(other_type) is False


def test_retour_key_is_its_own_identificatie_and_sender() -> None:
    root = parse_untrusted(sample("iwmo/wmo302.xml").encode())
    key = identificatie_key(root, BY_CODE["WMO302"])
    assert key == IdentificatieKey("12345678", "WMO302", "WMO302R0001")


def test_tr056_is_not_checked_on_a_retour(store: StateStore) -> None:
    root = parse_untrusted(sample("iwmo/wmo302.xml").encode())
    message = BY_CODE["WMO302"]
    key = identificatie_key(root, message)
    assert key is not None and store.remember(key) is True
    assert check_unique_identificatie(root, message, store) == []


def test_sqlite_remember_is_atomic_under_concurrency(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.sqlite")
    key = IdentificatieKey("0150", "WMO301", "X1")
    wins: list[bool] = []
    threads = [threading.Thread(target=lambda: wins.append(store.remember(key))) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1
    store.close()
    reopened = SqliteStateStore(tmp_path / "s.sqlite")
    assert reopened.seen(key)
