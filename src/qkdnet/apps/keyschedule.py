"""Getting keys to the channel in time: prefetch on the master side, fetch-by-ID on the slave side.

:class:`KeySupply` (initiator, 014 master) keeps keys fetched ahead on a background thread, so a
rekey takes a key that is already in memory and never waits for the KME while the pool is healthy.
It starts one key ahead and doubles its depth (up to ``max_depth`` and to a quarter of the keys
used so far, fetched in one request) each time a rekey finds no key ready, so fast rekeying is not
limited by the KME round trip; keys fetched ahead and unused at the end are discarded (counted,
at most a quarter of those used plus one), never reused.
When the pool runs dry the :class:`ShortagePolicy` decides: ``wait`` blocks a rekey up to
``max_wait_s`` for the KME to refill, ``refuse`` fails the rekey at the first 503. Either way a key is
never reused and traffic never continues past its rekey point under the old key.

:class:`KeyFetcher` (responder, 014 slave) fetches keys by ID, in the background for IDs announced
ahead of use, and refuses to hand out any key ID twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from qkdnet.apps.keysource import KeySource, KeySourceError, PoolDepletedError, QuantumKey

log = logging.getLogger("qkdnet.apps")


class KeyReuseError(Exception):
    """A key ID was offered a second time; the channel refuses it (a key is used once only)."""


@dataclass(frozen=True)
class ShortagePolicy:
    """What a rekey does when the KME pool is empty: ``wait`` (bounded) or ``refuse``."""

    action: Literal["wait", "refuse"] = "wait"
    max_wait_s: float = 10.0
    retry_s: float = 0.1

    def __post_init__(self) -> None:
        if self.action not in ("wait", "refuse"):
            raise ValueError(f"shortage action must be 'wait' or 'refuse' (got {self.action!r})")
        if not self.max_wait_s >= 0 or not self.retry_s > 0:
            raise ValueError("max_wait_s must be >= 0 and retry_s > 0")


class KeySupply:
    """Master-side key queue for one slave SAE, refilled ahead of use by a daemon thread."""

    def __init__(
        self,
        source: KeySource,
        slave_sae_id: str,
        size_bits: int,
        *,
        depth: int = 1,
        max_depth: int = 64,
        max_per_request: int = 1,
        policy: ShortagePolicy | None = None,
    ) -> None:
        self._source = source
        self._slave = slave_sae_id
        self._size_bits = size_bits
        self._depth = max(0, depth)
        self._max_depth = max(self._depth, max_depth)
        self._max_per_request = max(1, max_per_request)
        self.policy = policy or ShortagePolicy()
        self._queue: deque[QuantumKey] = deque()
        self._cond = threading.Condition()
        self._demand = self._depth
        self._depleted: PoolDepletedError | None = (
            None  # last answer was 503 and nothing came since
        )
        self._fatal: KeySourceError | None = None
        self._closed = False
        self._seen: set[str] = set()
        self.fetched = 0
        self.taken = 0
        self.stalls = 0  # take() calls that found too few keys ready and had to wait
        self._thread = threading.Thread(target=self._run, name="qkdnet-key-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        number_cap = self._max_per_request
        while True:
            with self._cond:
                while not self._closed and self._fatal is None and len(self._queue) >= self._demand:
                    self._cond.wait()
                if self._closed or self._fatal is not None:
                    return
                number = min(number_cap, self._demand - len(self._queue))
            try:
                keys = self._source.enc_keys(self._slave, number, self._size_bits)
            except PoolDepletedError as exc:
                if number > 1:  # a smaller request may still fit the pool: not empty yet
                    number_cap = max(1, number // 2)
                    continue
                with self._cond:
                    self._depleted = exc
                    self._cond.notify_all()
                time.sleep(self.policy.retry_s)
                continue
            except KeySourceError as exc:
                with self._cond:
                    self._fatal = exc
                    self._cond.notify_all()
                return
            with self._cond:
                for key in keys:
                    if key.key_id in self._seen:
                        self._fatal = KeySourceError(
                            f"the KME delivered key ID {key.key_id} twice; refusing to use it"
                        )
                        self._cond.notify_all()
                        return
                    self._seen.add(key.key_id)
                    self._queue.append(key)
                self.fetched += len(keys)
                self._depleted = None
                self._cond.notify_all()
            number_cap = self._max_per_request

    def ready_ids(self) -> list[str]:
        """IDs of the keys already fetched, in the order :meth:`take` will return them."""
        with self._cond:
            return [k.key_id for k in self._queue]

    def take(self, n: int = 1) -> list[QuantumKey]:
        """Remove ``n`` keys, waiting or refusing per the shortage policy when the pool is dry."""
        deadline = time.monotonic() + self.policy.max_wait_s
        with self._cond:
            self._demand = max(self._depth, n)
            self._cond.notify_all()
            if len(self._queue) < n:
                self.stalls += 1
                # consumption outpaces one KME round trip: fetch further ahead, but never more
                # than a quarter of what the session has used (bounds the keys discarded at the end)
                grown = min(self._max_depth, 2 * max(1, self._depth), self.taken // 4)
                self._depth = max(self._depth, grown)
            while len(self._queue) < n:
                if self._fatal is not None:
                    raise self._fatal
                if self._depleted is not None:
                    if self.policy.action == "refuse":
                        raise PoolDepletedError(
                            f"key pool depleted (policy 'refuse'): {self._depleted}"
                        ) from None
                    if time.monotonic() >= deadline:
                        raise PoolDepletedError(
                            f"no key within {self.policy.max_wait_s:g} s (policy 'wait'): "
                            f"{self._depleted}"
                        ) from None
                self._cond.wait(timeout=0.05)
            keys = [self._queue.popleft() for _ in range(n)]
            self._demand = self._depth
            self.taken += n
            self._cond.notify_all()
        return keys

    def fetch_now(self, number: int, size_bits: int) -> list[QuantumKey]:
        """Fetch keys of a size chosen per message (one-time pad), under the same policy.

        Not prefetched: the size is known only when the message is. A 503 is retried every
        ``retry_s`` until ``max_wait_s`` under ``wait`` and raised at once under ``refuse``.
        """
        deadline = time.monotonic() + self.policy.max_wait_s
        waited = False
        while True:
            try:
                keys = self._source.enc_keys(self._slave, number, size_bits)
                break
            except PoolDepletedError as exc:
                if self.policy.action == "refuse":
                    raise PoolDepletedError(f"key pool depleted (policy 'refuse'): {exc}") from None
                if time.monotonic() >= deadline:
                    raise PoolDepletedError(
                        f"no key within {self.policy.max_wait_s:g} s (policy 'wait'): {exc}"
                    ) from None
                waited = True
                time.sleep(self.policy.retry_s)
        with self._cond:
            self.stalls += waited
            for key in keys:
                if key.key_id in self._seen:
                    raise KeySourceError(f"the KME delivered key ID {key.key_id} twice")
                self._seen.add(key.key_id)
            self.fetched += len(keys)
            self.taken += len(keys)
        return keys

    def close(self) -> int:
        """Stop prefetching; returns how many fetched keys are discarded unused (never reused)."""
        with self._cond:
            self._closed = True
            discarded = len(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        return discarded


class KeyFetcher:
    """Slave-side fetch of keys by ID, with background prefetch and a never-twice guarantee."""

    def __init__(self, source: KeySource, master_sae_id: str, max_per_request: int = 1) -> None:
        self._source = source
        self._master = master_sae_id
        self._max_per_request = max(1, max_per_request)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qkdnet-key-fetch")
        self._pending: dict[str, Future[QuantumKey]] = {}
        self._used: set[str] = set()
        self.fetched = 0
        self.blocking_fetches = 0  # get() calls that had to ask the KME while the caller waited

    def _fetch(self, key_ids: Sequence[str]) -> list[QuantumKey]:
        out: list[QuantumKey] = []
        for start in range(0, len(key_ids), self._max_per_request):
            chunk = list(key_ids[start : start + self._max_per_request])
            keys = self._source.dec_keys(self._master, chunk)
            if [k.key_id for k in keys] != chunk:
                raise KeySourceError("the KME returned keys other than the IDs requested")
            out.extend(keys)
        self.fetched += len(out)
        return out

    def prefetch(self, key_ids: Sequence[str]) -> None:
        """Start fetching ``key_ids`` in the background (IDs announced ahead of use)."""
        fresh = [k for k in key_ids if k not in self._used and k not in self._pending]
        if not fresh:
            return
        batch = self._pool.submit(self._fetch, fresh)
        for i, key_id in enumerate(fresh):
            fut: Future[QuantumKey] = Future()
            self._pending[key_id] = fut

            def _done(b: Future[list[QuantumKey]], f: Future[QuantumKey] = fut, j: int = i) -> None:
                if b.cancelled():
                    f.cancel()
                    return
                exc = b.exception()
                if exc is not None:
                    f.set_exception(exc)
                else:
                    f.set_result(b.result()[j])

            batch.add_done_callback(_done)

    def get(self, key_ids: Sequence[str]) -> list[QuantumKey]:
        """The keys for ``key_ids`` in order; each ID is accepted once in the session's lifetime."""
        if len(set(key_ids)) != len(key_ids):
            raise KeyReuseError("a frame names the same key ID twice")
        for key_id in key_ids:
            if key_id in self._used:
                raise KeyReuseError(f"key ID {key_id} was already used; refusing to reuse a key")
        missing = [k for k in key_ids if k not in self._pending]
        if missing:
            self.blocking_fetches += 1
        fetched = dict(zip(missing, self._fetch(missing), strict=True)) if missing else {}
        out = []
        for key_id in key_ids:
            key = fetched[key_id] if key_id in fetched else self._pending.pop(key_id).result()
            self._used.add(key_id)
            out.append(key)
        return out

    def close(self) -> None:
        """Stop the background fetcher."""
        self._pool.shutdown(wait=False, cancel_futures=True)
