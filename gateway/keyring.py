"""Keys for the audit log and for payloads at rest.

One JSON file (or the ``GGK_KEYRING`` environment variable holding the same JSON): several
AES-256 data keys with one active (old ones stay to read old records), one HMAC key for BSN
pseudonyms (never rotated, so a BSN keeps its pseudonym and stays searchable), and one
Ed25519 key that signs audit checkpoints. The file must be mode 0600; a wrong or missing key
is a :class:`KeyringError` naming what is wrong — decryption never yields garbage, because
AES-GCM authenticates every record.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ENV_VAR = "GGK_KEYRING"
NONCE_BYTES = 12


class KeyringError(Exception):
    """The keyring is missing, unreadable, too open, or lacks the key a record needs."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise KeyringError(f"{what} is not valid base64") from None


@dataclass
class Keyring:
    data_keys: dict[str, bytes]
    active: str
    pseudonym_key: bytes
    signing_key: Ed25519PrivateKey
    path: Path | None = None

    # --- creation and storage ---------------------------------------------------------------

    @classmethod
    def generate(cls) -> Keyring:
        key_id = _new_key_id()
        return cls(
            {key_id: AESGCM.generate_key(256)},
            key_id,
            secrets.token_bytes(32),
            Ed25519PrivateKey.generate(),
        )

    @classmethod
    def load(cls, path: Path | None) -> Keyring:
        """From ``path`` (mode 0600 required) or, when it is None, from $GGK_KEYRING."""
        if path is None:
            text = os.environ.get(ENV_VAR)
            if not text:
                raise KeyringError(f"no keyring: configure [audit] keyring or set ${ENV_VAR}")
        else:
            try:
                mode = path.stat().st_mode
            except FileNotFoundError:
                raise KeyringError(f"keyring {path} does not exist") from None
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise KeyringError(
                    f"keyring {path} is readable by others "
                    f"(mode {stat.S_IMODE(mode):o}); chmod 600 it"
                )
            text = path.read_text(encoding="utf-8")
        try:
            raw = json.loads(text)
            keys = {k: _unb64(v, f"data key {k}") for k, v in raw["data_keys"].items()}
            ring = cls(
                keys,
                raw["active"],
                _unb64(raw["pseudonym_key"], "pseudonym key"),
                Ed25519PrivateKey.from_private_bytes(_unb64(raw["signing_key"], "signing key")),
                path,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise KeyringError(f"keyring is malformed: {exc}") from None
        if ring.active not in ring.data_keys:
            raise KeyringError(f"active key {ring.active} is not in the keyring")
        if any(len(k) != 32 for k in keys.values()) or len(ring.pseudonym_key) < 32:
            raise KeyringError("keyring keys have the wrong length (AES-256 needs 32 bytes)")
        return ring

    def save(self, path: Path) -> None:
        from cryptography.hazmat.primitives import serialization

        raw = {
            "active": self.active,
            "data_keys": {k: _b64(v) for k, v in self.data_keys.items()},
            "pseudonym_key": _b64(self.pseudonym_key),
            "signing_key": _b64(
                self.signing_key.private_bytes(
                    serialization.Encoding.Raw,
                    serialization.PrivateFormat.Raw,
                    serialization.NoEncryption(),
                )
            ),
        }
        temp = path.with_suffix(".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(raw, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        self.path = path

    def rotate(self) -> str:
        """Add a new data key and make it active; returns its id. Old keys stay."""
        key_id = _new_key_id()
        self.data_keys[key_id] = AESGCM.generate_key(256)
        self.active = key_id
        return key_id

    # --- use --------------------------------------------------------------------------------

    def encrypt(self, plaintext: bytes, aad: bytes) -> tuple[str, bytes]:
        """(key id, nonce + ciphertext) with the active key, bound to ``aad``."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        return self.active, nonce + AESGCM(self.data_keys[self.active]).encrypt(
            nonce, plaintext, aad
        )

    def decrypt(self, key_id: str, blob: bytes, aad: bytes) -> bytes:
        key = self.data_keys.get(key_id)
        if key is None:
            raise KeyringError(
                f"data key {key_id} is not in the keyring (rotated out or a different keyring?)"
            )
        try:
            return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except InvalidTag:
            raise KeyringError(
                f"decryption with key {key_id} failed: wrong key, or the record was altered"
            ) from None

    def pseudonym(self, value: str) -> str:
        """Keyed HMAC of a BSN: searchable, not reversible without the key."""
        return hmac.new(self.pseudonym_key, value.encode(), hashlib.sha256).hexdigest()

    def pseudonyms(self, values: tuple[str, ...]) -> tuple[str, ...]:
        """The pseudonyms of ``values`` (an audit record's BSNs), each once, sorted."""
        return tuple(sorted({self.pseudonym(value) for value in values}))

    @property
    def chain_key(self) -> bytes:
        """The HMAC key of the audit chain, derived from the pseudonym key (so existing
        keyrings have it): whoever lacks the keyring cannot compute a valid record hash."""
        return self._derived(b"ggk audit chain v1")

    @property
    def figures_key(self) -> bytes:
        """The key of beleidsinformatie pseudonyms and references (gateway/figures.py):
        derived like the chain key, and different from the audit pseudonyms, so the
        figures cannot be joined to the audit log by BSN."""
        return self._derived(b"ggk figures v1")

    @property
    def portal_key(self) -> bytes:
        """The key of portal session cookies and CSRF tokens: every process holding the
        keyring can check a session, no one else can make one."""
        return self._derived(b"ggk portal sessions v1")

    def _derived(self, label: bytes) -> bytes:
        """A key for one purpose, derived from the pseudonym key (so every existing keyring
        has it) and independent of every other purpose's."""
        return hmac.new(self.pseudonym_key, label, hashlib.sha256).digest()

    def sign(self, data: bytes) -> bytes:
        return self.signing_key.sign(data)

    @property
    def verify_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()


def _new_key_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("k%Y%m%d%H%M%S") + secrets.token_hex(2)
