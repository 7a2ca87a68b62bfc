"""The partner lifecycle (issue 33.1) against a real gateway: ``ggk partners`` changes the
partner file safely, the running gateway takes each change up without a restart, every change
is audited and found by partner, and ``ggk partners check`` tries a delivery for real."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from gateway.devpki import DevCA
from kit.gateway import Setup, Sink, eventually, ggk, make_setup, portal_session, rest, running


@pytest.fixture
def setup(tmp_path: Path, sink: Sink) -> Setup:
    return make_setup(tmp_path / "gw", sink.port)


async def _inbox(setup: Setup, token: str) -> int:
    status, _ = await rest(setup, "GET", "/api/v1/inbox", token=token)
    return status


async def _cert_inbox(setup: Setup, partner: str) -> int:
    status, _ = await rest(setup, "GET", "/api/v1/inbox", partner_cert=partner)
    return status


async def test_tokens_issued_and_revoked_are_taken_up_without_a_restart(setup: Setup) -> None:
    async with running(setup):
        code, out = await ggk(setup, "partners", "token", "issue", "0150", "--json")
        assert code == 0, out
        issued = json.loads(out)
        token = issued["token"]
        text = (setup.directory / "partners.toml").read_text()
        assert token not in text  # only its digest is kept
        assert (setup.directory / "partners.toml.bak").exists()
        await eventually(lambda: _is(setup, token, 200), timeout=20, interval=0.2)
        assert await _inbox(setup, setup.token("0150")) == 200  # the old one still holds
        # a rotation: the new token, the old ones expiring after the grace period
        code, out = await ggk(setup, "partners", "token", "rotate", "0150", "--grace-hours", "0")
        assert code == 0, out
        await eventually(lambda: _is(setup, token, 401), timeout=20, interval=0.2)
        assert await _inbox(setup, setup.token("0150")) == 401
        new = out.splitlines()[1]
        assert await _inbox(setup, new) == 200
        shown = json.loads((await ggk(setup, "partners", "show", "0150", "--json"))[1])
        revoke = next(t["id"] for t in shown["tokens"] if t["valid"])
        code, out = await ggk(setup, "partners", "token", "revoke", "0150", revoke)
        assert code == 0, out
        await eventually(lambda: _is(setup, new, 401), timeout=20, interval=0.2)
        assert new not in json.dumps(shown)
    code, out = await ggk(setup, "audit", "search", "--partner", "0150", "--json")
    assert code == 0, out
    # the serving gateway audits each change it takes up, by partner
    said = " | ".join(r["outcome"] for r in json.loads(out) if r["action"] == "partner_changed")
    assert "0150: token t1 issued" in said and "0150: token t2 issued; token t0 expires" in said
    assert f"0150: token {revoke} revoked" in said
    # and the operator's acts themselves, written by the command while the gateway served
    # (a command's append was lost when the serving gateway wrote after it)
    acts = [r["action"] for r in json.loads(out) if r["actor"].startswith("operator ")]
    assert acts == ["partner_token_issued", "partner_token_rotated", "partner_token_revoked"]
    code, out = await ggk(setup, "audit", "verify")
    assert code == 0, out


async def _is(setup: Setup, token: str, status: int) -> bool:
    return await _inbox(setup, token) == status


async def test_a_disabled_partner_is_refused_and_a_bad_file_keeps_the_old_partners(
    setup: Setup, tmp_path: Path
) -> None:
    async with running(setup):
        assert await _cert_inbox(setup, "0150") == 200
        code, out = await ggk(setup, "partners", "disable", "0150")
        assert code == 0, out
        await eventually(
            lambda: _refused(setup, "0150"),
            timeout=20,
            interval=0.2,
        )
        assert await _inbox(setup, setup.token("0150")) == 401
        assert await _inbox(setup, setup.token("0175")) == 200  # the others unaffected
        listed = json.loads((await ggk(setup, "partners", "list", "--json"))[1])
        assert {p["id"]: p["status"] for p in listed}["0150"] == "disabled"
        # a hand edit the loader refuses: the gateway keeps the partners it has
        path = setup.directory / "partners.toml"
        good = path.read_text()
        path.write_text(good.replace('kind = "gemeente"', 'kind = "gemeentee"', 1))
        await ggk(setup, "partners", "list")  # some time passes; the watcher saw the file
        assert await _inbox(setup, setup.token("0175")) == 200
        path.write_text(good)
        code, out = await ggk(setup, "partners", "enable", "0150")
        assert code == 0, out
        await eventually(
            lambda: _accepted(setup, "0150"),
            timeout=20,
            interval=0.2,
        )
    code, out = await ggk(setup, "audit", "search", "--partner", "0150", "--json")
    said = [r["outcome"] for r in json.loads(out)]
    assert "0150: disabled" in said and "0150: enabled" in said


async def _refused(setup: Setup, partner: str) -> bool:
    return await _cert_inbox(setup, partner) in (401, 403)


async def _accepted(setup: Setup, partner: str) -> bool:
    return await _cert_inbox(setup, partner) == 200


async def test_add_a_partner_register_its_certificate_and_take_it_up(setup: Setup) -> None:
    ca = DevCA.load(setup.directory / "pki")
    issued = ca.issue("client-0363", "0363", organisation="Gemeente Amsterdam")
    async with running(setup):
        assert await _refused(setup, "0363")  # its certificate proves no one yet
        code, out = await ggk(
            setup, "partners", "add", "0363", "--name", "Gemeente Amsterdam", "--kind", "gemeente"
        )
        assert code == 0, out
        pem = setup.directory / "pki" / "client-0363.crt"
        code, out = await ggk(setup, "partners", "cert", "0363", str(pem), "--json")
        assert code == 0, out
        assert json.loads(out)["sha256"] == issued.sha256
        await eventually(lambda: _accepted(setup, "0363"), timeout=20, interval=0.2)
    data = tomllib.loads((setup.directory / "partners.toml").read_text())
    entry = next(p for p in data["partner"] if p["id"] == "0363")
    assert entry["cert_sha256"] == issued.sha256 and entry["delivery"] == {"adapter": "inbox"}


@pytest.mark.parametrize(
    "args",
    [
        ("add", "../etc", "--name", "x", "--kind", "gemeente"),
        ("add", "X1", "--name", "x", "--kind", "stad"),
        ("add", "0150", "--name", "dubbel", "--kind", "gemeente"),
        ("token", "revoke", "0150", "t9"),
        ("delivery", "0150", "--adapter", "http", "--set", "urll=http://127.0.0.1:1/"),
        ("delivery", "0150", "--adapter", "telepathy"),
        ("disable", "NOPE"),
    ],
)
async def test_refused_changes_leave_the_file_as_it_was(
    setup: Setup, args: tuple[str, ...]
) -> None:
    path = setup.directory / "partners.toml"
    before = path.read_bytes()
    code, out = await ggk(setup, "partners", *args)
    assert code == 2, out
    assert "Traceback" not in out
    assert path.read_bytes() == before


async def test_a_certificate_that_is_not_pem_is_refused(setup: Setup, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    code, out = await ggk(setup, "partners", "cert", "0150", str(junk))
    assert code == 2 and "not a PEM certificate" in out, out
    big = tmp_path / "big.pem"
    big.write_bytes(b"A" * (70 * 1024))
    code, out = await ggk(setup, "partners", "cert", "0150", str(big))
    assert code == 2 and "at most 64 KiB" in out, out


async def test_check_tries_the_delivery_for_real(setup: Setup, tmp_path: Path) -> None:
    """Against the gateway's own TLS endpoint (a real loopback TLS server): with the right CA
    every check passes; with the system's CAs the handshake is refused; a closed port fails
    the connection; a folder that is missing fails; a usage error exits 2."""
    ca = setup.ca
    async with running(setup):
        url = f"https://localhost:{setup.port}/ggk/OntvangAsynchroon"
        await ggk(
            setup,
            "partners",
            "delivery",
            "CAK",
            "--adapter",
            "http",
            "--set",
            f"url={url}",
            "--set",
            f"ca_file={ca}",
        )
        code, out = await ggk(setup, "partners", "check", "CAK")
        assert code == 0, out
        assert "ok   tls: TLSv1." in out and "days)" in out and "ok   http: OPTIONS" in out
        await ggk(setup, "partners", "delivery", "CAK", "--adapter", "http", "--set", f"url={url}")
        code, out = await ggk(setup, "partners", "check", "CAK")
        assert code == 1 and "FAIL tls: certificate refused" in out, out
    code, out = await ggk(setup, "partners", "check", "CAK")
    assert code == 1 and "FAIL connect" in out, out
    await ggk(
        setup,
        "partners",
        "delivery",
        "CAK",
        "--adapter",
        "directory",
        "--set",
        f"path={tmp_path / 'missing'}",
    )
    code, out = await ggk(setup, "partners", "check", "CAK")
    assert code == 1 and "FAIL folder" in out, out
    (tmp_path / "missing").mkdir()
    code, out = await ggk(setup, "partners", "check", "CAK")
    assert code == 0 and "ok   writable" in out, out
    code, out = await ggk(setup, "partners", "check", "NOPE")
    assert code == 2, out


async def test_the_operator_portal_changes_a_partner(setup: Setup) -> None:
    """The Partners page: listed with status, tokens and certificate; a token issued (shown
    once) works on the API within seconds, and is revoked; the partner disabled; a certificate
    registered from a PEM; every change audited under the operator's sign-in; a form without
    the session's CSRF token, or from a partner, is refused."""
    pem = (setup.directory / "pki" / "client-0150.crt").read_text()
    async with running(setup):
        operator, csrf = await portal_session(setup, None)
        partner, partner_csrf = await portal_session(setup, "0175")
        deventer, _ = await portal_session(setup, "0150")
        ssl = setup.ssl_context()
        base = f"{setup.url}/portal/partners"
        try:
            async with operator.get(base, ssl=ssl) as page:
                html = await page.text()
                assert page.status == 200 and "Gemeente Deventer" in html and "actief" in html
            async with operator.post(f"{base}/0150", data={"action": "issue"}, ssl=ssl) as page:
                assert page.status == 403  # no CSRF token
            async with partner.post(
                f"{base}/0150", data={"csrf": partner_csrf, "action": "disable"}, ssl=ssl
            ) as page:
                assert page.status == 403  # a partner is no operator
            async with operator.post(
                f"{base}/0150", data={"csrf": csrf, "action": "issue"}, ssl=ssl
            ) as page:
                html = await page.text()
                assert page.status == 200 and "eenmalig" in html
                assert page.headers["Cache-Control"] == "no-store"
            token = re.search(r"<p><code>([A-Za-z0-9_-]{40,})</code></p>", html)
            assert token, html
            await eventually(lambda: _is(setup, token.group(1), 200), timeout=20, interval=0.2)
            async with operator.post(
                f"{base}/0150", data={"csrf": csrf, "action": "revoke", "token": "t1"}, ssl=ssl
            ) as page:
                assert page.status == 200 and "ingetrokken" in await page.text()
            await eventually(lambda: _is(setup, token.group(1), 401), timeout=20, interval=0.2)
            async with operator.post(
                f"{base}/0150", data={"csrf": csrf, "action": "certificate", "pem": "nee"}, ssl=ssl
            ) as page:
                assert page.status == 400 and "not a PEM certificate" in await page.text()
            async with operator.post(
                f"{base}/0150", data={"csrf": csrf, "action": "certificate", "pem": pem}, ssl=ssl
            ) as page:
                assert page.status == 200 and "dagen" in await page.text()
            async with operator.post(
                f"{base}/0150", data={"csrf": csrf, "action": "disable"}, ssl=ssl
            ) as page:
                assert page.status == 200 and "uitgeschakeld" in await page.text()
            await eventually(lambda: _refused(setup, "0150"), timeout=20, interval=0.2)
            # the disabled partner's portal session ends at its next page
            async with deventer.get(
                f"{setup.url}/portal/inbox", ssl=ssl, allow_redirects=False
            ) as page:
                assert page.status == 303 and page.headers["Location"] == "/portal/signin"
        finally:
            await operator.close()
            await partner.close()
            await deventer.close()
    code, out = await ggk(setup, "audit", "search", "--partner", "0150", "--json")
    assert code == 0, out
    by_operator = [r for r in json.loads(out) if r["actor"].startswith("portal operator@")]
    assert [r["action"] for r in by_operator] == [
        "partner_token_issued",
        "partner_token_revoked",
        "partner_certificate_registered",
        "partner_disabled",
    ]


async def test_a_portal_session_signed_in_with_a_token_ends_when_that_token_is_revoked(
    setup: Setup,
) -> None:
    """A token is revoked because it leaked: whoever signed in to the portal with it must not
    keep reading the partner's messages for the rest of the session."""
    async with running(setup):
        client, _ = await portal_session(setup, "0150")
        try:

            async def page() -> int:
                async with client.get(
                    f"{setup.url}/portal/overdue",
                    ssl=setup.ssl_context(),
                    allow_redirects=False,
                ) as answer:
                    return answer.status

            assert await page() == 200
            shown = json.loads((await ggk(setup, "partners", "show", "0150", "--json"))[1])
            used = next(t["id"] for t in shown["tokens"] if t["valid"])
            code, out = await ggk(setup, "partners", "token", "issue", "0150", "--json")
            assert code == 0, out
            code, out = await ggk(setup, "partners", "token", "revoke", "0150", used)
            assert code == 0, out
            await eventually(lambda: _is(setup, setup.token("0150"), 401), timeout=20, interval=0.2)
            assert await page() != 200
        finally:
            await client.close()


async def test_a_partner_file_giving_two_partners_one_token_is_refused(setup: Setup) -> None:
    """A token proves the last partner holding its digest: a file (a hand edit, a pasted
    line) listing one partner's token digest under another lets the first speak as the
    second. Like a shared certificate or OIN, the file is refused (by every loader: the
    commands, the running gateway's reload, the Kafka follower)."""
    path = setup.directory / "partners.toml"
    text = path.read_text()
    digests = re.findall(r'^token_sha256 = "([0-9a-f]{64})"$', text, flags=re.M)
    path.write_text(text.replace(digests[1], digests[0], 1))
    code, out = await ggk(setup, "partners", "list")
    assert code != 0 and "share a token" in out, out
