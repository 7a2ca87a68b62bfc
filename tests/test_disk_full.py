"""A full data store (the [gateway] max_database_mb quota; SQLite's real SQLITE_FULL path):
new messages are refused with StUF046, the gateway keeps serving, nothing is corrupted, and
everything that got a Bv03 is delivered once there is room again."""

from __future__ import annotations

import re
import sqlite3
import uuid
from pathlib import Path

import pytest

from gateway import envelope as env
from gateway.broker import sqlite_audit
from gateway.keyring import Keyring
from kit.gateway import Sink, eventually, fo03_code, make_setup, post_soap, rest, running
from tests.conftest import sample


@pytest.mark.slow
async def test_full_store_refuses_cleanly_and_recovers(tmp_path: Path) -> None:
    sink = Sink()
    await sink.start()
    setup = make_setup(tmp_path / "gw", sink.port)
    config = setup.config_path.read_text()
    setup.config_path.write_text(config.replace("[gateway]\n", "[gateway]\nmax_database_mb = 1\n"))
    confirmed: list[str] = []
    refused: list[str] = []
    try:
        async with running(setup):
            for i in range(2000):
                ref = str(uuid.uuid4())
                payload = (
                    sample("iwmo/wmo301.xml")
                    .encode()
                    .replace(b"WMO301A0001", f"F{i:011d}".encode())
                )
                data = env.build_di01(
                    payload,
                    zender="0150",
                    zender_applicatie="DOWRsociaal",
                    ontvanger="12345678",
                    functie="WMO301",
                    referentienummer=ref,
                )
                status, body = await post_soap(setup, data, partner="0150")
                if status == 200:
                    confirmed.append(ref)
                    continue
                assert fo03_code(body) == "StUF046" and b"soapenv:Server" in body
                refused.append(ref)
                if len(refused) == 3:
                    break
            assert confirmed and len(refused) == 3, "the quota was never reached"
            assert (await rest(setup, "GET", "/healthz"))[0] == 200
        database = setup.directory / "data" / "gateway.sqlite"
        db = sqlite3.connect(database)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {r[0] for r in db.execute("SELECT referentienummer FROM messages")}
        assert set(confirmed) <= stored and not set(refused) & stored
        keys = Keyring.load(setup.directory / "keys" / "keyring.json")
        assert sqlite_audit.verify(db, keys).ok
        db.close()

        setup.config_path.write_text(
            re.sub(
                r"max_database_mb = 1\n", "max_database_mb = 200\n", setup.config_path.read_text()
            )
        )
        async with running(setup):
            await eventually(lambda: set(confirmed) <= set(sink.referenties()), timeout=60)
            status, _ = await post_soap(
                setup,
                env.build_di01(
                    sample("iwmo/wmo301.xml").encode().replace(b"WMO301A0001", b"F99999999999"),
                    zender="0150",
                    zender_applicatie="DOWRsociaal",
                    ontvanger="12345678",
                    functie="WMO301",
                ),
                partner="0150",
            )
            assert status == 200
    finally:
        await sink.stop()
