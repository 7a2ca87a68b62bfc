"""kill -9 of the gateway between Bv03 and delivery: after a restart everything arrives."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

from tests.conftest import sample
from tests.gatewaykit import Setup, Sink, eventually, make_setup, rest

GGK = str(Path(sys.executable).parent / "ggk")
JW301 = sample("ijw/jw301.xml")


async def _start(setup: Setup, log: Path) -> asyncio.subprocess.Process:
    handle = log.open("ab")
    process = await asyncio.create_subprocess_exec(
        GGK, "serve", "--config", str(setup.config_path), stdout=handle, stderr=handle
    )

    async def healthy() -> bool:
        try:
            return (await rest(setup, "GET", "/healthz"))[0] == 200
        except OSError:
            return False

    await eventually(healthy, timeout=30, interval=0.1)
    return process


async def test_kill_9_after_bv03_loses_nothing(tmp_path: Path) -> None:
    sink = Sink()  # not started: the partner is down while messages are accepted
    setup = make_setup(tmp_path / "gw", sink.port, max_attempts=1000, backoff_max=0.1)
    log = tmp_path / "gateway.log"
    gateway = await _start(setup, log)
    refs = []
    try:
        for i in range(25):
            payload = JW301.replace("JW301B0001", f"JW301B{i:04d}").replace(
                ">12345678<", ">87654321<"
            )
            ref = str(uuid.uuid4())
            status, body = await rest(
                setup,
                "POST",
                "/api/v1/messages",
                token=setup.token("0175"),
                data=payload.encode(),
                headers={"Idempotency-Key": ref},
            )
            assert status == 202, body
            refs.append(ref)
    finally:
        os.kill(gateway.pid, signal.SIGKILL)
        await gateway.wait()
    await sink.start()
    gateway = await _start(setup, log)
    try:
        await eventually(lambda: set(sink.referenties()) >= set(refs), timeout=60)
        await asyncio.sleep(0.5)
        assert sorted(sink.referenties()) == sorted(refs), "lost or duplicated deliveries"
        assert b"999990019" not in log.read_bytes()  # no BSN in the logs
    finally:
        gateway.terminate()
        await gateway.wait()
        await sink.stop()
