"""Hop-by-hop one-time-pad relay of keys between KMEs that share no QKD link (trusted nodes).

When a master SAE at KME ``S`` asks for keys for a slave at a non-adjacent KME ``T``, ``S``
draws fresh keys from ``secrets`` (:meth:`KME._keys_by_relay`) and this relay carries them along
a route ``S → R1 → … → T`` of adjacent KMEs (chosen by a ``router``, e.g. the network's routing
through trusted nodes avoiding low pools):

1. each sender takes units it *owns* from the link pool to the next hop
   (:meth:`KeyStore.take_owned`, erased in the same transaction: a pad is used once, and a failed
   hop burns pads rather than risk reusing them), XORs the key with them and POSTs only
   ``key_ID``, the pad's ``unit_IDs`` and the ciphertext to ``/peer/v1/relay`` of the next KME,
   over mutually authenticated HTTPS (the CN of the caller's certificate must be the previous
   hop, an adjacent KME);
2. the next KME takes the same units by ID from its copy of the link pool
   (:meth:`KeyStore.take_by_ids`, erased), recovers the key, and forwards it the same way;
3. the last KME stores the keys for the named slaves (:meth:`KME.accept_relayed`); each slave
   then fetches them by key_ID at its own KME with ETSI 014 ``dec_keys``.

Intermediate KMEs see the key in memory only for the re-encryption; their audit log records
key IDs, unit IDs and hop KMEs, never key material. ``GET /peer/v1/pools`` reports the pool
levels of the KME's links (unit counts only) to adjacent KMEs and to the network controller.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from qkdnet.kms.api import caller_cn
from qkdnet.kms.client import client_ssl_context
from qkdnet.kms.kme import KME, owner_of
from qkdnet.kms.messages import KMEError, bad, check_id, check_key_id
from qkdnet.kms.peering import answer_message
from qkdnet.kms.store import InsufficientKeysError, KeysNotFoundError, assemble_key

#: ``router(source_kme, target_kme, need_bits) -> [source_kme, ..., target_kme]``
Router = Callable[[str, str, int], Sequence[str]]


class RelayError(Exception):
    """A hop of the relay failed; the message says which and why (never key material)."""


def xor_bytes(a: bytes, b: bytes) -> bytes:
    """Bytewise XOR of two equal-length byte strings (the one-time pad)."""
    if len(a) != len(b):
        raise ValueError("one-time pad and key differ in length")
    return (np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)).tobytes()


class HopRelay:
    """The :class:`~qkdnet.kms.kme.KeyRelay` of one KME.

    ``peer_urls``: adjacent KME ID → its base URL; ``cert``/``key``/``ca``: this KME's own
    certificate (it is the TLS client of the next hop).
    """

    def __init__(
        self,
        kme: KME,
        *,
        router: Router,
        peer_urls: Mapping[str, str],
        cert: Path,
        key: Path,
        ca: Path,
        timeout: float = 15.0,
    ) -> None:
        self.kme = kme
        self.router = router
        self.peer_urls = dict(peer_urls)
        self._http = httpx.Client(verify=client_ssl_context(cert, key, ca), timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _per_key(self, size_bits: int) -> int:
        return math.ceil(size_bits / self.kme.unit_bits)

    # -- KeyRelay ------------------------------------------------------------------------------
    def capacity(self, source_kme: str, target_kme: str, size_bits: int) -> int:
        """Keys of ``size_bits`` the first hop of the current route can pay for (0: no route)."""
        try:
            route = list(self.router(source_kme, target_kme, size_bits))
        except Exception:
            return 0
        if len(route) < 2:
            return 0
        return self.kme.store.available_units(route[1]) // self._per_key(size_bits)

    def relay_keys(
        self,
        source_kme: str,
        target_kme: str,
        keys: Sequence[tuple[str, bytes]],
        master_sae: str,
        slaves: Sequence[str],
    ) -> None:
        """Carry ``keys`` from this KME to ``target_kme`` along the router's route."""
        need = sum(len(k) * 8 for _, k in keys)
        try:
            route = [str(x) for x in self.router(source_kme, target_kme, need)]
        except Exception as exc:
            raise RelayError(f"no route from {source_kme} to {target_kme}: {exc}") from None
        if len(route) < 2 or route[0] != self.kme.kme_id or route[-1] != target_kme:
            raise RelayError(f"router gave an invalid route {route}")
        self.forward(route, 0, keys, master_sae, slaves)

    # -- hops ----------------------------------------------------------------------------------
    def forward(
        self,
        route: Sequence[str],
        index: int,
        keys: Sequence[tuple[str, bytes]],
        master_sae: str,
        slaves: Sequence[str],
    ) -> None:
        """Encrypt ``keys`` with pads of the link to ``route[index + 1]`` and send them there."""
        nxt = route[index + 1]
        if nxt not in self.kme.peers or nxt not in self.peer_urls:
            raise RelayError(f"KME {self.kme.kme_id} has no link to {nxt}")
        sizes = {len(k) for _, k in keys}
        if len(sizes) != 1:
            raise RelayError("all keys of one relay must have the same size")
        size_bits = 8 * sizes.pop()
        per_key = self._per_key(size_bits)
        try:
            taken = self.kme.store.take_owned(nxt, per_key * len(keys))
        except InsufficientKeysError as exc:
            raise RelayError(
                f"link {self.kme.kme_id}-{nxt} has {exc.available_units} units, "
                f"{per_key * len(keys)} needed"
            ) from None
        items = []
        for i, (key_id, material) in enumerate(keys):
            units = taken[i * per_key : (i + 1) * per_key]
            pad = assemble_key([m for _, m in units], size_bits)
            items.append(
                {
                    "key_ID": key_id,
                    "unit_IDs": [u for u, _ in units],
                    "size": size_bits,
                    "ciphertext": base64.b64encode(xor_bytes(material, pad)).decode("ascii"),
                }
            )
        self.kme.audit.record(
            "relay_out", who=route[index - 1] if index else master_sae, peer_kme=nxt,
            key_ids=[k for k, _ in keys], number=len(keys), size=size_bits,
            message=f"route {'>'.join(route)} pads {[u for it in items for u in it['unit_IDs']]}",
            result="sent", status=200,
        )  # fmt: skip
        body = {
            "route": list(route),
            "hop": index + 1,
            "master_SAE_ID": master_sae,
            "slave_SAE_IDs": list(slaves),
            "keys": items,
        }
        try:
            response = self._http.post(f"{self.peer_urls[nxt]}/peer/v1/relay", json=body)
        except httpx.HTTPError as exc:
            raise RelayError(f"KME {nxt} unreachable: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise RelayError(
                f"KME {nxt} answered {response.status_code}: {answer_message(response)}"
            )

    def receive(self, sender: str | None, body: Any) -> int:
        """Handle ``POST /peer/v1/relay`` from adjacent KME ``sender``; returns keys handled."""
        route, hop, master, slaves, items = _parse_relay(body)
        me = self.kme.kme_id
        if sender is None or sender not in self.kme.peers:
            raise KMEError(401, f"certificate CN {sender!r} is not an adjacent KME")
        if not (0 < hop < len(route)) or route[hop] != me or route[hop - 1] != sender:
            raise bad(f"relay hop {hop} of route {route} is not {sender}->{me}")
        keys: list[tuple[str, bytes]] = []
        for key_id, unit_ids, size_bits, ciphertext in items:
            if len(unit_ids) != self._per_key(size_bits) or len(ciphertext) * 8 != size_bits:
                raise bad(f"relayed key {key_id}: {len(unit_ids)} pad units for {size_bits} bits")
            if any(owner_of(u, me, sender) != sender for u in unit_ids):
                raise bad(f"relayed key {key_id} uses pad units that KME {sender} does not own")
            try:
                pads = self.kme.store.take_by_ids(sender, unit_ids)
            except KeysNotFoundError as exc:
                raise KMEError(
                    503, f"pad units of link {sender}-{me} not available: {exc}"
                ) from None
            pad = assemble_key([m for _, m in pads], size_bits)
            keys.append((key_id, xor_bytes(ciphertext, pad)))
        ids = [k for k, _ in keys]
        if hop == len(route) - 1:
            self.kme.accept_relayed(route[0], keys, master, slaves)
            self.kme.audit.record(
                "relay_in", who=sender, peer_sae=master, peer_kme=route[0], key_ids=ids,
                number=len(ids), message=f"route {'>'.join(route)}", result="stored", status=200,
            )  # fmt: skip
            return len(keys)
        self.kme.audit.record(
            "relay_through", who=sender, peer_kme=route[hop + 1], key_ids=ids,
            number=len(ids), message=f"route {'>'.join(route)}", result="forwarding", status=200,
        )  # fmt: skip
        try:
            self.forward(route, hop, keys, master, slaves)
        except RelayError as exc:
            raise KMEError(503, f"relay onward from {me} failed: {exc}") from None
        return len(keys)

    def pools(self) -> dict[str, dict[str, int]]:
        """Per adjacent KME: units this KME owns and units the peer owns, still available."""
        return {
            peer: {
                "owned_units": self.kme.store.available_units(peer, owned=True),
                "peer_units": self.kme.store.available_units(peer, owned=False),
                "unit_bits": self.kme.unit_bits,
            }
            for peer in sorted(self.kme.peers)
        }


def _parse_relay(
    body: Any,
) -> tuple[list[str], int, str, list[str], list[tuple[str, list[str], int, bytes]]]:
    try:
        route = [check_id(x, "route") for x in body["route"]]
        hop = int(body["hop"])
        master = check_id(body["master_SAE_ID"], "master_SAE_ID")
        slaves = [check_id(s, "slave_SAE_ID") for s in body["slave_SAE_IDs"]]
        items = [
            (
                check_key_id(k["key_ID"]),
                [check_key_id(u) for u in k["unit_IDs"]],
                int(k["size"]),
                base64.b64decode(k["ciphertext"], validate=True),
            )
            for k in body["keys"]
        ]
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise bad(
            "relay body needs route, hop, master_SAE_ID, slave_SAE_IDs and keys "
            "[{key_ID, unit_IDs, size, ciphertext}]"
        ) from None
    if not items:
        raise bad("relay body carries no keys")
    return route, hop, master, slaves, items


def add_relay_routes(app: FastAPI, relay: HopRelay, *, controllers: Collection[str] = ()) -> None:
    """Mount ``POST /peer/v1/relay`` (adjacent KMEs) and ``GET /peer/v1/pools`` (adjacent KMEs
    and the network ``controllers``) on a KME's app from :func:`qkdnet.kms.api.create_app`."""
    from starlette.concurrency import run_in_threadpool

    @app.post("/peer/v1/relay")
    async def relay_in(request: Request) -> JSONResponse:
        import json

        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            raise bad("relay body is not valid JSON") from None
        n = await run_in_threadpool(relay.receive, caller_cn(request), body)
        return JSONResponse(status_code=200, content={"relayed": n})

    @app.get("/peer/v1/pools")
    async def pools(request: Request) -> JSONResponse:
        cn = caller_cn(request)
        if cn is None or (cn not in relay.kme.peers and cn not in controllers):
            raise KMEError(401, f"certificate CN {cn!r} may not read pool levels")
        return JSONResponse(
            status_code=200,
            content={"kme_ID": relay.kme.kme_id, "links": await run_in_threadpool(relay.pools)},
        )
