"""``python -m tests.healthprobe URL CAFILE``: poll URL/healthz every 50 ms on one kept-alive
connection until SIGTERM, then print the slowest and the 95th-percentile answer (seconds) and
the failures as JSON.

A process of its own, so the latency measured is the gateway's, not that of a test process
busy sending an attack (same GIL, same event loop)."""

from __future__ import annotations

import json
import signal
import sys
import time
from types import FrameType

import requests


def main(url: str, cafile: str) -> None:
    running = True

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    latencies: list[float] = []
    failures = 0
    with requests.Session() as session:
        session.trust_env = False
        session.verify = cafile
        print("ready", flush=True)
        while running:
            started = time.perf_counter()
            try:
                ok = session.get(f"{url}/healthz", timeout=5).status_code == 200
            except requests.RequestException:
                ok = False
            latencies.append(time.perf_counter() - started)
            failures += 0 if ok else 1
            time.sleep(0.05)
    ordered = sorted(latencies) or [0.0]
    result = {
        "slowest": ordered[-1],
        "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
        "failures": failures,
        "probes": len(latencies),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
