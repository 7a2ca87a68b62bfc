"""Delivery adapters: how a message leaves the gateway for one partner.

This package holds the plain outbound adapters (``http``, ``stuf``, ``directory``, ``inbox``)
and the protocol every adapter follows; of the gateway it uses only the lowest layers (safe
file names, SOAP, hardened XML), never a module that imports adapters. Which adapters exist
is said in one place, the registry gateway/transports.py (built-ins and the ``ggk.adapters``
entry points of plug-ins), which also creates them.
"""

from __future__ import annotations

from adapters.base import Adapter, AdapterError, Outbound, PermanentError, RetryableError

__all__ = [
    "Adapter",
    "AdapterError",
    "Outbound",
    "PermanentError",
    "RetryableError",
]
