"""Reader processes: reading offered messages (gateway/reading.py) on the other cores.

One Python process can use one core at a time: the event loop, TLS, the SQLite writer's
Python and every message's parsing, schema checks, rules and facts share one interpreter
lock. Reading a message is most of its CPU and needs nothing of the gateway's state, so the
gateway hands the request body to a reader process (gateway/reader_process.py) and gets back
what the store keeps (:class:`gateway.reading.Read`) or the refusal
(:class:`gateway.reading.Refused`); routing, the conversation checks, storing and answering
stay in the gateway process, with one SQLite writer as before.

Each reader is a process of its own (spawned, not forked: the gateway has threads), with a
socket pair to the gateway; a request is one frame, answered in order with its number. A
``concurrent.futures`` process pool costs the gateway about 0.2 ms of CPU a task (a
management thread, a feeder thread, wake-ups); this costs about 0.04 ms.

What keeps one partner, or one message, from holding up the rest:

- A small message never waits behind a large one: it goes to a reader holding no large
  message, and when every reader holds one it is read in the gateway process (as before
  readers, when only large payloads left it).
- Every request has a deadline (:data:`READ_DEADLINE`). A reader that misses it is killed.
- A reader that ends (killed, out of memory, a parser crash, a missed deadline) fails the
  request it was reading with :class:`ReaderCrashed` and the ones queued behind it with
  :class:`ReaderLost`. A crashed request is tried once more in another reader; if that one
  ends too, the message is refused (``StUF046``: send it again later) rather than read in the
  gateway process, where it could take the gateway down. A lost one is read in the gateway.
  The reader is replaced (retried with a growing pause until one starts).
- Answers carry their request's number: an answer out of step ends the reader, so no
  request can ever get another's answer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import multiprocessing
import pickle
import socket
from collections.abc import Callable
from typing import Any

import structlog

from gateway import soap
from gateway.metrics import PAYLOAD_VALIDATIONS, READER_FALLBACKS
from gateway.reader_process import (
    FRAME,
    READY,
    Answer,
    Failed,
    Fault,
    ReaderSetup,
    loads,
    serve,
)
from gateway.report import ValidationReport

log = structlog.get_logger("ggk.readers")

READ_DEADLINE = 60.0
"""Seconds a reader may take for one request (a message of the largest size allowed takes a
few seconds); beyond it the reader is taken to be stuck, and killed."""

LARGE_BYTES = 256 * 1024
"""A request above this size is a large one (also gateway/offload.py's threshold for sending
a REST payload to a reader, and where the inline path moves work to threads)."""

__all__ = ["READ_DEADLINE", "ReaderCrashed", "ReaderLost", "ReaderSetup", "Readers"]


class ReaderLost(Exception):
    """No reader answered this request: the caller reads the message itself."""


class ReadersBusy(ReaderLost):
    """Every reader holds a large message: a small one is read by the caller at once."""


class ReaderCrashed(ReaderLost):
    """The reader ended while reading this very request (or missed its deadline)."""


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
        self.waiting: collections.deque[tuple[int, asyncio.Future[Any]]] = collections.deque()
        self.numbers = 0
        self.load = 0
        """Bytes of the requests it holds: a 1 MB declaratie weighs as much as 300 small ones."""
        self.large = 0
        """Large requests it holds: small ones do not queue behind those."""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(sock=self.sock)
        number, ready = await self._next()
        if (number, ready) != (READY, True):
            raise ReaderLost("the reader did not start")
        self.task = asyncio.create_task(self._answers(), name="reader-answers")

    async def _next(self) -> tuple[int, Any]:
        """The next answer. A large one is unpickled in a thread: a 1 MB declaratie's
        answer (its envelope and 1,302 facts) takes ~2 ms to build, which the event loop
        would otherwise spend on it while small messages wait. The thread hands the lock
        back every 0.5 ms while the request's body is large (gateway/eventloop.py), every
        5 ms for the rare answer that is large for a body that is not. Answers stay in
        order: the next is read only after this one is built."""
        assert self.reader is not None
        size, number = FRAME.unpack(await self.reader.readexactly(FRAME.size))
        data = await self.reader.readexactly(size)
        if size > LARGE_BYTES:
            return number, await asyncio.to_thread(loads, data)
        return number, loads(data)

    async def _answers(self) -> None:
        """Hand each answer to its request; any trouble ends the reader (never a guess)."""
        crashed = True
        try:
            while True:
                number, answer = await self._next()
                if not self.waiting or self.waiting[0][0] != number:
                    log.error("readers.out_of_step", pid=self.process.pid, number=number)
                    crashed = False  # which request it was reading is not known
                    return
                _, future = self.waiting.popleft()
                if not future.done():
                    future.set_result(answer)
        except asyncio.CancelledError:
            crashed = False
            raise
        except Exception as exc:  # an unreadable answer is as bad as a dead reader
            if not self.stopping:
                log.error(
                    "readers.reader_lost",
                    pid=self.process.pid,
                    waiting=len(self.waiting),
                    error=type(exc).__name__,
                )
        finally:
            if not self.stopping:
                self._kill()
                self.on_lost()
            self._fail_waiting(crashed and not self.stopping)

    def _fail_waiting(self, crashed: bool) -> None:
        """The request being read when the reader ended is the suspect (ReaderCrashed); the
        ones queued behind it are not (ReaderLost)."""
        first = True
        while self.waiting:
            _, future = self.waiting.popleft()
            if not future.done():
                error = ReaderCrashed if crashed and first else ReaderLost
                future.set_exception(error("the reader process ended"))
            first = False

    def _kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        if self.writer is not None:
            self.writer.close()

    @property
    def alive(self) -> bool:
        return self.task is not None and not self.task.done()

    async def ask(self, kind: str, args: tuple[Any, ...], weight: int, deadline: float) -> Any:
        assert self.writer is not None
        data = pickle.dumps((kind, args), protocol=pickle.HIGHEST_PROTOCOL)
        self.numbers += 1
        number = self.numbers
        try:
            self.writer.writelines([FRAME.pack(len(data), number), data])
        except (ConnectionError, OSError, RuntimeError) as exc:  # nothing queued yet
            raise ReaderLost(type(exc).__name__) from None
        del data  # the transport holds what it has not sent
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting.append((number, future))
        large = weight > LARGE_BYTES
        self.load += weight
        self.large += large
        try:
            await self.writer.drain()
            return await asyncio.wait_for(asyncio.shield(future), deadline)
        except TimeoutError:
            log.error("readers.reader_stuck", pid=self.process.pid, seconds=deadline)
            self._kill()  # its answers task fails this request (ReaderCrashed) and the rest
            return await future
        except (ConnectionError, OSError) as exc:
            future.cancel()  # its answer will not come; the answers task ends the reader
            raise ReaderLost(type(exc).__name__) from None
        finally:
            self.load -= weight
            self.large -= large

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
        await asyncio.to_thread(self.process.join, 5)
        if self.process.is_alive():
            self.process.kill()
            await asyncio.to_thread(self.process.join, 5)


class Readers:
    """The gateway's reader processes (``[gateway] readers``; 0: none, read inline)."""

    def __init__(self, setup: ReaderSetup, count: int, deadline: float = READ_DEADLINE) -> None:
        self.setup = setup
        self.count = count
        self.deadline = deadline
        self._processes: list[_Process] = []
        self._replacing: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def running(self) -> bool:
        return any(p.alive for p in self._processes)

    @property
    def processes(self) -> list[multiprocessing.process.BaseProcess]:
        """The reader processes now (a lost one until it is replaced)."""
        return [p.process for p in self._processes]

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
            target=serve, args=(theirs, self.setup), name="ggk-reader", daemon=True
        )
        process.start()
        theirs.close()
        reader = _Process(process, ours, self._replace_lost)
        try:
            await reader.connect()
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ReaderLost) as exc:
            await reader.stop()
            raise ReaderLost(f"a reader process did not start: {type(exc).__name__}") from None
        return reader

    async def close(self) -> None:
        self._closing = True
        if self._replacing is not None:
            self._replacing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replacing
        await asyncio.gather(*(p.stop() for p in self._processes))
        self._processes = []

    def _choose(self, weight: int, avoid: _Process | None) -> _Process:
        alive = [p for p in self._processes if p.alive and p is not avoid]
        if not alive:
            raise ReaderLost("no reader process is running")
        if weight <= LARGE_BYTES:
            alive = [p for p in alive if not p.large]
            if not alive:
                raise ReadersBusy("every reader holds a large message")
        return min(alive, key=lambda p: (p.load, len(p.waiting)))

    async def ask(self, kind: str, args: tuple[Any, ...], weight: int) -> Any:
        """The answer of the least loaded reader that may take it; a request whose reader
        crashed on it is tried once more in another (ReaderCrashed if that one does too)."""
        chosen = self._choose(weight, None)
        try:
            return await chosen.ask(kind, args, weight, self.deadline)
        except ReaderCrashed:
            try:
                again = self._choose(weight, chosen)
            except ReaderLost:
                raise ReaderCrashed("no other reader to try it in") from None
            return await again.ask(kind, args, weight, self.deadline)

    def _replace_lost(self) -> None:
        if self._closing or (self._replacing is not None and not self._replacing.done()):
            return
        self._replacing = asyncio.create_task(self._replace(), name="readers-replace")

    async def _replace(self) -> None:
        """Start a reader in the place of each lost one (until none is lost: another may end
        while one starts), pausing longer after each failed start. Meanwhile the others
        read, or the gateway itself."""
        pause = 1.0
        while not self._closing:
            lost = [i for i, p in enumerate(self._processes) if not p.alive]
            if not lost:
                return
            for i in lost:
                await self._processes[i].stop()
                try:
                    self._processes[i] = await self._spawn()
                except ReaderLost as exc:
                    log.error("readers.restart_failed", error=str(exc), retry_in=pause)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 60.0)
                    break
                log.warning("readers.reader_restarted", pid=self._processes[i].process.pid)

    async def read_soap(self, body: bytes, action: str | None, caller: Any) -> Any:
        """A SOAP request read by a reader: a :class:`gateway.reading.Read` or ``Refused``;
        raises :class:`gateway.soap.SoapFault` as :func:`gateway.soap.unwrap` does, and
        ReaderLost (read it in the gateway) or ReaderCrashed (refuse it)."""
        answer = await self._counted(self.ask("soap", (body, action, caller), len(body)))
        if isinstance(answer, Fault):
            raise soap.SoapFault(*answer.fields)
        assert isinstance(answer, Answer)
        if answer.validated:
            PAYLOAD_VALIDATIONS.labels(where="reader").inc()
        return answer.read

    async def validate_payload(self, data: bytes) -> ValidationReport:
        answer = await self._counted(self.ask("payload", (data,), len(data)))
        assert isinstance(answer, ValidationReport)
        return answer

    @staticmethod
    async def _counted(asked: Any) -> Any:
        """The answer, or why there is none, counted in ``ggk_reader_fallbacks_total``."""
        try:
            answer = await asked
        except ReadersBusy:
            READER_FALLBACKS.labels(reason="busy").inc()
            raise
        except ReaderCrashed:
            READER_FALLBACKS.labels(reason="crashed").inc()
            raise
        except ReaderLost:
            READER_FALLBACKS.labels(reason="lost").inc()
            raise
        if isinstance(answer, Failed):
            READER_FALLBACKS.labels(reason="failed").inc()
            log.warning("readers.read_failed", error=answer.kind)
            raise ReaderLost(f"the reader failed ({answer.kind})")
        return answer
