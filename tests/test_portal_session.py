"""Portal sessions and the sign-in limiter, without a browser."""

from __future__ import annotations

import pytest

from gateway.broker.revocations import Revocations
from gateway.portal.limits import WindowLimit
from gateway.portal.session import SESSION_SECONDS, SessionKeys

KEYS = SessionKeys(b"k" * 32)


def test_a_session_reads_back_until_it_expires() -> None:
    session, cookie = KEYS.mint("0150", False, "token", now=1000.0)
    assert KEYS.read(cookie, 1000.0 + SESSION_SECONDS - 1) == session
    assert KEYS.read(cookie, 1000.0 + SESSION_SECONDS) is None


def test_an_altered_forged_or_foreign_cookie_is_no_session() -> None:
    _, cookie = KEYS.mint("0150", False, "token", now=1000.0)
    payload, mac = cookie.split(".")
    _, admin = KEYS.mint(None, True, "token", now=1000.0)
    other = "B" if mac.endswith("A") else "A"  # "A" alone left 1 in 16 unaltered
    for bad in (
        f"{admin.split('.')[0]}.{mac}",  # another payload under this signature
        f"{payload}.{mac[:-1]}{other}",
        f"{payload}.",
        "",
        "a.b.c",
        "x" * 5000,
        cookie.replace(".", ""),
    ):
        assert KEYS.read(bad, 1000.0) is None, bad
    assert SessionKeys(b"o" * 32).read(cookie, 1000.0) is None  # another gateway's key


def test_csrf_tokens_belong_to_one_nonce() -> None:
    token = KEYS.csrf("nonce-a")
    assert KEYS.csrf_ok("nonce-a", token)
    assert not KEYS.csrf_ok("nonce-b", token)
    assert not KEYS.csrf_ok(None, token)
    assert not KEYS.csrf_ok("nonce-a", None)
    assert not KEYS.csrf_ok("nonce-a", token + "x" * 200)


def test_the_limiter_blocks_after_the_attempts_and_forgets_after_the_window() -> None:
    limiter = WindowLimit(3, 60.0, keys=2)
    for second in range(3):
        assert not limiter.wait("10.0.0.1", float(second))
        limiter.note("10.0.0.1", float(second))
    assert limiter.wait("10.0.0.1", 10.0) == pytest.approx(50.0)  # until the first leaves
    assert not limiter.wait("10.0.0.1", 61.0)  # the first left the window
    # bounded memory: a third key pushes out the stalest
    limiter.note("10.0.0.2", 100.0)
    limiter.note("10.0.0.3", 101.0)
    assert len(limiter) <= 2


def test_revocations_are_forgotten_when_their_sessions_expire_never_before() -> None:
    revoked = Revocations(capacity=3)
    revoked.add("gone", 900.0, now=1000.0)  # already expired: nothing to remember
    assert not revoked.revoked("gone")
    for nonce, expires in (("a", 1100.0), ("b", 1200.0), ("c", 1300.0)):
        revoked.add(nonce, expires, now=1000.0)
    assert all(revoked.revoked(n) for n in "abc")
    assert revoked.full_for(1000.0) == 100.0  # until "a" expires
    revoked.add("d", 1400.0, now=1150.0)  # "a" expired and made room
    assert not revoked.revoked("a") and all(revoked.revoked(n) for n in "bcd")
    # full of live ones: a sign-out still holds, and none is forgotten to make room for it
    revoked.add("e", 1500.0, now=1150.0)
    assert len(revoked) == 4 and all(revoked.revoked(n) for n in "bcde")
    assert revoked.full_for(1150.0) == 50.0  # sign-ins wait until "b" expires
    revoked.add("b", 1250.0, now=1150.0)  # the same nonce again (a replay): one entry
    assert len(revoked) == 4
    assert revoked.full_for(1250.0) == 50.0 and not revoked.revoked("b")  # c, d, e left
    assert revoked.full_for(1300.0) == 0.0 and len(revoked) == 2
