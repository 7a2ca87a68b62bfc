"""An independent load tool beside the project's harness, in one run: vegeta against SOAP/mTLS.

``python -m benchmarks.vegeta --rate 100 --seconds 10``: one fresh gateway (embedded backend,
mTLS); gemeente 0150 sends unique WMO301 toewijzingen (own Identificatie and referentienummer
each, so every one is validated in full and accepted) over SOAP with its client certificate,
open loop at ``--rate``: first by vegeta (``vegeta attack -format=json``, one target per
message, its own body; ``go install github.com/tsenart/vegeta/v12@v12.13.0``), then by the
project's harness (:func:`benchmarks.run.offered`) with fresh messages at the same rate.
Reported for both: success ratio and latency p50/p95/p99 as each tool measures it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path

from benchmarks import mix, stopping
from benchmarks.drops import Drops
from benchmarks.run import Clients, Sink, offered
from kit.harness import DI01_ACTION, demo_gateway, start_gateway, start_sink


def vegeta_binary() -> str:
    found = shutil.which("vegeta") or str(Path.home() / "go" / "bin" / "vegeta")
    if not Path(found).is_file():
        raise SystemExit(
            "needs vegeta: go install github.com/tsenart/vegeta/v12@v12.13.0 (Go module proxy)"
        )
    return found


def targets(url: str, messages: list[mix.Outgoing]) -> str:
    """vegeta's JSON target format: one line per request, each with its own body."""
    header = {"Content-Type": ["text/xml; charset=utf-8"], "SOAPAction": [f'"{DI01_ACTION}"']}
    return "".join(
        json.dumps(
            {
                "method": "POST",
                "url": url,
                "body": base64.b64encode(m.body).decode(),
                "header": header,
            }
        )
        + "\n"
        for m in messages
    )


def attack(
    binary: str, directory: Path, url: str, messages: list[mix.Outgoing], rate: float
) -> dict[str, object]:
    work = directory / "vegeta"
    work.mkdir()
    (work / "targets.json").write_text(targets(url, messages))
    pki = directory / "pki"
    seconds = len(messages) / rate
    with (work / "results.bin").open("wb") as results:
        subprocess.run(
            [
                binary,
                "attack",
                "-format=json",
                f"-targets={work / 'targets.json'}",
                f"-rate={rate:g}/1s",
                f"-duration={seconds:.3f}s",
                f"-cert={pki / 'client-0150.crt'}",
                f"-key={pki / 'client-0150.key'}",
                f"-root-certs={pki / 'ca.crt'}",
                "-http2=false",
                "-timeout=30s",
            ],
            stdout=results,
            check=True,
            timeout=seconds + 120,
        )
    report = subprocess.run(
        [binary, "report", "-type=json", str(work / "results.bin")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    parsed: dict[str, object] = json.loads(report.stdout)
    return parsed


async def main(args: argparse.Namespace) -> None:
    binary = vegeta_binary()
    sink = Sink()
    runner, sink_port = await start_sink(sink.handle)
    count = int(args.rate * args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "gw"
        port = demo_gateway(directory, sink_port, receivers=mix.RECEIVERS)
        url = f"https://127.0.0.1:{port}"
        check = ssl.create_default_context(cafile=str(directory / "pki" / "ca.crt"))
        server = await start_gateway(directory / "gateway.toml", url, check)
        soap_url = f"{url}/ggk/OntvangAsynchroon"
        clients = Clients(directory, [soap_url], True, 16)
        drops = Drops(directory / "gateway.toml")
        try:
            warm = [mix.message("WMO301", 800_000_000 + n) for n in range(100)]
            await offered(clients, sink, drops, warm, args.rate, "warm-up")
            ours_messages = [mix.message("WMO301", n) for n in range(count)]
            theirs_messages = [mix.message("WMO301", 100_000_000 + n) for n in range(count)]
            copies_before = drops.count()
            report = await asyncio.to_thread(
                attack, binary, directory, soap_url, theirs_messages, args.rate
            )
            # vegeta's copies written before the harness's turn (its CPU is not measured, but
            # its copies must not be written during the harness's phase); as many as it got
            # accepted, at least
            succeeded = float(report.get("success", 0.0))  # type: ignore[arg-type]
            await drops.wait_for(copies_before + int(drops.expected(theirs_messages) * succeeded))
            ours = await offered(clients, sink, drops, ours_messages, args.rate, "harness")
            latencies = report["latencies"]
            assert isinstance(latencies, dict)
            codes = report["status_codes"]
            print(
                f"# {count} unique WMO301 from 0150 over SOAP/mTLS at {args.rate:g} msg/s, "
                "each tool in turn, one gateway\n"
                "| tool | success | p50 ms | p95 ms | p99 ms |\n|---|---:|---:|---:|---:|\n"
                f"| vegeta 12.13.0 | {report['success']:.3f} (codes {codes}) | "
                f"{latencies['50th'] / 1e6:.1f} | {latencies['95th'] / 1e6:.1f} | "
                f"{latencies['99th'] / 1e6:.1f} |\n"
                f"| benchmarks.run harness | {(count - ours.failed) / count:.3f} | "
                f"{ours.p50_ms:.1f} | {ours.p95_ms:.1f} | {ours.p99_ms:.1f} |",
                flush=True,
            )
        finally:
            await clients.close()
            server.terminate()
            await server.wait()
            await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vegeta", description=__doc__)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    stopping.run(main(parser.parse_args()))
