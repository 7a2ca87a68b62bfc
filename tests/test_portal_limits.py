"""The portal's request bodies and answers, without a browser: every form is read within the
gateway's body budget, bounded in size (413 from Content-Length, unread) and in time (408),
upload slots are shared fairly between partners, and every answer carries HSTS (over TLS) and
``Cache-Control: no-store``."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from pathlib import Path

import aiohttp
import pytest

from kit.gateway import Setup, Sink, make_setup, portal_session, running

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
BODY_TIMEOUT = 2.0
"""Small, so a trickled body is cut within the test's patience."""
PATIENCE = 20.0
"""How long a raw request waits for its answer (well past BODY_TIMEOUT; never reached when
the gateway behaves)."""


@pytest.fixture
def setup(tmp_path: Path, sink: Sink) -> Setup:
    return make_setup(tmp_path / "gw", sink.port, body_timeout=BODY_TIMEOUT)


def session_cookie(client: aiohttp.ClientSession) -> str:
    found = [c.value for c in client.cookie_jar if c.key == "__Host-ggk-session"]
    assert found
    return found[0]


async def raw_post(
    setup: Setup,
    path: str,
    cookie: str,
    head: dict[str, str],
    body: bytes,
    *,
    trickle: float | None = None,
) -> bytes:
    """A POST on its own TLS connection: ``body`` sent at once, or a byte every ``trickle``
    seconds for as long as the connection stays open; the start of the answer (empty when
    none came within PATIENCE)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", setup.port, ssl=setup.ssl_context(), server_hostname="localhost"
    )
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{setup.port}"]
    lines += [f"Cookie: __Host-ggk-session={cookie}"] + [f"{k}: {v}" for k, v in head.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    async def send() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            if trickle is None:
                writer.write(body)
                await writer.drain()
                return
            for byte in body:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(trickle)

    sender = asyncio.create_task(send())
    try:
        return await asyncio.wait_for(reader.read(4096), PATIENCE)
    except TimeoutError:
        return b""
    finally:
        sender.cancel()
        writer.close()


def status_of(answer: bytes) -> int | None:
    parts = answer.split(b" ", 2)
    return int(parts[1]) if answer.startswith(b"HTTP/1.1 ") and len(parts) > 2 else None


@pytest.mark.slow
async def test_a_form_is_read_within_its_limits_or_refused(setup: Setup) -> None:
    """Eight 24 MiB POSTs to the acknowledge form grew the gateway by 450 MiB: a form is a
    few KB, refused (413) by its Content-Length before a byte is read; a form without one is
    refused (411); a trickled one is cut at body_timeout (408)."""
    ack = f"/portal/inbox/{uuid.uuid4().hex}/ack"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with running(setup):
        client, csrf = await portal_session(setup, "0175")
        async with client:
            cookie = session_cookie(client)
            # 20 KB: under the message limit, far over a form's
            async with client.post(
                f"{setup.url}{ack}",
                data={"csrf": csrf, "pad": "x" * 20_000},
                ssl=setup.ssl_context(),
                allow_redirects=False,
            ) as answer:
                assert answer.status == 413, await answer.text()
            # 24 MiB announced, 1 KiB sent: answered at once, the rest never read
            big = await raw_post(
                setup, ack, cookie, {**form, "Content-Length": str(24 << 20)}, b"x" * 1024
            )
            assert status_of(big) == 413, big[:200]
            assert b"Connection: close" in big
            chunked = await raw_post(
                setup,
                ack,
                cookie,
                {**form, "Transfer-Encoding": "chunked"},
                b"5\r\ncsrf=\r\n0\r\n\r\n",
            )
            assert status_of(chunked) == 411, chunked[:200]
            trickled = await raw_post(
                setup,
                ack,
                cookie,
                {**form, "Content-Length": "200"},
                f"csrf={csrf}&".encode() + b"x" * 150,
                trickle=0.5,
            )
            assert status_of(trickled) == 408, trickled[:200]
            # a form within its limits still works (404: no such message in the inbox)
            async with client.post(
                f"{setup.url}{ack}", data={"csrf": csrf, "confirm": "yes"}, ssl=setup.ssl_context()
            ) as answer:
                assert answer.status == 404


@pytest.mark.slow
async def test_one_partner_trickling_two_uploads_leaves_a_slot_for_another(
    setup: Setup,
) -> None:
    """Two uploads trickled by one partner held both upload slots (everyone else got 503)
    for as long as they liked: a partner has one upload in flight, and its body arrives
    within body_timeout or is cut (408)."""
    boundary = "trickle"
    head = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": "5000",
    }
    body = f"--{boundary}\r\n".encode() + b"x" * 4000
    async with running(setup):
        provider, _ = await portal_session(setup, "12345678")
        gemeente, csrf = await portal_session(setup, "0175")
        async with provider, gemeente:
            cookie = session_cookie(provider)
            trickles = [
                asyncio.create_task(
                    raw_post(setup, "/portal/upload", cookie, head, body, trickle=0.2)
                )
                for _ in range(2)
            ]
            # the second of the provider's uploads is refused at once: the first holds a slot
            done, _ = await asyncio.wait(
                trickles, timeout=PATIENCE, return_when=asyncio.FIRST_COMPLETED
            )
            assert done, "neither trickled upload was answered"
            assert status_of(done.pop().result()) == 429
            # another partner's upload is checked meanwhile
            form = aiohttp.FormData()
            form.add_field("csrf", csrf)
            form.add_field("action", "check")
            form.add_field(
                "file", (SAMPLES / "iwmo" / "wmo301.xml").read_bytes(), filename="wmo301.xml"
            )
            async with gemeente.post(
                f"{setup.url}/portal/upload", data=form, ssl=setup.ssl_context()
            ) as page:
                text = await page.text()
                assert page.status == 200, text[:500]
                assert "wmo301.xml: in orde" in text
            # and the trickle is cut
            answers = [status_of(answer) for answer in await asyncio.gather(*trickles)]
            assert sorted(status or 0 for status in answers) == [408, 429], answers


@pytest.mark.slow
async def test_every_answer_is_https_only_and_kept_from_caches(setup: Setup) -> None:
    """HSTS on every answer over TLS; ``Cache-Control: no-store`` on every answer that can
    carry a message or a BSN (the REST inbox listing had none)."""
    async with running(setup):
        partner = setup.token("12345678")
        for method, path, token in (
            ("GET", "/api/v1/inbox", partner),
            ("GET", f"/api/v1/inbox/{uuid.uuid4().hex}", partner),
            ("GET", f"/api/v1/messages/{uuid.uuid4().hex}", partner),
            ("GET", "/api/v1/admin/dead-letters", setup.token()),
            ("GET", "/api/v1/admin/overdue", setup.token()),
            ("GET", "/portal/signin", None),
            ("GET", "/portal/inbox", None),
            ("GET", "/healthz", None),
        ):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with (
                aiohttp.ClientSession() as client,
                client.request(
                    method,
                    f"{setup.url}{path}",
                    headers=headers,
                    ssl=setup.ssl_context(),
                    allow_redirects=False,
                ) as answer,
            ):
                assert answer.headers.get("Strict-Transport-Security") == "max-age=31536000", path
                assert answer.headers.get("Cache-Control") == "no-store", path


@pytest.mark.slow
async def test_plain_http_answers_carry_no_hsts_but_stay_out_of_caches(tmp_path: Path) -> None:
    """HSTS over plain HTTP would be ignored at best; on a development gateway (plain_http,
    loopback only) it is left out, ``no-store`` stays."""
    setup = make_setup(tmp_path / "gw", 9)
    # the [tls] table left out (an unknown table would be refused, as a typo is)
    config = re.sub(r"^\[tls\]\n(?:(?!\[).*\n)*", "", setup.config_path.read_text(), flags=re.M)
    config = config.replace(f"port = {setup.port}\n", f"port = {setup.port}\nplain_http = true\n")
    setup.config_path.write_text(config)
    async with (
        running(setup),
        aiohttp.ClientSession() as client,
        client.get(
            f"http://127.0.0.1:{setup.port}/api/v1/inbox",
            headers={"Authorization": f"Bearer {setup.token('12345678')}"},
        ) as answer,
    ):
        assert answer.status == 200
        assert "Strict-Transport-Security" not in answer.headers
        assert answer.headers.get("Cache-Control") == "no-store"


async def _trickle_upload(setup: Setup, client: aiohttp.ClientSession) -> asyncio.Task[bytes]:
    """An upload of ``client``'s partner trickled a byte at a time: it holds a slot until
    the gateway cuts it (408 at BODY_TIMEOUT)."""
    boundary = "trickle"
    head = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": "5000",
    }
    body = f"--{boundary}\r\n".encode() + b"x" * 4000
    cookie = session_cookie(client)
    task = asyncio.create_task(raw_post(setup, "/portal/upload", cookie, head, body, trickle=0.2))
    await asyncio.sleep(0)
    return task


async def _settle(setup: Setup, client: aiohttp.ClientSession) -> None:
    """One round trip: the trickled requests sent before it have been taken in."""
    async with client.get(f"{setup.url}/healthz", ssl=setup.ssl_context()) as answer:
        assert answer.status == 200


async def _check_upload(setup: Setup, client: aiohttp.ClientSession, csrf: str) -> None:
    form = aiohttp.FormData()
    form.add_field("csrf", csrf)
    form.add_field("action", "check")
    form.add_field("file", (SAMPLES / "iwmo" / "wmo301.xml").read_bytes(), filename="wmo301.xml")
    async with client.post(
        f"{setup.url}/portal/upload", data=form, ssl=setup.ssl_context()
    ) as page:
        text = await page.text()
        assert page.status == 200, text[:500]
        assert "wmo301.xml: in orde" in text


async def test_two_partners_trickling_uploads_leave_slots_for_a_third(setup: Setup) -> None:
    """Two slots held by two partners' trickled uploads refused every other upload (503)
    until body_timeout (second review, S3): there are more slots now (portal_upload_slots,
    4 by default), so a third partner's upload is checked while both trickle."""
    async with running(setup):
        provider, _ = await portal_session(setup, "12345678")
        deventer, _ = await portal_session(setup, "0150")
        gemeente, csrf = await portal_session(setup, "0175")
        async with provider, deventer, gemeente:
            trickles = [await _trickle_upload(setup, c) for c in (provider, deventer)]
            await _settle(setup, gemeente)
            assert not any(t.done() for t in trickles)
            await _check_upload(setup, gemeente, csrf)
            answers = [status_of(answer) for answer in await asyncio.gather(*trickles)]
            assert answers == [408, 408], answers


async def test_an_upload_beyond_the_slots_waits_its_turn(setup: Setup) -> None:
    """With one slot held by a trickled upload, another partner's upload waits in line (its
    body unread) and is checked once the trickle is cut, instead of a 503 at once."""
    text = setup.config_path.read_text()
    setup.config_path.write_text(
        text.replace("portal_upload_slots = 4 ", "portal_upload_slots = 1 ")
    )
    assert "portal_upload_slots = 1" in setup.config_path.read_text()
    async with running(setup):
        provider, _ = await portal_session(setup, "12345678")
        gemeente, csrf = await portal_session(setup, "0175")
        async with provider, gemeente:
            trickle = await _trickle_upload(setup, provider)
            await _settle(setup, gemeente)
            await _check_upload(setup, gemeente, csrf)
            assert status_of(await trickle) == 408
