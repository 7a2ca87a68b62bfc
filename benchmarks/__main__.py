"""``python -m benchmarks run --scenario …``: the one entry point (see benchmarks/run.py);
``python -m benchmarks compare BASE [HEAD]``: two commits side by side (benchmarks/compare.py).

The single-purpose scripts stay runnable on their own: ``python -m benchmarks.validate``,
``.load``, ``.crash_drill``, ``.outage_drill``, ``.fuzz``, ``.soak``.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks import compare, run, stopping


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    commands = parser.add_subparsers(dest="command", required=True)
    run.add_arguments(commands.add_parser("run", help=run.__doc__.splitlines()[0]))
    compare.add_arguments(commands.add_parser("compare", help=compare.__doc__.splitlines()[0]))
    args = parser.parse_args()
    if args.command == "compare":
        sys.exit(compare.main(args))
    stopping.run(run.main(args))


if __name__ == "__main__":
    main()
