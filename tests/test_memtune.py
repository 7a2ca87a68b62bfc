"""``ggk serve`` limits glibc's malloc arenas (gateway/memtune.py, issue 29 goal 7).

The effect is measured by ``python -m benchmarks.soak`` (docs/benchmarks.md: the resident set
grew ~40 MiB over 14 minutes at 25 msg/s with glibc's default arenas, and stayed within a few
MiB with two); here: the setting is applied in a fresh interpreter, and an operator's own
``MALLOC_ARENA_MAX`` is left alone.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = "from gateway import memtune; print(memtune.limit_arenas())"


def probe(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.strip()


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt: Linux only")
def test_arenas_limited_unless_the_operator_chose() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    assert probe(env) == "True"
    assert probe({**env, "MALLOC_ARENA_MAX": "4"}) == "False"


def test_serve_limits_arenas_before_it_starts() -> None:
    """The call sits in ``ggk serve`` ahead of the event loop and its threads."""
    import inspect

    from gateway.cli import setup

    assert setup.serve.callback is not None
    source = inspect.getsource(setup.serve.callback)
    assert source.index("memtune.limit_arenas()") < source.index("asyncio.run(")


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc_trim: Linux only")
def test_trim_returns_freed_pages() -> None:
    """After a large allocation is freed, ``trim`` gives its pages back (glibc says so)."""
    code = (
        "from gateway import memtune\n"
        "blocks = [bytearray(100_000) for _ in range(2_000)]\n"
        "keep = blocks[::50]\n"
        "del blocks\n"
        "print(memtune.trim(), memtune.trim())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split()[0] == "True"
