"""The gateway's HTTP face, by its old address: the code lives in the package gateway/web/
(one module per job, see its docstring). This module re-exports the names that callers
(cli.py, the tests' kit) import from here, so they keep working.
"""

from __future__ import annotations

from gateway.web.app import maintenance, make_app, run, server_ssl
from gateway.web.identify import identify, identify_token
from gateway.web.rest import Submitted, submit_payload
from gateway.web.wiring import GATEWAY_KEY, SOAP_PATH, Gateway, admission_of, build

__all__ = [
    "GATEWAY_KEY",
    "SOAP_PATH",
    "Gateway",
    "Submitted",
    "admission_of",
    "build",
    "identify",
    "identify_token",
    "maintenance",
    "make_app",
    "run",
    "server_ssl",
    "submit_payload",
]
