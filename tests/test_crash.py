"""kill -9 of the gateway between Bv03 and delivery: after a restart everything arrives."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
from pathlib import Path

import pytest

from kit.gateway import Sink, eventually, ggk, make_setup, serve, submit_jw301
from tests.conftest import sample

JW301 = sample("ijw/jw301.xml")


def children(pid: int) -> list[int]:
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper does not count)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.slow
async def test_kill_9_after_bv03_loses_nothing(tmp_path: Path) -> None:
    sink = Sink()  # not started: the partner is down while messages are accepted
    setup = make_setup(tmp_path / "gw", sink.port, max_attempts=1000, backoff_max=0.1)
    log = tmp_path / "gateway.log"
    gateway = await serve(setup, log)
    refs = []
    workers = children(gateway.pid)
    assert workers, "the gateway has no validation worker process"
    try:
        for i in range(25):
            ref = await submit_jw301(setup, identificatie=f"JW301B{i:04d}")
            refs.append(ref)
    finally:
        os.kill(gateway.pid, signal.SIGKILL)
        await gateway.wait()
    # its validation worker must not outlive it (nobody tells a process its parent got -9)
    await eventually(lambda: not any(alive(pid) for pid in workers), 10)
    await sink.start()
    gateway = await serve(setup, log)
    try:
        await eventually(lambda: set(sink.referenties()) >= set(refs), timeout=60)
        await asyncio.sleep(0.5)
        assert sorted(sink.referenties()) == sorted(refs), "lost or duplicated deliveries"
        assert b"999990019" not in log.read_bytes()  # no BSN in the logs
        secrets = (setup.directory / "secrets" / "tokens.toml").read_text()
        tokens = re.findall(r'= "([A-Za-z0-9_-]{20,})"', secrets)
        assert len(tokens) == 9  # admin + 8 partners: the grep below really checks them
        for token in tokens:
            assert token.encode() not in log.read_bytes(), "a token appears in the log"
    finally:
        gateway.terminate()
        await gateway.wait()
        await sink.stop()
    data_dir = setup.directory / "data"
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert any(p.name == "gateway.sqlite" for p in files)
    for path in files:  # database, WAL, lock: no BSN, no payload, in any form we can think of
        content = path.read_bytes()
        for needle in (b"999990019", b"Jansen", base64.b64encode(JW301.encode()[:60])):
            assert needle not in content, f"{needle!r} in {path.name}"
    code, out = await ggk(setup, "audit", "verify")
    assert code == 0 and "audit log intact" in out
    code, out = await ggk(setup, "audit", "search", "--bsn", "999990019", "--json")
    assert code == 0 and len({r["object"] for r in json.loads(out)}) == 25
    code, out = await ggk(setup, "keys", "rotate", "--reencrypt")
    assert code == 0 and "25 stored payloads re-encrypted" in out, out
    code, out = await ggk(
        setup, "audit", "export", "--decrypt", "--out", str(tmp_path / "export.jsonl")
    )
    assert code == 0
    exported = [json.loads(line) for line in (tmp_path / "export.jsonl").read_text().splitlines()]
    assert exported[-1]["action"] == "key_rotated"
    assert any(r["secret"] and r["secret"].get("bsn") == ["999990019"] for r in exported)
    code, out = await ggk(setup, "audit", "verify")
    assert code == 0, out
