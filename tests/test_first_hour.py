"""The operator's first hour (issue #14): the quick start and the demo run twice, a replaced
keyring is refused, the CLI pages, follows and fails clearly, every log line is JSON."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway import demo
from kit.gateway import GGK, ggk, make_setup, rest, running, serve
from kit.harness import free_port
from routing.partners import PartnerRegistry
from tests.conftest import ROOT, SAMPLES


def cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GGK, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.slow
def test_init_twice_keeps_the_demo_and_force_moves_old_data_aside(tmp_path: Path) -> None:
    first = cli("init", "demo", "--port", str(free_port()), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    keyring = (tmp_path / "demo" / "keys" / "keyring.json").read_bytes()
    again = cli("init", "demo", cwd=tmp_path)
    assert again.returncode == 0 and "kept" in again.stdout
    assert (tmp_path / "demo" / "keys" / "keyring.json").read_bytes() == keyring
    (tmp_path / "demo" / "data" / "gateway.sqlite").write_bytes(b"old data")
    forced = cli("init", "demo", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "demo" / "keys" / "keyring.json").read_bytes() != keyring
    aside = list((tmp_path / "demo").glob("replaced-*"))
    assert len(aside) == 1 and (aside[0] / "data" / "gateway.sqlite").read_bytes() == b"old data"
    # the old data keeps the keyring that opens it, and the old configuration beside it
    assert (aside[0] / "keys" / "keyring.json").read_bytes() == keyring
    assert (aside[0] / "gateway.toml").is_file() and (aside[0] / "secrets").is_dir()
    assert not (tmp_path / "demo" / "data" / "gateway.sqlite").exists()


@pytest.mark.slow
async def test_serve_refuses_a_keyring_that_does_not_match_its_data(tmp_path: Path) -> None:
    setup = make_setup(tmp_path / "gw", 1)
    async with running(setup):
        pass  # the database now holds audit records under the demo's keys
    keys = setup.directory / "keys" / "keyring.json"
    other = tmp_path / "other"
    demo.init(other, port=free_port())
    shutil.copy(other / "keys" / "keyring.json", keys)
    code, out = await asyncio.wait_for(ggk(setup, "serve"), 60)
    assert code == 2 and "keyring does not match" in out and "Traceback" not in out
    code, out = await ggk(setup, "audit", "verify")
    assert code == 1 and "wrong keyring" in out


@pytest.mark.slow
async def test_the_demo_runs_twice_with_fresh(tmp_path: Path) -> None:
    setup = make_setup(tmp_path / "gw", 1)
    async with running(setup):
        for _ in range(2):
            for sample in ("iwmo/wmo301.xml", "envelopes/di01-wmo301-ggk0210.xml"):
                code, out = await ggk(
                    setup, "submit", "--as", "0150", "--fresh", str(SAMPLES / sample)
                )
                assert code == 0, out
                follow = re.search(r"\(ggk status (\S+)\)", out)
                assert follow, out
                code, shown = await ggk(setup, "status", follow.group(1))
                assert code == 0 and "None" not in shown, shown
        await ggk(setup, "submit", "--as", "0150", str(SAMPLES / "iwmo" / "wmo301.xml"))
        code2, out2 = await ggk(
            setup, "submit", "--as", "0150", str(SAMPLES / "iwmo" / "wmo301.xml")
        )
        assert code2 == 1 and "TR056" in out2  # without --fresh the same message is refused


@pytest.mark.slow
async def test_cli_pages_and_fails_clearly(tmp_path: Path) -> None:
    setup = make_setup(tmp_path / "gw", 1)
    async with running(setup):
        for _ in range(3):
            code, out = await ggk(
                setup, "submit", "--as", "12345678", "--fresh", str(SAMPLES / "iwmo" / "wmo323.xml")
            )
            assert code == 0, out
        token = setup.token("0150")
        status, page = await rest(setup, "GET", "/api/v1/inbox?limit=2", token=token)
        assert status == 200 and len(page["messages"]) == 2 and page["next"]
        status, rest_page = await rest(
            setup, "GET", f"/api/v1/inbox?limit=2&after={page['next']}", token=token
        )
        assert len(rest_page["messages"]) == 1 and rest_page["next"] is None
        code, out = await ggk(setup, "inbox", "0150", "--json")
        assert code == 0 and len(json.loads(out)["messages"]) == 3
        code, out = await ggk(setup, "replay", "f" * 32)
        assert code == 1 and "nothing to replay" in out
        code, out = await ggk(setup, "status", "f" * 32)
        assert code == 1 and "Traceback" not in out
        code, out = await ggk(setup, "status", "x", "--url", "https://127.0.0.1:1")
        assert code == 2 and "cannot reach the gateway at https://127.0.0.1:1" in out
        code, out = await ggk(setup, "certs", "revoke", "0177")
        assert code == 0 and "revoked client-0177.crt" in out
        code, out = await ggk(setup, "certs", "revoke", "0177")
        assert code == 0 and "revoked already" in out


@pytest.mark.slow
async def test_every_log_line_is_json_with_one_access_line_per_request(tmp_path: Path) -> None:
    setup = make_setup(tmp_path / "gw", 1)
    log = tmp_path / "gateway.log"
    process = await serve(setup, log)
    try:
        await rest(setup, "GET", "/api/v1/inbox?limit=abc", token=setup.token("0150"))
        await rest(setup, "GET", "/api/v1/messages/999990019", token=setup.token("0150"))
    finally:
        process.terminate()
        await process.wait()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    access = [line for line in lines if line.get("event") == "http.request"]
    assert {(a["path"], a["status"], a["caller"]) for a in access} >= {
        ("/api/v1/inbox", 400, "0150"),
        # a BSN where a message id belongs: refused for its shape (400), logged without it
        ("/api/v1/messages/[9 digits removed]", 400, "0150"),
        ("/healthz", 200, "anonymous"),
    }
    assert all("ms" in a and "abc" not in json.dumps(a) for a in access)


def test_partner_file_paths_are_relative_to_the_partners_file(tmp_path: Path) -> None:
    demo.init(tmp_path / "a", port=free_port())
    shutil.move(tmp_path / "a", tmp_path / "moved")
    registry = PartnerRegistry.load(tmp_path / "moved" / "partners.toml")
    cak = registry.get("CAK")
    assert cak is not None and cak.delivery.settings["path"] == str(
        tmp_path / "moved" / "drop" / "CAK"
    )


@pytest.mark.slow
def test_the_readme_validate_example_is_what_ggk_prints() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```\nINVALID ", 1)[1].split("```", 1)[0]
    example = ("INVALID " + block).strip().splitlines()
    done = subprocess.run(
        [GGK, "validate", "samples/invalid/wmo301-einddatum-voor-ingangsdatum.xml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.splitlines()[: len(example)] == example
