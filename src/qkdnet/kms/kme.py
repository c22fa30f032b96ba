"""A Key Management Entity (KME): the ETSI GS QKD 014 methods, independent of HTTP.

Roles (ETSI 014): the SAE that calls Get key (enc_keys) is the *master*; the SAEs it names are
the *slaves*, each of which later calls Get key with key IDs (dec_keys) **at its own KME**.

How one key travels over a link A—B (each KME holds its own copy of the link's units, pushed by
the QKD module through the southbound interface under the same IDs):

1. master SAE ``a1`` asks KME A for a key for slave ``b1`` (attached to KME B);
2. in one store transaction A takes units it *owns* (see :func:`owner_of`), tells B which units
   form which key for which master and slaves (:meth:`KME.accept_grants` on B), erases them and
   commits; only then does ``a1`` get the key. If B does not confirm, nothing is consumed;
3. ``b1`` calls dec_keys at B with the key_ID; B assembles the same bytes from its copy of the
   units, hands them over once per named slave, and erases them after the last slave.

A slave whose KME is not adjacent is served through a :class:`KeyRelay` (hop-by-hop one-time
pad, ``kms/relay.py``): the relay carries fresh keys to the far KME, which stores them with
:meth:`KME.accept_relayed` for its slaves.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import queue
import secrets
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from qkdnet.kms.audit import AuditLog
from qkdnet.kms.messages import (
    MSG_NOT_FOUND,
    KeyRequest,
    KMEError,
    Limits,
    bad,
    check_id,
    check_key_id,
    parse_key_request,
)
from qkdnet.kms.metrics import KMEMetrics
from qkdnet.kms.store import (
    DuplicateKeysError,
    GrantGroup,
    KeysNotFoundError,
    KeyStore,
    NotAuthorizedError,
    assemble_key,
)

log = logging.getLogger("qkdnet.kms.kme")
UNIT_NAMESPACE = uuid.UUID("6f1c6f2e-8a43-4b0e-9d6c-2a7f1f0e9b01")
_HEX = frozenset("0123456789abcdefABCDEF")


class PeerError(Exception):
    """The peer KME did not confirm (unreachable, or refused the grant)."""


class PeerLink(Protocol):
    """How a KME tells an adjacent KME which of the link's units became which key."""

    def grant(self, source_kme: str, groups: Sequence[GrantGroup]) -> None:
        """Record ``groups`` at the peer; raise :class:`PeerError` if it does not confirm."""
        ...


class KeyRelay(Protocol):
    """Hook for slaves at non-adjacent KMEs (implemented by ``kms/relay.py``)."""

    def capacity(self, source_kme: str, target_kme: str, size_bits: int) -> int:
        """How many keys of ``size_bits`` could be relayed to ``target_kme`` now."""
        ...

    def relay_keys(
        self,
        source_kme: str,
        target_kme: str,
        keys: Sequence[tuple[str, bytes]],
        master_sae: str,
        slaves: Sequence[str],
    ) -> None:
        """Carry ``keys`` to ``target_kme`` (which calls :meth:`KME.accept_relayed`); raise on
        failure, in which case the keys are not delivered to the master."""
        ...


def owner_of(key_id: str, kme_a: str, kme_b: str) -> str:
    """Which end of link ``kme_a``—``kme_b`` may hand out the unit ``key_id`` on its own.

    Both ends compute the same answer from the ID alone (the lowest bit of the UUID: 0 for the
    KME whose ID sorts first), so they never pick the same unit for different keys.
    """
    low, high = sorted((kme_a, kme_b))
    last = key_id[-1:]
    # the lowest bit of the UUID is the lowest bit of its last hex digit (canonical text)
    bit = int(last, 16) & 1 if last in _HEX else uuid.UUID(key_id).int & 1
    return low if bit == 0 else high


def unit_ids_of_block(block_id: str, n_units: int) -> list[str]:
    """IDs of the units a block is cut into: the block ID itself for a one-unit block,
    else ``uuid5(UNIT_NAMESPACE, "<block_id>/<i>")`` — the same at both KMEs."""
    if n_units == 1:
        return [block_id]
    return [str(uuid.uuid5(UNIT_NAMESPACE, f"{block_id}/{i}")) for i in range(n_units)]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _last(text: str) -> str:
    return text[-1:]


class KME:
    """One KME: its SAEs, its adjacent peer KMEs, its store, audit log and metrics.

    ``local_saes``: SAE IDs attached to this KME (the CN of their client certificates).
    ``sae_directory``: SAE ID -> KME ID for SAEs elsewhere in the network.
    ``peers``: adjacent KME ID -> :class:`PeerLink` (a QKD link joins them).
    ``unit_bits``: size of one stored unit; a key of ``size`` bits uses ``ceil(size/unit_bits)``
    units, cut to ``size`` bits.
    """

    def __init__(
        self,
        kme_id: str,
        store: KeyStore,
        *,
        local_saes: Sequence[str],
        sae_directory: Mapping[str, str] | None = None,
        peers: Mapping[str, PeerLink] | None = None,
        limits: Limits | None = None,
        unit_bits: int = 256,
        relay: KeyRelay | None = None,
        audit: AuditLog | None = None,
        metrics: KMEMetrics | None = None,
    ) -> None:
        if unit_bits % 8 or unit_bits <= 0:
            raise ValueError("unit_bits must be a positive multiple of 8")
        self.kme_id = check_id(kme_id, "KME ID")
        self.store = store
        self.local_saes = frozenset(local_saes)
        self.sae_directory = dict(sae_directory or {})
        self.peers: dict[str, PeerLink] = dict(peers or {})
        self.limits = limits or Limits()
        self.unit_bits = unit_bits
        self.relay = relay
        self.audit = audit or AuditLog(None, kme_id)
        self.metrics = metrics or KMEMetrics(kme_id, store)
        self._batchers: dict[str, _GrantBatcher] = {}
        self._batchers_lock = threading.Lock()

    # -- helpers -------------------------------------------------------------------------------
    def _units_per_key(self, size_bits: int) -> int:
        return math.ceil(size_bits / self.unit_bits)

    def _check_caller(self, caller: str | None, event: str) -> str:
        if caller is None or caller not in self.local_saes:
            message = (
                f"the client certificate (CN {caller!r}) is not an SAE registered at KME "
                f"{self.kme_id}"
            )
            self.audit.record(event, who=caller, result="unauthorized", status=401)
            raise KMEError(401, message)
        return caller

    def kme_of(self, sae_id: str, what: str) -> str:
        """KME serving ``sae_id``; 400 if unknown or local."""
        check_id(sae_id, what)
        if sae_id in self.local_saes:
            raise bad(
                f"{what} {sae_id} is attached to this KME ({self.kme_id}); keys are served "
                "between SAEs of different KMEs"
            )
        kme = self.sae_directory.get(sae_id)
        if kme is None:
            raise bad(f"unknown {what} {sae_id}: no KME in this network serves it")
        if kme not in self.peers and self.relay is None:
            raise bad(f"{what} {sae_id} is at KME {kme}, which KME {self.kme_id} cannot reach")
        return kme

    # -- southbound ----------------------------------------------------------------------------
    def ingest(self, peer_kme: str, blocks: Sequence[tuple[str, bytes]], source: str = "") -> int:
        """Store key blocks ``(block_id, material)`` of the link to ``peer_kme``; returns units.

        Each block is cut into ``unit_bits`` units (a short tail is dropped); the QKD module
        pushes the same blocks with the same IDs into both KMEs of the link.
        """
        if peer_kme not in self.peers:
            raise bad(f"KME {self.kme_id} has no link to {peer_kme!r}")
        unit_bytes = self.unit_bits // 8
        rows: list[tuple[str, bytes, bool]] = []
        for block_id, material in blocks:
            block_id = check_key_id(block_id)
            n = len(material) // unit_bytes
            for i, uid in enumerate(unit_ids_of_block(block_id, n)):
                piece = material[i * unit_bytes : (i + 1) * unit_bytes]
                rows.append((uid, piece, owner_of(uid, self.kme_id, peer_kme) == self.kme_id))
        stored = sum(c["available"] + c["granted"] for c in self.store.counts().values())
        if stored + len(rows) > self.limits.max_key_count * max(1, len(self.peers)):
            raise KMEError(503, f"key store of KME {self.kme_id} is full; deliver keys first")
        try:
            n_units = self.store.ingest(peer_kme, rows)
        except DuplicateKeysError as exc:
            raise bad(f"key blocks refused: {exc}") from None
        self.metrics.ingested(peer_kme, n_units)
        self.audit.record(
            "ingest", who=source, peer_kme=peer_kme, key_ids=[b for b, _ in blocks],
            size=n_units * self.unit_bits, result="ok", status=200,
        )  # fmt: skip
        return n_units

    # -- ETSI 014 ------------------------------------------------------------------------------
    def status(self, caller: str | None, slave: str) -> dict[str, Any]:
        """Get status: what ``caller`` could get for ``slave`` now."""
        caller = self._check_caller(caller, "status")
        target = self.kme_of(slave, "slave_SAE_ID")
        lim = self.limits
        if target in self.peers:
            units = self.store.available_units(target)
            count = units // self._units_per_key(lim.key_size)
        else:
            count = self.relay.capacity(self.kme_id, target, lim.key_size) if self.relay else 0
        return {
            "source_KME_ID": self.kme_id,
            "target_KME_ID": target,
            "master_SAE_ID": caller,
            "slave_SAE_ID": slave,
            "key_size": lim.key_size,
            "stored_key_count": min(count, lim.max_key_count),
            "max_key_count": lim.max_key_count,
            "max_key_per_request": lim.max_key_per_request,
            "max_key_size": lim.max_key_size,
            "min_key_size": lim.min_key_size,
            "max_SAE_ID_count": lim.max_sae_id_count,
        }

    def get_key(self, caller: str | None, slave: str, body: Any) -> dict[str, Any]:
        """Get key (enc_keys): ``number`` keys of ``size`` bits for ``slave`` (+ additional)."""
        started = time.perf_counter()
        caller, target, slaves, req = self._key_request(caller, slave, body)
        try:
            if target in self.peers:
                keys = self._batcher(target).submit(self._order(caller, slaves, req)).result()
            else:
                keys = self._keys_by_relay(caller, target, slaves, req.number, req.size)
        except KMEError as exc:
            self._refused(caller, target, slaves, req, exc)
            raise
        return self._delivered(caller, target, slaves, req, keys, started)

    async def get_key_async(self, caller: str | None, slave: str, body: Any) -> dict[str, Any]:
        """:meth:`get_key` for an event loop: the loop thread only queues the request for the
        link's group commit and awaits it, so no thread is parked per request."""
        started = time.perf_counter()
        caller, target, slaves, req = self._key_request(caller, slave, body)
        try:
            if target in self.peers:
                future = self._batcher(target).submit(self._order(caller, slaves, req))
                keys = await asyncio.wrap_future(future)
            else:
                keys = await asyncio.get_running_loop().run_in_executor(
                    None, self._keys_by_relay, caller, target, slaves, req.number, req.size
                )
        except KMEError as exc:
            self._refused(caller, target, slaves, req, exc)
            raise
        return self._delivered(caller, target, slaves, req, keys, started)

    def _key_request(
        self, caller: str | None, slave: str, body: Any
    ) -> tuple[str, str, tuple[str, ...], KeyRequest]:
        caller = self._check_caller(caller, "enc_keys")
        target = self.kme_of(slave, "slave_SAE_ID")
        req = parse_key_request(body, self.limits)
        slaves = (slave, *req.additional_slaves)
        if len(set(slaves)) != len(slaves) or caller in slaves:
            raise bad("additional_slave_SAE_IDs must differ from slave_SAE_ID and from the master")
        for extra in req.additional_slaves:
            if self.kme_of(extra, "additional_slave_SAE_ID") != target:
                raise bad(
                    f"additional slave {extra} is not served by KME {target} like {slave}; "
                    "all slaves of one request must share a KME"
                )
        return caller, target, slaves, req

    def _refused(
        self, caller: str, target: str, slaves: tuple[str, ...], req: KeyRequest, exc: KMEError
    ) -> None:
        self.audit.record(
            "enc_keys", who=caller, peer_sae=",".join(slaves), peer_kme=target,
            size=req.size, number=req.number, result="refused", status=exc.status,
            message=exc.message,
        )  # fmt: skip

    def _delivered(
        self,
        caller: str,
        target: str,
        slaves: tuple[str, ...],
        req: KeyRequest,
        keys: list[tuple[str, bytes]],
        started: float,
    ) -> dict[str, Any]:
        ids = [k for k, _ in keys]
        self.metrics.delivered(target, "enc_keys", len(keys))
        self.audit.record(
            "enc_keys", who=caller, peer_sae=",".join(slaves), peer_kme=target, key_ids=ids,
            size=req.size, number=req.number, result="ok", status=200,
            latency_ms=round((time.perf_counter() - started) * 1e3, 3),
        )  # fmt: skip
        return {"keys": [{"key_ID": k, "key": _b64(m)} for k, m in keys]}

    def _batcher(self, target: str) -> _GrantBatcher:
        batcher = self._batchers.get(target)
        if batcher is None:
            with self._batchers_lock:
                batcher = self._batchers.get(target)
                if batcher is None:  # one batcher (and its worker threads) per link
                    batcher = self._batchers[target] = _GrantBatcher(self, target)
        return batcher

    def _order(self, caller: str, slaves: tuple[str, ...], req: KeyRequest) -> _Order:
        return _Order(caller, slaves, req.number, req.size, self._units_per_key(req.size))

    def _keys_by_relay(
        self, caller: str, target: str, slaves: tuple[str, ...], number: int, size: int
    ) -> list[tuple[str, bytes]]:
        assert self.relay is not None
        keys = [(str(uuid.uuid4()), secrets.token_bytes(size // 8)) for _ in range(number)]
        try:
            self.relay.relay_keys(self.kme_id, target, keys, caller, slaves)
        except Exception as exc:
            raise KMEError(
                503, f"relay of keys to KME {target} failed ({type(exc).__name__}): {exc}"
            ) from None
        return keys

    def get_key_with_ids(
        self, caller: str | None, master: str, key_ids: Sequence[str]
    ) -> dict[str, Any]:
        """Get key with key IDs (dec_keys): each key once per named slave, in request order."""
        caller = self._check_caller(caller, "dec_keys")
        check_id(master, "master_SAE_ID")
        try:
            # a key granted here came from the master's KME: the link (or relay source) it is on
            link = self.sae_directory.get(master, "")
            keys = self.store.fetch_granted(link, caller, master, key_ids)
        except NotAuthorizedError:
            self.audit.record(
                "dec_keys", who=caller, peer_sae=master, key_ids=list(key_ids),
                result="unauthorized", status=401,
            )  # fmt: skip
            raise KMEError(
                401, f"SAE {caller} is not a slave of one or more of the requested keys"
            ) from None
        except KeysNotFoundError:
            self.audit.record(
                "dec_keys", who=caller, peer_sae=master, key_ids=list(key_ids),
                result="not found", status=400,
            )  # fmt: skip
            raise bad(MSG_NOT_FOUND) from None
        self.metrics.delivered(self.sae_directory.get(master, master), "dec_keys", len(keys))
        self.audit.record(
            "dec_keys", who=caller, peer_sae=master, peer_kme=self.sae_directory.get(master),
            key_ids=[k for k, _ in keys], size=8 * sum(len(m) for _, m in keys),
            number=len(keys), result="ok", status=200,
        )  # fmt: skip
        return {"keys": [{"key_ID": k, "key": _b64(m)} for k, m in keys]}

    # -- KME to KME ----------------------------------------------------------------------------
    def accept_grants(self, source_kme: str, groups: Sequence[GrantGroup]) -> None:
        """Record keys the adjacent KME ``source_kme`` delivered to a master SAE."""
        if source_kme not in self.peers:
            raise KMEError(401, f"KME {source_kme!r} has no link to KME {self.kme_id}")
        # a unit is the source's when the last hex digit of its ID has the source's parity
        # (owner_of): checked on the set of last digits of a whole group
        bit = 0 if min(self.kme_id, source_kme) == source_kme else 1
        theirs = frozenset(c for c in _HEX if int(c, 16) & 1 == bit)
        for g in groups:
            if not g.key_ids:
                raise bad("a grant group names no key")
            first = g.key_ids[0]
            if not set(g.slaves) <= self.local_saes:
                raise bad(f"grant {first} names slaves that are not attached to {self.kme_id}")
            per_key = self._units_per_key(g.size_bits)
            if g.units is None:
                if per_key != 1:
                    raise bad(f"grant {first}: 1 unit for {g.size_bits} bits")
            elif len(g.units) != len(g.key_ids) or any(
                len(u) != per_key or u[0] != k for k, u in zip(g.key_ids, g.units, strict=False)
            ):
                raise bad(
                    f"grant group of {first}: each key needs {per_key} units for "
                    f"{g.size_bits} bits, the first with the key's ID"
                )
            ids = g.unit_ids()
            if not set(map(_last, ids)) <= theirs:
                for u in ids:
                    if owner_of(u, self.kme_id, source_kme) != source_kme:
                        raise bad(f"grant {first} uses units that KME {source_kme} does not own")
        try:
            self.store.add_grants(source_kme, groups)
        except KeysNotFoundError as exc:
            raise KMEError(
                503, f"KME {self.kme_id} does not hold those units of link {source_kme}: {exc}"
            ) from None
        self.audit.record(
            "grant", who=source_kme, peer_kme=source_kme,
            key_ids=[k for g in groups for k in g.key_ids],
            number=sum(len(g.key_ids) for g in groups), result="ok", status=200,
        )  # fmt: skip

    def accept_relayed(
        self,
        source_kme: str,
        keys: Sequence[tuple[str, bytes]],
        master_sae: str,
        slaves: Sequence[str],
    ) -> None:
        """Store keys relayed from ``source_kme`` for local ``slaves`` (end of a relay path)."""
        if not set(slaves) <= self.local_saes:
            raise bad(f"relayed keys name slaves that are not attached to {self.kme_id}")
        self.store.add_relayed(source_kme, [(check_key_id(k), m) for k, m in keys], master_sae,
                               slaves)  # fmt: skip
        self.audit.record(
            "relayed_in", who=source_kme, peer_sae=master_sae, peer_kme=source_kme,
            key_ids=[k for k, _ in keys], number=len(keys), result="ok", status=200,
        )  # fmt: skip


@dataclass
class _Order:
    """One enc_keys request waiting for the link's next group commit."""

    caller: str
    slaves: tuple[str, ...]
    number: int
    size: int
    per_key: int
    # the keys, or the KMEError that refused the request; set by the link's grant worker
    future: Future[list[tuple[str, bytes]]] = field(default_factory=Future)
    keys: list[tuple[str, bytes]] | None = None
    error: KMEError | None = None


class _GrantBatcher:
    """Group commit of enc_keys requests for one link.

    Concurrent requests are queued; a worker thread serves all queued requests in one store
    take and one grant call to the peer KME, so the store commits and the peer round trip are
    paid once per batch instead of once per request. A few workers run at once, so one batch's
    peer round trip overlaps the next batch's store work. Each request is still served whole or
    not at all, exactly once.
    """

    MAX_BATCH_UNITS = 8192
    # batches in flight at once per link. PostgreSQL overlaps them (row locks). SQLite has one
    # writer, but it is held only for the short reserve and erase transactions, so while one
    # batch waits for the peer KME the next reserves its units (measured on 2 loaded cores with
    # 32 single-key clients, three pairs of runs: 1 worker 572-740 req/s, 3 workers 771-1,420)
    WORKERS: ClassVar[dict[str, int]] = {"postgresql": 4, "sqlite": 3}

    def __init__(self, kme: KME, target: str) -> None:
        self.kme = kme
        self.target = target
        self.queue: queue.SimpleQueue[_Order] = queue.SimpleQueue()
        self.threads = [
            threading.Thread(target=self._run, daemon=True, name=f"grants-{target}-{i}")
            for i in range(self.WORKERS.get(kme.store.dialect, 1))
        ]
        for thread in self.threads:
            thread.start()

    def submit(self, order: _Order) -> Future[list[tuple[str, bytes]]]:
        """Queue ``order`` for the next group commit; its future gives the keys."""
        self.queue.put(order)
        return order.future

    def _run(self) -> None:
        while True:
            first = self.queue.get()
            batch = [first] if first.future.set_running_or_notify_cancel() else []
            units = sum(o.number * o.per_key for o in batch)
            while units < self.MAX_BATCH_UNITS:
                try:
                    order = self.queue.get_nowait()
                except queue.Empty:
                    break
                # a request whose caller gave up (cancelled) is dropped before it takes keys
                if order.future.set_running_or_notify_cancel():
                    batch.append(order)
                    units += order.number * order.per_key
            if not batch:
                continue
            try:
                self._serve(batch)
            except KMEError as exc:
                for order in batch:
                    order.error = exc
            except Exception:
                log.exception("grant batch failed")
                for order in batch:
                    order.error = KMEError(503, "internal error in the KME; see its log")
            for order in batch:
                if order.error is not None:
                    order.future.set_exception(order.error)
                else:
                    assert order.keys is not None
                    order.future.set_result(order.keys)

    def _serve(self, batch: list[_Order]) -> None:
        peer = self.kme.peers[self.target]
        unit_bytes = self.kme.unit_bits // 8

        def confirm(alloc: list[list[tuple[str, bytes]] | None]) -> None:
            # one group per (master, slaves, size) of the batch: the peer records each once
            groups: dict[tuple[str, tuple[str, ...], int], GrantGroup] = {}
            for order, taken in zip(batch, alloc, strict=True):
                if taken is None:
                    continue
                k = order.per_key
                group = groups.get((order.caller, order.slaves, order.size))
                if group is None:
                    group = GrantGroup(order.caller, order.slaves, order.size, [],
                                       None if k == 1 else [])  # fmt: skip
                    groups[order.caller, order.slaves, order.size] = group
                if k == 1:  # the common case: a key is one unit and carries its ID
                    group.key_ids.extend([u for u, _ in taken])
                    continue
                assert group.units is not None
                for j in range(order.number):
                    members = tuple(u for u, _ in taken[j * k : (j + 1) * k])
                    group.key_ids.append(members[0])
                    group.units.append(members)
            try:
                peer.grant(self.kme.kme_id, list(groups.values()))
            except PeerError as exc:
                raise KMEError(
                    503,
                    f"peer KME {self.target} did not confirm the keys ({exc}); no key was consumed",
                ) from None

        alloc, available = self.kme.store.take_owned_batch(
            self.target, [o.number * o.per_key for o in batch], confirm
        )
        remaining = available - sum(len(t) for t in alloc if t is not None)
        for order, taken in zip(batch, alloc, strict=True):
            if taken is None:
                order.error = KMEError(
                    503,
                    f"insufficient amount of key material: {remaining // order.per_key} keys of "
                    f"{order.size} bits available for slave SAE {order.slaves[0]}, "
                    f"{order.number} requested",
                )
                continue
            k, size = order.per_key, order.size
            if k == 1 and size == 8 * unit_bytes:
                order.keys = taken  # one whole unit per key: the unit is the key
                continue
            order.keys = [
                (taken[j * k][0], assemble_key([m for _, m in taken[j * k : (j + 1) * k]], size))
                for j in range(order.number)
            ]


class InProcessPeer:
    """A :class:`PeerLink` to a KME object in the same process (tests, ``network/runtime``)."""

    def __init__(self, kme: KME | None = None) -> None:
        self.kme = kme

    def grant(self, source_kme: str, groups: Sequence[GrantGroup]) -> None:
        if self.kme is None:
            raise PeerError("peer KME not attached")
        try:
            self.kme.accept_grants(source_kme, groups)
        except KMEError as exc:
            raise PeerError(exc.message) from None


def link_in_process(a: KME, b: KME) -> None:
    """Join two in-process KMEs as the two ends of one link."""
    a.peers[b.kme_id] = InProcessPeer(b)
    b.peers[a.kme_id] = InProcessPeer(a)
