"""What one REST submission costs in-process: ``submit_payload`` from raw bytes to the stored
message and its 202, without HTTP or TLS (issue 28.3: the payload validated once).

A fresh ``ggk init`` setup, the gateway built and started as ``ggk serve`` does (the schemas
compiled, the validation worker process started, the SQLite store opened durably), then
``--messages`` submissions of a WMO301 (about 3 KB, validated inline) from gemeente 0150 and
``--large`` of a WMO323 declaratie of about 1 MB (validated in the worker process) from
zorgaanbieder 12345678, each with its own Identificatie. Medians and p90 in milliseconds of
wall time, and the median CPU time of the gateway's own process (what holds the event loop;
the worker's validation of a large payload runs on the other core).

    python -m benchmarks.submit --messages 300 --large 30
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks import stopping
from benchmarks.mix import message
from gateway import demo
from gateway.config import load
from gateway.ingest import Identity
from gateway.metrics import REGISTRY
from gateway.web.rest import submit_payload
from gateway.web.wiring import Gateway, build
from kit.harness import free_port

KINDS = (("WMO301", "0150"), ("WMO323-1MB", "12345678"))
"""(kind in benchmarks/mix.py, the sender's partner id)."""


def validations() -> float:
    """Payload validations so far (``ggk_payload_validations_total``, both places)."""
    return sum(
        REGISTRY.get_sample_value("ggk_payload_validations_total", {"where": where}) or 0.0
        for where in ("inline", "worker")
    )


async def timed(
    gw: Gateway, kind: str, sender: str, count: int, first: int
) -> tuple[list[float], list[float]]:
    """Milliseconds of each of ``count`` submissions of ``kind`` (after two to warm up):
    wall time, and CPU time of this process (the event loop and its threads; not the
    validation worker's)."""
    partner = gw.partners.get(sender)
    assert partner is not None
    identity = Identity(partner, peer="127.0.0.1", via="bench")
    seconds, cpu = [], []
    for n in range(first, first + count + 2):
        payload = message(kind, n).payload
        started, used = time.perf_counter(), time.process_time()
        submitted = await submit_payload(gw, identity, partner, payload)
        seconds.append(time.perf_counter() - started)
        cpu.append(time.process_time() - used)
        assert submitted.status == 202, submitted.body
    return [s * 1000 for s in seconds[2:]], [c * 1000 for c in cpu[2:]]


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "gw"
        demo.init(directory, port=free_port())
        gw = build(load(directory / "gateway.toml"))
        if gw.ingress.readers is not None:
            await gw.ingress.readers.start()
        await gw.broker.start()
        try:
            print(
                "| message | submissions | median ms | p90 ms | CPU ms (median, this process) "
                "| validations per submission |"
            )
            print("|---|---|---|---|---|---|")
            for (kind, sender), count in zip(KINDS, (args.messages, args.large), strict=True):
                counted = validations()
                times, cpu = await timed(gw, kind, sender, count, 1)
                per = (validations() - counted) / (count + 2)
                p90 = statistics.quantiles(times, n=10)[-1]
                print(
                    f"| {kind} | {count} | {statistics.median(times):.2f} | {p90:.2f} "
                    f"| {statistics.median(cpu):.2f} | {per:g} |"
                )
        finally:
            await gw.broker.close()
            if gw.ingress.readers is not None:
                await gw.ingress.readers.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300, help="WMO301 submissions")
    parser.add_argument("--large", type=int, default=30, help="1 MB WMO323 submissions")
    stopping.run(main(parser.parse_args()))
