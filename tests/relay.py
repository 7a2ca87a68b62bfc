"""A TCP relay on loopback that stands for the network between two MSHs.

Real connections, real bytes: the relay only decides whether a connection is possible (a link
that is down refuses it) and whether an answer makes it back (a lost answer: the request reaches
the other side, the connection closes before its response). Used to prove resends and
duplicate elimination against the real ebMS peer.
"""

from __future__ import annotations

import asyncio
import contextlib

from kit.harness import free_port


class Relay:
    """Forwards connections on ``127.0.0.1:port`` to ``127.0.0.1:target``; down until
    :meth:`up`."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.lose_answers = 0
        """How many of the next connections lose their first answer."""
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def up(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self._drop_connections()

    async def retarget(self, target: int) -> None:
        """Forward to ``target`` from now on; open connections (kept alive by a client) are
        closed, so the next request connects anew."""
        self.target = target
        await self._drop_connections()

    async def _drop_connections(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        lose = self.lose_answers > 0
        if lose:
            self.lose_answers -= 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            upstream_in, upstream_out = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            client_out.close()
            self._tasks.discard(task)
            return
        forward = asyncio.create_task(_pump(client_in, upstream_out))
        try:
            if lose:  # the request goes through; the first bytes of the answer end it all
                await upstream_in.read(1)
            else:
                await _pump(upstream_in, client_out)
        except asyncio.CancelledError:  # the relay goes down: the connections with it
            pass
        finally:
            forward.cancel()
            for writer in (client_out, upstream_out):
                writer.close()
            with contextlib.suppress(asyncio.CancelledError):
                await forward
            self._tasks.discard(task)


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
