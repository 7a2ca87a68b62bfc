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
import contextlib
import signal
import subprocess
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any, TypeVar

from kit.harness import stop_started

T = TypeVar("T")

STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def catchable() -> list[signal.Signals]:
    """The stopping signals this process was not started ignoring (``nohup``: SIGHUP)."""
    return [sig for sig in STOPPING_SIGNALS if signal.getsignal(sig) is not signal.SIG_IGN]


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, with SIGTERM and SIGHUP cancelling it (its ``finally`` blocks
    stop what it started); then the process ends with 128 + the signal's number, as a
    shell reports a process killed by it, after a line on stderr saying why.

    A signal the process was started ignoring stays ignored (``nohup`` keeps a soak running
    when its terminal closes). After the first signal the signals take their default action
    again: a second one ends the process at once, should the cleanup hang. A signal that
    comes once ``main`` has finished does not cut the last cleanup short."""
    received: list[signal.Signals] = []
    handled = catchable()

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        running = True

        def stop(sig: signal.Signals) -> None:
            received.append(sig)
            for each in handled:  # the next one is the default action: the process ends
                loop.remove_signal_handler(each)
            if running:
                task.cancel()

        for sig in handled:
            loop.add_signal_handler(sig, stop, sig)
        try:
            return await main
        finally:  # one still starting, or started before its caller's ``try``
            running = False
            await stop_started()

    try:
        result = asyncio.run(guarded())
    except asyncio.CancelledError:
        if not received:
            raise
    else:
        if not received:
            return result
    print(f"stopped by {received[0].name}: what the run had started is stopped", file=sys.stderr)
    raise SystemExit(128 + received[0].value)


def run_child(command: Sequence[str], *, cwd: Path, output: IO[str]) -> int:
    """Run ``command`` (a benchmark of another build) to its end and return its exit status;
    SIGTERM or SIGHUP to this process is passed on to it, so it stops what it started (its own
    :func:`run`), and then this process ends as :func:`run` does. Killing the child outright
    instead (as :func:`subprocess.run` does when interrupted) would leave its gateways."""
    child = subprocess.Popen(command, cwd=cwd, stdout=output, stderr=output)
    received: list[signal.Signals] = []

    def forward(number: int, _frame: FrameType | None) -> None:
        sig = signal.Signals(number)
        received.append(sig)
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(sig)

    handled = catchable()
    previous = {sig: signal.signal(sig, forward) for sig in handled}
    try:
        status = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        print(f"stopped by {received[0].name}: the run it started is stopped", file=sys.stderr)
        raise SystemExit(128 + received[0].value)
    return status
