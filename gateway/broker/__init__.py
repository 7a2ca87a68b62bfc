"""Broker backends: where accepted messages and their deliveries are kept durably."""

from gateway.broker.base import (
    AcceptOutcome,
    Broker,
    DeliveryState,
    Job,
    NewMessage,
    StorageError,
)

__all__ = ["AcceptOutcome", "Broker", "DeliveryState", "Job", "NewMessage", "StorageError"]
