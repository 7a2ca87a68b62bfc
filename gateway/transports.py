"""The one registry of delivery adapters: an adapter's name → the class that delivers.

Every list of adapter names reads this one: the delivery service creates adapters from it,
the Kafka backend's topic plan has a ``deliver.<name>`` topic for each built-in, and the
ingress asks it whether an adapter *holds* its messages (``Adapter.holds``: the inbox keeps
them in the gateway until the partner fetches them) instead of comparing names. pyproject's
``ggk.adapters`` entry points cannot be computed, so they repeat :data:`BUILT_IN`;
tests/test_transports.py checks that the two agree.

Plug-ins come through the same entry-point group (``[project.entry-points."ggk.adapters"]
mine = "pkg.mod:MyAdapter"``) and share the Kafka ``deliver.http`` topic.

The plain outbound adapters live in ``adapters/`` and use only the gateway's lowest layers
(safe file names, SOAP, hardened XML). A transport with both sides in the gateway keeps them
together: the ebMS2 adapter is registered from gateway/ebms/outbound.py, beside the inbound
MSH (gateway/ebms/inbound.py), so no import runs from ``adapters/`` back up into a module
that imports adapters (tests/test_transports.py).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from adapters.base import Adapter, AdapterError

BUILT_IN: dict[str, str] = {
    "http": "adapters.http:HttpAdapter",
    "stuf": "adapters.stuf:StufAdapter",
    "directory": "adapters.directory:DirectoryAdapter",
    "inbox": "adapters.inbox:InboxAdapter",
    "ebms": "gateway.ebms.outbound:EbmsAdapter",
}
"""The adapters that ship with the gateway: name → ``module:Class``."""

ENTRY_POINTS = "ggk.adapters"


def available() -> dict[str, str]:
    """Adapter name → ``module:Class``: the built-ins, overridden by installed entry points."""
    found = dict(BUILT_IN)
    for ep in entry_points(group=ENTRY_POINTS):
        found[ep.name] = ep.value
    return found


@functools.cache
def adapter_class(name: str) -> type[Adapter]:
    """The class registered as ``name`` (imported once); :class:`AdapterError` if none is."""
    target = available().get(name)
    if target is None:
        raise AdapterError(f"unknown adapter {name!r}; available: {', '.join(sorted(available()))}")
    module_name, _, class_name = target.partition(":")
    module = __import__(module_name, fromlist=[class_name])
    factory: type[Adapter] = getattr(module, class_name)
    return factory


def holds(name: str) -> bool:
    """Whether adapter ``name`` keeps its messages in the gateway (never pushed): read from
    the class's ``holds``. An unknown name holds nothing (it fails when delivered)."""
    try:
        return bool(getattr(adapter_class(name), "holds", False))
    except AdapterError:
        return False


def declared_settings(name: str) -> frozenset[str] | None:
    """The settings adapter ``name`` declares (``Adapter.setting_keys``), which partners.toml
    checks its ``[partner.delivery]`` keys against. None (nothing checked) for an adapter
    that is not installed or, like a third-party adapter written before the attribute, does
    not declare them."""
    try:
        declared = getattr(adapter_class(name), "setting_keys", None)
    except AdapterError:
        return None
    return frozenset(declared) if isinstance(declared, (set, frozenset)) else None


def create(
    name: str,
    settings: dict[str, Any],
    *,
    timeout: float,
    context: Mapping[str, Any] | None = None,
) -> Adapter:
    """Instantiate adapter ``name`` for one partner's ``settings``; adapters that say
    ``uses_context`` also get the running gateway's shared services."""
    factory: Any = adapter_class(name)
    if getattr(factory, "uses_context", False):
        adapter: Adapter = factory(settings, timeout=timeout, context=context or {})
    else:
        adapter = factory(settings, timeout=timeout)
    return adapter
