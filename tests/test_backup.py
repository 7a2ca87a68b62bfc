"""Backup and restore (issue 33.3): a gateway backed up while it takes messages, restored into
a new folder, verifies its audit trail and has every message that had its Bv03 (202) before
the backup began; a damaged backup, a wrong keyring and a crafted manifest are refused."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from gateway import demo
from kit.gateway import GGK, Setup, Sink, make_setup, rest, running
from kit.harness import free_port
from tests.conftest import SAMPLES

WMO301 = (SAMPLES / "iwmo" / "wmo301.xml").read_bytes()


def ggk_run(*args: str | Path) -> tuple[int, str]:
    done = subprocess.run(
        [GGK, *map(str, args)], capture_output=True, text=True, timeout=300, check=False
    )
    return done.returncode, done.stdout + done.stderr


async def _load(setup: Setup, answered: list[tuple[float, str]], stop: asyncio.Event) -> None:
    """Submit messages one after another until ``stop``; each 202 with the time it came."""
    while not stop.is_set():
        payload = WMO301.replace(b"WMO301A0001", uuid.uuid4().hex[:12].encode())
        status, body = await rest(
            setup, "POST", "/api/v1/messages", token=setup.token("0150"), data=payload
        )
        assert status == 202, body
        answered.append((time.monotonic(), body["id"]))


@pytest.mark.slow
async def test_backup_under_load_restores_every_acknowledged_message(
    tmp_path: Path, sink: Sink
) -> None:
    setup = make_setup(tmp_path / "gw", sink.port)
    answered: list[tuple[float, str]] = []
    stop = asyncio.Event()
    async with running(setup):
        load = asyncio.create_task(_load(setup, answered, stop))
        while len(answered) < 30:
            await asyncio.sleep(0.05)
        began = time.monotonic()
        code, out = await asyncio.to_thread(
            ggk_run,
            "backup",
            tmp_path / "backup",
            "--keyring",
            tmp_path / "offline" / "keyring.json",
            "--config",
            setup.config_path,
        )
        stop.set()
        await load
    assert code == 0, out
    before = [mid for at, mid in answered if at < began]
    assert len(before) >= 30 and len(answered) > len(before)  # the load went on during it
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert manifest["keyring"] == "written separately"
    assert not any("keyring" in name for name in manifest["files"])  # never beside the data
    assert (tmp_path / "offline" / "keyring.json").stat().st_mode & 0o777 == 0o600

    code, out = await asyncio.to_thread(
        ggk_run,
        "restore",
        tmp_path / "backup",
        tmp_path / "restored",
        "--keyring",
        tmp_path / "offline" / "keyring.json",
    )
    assert code == 0, out
    restored = Setup(tmp_path / "restored", setup.port)
    code, out = await asyncio.to_thread(
        ggk_run, "audit", "verify", "--config", restored.config_path
    )
    assert code == 0 and "intact" in out, out
    async with running(restored):
        for mid in before:
            status, body = await rest(
                restored, "GET", f"/api/v1/messages/{mid}", token=restored.token()
            )
            assert status == 200, (mid, body)


@pytest.mark.slow
async def test_restore_refuses_damage_a_wrong_keyring_and_escapes(tmp_path: Path) -> None:
    setup = make_setup(tmp_path / "gw", free_port())
    async with running(setup):
        await rest(setup, "POST", "/api/v1/messages", token=setup.token("0150"), data=WMO301)
    code, out = await asyncio.to_thread(
        ggk_run, "backup", tmp_path / "b", "--config", setup.config_path
    )
    assert code == 0 and "NOT in the backup" in out, out
    keyring = setup.directory / "keys" / "keyring.json"

    other = tmp_path / "other"
    demo.init(other, port=free_port())
    code, out = await asyncio.to_thread(
        ggk_run,
        "restore",
        tmp_path / "b",
        tmp_path / "r1",
        "--keyring",
        other / "keys/keyring.json",
    )
    assert code == 2 and "keyring does not match" in out, out

    damaged = tmp_path / "damaged"
    shutil.copytree(tmp_path / "b", damaged)
    store = damaged / "data" / "gateway.sqlite"
    store.write_bytes(store.read_bytes()[:-4096])
    code, out = await asyncio.to_thread(
        ggk_run, "restore", damaged, tmp_path / "r2", "--keyring", keyring
    )
    assert code == 2 and "damaged" in out and not (tmp_path / "r2").exists(), out

    crafted = tmp_path / "crafted"
    shutil.copytree(tmp_path / "b", crafted)
    manifest = json.loads((crafted / "manifest.json").read_text())
    manifest["files"]["../../escaped"] = {"sha256": "0" * 64, "bytes": 0}
    (crafted / "manifest.json").write_text(json.dumps(manifest))
    code, out = await asyncio.to_thread(
        ggk_run, "restore", crafted, tmp_path / "r3", "--keyring", keyring
    )
    assert code == 2 and "outside the backup" in out, out
    assert not (tmp_path / "escaped").exists()

    code, out = await asyncio.to_thread(
        ggk_run, "backup", tmp_path / "b", "--config", setup.config_path
    )
    assert code == 2 and "not empty" in out
    code, out = await asyncio.to_thread(
        ggk_run,
        "backup",
        tmp_path / "b2",
        "--keyring",
        tmp_path / "b2" / "k.json",
        "--config",
        setup.config_path,
    )
    assert code == 2 and "outside the backup" in out


async def test_a_crafted_manifest_cannot_reach_outside_the_backup_or_the_new_folder(
    tmp_path: Path,
) -> None:
    """The manifest's ``config``, ``stores`` and ``data_dir`` and the backup's files are the
    backup author's: a restore writes nothing outside its new folder, reads nothing outside
    the backup (a symbolic link), and takes no configuration smuggled in a folder name."""
    setup = make_setup(tmp_path / "gw", free_port())
    code, out = await asyncio.to_thread(
        ggk_run, "backup", tmp_path / "b", "--config", setup.config_path
    )
    assert code == 0, out
    keyring = setup.directory / "keys" / "keyring.json"
    victim = tmp_path / "victim" / "gateway.toml"
    victim.parent.mkdir()
    victim.write_text('data_dir = "/srv/live"\n')
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the backup\n")

    def crafted(name: str, change: Any) -> Path:
        folder = tmp_path / name
        shutil.copytree(tmp_path / "b", folder, symlinks=True)
        manifest = json.loads((folder / "manifest.json").read_text())
        change(folder, manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))
        return folder

    def config_outside(folder: Path, manifest: dict[str, Any]) -> None:
        manifest["config"] = "../victim/gateway.toml"

    def store_outside(folder: Path, manifest: dict[str, Any]) -> None:
        manifest["stores"] = {"../gw/data/gateway.sqlite": {}}

    def injected(folder: Path, manifest: dict[str, Any]) -> None:
        manifest["data_dir"] = 'data"\nexec = "evil'

    def linked(folder: Path, manifest: dict[str, Any]) -> None:
        (folder / "linked.txt").symlink_to(secret)
        manifest["files"]["linked.txt"] = {
            "sha256": hashlib.sha256(secret.read_bytes()).hexdigest(),
            "bytes": secret.stat().st_size,
        }

    for n, change in enumerate((config_outside, store_outside, injected, linked)):
        source = crafted(f"c{n}", change)
        code, out = await asyncio.to_thread(
            ggk_run, "restore", source, tmp_path / f"r{n}", "--keyring", keyring
        )
        assert code == 2 and "refused" in out and "Traceback" not in out, (change, out)
        assert not (tmp_path / f"r{n}").exists(), change
    assert victim.read_text() == 'data_dir = "/srv/live"\n'
