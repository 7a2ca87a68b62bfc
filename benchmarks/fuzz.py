"""A longer fuzz run of the properties in tests/test_fuzz.py.

Run: ``python -m benchmarks.fuzz --minutes 10``. Each round runs every property with
``--examples`` fresh random examples; rounds repeat until the time is up. Any counterexample is
printed (hypothesis shows the minimal failing input) and the run exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

from hypothesis import settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--examples", type=int, default=2000, help="per property and round")
    args = parser.parse_args()
    # tests/conftest.py reads these when it is imported (by the test module), so the
    # properties' settings inherit the long profile's example count.
    os.environ["GGK_HYPOTHESIS_PROFILE"] = "long"
    os.environ["GGK_FUZZ_EXAMPLES"] = str(args.examples)
    from tests import test_fuzz

    active = settings.default
    assert active is not None and active.max_examples == args.examples, "profile not loaded"

    properties = [getattr(test_fuzz, name) for name in dir(test_fuzz) if name.startswith("test_")]
    deadline = time.monotonic() + args.minutes * 60
    rounds = 0
    started = time.monotonic()
    while time.monotonic() < deadline:
        rounds += 1
        for prop in properties:
            try:
                prop()
            except Exception:
                traceback.print_exc()
                print(f"FAILED: {prop.__name__} in round {rounds}", file=sys.stderr)
                raise SystemExit(1) from None
        print(
            f"round {rounds}: {len(properties)} properties × {args.examples} examples ok "
            f"({time.monotonic() - started:.0f} s)",
            file=sys.stderr,
        )
    total = rounds * len(properties) * args.examples
    print(
        f"fuzz: {rounds} rounds, {len(properties)} properties, about {total:,} examples in "
        f"{time.monotonic() - started:.0f} s, no failure"
    )


if __name__ == "__main__":
    main()
