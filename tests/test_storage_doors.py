"""Storage has one door (issue 28): outside ``gateway/broker/`` no module imports ``sqlite3``,
a backend's module, or asks which backend is configured; inside it only the SQLite backend's
modules import ``sqlite3``; no module of the gateway is over 600 lines.

These read the source: a new module that opens the database itself, or a command that
branches on ``config.broker``, fails here before it spreads the backend's choice again.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = ROOT / "gateway"
BROKER = GATEWAY / "broker"

DOORS = {"gateway.broker", "gateway.broker.base", "gateway.broker.factory", "gateway.broker.trail"}
"""What a module outside gateway/broker/ may import of it: the roles and the doors."""


def _sources() -> list[Path]:
    return sorted([*GATEWAY.rglob("*.py"), ROOT / "cli.py"])


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "gateway.broker":  # a submodule, not a name of the package
                found |= {
                    f"gateway.broker.{alias.name}"
                    for alias in node.names
                    if (BROKER / f"{alias.name}.py").exists()
                }
    return found


def _asks_the_backend(path: Path) -> bool:
    """A comparison with ``<something>.broker`` (``config.broker == "kafka"``)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                if isinstance(side, ast.Attribute) and side.attr == "broker":
                    return True
    return False


def test_no_module_outside_the_broker_imports_sqlite3_or_a_backend() -> None:
    # ``ggk kafka init`` creates the cluster's topics: a command about Kafka itself
    allowed = {GATEWAY / "cli" / "kafka.py": {"gateway.broker.kafka_topics"}}
    offenders = {}
    for path in _sources():
        if BROKER in path.parents:
            continue
        imports = _imports(path)
        bad = sorted(
            name
            for name in imports
            if name == "sqlite3"
            or (name.startswith("gateway.broker.") and name not in DOORS | allowed.get(path, set()))
        )
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert offenders == {}


def test_only_the_sqlite_backend_imports_sqlite3() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in BROKER.glob("*.py")
        if "sqlite3" in _imports(path) and not path.name.startswith("sqlite")
    ]
    assert offenders == []


def test_no_module_outside_the_broker_asks_which_backend_runs() -> None:
    allowed = {GATEWAY / "config.py"}  # checks the configured name when loading
    offenders = [
        str(path.relative_to(ROOT))
        for path in _sources()
        if BROKER not in path.parents and path not in allowed and _asks_the_backend(path)
    ]
    assert offenders == []


def test_no_module_of_the_gateway_is_over_600_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in GATEWAY.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 600
    }
    assert long == {}
