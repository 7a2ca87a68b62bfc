"""One registry of delivery adapters (issue 28.4): the entry points, the Kafka topic plan and
``holds`` all agree with gateway/transports.py, and no import runs from ``adapters/`` back up
into the gateway (the ebMS2 adapter is registered from gateway/ebms/, beside its inbound
side)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from gateway import transports
from gateway.broker import kafka_topics
from tests.conftest import ROOT


def test_the_pyproject_entry_points_are_the_registry() -> None:
    """pyproject.toml cannot compute its entry points: it must list exactly the built-ins."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"][transports.ENTRY_POINTS] == transports.BUILT_IN


def test_every_built_in_adapter_has_its_kafka_deliver_topic() -> None:
    names = {t.name for t in kafka_topics.plan("x", partitions=1, replication=1)}
    deliver = {n.removeprefix("x.deliver.") for n in names if n.startswith("x.deliver.")}
    assert deliver == set(transports.BUILT_IN)


def test_holds_is_what_the_adapter_class_says() -> None:
    for name in transports.BUILT_IN:
        adapter = transports.adapter_class(name)
        assert callable(adapter.deliver) and callable(adapter.close)
        assert transports.holds(name) is adapter.holds
    assert [n for n in transports.BUILT_IN if transports.holds(n)] == ["inbox"]
    assert transports.holds("no-such-adapter") is False


def _imports(path: Path) -> set[str]:
    """The modules of this repository that ``path`` imports (statically)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


PACKAGES = ("adapters", "gateway", "routing")


def test_the_imports_between_adapters_and_the_gateway_run_one_way() -> None:
    """adapters/ may use the gateway's lowest layers (safe file names, hardened XML), but
    nothing it reaches imports adapters again: no import runs back up (adapters/ebms.py
    imported gateway/ebms/outbound.py, which imports adapters)."""
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
    }
    graph = {name: {m for m in _imports(path) if m in modules} for name, path in modules.items()}
    for start in (m for m in modules if m.split(".")[0] == "adapters"):
        seen, todo = set(), [m for m in graph[start] if not m.startswith("adapters")]
        while todo:
            module = todo.pop()
            if module in seen:
                continue
            seen.add(module)
            back = sorted(m for m in graph[module] if m.split(".")[0] == "adapters")
            assert not back, f"{start} → … → {module} imports {back} again"
            todo += graph[module]
