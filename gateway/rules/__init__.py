"""Business rules beyond the XSD, each registered under its official 3.2 rule id.

What a rule is (level, retourcode, messages) is data in the catalogue (``catalogue.toml``,
:mod:`gateway.rules.catalogue`); the modules here hold the predicates. Importing this package
registers every in-message rule in :data:`RULES`; TR056, which needs earlier messages, lives in
:mod:`gateway.rules.state` and the brokers.
"""

from gateway.rules import (
    claims,
    client,
    codelist_rules,
    dates,
    header,
    keys,
    overlap,
    products,
)
from gateway.rules.base import RULES, Finding, MessageContext, Rule

__all__ = [
    "RULES",
    "Finding",
    "MessageContext",
    "Rule",
    "claims",
    "client",
    "codelist_rules",
    "dates",
    "header",
    "keys",
    "overlap",
    "products",
]
