"""``python -m benchmarks.pipeline``: the CPU one message costs on the accept path, in process.

The full benchmark (``python -m benchmarks run``) measures the gateway's CPU per message
under load, with TLS, HTTP, delivery and a load generator on the same cores. On a shared
machine that figure swings by 15 % and more; a change worth 2 % cannot be seen in it. This
harness runs only the accept path, in this process, with nothing else in it: SOAP unwrap ->
``Ingress.accept_envelope`` (envelope, payload XSD, rules screen, rules, routing, facts, the
store with its audit records in SQLite group commits), 32 messages in flight, the benchmark
mix; and reports this process's CPU (all threads) per message, per round, and per stage for
one message of each kind (process CPU in a tight loop: the steadiest figure there is).
Large payloads are validated in the gateway's worker process, whose CPU is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from lxml import etree

from benchmarks import mix, stopping
from gateway import envelope as env
from gateway import logs, soap
from gateway.config import load
from gateway.ingest import Accepted, Identity
from gateway.reading import read_facts
from gateway.web.wiring import Gateway, build
from kit.harness import prepare_gateways

KINDS = ("WMO301", "JW323", "WMO305", "WMO323-1MB")
"""The kinds whose stages are timed one by one (a toewijzing, a declaratie, a start, and
the 1 MB declaratie that is 0.5 % of the mix)."""


@dataclass(frozen=True, slots=True)
class Round:
    messages: int
    cpu_ms_per_message: float
    messages_per_s: float


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _accept_round(gw: Gateway, messages: list[mix.Outgoing]) -> Round:
    identities = {
        p: Identity(gw.partners.get(p), peer="127.0.0.1", via="mtls") for p in mix.RECEIVERS
    }
    queue = list(reversed(messages))
    refused = 0

    async def sender() -> None:
        nonlocal refused
        while queue:
            message = queue.pop()
            element = soap.unwrap(message.body, None, gw.soap_limits)
            result = await gw.ingress.accept_envelope(element, identities[message.sender])
            refused += not isinstance(result, Accepted)

    cpu, started = _cpu(), time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(32)))
    cpu, elapsed = _cpu() - cpu, time.perf_counter() - started
    if refused:
        raise RuntimeError(f"{refused} of {len(messages)} messages were refused")
    return Round(len(messages), cpu / len(messages) * 1000, len(messages) / elapsed)


def _timed(fn: Callable[[], object], repeat: int) -> float:
    """Process CPU µs per call of ``fn`` (after one warm-up call)."""
    fn()
    cpu = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - cpu) / repeat * 1e6


def stages(gw: Gateway, kind: str, repeat: int) -> dict[str, float]:
    """µs of process CPU per stage of the accept path for one message of ``kind``."""
    message = mix.message(kind, 1)
    validator = gw.ingress.validator
    element = soap.unwrap(message.body, None, gw.soap_limits)
    envelope = env.parse(element)
    result = validator.validate_payload(envelope.payload)
    assert result.identified is not None and result.root is not None
    code, root = result.identified.message, result.root
    keys = gw.ingress.figure_keys
    assert keys is not None
    times = repeat if len(message.body) < 256 * 1024 else max(1, repeat // 200)
    return {
        "soap unwrap": _timed(lambda: soap.unwrap(message.body, None, gw.soap_limits), times),
        "envelope parse": _timed(lambda: env.parse(element), times),
        "payload validate": _timed(lambda: validator.validate_payload(envelope.payload), times),
        "stored facts": _timed(lambda: read_facts(element, envelope, code, root, keys), times),
        "envelope tostring": _timed(
            lambda: etree.tostring(element, encoding="UTF-8", xml_declaration=True), times
        ),
    }


async def main(args: argparse.Namespace) -> dict[str, object]:
    logs.configure("ERROR")
    with tempfile.TemporaryDirectory() as tmp:
        configs, _ = prepare_gateways(Path(tmp) / "gw", 9, receivers=mix.RECEIVERS)
        gw = build(load(configs[0]))
        if gw.ingress.readers is not None:
            await gw.ingress.readers.start()
        await gw.broker.start()
        try:
            await _accept_round(gw, mix.draw(min(100, args.messages), seed=9, start=10**8))
            rounds = [
                await _accept_round(
                    gw, mix.draw(args.messages, seed=10 + i, start=i * args.messages)
                )
                for i in range(args.rounds)
            ]
            per_kind = {kind: stages(gw, kind, args.repeat) for kind in args.kinds}
        finally:
            await gw.broker.close()
            if gw.ingress.readers is not None:
                await gw.ingress.readers.close()
    report = {
        "rounds": [asdict(r) for r in rounds],
        "best_cpu_ms_per_message": min(r.cpu_ms_per_message for r in rounds),
        "stages_us": per_kind,
    }
    for r in rounds:
        print(
            f"accept path: {r.cpu_ms_per_message:.3f} ms CPU per message, {r.messages_per_s:.0f}/s"
        )
    for kind, times in per_kind.items():
        print(f"{kind}: " + ", ".join(f"{k} {v:,.1f} µs" for k, v in times.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pipeline", description=__doc__)
    p.add_argument("--messages", type=int, default=1500, help="messages per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeat", type=int, default=1000, help="calls per stage timing")
    p.add_argument("--kinds", nargs="*", default=list(KINDS), choices=list(mix.WEIGHTS))
    p.add_argument("--json", help="write the figures here as JSON")
    return p


if __name__ == "__main__":
    stopping.run(main(parser().parse_args()))
