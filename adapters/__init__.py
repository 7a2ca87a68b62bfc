"""Delivery adapters: how a message leaves the gateway for one partner.

Adapters are found through the ``ggk.adapters`` entry-point group, so a third party can ship
one in its own package (``[project.entry-points."ggk.adapters"] mine = "pkg.mod:MyAdapter"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from adapters.base import Adapter, AdapterError, Outbound, PermanentError, RetryableError

BUILT_IN = {
    "http": "adapters.http:HttpAdapter",
    "stuf": "adapters.stuf:StufAdapter",
    "directory": "adapters.directory:DirectoryAdapter",
    "inbox": "adapters.inbox:InboxAdapter",
    "ebms": "adapters.ebms:EbmsAdapter",
}


def available() -> dict[str, str]:
    """Adapter name → ``module:Class``, built-ins overridden by installed entry points."""
    found = dict(BUILT_IN)
    for ep in entry_points(group="ggk.adapters"):
        found[ep.name] = ep.value
    return found


def create(
    name: str,
    settings: dict[str, Any],
    *,
    timeout: float,
    context: Mapping[str, Any] | None = None,
) -> Adapter:
    """Instantiate adapter ``name`` for one partner's ``settings``; adapters that say
    ``uses_context`` also get the running gateway's shared services."""
    target = available().get(name)
    if target is None:
        raise AdapterError(f"unknown adapter {name!r}; available: {', '.join(sorted(available()))}")
    module_name, _, class_name = target.partition(":")
    module = __import__(module_name, fromlist=[class_name])
    factory = getattr(module, class_name)
    if getattr(factory, "uses_context", False):
        adapter: Adapter = factory(settings, timeout=timeout, context=context or {})
    else:
        adapter = factory(settings, timeout=timeout)
    return adapter


__all__ = [
    "Adapter",
    "AdapterError",
    "Outbound",
    "PermanentError",
    "RetryableError",
    "available",
    "create",
]
