"""Large payloads are validated in a worker process, not on the event loop.

A 1 MB declaratie costs about 60 ms of CPU to validate with every business rule, most of it
Python holding the GIL. On the event loop that stalls every other request in flight for as
long; in a thread it does too (the loop waits for the GIL at each step). In a worker process
it runs on the other core while the loop goes on serving the small messages, which are most of
the traffic. The gateway then parses the payload once more (libxml2, a few ms for 1 MB; no XSD,
no rules) because routing needs the tree in this process.

Small payloads are validated inline: shipping them to a process costs more than validating.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import structlog

from gateway.identify import identify
from gateway.metrics import PAYLOAD_VALIDATIONS
from gateway.report import ValidationReport
from gateway.schemas import SchemaRegistry
from gateway.validation import PayloadResult, Validator
from gateway.xmlsafe import ParseLimits, UnsafeXml, parse_untrusted

log = structlog.get_logger("ggk.offload")

LARGE_PAYLOAD_BYTES = 256 * 1024
"""Payloads above this size go to the worker process."""

_worker: Validator | None = None


def _start_worker(schema_dirs: tuple[str, ...], limits: ParseLimits) -> None:
    """Runs once in the worker process: compile the same schemas as the gateway, and end
    this process when the gateway is gone (even killed with -9, which nobody tells us)."""
    global _worker
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    registry = SchemaRegistry([Path(d) for d in schema_dirs])
    registry.compile_all()
    _worker = Validator(registry, limits)


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _validate(data: bytes) -> ValidationReport:
    assert _worker is not None, "worker not initialised"
    return _worker.validate_payload(data).report


def _ready() -> bool:
    return _worker is not None


class PayloadValidator:
    """Validates payloads: inline when small, in a worker process when large."""

    def __init__(
        self,
        validator: Validator,
        schema_dirs: tuple[Path, ...],
        threshold: int = LARGE_PAYLOAD_BYTES,
    ) -> None:
        self.validator = validator
        self.threshold = threshold
        self._init_args = (tuple(str(d) for d in schema_dirs), validator.limits)
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: the gateway has threads (SQLite writer, checkpointer) by now
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=self._init_args,
        )

    async def start(self) -> None:
        """Start the worker and wait until it has compiled the schemas, so the first large
        message does not wait for that."""
        self._pool = self._new_pool()
        await asyncio.get_running_loop().run_in_executor(self._pool, _ready)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def validate_payload(self, data: bytes) -> PayloadResult:
        """Validate ``data`` once; counted in ``ggk_payload_validations_total`` (the most
        expensive step of accepting a message: a path that repeats it shows there)."""
        if self._pool is None or len(data) <= self.threshold:
            PAYLOAD_VALIDATIONS.labels(where="inline").inc()
            return self.validator.validate_payload(data)
        PAYLOAD_VALIDATIONS.labels(where="worker").inc()
        try:
            report = await asyncio.get_running_loop().run_in_executor(self._pool, _validate, data)
        except BrokenProcessPool:  # the worker died (e.g. killed): validate here, start anew
            log.error("offload.worker_lost", payload_bytes=len(data))
            self._pool = self._new_pool()
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
