"""KME-to-KME calls over mutual TLS: telling the adjacent KME which units became which key.

The calling KME presents its own certificate (CN = its KME ID); the peer accepts grants only from
KMEs it shares a link with (``POST /peer/v1/grants``, body from :func:`grants_body`). The
connections are kept alive and reused (an ``httpx.Client`` pool per peer).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from qkdnet.kms.client import client_ssl_context
from qkdnet.kms.kme import PeerError
from qkdnet.kms.store import Grant


def grants_body(grants: Sequence[Grant]) -> dict[str, Any]:
    """The body of ``POST /peer/v1/grants``: grants grouped by (master, slaves, size), each key
    as ``[key_ID, unit_ID, ...]`` — a group commit of a link sends hundreds of keys that share
    their SAEs and size, so each is said once per group (``{"groups": [...]}``)."""
    groups: dict[tuple[str, tuple[str, ...], int], list[list[str]]] = {}
    for g in grants:
        groups.setdefault((g.master_sae, g.slaves, g.size_bits), []).append([g.key_id, *g.unit_ids])
    return {
        "groups": [
            {"master_SAE_ID": m, "slave_SAE_IDs": list(s), "size": n, "keys": keys}
            for (m, s, n), keys in groups.items()
        ]
    }


def answer_message(response: httpx.Response) -> str:
    """The ETSI ``message`` of another KME's error answer (its raw text if not JSON)."""
    try:
        return str(response.json().get("message", ""))
    except ValueError:
        return response.text[:200]


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
                "/peer/v1/grants",
                content=json.dumps(grants_body(grants), separators=(",", ":")).encode(),
                headers={"content-type": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise PeerError(f"{self.url} unreachable: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise PeerError(
                f"{self.url} answered {response.status_code}: {answer_message(response)}"
            )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()
