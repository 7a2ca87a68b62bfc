"""Business rules beyond the XSD, each registered under its official 3.2 rule id.

Importing this package registers every in-message rule in :data:`RULES`; cross-message rules
that need earlier messages live in :mod:`gateway.rules.state`.
"""

from gateway.rules import claims, client, header, products
from gateway.rules.base import RULES, Finding, MessageContext, Rule

__all__ = ["RULES", "Finding", "MessageContext", "Rule", "claims", "client", "header", "products"]
