"""KME-to-KME calls over mutual TLS: telling the adjacent KME which units became which key.

The calling KME presents its own certificate (CN = its KME ID); the peer accepts grants only from
KMEs it shares a link with (``POST /peer/v1/grants``, body from :func:`grants_body`). The
connections are kept alive and reused (one per grant worker thread).
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from qkdnet.kms.client import client_ssl_context
from qkdnet.kms.kme import PeerError
from qkdnet.kms.store import GrantGroup


def grants_body(groups: Sequence[GrantGroup]) -> dict[str, Any]:
    """The body of ``POST /peer/v1/grants``: ``{"groups": [...]}``, one object per (master,
    slaves, size) of a group commit. Keys of one unit each (the common case) are one string of
    their comma-separated IDs (``key_IDs``: built with one join, checked by the peer with one
    regex); keys of several units are ``keys``: ``[[key_ID, unit_ID, ...], ...]`` with the
    key's ID first (it is its first unit's ID)."""
    out = []
    for g in groups:
        body: dict[str, Any] = {
            "master_SAE_ID": g.master_sae,
            "slave_SAE_IDs": list(g.slaves),
            "size": g.size_bits,
        }
        if g.units is None:
            body["key_IDs"] = ",".join(g.key_ids)
        else:
            body["keys"] = [[k, *u] for k, u in zip(g.key_ids, g.units, strict=True)]
        out.append(body)
    return {"groups": out}


def answer_message(response: httpx.Response) -> str:
    """The ETSI ``message`` of another KME's error answer (its raw text if not JSON)."""
    try:
        return str(response.json().get("message", ""))
    except ValueError:
        return response.text[:200]


class HttpsPeer:
    """A :class:`~qkdnet.kms.kme.PeerLink` to a KME reached at ``url``.

    One keep-alive connection per calling thread (the link's grant workers), with the standard
    library's ``http.client``: an httpx request cost several times more CPU, paid on every
    group commit. A request that fails on a reused connection (the peer closed it while idle)
    is sent once more on a new one — a repeated grant is accepted as the same grant."""

    def __init__(self, url: str, *, cert: Path, key: Path, ca: Path, timeout: float = 5.0):
        self.url = url
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"peer KME URL {url!r} must be https://HOST[:PORT]")
        self._host = parts.hostname
        self._port = parts.port or 443
        self._prefix = parts.path.rstrip("/")
        self._ssl = client_ssl_context(cert, key, ca)
        self._timeout = timeout
        self._local = threading.local()
        self._conns: list[http.client.HTTPSConnection] = []
        self._lock = threading.Lock()

    def _connection(self, fresh: bool) -> http.client.HTTPSConnection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and not fresh:
            return conn
        if conn is not None:
            conn.close()
            with self._lock:
                self._conns.remove(conn)
        conn = http.client.HTTPSConnection(
            self._host, self._port, timeout=self._timeout, context=self._ssl
        )
        self._local.conn = conn
        with self._lock:
            self._conns.append(conn)
        return conn

    def grant(self, source_kme: str, groups: Sequence[GrantGroup]) -> None:
        """POST the grants; raise :class:`PeerError` unless the peer answers 200."""
        body = json.dumps(grants_body(groups), separators=(",", ":")).encode()
        headers = {"content-type": "application/json", "content-length": str(len(body))}
        reused = getattr(self._local, "conn", None) is not None
        for attempt in (0, 1):
            conn = self._connection(fresh=attempt > 0)
            try:
                conn.request("POST", self._prefix + "/peer/v1/grants", body, headers)
                response = conn.getresponse()
                data = response.read()
                if response.will_close:  # http.client reconnects on the next request
                    conn.close()
                break
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if attempt == 0 and reused and not isinstance(exc, TimeoutError):
                    continue
                raise PeerError(f"{self.url} unreachable: {type(exc).__name__}") from None
        if response.status != 200:
            try:
                message = str(json.loads(data).get("message", ""))
            except (ValueError, AttributeError):
                message = data[:200].decode("utf-8", "replace")
            raise PeerError(f"{self.url} answered {response.status}: {message}")

    def close(self) -> None:
        """Close the connections."""
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
