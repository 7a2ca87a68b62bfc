"""Admission of request bodies: memory for bodies is a budget, not a free-for-all.

Reading a body costs its size in memory, and parsing it more. Every caller's body is
reserved against one byte budget (``[limits] inflight_body_mb``) before a byte is read; a
request that does not fit waits its turn (bounded by ``body_timeout``) with its bytes left in
the kernel's socket buffers, so six parallel 23 MiB bodies cost what the budget allows and
not six times their size. The budget is shared fairly: one partner holds at most its share
(``partner_inflight_body_mb``, by default one message's worth), and a body must keep arriving
at ``min_body_rate`` after a grace period, so nobody can sit on memory others need. The
portal's small forms (sign-in, sign-out) have a budget of their own. Unauthenticated
callers never get this far: the server refuses their bodies unread.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from aiohttp import StreamReader, http_exceptions, web
from multidict import MultiDictProxy

from gateway.problems import CLIENT_CLOSED

log = structlog.get_logger("ggk.server")
T = TypeVar("T")


class BudgetExhausted(Exception):
    """The body could not be admitted in time (the gateway is busy with large bodies)."""


class BodyAbandoned(Exception):
    """The client closed its connection before its body was in: nobody is left to answer."""


ABANDONED = CLIENT_CLOSED
"""The access line's status of a request whose client hung up mid-body (nginx's "client
closed request"): a 4xx, so it is never counted as a server error; nobody receives it."""


@dataclass(slots=True, eq=False)
class _Waiter:
    order: tuple[int, int]
    """(0 for a growing body, 1 for a new one; arrival): the order waiters are served in."""
    holder: str
    size: int
    granted: asyncio.Future[None]
    ready: bool = False
    """In the ready heap: it fits its holder's share and waits only for the budget."""

    def __lt__(self, other: _Waiter) -> bool:
        return self.order < other.order


class BodyBudget:
    """A byte semaphore shared fairly: reserve ``n`` bytes for one holder (a partner), grow
    the reservation as a body arrives, release it all when its request is done.

    Two bounds: all holders together at most ``capacity`` bytes, one holder at most
    ``share``. A request beyond its holder's share waits for that holder's own bodies only,
    never for anyone else's, and does not stand in anyone's way while it waits. Requests
    that fit their share but not the budget queue first come, first served: a large body is
    not overtaken forever by small ones. A body already being read that needs more room
    (:meth:`Reservation.grow`) goes before new bodies: it is on its way to giving its bytes
    back, and new ones waiting for the bytes it holds must not starve it. With ``share`` at
    one message's worth, a partner holding its bodies open (trickling, or simply many at
    once) keeps at most one message's memory from the others.

    The uncontended path is two dictionary updates: no lock, no wait. Waiting costs
    O(log n) per grant: each holder's waiters in a list of their own, and the ones that fit
    their share in one heap in serving order; a release looks only at its own holder's
    waiters and the heap's head, never at everyone parked."""

    def __init__(self, capacity: int, share: int | None = None) -> None:
        self.capacity = capacity
        self.share = capacity if share is None else max(1, min(share, capacity))
        self.in_use = 0
        self.held_now = 0
        """Reservations held now: the requests whose bodies are being read or handled."""
        self._held: dict[str, int] = {}
        self._waiting: dict[str, deque[_Waiter]] = {}
        self._ready: list[_Waiter] = []
        self._arrivals = itertools.count()

    def held(self, holder: str) -> int:
        """Bytes ``holder`` holds now."""
        return self._held.get(holder, 0)

    def waiting(self) -> int:
        """Requests waiting for room now."""
        return sum(len(each) for each in self._waiting.values())

    def _fits(self, holder: str, size: int) -> bool:
        return self._held.get(holder, 0) + size <= self.share

    def _take(self, holder: str, size: int) -> None:
        self.in_use += size
        self._held[holder] = self._held.get(holder, 0) + size

    def _give(self, holder: str, size: int) -> None:
        self.in_use -= size
        left = self._held[holder] - size
        if left:
            self._held[holder] = left
        else:
            del self._held[holder]  # bounded by the holders with a body in flight
        if holder in self._waiting:
            self._promote(holder)
        if self._ready:
            self._grant()

    def _promote(self, holder: str) -> None:
        """Move ``holder``'s waiters that now fit its share into the ready heap (its own
        waiters only: a partner has a handful parked, bounded by its connections)."""
        room = self.share - self._held.get(holder, 0)
        for waiter in self._waiting[holder]:
            if not waiter.ready and waiter.size <= room:
                waiter.ready = True
                heapq.heappush(self._ready, waiter)

    def _grant(self) -> None:
        """Admit ready waiters in serving order; the first that does not fit the budget
        stops the others (first come, first served)."""
        while self._ready:
            waiter = self._ready[0]
            if waiter.granted.done():
                heapq.heappop(self._ready)  # gave up; already out of its holder's list
                continue
            if not self._fits(waiter.holder, waiter.size):
                heapq.heappop(self._ready)  # its holder took more since: back to waiting
                waiter.ready = False
                continue
            if self.in_use + waiter.size > self.capacity:
                return
            heapq.heappop(self._ready)
            self._leave(waiter)
            self._take(waiter.holder, waiter.size)
            waiter.granted.set_result(None)

    def _leave(self, waiter: _Waiter) -> None:
        mine = self._waiting[waiter.holder]
        mine.remove(waiter)  # the holder's own few; mostly the first
        if not mine:
            del self._waiting[waiter.holder]

    def _abandon(self, waiter: _Waiter) -> None:
        waiter.granted.cancel()
        self._leave(waiter)
        if waiter.ready:  # it may have stood first in line: let the ones behind it go
            self._grant()

    async def _acquire(self, holder: str, size: int, timeout: float | None, growing: bool) -> None:
        """Take ``size`` bytes for ``holder``, waiting at most ``timeout`` seconds for them
        (BudgetExhausted)."""
        if (
            not self._ready
            and holder not in self._waiting
            and self._fits(holder, size)
            and self.in_use + size <= self.capacity
        ):
            self._take(holder, size)
            return
        order = (0 if growing else 1, next(self._arrivals))
        waiter = _Waiter(order, holder, size, asyncio.get_running_loop().create_future())
        self._waiting.setdefault(holder, deque()).append(waiter)
        if self._fits(holder, size):
            waiter.ready = True
            heapq.heappush(self._ready, waiter)
            self._grant()
        try:
            await asyncio.wait((waiter.granted,), timeout=timeout)
        except BaseException:  # this task was cancelled, perhaps just as it was granted
            if waiter.granted.done():
                self._give(holder, size)
            else:
                self._abandon(waiter)
            raise
        if not waiter.granted.done():
            self._abandon(waiter)
            raise BudgetExhausted

    @contextlib.asynccontextmanager
    async def reserve(self, holder: str, size: int, timeout: float) -> AsyncIterator[Reservation]:
        """Hold ``size`` bytes (at most one share) for ``holder`` for the duration of the
        block, and what the block grows it by; BudgetExhausted when they are not granted
        within ``timeout``."""
        size = max(0, min(size, self.share))
        await self._acquire(holder, size, timeout, growing=False)
        reservation = Reservation(self, holder, size)
        self.held_now += 1
        try:
            yield reservation
        finally:
            self.held_now -= 1
            self._give(holder, reservation.size)


class Reservation:
    """What one request holds of a :class:`BodyBudget`, grown as its body arrives."""

    __slots__ = ("_budget", "holder", "size", "waiting")

    def __init__(self, budget: BodyBudget, holder: str, size: int) -> None:
        self._budget = budget
        self.holder = holder
        self.size = size
        self.waiting = False
        """Waiting for room to grow now (a timeout then means the budget was full)."""

    async def cover(self, size: int, step: int, timeout: float | None = None) -> None:
        """Hold at least ``size`` bytes (at most one share), growing in ``step`` bytes at
        least so a body arriving in small chunks costs few grants; BudgetExhausted when
        the room does not come within ``timeout`` (None: until cancelled)."""
        share = self._budget.share
        if size <= self.size or self.size >= share:
            return
        more = min(max(size - self.size, step), share - self.size)
        self.waiting = True
        try:
            await self._budget._acquire(self.holder, more, timeout, growing=True)
        finally:
            self.waiting = False
        self.size += more


@dataclass(frozen=True, slots=True)
class Pace:
    """How fast a body must arrive: within ``timeout`` seconds in all, and after ``grace``
    seconds at ``min_rate`` bytes a second on average (0: no minimum). A body that trickles
    in holds its reservation; the minimum rate frees it long before ``timeout``."""

    timeout: float
    grace: float = 5.0
    min_rate: float = 0.0


async def paced(read: Awaitable[T], stream: StreamReader, pace: Pace) -> T:
    """``read`` (of ``stream``), or TimeoutError when the body falls behind ``pace``.

    The check costs nothing per chunk: one timer, set to the moment the bytes received so
    far stop being enough; when it fires and more has come meanwhile, it is set again. A
    body that is in before the grace period ends (a message of a few KB) never wakes it."""
    task = asyncio.ensure_future(read)
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + pace.timeout
    try:
        while True:
            due = end
            if pace.min_rate > 0:
                due = min(end, start + pace.grace + stream.total_bytes / pace.min_rate)
            done, _ = await asyncio.wait((task,), timeout=max(0.0, due - loop.time()))
            if done:
                return task.result()
            now = loop.time()
            if now >= end or (
                pace.min_rate > 0 and now >= start + pace.grace + stream.total_bytes / pace.min_rate
            ):
                raise TimeoutError
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


DISCONNECTED = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)
"""What reading a body raises when its client hung up (aiohttp: ConnectionResetError)."""


class BodyTooLarge(Exception):
    """The decoded body is larger than the limit."""


class BadEncoding(Exception):
    """The body is not what its Content-Encoding says."""


_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class Decoder:
    """Undo a ``gzip``/``deflate`` Content-Encoding piece by piece, producing at most
    ``limit`` bytes in all (BodyTooLarge beyond), so the decoded size can be reserved as it
    grows instead of a whole message up front."""

    __slots__ = ("_inflater", "limit", "size")

    def __init__(self, encoding: str, limit: int) -> None:
        try:
            self._inflater = zlib.decompressobj(_WBITS[encoding])
        except KeyError:
            raise BadEncoding(encoding) from None
        self.limit = limit
        self.size = 0

    def feed(self, data: bytes, most: int) -> tuple[bytes, bool]:
        """At most ``most`` decoded bytes of ``data`` (and of what earlier calls left
        over), and whether there may be more to take out (call again with ``b""``)."""
        try:
            out = self._inflater.decompress(self._inflater.unconsumed_tail + data, most)
        except zlib.error:
            raise BadEncoding from None
        self.size += len(out)
        if self.size > self.limit:
            raise BodyTooLarge
        return out, bool(self._inflater.unconsumed_tail) or len(out) == most

    def finish(self) -> None:
        """BadEncoding when the encoded stream was cut short."""
        if not self._inflater.eof:
            raise BadEncoding


def decode_body(data: bytes, encoding: str, limit: int) -> bytes:
    """Undo a ``gzip``/``deflate`` Content-Encoding, producing at most ``limit`` bytes.

    The server does not decompress on its own: a 48 KB gzip bomb would otherwise be expanded
    in the connection's buffers before any limit applies. Here the output is cut at
    ``limit + 1`` bytes, so a bomb costs at most the limit.
    """
    if encoding in ("", "identity"):
        return data
    decoder = Decoder(encoding, limit)
    out, _ = decoder.feed(data, limit + 1)  # more than the limit raised BodyTooLarge
    decoder.finish()
    return out


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a form was not read: the HTTP status and the gateway's own words for it."""

    status: int
    reason: str


Form = MultiDictProxy[Any]


SMALL_FORM_BYTES = 16 * 1024
"""A form of at most this many bytes (sign-in, sign-out, acknowledge, replay, search) is read
within the forms' own budget (:class:`Admission`), never the one of API bodies."""


@dataclass(frozen=True, slots=True)
class Admission:
    """The budgets bodies are read within, and how fast they must arrive.

    ``bodies``: messages and uploads, shared fairly between partners. ``forms``: the portal's
    small forms, sized from the connection cap (``max_connections`` × SMALL_FORM_BYTES: each
    connection carries one request at a time), so it can never be full: a sign-in or a
    sign-out never waits for API bodies, nor for anyone's forms."""

    bodies: BodyBudget
    forms: BodyBudget
    grace: float = 5.0
    min_rate: float = 0.0

    def pace(self, timeout: float) -> Pace:
        return Pace(timeout, self.grace, self.min_rate)


def abandoned(request: web.Request) -> None:
    """One line for a request whose client hung up mid-body (no traceback, no 500)."""
    log.info("request.body_abandoned", peer=request.remote, path=request.path[:200])


@contextlib.asynccontextmanager
async def admitted_form(
    request: web.Request, admission: Admission, limit: int, timeout: float, holder: str
) -> AsyncIterator[Form | Refusal]:
    """A posted form (urlencoded or multipart), read within its budget: at most ``limit``
    bytes as told by Content-Length before a byte is read (411 without one, 413 above it:
    browsers always send it), reserved for ``holder`` (the partner, or the peer of a
    sign-in) while the caller holds the form (503 when it stays full: only uploads, in the
    bodies' budget; small forms have their own), and received within ``timeout`` and at the
    minimum rate (408: a browser that trickles its body must not hold a handler, an upload
    slot or budget). A client that hangs up mid-body gets a 499 nobody reads (one log line).
    A form is a few KB; only the upload form may be as large as a message. Any refusal
    leaves the body unread: the caller answers and closes the connection."""
    length = request.content_length
    if request.headers.get("Transfer-Encoding") or length is None:
        yield Refusal(411, "a form needs a Content-Length")
        return
    if length > limit:
        yield Refusal(413, f"the form is larger than {limit:,} bytes")
        return
    if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        yield Refusal(415, "a form is not sent compressed")
        return
    budget = admission.forms if limit <= SMALL_FORM_BYTES else admission.bodies
    try:
        async with budget.reserve(holder, length, timeout):
            try:
                form = await paced(request.post(), request.content, admission.pace(timeout))
            except TimeoutError:
                yield Refusal(408, "the form was not received in time")
                return
            except DISCONNECTED:
                abandoned(request)
                yield Refusal(ABANDONED, "the client closed the connection")
                return
            except web.HTTPRequestEntityTooLarge:
                yield Refusal(413, f"the form is larger than {limit:,} bytes")
                return
            except (ValueError, web.RequestPayloadError, http_exceptions.HttpProcessingError):
                yield Refusal(400, "the form could not be read")
                return
            yield form
    except BudgetExhausted:
        yield Refusal(503, "the gateway is busy with large messages; try again in a moment")
