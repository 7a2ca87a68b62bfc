"""Opt-in allocation tracing of ``ggk serve`` for memory hunts (issue 29, goal 7).

Set ``GGK_TRACEMALLOC`` to a file path before starting ``ggk serve``: tracemalloc starts at
once (``GGK_TRACEMALLOC_FRAMES`` frames per allocation, default 6), and on every SIGUSR2 and at
exit the process appends to that file the top ``GGK_TRACEMALLOC_TOP`` (default 25) growths
since the previous dump (the first dump: since start), grouped by allocating traceback, then
by line. Off unless asked: tracing costs CPU and memory on every allocation.

Only code locations (file and line) and sizes are written — never a value, so no BSN, token or
message content can reach the file.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import time
import tracemalloc
from pathlib import Path
from types import FrameType

ENV_FILE = "GGK_TRACEMALLOC"
ENV_FRAMES = "GGK_TRACEMALLOC_FRAMES"
ENV_TOP = "GGK_TRACEMALLOC_TOP"

_IGNORED = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
)


class Tracer:
    """Keeps the previous snapshot; each :meth:`dump` writes what grew since then."""

    def __init__(self, path: Path, top: int) -> None:
        self.path = path
        self.top = top
        self.lock = threading.Lock()
        self.previous = tracemalloc.take_snapshot().filter_traces(_IGNORED)
        self.dumps = 0

    def dump(self, reason: str) -> None:
        with self.lock:
            snapshot = tracemalloc.take_snapshot().filter_traces(_IGNORED)
            current, peak = tracemalloc.get_traced_memory()
            self.dumps += 1
            lines = [
                f"## dump {self.dumps} ({reason}) at {time.strftime('%Y-%m-%dT%H:%M:%S')}, "
                f"pid {os.getpid()}: traced {current / 2**20:.1f} MiB now, "
                f"peak {peak / 2**20:.1f} MiB",
                f"### top {self.top} growths since the previous dump, by traceback",
            ]
            for stat in snapshot.compare_to(self.previous, "traceback")[: self.top]:
                lines.append(
                    f"{stat.size_diff / 1024:+.1f} KiB, {stat.count_diff:+d} blocks "
                    f"(now {stat.size / 1024:.1f} KiB in {stat.count} blocks)"
                )
                lines += [f"    {frame.filename}:{frame.lineno}" for frame in stat.traceback]
            lines.append(f"### top {self.top} growths since the previous dump, by line")
            for stat in snapshot.compare_to(self.previous, "lineno")[: self.top]:
                frame = stat.traceback[0]
                lines.append(
                    f"{stat.size_diff / 1024:+.1f} KiB, {stat.count_diff:+d} blocks "
                    f"(now {stat.size / 1024:.1f} KiB): {frame.filename}:{frame.lineno}"
                )
            with self.path.open("a") as out:
                out.write("\n".join(lines) + "\n\n")
            self.previous = snapshot

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.dump("SIGUSR2")


def install_from_env() -> Tracer | None:
    """Start tracing when ``GGK_TRACEMALLOC`` names a file; called by ``ggk serve`` first
    thing, so every allocation of the process is traced (the first dump holds startup and
    warm-up; the later ones what grew in between — the leak hunt's question)."""
    target = os.environ.get(ENV_FILE)
    if not target:
        return None
    try:
        frames = int(os.environ.get(ENV_FRAMES) or 6)
        top = int(os.environ.get(ENV_TOP) or 25)
    except ValueError:
        raise ValueError(f"{ENV_FRAMES} and {ENV_TOP} are whole numbers") from None
    tracemalloc.start(max(1, frames))
    tracer = Tracer(Path(target), max(1, top))
    signal.signal(signal.SIGUSR2, tracer.on_signal)
    atexit.register(tracer.dump, "exit")
    return tracer
