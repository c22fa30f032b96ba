"""KME-to-KME calls over mutual TLS: telling the adjacent KME which units became which key.

The calling KME presents its own certificate (CN = its KME ID); the peer accepts grants only from
KMEs it shares a link with (``POST /peer/v1/grants``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import httpx

from qkdnet.kms.client import client_ssl_context
from qkdnet.kms.kme import PeerError
from qkdnet.kms.store import Grant


class HttpsPeer:
    """A :class:`~qkdnet.kms.kme.PeerLink` to a KME reached at ``url``."""

    def __init__(self, url: str, *, cert: Path, key: Path, ca: Path, timeout: float = 5.0):
        self.url = url
        self._http = httpx.Client(
            base_url=url,
            verify=client_ssl_context(cert, key, ca),
            timeout=timeout,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )

    def grant(self, source_kme: str, grants: Sequence[Grant]) -> None:
        """POST the grants; raise :class:`PeerError` unless the peer answers 200."""
        try:
            response = self._http.post(
                "/peer/v1/grants", json={"grants": [g.as_dict() for g in grants]}
            )
        except httpx.HTTPError as exc:
            raise PeerError(f"{self.url} unreachable: {type(exc).__name__}") from None
        if response.status_code != 200:
            try:
                message = response.json().get("message", "")
            except ValueError:
                message = response.text[:200]
            raise PeerError(f"{self.url} answered {response.status_code}: {message}")

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()
