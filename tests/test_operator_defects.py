"""The operator's gaps of issue 33.5, each against a live gateway: replay sends only what was
not delivered unless asked, the Bv03 histogram covers every channel, audit search by partner
finds the deliveries to it, usage errors exit 2 without a traceback, ``init --force`` refuses
while a gateway serves the folder, and a certificate mismatch is named as such."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from gateway import demo
from kit.gateway import GGK, Setup, Sink, eventually, ggk, make_setup, rest, running, serve
from kit.harness import free_port
from tests.conftest import SAMPLES
from tests.test_ops import exported

WMO301 = (SAMPLES / "iwmo" / "wmo301.xml").read_bytes()


@pytest.fixture
def setup(tmp_path: Path, sink: Sink) -> Setup:
    return make_setup(tmp_path / "gw", sink.port)


async def _submit(setup: Setup) -> str:
    """A WMO301 from 0150 with its own Identificatie (TR056 refuses a reused one)."""
    payload = WMO301.replace(b"WMO301A0001", uuid.uuid4().hex[:12].encode())
    status, body = await rest(
        setup, "POST", "/api/v1/messages", token=setup.token("0150"), data=payload
    )
    assert status == 202, body
    return str(body["id"])


@pytest.mark.slow
async def test_replay_of_a_delivered_message_needs_include_delivered(
    setup: Setup, sink: Sink
) -> None:
    async with running(setup):
        message_id = await _submit(setup)
        await eventually(lambda: sink.requests_seen == 1)
        await eventually(lambda: _delivery_gauge(setup, "delivered", 2.0))
        # every state is published, at 0 too (a left-out gauge keeps its last value)
        assert await _delivery_gauge(setup, "dead", 0.0)
        code, out = await ggk(setup, "replay", message_id)
        assert code == 1 and "--include-delivered" in out, out
        code, out = await ggk(setup, "replay", message_id, "--json")
        assert code == 1 and json.loads(out) == {"replayed": 0}
        code, out = await ggk(setup, "replay", "--dlq", "--include-delivered")
        assert code == 2 and "Traceback" not in out
        assert sink.requests_seen == 1  # the partner got no duplicate
        code, out = await ggk(setup, "replay", message_id, "--include-delivered", "--json")
        assert code == 0 and json.loads(out)["replayed"] == 2, out  # 12345678 and CAK
        await eventually(lambda: sink.requests_seen == 2)


async def _delivery_gauge(setup: Setup, state: str, value: float) -> bool:
    _, body = await rest(setup, "GET", "/metrics", token=setup.token())
    return (f'{{state="{state}"}}', value) in exported(body).get("ggk_deliveries", [])


@pytest.mark.slow
async def test_bv03_histogram_counts_rest_submissions(setup: Setup) -> None:
    async with running(setup):
        _, before = await rest(setup, "GET", "/metrics", token=setup.token())
        for _ in range(3):
            await _submit(setup)
        _, after = await rest(setup, "GET", "/metrics", token=setup.token())

    def rest_count(body: bytes) -> float:
        counts = dict(exported(body).get("ggk_bv03_seconds_count", []))
        return counts.get('{channel="rest"}', 0.0)

    # counters are per process (other in-process tests add to them): the difference
    assert rest_count(after) - rest_count(before) == 3


@pytest.mark.slow
async def test_audit_search_by_partner_finds_deliveries_to_it(setup: Setup) -> None:
    async with running(setup):
        message_id = await _submit(setup)  # WMO301 from 0150: a copy goes to CAK

        async def copied() -> bool:
            _, body = await rest(
                setup, "GET", f"/api/v1/messages/{message_id}", token=setup.token()
            )
            return any(
                d["destination"] == "CAK" and d["state"] == "delivered"
                for d in body.get("deliveries", [])
            )

        await eventually(copied)
    code, out = await ggk(setup, "audit", "search", "--partner", "CAK", "--json")
    assert code == 0, out
    found = json.loads(out)
    records = found["records"] if isinstance(found, dict) else found
    about = [r for r in records if r["object"] == message_id]
    assert about and all(r["ontvanger"] != "CAK" for r in about)  # found by the delivery
    # a LIKE wildcard is a literal: "C_K" is not CAK
    code, out = await ggk(setup, "audit", "search", "--partner", "C_K", "--json")
    assert code == 0
    found = json.loads(out)
    assert not (found["records"] if isinstance(found, dict) else found)


@pytest.mark.parametrize(
    "args, says",
    [
        (("serve", "--log-level", "LOUD"), "LOUD"),
        (("stats", "--from", "2026-13"), "2026-13"),
        (("stats", "--from", "2026-05", "--to", "2026-03"), "earlier month first"),
        (("overdue", "--days", "-1"), "-1"),
    ],
)
async def test_usage_errors_exit_2_and_say_why(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    setup = Setup(tmp_path / "gw", free_port())
    demo.init(setup.directory, port=setup.port)
    code, out = await ggk(setup, *args)  # nothing serves: checked before the gateway is asked
    assert code == 2 and says in out and "Traceback" not in out, out


@pytest.mark.slow
async def test_reversed_month_range_is_a_bad_request(setup: Setup) -> None:
    async with running(setup):
        status, body = await rest(
            setup, "GET", "/api/v1/stats?from=2026-05&to=2026-03", token=setup.token()
        )
    assert status == 400 and "earlier month first" in body["title"]


async def _init_force(setup: Setup) -> tuple[int, str]:
    done = await asyncio.to_thread(
        subprocess.run,
        [GGK, "init", str(setup.directory), "--force"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.slow
async def test_init_force_refuses_while_serving(tmp_path: Path) -> None:
    setup = make_setup(tmp_path / "gw", free_port())
    keyring = (setup.directory / "keys" / "keyring.json").read_bytes()
    process = await serve(setup, tmp_path / "serve.log")
    try:
        code, out = await _init_force(setup)
        assert code == 2 and "stop `ggk serve` first" in out, out
        assert (setup.directory / "keys" / "keyring.json").read_bytes() == keyring
        assert not list(setup.directory.glob("replaced-*"))
    finally:
        process.terminate()
        await process.wait()
    code, out = await _init_force(setup)
    assert code == 0, out
    kept = list(setup.directory.glob("replaced-*"))
    assert len(kept) == 1 and (kept[0] / "keys" / "keyring.json").read_bytes() == keyring


@pytest.mark.slow
async def test_a_certificate_mismatch_is_named(tmp_path: Path, setup: Setup) -> None:
    other = Setup(tmp_path / "other", setup.port)
    demo.init(other.directory, port=setup.port)  # its own CA, the same address
    async with running(setup):
        code, out = await ggk(other, "overdue")
    assert code == 2 and "certificate mismatch" in out and "is `ggk serve` running" not in out
    assert re.search(r"not signed by the CA|issued for this host", out), out
