"""HTTP face of a KME: the ETSI GS QKD 014 routes, the KME-to-KME route, the southbound route
and ``/metrics``, as a FastAPI app.

The caller's identity is the CN of its verified TLS client certificate, which the server puts in
``scope["extensions"]["tls"]["client_cert_cn"]`` (:mod:`qkdnet.kms.server`); no header the
client controls is trusted. Every non-200 answer is JSON ``{"message": ...}`` (never FastAPI's
``{"detail": ...}`` or 422): request bodies are parsed and checked by :mod:`qkdnet.kms.messages`.

Routes (base ``/api/v1/keys``):
``GET  /{slave_SAE_ID}/status`` · ``GET|POST /{slave_SAE_ID}/enc_keys`` ·
``GET|POST /{master_SAE_ID}/dec_keys`` · ``POST /peer/v1/grants`` (adjacent KMEs) ·
``POST /southbound/v1/keys`` (QKD modules, see docs/southbound.md) · ``GET /metrics``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from qkdnet.kms.kme import KME
from qkdnet.kms.messages import (
    KMEError,
    bad,
    check_id,
    check_key_id,
    parse_key_ids,
    query_key_ids,
    query_key_request,
)
from qkdnet.kms.metrics import CONTENT_TYPE
from qkdnet.kms.store import Grant, GrantGroup, group_grants

log = logging.getLogger("qkdnet.kms.api")
T = TypeVar("T")


def _json(status: int, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(status_code=status, content=body)


def caller_cn(request: Request) -> str | None:
    """The verified client certificate's CN (``None`` without one)."""
    return _scope_cn(request.scope)


async def _read_json(request: Request) -> Any:
    """The request body as JSON (``None`` when empty); 400 with the parser's reason otherwise."""
    return _parse_json(await request.body())


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _query(request: Request) -> list[tuple[str, str]]:
    raw = request.scope.get("query_string", b"").decode("latin-1")
    try:
        return parse_qsl(raw, keep_blank_values=True, strict_parsing=bool(raw))
    except ValueError:
        raise bad("malformed query string") from None


def create_app(kme: KME, *, qkd_modules: Mapping[str, str] | None = None) -> FastAPI:
    """The ASGI app of ``kme``. ``qkd_modules``: certificate CN of a QKD module -> the peer KME
    of the link it feeds (its only permitted southbound target)."""
    modules = dict(qkd_modules or {})
    app = _KMEApp(title=f"qkdnet KME {kme.kme_id}", openapi_url=None, docs_url=None, redoc_url=None)

    async def call(fn: Callable[..., T], *args: Any) -> T:
        try:
            return await run_in_threadpool(fn, *args)
        except KMEError:
            raise
        except Exception:
            kme.metrics.internal_error()
            log.exception("internal error in KME %s", kme.kme_id)
            raise KMEError(503, "internal error in the KME; see its log") from None

    async def call_async(coro: Awaitable[T]) -> T:
        try:
            return await coro
        except KMEError:
            raise
        except Exception:
            kme.metrics.internal_error()
            log.exception("internal error in KME %s", kme.kme_id)
            raise KMEError(503, "internal error in the KME; see its log") from None

    @app.exception_handler(KMEError)
    async def _kme_error(_request: Request, exc: KMEError) -> JSONResponse:
        return _json(exc.status, exc.body())

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _json(400, {"message": f"invalid request: {exc.errors()[:1]}"})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        path = request.url.path
        if exc.status_code == 405:
            return _json(405, {"message": f"method {request.method} is not allowed on {path}"})
        if exc.status_code == 404:
            if path.startswith("/api/"):
                return _json(
                    400,
                    {
                        "message": "unknown path; the ETSI 014 paths are /api/v1/keys/"
                        "{SAE_ID}/status, /enc_keys and /dec_keys with SAE IDs of 1 to 64 "
                        "characters from A-Z a-z 0-9 _ . -"
                    },
                )
            return _json(404, {"message": f"no such path: {path[:100]}"})
        return _json(exc.status_code, {"message": str(exc.detail)})

    @app.exception_handler(Exception)
    async def _internal(_request: Request, _exc: Exception) -> JSONResponse:
        kme.metrics.internal_error()
        return _json(503, {"message": "internal error in the KME; see its log"})

    app.add_middleware(_Timing, observe=kme.metrics.observe)

    # -- ETSI GS QKD 014 -----------------------------------------------------------------------
    @app.get("/api/v1/keys/{slave_sae_id}/status")
    async def get_status(slave_sae_id: str, request: Request) -> JSONResponse:
        if request.scope.get("query_string"):
            raise bad("Get status takes no query parameters")
        return _json(200, await call(kme.status, caller_cn(request), slave_sae_id))

    @app.get("/api/v1/keys/{slave_sae_id}/enc_keys")
    async def get_key_get(slave_sae_id: str, request: Request) -> JSONResponse:
        body = query_key_request(_query(request))
        return _json(
            200, await call_async(kme.get_key_async(caller_cn(request), slave_sae_id, body))
        )

    @app.post("/api/v1/keys/{slave_sae_id}/enc_keys")
    async def get_key_post(slave_sae_id: str, request: Request) -> JSONResponse:
        if request.scope.get("query_string"):
            raise bad("POST enc_keys takes its parameters in the JSON body, not the query")
        body = await _read_json(request)
        return _json(
            200, await call_async(kme.get_key_async(caller_cn(request), slave_sae_id, body))
        )

    @app.get("/api/v1/keys/{master_sae_id}/dec_keys")
    async def get_key_ids_get(master_sae_id: str, request: Request) -> JSONResponse:
        ids = query_key_ids(_query(request))
        return _json(200, await call(kme.get_key_with_ids, caller_cn(request), master_sae_id, ids))

    @app.post("/api/v1/keys/{master_sae_id}/dec_keys")
    async def get_key_ids_post(master_sae_id: str, request: Request) -> JSONResponse:
        if request.scope.get("query_string"):
            raise bad("POST dec_keys takes its key_IDs in the JSON body, not the query")
        ids = parse_key_ids(await _read_json(request), kme.limits)
        return _json(200, await call(kme.get_key_with_ids, caller_cn(request), master_sae_id, ids))

    # -- KME to KME ----------------------------------------------------------------------------
    @app.post("/peer/v1/grants")
    async def peer_grants(request: Request) -> JSONResponse:
        source = caller_cn(request)
        if source not in kme.peers:
            raise KMEError(401, f"certificate CN {source!r} is not an adjacent KME")
        body = await _read_json(request)
        groups = _parse_grants(body)
        await call(kme.accept_grants, source, groups)
        return _json(200, {"accepted": sum(len(g.key_ids) for g in groups)})

    # -- southbound (QKD modules) --------------------------------------------------------------
    @app.post("/southbound/v1/keys")
    async def southbound_keys(request: Request) -> JSONResponse:
        module = caller_cn(request)
        if module is None or module not in modules:
            raise KMEError(401, f"certificate CN {module!r} is not a QKD module of this KME")
        body = await _read_json(request)
        peer, blocks = _parse_blocks(body)
        if peer != modules[module]:
            raise KMEError(401, f"QKD module {module} feeds the link to {modules[module]}, "
                                f"not to {peer}")  # fmt: skip
        units = await call(kme.ingest, peer, blocks, module)
        return _json(200, {"peer_KME_ID": peer, "blocks": len(blocks), "units": units,
                           "unit_size": kme.unit_bits})  # fmt: skip

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        if caller_cn(request) is None:
            raise KMEError(401, "a client certificate is required")
        payload = await call(kme.metrics.render)
        return Response(payload, media_type=CONTENT_TYPE)

    # -- the hot routes, without the framework (same checks, answers and metrics as above) --
    async def fast_enc_keys(scope: dict[str, Any], slave_sae_id: str, raw: bytes) -> Any:
        if scope.get("query_string"):
            raise bad("POST enc_keys takes its parameters in the JSON body, not the query")
        body = _parse_json(raw)
        return await call_async(kme.get_key_async(_scope_cn(scope), slave_sae_id, body))

    async def fast_grants(scope: dict[str, Any], _match: str, raw: bytes) -> Any:
        source = _scope_cn(scope)
        if source not in kme.peers:
            raise KMEError(401, f"certificate CN {source!r} is not an adjacent KME")
        groups = _parse_grants(_parse_json(raw))
        await call(kme.accept_grants, source, groups)
        return {"accepted": sum(len(g.key_ids) for g in groups)}

    app.fast_routes = (
        (_ENC_KEYS_PATH.fullmatch, "enc_keys", fast_enc_keys),
        (_GRANTS_PATH.fullmatch, "grants", fast_grants),
    )
    app.kme = kme
    return app


_ENC_KEYS_PATH = re.compile(r"/api/v1/keys/([^/]+)/enc_keys")
_GRANTS_PATH = re.compile(r"/peer/v1/(grants)")
_JSON_HEADERS = b"application/json"
FastHandler = Callable[[dict[str, Any], str, bytes], Awaitable[Any]]


def _scope_cn(scope: Mapping[str, Any]) -> str | None:
    """The verified client certificate's CN in an ASGI scope (``None`` without one)."""
    return scope.get("extensions", {}).get("tls", {}).get("client_cert_cn")


def _parse_json(raw: bytes) -> Any:
    """A request body as JSON (``None`` when empty); 400 with the parser's reason otherwise."""
    if not raw.strip():
        return None
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        reason = str(exc).splitlines()[0][:120]
        raise bad(f"request body is not valid JSON: {reason}") from None


class _KMEApp(FastAPI):
    """The KME's FastAPI app, except that POST enc_keys and POST /peer/v1/grants — the routes
    every key delivery takes — are answered by plain ASGI handlers: the framework's middleware,
    routing, request and response objects cost about as much CPU as the key delivery itself.
    The handlers make the same checks, give the same answers (JSON ``{"message"}`` errors, the
    framework's JSON encoding) and record the same latency metric as the routes they shadow."""

    fast_routes: tuple[tuple[Callable[[str], Any], str, FastHandler], ...] = ()
    kme: KME | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            for match, route, handler in self.fast_routes:
                m = match(scope["path"])
                if m is not None:
                    await self._fast(route, handler, m.group(1), scope, receive, send)
                    return
        await super().__call__(scope, receive, send)

    async def _fast(self, route: str, handler: FastHandler, arg: str, scope: dict[str, Any],
                    receive: Any, send: Any) -> None:  # fmt: skip
        started = time.perf_counter()
        kme = self.kme
        assert kme is not None
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        try:
            status, content = 200, await handler(scope, arg, b"".join(chunks))
        except KMEError as exc:
            status, content = exc.status, exc.body()
        except Exception:
            kme.metrics.internal_error()
            log.exception("internal error in KME %s", kme.kme_id)
            status, content = 503, {"message": "internal error in the KME; see its log"}
        # byte for byte what JSONResponse renders
        body = json.dumps(
            content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
        ).encode("utf-8")
        headers = [(b"content-length", str(len(body)).encode()), (b"content-type", _JSON_HEADERS)]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        kme.metrics.observe(route, time.perf_counter() - started)


_ROUTES = frozenset(("status", "enc_keys", "dec_keys", "grants", "keys", "metrics"))


class _Timing:
    """Pure ASGI middleware recording each request's latency per route."""

    def __init__(self, app: Any, observe: Callable[[str, float], None]) -> None:
        self.app = app
        self.observe = observe

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            route = scope["path"].rsplit("/", 1)[-1]
            self.observe(route if route in _ROUTES else "other", time.perf_counter() - started)


def _parse_grants(body: Any) -> list[GrantGroup]:
    """``{"groups": [{master_SAE_ID, slave_SAE_IDs, size, key_IDs | keys}]}``
    (:func:`qkdnet.kms.peering.grants_body`; ``keys`` as ``[[key_ID, unit_ID...]]`` is also what
    earlier versions sent for one-unit keys), or the one-object-per-grant form
    ``{"grants": [{key_ID, unit_IDs, size, master_SAE_ID, slave_SAE_IDs}]}``."""
    if isinstance(body, dict) and isinstance(body.get("groups"), list):
        return [_parse_grant_group(group) for group in body["groups"]]
    if not isinstance(body, dict) or not isinstance(body.get("grants"), list):
        raise bad('expected {"groups": [...]} or {"grants": [...]}')
    out = []
    for g in body["grants"]:
        try:
            out.append(
                Grant(
                    key_id=check_key_id(g["key_ID"]),
                    unit_ids=tuple(check_key_id(u) for u in g["unit_IDs"]),
                    size_bits=int(g["size"]),
                    master_sae=check_id(g["master_SAE_ID"], "master_SAE_ID"),
                    slaves=tuple(check_id(s, "slave_SAE_ID") for s in g["slave_SAE_IDs"]),
                )
            )
        except (KeyError, TypeError, ValueError):
            raise bad(
                "each grant needs key_ID, unit_IDs, size, master_SAE_ID, slave_SAE_IDs"
            ) from None
    return group_grants(out)


def _parse_grant_group(group: Any) -> GrantGroup:
    try:
        master = check_id(group["master_SAE_ID"], "master_SAE_ID")
        slaves = tuple(check_id(s, "slave_SAE_ID") for s in group["slave_SAE_IDs"])
        size = group["size"]
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError
        joined = group.get("key_IDs")
        if joined is not None:  # one-unit keys, one string: one regex for the whole group
            if not isinstance(joined, str) or not _CANONICAL_LIST_RE.fullmatch(joined):
                raise ValueError
            return GrantGroup(master, slaves, size, joined.split(","))
        keys = group["keys"]
        if (
            not isinstance(keys, list)
            or not keys
            or not all(isinstance(key, list) and len(key) >= 2 for key in keys)
        ):
            raise TypeError
        if not _canonical_ids(keys):
            keys = [[check_key_id(k) for k in key] for key in keys]
        if all(len(key) == 2 and key[0] == key[1] for key in keys):
            return GrantGroup(master, slaves, size, [key[0] for key in keys])
        return GrantGroup(master, slaves, size, [key[0] for key in keys],
                          [tuple(key[1:]) for key in keys])  # fmt: skip
    except (KeyError, TypeError, ValueError, AttributeError):
        raise bad(
            "each grant group needs master_SAE_ID, slave_SAE_IDs, size and key_IDs (comma-"
            "separated key IDs) or keys ([key_ID, unit_ID, ...] each)"
        ) from None


_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_CANONICAL_LIST_RE = re.compile(f"(?:{_UUID},)*{_UUID}")


def _canonical_ids(keys: list[list[Any]]) -> bool:
    """Every ID in ``keys`` is a canonical UUID string (as :func:`check_key_id` returns it
    unchanged): one regex over the joined IDs instead of a call per ID."""
    flat = [k for key in keys for k in key]
    if not flat or not all(type(k) is str for k in flat):
        return False
    joined = ",".join(flat)
    return len(joined) == 37 * len(flat) - 1 and _CANONICAL_LIST_RE.fullmatch(joined) is not None


def _parse_blocks(body: Any) -> tuple[str, list[tuple[str, bytes]]]:
    """Southbound body: ``{"peer_KME_ID": ..., "blocks": [{"key_ID": uuid, "key": b64}]}``."""
    if not isinstance(body, dict):
        raise bad(
            'expected {"peer_KME_ID": "...", "blocks": [{"key_ID": "<uuid>", "key": "<base64>"}]}'
        )
    peer = check_id(body.get("peer_KME_ID"), "peer_KME_ID")
    blocks = body.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        raise bad("blocks must be a non-empty array of {key_ID, key}")
    out = []
    for item in blocks:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise bad("each block must be an object with key_ID and base64 key")
        try:
            material = base64.b64decode(item["key"], validate=True)
        except (binascii.Error, ValueError):
            raise bad("block key must be standard base64") from None
        out.append((check_key_id(item.get("key_ID")), material))
    return peer, out
