"""The trust boundary (issue #11) against a real gateway: conversations belong to their two
parties, delivered and saved files never collide or escape, connections are bounded, a
partner's error text is sealed, library logs are JSON without tracebacks, files are private."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import shutil
import sqlite3
import ssl
import stat
import time
import uuid
import zlib
from pathlib import Path

import pytest

from adapters.base import Outbound, PermanentError
from adapters.directory import DirectoryAdapter
from gateway import envelope as env
from gateway.admission import BadEncoding, BodyTooLarge, decode_body
from gateway.broker import sqlite_audit
from gateway.broker.sqlite import SqliteBroker
from gateway.config import ConnectionLimits
from gateway.connections import ConnectionTable
from gateway.keyring import Keyring
from gateway.standards import MESSAGES
from kit.gateway import (
    Setup,
    Sink,
    eventually,
    fo03_code,
    ggk,
    make_setup,
    post_soap,
    rest,
    running,
    serve,
)
from kit.harness import stored_message
from tests.conftest import SAMPLES

WMO301 = (SAMPLES / "iwmo" / "wmo301.xml").read_bytes()
WMO302 = (SAMPLES / "iwmo" / "wmo302.xml").read_bytes()


@pytest.fixture
def setup(tmp_path: Path, sink: Sink) -> Setup:
    return make_setup(tmp_path / "gw", sink.port)


def retour(partner: str, cross_ref: str, identificatie: str) -> bytes:
    """A WMO302 Du01 from zorgaanbieder ``partner`` to 0150 answering ``cross_ref``."""
    payload = WMO302.replace(b">12345678<", f">{partner}<".encode()).replace(
        b"WMO302R0001", identificatie.encode()
    )
    return env.build_du01(
        payload,
        zender=partner,
        zender_applicatie="ZorgSuite",
        ontvanger="0150",
        functie="WMO302",
        cross_ref=cross_ref,
    )


async def test_a_conversation_belongs_to_its_two_parties(setup: Setup) -> None:
    async with running(setup):
        heen_ref = str(uuid.uuid4())
        status, accepted = await rest(
            setup,
            "POST",
            "/api/v1/messages",
            token=setup.token("0150"),
            data=WMO301,
            headers={"Idempotency-Key": heen_ref},
        )
        assert status == 202, accepted
        heen_id = accepted["id"]

        # Another zorgaanbieder answers 0150's message: refused with the same code as a
        # reference that never passed (StUF043; tests/test_conversations.py compares the
        # whole answers), and nothing is linked to the conversation.
        for cross_ref, ident in ((heen_ref, "WMO302X0001"), (str(uuid.uuid4()), "WMO302X0002")):
            code, body = await post_soap(
                setup, retour("87654321", cross_ref, ident), token=setup.token("87654321")
            )
            assert code == 500 and fo03_code(body) == "StUF043", body
        _, view = await rest(setup, "GET", f"/api/v1/messages/{heen_id}", token=setup.token())
        assert [c["id"] for c in view["conversation"]] == [heen_id]
        _, late = await rest(setup, "GET", "/api/v1/admin/overdue?days=0", token=setup.token())
        assert heen_id in [m["id"] for m in late["overdue"]]

        # The intruder cannot see the message, by id or by referentienummer: 404 as unknown.
        for ref in (heen_id, heen_ref, "f" * 32):
            status, problem = await rest(
                setup, "GET", f"/api/v1/messages/{ref}", token=setup.token("87654321")
            )
            assert status == 404 and problem["title"] == "no such message"

        # Over REST the intruder's retour finds no heen message: the same words as for an
        # Identificatie that never passed, and no other partner's code in them.
        intruder = WMO302.replace(b">12345678<", b">87654321<")
        answers = []
        for payload in (intruder, intruder.replace(b"WMO301A0001", b"WMO301Q9999")):
            status, problem = await rest(
                setup, "POST", "/api/v1/messages", token=setup.token("87654321"), data=payload
            )
            answers.append((status, problem["code"], problem["title"]))
        assert answers[0] == answers[1] and answers[0][:2] == (422, "StUF043")
        assert "0150" not in answers[0][2] and "12345678" not in answers[0][2]

        # The real addressee answers: linked, no longer overdue, visible to both parties.
        code, _ = await post_soap(
            setup, retour("12345678", heen_ref, "WMO302X0003"), token=setup.token("12345678")
        )
        assert code == 200
        for viewer in ("0150", "12345678"):
            _, view = await rest(
                setup, "GET", f"/api/v1/messages/{heen_id}", token=setup.token(viewer)
            )
            assert len(view["conversation"]) == 2
        _, late = await rest(setup, "GET", "/api/v1/admin/overdue?days=0", token=setup.token())
        assert heen_id not in [m["id"] for m in late["overdue"]]
        # CAK received a copy of the heen message: it sees that message, not the retour.
        _, view = await rest(setup, "GET", f"/api/v1/messages/{heen_id}", token=setup.token("CAK"))
        assert [c["id"] for c in view["conversation"]] == [heen_id]
        assert [d["destination"] for d in view["deliveries"]] == ["CAK"] and not view["events"]

    # A clean stop signs the audit chain's tail.
    keys = Keyring.load(setup.directory / "keys" / "keyring.json")
    db = sqlite3.connect(setup.config().database)
    verdict = sqlite_audit.verify(db, keys)
    db.close()
    assert verdict.ok and verdict.unsigned_tail == 0 and verdict.checkpoints >= 2


def outbound(message_id: str, functie: str = "WMO301", ref: str = "r") -> Outbound:
    ref = ref if ref != "r" else "0e09a81f-64a0-4793-b946-d6538fb3f37e"
    return Outbound(1, message_id, "CAK", f"<{message_id}/>".encode(), ref, functie, 1)


async def test_directory_files_never_collide_escape_or_overwrite(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    adapter = DirectoryAdapter({"path": str(drop)}, timeout=1)
    # Same functie and referentienummer from two senders: two files.
    await adapter.deliver(outbound("a" * 32))
    await adapter.deliver(outbound("b" * 32))
    await adapter.deliver(outbound("a" * 32))  # a retry of the same message: nothing new
    names = sorted(p.name for p in drop.iterdir())
    assert len(names) == 2 and all(n.startswith("WMO301_0e09a81f") for n in names)
    assert stat.S_IMODE(drop.stat().st_mode) == 0o700
    assert all(stat.S_IMODE((drop / n).stat().st_mode) == 0o600 for n in names)
    # A sender-chosen functie never becomes a path.
    await adapter.deliver(outbound("c" * 32, functie="../../../escape"))
    assert not (tmp_path / "escape").exists() and not list(tmp_path.glob("*escape*"))
    assert any(p.name.startswith("bericht_") for p in drop.iterdir())
    # A planted symlink (or any other file) under a message's name is not overwritten or
    # followed: the delivery fails permanently, for an operator to look at.
    target = tmp_path / "victim"
    target.write_text("keep")
    name = f"WMO301_0e09a81f-64a0-4793-b946-d6538fb3f37e_{'d' * 32}.xml"
    (drop / name).symlink_to(target)
    with pytest.raises(PermanentError, match="not overwritten"):
        await adapter.deliver(outbound("d" * 32))
    assert target.read_text() == "keep"
    # A folder removed while the gateway runs is made again (0700) for the next file.
    shutil.rmtree(drop)
    await adapter.deliver(outbound("e" * 32))
    assert [p.name[-36:] for p in drop.iterdir()] == [f"{'e' * 32}.xml"]
    assert stat.S_IMODE(drop.stat().st_mode) == 0o700


def allow_text_functie(setup: Setup, functie: str) -> None:
    config = setup.config_path.read_text()
    setup.config_path.write_text(
        config.replace("text_functies = []", f"text_functies = [{json.dumps(functie)}]")
    )


async def send_text(setup: Setup, functie: str) -> None:
    """A text payload from zorgaanbieder 12345678 to gemeente 0150 (an inbox partner)."""
    text = env.build_di01(
        b"hello",
        zender="12345678",
        zender_applicatie="ZorgSuite",
        ontvanger="0150",
        functie=functie,
        bestandsnaam="note.txt",
    )
    code, body = await post_soap(setup, text, token=setup.token("12345678"))
    assert code == 200, fo03_code(body)


@pytest.mark.slow
async def test_inbox_save_builds_names_only_from_checked_parts(
    setup: Setup, tmp_path: Path
) -> None:
    allow_text_functie(setup, "../../../evil")
    async with running(setup):
        await send_text(setup, "../../../evil")
        save = tmp_path / "a" / "b" / "save"
        exit_code, out = await ggk(setup, "inbox", "0150", "--save", str(save))
        assert exit_code == 0, out
        files = list(save.iterdir())
        assert len(files) == 1 and re.fullmatch(r"bericht_[0-9a-f]{32}\.xml", files[0].name)
        assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
        assert stat.S_IMODE(save.stat().st_mode) == 0o700
        assert not list(tmp_path.rglob("evil*"))


@pytest.mark.slow
async def test_connections_are_bounded_per_peer_and_in_time(setup: Setup) -> None:
    config = setup.config_path.read_text()
    for key, value in (
        ("header_timeout", 0.5),
        ("keepalive_timeout", 0.5),
        ("max_connections_per_peer", 3),
    ):
        config = re.sub(rf"^{key} = .*$", f"{key} = {value}", config, flags=re.M)
    setup.config_path.write_text(config)
    context = ssl.create_default_context(cafile=setup.ca)

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(
            "127.0.0.1", setup.port, ssl=context, server_hostname="localhost"
        )

    async with running(setup):
        # Headers that never complete: closed after header_timeout.
        reader, writer = await connect()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert time.monotonic() - started < 3
        writer.close()
        # An idle keep-alive connection: closed after keepalive_timeout.
        reader, writer = await connect()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(4096), 5)
        assert answer.startswith(b"HTTP/1.1 200")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        # Three idle connections are this peer's share; the fourth is told so and closed.
        held = [await connect() for _ in range(3)]
        reader, writer = await connect()
        answer = await asyncio.wait_for(reader.read(), 5)
        assert answer.startswith(b"HTTP/1.1 503") and b"too many connections" in answer
        writer.close()
        for _, w in held:
            w.close()
        await eventually(lambda: _healthz_ok(setup))
        _, metrics = await rest(setup, "GET", "/metrics", token=setup.token())
        for reason in ("per_peer_cap", "header_timeout"):
            counted = re.search(
                rf'ggk_connections_closed_total{{reason="{reason}"}} (\d+)'.encode(), metrics
            )
            assert counted and int(counted.group(1)) >= 1, reason


async def _healthz_ok(setup: Setup) -> bool:
    try:
        return (await rest(setup, "GET", "/healthz"))[0] == 200
    except OSError:
        return False


def test_connection_table_caps_the_total() -> None:
    table = ConnectionTable(ConnectionLimits(max_connections=2, max_connections_per_peer=2))
    assert table.admit("10.0.0.1") and table.admit("10.0.0.2")
    assert not table.admit("10.0.0.3") and table.refused == 1
    table.release("10.0.0.1")
    assert table.admit("10.0.0.3") and table.by_peer == {"10.0.0.2": 1, "10.0.0.3": 1}


@pytest.mark.slow
async def test_a_partners_error_text_is_sealed(setup: Setup, sink: Sink, tmp_path: Path) -> None:
    """The receiving partner's Fo03 omschrijving (which may quote a BSN and a name) appears
    nowhere in the clear: not in the delivery state, history, status view, log or database
    file; an auditor finds it sealed in the audit log."""
    sink.fail_next, sink.fail_with = 1, "fo03-client"
    sink.fault_text = "Client 999990019 (H.M. Jansen-Tuinstra) onbekend"
    log = tmp_path / "gateway.log"
    process = await serve(setup, log)
    try:
        code, _ = await post_soap(
            setup,
            env.build_di01(
                WMO301,
                zender="0150",
                zender_applicatie="DOWRsociaal",
                ontvanger="12345678",
                functie="WMO301",
            ),
            partner="0150",
        )
        assert code == 200
        _, letters = await eventually(lambda: _dead_letters(setup), timeout=20)
        assert letters[0]["last_error"] == "Fo03 StUF058"
        _, view = await rest(
            setup, "GET", f"/api/v1/messages/{letters[0]['id']}", token=setup.token("0150")
        )
        assert "Tuinstra" not in json.dumps(view)
    finally:
        process.terminate()
        await process.wait()
    logged = log.read_bytes()
    assert b"Tuinstra" not in logged and b"999990019" not in logged
    for line in logged.splitlines():
        json.loads(line)  # every line is JSON, library records included
    for path in (setup.directory / "data").iterdir():
        assert b"Tuinstra" not in path.read_bytes(), path
    exit_code, out = await ggk(setup, "audit", "export", "--decrypt")
    assert exit_code == 0 and "Jansen-Tuinstra" in out
    sealed = [json.loads(line) for line in out.splitlines() if "delivery_failure_text" in line]
    assert sealed and sealed[0]["outcome"] == "Fo03 StUF058"


async def _dead_letters(setup: Setup) -> tuple[int, list[dict[str, object]]] | None:
    status, body = await rest(setup, "GET", "/api/v1/admin/dead-letters", token=setup.token())
    return (status, body["dead_letters"]) if body["dead_letters"] else None


async def test_database_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        broker = SqliteBroker(tmp_path / "data" / "gateway.sqlite", Keyring.generate())
        await broker.start()
        await broker.accept(stored_message(1))
        files = sorted((tmp_path / "data").iterdir())
        assert {p.name for p in files} >= {"gateway.sqlite", "gateway.sqlite-wal"}
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
        await broker.close()
    finally:
        os.umask(previous)


@pytest.mark.slow
async def test_audit_export_refuses_existing_files_and_symlinks(
    setup: Setup, tmp_path: Path
) -> None:
    async with running(setup):
        pass  # a database with an audit log (gateway started and stopped)
    out = tmp_path / "export.jsonl"
    out.write_text("earlier export")
    code, text = await ggk(setup, "audit", "export", "--decrypt", "--out", str(out))
    assert code == 2 and "--force" in text and out.read_text() == "earlier export"
    link = tmp_path / "link.jsonl"
    link.symlink_to(tmp_path / "elsewhere")
    code, text = await ggk(setup, "audit", "export", "--decrypt", "--out", str(link))
    assert code == 2 and "symbolic link" in text and not (tmp_path / "elsewhere").exists()
    out.chmod(0o644)
    code, _ = await ggk(setup, "audit", "export", "--decrypt", "--out", str(out), "--force")
    assert code == 0 and stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "gateway_started" in out.read_text()


async def test_metric_labels_come_from_closed_sets(setup: Setup) -> None:
    allow_text_functie(setup, "Bijlage 999990019")
    async with running(setup):
        await send_text(setup, "Bijlage 999990019")
        status, body = await rest(setup, "GET", "/metrics", token=setup.token())
    assert status == 200
    labels = set(re.findall(rb'functie="([^"]*)"', body))
    known = {m.code.encode() for m in MESSAGES.values()} | {b"other", b"Fo01"}
    assert b"999990019" not in body and labels <= known
    assert b"other" in labels


def test_encoded_bodies_are_decoded_within_the_limit() -> None:
    data = b"<a>" + b"x" * 100_000 + b"</a>"
    assert decode_body(gzip.compress(data), "gzip", 200_000) == data
    assert decode_body(zlib.compress(data), "deflate", 200_000) == data
    with pytest.raises(BodyTooLarge):
        decode_body(gzip.compress(b"a" * 50_000_000), "gzip", 1_000_000)
    with pytest.raises(BadEncoding):
        decode_body(b"not gzip", "gzip", 1_000)
    with pytest.raises(BadEncoding):
        decode_body(gzip.compress(data)[:-20], "gzip", 200_000)  # cut short


async def test_a_gzip_encoded_submit_is_accepted(setup: Setup) -> None:
    async with running(setup):
        status, body = await rest(
            setup,
            "POST",
            "/api/v1/messages",
            token=setup.token("0150"),
            data=gzip.compress(WMO301),
            headers={"Content-Encoding": "gzip"},
        )
    assert status == 202, body
