"""Portal sessions and the sign-in limiter, without a browser."""

from __future__ import annotations

from gateway.broker.revocations import Revocations
from gateway.portal.session import SESSION_SECONDS, SessionKeys, SignInLimiter

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
    limiter = SignInLimiter(attempts=3, window=60.0, peers=2)
    for second in range(3):
        assert not limiter.blocked("10.0.0.1", float(second))
        limiter.failed("10.0.0.1", float(second))
    assert limiter.blocked("10.0.0.1", 10.0)
    assert not limiter.blocked("10.0.0.1", 61.0)  # the first failure left the window
    # bounded memory: a third peer pushes out the stalest
    limiter.failed("10.0.0.2", 100.0)
    limiter.failed("10.0.0.3", 101.0)
    assert len(limiter._failures) <= 2


def test_revocations_are_forgotten_when_their_sessions_expire_and_stay_bounded() -> None:
    revoked = Revocations(capacity=3)
    revoked.add("gone", 900.0, now=1000.0)  # already expired: nothing to remember
    assert not revoked.revoked("gone")
    for nonce, expires in (("a", 1100.0), ("b", 1200.0), ("c", 1300.0)):
        revoked.add(nonce, expires, now=1000.0)
    assert all(revoked.revoked(n) for n in "abc")
    revoked.add("d", 1400.0, now=1150.0)  # full: "a" expired and makes room
    assert not revoked.revoked("a") and all(revoked.revoked(n) for n in "bcd")
    revoked.add("e", 1500.0, now=1150.0)  # full of live ones: the soonest to expire goes
    assert len(revoked) == 3 and not revoked.revoked("b") and revoked.revoked("e")
