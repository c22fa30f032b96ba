"""SAE SDK: call a KME's ETSI GS QKD 014 API over mutual TLS (sync and async, on httpx).

Example::

    with KMEClient("https://127.0.0.1:8443", cert="pki/alice.pem", key="pki/alice.key",
                   ca="pki/ca.pem") as kme:
        keys = kme.get_key("bob", number=2, size=256)      # master side
    # ... at the slave's own KME:
    with KMEClient(url_b, cert="pki/bob.pem", key="pki/bob.key", ca="pki/ca.pem") as kme:
        same = kme.get_key_with_ids("alice", [k.key_id for k in keys])

The connection is kept alive and reused; the server's certificate is checked against ``ca``
(host name included). Errors raise :class:`KMEClientError` carrying the KME's status and message.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

PathLike = str | Path


@dataclass(frozen=True)
class Key:
    """One delivered key: its ETSI key_ID (UUID string) and the bytes."""

    key_id: str
    key: bytes = field(repr=False)  # secret: never in a repr, a log line or a traceback


class KMEClientError(Exception):
    """The KME refused a request: HTTP ``status`` and the ETSI Error ``message``."""

    def __init__(self, status: int, message: str, details: Any = None) -> None:
        super().__init__(f"KME answered {status}: {message}")
        self.status = status
        self.message = message
        self.details = details


def client_ssl_context(cert: PathLike, key: PathLike, ca: PathLike) -> ssl.SSLContext:
    """TLS ≥ 1.2 client context presenting ``cert``/``key`` and trusting only ``ca``."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def _path(sae_id: str, method: str) -> str:
    return f"/api/v1/keys/{quote(sae_id, safe='')}/{method}"


def key_request(
    number: int | None,
    size: int | None,
    additional_slaves: Sequence[str] = (),
    extension_mandatory: list[dict[str, Any]] | None = None,
    extension_optional: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ETSI Key request object (only the fields given)."""
    body: dict[str, Any] = {}
    if number is not None:
        body["number"] = number
    if size is not None:
        body["size"] = size
    if additional_slaves:
        body["additional_slave_SAE_IDs"] = list(additional_slaves)
    if extension_mandatory:
        body["extension_mandatory"] = extension_mandatory
    if extension_optional:
        body["extension_optional"] = extension_optional
    return body


def _keys(response: httpx.Response) -> list[Key]:
    data = _checked(response)
    return [Key(k["key_ID"], base64.b64decode(k["key"])) for k in data["keys"]]


def _checked(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code != 200:
        message = data.get("message", "") if isinstance(data, dict) else response.text[:200]
        details = data.get("details") if isinstance(data, dict) else None
        raise KMEClientError(response.status_code, message, details)
    if not isinstance(data, dict):
        raise KMEClientError(response.status_code, "KME answered with a non-object body")
    return data


def _ids_body(key_ids: Iterable[str]) -> dict[str, Any]:
    return {"key_IDs": [{"key_ID": k} for k in key_ids]}


class KMEClient:
    """Synchronous SAE client of one KME (``base_url`` like ``https://127.0.0.1:8443``)."""

    def __init__(self, base_url: str, *, cert: PathLike, key: PathLike, ca: PathLike,
                 timeout: float = 10.0) -> None:  # fmt: skip
        self._http = httpx.Client(
            base_url=base_url, verify=client_ssl_context(cert, key, ca), timeout=timeout
        )

    def __enter__(self) -> KMEClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the kept-alive connection."""
        self._http.close()

    def status(self, slave_sae_id: str) -> dict[str, Any]:
        """Get status for keys shared with ``slave_sae_id``."""
        return _checked(self._http.get(_path(slave_sae_id, "status")))

    def get_key(self, slave_sae_id: str, number: int | None = None, size: int | None = None,
                additional_slaves: Sequence[str] = (), **extensions: Any) -> list[Key]:  # fmt: skip
        """Get key (POST enc_keys); ``extensions``: ``extension_mandatory``/``_optional``."""
        body = key_request(number, size, additional_slaves, **extensions)
        return _keys(self._http.post(_path(slave_sae_id, "enc_keys"), json=body))

    def get_key_with_ids(self, master_sae_id: str, key_ids: Iterable[str]) -> list[Key]:
        """Get key with key IDs (POST dec_keys), in the order given."""
        return _keys(self._http.post(_path(master_sae_id, "dec_keys"), json=_ids_body(key_ids)))

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A raw request on the same connection (conformance tests, odd inputs)."""
        return self._http.request(method, path, **kwargs)


class AsyncKMEClient:
    """Asynchronous twin of :class:`KMEClient`."""

    def __init__(self, base_url: str, *, cert: PathLike, key: PathLike, ca: PathLike,
                 timeout: float = 10.0) -> None:  # fmt: skip
        self._http = httpx.AsyncClient(
            base_url=base_url, verify=client_ssl_context(cert, key, ca), timeout=timeout
        )

    async def __aenter__(self) -> AsyncKMEClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the kept-alive connection."""
        await self._http.aclose()

    async def status(self, slave_sae_id: str) -> dict[str, Any]:
        """Get status for keys shared with ``slave_sae_id``."""
        return _checked(await self._http.get(_path(slave_sae_id, "status")))

    async def get_key(self, slave_sae_id: str, number: int | None = None, size: int | None = None,
                      additional_slaves: Sequence[str] = (), **extensions: Any) -> list[Key]:  # fmt: skip
        """Get key (POST enc_keys)."""
        body = key_request(number, size, additional_slaves, **extensions)
        return _keys(await self._http.post(_path(slave_sae_id, "enc_keys"), json=body))

    async def get_key_with_ids(self, master_sae_id: str, key_ids: Iterable[str]) -> list[Key]:
        """Get key with key IDs (POST dec_keys)."""
        resp = await self._http.post(_path(master_sae_id, "dec_keys"), json=_ids_body(key_ids))
        return _keys(resp)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A raw request on the same connection."""
        return await self._http.request(method, path, **kwargs)
