"""The :class:`KeySource` of an SAE backed by a real KME: ETSI GS QKD 014 over mutual TLS.

A thin adapter over ``qkdnet.kms.client.KMEClient`` (any 014 KME works: the calls are the
standard ``status``, ``enc_keys`` and ``dec_keys``). It turns HTTP and TLS failures into the
apps' errors with a message saying what to fix, and wraps keys in :class:`QuantumKey` so that
their bytes never appear in a ``repr``, a log line or an error message.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import httpx

from qkdnet.apps.keysource import (
    KeySourceError,
    KMERefusedError,
    KMEUnreachableError,
    PoolDepletedError,
    PoolStatus,
    QuantumKey,
)
from qkdnet.kms.client import KMEClient, KMEClientError

T = TypeVar("T")


class KMEKeySource:
    """One SAE's view of its own KME (thread-safe: the channel prefetches on a second thread)."""

    def __init__(self, client: KMEClient, url: str) -> None:
        self._client = client
        self._url = url
        self._lock = threading.Lock()

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            with self._lock:
                return fn()
        except KMEClientError as exc:
            if exc.status == 503:
                raise PoolDepletedError(f"KME {self._url}: {exc.message}") from None
            if exc.status == 401:
                raise KMERefusedError(
                    f"KME {self._url} refused {what} (401 unauthorized): this SAE's certificate "
                    "is not registered there for this key exchange; check --cert and --sae-id"
                ) from None
            raise KMERefusedError(
                f"KME {self._url} refused {what} ({exc.status}): {exc.message}"
            ) from None
        except httpx.ConnectError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, ssl.SSLError) or "SSL" in str(exc) or "certificate" in str(exc):
                raise KMERefusedError(
                    f"TLS with the KME at {self._url} failed ({exc}); check that --cert/--key and "
                    "--ca belong to this network's PKI"
                ) from None
            raise KMEUnreachableError(
                f"no KME answered at {self._url} ({exc}); check --kme-url and that the KME runs"
            ) from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            # With TLS 1.3 a KME that rejects the client certificate closes the connection
            # after the handshake, so the refusal shows up on the first read.
            raise KMERefusedError(
                f"the KME at {self._url} closed the connection during {what} ({exc}); most "
                "likely it does not accept this SAE's TLS certificate: --cert/--key must be "
                "issued by the CA the KME trusts"
            ) from None
        except httpx.TransportError as exc:
            raise KMEUnreachableError(
                f"the KME at {self._url} failed during {what}: {exc}"
            ) from None

    def status(self, slave_sae_id: str) -> PoolStatus:
        """014 Get status towards ``slave_sae_id``."""
        data = self._call("Get status", lambda: self._client.status(slave_sae_id))
        try:
            return PoolStatus(
                key_size=int(data["key_size"]),
                stored_key_count=int(data["stored_key_count"]),
                max_key_per_request=int(data["max_key_per_request"]),
                max_key_size=int(data["max_key_size"]),
                min_key_size=int(data["min_key_size"]),
            )
        except (KeyError, TypeError, ValueError):
            raise KeySourceError(f"KME {self._url} answered an incomplete Status object") from None

    def enc_keys(self, slave_sae_id: str, number: int, size_bits: int) -> list[QuantumKey]:
        """014 Get key (master side)."""
        keys = self._call(
            "Get key", lambda: self._client.get_key(slave_sae_id, number=number, size=size_bits)
        )
        return [QuantumKey(k.key_id, k.key) for k in keys]

    def dec_keys(self, master_sae_id: str, key_ids: Sequence[str]) -> list[QuantumKey]:
        """014 Get key with key IDs (slave side)."""
        keys = self._call(
            "Get key with key IDs",
            lambda: self._client.get_key_with_ids(master_sae_id, list(key_ids)),
        )
        return [QuantumKey(k.key_id, k.key) for k in keys]

    def close(self) -> None:
        """Close the kept-alive TLS connection."""
        self._client.close()


def kme_key_source(
    url: str, *, cert: Path, key: Path, ca: Path, sae_id: str = "", timeout_s: float = 10.0
) -> KMEKeySource:
    """Open a mutual-TLS client to ``url`` with this SAE's certificate (``sae_id`` for messages)."""
    try:
        client = KMEClient(url, cert=cert, key=key, ca=ca, timeout=timeout_s)
    except (ssl.SSLError, OSError) as exc:
        who = f" of SAE {sae_id}" if sae_id else ""
        raise KMERefusedError(
            f"cannot load the TLS certificate/key{who} ({exc.__class__.__name__}); check that "
            "--cert and --key are a matching PEM pair and --ca is a PEM CA certificate"
        ) from None
    return KMEKeySource(client, url)
