"""What an application needs from its site's KME: the two ETSI GS QKD 014 key calls.

An application is an SAE. As *master* it asks its KME for fresh keys for a named slave SAE
(``enc_keys``) and learns each key's ID; as *slave* it asks its own KME for the keys that a named
master obtained, by ID (``dec_keys``). :class:`KeySource` is exactly that contract, so the apps run
against any 014 KME (ours through ``qkdnet.kms.client``, or a vendor's).

Keys are :class:`QuantumKey` objects whose ``repr`` never shows the key bytes, so a key that ends
up in a log line or an exception shows only its ID.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class QuantumKey:
    """One key delivered by a KME: its UUID ``key_id`` and the secret ``key`` bytes (never shown)."""

    key_id: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        uuid.UUID(self.key_id)  # 014 key IDs are UUID strings; anything else is a KME bug

    @property
    def id_bytes(self) -> bytes:
        """The 16-byte binary form of the key ID, as carried in frame headers."""
        return uuid.UUID(self.key_id).bytes


@dataclass(frozen=True)
class PoolStatus:
    """The part of the 014 Status object the apps use (sizes in bits)."""

    key_size: int
    stored_key_count: int
    max_key_per_request: int
    max_key_size: int
    min_key_size: int


class KeySourceError(Exception):
    """The KME could not deliver keys. The message says what happened and how to fix it."""


class KMEUnreachableError(KeySourceError):
    """No KME answered at the configured URL (wrong URL, KME down, TLS handshake failed)."""


class KMERefusedError(KeySourceError):
    """The KME refused the request (401: certificate not accepted for this SAE; 400: bad request)."""


class PoolDepletedError(KeySourceError):
    """The KME has too few keys for this pair of SAEs right now (014 answers 503)."""


@runtime_checkable
class KeySource(Protocol):
    """The ETSI GS QKD 014 key calls of one SAE towards its own KME."""

    def enc_keys(self, slave_sae_id: str, number: int, size_bits: int) -> list[QuantumKey]:
        """Get ``number`` fresh keys of ``size_bits`` shared with ``slave_sae_id`` (014 Get key)."""
        ...

    def dec_keys(self, master_sae_id: str, key_ids: Sequence[str]) -> list[QuantumKey]:
        """Get the keys ``master_sae_id`` obtained, in the order of ``key_ids`` (014 Get key with IDs)."""
        ...

    def status(self, slave_sae_id: str) -> PoolStatus:
        """The KME's key pool towards ``slave_sae_id`` (014 Get status)."""
        ...
