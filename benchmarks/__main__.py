"""``python -m benchmarks run --scenario …``: the one entry point (see benchmarks/run.py).

The single-purpose scripts stay runnable on their own: ``python -m benchmarks.validate``,
``.load``, ``.crash_drill``, ``.outage_drill``, ``.fuzz``.
"""

from __future__ import annotations

import argparse
import asyncio

from benchmarks import run


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    commands = parser.add_subparsers(dest="command", required=True)
    run.add_arguments(commands.add_parser("run", help=run.__doc__.splitlines()[0]))
    args = parser.parse_args()
    asyncio.run(run.main(args))


if __name__ == "__main__":
    main()
