"""Key material at rest: AES-256-GCM under the KME's master key.

Every stored key unit is sealed with a fresh 96-bit nonce and bound to its (link, key_ID) as
associated data, so a row copied onto another ID no longer opens. The master key lives in a file
of 32 random bytes (mode 0600) that only the KME reads.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MASTER_KEY_BYTES = 32
_NONCE_BYTES = 12


class Sealer:
    """Seal and open key material with AES-256-GCM (nonce ‖ ciphertext ‖ tag)."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != MASTER_KEY_BYTES:
            raise ValueError(f"master key must be {MASTER_KEY_BYTES} bytes (got {len(master_key)})")
        self._aead = AESGCM(master_key)

    def seal(self, material: bytes, link: str, key_id: str) -> bytes:
        """Encrypt ``material`` bound to ``link``/``key_id``."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, material, f"{link}/{key_id}".encode())

    def open(self, sealed: bytes, link: str, key_id: str) -> bytes:
        """Decrypt what :meth:`seal` produced; raises ``InvalidTag`` if it was altered or moved."""
        nonce, body = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
        return self._aead.decrypt(nonce, body, f"{link}/{key_id}".encode())


def write_master_key(path: Path) -> None:
    """Create a new master key file (32 random bytes, mode 0600); never overwrites one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(os.urandom(MASTER_KEY_BYTES))


def read_master_key(path: Path) -> bytes:
    """Read a master key file, refusing one that other users could read."""
    mode = path.stat().st_mode & 0o077
    if mode:
        raise PermissionError(f"{path}: master key file must not be readable by others (chmod 600)")
    data = path.read_bytes()
    if len(data) != MASTER_KEY_BYTES:
        raise ValueError(
            f"{path}: master key file must hold {MASTER_KEY_BYTES} bytes (got {len(data)})"
        )
    return data
