"""Reader processes: reading offered messages (gateway/reading.py) on the other cores.

One Python process can use one core at a time: the event loop, TLS, the SQLite writer's
Python and every message's parsing, schema checks, rules and facts share one interpreter
lock. Reading a message is most of its CPU and needs nothing of the gateway's state, so the
gateway hands the request body to a reader process and gets back what the store keeps
(:class:`gateway.reading.Read`) or the refusal (:class:`gateway.reading.Refused`); routing,
the conversation checks, storing and answering stay in the gateway process, with one SQLite
writer as before.

Each reader is a process of its own (spawned, not forked: the gateway has threads), with a
socket pair to the gateway; a request is one length-prefixed pickle, answered in order.
A ``concurrent.futures`` process pool costs the gateway about 0.2 ms of CPU a task (a
management thread, a feeder thread, wake-ups); this costs about 0.04 ms. A reader compiles
the same schemas, loads the same code lists and uses the same settings as the gateway, so a
message is judged alike wherever it is read. A reader that dies (killed, out of memory) fails
only the requests it held, which the gateway then reads itself; a new reader is started.
A reader ends when the gateway's end of its socket closes (the gateway ended, even by -9).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import gc
import logging
import multiprocessing
import pickle
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from gateway import logs, soap
from gateway.figures import FigureKeys
from gateway.metrics import PAYLOAD_VALIDATIONS
from gateway.report import ValidationReport
from gateway.xmlsafe import ParseLimits

log = structlog.get_logger("ggk.readers")

_FRAME = struct.Struct("!I")


@dataclass(frozen=True, slots=True)
class ReaderSetup:
    """Everything a reader process needs to judge a message as the gateway does."""

    schema_dirs: tuple[str, ...]
    limits: ParseLimits
    soap_limits: ParseLimits
    codelists_dir: str | None
    settings: Any  # gateway.reading.Settings (imported lazily: reading imports the rules)
    log_level: str = "WARNING"


class ReaderLost(Exception):
    """The reader process holding a request ended before answering it."""


# ---- in the reader process -------------------------------------------------------------


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

    def soap(self, body: bytes, action: str | None, caller: Any) -> Any:
        from gateway import reading

        try:
            element = soap.unwrap(body, action, self.soap_limits)
        except soap.SoapFault as exc:
            # its fields as they are (astuple would turn the zender Systeem into a tuple)
            return _Fault(tuple(getattr(exc, f.name) for f in dataclasses.fields(exc)))
        validated = []

        def validate(payload: bytes) -> Any:
            validated.append(True)
            return self.validator.validate_payload(payload)

        answer = reading.read_all(element, caller, self.settings, validate, self.figure_keys)
        return _Answer(answer, bool(validated))

    def payload(self, data: bytes) -> ValidationReport:
        return self.validator.validate_payload(data).report


@dataclass(frozen=True, slots=True)
class _Answer:
    """A request read: the Read or Refused, and whether its payload was validated (what
    ``ggk_payload_validations_total{where="reader"}`` counts)."""

    read: Any
    validated: bool


@dataclass(frozen=True, slots=True)
class _Fault:
    """A :class:`gateway.soap.SoapFault` in transit (an exception's fields, not the
    exception: a dataclass exception does not pickle its fields)."""

    fields: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _Failed:
    """An unexpected error in the reader: the gateway reads the message itself, where the
    error is handled (and reported) as any other."""

    kind: str


def _serve(sock: socket.socket, setup: ReaderSetup) -> None:
    """The reader process: answer requests in order until the gateway closes the socket."""
    reader = _Reader(setup)
    gc.collect()
    gc.freeze()  # the compiled schemas and rules live as long as the reader (as in serve)
    stream = sock.makefile("rwb")
    _write(stream, True)  # ready
    handlers: dict[str, Callable[..., Any]] = {"soap": reader.soap, "payload": reader.payload}
    while True:
        head = stream.read(_FRAME.size)
        if len(head) < _FRAME.size:
            return  # the gateway is gone
        (size,) = _FRAME.unpack(head)
        kind, args = pickle.loads(stream.read(size))
        try:
            answer = handlers[kind](*args)
        except Exception as exc:
            answer = _Failed(type(exc).__name__)
        _write(stream, answer)


def _write(stream: Any, value: object) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_FRAME.pack(len(data)) + data)
    stream.flush()


# ---- in the gateway process ------------------------------------------------------------


class _Process:
    """One reader process as the gateway sees it: its socket and the requests it holds."""

    def __init__(
        self,
        process: multiprocessing.process.BaseProcess,
        sock: socket.socket,
        on_lost: Callable[[], None],
    ) -> None:
        self.process = process
        self.on_lost = on_lost
        self.stopping = False
        self.sock = sock
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.load = 0
        """Bytes of the requests it holds: a 1 MB declaratie weighs as much as 300 small ones."""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(sock=self.sock)
        ready = await self._next()
        if ready is not True:
            raise ReaderLost("the reader did not start")
        self.task = asyncio.create_task(self._answers(), name="reader-answers")

    async def _next(self) -> Any:
        assert self.reader is not None
        (size,) = _FRAME.unpack(await self.reader.readexactly(_FRAME.size))
        return pickle.loads(await self.reader.readexactly(size))

    async def _answers(self) -> None:
        try:
            while True:
                answer = await self._next()
                future = self.waiting.popleft()
                if not future.done():
                    future.set_result(answer)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            if not self.stopping:
                log.error("readers.reader_lost", pid=self.process.pid, waiting=len(self.waiting))
                self.on_lost()
        finally:
            self._fail_waiting()

    def _fail_waiting(self) -> None:
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(ReaderLost("the reader process ended"))

    @property
    def alive(self) -> bool:
        return self.task is not None and not self.task.done()

    async def ask(self, kind: str, args: tuple[Any, ...], weight: int) -> Any:
        assert self.writer is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        data = pickle.dumps((kind, args), protocol=pickle.HIGHEST_PROTOCOL)
        self.waiting.append(future)
        self.load += weight
        try:
            self.writer.write(_FRAME.pack(len(data)) + data)
            await self.writer.drain()
            return await future
        except (ConnectionError, OSError) as exc:
            future.cancel()  # its answer will not come; nobody else waits for it
            raise ReaderLost(str(exc)) from None
        finally:
            self.load -= weight

    async def stop(self) -> None:
        self.stopping = True
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)


class Readers:
    """The gateway's reader processes (``[gateway] readers``; 0: none, read inline)."""

    def __init__(self, setup: ReaderSetup, count: int) -> None:
        self.setup = setup
        self.count = count
        self._processes: list[_Process] = []
        self._replacing: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def running(self) -> bool:
        return any(p.alive for p in self._processes)

    async def start(self) -> None:
        """Start the readers and wait until each has compiled the schemas, so the first
        messages do not wait for that."""
        # the gateway's level, but never its INFO lines a second time (code lists loaded)
        level = max(logging.getLogger().level, logging.WARNING)
        self.setup = dataclasses.replace(self.setup, log_level=logging.getLevelName(level))
        self._processes = list(await asyncio.gather(*(self._spawn() for _ in range(self.count))))

    async def _spawn(self) -> _Process:
        ours, theirs = socket.socketpair()
        context = multiprocessing.get_context("spawn")
        process = context.Process(
            target=_serve, args=(theirs, self.setup), name="ggk-reader", daemon=True
        )
        process.start()
        theirs.close()
        reader = _Process(process, ours, self._replace_lost)
        try:
            await reader.connect()
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ReaderLost) as exc:
            await reader.stop()
            raise ReaderLost(f"a reader process did not start: {exc}") from None
        return reader

    async def close(self) -> None:
        self._closing = True
        if self._replacing is not None:
            self._replacing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replacing
        await asyncio.gather(*(p.stop() for p in self._processes))
        self._processes = []

    async def ask(self, kind: str, args: tuple[Any, ...], weight: int) -> Any:
        """The answer of the least loaded reader; ReaderLost when none can answer."""
        alive = [p for p in self._processes if p.alive]
        if not alive:
            raise ReaderLost("no reader process is running")
        chosen = min(alive, key=lambda p: (p.load, len(p.waiting)))
        return await chosen.ask(kind, args, weight)

    def _replace_lost(self) -> None:
        if self._closing or (self._replacing is not None and not self._replacing.done()):
            return
        self._replacing = asyncio.create_task(self._replace(), name="readers-replace")

    async def _replace(self) -> None:
        """Start a reader in the place of each lost one (until none is lost: another may end
        while one starts). Meanwhile the others read, or the gateway itself."""
        while not self._closing:
            lost = [i for i, p in enumerate(self._processes) if not p.alive]
            if not lost:
                return
            for i in lost:
                await self._processes[i].stop()
                try:
                    self._processes[i] = await self._spawn()
                except ReaderLost as exc:
                    log.error("readers.restart_failed", error=str(exc))
                    return
                log.warning("readers.reader_restarted", pid=self._processes[i].process.pid)

    async def read_soap(self, body: bytes, action: str | None, caller: Any) -> Any:
        """A SOAP request read by a reader: a :class:`gateway.reading.Read` or ``Refused``;
        raises :class:`gateway.soap.SoapFault` as :func:`gateway.soap.unwrap` does, and
        ReaderLost (the caller reads it itself)."""
        answer = await self.ask("soap", (body, action, caller), len(body))
        if isinstance(answer, _Fault):
            raise soap.SoapFault(*answer.fields)
        if isinstance(answer, _Failed):
            raise ReaderLost(f"the reader failed ({answer.kind})")
        assert isinstance(answer, _Answer)
        if answer.validated:
            PAYLOAD_VALIDATIONS.labels(where="reader").inc()
        return answer.read

    async def validate_payload(self, data: bytes) -> ValidationReport:
        answer = await self.ask("payload", (data,), len(data))
        if isinstance(answer, _Failed):
            raise ReaderLost(f"the reader failed ({answer.kind})")
        assert isinstance(answer, ValidationReport)
        return answer
