"""Broker backends: where accepted messages and their deliveries are kept durably.

:func:`open_broker` is the one door: it builds the configured backend. The roles a backend
plays (gateway/broker/base.py) are small protocols a caller types against.
"""

from gateway.broker.base import (
    AcceptOutcome,
    AuditTrail,
    Broker,
    DeliveryQueue,
    DeliveryState,
    Figures,
    Job,
    Lifecycle,
    MessageStore,
    NewMessage,
    PartnerInbox,
    ReadViews,
    Sessions,
    StorageError,
)
from gateway.broker.factory import open_broker

__all__ = [
    "AcceptOutcome",
    "AuditTrail",
    "Broker",
    "DeliveryQueue",
    "DeliveryState",
    "Figures",
    "Job",
    "Lifecycle",
    "MessageStore",
    "NewMessage",
    "PartnerInbox",
    "ReadViews",
    "Sessions",
    "StorageError",
    "open_broker",
]
