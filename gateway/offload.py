"""Large payloads are validated in a reader process, not on the event loop.

A 1 MB declaratie costs about 60 ms of CPU to validate with every business rule, most of it
Python holding the GIL. On the event loop that stalls every other request in flight for as
long; in a thread it does too (the loop waits for the GIL at each step). In a reader process
(gateway/readers.py) it runs on another core while the loop goes on serving the small
messages. The gateway then parses the payload once more (libxml2, a few ms for 1 MB; no XSD,
no rules) because the caller (the REST API, the portal) needs the tree in this process.

Small payloads are validated inline: shipping them to a process and parsing them again
costs more than validating. (A SOAP request is read in a reader as a whole, envelope to
stored facts, so nothing is parsed twice: gateway/web/soap_endpoint.py.)
"""

from __future__ import annotations

import asyncio

import structlog

from gateway.identify import identify
from gateway.metrics import PAYLOAD_VALIDATIONS
from gateway.readers import LARGE_BYTES, ReaderCrashed, ReaderLost, Readers
from gateway.validation import PayloadResult, Validator
from gateway.xmlsafe import UnsafeXml, parse_untrusted

log = structlog.get_logger("ggk.offload")

LARGE_PAYLOAD_BYTES = LARGE_BYTES
"""Payloads above this size go to a reader process (the readers' own idea of large)."""


class PayloadValidator:
    """Validates payloads: inline when small, in a worker process when large."""

    def __init__(
        self,
        validator: Validator,
        readers: Readers | None = None,
        threshold: int = LARGE_PAYLOAD_BYTES,
    ) -> None:
        self.validator = validator
        self.readers = readers
        self.threshold = threshold

    async def validate_payload(self, data: bytes) -> PayloadResult:
        """Validate ``data`` once; counted in ``ggk_payload_validations_total`` (the most
        expensive step of accepting a message: a path that repeats it shows there). Raises
        :class:`gateway.readers.ReaderCrashed` for a payload two readers ended on."""
        if self.readers is None or not self.readers.running or len(data) <= self.threshold:
            PAYLOAD_VALIDATIONS.labels(where="inline").inc()
            return self.validator.validate_payload(data)
        PAYLOAD_VALIDATIONS.labels(where="worker").inc()
        try:
            report = await self.readers.validate_payload(data)
        except ReaderCrashed:
            raise  # two readers ended on it: not validated here (the caller refuses it)
        except ReaderLost:  # its reader died (e.g. killed): validate here (it is replaced)
            log.error("offload.worker_lost", payload_bytes=len(data))
            return self.validator.validate_payload(data)
        result = PayloadResult(report)
        if report.message is None:
            return result  # not identified: the report says why, nothing to route
        try:  # a large tree: built in a thread, so the loop goes on serving others
            result.root = await asyncio.to_thread(parse_untrusted, data, self.validator.limits)
        except UnsafeXml:  # it parsed in the worker with the same limits: cannot happen
            return self.validator.validate_payload(data)
        identified = identify(result.root, self.validator.registry)
        result.identified = None if isinstance(identified, list) else identified
        return result
