"""A longer fuzz run of the properties in tests/test_fuzz.py.

Run: ``python -m benchmarks.fuzz --minutes 10``. Each round runs every property with
``--examples`` fresh random examples (pytest on tests/test_fuzz.py under the long hypothesis
profile, in a process of its own: benchmarks do not import tests); rounds repeat until the time
is up. Any counterexample is printed (hypothesis shows the minimal failing input) and the run
exits 1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--examples", type=int, default=2000, help="per property and round")
    args = parser.parse_args()
    # tests/conftest.py reads these when pytest imports it, so the properties' settings
    # inherit the long profile's example count.
    env = {
        **os.environ,
        "GGK_HYPOTHESIS_PROFILE": "long",
        "GGK_FUZZ_EXAMPLES": str(args.examples),
    }
    command = [sys.executable, "-m", "pytest", "tests/test_fuzz.py", "-q", "-x"]
    command += ["-p", "no:cacheprovider"]
    deadline = time.monotonic() + args.minutes * 60
    rounds = 0
    started = time.monotonic()
    while time.monotonic() < deadline:
        rounds += 1
        done = subprocess.run(command, cwd=ROOT, env=env, check=False)
        if done.returncode != 0:
            print(f"FAILED in round {rounds}", file=sys.stderr)
            raise SystemExit(1)
        print(
            f"round {rounds}: the properties × {args.examples} examples ok "
            f"({time.monotonic() - started:.0f} s)",
            file=sys.stderr,
        )
    print(
        f"fuzz: {rounds} rounds of tests/test_fuzz.py, {args.examples} examples per property "
        f"and round, in {time.monotonic() - started:.0f} s, no failure"
    )


if __name__ == "__main__":
    main()
