"""Every benchmark and drill under benchmarks/ runs at a tiny size and its report parses.

Benchmarks rot silently: nobody runs them between performance rounds, and a stricter API or a
renamed helper breaks them unnoticed (issue 29: the outage drill had stopped at the dead-letter
listing). Each one is run here as an operator runs it — ``python -m benchmarks…`` in a process
of its own, real gateway processes, real SQLite, the real Kafka broker where Kafka is concerned —
and only its report's shape is checked. Nothing is timed: the machine may be busy.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.run import process_tree
from tests.conftest import ROOT, missing_kafka_tools

KIT = ROOT.parent / "shared" / "tools" / "ebms-peer"


def bench(*args: str, timeout: float = 240, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m <args>`` in the repository, as an operator runs it; its output kept."""
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if ok:
        assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def tables(text: str) -> list[list[dict[str, str]]]:
    """Every Markdown table in ``text``, as rows keyed by the header's cells."""
    found: list[list[dict[str, str]]] = []
    lines = text.splitlines()
    for i in range(len(lines) - 1):
        if lines[i].startswith("|") and re.fullmatch(r"\|(\s*-+:?\|)+", lines[i + 1].strip()):
            header = [c.strip() for c in lines[i].strip().strip("|").split("|")]
            rows = []
            for j in range(i + 2, len(lines)):
                line = lines[j]
                if not line.startswith("|"):
                    if line.startswith(("20", "[")):  # a log line amid the rows
                        continue
                    break
                if j + 1 < len(lines) and re.fullmatch(r"\|(\s*-+:?\|)+", lines[j + 1].strip()):
                    break  # the next table's header
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                assert len(cells) == len(header), line
                rows.append(dict(zip(header, cells, strict=True)))
            found.append(rows)
    assert found, f"no table in:\n{text}"
    return found


def number(cell: str) -> float:
    """The first number in a table cell ("1,234", "+27.2", "0.79", "11.32 / 22.62")."""
    match = re.search(r"[-+]?\d[\d,]*(\.\d+)?", cell)
    assert match, f"no number in {cell!r}"
    return float(match.group(0).replace(",", ""))


def test_validate() -> None:
    rows = tables(bench("benchmarks.validate", "--rounds", "1", "--seconds", "0.05").stdout)[0]
    assert [r["document"] for r in rows] == ["WMO301", "WMO323 (1 MB)"]
    assert all(number(r["raw lxml msg/s"]) > 0 for r in rows)


def test_ceilings_and_mix(tmp_path: Path) -> None:
    from benchmarks import mix
    from benchmarks.ceilings import sqlite_ceiling, validate_ceiling

    messages = mix.draw(12, seed=3, start=0)
    assert len({m.body for m in messages}) == 12
    assert all(weight > 0 for weight in mix.WEIGHTS.values())
    validate = validate_ceiling(messages, rounds=1)
    assert validate.raw_per_s > 0 and validate.ours_full_per_s > 0
    disk = sqlite_ceiling(tmp_path, seconds=0.05, group=4)
    assert disk.commits_per_s > 0 and disk.rows_per_s_grouped > 0


@pytest.mark.slow
def test_run(tmp_path: Path) -> None:
    bench(*RUN_TINY, "--scenario", "sqlite", "--out", str(tmp_path))
    results = json.loads((tmp_path / "results.json").read_text())
    phases = results["scenarios"][0]["phases"]
    assert [p["phase"] for p in phases] == ["saturation", "20 msg/s offered"]
    assert results["validate"]["raw_per_s"] > 0 and results["scenarios"][0]["cpu_s_per_1000"] > 0


RUN_TINY = (
    *("benchmarks", "run", "--messages", "30", "--rates", "20", "--seconds", "1"),
    *("--ceiling-messages", "20", "--concurrency", "4"),
)


@pytest.mark.kafka
def test_run_on_kafka(tmp_path: Path, kafka_bootstrap: str) -> None:
    bench(*RUN_TINY, "--scenario", "kafka", "--kafka", kafka_bootstrap, "--out", str(tmp_path))
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["scenarios"][0]["scenario"]["backend"] == "kafka"
    assert len(results["scenarios"][0]["phases"]) == 2


def seeded_cache(tmp_path: Path) -> tuple[Path, str]:
    """A compare cache whose entry for HEAD is this checkout and this interpreter's venv: the
    smoke run measures the code under test instead of building a virtualenv (minutes)."""
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    home = tmp_path / "cache" / head
    home.mkdir(parents=True)
    (home / "src").symlink_to(ROOT)
    (home / "venv").symlink_to(Path(sys.executable).parent.parent)
    (home / "ok").write_text(head)
    return tmp_path / "cache", head


@pytest.mark.slow
def test_compare(tmp_path: Path) -> None:
    cache, head = seeded_cache(tmp_path)
    out = tmp_path / "compare.json"
    done = bench(
        *("benchmarks", "compare", "HEAD", "HEAD", "--pairs", "2", "--messages", "30"),
        *("--rates", "20", "--seconds", "1", "--ceiling-messages", "20", "--concurrency", "4"),
        *("--cache", str(cache), "--json", str(out), "--half"),
    )
    rows = {r["figure (median of the pairs)"]: r for r in tables(done.stdout)[0]}
    assert number(rows["gateway CPU-s per 1,000 messages"][f"HEAD {head[:9]}"]) > 0
    assert "Bv03 p99 ms at 20 msg/s offered" in rows
    at_rate = rows["gateway CPU-s per 1,000 messages at 20 msg/s offered"]
    assert number(at_rate[f"BASE {head[:9]}"]) > 0 and number(at_rate[f"HEAD {head[:9]}"]) > 0
    # BASE first in odd pairs, HEAD first in even ones
    started = re.findall(r"pair (\d)/2: (BASE|HEAD) \w+ running", done.stderr)
    assert started == [("1", "BASE"), ("1", "HEAD"), ("2", "HEAD"), ("2", "BASE")], done.stderr
    # --half: one saturation run of each first, then half the lower delivered rate offered
    assert len(re.findall(r"calibration \(--half\): (?:BASE|HEAD) \w+ running", done.stderr)) == 2
    result = json.loads(out.read_text())
    half = result["half_rate"]
    assert half > 0 and half in result["rates"], result["rates"]
    assert f"Bv03 p99 ms at {half:g} msg/s offered" in rows
    assert len(result["runs"]["HEAD"]) == 2  # the calibration is not among the pairs
    assert result["base"] == result["head"] == head
    figures = result["figures"]
    assert figures["cpu_vs_lxml"]["head_median"] > 0
    assert figures["sustainable_vs_lxml"]["head_over_base"] is not None
    assert figures["p99_over_p50_at_half"]["base"]


def test_compare_usage_errors(tmp_path: Path) -> None:
    """A bad commit, a commit without the runner, nonsense sizes: exit 2 and a clear line."""
    cache = ("--cache", str(tmp_path))
    bad = bench("benchmarks", "compare", "no-such-commit", "HEAD", *cache, ok=False)
    assert bad.returncode == 2 and "'no-such-commit' is not a commit" in bad.stderr
    first = subprocess.run(
        ["git", "-C", str(ROOT), "rev-list", "--max-parents=0", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    old = bench("benchmarks", "compare", first, "HEAD", *cache, ok=False)
    assert old.returncode == 2 and "has no benchmarks/run.py" in old.stderr
    pairs = bench("benchmarks", "compare", "HEAD", "HEAD", "--pairs", "0", *cache, ok=False)
    assert pairs.returncode == 2 and "--pairs must be at least 1" in pairs.stderr
    assert "Traceback" not in bad.stderr + old.stderr + pairs.stderr


def test_compare_refuses_a_dirty_tree(tmp_path: Path) -> None:
    """Without HEAD named, uncommitted changes would silently not be measured."""
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "benchmarks").mkdir()
    (repo / "benchmarks" / "run.py").write_text("")
    for command in (
        ["add", "."],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
    ):
        subprocess.run(["git", "-C", str(repo), *command], check=True)
    (repo / "benchmarks" / "run.py").write_text("# changed\n")
    done = bench(
        "benchmarks", "compare", "HEAD", "--repo", str(repo), "--cache", str(tmp_path), ok=False
    )
    assert done.returncode == 2 and "uncommitted changes" in done.stderr


@pytest.mark.slow
def test_load() -> None:
    done = bench(
        *("benchmarks.load", "--messages", "30", "--rate", "20", "--seconds", "1"),
        *("--audit", "on", "--concurrency", "4"),
    )
    rows = tables(done.stdout)[0]
    assert [r["scenario: phase"] for r in rows] == [
        "sqlite, audit on: saturation",
        "sqlite, audit on: 20 msg/s offered",
    ]
    assert all(number(r["delivered msg/s"]) > 0 for r in rows)


@pytest.mark.slow
def test_crash_drill() -> None:
    done = bench("benchmarks.crash_drill", "--kills", "1", "--senders", "2", "--seed", "1")
    row = tables(done.stdout)[0][0]
    assert number(row["lost"]) == 0
    assert number(row["duplicates after dedup by key"]) == 0


@pytest.mark.slow
def test_outage_drill() -> None:
    """It ran into the dead-letter listing's limit (≤ 10000) before issue 29."""
    done = bench("benchmarks.outage_drill", "--phase-seconds", "0.5", "--rate", "10")
    row = tables(done.stdout)[0][0]
    assert number(row["missing"]) == 0
    assert number(row["dead letters"]) == number(row["permanent (HTTP 400)"]) > 0


@pytest.mark.slow
def test_fanout() -> None:
    done = bench("benchmarks.fanout", "--receivers", "5", "--rate", "20", "--seconds", "0.5")
    accepted = re.search(r"accepted (\d+)/(\d+)", done.stdout)
    delivered = re.search(r"(\d+)/(\d+) in the end", done.stdout)
    assert accepted and delivered, done.stdout
    assert accepted.group(1) == accepted.group(2) == delivered.group(1) == delivered.group(2)
    assert re.search(r"gateway CPU [\d.]+ s per 1,000 messages", done.stdout)


def test_figures() -> None:
    done = bench("benchmarks.figures", "--facts", "2000", "--gemeenten", "5", "--repeat", "1")
    assert re.search(r"^wmo301\.xml\s+2\s+[\d.]+\s+[\d.]+\s+[\d.]+%$", done.stdout, re.M)
    assert "2,000 facts stored" in done.stdout
    assert re.search(r"count \+ publish, all 5 gemeenten: median [\d.]+ ms", done.stdout)


@pytest.mark.slow
def test_fuzz() -> None:
    done = bench("benchmarks.fuzz", "--minutes", "0.01", "--examples", "5")
    assert "passed" in done.stdout + done.stderr


def test_history() -> None:
    done = bench("benchmarks.history", "--messages", "2000", "--partners", "5", "--repeat", "1")
    rows = tables(done.stdout)[0]
    assert rows and all(number(r["median ms"]) >= 0 for r in rows)


def test_store() -> None:
    done = bench(
        "benchmarks.store", "--prefill", "200", "--messages", "30", "--group", "4", "--rounds", "1"
    )
    rows = tables(done.stdout)[0]
    assert [r["variant (200 stored, groups of 4)"][:6] for r in rows] == ["time-o", "random"]
    assert all(number(r["written KiB per message"]) > 0 for r in rows)


def test_kafka_view() -> None:
    """The view's apply, measured without a broker (records as the router writes them)."""
    done = bench("benchmarks.kafka_view", "--messages", "100", "--rounds", "1")
    rows = tables(done.stdout)[0]
    assert [r["variant"] for r in rows] == ["view", "view with facts", "audit"]


@pytest.mark.kafka
def test_kafka_idle(kafka_bootstrap: str) -> None:
    """One idle process on the Kafka backend, its CPU read over a short window."""
    args = ("--settle", "1", "--seconds", "1", "--rounds", "1", "--kafka", kafka_bootstrap)
    done = bench("benchmarks.kafka_idle", *args)
    rows = tables(done.stdout)[0]
    assert [number(r["rounds"]) for r in rows] == [1]
    assert number(rows[0]["idle CPU, % of a core (median)"]) >= 0


@pytest.mark.slow
def test_submit() -> None:
    done = bench("benchmarks.submit", "--messages", "3", "--large", "2")
    rows = tables(done.stdout)[0]
    assert [r["message"] for r in rows] == ["WMO301", "WMO323-1MB"]
    assert [number(r["validations per submission"]) for r in rows] == [1, 1]


@pytest.mark.slow
def test_soak(tmp_path: Path) -> None:
    """The soak with its tracemalloc dumps: RSS sampled, growth reported, and the dump file
    holds sizes and code locations only (no message content can reach it)."""
    report, traced = tmp_path / "soak.json", tmp_path / "tracemalloc.txt"
    done = bench(
        *("benchmarks.soak", "--rate", "10", "--seconds", "4", "--warmup", "1"),
        *("--sample", "1", "--json", str(report), "--tracemalloc", str(traced)),
    )
    row = tables(done.stdout)[0][0]
    assert number(row["refused"]) == 0 and number(row["delivered"]) == number(row["sent"]) > 0
    figures = json.loads(report.read_text())
    assert figures["rss_at_warmup_mib"] > 0 and len(figures["samples"]) >= 3
    dump = traced.read_text()
    assert dump.count("## dump ") >= 2  # end of warm-up, end (and exit)
    for line in dump.splitlines():
        assert re.fullmatch(
            r"|## dump \d+ \((SIGUSR2|exit)\) at \S+, pid \d+: traced [\d.]+ MiB now, peak .*"
            r"|### top \d+ growths since the previous dump, by (traceback|line)"
            r"|[-+][\d.]+ KiB, [-+]\d+ blocks \(now [\d.]+ KiB in \d+ blocks\)"
            r"|    [^ ].*:\d+|[-+][\d.]+ KiB, [-+]\d+ blocks \(now [\d.]+ KiB\): .+:\d+",
            line,
        ), line
    assert "Identificatie" not in dump and "999990019" not in dump


COMPARE_FOR_A_MINUTE = (
    *("benchmarks", "compare", "HEAD", "HEAD", "--pairs", "1", "--messages", "3000"),
    *("--rates", "20", "--seconds", "60"),
)
KILLED = {
    "soak-while-starting": (("benchmarks.soak", "--rate", "5", "--seconds", "600"), 0.0),
    "soak-while-running": (("benchmarks.soak", "--rate", "5", "--seconds", "600"), 6.0),
    "compare-while-running": (
        COMPARE_FOR_A_MINUTE,
        6.0,
    ),
}


@pytest.mark.parametrize("case", list(KILLED))
def test_a_benchmark_killed_stops_the_gateway_it_started(tmp_path: Path, case: str) -> None:
    """SIGTERM (``kill``, ``timeout``) stops a benchmark as Ctrl-C does: its ``ggk serve`` is
    stopped too, instead of running on after it (benchmarks/stopping.py), whether it was
    still starting (no ``finally`` of the benchmark's yet) or serving the load, and when
    ``compare`` runs it as a build of its own."""
    args, after = KILLED[case]
    if args[0] == "benchmarks.soak":
        args += ("--warmup", "1")
    else:
        args += ("--cache", str(seeded_cache(tmp_path)[0]))
    said = tmp_path / "stderr.txt"
    with said.open("w") as stderr:  # a file, not a pipe: a process left running holds no EOF
        soak = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its own process group: all of it is killed at the end
        )
    gateway: int | None = None
    try:
        deadline = time.monotonic() + 120
        while gateway is None and time.monotonic() < deadline and soak.poll() is None:
            time.sleep(0.2)
            gateway = next((pid for pid in children(soak.pid) if b"serve" in cmdline(pid)), None)
        assert gateway is not None, f"the soak did not start its gateway: {said.read_text()}"
        time.sleep(after)
        assert soak.poll() is None, said.read_text()
        soak.send_signal(signal.SIGTERM)
        soak.wait(timeout=60)
        text = said.read_text()
        assert soak.returncode == 128 + signal.SIGTERM.value, text
        # besides its progress lines and the gateway's JSON log lines nothing: no traceback,
        # no gateway complaining that its folder went away
        lines = [
            line for line in text.splitlines() if not line.startswith(("[soak ", "[compare ", "{"))
        ]
        assert len(lines) == 1 and lines[0].startswith("stopped by SIGTERM: "), text
        assert b"serve" not in cmdline(gateway)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(soak.pid, signal.SIGKILL)  # whatever is left of a failed run
        soak.wait(timeout=60)


def test_a_signal_ignored_at_start_stays_ignored() -> None:
    """``nohup python -m benchmarks.soak …``: a SIGHUP (the terminal closed) does not stop
    the run; SIGTERM still does, and a second SIGTERM ends a cleanup that hangs."""
    script = (
        "import asyncio, signal, sys\n"
        "from benchmarks import stopping\n"
        "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
        "async def main():\n"
        "    print('ready', flush=True)\n"
        "    try:\n"
        "        await asyncio.sleep(60)\n"
        "    finally:\n"
        "        print('cleaning', flush=True)\n"
        "        await asyncio.sleep(60)  # a cleanup that hangs\n"
        "stopping.run(main())\n"
    )
    run = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert run.stdout is not None and run.stdout.readline() == "ready\n"
        run.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert run.poll() is None  # ignored, as nohup asked
        run.send_signal(signal.SIGTERM)
        assert run.stdout.readline() == "cleaning\n"
        time.sleep(0.5)
        assert run.poll() is None  # the first SIGTERM cancelled it: its cleanup runs
        run.send_signal(signal.SIGTERM)  # the default action now: ends it at once
        assert run.wait(timeout=20) == -signal.SIGTERM
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def children(pid: int) -> list[int]:
    """The descendants of ``pid`` (none while one of them is just ending)."""
    try:
        return process_tree(pid)[1:]
    except OSError:
        return []


def cmdline(pid: int) -> bytes:
    """A process's command line (empty once it has ended)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.ebms
def test_ebms() -> None:
    """Against the real ebms-core peer, skipped where tests/test_ebms_peer.py skips."""
    missing = None if (KIT / "start.sh").is_file() else f"the ebMS peer kit ({KIT})"
    missing = missing or missing_kafka_tools()  # Java 17+ (and Maven)
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the ebMS benchmark needs {missing} (.ci/run provides it)")
        pytest.skip(f"the ebMS benchmark needs {missing}")
    done = bench("benchmarks.ebms", "--messages", "5", timeout=400)
    phases = re.findall(r"^(.+?)\s+([\d.]+) msg/s\s+([\d.]+) CPU-s/1000$", done.stdout, re.M)
    assert [name.strip() for name, _, _ in phases] == [
        *("warm-up", "in ebMS", "in SOAP", "in SOAP, ebMS pace"),
        *("out ebMS", "out HTTP", "out HTTP, ebMS pace"),
    ], done.stdout
    assert all(float(rate) > 0 for _, rate, _ in phases)


def test_vegeta() -> None:
    """vegeta is an optional Go tool (``go install``): run it where it is installed."""
    if shutil.which("vegeta") is None and not (Path.home() / "go" / "bin" / "vegeta").is_file():
        without = bench("benchmarks.vegeta", "--rate", "5", "--seconds", "1", ok=False)
        assert without.returncode == 1 and "needs vegeta: go install" in without.stderr
        pytest.skip("vegeta is not installed (go install github.com/tsenart/vegeta/v12)")
    done = bench("benchmarks.vegeta", "--rate", "10", "--seconds", "1")
    rows = tables(done.stdout)[0]
    assert len(rows) == 2
