"""Portal sessions: who a browser is, without server-side state.

A session is a cookie holding who signed in, when it expires and a random nonce, with an
HMAC under a key derived from the keyring: every gateway process (and a restarted one) can
check it, and no one without the keyring can make one. It is minted fresh at every sign-in
(a cookie planted before sign-in is never promoted: no session fixation), lives
``SESSION_SECONDS`` and is ``Secure; HttpOnly; SameSite=Strict`` under the ``__Host-``
prefix (only this host, path /, never over plain HTTP).

Every form carries a CSRF token derived from the session's nonce (before sign-in: from a
pre-session cookie, double-submit), and a POST whose Origin is another site's is refused
whatever its token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

SESSION_COOKIE = "__Host-ggk-session"
PRESESSION_COOKIE = "__Host-ggk-signin"
SESSION_SECONDS = 20 * 60
"""Short: a stolen cookie is worth little for long, and sign-in is one form away."""
TOKEN_MARK = 16
"""Hex digits of a token's SHA-256 a session keeps (names the token, reveals nothing of it)."""


@dataclass(frozen=True, slots=True)
class Session:
    partner: str | None
    """The partner signed in, or None for the operator."""
    admin: bool
    expires: float
    nonce: str
    via: str
    """``certificate`` or ``token``: how the sign-in was proven."""
    token: str = ""
    """A partner's token sign-in: the start of the token's digest, so the session ends when
    that token is revoked or expires (a leaked token's session must not outlive it)."""


class SessionKeys:
    """Signs and checks session cookies and CSRF tokens."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, label: str, data: bytes) -> str:
        digest = hmac.new(self._key, label.encode() + b"\x00" + data, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def mint(
        self, partner: str | None, admin: bool, via: str, now: float, token: str = ""
    ) -> tuple[Session, str]:
        """A new session and its cookie value."""
        session = Session(
            partner, admin, now + SESSION_SECONDS, secrets.token_urlsafe(18), via, token
        )
        body = json.dumps(
            {"p": partner, "a": admin, "e": session.expires, "n": session.nonce, "v": via}
            | ({"t": token} if token else {}),
            separators=(",", ":"),
        ).encode()
        payload = base64.urlsafe_b64encode(body).decode().rstrip("=")
        return session, f"{payload}.{self._mac('session', payload.encode())}"

    def read(self, cookie: str | None, now: float) -> Session | None:
        """The session of a cookie, or None when absent, forged, altered or expired."""
        if not cookie or len(cookie) > 1024 or cookie.count(".") != 1:
            return None
        payload, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac("session", payload.encode())):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            session = Session(
                data["p"],
                bool(data["a"]),
                float(data["e"]),
                str(data["n"]),
                str(data["v"]),
                str(data.get("t", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > now else None

    def csrf(self, nonce: str) -> str:
        """The token every form of a session (or pre-session) carries."""
        return self._mac("csrf", nonce.encode())

    def csrf_ok(self, nonce: str | None, token: str | None) -> bool:
        return bool(nonce and token) and hmac.compare_digest(
            self.csrf(nonce or ""), (token or "")[:100]
        )
