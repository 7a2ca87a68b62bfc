"""``python -m benchmarks compare BASE [HEAD] --pairs 3``: two commits side by side, same
machine, same hour — the only fair way to say a change to the hot path won or lost.

Each commit is exported from git (its committed tree, nothing of the working tree) and gets
its own virtualenv (``-e .[dev,bench]``, ``-c .ci/constraints.txt``), built once per commit
and kept under a cache directory (``--cache``, default ``$GGK_BENCH_CACHE`` or
``~/.cache/ggk-benchmarks``), so a second comparison starts at once.
Then ``python -m benchmarks run`` *of that commit* (its own gateway, its own default
configuration, its own load generator) runs the scenario in ``--pairs`` pairs, BASE first in
odd pairs and HEAD first in even ones (BASE HEAD, HEAD BASE, BASE HEAD…): alternating spreads
the machine's drift (other processes, thermal state) over both sides instead of charging it
to one, and swapping the order in every other pair spreads what a run leaves to the next
(dirty pages of its store being written back, a file system deleting gigabytes) the same
way. Use an even ``--pairs`` for a balanced order.

Reported, as the median over the pairs per commit and HEAD/BASE: saturation accepted and
delivered msg/s, gateway CPU-s per 1,000 messages, Bv03 p50/p99 at each offered rate, raw lxml
parse+validate msg/s of the same run, and the machine-independent ratios of issue 29: CPU per
message ÷ raw lxml CPU per message, sustainable (delivered) msg/s ÷ raw lxml msg/s, and Bv03
p99/p50 at the offered rate nearest half of saturation.

Goal 5 is defined at half of saturation, which no fixed ``--rates`` value is on every
machine. ``--half`` first runs each commit once at saturation only (a calibration, not
counted) and adds half the lower of their two delivered rates, rounded to 10 msg/s, to the
offered rates of every pair: both sides are then measured at the same rate, at or below
half of their own saturation.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import stopping

USAGE_ERROR = 2


class UsageError(Exception):
    """A mistake in what was asked (bad commit, dirty tree, …): exit 2 with the message."""


class RunFailed(Exception):
    """A build or benchmark run of one commit failed: exit 1 with where its log is."""


@dataclass(slots=True)
class RunFigures:
    """The figures of one ``benchmarks run`` of one commit."""

    commit: str
    pair: int
    accepted_per_s: float
    delivered_per_s: float
    cpu_s_per_1000: float
    raw_lxml_per_s: float
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    """Offered rate (as text, e.g. ``"100"``) → {"p50": …, "p99": …}."""
    cpu_at_rate: dict[str, float] = field(default_factory=dict)
    """Offered rate (as text) → gateway CPU-s per 1,000 messages of that phase: the cost of
    a message where nothing is shared (a commit, a wake-up each), which saturation hides."""
    cpu_vs_lxml: float = 0.0
    """Gateway CPU per message ÷ raw lxml parse+validate CPU per message (goal 3: ≤ 12)."""
    sustainable_vs_lxml: float = 0.0
    """Delivered msg/s at saturation ÷ raw lxml msg/s (goal 4: ≥ 0.10)."""
    half_rate: float | None = None
    """The offered rate nearest half of this run's delivered saturation rate."""
    p99_over_p50_at_half: float | None = None
    """Bv03 p99/p50 at ``half_rate`` (goal 5: ≤ 4)."""


def figures_of(results: dict[str, Any], commit: str, pair: int) -> RunFigures:
    """The figures of a ``results.json`` written by ``benchmarks run`` (any commit since the
    round-1 code: the keys used here have not changed)."""
    scenario = results["scenarios"][0]
    phases = scenario["phases"]
    saturation = next(p for p in phases if p["offered"] is None)
    raw = float(results["validate"]["raw_per_s"])
    figures = RunFigures(
        commit=commit,
        pair=pair,
        accepted_per_s=float(saturation["accepted_per_s"]),
        delivered_per_s=float(saturation["delivered_per_s"]),
        cpu_s_per_1000=float(scenario["cpu_s_per_1000"]),
        raw_lxml_per_s=raw,
    )
    for p in phases:
        if p["offered"] is not None:
            figures.latency_ms[f"{p['offered']:g}"] = {
                "p50": float(p["p50_ms"]),
                "p99": float(p["p99_ms"]),
            }
            if p.get("cpu_s_per_1000"):  # measured per phase since 50cb5c7
                figures.cpu_at_rate[f"{p['offered']:g}"] = float(p["cpu_s_per_1000"])
    figures.cpu_vs_lxml = figures.cpu_s_per_1000 / 1000 * raw
    figures.sustainable_vs_lxml = figures.delivered_per_s / raw
    rates = [float(r) for r in figures.latency_ms]
    if rates:
        half = figures.delivered_per_s / 2
        nearest = min(rates, key=lambda r: abs(r - half))
        at = figures.latency_ms[f"{nearest:g}"]
        figures.half_rate = nearest
        figures.p99_over_p50_at_half = at["p99"] / at["p50"] if at["p50"] > 0 else None
    return figures


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise UsageError(f"git {' '.join(args)}: {done.stderr.strip() or 'failed'}")
    return done.stdout.strip()


def resolve(repo: Path, name: str) -> str:
    """The full commit id of ``name``; a usage error when it names no commit or a commit
    without the benchmark runner."""
    done = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise UsageError(f"{name!r} is not a commit in {repo}")
    sha = done.stdout.strip()
    has_runner = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "-e", f"{sha}:benchmarks/run.py"],
        capture_output=True,
        check=False,
    )
    if has_runner.returncode != 0:
        raise UsageError(f"{name} ({sha[:9]}) has no benchmarks/run.py to run")
    return sha


def progress(message: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Builds:
    """One checkout and one virtualenv per commit, kept under the cache directory.

    The checkout is an export of the commit's tree (``git archive``), not a registered git
    worktree: nothing is added to the repository's worktree list, and the editable install
    of the virtualenv stays valid for the next comparison.
    """

    def __init__(self, repo: Path, cache: Path, scratch: Path) -> None:
        self.repo = repo
        self.cache = cache
        self.scratch = scratch

    def tree(self, sha: str) -> Path:
        return self.cache / sha / "src"

    def python(self, sha: str) -> Path:
        """The interpreter of the commit's virtualenv, built now unless cached."""
        home = self.cache / sha
        (self.cache / "locks").mkdir(parents=True, exist_ok=True)
        with (self.cache / "locks" / sha).open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two comparisons building one commit: one builds
            return self._build(sha, home)

    def _build(self, sha: str, home: Path) -> Path:
        ready = home / "ok"
        python = home / "venv" / "bin" / "python"
        if ready.exists() and python.exists():
            return python
        progress(f"{sha[:9]}: building a checkout and virtualenv in {home} (once per commit)")
        shutil.rmtree(home, ignore_errors=True)
        tree = self.tree(sha)
        tree.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(self.repo), "archive", "--format=tar", sha],
            capture_output=True,
            check=False,
        )
        if archive.returncode != 0:
            raise RunFailed(f"git archive {sha[:9]}: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        constraints = tree / ".ci" / "constraints.txt"
        if not constraints.exists():  # older commits pinned nothing: use ours
            constraints = self.repo / ".ci" / "constraints.txt"
        pin = ["-c", str(constraints)] if constraints.exists() else []
        # the bench extra (matplotlib, py-spy) where the commit has one: its plot and --flame
        extras = (
            ".[dev,bench]" if "\nbench = " in (tree / "pyproject.toml").read_text() else ".[dev]"
        )
        log = home / "build.log"
        steps = [
            [sys.executable, "-m", "venv", str(home / "venv")],
            [str(python), "-m", "pip", "install", "-q", *pin, "--upgrade", "pip", "setuptools"],
            [str(python), "-m", "pip", "install", "-q", *pin, "-e", extras],
        ]
        with log.open("w") as out:
            for step in steps:
                if subprocess.run(step, cwd=tree, stdout=out, stderr=out).returncode != 0:
                    raise RunFailed(f"building {sha[:9]} failed: see {log}")
        ready.write_text(f"{sha}\n")
        return python


def pair_order(pair: int) -> tuple[str, str]:
    """Which side runs first in pair number ``pair`` (from 1): BASE in odd pairs, HEAD in
    even ones. In issue 29's sixth session two comparisons running BASE first leaned against
    HEAD in 6 of 6 pairs (5–10 % more CPU), and the same two commits with their sides swapped
    came out even: an order effect, or a real difference the order hid, which a fixed order
    cannot tell apart."""
    return ("BASE", "HEAD") if pair % 2 else ("HEAD", "BASE")


def run_once(
    builds: Builds,
    sha: str,
    label: str,
    pair: int,
    args: argparse.Namespace,
    rates: list[float] | None = None,
) -> RunFigures:
    """One ``benchmarks run`` of ``sha`` at ``rates`` (default ``--rates``); pair 0 is the
    calibration of ``--half``."""
    rates = args.rates if rates is None else rates
    out = builds.scratch / f"run-{pair}-{label}"
    log = builds.scratch / f"run-{pair}-{label}.log"
    command = [
        str(builds.python(sha)),
        "-m",
        "benchmarks",
        "run",
        "--scenario",
        args.scenario,
        "--messages",
        str(args.messages),
        "--seconds",
        f"{args.seconds:g}",
        "--out",
        str(out),
        "--rates",
        *(f"{r:g}" for r in rates),
    ]
    if args.concurrency is not None:
        command += ["--concurrency", str(args.concurrency)]
    if args.ceiling_messages is not None:
        command += ["--ceiling-messages", str(args.ceiling_messages)]
    step = f"pair {pair}/{args.pairs}" if pair else "calibration (--half)"
    progress(f"{step}: {label} {sha[:9]} running {args.scenario}")
    started = time.perf_counter()
    with log.open("w") as sink:
        status = stopping.run_child(command, cwd=builds.tree(sha), output=sink)
    results = out / "results.json"
    if status != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        if not results.exists():
            raise RunFailed(f"{label} {sha[:9]} run failed (exit {status}):\n{tail}")
        # results.json is written once every phase is done; what failed after it is the
        # plot (older commits lack matplotlib in their dev extras), not the measurement
        progress(f"{label} {sha[:9]}: failed after writing its results (kept):\n{tail}")
    figures = figures_of(json.loads(results.read_text()), sha, pair)
    progress(
        f"{step}: {label} {sha[:9]} done in {time.perf_counter() - started:.0f} s"
        f": {figures.delivered_per_s:,.0f} delivered/s, {figures.cpu_s_per_1000:.2f} CPU-s/1,000"
    )
    return figures


FIGURES: list[tuple[str, str, str]] = [
    ("accepted_per_s", "saturation accepted msg/s", "{:,.0f}"),
    ("delivered_per_s", "saturation delivered msg/s (sustainable)", "{:,.0f}"),
    ("cpu_s_per_1000", "gateway CPU-s per 1,000 messages", "{:.2f}"),
    ("raw_lxml_per_s", "raw lxml parse+validate msg/s (one core)", "{:,.0f}"),
    ("cpu_vs_lxml", "CPU per message ÷ raw lxml CPU per message", "{:.1f}×"),
    ("sustainable_vs_lxml", "sustainable msg/s ÷ raw lxml msg/s", "{:.3f}"),
    ("p99_over_p50_at_half", "Bv03 p99/p50 at ~half of saturation", "{:.2f}"),
]


def series(runs: list[RunFigures]) -> dict[str, list[float]]:
    """Every figure's values over the pairs, keyed as in the table."""
    values: dict[str, list[float]] = {key: [] for key, _, _ in FIGURES}
    for run in runs:
        for key, _, _ in FIGURES:
            value = getattr(run, key)
            if value is not None:
                values[key].append(float(value))
        for rate, at in run.latency_ms.items():
            for q in ("p50", "p99"):
                values.setdefault(f"{q}_ms@{rate}", []).append(at[q])
        for rate, cpu in run.cpu_at_rate.items():
            values.setdefault(f"cpu@{rate}", []).append(cpu)
    return values


def summary(base: list[RunFigures], head: list[RunFigures]) -> dict[str, dict[str, Any]]:
    """Per figure: the values, the median of each side and HEAD/BASE of the medians."""
    b, h = series(base), series(head)
    result: dict[str, dict[str, Any]] = {}
    for key in dict.fromkeys([*b, *h]):
        bm = statistics.median(b[key]) if b.get(key) else None
        hm = statistics.median(h[key]) if h.get(key) else None
        result[key] = {
            "base": b.get(key, []),
            "head": h.get(key, []),
            "base_median": bm,
            "head_median": hm,
            "head_over_base": hm / bm if bm and hm is not None else None,
        }
    return result


def table(figures: dict[str, dict[str, Any]], base: str, head: str) -> str:
    labels = {key: (label, fmt) for key, label, fmt in FIGURES}
    lines = [
        f"| figure (median of the pairs) | BASE {base[:9]} | HEAD {head[:9]} | HEAD/BASE |",
        "|---|---|---|---|",
    ]
    for key, row in figures.items():
        if key in labels:
            label, fmt = labels[key]
        elif key.startswith("cpu@"):
            label = f"gateway CPU-s per 1,000 messages at {key[4:]} msg/s offered"
            fmt = "{:.2f}"
        else:
            q, rate = key.split("_ms@")
            label, fmt = f"Bv03 {q} ms at {rate} msg/s offered", "{:.1f}"
        cells = [
            fmt.format(row[side]) if row[side] is not None else "–"
            for side in ("base_median", "head_median")
        ]
        ratio = f"{row['head_over_base']:.2f}" if row["head_over_base"] is not None else "–"
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {ratio} |")
    return "\n".join(lines)


def check_clean(repo: Path) -> None:
    """The default HEAD is the working tree's commit: uncommitted changes would not be in
    what is measured, which is never what was meant."""
    if git(repo, "status", "--porcelain", "--untracked-files=no"):
        raise UsageError(
            "the working tree has uncommitted changes, which a comparison of commits would "
            "not measure: commit them, or name HEAD explicitly, or pass --allow-dirty"
        )


def compare(args: argparse.Namespace) -> dict[str, Any]:
    if args.pairs < 1:
        raise UsageError("--pairs must be at least 1")
    if args.messages < 1 or args.seconds <= 0 or any(r <= 0 for r in args.rates):
        raise UsageError("--messages, --seconds and --rates must be positive")
    repo = Path(args.repo).resolve()
    top = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--show-toplevel"],
        capture_output=True,
        text=True,
        check=False,
    )
    if top.returncode != 0:
        raise UsageError(f"{repo} is not inside a git repository")
    repo = Path(top.stdout.strip())
    if args.head is None and not args.allow_dirty:
        check_clean(repo)
    base = resolve(repo, args.base)
    head = resolve(repo, args.head or "HEAD")
    cache = Path(args.cache).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ggk-compare-") as scratch:
        builds = Builds(repo, cache, Path(scratch))
        try:
            for sha in dict.fromkeys([base, head]):
                progress(f"{sha[:9]}: virtualenv {builds.python(sha)}")
            half = half_of_saturation(builds, base, head, args) if args.half else None
            rates = sorted({*args.rates, *([half] if half else [])})
            runs: dict[str, list[RunFigures]] = {"BASE": [], "HEAD": []}
            for pair in range(1, args.pairs + 1):
                for label in pair_order(pair):
                    sha = base if label == "BASE" else head
                    runs[label].append(run_once(builds, sha, label, pair, args, rates))
        finally:
            if args.keep:
                shutil.copytree(scratch, args.keep, dirs_exist_ok=True)
                progress(f"logs and results.json of every run kept in {args.keep}")
    figures = summary(runs["BASE"], runs["HEAD"])
    return {
        "base": base,
        "head": head,
        "scenario": args.scenario,
        "pairs": args.pairs,
        "messages": args.messages,
        "rates": rates,
        "half_rate": half,
        "seconds": args.seconds,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "figures": figures,
        "runs": {label: [asdict(r) for r in rs] for label, rs in runs.items()},
    }


def half_of_saturation(builds: Builds, base: str, head: str, args: argparse.Namespace) -> float:
    """Half the lower delivered msg/s of one saturation-only run of each commit, rounded to
    10 msg/s (to 1 below 20): the rate ``--half`` adds to every pair's offered rates."""
    delivered = min(
        run_once(builds, sha, label, 0, args, rates=[]).delivered_per_s
        for label, sha in (("BASE", base), ("HEAD", head))
    )
    half = round(delivered / 2, -1) if delivered >= 40 else max(1.0, round(delivered / 2))
    progress(f"half of saturation: {half:g} msg/s (half of {delivered:,.0f} delivered/s)")
    return float(half)


def default_cache() -> str:
    return os.environ.get("GGK_BENCH_CACHE") or str(Path.home() / ".cache" / "ggk-benchmarks")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", metavar="BASE", help="the commit to compare against")
    parser.add_argument(
        "head",
        metavar="HEAD",
        nargs="?",
        help="the commit measured against BASE (default: the working tree's HEAD commit)",
    )
    parser.add_argument(
        "--pairs", type=int, default=4, help="pairs of runs (BASE first in odd pairs, HEAD in even)"
    )
    parser.add_argument("--scenario", default="sqlite", help="one scenario of benchmarks run")
    parser.add_argument("--messages", type=int, default=3000, help="saturation phase size")
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[100, 300], help="offered loads (msg/s)"
    )
    parser.add_argument(
        "--half",
        action="store_true",
        help="also offer half of saturation, found by one saturation run of each commit first",
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="per offered-load phase")
    parser.add_argument("--concurrency", type=int, help="passed on to benchmarks run")
    parser.add_argument("--ceiling-messages", type=int, help="passed on to benchmarks run")
    parser.add_argument("--json", metavar="FILE", help="write every run's figures as JSON")
    parser.add_argument("--cache", default=default_cache(), help="where the virtualenvs stay")
    parser.add_argument("--keep", metavar="DIR", help="copy every run's log and results here")
    parser.add_argument("--repo", default=".", help="the git repository (default: here)")
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="compare the HEAD commit even though the working tree has uncommitted changes",
    )


def main(args: argparse.Namespace) -> int:
    try:
        result = compare(args)
    except UsageError as problem:
        print(f"benchmarks compare: {problem}", file=sys.stderr)
        return USAGE_ERROR
    except RunFailed as problem:
        print(f"benchmarks compare: {problem}", file=sys.stderr)
        return 1
    print(
        f"# {args.scenario}: BASE {result['base'][:9]} vs HEAD {result['head'][:9]}, "
        f"{args.pairs} alternating pairs, --messages {args.messages} --rates "
        f"{' '.join(f'{r:g}' for r in result['rates'])} --seconds {args.seconds:g}"
        + (f" (half of saturation: {result['half_rate']:g} msg/s)" if result["half_rate"] else "")
    )
    print()
    print(table(result["figures"], result["base"], result["head"]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"\nevery run's figures: {args.json}")
    return 0
