"""The business system's control key (issue 16 item 2; SPEC X2): it signs every remote
disconnect, reconnect and ampere limit for one meter, a validity window and a nonce; meters are
provisioned with its public key and refuse what it did not sign (``aroute.authorization``).

The key is kept apart from the head-end's A-route keys: the composition root holds it for the
API (the business system's front door); the head-end only carries what was signed. On disk it is
a PEM file written 0600, like the other secrets (``kenshin.secrecy``).
"""

from __future__ import annotations

import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from kenshin.aroute.authorization import EmergencyDeclaration, signed_bytes
from kenshin.aroute.frames import Authorization, CommandKind
from kenshin.errors import InvalidSetting
from kenshin.secrecy import private_umask

DEFAULT_VALIDITY_US = 3_600_000_000  # an hour: the head-end's default command expiry
CONTROL_KEY_FILE = "kenshin-control.key"  # in the store's directory; its public half: + ".pub"


def public_key_path(path: Path) -> Path:
    return path.with_name(path.name + ".pub")


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The control public key meters are provisioned with (a PEM file)."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise InvalidSetting(f"no control public key at {path}") from None
    except (ValueError, TypeError) as exc:
        raise InvalidSetting(f"{path} is not a public key (PEM): {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidSetting(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


class ControlSigner:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self._last_nonce = 0
        self._lock = threading.Lock()

    @classmethod
    def generate(cls) -> ControlSigner:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_file(cls, path: Path) -> ControlSigner:
        """The key at ``path``; a new one written there (0600) when there is none, with its
        public half beside it (``public_key_path``) for the meters."""
        if not path.exists():
            signer = cls.generate()
            pem = signer._key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            public = signer.public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            with private_umask():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(pem)
            public_key_path(path).write_bytes(public)
            return signer
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise InvalidSetting(f"{path} is not a control key (PEM, Ed25519): {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise InvalidSetting(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
        return cls(key)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    def authorize(
        self,
        device_id: int,
        kind: CommandKind,
        args: tuple[int, ...],
        now_us: int,
        valid_us: int = DEFAULT_VALIDITY_US,
    ) -> Authorization:
        """Sign ``kind`` with ``args`` for the meter ``device_id``, valid from ``now_us`` for
        ``valid_us``. Nonces rise with the clock and never repeat."""
        a1, a2, a3 = (*args, 0, 0, 0)[:3]
        with self._lock:
            nonce = self._last_nonce = max(self._last_nonce + 1, now_us)
        message = signed_bytes(device_id, kind, (a1, a2, a3), now_us, now_us + valid_us, nonce)
        return Authorization(now_us, now_us + valid_us, nonce, self._key.sign(message))

    def declare_emergency(
        self, approvers: tuple[str, str], start_us: int, end_us: int
    ) -> EmergencyDeclaration:
        """Sign an emergency two approvers declared, for the head-end (``hes.x1``)."""
        unsigned = EmergencyDeclaration(start_us, end_us, approvers, b"")
        return EmergencyDeclaration(
            start_us, end_us, approvers, self._key.sign(unsigned.signed_bytes())
        )
