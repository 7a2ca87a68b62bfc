"""Smoke run of ``python -m benchmarks.pipeline`` at a tiny size: it runs, every message is
accepted, and its report parses (nothing timed is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_accept_path_harness_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "pipeline.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.pipeline",
            "--messages",
            "20",
            "--rounds",
            "1",
            "--repeat",
            "2",
            "--kinds",
            "WMO301",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [r["messages"] for r in report["rounds"]] == [20]
    assert report["best_cpu_ms_per_message"] > 0
    assert set(report["stages_us"]["WMO301"]) >= {"envelope parse", "payload validate"}
