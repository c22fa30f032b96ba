"""Cascade error correction, the modern variant of Martinez-Mateo, Pacher, Peev, Ciurana and
Martin, "Demystifying the information reconciliation protocol Cascade", Quantum Inf. Comput.
15, 453 (2015): their best-performing "option 8".

* 14 passes; block sizes k1 = 2^⌈α⌉, k2 = 2^⌈(α + 12)/2⌉, k3 = 4096, k_i = n/2 afterwards, with
  α = log2(1/Q) − 1/2 (Q the estimated QBER);
* pass 1 uses the key in order, later passes a pseudo-random shuffle both parties derive from a
  seed Bob announces (passes with two blocks split the key by a random mask, which is cheaper
  than a full permutation and just as random); shuffles come from a SplitMix64 stream seeded
  by the announced seed, and a mask pass builds its shuffle (and the parties their shuffled
  copies) only when one of its two blocks is odd — in practice passes 4–14 only compare two
  parities computed straight from the key, which makes per-frame set-up cheap;
* sub-block reuse: every block or sub-block whose parity Alice has revealed is remembered with
  its mismatch (Alice's parity XOR Bob's); correcting a bit toggles the mismatch of every known
  block containing it in every pass, and the smallest odd one is searched next (no parity is
  ever asked twice, and the cascade starts from the smallest known odd block);
* batching: all binary searches in flight advance together, so one round trip carries one
  parity per active search (Alice answers a list of (pass, start, end) ranges).

Bob drives the protocol (:class:`CascadeBob`) against a :class:`ParityOracle`, answered by
:class:`CascadeAlice`: the readable reference implementation. The pipeline and
:func:`reconcile_local` run the same protocol with :mod:`qkdnet.postprocess.cascade_group`
(many frames per round trip, bit-packed, pooled memory; tests check that both ask the same
parities and correct the same bits). The disclosed
bits are exactly the parities Alice reveals. Keys are uint8 0/1 arrays; per pass both parties
keep a shuffled copy so that every block parity is a contiguous XOR (numba kernels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numba as nb
import numpy as np

PASSES = 14
# Known-parity tree entries: 0 = parity unknown (so np.zeros, lazily zeroed pages, is the
# initial state), 1 = known and even mismatch, 2 = known and odd, 3 = parity requested.
_UNKNOWN = np.int8(0)
_EVEN = np.int8(1)
_ODD = np.int8(2)
_PENDING = np.int8(3)


def block_sizes(qber: float, n: int, passes: int = PASSES) -> list[int]:
    """Block size of each pass ("option 8" of Martinez-Mateo et al. 2015), capped at n."""
    q = min(max(qber, 1e-5), 0.25)
    alpha = math.log2(1.0 / q) - 0.5
    sizes = [2 ** math.ceil(alpha), 2 ** math.ceil((alpha + 12.0) / 2.0), 4096]
    sizes += [max(n // 2, 1)] * max(passes - 3, 0)
    return [int(min(max(k, 1), n)) for k in sizes[:passes]]


@nb.njit(cache=True, inline="always")
def _splitmix64(state: np.uint64) -> tuple[np.uint64, np.uint64]:
    """SplitMix64 (Steele, Lea & Flood, OOPSLA 2014): next state and output."""
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


@nb.njit(cache=True)
def _derive_perms(n: int, sizes: np.ndarray, seed: np.uint64):
    """Every pass's shuffle from one SplitMix64 stream (the shuffles are public; they only have
    to spread errors, so a fast generator suffices). Passes whose block is at least n/2 split
    the key by a random mask, larger part first (``kind`` 1: the mask's ones come first, 2: its
    zeros); their ``sizes`` entry becomes that part's size and their shuffle is only built
    when needed (:func:`_materialize`). Other passes (kind 0): Fisher–Yates with Lemire's
    multiply-shift bound, built here with their inverses."""
    passes = sizes.size
    perms = np.empty((passes, n), dtype=np.int32)
    inv = np.empty((passes, n), dtype=np.int32)
    n_words = (n + 63) // 64
    masks = np.zeros((passes, n_words), dtype=np.uint64)
    kind = np.zeros(passes, dtype=np.int8)
    ready = np.zeros(passes, dtype=np.bool_)
    _derive_into(n, sizes, seed, perms, inv, masks, kind, ready)
    return perms, inv, masks, kind, ready


@nb.njit(cache=True)
def _derive_into(n: int, sizes, seed: np.uint64, perms, inv, masks, kind, ready) -> None:
    """:func:`_derive_perms` into given arrays (zeroed ``masks``/``kind``/``ready``).
    :mod:`qkdnet.postprocess.cascade_group` derives the same stream pass by pass from its
    position instead (a test checks both against each other)."""
    passes = sizes.size
    n_words = (n + 63) // 64
    for i in range(n):
        perms[0, i] = i
        inv[0, i] = i
    ready[0] = True
    state = seed
    for r in range(1, passes):
        if sizes[r] >= n // 2 and n >= 4:
            ones = 0
            for w in range(n_words):
                state, masks[r, w] = _splitmix64(state)
            if n % 64:
                masks[r, n_words - 1] &= (np.uint64(1) << np.uint64(n % 64)) - np.uint64(1)
            for w in range(n_words):
                x = masks[r, w]
                while x:
                    x &= x - np.uint64(1)
                    ones += 1
            kind[r] = 1 if ones >= n - ones else 2
            sizes[r] = max(ones if kind[r] == 1 else n - ones, 1)
        else:
            row = perms[r]
            for i in range(n):
                row[i] = i
            for i in range(n - 1, 0, -1):
                state, x = _splitmix64(state)
                j = np.int64(((x >> np.uint64(32)) * np.uint64(i + 1)) >> np.uint64(32))
                t = row[i]
                row[i] = row[j]
                row[j] = t
            for i in range(n):
                inv[r, row[i]] = i
            ready[r] = True


@nb.njit(cache=True, inline="always")
def _in_first(masks: np.ndarray, kind: np.ndarray, r: int, i: int) -> int:
    """1 if key index i lies in the first (larger) part of mask pass r, else 0."""
    bit = np.int64((masks[r, i >> 6] >> np.uint64(i & 63)) & np.uint64(1))
    return bit if kind[r] == 1 else 1 - bit


@nb.njit(cache=True)
def _materialize(r: int, perms, inv, masks, kind, ready) -> None:
    """Build the shuffle and inverse of mask pass r (first part, then second, in key order)."""
    if ready[r]:
        return
    n = perms.shape[1]
    a = 0
    b = 0
    for i in range(n):
        b += _in_first(masks, kind, r, i)
    for i in range(n):  # branch-free: a random bit would mispredict half the time
        sel = _in_first(masks, kind, r, i)
        pos = sel * a + (1 - sel) * b
        perms[r, pos] = i
        inv[r, i] = pos
        a += sel
        b += 1 - sel
    ready[r] = True


@nb.njit(cache=True)
def _mask_parities(key: np.ndarray, masks, kind, r: int, n_blocks: int) -> np.ndarray:
    """Block parities of mask pass r straight from the key (no shuffle needed)."""
    return _mask_parities_at(key, 0, key.size, masks, 0, r, kind[r] == 1, n_blocks)


@nb.njit(cache=True)
def _mask_parities_at(key, start, n, masks, word0, r, ones_first, n_blocks) -> np.ndarray:
    """:func:`_mask_parities` of ``key[start : start + n]`` with mask words from ``word0`` on
    (whole contiguous arrays, so that the loop vectorises): the parity of key AND mask, a
    mask word at a time, and the total parity."""
    ones = np.uint64(0)
    total = np.uint64(0)
    full = n // 64
    for w in range(full):
        x = masks[r, word0 + w]
        base = start + w * 64
        for t in range(64):
            k = np.uint64(key[base + t])
            ones ^= k & (x >> np.uint64(t))
            total ^= k
    for i in range(full * 64, n):
        k = np.uint64(key[start + i])
        ones ^= k & (masks[r, word0 + (i >> 6)] >> np.uint64(i & 63))
        total ^= k
    ones &= np.uint64(1)
    total &= np.uint64(1)
    out = np.empty(n_blocks, dtype=np.uint8)
    if n_blocks == 1:
        out[0] = total
    else:
        first = ones if ones_first else ones ^ total
        out[0] = first
        out[1] = first ^ total
    return out


@dataclass(frozen=True)
class Schedule:
    """The shuffles and block sizes of every pass, derived from a public seed by both parties."""

    n: int
    sizes: tuple[int, ...]
    perms: np.ndarray  # (passes, n) int32: position in pass r's shuffled order -> key index
    inv: np.ndarray  # (passes, n) int32: key index -> position in pass r's shuffled order
    masks: np.ndarray  # (passes, words) uint64: the split of each mask pass
    kind: np.ndarray  # (passes,) int8: 0 shuffled, 1/2 mask pass (ones/zeros first)
    ready: np.ndarray  # (passes,) bool: perms/inv rows built (mask passes are built lazily)

    @classmethod
    def derive(cls, n: int, qber: float, seed: int, passes: int = PASSES) -> Schedule:
        """Both parties call this with the announced seed and QBER estimate."""
        if n < 2:
            raise ValueError(f"Cascade needs at least 2 bits (got {n})")
        sizes = np.array(block_sizes(qber, n, passes), dtype=np.int64)
        seed64 = np.uint64(int(seed) % 2**64)
        perms, inv, masks, kind, ready = _derive_perms(n, sizes, seed64)
        return cls(n, tuple(int(k) for k in sizes), perms, inv, masks, kind, ready)

    def materialize(self, r: int) -> None:
        """Build pass r's shuffle and inverse if they are not yet."""
        _materialize(r, self.perms, self.inv, self.masks, self.kind, self.ready)


class ParityOracle(Protocol):
    """Alice's side as Bob sees it: parities of her key over blocks of the shuffled key."""

    def pass_parities(self, r: int) -> np.ndarray:
        """Parities of every block of pass r (uint8)."""
        ...

    def range_parities(self, r: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Parities of Alice's pass-r shuffled key over [start, end) for each request."""
        ...


@nb.njit(cache=True)
def _block_parities(shuffled: np.ndarray, k: int) -> np.ndarray:
    n = shuffled.size
    nb_ = (n + k - 1) // k
    out = np.zeros(nb_, dtype=np.uint8)
    for b in range(nb_):
        acc = np.uint8(0)
        for i in range(b * k, min(n, (b + 1) * k)):
            acc ^= shuffled[i]
        out[b] = acc
    return out


@nb.njit(cache=True)
def _range_parities(
    shuffled: np.ndarray, r: np.ndarray, start: np.ndarray, end: np.ndarray
) -> np.ndarray:
    out = np.zeros(r.size, dtype=np.uint8)
    for j in range(r.size):
        row = shuffled[r[j]]
        acc = np.uint8(0)
        for i in range(start[j], end[j]):
            acc ^= row[i]
        out[j] = acc
    return out


class CascadeAlice:
    """Alice's part: she answers parity requests about her key and keeps it unchanged."""

    def __init__(self, key: np.ndarray, schedule: Schedule) -> None:
        self.schedule = schedule
        self._shuffled = np.empty((len(schedule.sizes), schedule.n), dtype=np.uint8)
        self._ready = np.zeros(len(schedule.sizes), dtype=bool)
        self._key = np.ascontiguousarray(key, dtype=np.uint8)
        self.disclosed_bits = 0

    def _shuffle(self, r: int) -> None:
        if not self._ready[r]:
            self.schedule.materialize(r)
            self._shuffled[r] = self._key[self.schedule.perms[r]]
            self._ready[r] = True

    def pass_parities(self, r: int) -> np.ndarray:
        sch = self.schedule
        if sch.kind[r] and not self._ready[r]:
            n_blocks = -(-sch.n // sch.sizes[r])
            out = _mask_parities(self._key, sch.masks, sch.kind, r, n_blocks)
        else:
            self._shuffle(r)
            out = _block_parities(self._shuffled[r], sch.sizes[r])
        self.disclosed_bits += out.size
        return out

    def range_parities(self, r: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        missing = ~self._ready[r]
        if missing.any():
            for rr in set(r[missing].tolist()):
                self._shuffle(int(rr))
        out = _range_parities(self._shuffled, r.astype(np.int64), start, end)
        self.disclosed_bits += out.size
        return out


@nb.njit(cache=True, inline="always")
def _node_range(h: int, s: int, e: int) -> tuple[int, int]:
    """Range [s, e) of heap node h (root 1) inside the block [s, e): halve along h's bits."""
    depth = 0
    x = h
    while x > 1:
        x >>= 1
        depth += 1
    for d in range(depth - 1, -1, -1):
        mid = s + (e - s + 1) // 2
        if (h >> d) & 1:
            s = mid
        else:
            e = mid
    return s, e


@nb.njit(cache=True)
def _flip(
    p: int,
    key: np.ndarray,
    inv: np.ndarray,
    shuffled: np.ndarray,
    sizes: np.ndarray,
    heap: np.ndarray,
    offsets: np.ndarray,
    mm: np.ndarray,
    started: int,
    push_r: np.ndarray,
    push_b: np.ndarray,
    push_h: np.ndarray,
    n_push: int,
    perms: np.ndarray,
    lazy: tuple,
) -> int:
    """Flip Bob's bit p; toggle the mismatch of every known block holding it in the started
    passes and queue the smallest odd known block of each pass. Returns the new push count.

    A started mask pass whose shuffle is not built yet (``live`` false) knows only its two top
    blocks: the flip toggles one, and if that turns odd the shuffle is built from the current
    key and the block is queued. Passes not started yet are built from the key when they start.
    """
    masks, kind, ready, live = lazy
    n = key.size
    key[p] ^= 1
    for r in range(inv.shape[0]):
        if not live[r]:
            if r >= started:
                continue  # built from the key when the pass starts
            b = 1 - _in_first(masks, kind, r, p)
            root = offsets[r] + b * heap[r] + 1
            v = mm[root] ^ 3
            mm[root] = v
            if v == _ODD:
                _materialize(r, perms, inv, masks, kind, ready)
                for i in range(n):
                    shuffled[r, i] = key[perms[r, i]]
                live[r] = True
                push_r[n_push] = r
                push_b[n_push] = b
                push_h[n_push] = 1
                n_push += 1
            continue
        q = inv[r, p]
        shuffled[r, q] ^= 1
        if r >= started:
            continue
        k = sizes[r]
        b = q // k
        s = b * k
        e = min(s + k, n)
        h = 1
        base = offsets[r] + b * heap[r]
        deepest = -1
        while True:
            v = mm[base + h]
            if v != _EVEN and v != _ODD:
                break
            v ^= 3
            mm[base + h] = v
            if v == _ODD:
                deepest = h
            if e - s == 1:
                break
            mid = s + (e - s + 1) // 2
            if q < mid:
                h = 2 * h
                e = mid
            else:
                h = 2 * h + 1
                s = mid
        if deepest > 0:
            push_r[n_push] = r
            push_b[n_push] = b
            push_h[n_push] = deepest
            n_push += 1
    return n_push


@nb.njit(cache=True)
def _advance(
    w_r: np.ndarray,
    w_b: np.ndarray,
    w_h: np.ndarray,
    key: np.ndarray,
    perms: np.ndarray,
    inv: np.ndarray,
    shuffled: np.ndarray,
    sizes: np.ndarray,
    heap: np.ndarray,
    offsets: np.ndarray,
    mm: np.ndarray,
    started: int,
    lazy: tuple,
):
    """Move every search as far as known parities allow: correct the bit it reaches, or queue
    the parity request of the left half of its current block."""
    n = key.size
    m = w_r.size
    q_r = np.empty(m, dtype=np.int64)
    q_b = np.empty(m, dtype=np.int64)
    q_h = np.empty(m, dtype=np.int64)
    q_s = np.empty(m, dtype=np.int64)
    q_e = np.empty(m, dtype=np.int64)
    cap = m * inv.shape[0] + 1
    push_r = np.empty(cap, dtype=np.int64)
    push_b = np.empty(cap, dtype=np.int64)
    push_h = np.empty(cap, dtype=np.int64)
    n_q = 0
    n_push = 0
    corrected = 0
    for j in range(m):
        r = w_r[j]
        b = w_b[j]
        h = w_h[j]
        base = offsets[r] + b * heap[r]
        if mm[base + h] != _ODD:
            continue
        k = sizes[r]
        s0 = b * k
        s, e = _node_range(h, s0, min(s0 + k, n))
        while True:
            if e - s == 1:
                n_push = _flip(
                    perms[r, s], key, inv, shuffled, sizes, heap, offsets, mm, started,
                    push_r, push_b, push_h, n_push, perms, lazy,
                )  # fmt: skip
                corrected += 1
                break
            mid = s + (e - s + 1) // 2
            left = mm[base + 2 * h]
            if left == _UNKNOWN:
                mm[base + 2 * h] = _PENDING
                q_r[n_q] = r
                q_b[n_q] = b
                q_h[n_q] = h
                q_s[n_q] = s
                q_e[n_q] = mid
                n_q += 1
                break
            if left == _PENDING:
                break
            if left == _ODD:
                h = 2 * h
                e = mid
            else:
                h = 2 * h + 1
                s = mid
        if n_push > cap - inv.shape[0] - 1:
            break
    return (
        q_r[:n_q], q_b[:n_q], q_h[:n_q], q_s[:n_q], q_e[:n_q],
        push_r[:n_push], push_b[:n_push], push_h[:n_push], corrected,
    )  # fmt: skip


@nb.njit(cache=True)
def _apply(
    q_r: np.ndarray,
    q_b: np.ndarray,
    q_h: np.ndarray,
    q_s: np.ndarray,
    q_e: np.ndarray,
    alice: np.ndarray,
    shuffled: np.ndarray,
    heap: np.ndarray,
    offsets: np.ndarray,
    mm: np.ndarray,
) -> None:
    """Record Alice's answers: mismatch of the left half, and of the right half by inference."""
    for j in range(q_r.size):
        r = q_r[j]
        row = shuffled[r]
        acc = np.uint8(0)
        for i in range(q_s[j], q_e[j]):
            acc ^= row[i]
        base = offsets[r] + q_b[j] * heap[r]
        h = q_h[j]
        left = np.int8(alice[j] ^ acc)
        mm[base + 2 * h] = left + 1
        mm[base + 2 * h + 1] = np.int8(((mm[base + h] - 1) ^ left) + 1)


@nb.njit(cache=True)
def _start_pass(alice: np.ndarray, bob: np.ndarray, heap: int, offset: int, mm) -> np.ndarray:
    """Set the top-block mismatches of a pass from both parties' block parities; return the
    odd blocks."""
    odd = np.empty(bob.size, dtype=np.int64)
    n_odd = 0
    for b in range(bob.size):
        v = np.int8(alice[b] ^ bob[b])
        mm[offset + b * heap + 1] = v + 1
        if v == 1:
            odd[n_odd] = b
            n_odd += 1
    return odd[:n_odd]


@dataclass
class CascadeStats:
    """What one Cascade run cost."""

    disclosed_bits: int = 0
    round_trips: int = 0
    corrected: int = 0


class CascadeBob:
    """Bob's part: he corrects his key towards Alice's by asking her for parities.

    A state machine, so that the pipeline can batch the requests of many frames into one
    message: :meth:`next_request` says what Bob needs next (``None`` when done) and
    :meth:`deliver` hands him Alice's answer.
    """

    def __init__(self, key: np.ndarray, schedule: Schedule) -> None:
        self.schedule = schedule
        n = schedule.n
        self.key = np.array(key, dtype=np.uint8, copy=True)
        self._sizes = np.asarray(schedule.sizes, dtype=np.int64)
        self._inv = schedule.inv
        self._shuffled = np.empty((len(schedule.sizes), n), dtype=np.uint8)  # rows built lazily
        self._live = np.zeros(len(schedule.sizes), dtype=np.bool_)
        self._lazy = (schedule.masks, schedule.kind, schedule.ready, self._live)
        n_blocks = (n + self._sizes - 1) // self._sizes
        self._n_blocks = n_blocks
        self._heap = np.array(
            [2 ** (math.ceil(math.log2(max(int(k), 1))) + 1) for k in self._sizes], dtype=np.int64
        )
        sizes_flat = n_blocks * self._heap
        self._offsets = np.concatenate([[0], np.cumsum(sizes_flat)[:-1]]).astype(np.int64)
        self._mm = np.zeros(int(sizes_flat.sum()), dtype=np.int8)
        self.stats = CascadeStats()
        self._pass = -1
        self._w = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64))
        self._queries: tuple[np.ndarray, ...] | None = None
        self._pushes: tuple[np.ndarray, ...] | None = None
        self._awaiting_pass = False

    def _build(self, r: int) -> None:
        """Pass r's shuffled copy of the current key (and its shuffle, if not built yet)."""
        if not self._live[r]:
            self.schedule.materialize(r)
            self._shuffled[r] = self.key[self.schedule.perms[r]]
            self._live[r] = True

    def pass_block_count(self, r: int) -> int:
        """Number of blocks (parities Alice sends) in pass r."""
        return int(self._n_blocks[r])

    def next_request(self) -> tuple[int, np.ndarray, np.ndarray, np.ndarray] | None:
        """What Bob needs from Alice next: ``(r, empty, empty, empty)`` asks for all block
        parities of pass r; ``(-1, passes, starts, ends)`` asks for range parities; ``None``
        means Bob is done."""
        empty = np.empty(0, dtype=np.int64)
        while True:
            if self._awaiting_pass or self._queries is not None:
                raise RuntimeError("deliver the answer to the previous request first")
            w_r, w_b, w_h = self._w
            if w_r.size == 0:
                if self._pass + 1 >= len(self.schedule.sizes):
                    return None
                self._pass += 1
                self._awaiting_pass = True
                return self._pass, empty, empty, empty
            q_r, q_b, q_h, q_s, q_e, p_r, p_b, p_h, fixed = _advance(
                w_r, w_b, w_h, self.key, self.schedule.perms, self._inv, self._shuffled,
                self._sizes, self._heap, self._offsets, self._mm, self._pass + 1, self._lazy,
            )  # fmt: skip
            self.stats.corrected += int(fixed)
            if q_r.size:
                self._queries = (q_r, q_b, q_h, q_s, q_e)
                self._pushes = (p_r, p_b, p_h)
                return -1, q_r, q_s, q_e
            self._w = (p_r, p_b, p_h)

    def deliver(self, parities: np.ndarray) -> None:
        """Alice's answer to the last request (uint8 parities, in request order)."""
        self.stats.disclosed_bits += int(parities.size)
        self.stats.round_trips += 1
        if self._awaiting_pass:
            r = self._pass
            if parities.size != self._n_blocks[r]:
                raise ValueError(f"pass {r} needs {self._n_blocks[r]} parities")
            sch = self.schedule
            if sch.kind[r]:  # mask pass: parities straight from the key, shuffle only if needed
                bob = _mask_parities(self.key, sch.masks, sch.kind, r, int(self._n_blocks[r]))
            else:
                self._build(r)
                bob = _block_parities(self._shuffled[r], int(self._sizes[r]))
            odd = _start_pass(parities, bob, int(self._heap[r]), int(self._offsets[r]), self._mm)
            if odd.size:
                self._build(r)
            self._w = (np.full(odd.size, r, dtype=np.int64), odd, np.ones(odd.size, np.int64))
            self._awaiting_pass = False
            return
        if self._queries is None or self._pushes is None:
            raise RuntimeError("no request is waiting for an answer")
        q_r, q_b, q_h, q_s, q_e = self._queries
        if parities.size != q_r.size:
            raise ValueError(f"expected {q_r.size} parities (got {parities.size})")
        _apply(q_r, q_b, q_h, q_s, q_e, parities, self._shuffled, self._heap, self._offsets,
               self._mm)  # fmt: skip
        p_r, p_b, p_h = self._pushes
        self._w = (np.concatenate([q_r, p_r]), np.concatenate([q_b, p_b]),
                   np.concatenate([q_h, p_h]))  # fmt: skip
        self._queries = self._pushes = None

    def run(self, alice: ParityOracle) -> np.ndarray:
        """Run every pass against ``alice`` directly; returns Bob's corrected key."""
        while (request := self.next_request()) is not None:
            r, q_r, q_s, q_e = request
            if r >= 0:
                self.deliver(alice.pass_parities(r))
            else:
                self.deliver(alice.range_parities(q_r, q_s, q_e))
        return self.key


def reconcile_local(
    alice_key: np.ndarray, bob_key: np.ndarray, qber: float, seed: int = 0
) -> tuple[np.ndarray, CascadeStats]:
    """Cascade between two in-process keys (tests and benchmarks): Bob's corrected key and the
    run's statistics (``disclosed_bits`` = parities Alice revealed).

    Runs the fast group implementation (:mod:`qkdnet.postprocess.cascade_group`, one frame):
    the same parities, corrections and key as :class:`CascadeBob` against
    :class:`CascadeAlice` (the readable reference)."""
    from qkdnet.postprocess.cascade_group import GroupAlice, GroupBob, GroupSchedule

    if alice_key.size != bob_key.size:
        raise ValueError(f"keys differ in length ({alice_key.size} and {bob_key.size})")
    schedule = GroupSchedule.derive([alice_key.size], qber, [seed])
    with GroupBob(bob_key, schedule) as bob:
        corrected = bob.run(GroupAlice(alice_key, schedule))
        return corrected, CascadeStats(bob.disclosed_bits, bob.round_trips, bob.corrected)
