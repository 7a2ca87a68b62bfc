"""Running a benchmark so that ``kill`` stops what it started.

Why: the benchmarks and drills start ``ggk serve`` processes, receivers and Kafka brokers and
stop them in ``finally`` blocks. Ctrl-C (SIGINT) cancels the main task and those blocks run;
SIGTERM (``kill``, ``timeout``, a CI job cancelled) ended Python at once without them, and
left the gateway it had started running, holding its port and its store (seen once after an
hour-long soak). Here SIGTERM and SIGHUP cancel the main task as Ctrl-C does, and whatever
gateway is still running when it ends is stopped (one cut short while starting had no
``finally`` yet to stop it).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from kit.harness import stop_started

T = TypeVar("T")

STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, with SIGTERM and SIGHUP cancelling it (its ``finally`` blocks
    stop what it started); then the process ends with 128 + the signal's number, as a
    shell reports a process killed by it, after a line on stderr saying why."""
    received: list[signal.Signals] = []

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()

        def stop(sig: signal.Signals) -> None:
            if not received:  # a second signal does not cut the cleanup short
                received.append(sig)
                task.cancel()

        for sig in STOPPING_SIGNALS:
            loop.add_signal_handler(sig, stop, sig)
        try:
            return await main
        finally:  # one still starting, or started before its caller's ``try``
            await stop_started()

    try:
        return asyncio.run(guarded())
    except asyncio.CancelledError:
        if not received:
            raise
        print(
            f"stopped by {received[0].name}: what the run had started is stopped",
            file=sys.stderr,
        )
        raise SystemExit(128 + received[0].value) from None
