"""What runs in a reader process (gateway/readers.py is the gateway's side), and the wire
between them.

A reader compiles the same schemas, loads the same code lists and uses the same settings as
the gateway, so a message is judged alike wherever it is read. It answers requests in the
order they come, each answer carrying the request's number, until the gateway's end of the
socket closes (the gateway ended, even by -9): then it ends too.

The wire: a frame is a header (payload length, request number) and a pickle. What a reader
sends back is unpickled by the gateway with :func:`loads`, which only builds the types this
module and gateway/reading.py answer with: a reader runs our code on partner input, and a
flaw in a parser must not turn its answer into a way to run code in the gateway.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import gc
import importlib
import io
import os
import pickle
import signal
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from gateway import logs, soap
from gateway.figures import FigureKeys
from gateway.report import ValidationReport
from gateway.xmlsafe import ParseLimits

log = structlog.get_logger("ggk.reader")

FRAME = struct.Struct("!IQ")
"""A frame's header: the pickle's length, the request's number (echoed in its answer)."""

READY = 0
"""The number of the frame a reader sends once it has compiled everything."""


@dataclass(frozen=True, slots=True)
class ReaderSetup:
    """Everything a reader process needs to judge a message as the gateway does."""

    schema_dirs: tuple[str, ...]
    limits: ParseLimits
    soap_limits: ParseLimits
    codelists_dir: str | None
    settings: Any  # gateway.reading.Settings (imported lazily: reading imports the rules)
    log_level: str = "WARNING"


@dataclass(frozen=True, slots=True)
class Answer:
    """A request read: the Read or Refused, and whether its payload was validated (what
    ``ggk_payload_validations_total{where="reader"}`` counts)."""

    read: Any
    validated: bool


@dataclass(frozen=True, slots=True)
class Fault:
    """A :class:`gateway.soap.SoapFault` in transit (an exception's fields, not the
    exception: a dataclass exception does not pickle its fields)."""

    fields: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Failed:
    """An unexpected error in the reader (its class name only, never its text)."""

    kind: str


class _Reader:
    """The reader process's state: compiled schemas, the validator, the settings."""

    def __init__(self, setup: ReaderSetup) -> None:
        from gateway import codelists
        from gateway.schemas import SchemaRegistry
        from gateway.validation import Validator

        logs.configure(setup.log_level)
        codelists.configure(Path(setup.codelists_dir) if setup.codelists_dir else None)
        registry = SchemaRegistry([Path(d) for d in setup.schema_dirs])
        registry.compile_all()
        self.validator = Validator(registry, setup.limits)
        self.soap_limits = setup.soap_limits
        self.settings = setup.settings
        key = setup.settings.figures_key
        self.figure_keys = FigureKeys(key) if key is not None else None

    def soap(self, body: bytes, action: str | None, caller: Any) -> Answer | Fault:
        from gateway import reading

        try:
            element = soap.unwrap(body, action, self.soap_limits)
        except soap.SoapFault as exc:
            # its fields as they are (astuple would turn the zender Systeem into a tuple)
            return Fault(tuple(getattr(exc, f.name) for f in dataclasses.fields(exc)))
        validated = []

        def validate(payload: bytes) -> Any:
            validated.append(True)
            return self.validator.validate_payload(payload)

        answer = reading.read_all(element, caller, self.settings, validate, self.figure_keys)
        return Answer(answer, bool(validated))

    def payload(self, data: bytes) -> ValidationReport:
        return self.validator.validate_payload(data).report


def serve(sock: socket.socket, setup: ReaderSetup) -> None:
    """The reader process: answer requests in order until the gateway closes the socket. A
    failure outside a request is one log line (through the gateway's redaction), not a
    traceback on stderr. Ctrl-C at a terminal reaches the whole process group: a reader
    leaves it to the gateway, which ends its readers by closing their sockets."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _serve(sock, setup)
    except Exception as exc:
        log.error("reader.failed", error=type(exc).__name__)
        os._exit(1)


def _serve(sock: socket.socket, setup: ReaderSetup) -> None:
    reader = _Reader(setup)
    gc.collect()
    gc.freeze()  # the compiled schemas and rules live as long as the reader (as in serve)
    stream = sock.makefile("rwb")
    _write(stream, READY, True)
    handlers: dict[str, Callable[..., Any]] = {"soap": reader.soap, "payload": reader.payload}
    while True:
        head = stream.read(FRAME.size)
        if len(head) < FRAME.size:
            return  # the gateway is gone
        size, number = FRAME.unpack(head)
        kind, args = pickle.loads(stream.read(size))  # from the gateway: trusted
        try:
            answer = handlers[kind](*args)
        except Exception as exc:
            answer = Failed(type(exc).__name__)
        del args
        _write(stream, number, answer)


def _write(stream: Any, number: int, value: object) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(FRAME.pack(len(data), number))
    stream.write(data)
    stream.flush()


_ANSWER_MODULES = frozenset(
    {
        "gateway.reader_process",
        "gateway.reading",
        "gateway.envelope",
        "gateway.figures",
        "gateway.report",
        "gateway.standards",
    }
)


@functools.lru_cache(maxsize=64)
def _answer_type(module: str, name: str) -> type | None:
    """The class ``module.name`` when a reader may send one: a dataclass or an enum that
    module defines itself, named plainly. Pickle follows a dotted name attribute by
    attribute, so checking the module alone let an answer name
    ``gateway.figures``/``hmac.__builtins__.get`` or ``gateway.reader_process``/``pickle.loads``
    and have the gateway call it: a reader runs our parsers on partner input, and a flaw in
    one must not become code run in the gateway. Plain data types only: their constructors
    set fields and nothing else."""
    if module not in _ANSWER_MODULES or not name.isidentifier():
        return None
    found = getattr(importlib.import_module(module), name, None)
    if not isinstance(found, type) or found.__module__ != module:
        return None  # a function, a module, or a class imported from elsewhere
    if dataclasses.is_dataclass(found) or issubclass(found, enum.Enum):
        return found
    return None


class _AnswerUnpickler(pickle.Unpickler):
    """Builds only the gateway's own answer types (and what pickle builds without a class:
    str, bytes, numbers, tuples, lists, dicts, sets)."""

    def find_class(self, module: str, name: str) -> Any:
        found = _answer_type(module, name)
        if found is None:
            raise pickle.UnpicklingError(f"a reader may not send {module[:60]}.{name[:60]}")
        return found


def loads(data: bytes) -> Any:
    """A reader's answer, unpickled with only the types a reader may send."""
    return _AnswerUnpickler(io.BytesIO(data)).load()
