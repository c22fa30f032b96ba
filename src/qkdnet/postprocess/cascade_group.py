"""Cascade on a group of frames at once, one numba call per round trip for all of them.

The protocol is that of :mod:`qkdnet.postprocess.cascade` ("option 8" of Martinez-Mateo et al.,
QIC 15, 453 (2015), same shuffles from the same seeds), run frame by frame exactly as
:class:`~qkdnet.postprocess.cascade.CascadeBob` would: each frame asks for the block parities
of its next pass when its searches are exhausted, else for one parity per search in flight.
What differs is the bookkeeping: the frames of a group share flat arrays (keys concatenated,
per-pass shuffles and shuffled copies as ``(passes, total bits)`` rows, one known-parity tree
array, work lists ordered by frame), so that Bob turns Alice's answer into his next request,
and Alice answers a request, in one compiled call each. The Python cost of a round trip no
longer grows with the number of frames (the pipeline sends ~10^3 round trips per group).

Requests travel as two int32 arrays: ``passes`` (2 × k: frame, pass) asks for every block
parity of a frame's pass, ``ranges`` (4 × m: frame, pass, start, end) for the parity of a
range of a frame's shuffled key. Answers are the pass parities in request order, then the
range parities. Frames are indices within the group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from qkdnet.postprocess.cascade import (
    PASSES,
    _advance,
    _block_parities,
    _derive_into,
    _materialize,
    _start_pass,
    block_sizes,
)

_EMPTY_PASSES = np.zeros((2, 0), dtype=np.int32)
_EMPTY_RANGES = np.zeros((4, 0), dtype=np.int32)


@dataclass(frozen=True)
class GroupSchedule:
    """The shuffles and block sizes of every frame of a group (public, from the seeds).

    Frame f holds key bits ``[starts[f], starts[f + 1])`` of the group; its shuffles are those
    of ``Schedule.derive(n_f, qber, seeds[f])``, stored as columns of the same slice of
    ``perms``/``inv`` (indices local to the frame)."""

    starts: np.ndarray  # (F + 1,) int64
    word_starts: np.ndarray  # (F + 1,) int64: frame f's words in ``masks``
    sizes: np.ndarray  # (F, passes) int64 block size (part size for mask passes)
    n_blocks: np.ndarray  # (F, passes) int64
    perms: np.ndarray  # (passes, N) int32
    inv: np.ndarray  # (passes, N) int32
    masks: np.ndarray  # (passes, words) uint64
    kind: np.ndarray  # (F, passes) int8
    ready: np.ndarray  # (F, passes) bool

    @classmethod
    def derive(
        cls, lengths: list[int], qber: float, seeds: list[int], passes: int = PASSES
    ) -> GroupSchedule:
        """Both parties call this with the announced seeds and QBER estimate."""
        if any(n < 2 for n in lengths):
            raise ValueError(f"Cascade needs at least 2 bits per frame (got {min(lengths)})")
        n_frames = len(lengths)
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        word_starts = np.concatenate([[0], np.cumsum([(n + 63) // 64 for n in lengths])])
        word_starts = word_starts.astype(np.int64)
        total = int(starts[-1])
        perms = np.empty((passes, total), dtype=np.int32)  # pages of lazy rows stay untouched
        inv = np.empty((passes, total), dtype=np.int32)
        masks = np.zeros((passes, int(word_starts[-1])), dtype=np.uint64)
        kind = np.zeros((n_frames, passes), dtype=np.int8)
        ready = np.zeros((n_frames, passes), dtype=np.bool_)
        sizes = np.zeros((n_frames, passes), dtype=np.int64)
        for f, (n, seed) in enumerate(zip(lengths, seeds, strict=True)):
            a, b = int(starts[f]), int(starts[f + 1])
            sizes[f] = block_sizes(qber, n, passes)
            _derive_into(
                n, sizes[f], np.uint64(int(seed) % 2**64), perms[:, a:b], inv[:, a:b],
                masks[:, word_starts[f] : word_starts[f + 1]], kind[f], ready[f],
            )  # fmt: skip
        lengths_col = np.asarray(lengths, dtype=np.int64)[:, None]
        n_blocks = (lengths_col + sizes - 1) // sizes
        return cls(starts, word_starts, sizes, n_blocks, perms, inv, masks, kind, ready)

    @property
    def frames(self) -> int:
        return int(self.starts.size - 1)

    @property
    def passes(self) -> int:
        return int(self.perms.shape[0])


@nb.njit(cache=True)
def _build_row(f, r, key, shuffled, perms, inv, masks, kind, ready, built, starts, word_starts):
    """Frame f's pass-r shuffled copy of ``key`` (and its shuffle, if a mask pass not built)."""
    if built[f, r]:
        return
    a = starts[f]
    b = starts[f + 1]
    _materialize(r, perms[:, a:b], inv[:, a:b], masks[:, word_starts[f] : word_starts[f + 1]],
                 kind[f], ready[f])  # fmt: skip
    for i in range(b - a):
        shuffled[r, a + i] = key[a + perms[r, a + i]]
    built[f, r] = True


@nb.njit(cache=True)
def _mask_sweep(key, start, n, masks, word0, kind_row, out) -> None:
    """Block parities of every mask pass of a frame in one sweep over its key (``out[r]``:
    first part, second part): the key is packed a 64-bit word at a time, AND-ed with each mask
    word and XOR-accumulated; the parity of the accumulated word is the part's parity."""
    passes = kind_row.size
    acc = np.zeros(passes, dtype=np.uint64)
    total = np.uint64(0)
    for w in range((n + 63) // 64):
        base = start + w * 64
        k = np.uint64(0)
        for t in range(min(64, n - w * 64)):
            k |= np.uint64(key[base + t]) << np.uint64(t)
        total ^= k
        for r in range(passes):
            acc[r] ^= k & masks[r, word0 + w]  # zero rows for shuffled passes
    tot = _parity64(total)
    for r in range(passes):
        if kind_row[r]:
            first = _parity64(acc[r])
            if kind_row[r] != 1:
                first ^= tot
            out[r, 0] = first
            out[r, 1] = first ^ tot


@nb.njit(cache=True, inline="always")
def _parity64(x: np.uint64) -> np.uint8:
    x ^= x >> np.uint64(32)
    x ^= x >> np.uint64(16)
    x ^= x >> np.uint64(8)
    x ^= x >> np.uint64(4)
    x ^= x >> np.uint64(2)
    x ^= x >> np.uint64(1)
    return np.uint8(x & np.uint64(1))


@nb.njit(cache=True)
def _pass_parities(f, r, key, shuffled, perms, inv, masks, kind, ready, built, starts,
                   word_starts, sizes, n_blocks, mask_par, mask_at, flips):  # fmt: skip
    """Every block parity of frame f's pass r. An unbuilt mask pass takes them from one sweep
    of the frame's key for all its mask passes, redone only after the key changed (a bit
    corrected: ``flips[f]`` differs from ``mask_at[f]``)."""
    a = starts[f]
    b = starts[f + 1]
    if kind[f, r] and not built[f, r]:
        if mask_at[f] != flips[f]:
            _mask_sweep(key, a, b - a, masks, word_starts[f], kind[f], mask_par[f])
            mask_at[f] = flips[f]
        out = mask_par[f, r, : n_blocks[f, r]].copy()
        if n_blocks[f, r] == 1:
            out[0] = mask_par[f, r, 0] ^ mask_par[f, r, 1]
        return out
    _build_row(f, r, key, shuffled, perms, inv, masks, kind, ready, built, starts, word_starts)
    return _block_parities(shuffled[r, a:b], sizes[f, r])


@nb.njit(cache=True)
def _alice_answer(passes, ranges, key, shuffled, perms, inv, masks, kind, ready, built, starts,
                  word_starts, sizes, n_blocks, mask_par, mask_at, flips):  # fmt: skip
    """Alice's answer to one request: (parities, "" or the reason the request is invalid)."""
    n_frames = starts.size - 1
    n_passes = perms.shape[0]
    total = ranges.shape[1]
    for j in range(passes.shape[1]):
        f = passes[0, j]
        r = passes[1, j]
        if f < 0 or f >= n_frames or r < 0 or r >= n_passes:
            return np.zeros(0, np.uint8), "pass request outside the group"
        total += n_blocks[f, r]
    for j in range(ranges.shape[1]):
        f = ranges[0, j]
        r = ranges[1, j]
        if f < 0 or f >= n_frames or r < 0 or r >= n_passes:
            return np.zeros(0, np.uint8), "range request outside the group"
        s = ranges[2, j]
        e = ranges[3, j]
        if s < 0 or s >= e or e > starts[f + 1] - starts[f]:
            return np.zeros(0, np.uint8), "range request outside its frame"
    out = np.empty(total, dtype=np.uint8)
    pos = 0
    for j in range(passes.shape[1]):
        par = _pass_parities(passes[0, j], passes[1, j], key, shuffled, perms, inv, masks, kind,
                             ready, built, starts, word_starts, sizes, n_blocks, mask_par,
                             mask_at, flips)  # fmt: skip
        out[pos : pos + par.size] = par
        pos += par.size
    for j in range(ranges.shape[1]):
        f = ranges[0, j]
        r = ranges[1, j]
        _build_row(f, r, key, shuffled, perms, inv, masks, kind, ready, built, starts, word_starts)
        a = starts[f]
        acc = np.uint8(0)
        for i in range(a + ranges[2, j], a + ranges[3, j]):
            acc ^= shuffled[r, i]
        out[pos] = acc
        pos += 1
    return out, ""


def _mask_state(schedule: GroupSchedule) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: mask-pass parities (passes × 2), the flip count they are valid at (-1: none
    yet) and the bits corrected so far (Alice never corrects)."""
    frames = schedule.frames
    return (
        np.zeros((frames, schedule.passes, 2), dtype=np.uint8),
        np.full(frames, -1, dtype=np.int64),
        np.zeros(frames, dtype=np.int64),
    )


class GroupAlice:
    """Alice's part for a group of frames: answers requests, keeps her key unchanged."""

    def __init__(self, key: np.ndarray, schedule: GroupSchedule) -> None:
        if key.size != schedule.starts[-1]:
            raise ValueError(f"key has {key.size} bits, the group {schedule.starts[-1]}")
        self.schedule = schedule
        self._key = np.ascontiguousarray(key, dtype=np.uint8)
        self._shuffled = np.empty((schedule.passes, key.size), dtype=np.uint8)
        self._built = np.zeros((schedule.frames, schedule.passes), dtype=np.bool_)
        self._masks = _mask_state(schedule)
        self.disclosed_bits = 0

    def answer(self, passes: np.ndarray, ranges: np.ndarray) -> np.ndarray:
        """Parities asked by one request (:class:`ValueError` if it is malformed)."""
        passes = np.asarray(passes, dtype=np.int32)
        ranges = np.asarray(ranges, dtype=np.int32)
        if passes.ndim != 2 or passes.shape[0] != 2 or ranges.ndim != 2 or ranges.shape[0] != 4:
            raise ValueError("Cascade request arrays have the wrong shape")
        s = self.schedule
        out, error = _alice_answer(
            passes, ranges, self._key, self._shuffled, s.perms, s.inv, s.masks, s.kind, s.ready,
            self._built, s.starts, s.word_starts, s.sizes, s.n_blocks, *self._masks,
        )  # fmt: skip
        if error:
            raise ValueError(error)
        self.disclosed_bits += out.size
        return out


@nb.njit(cache=True)
def _grow(buf: np.ndarray, need: int) -> np.ndarray:
    if need <= buf.shape[1]:
        return buf
    out = np.empty((buf.shape[0], max(need, 2 * buf.shape[1])), dtype=buf.dtype)
    out[:, : buf.shape[1]] = buf
    return out


@nb.njit(cache=True)
def _bob_request(work, n_work, state, current, key, shuffled, perms, inv, masks, kind, ready,
                 built, starts, word_starts, sizes, heap, offsets, mm, flips):  # fmt: skip
    """Every frame's next request, frame by frame as ``CascadeBob.next_request`` would make it.

    ``work`` (4 × n: frame, pass, block, heap node; ordered by frame) holds the searches in
    flight. A frame whose searches are exhausted asks for its next pass (state 1) or is done
    (state 3); otherwise its searches advance until they need parities (state 2; the blocks
    they queued stay pending until the answer). Returns (pass requests, range requests with
    their blocks and nodes, pending pushes, bits corrected)."""
    n_frames = starts.size - 1
    n_passes = perms.shape[0]
    passes = np.empty((2, n_frames), dtype=np.int32)
    n_pass = 0
    queries = np.empty((6, max(16, n_work)), dtype=np.int64)  # frame, r, block, node, start, end
    n_q = 0
    pushes = np.empty((4, max(16, n_work)), dtype=np.int64)
    n_p = 0
    corrected = 0
    j = 0
    for f in range(n_frames):
        first = j
        while j < n_work and work[0, j] == f:
            j += 1
        if state[f] == 3:
            continue
        w_r = work[1, first:j].copy()
        w_b = work[2, first:j].copy()
        w_h = work[3, first:j].copy()
        a = starts[f]
        b = starts[f + 1]
        lazy = (masks[:, word_starts[f] : word_starts[f + 1]], kind[f], ready[f], built[f])
        while True:
            if w_r.size == 0:
                if current[f] + 1 >= n_passes:
                    state[f] = 3
                else:
                    current[f] += 1
                    state[f] = 1
                    passes[0, n_pass] = f
                    passes[1, n_pass] = current[f]
                    n_pass += 1
                break
            q_r, q_b, q_h, q_s, q_e, p_r, p_b, p_h, fixed = _advance(
                w_r, w_b, w_h, key[a:b], perms[:, a:b], inv[:, a:b], shuffled[:, a:b], sizes[f],
                heap[f], offsets[f], mm, current[f] + 1, lazy,
            )  # fmt: skip
            corrected += fixed
            flips[f] += fixed
            if q_r.size:
                queries = _grow(queries, n_q + q_r.size)
                for i in range(q_r.size):
                    queries[0, n_q] = f
                    queries[1, n_q] = q_r[i]
                    queries[2, n_q] = q_b[i]
                    queries[3, n_q] = q_h[i]
                    queries[4, n_q] = q_s[i]
                    queries[5, n_q] = q_e[i]
                    n_q += 1
                pushes = _grow(pushes, n_p + p_r.size)
                for i in range(p_r.size):
                    pushes[0, n_p] = f
                    pushes[1, n_p] = p_r[i]
                    pushes[2, n_p] = p_b[i]
                    pushes[3, n_p] = p_h[i]
                    n_p += 1
                state[f] = 2
                break
            w_r, w_b, w_h = p_r, p_b, p_h
    return passes[:, :n_pass], queries[:, :n_q], pushes[:, :n_p], corrected


@nb.njit(cache=True)
def _bob_deliver(bits, passes, queries, pushes, state, key, shuffled, perms, inv, masks, kind,
                 ready, built, starts, word_starts, sizes, n_blocks, heap, offsets, mm, mask_par,
                 mask_at, flips):  # fmt: skip
    """Take Alice's answer: start the asked passes (their odd blocks become searches), record
    the range parities (both halves' mismatches); returns the new work list (ordered by frame:
    a frame's answered searches, then the blocks its flips queued)."""
    n_frames = starts.size - 1
    pos = 0
    # Pass starts, in request order (ordered by frame).
    pass_work = np.empty((4, 16), dtype=np.int64)
    n_pw = 0
    for j in range(passes.shape[1]):
        f = passes[0, j]
        r = passes[1, j]
        nb_ = n_blocks[f, r]
        alice = bits[pos : pos + nb_]
        pos += nb_
        bob = _pass_parities(f, r, key, shuffled, perms, inv, masks, kind, ready, built, starts,
                             word_starts, sizes, n_blocks, mask_par, mask_at, flips)  # fmt: skip
        odd = _start_pass(alice, bob, heap[f, r], offsets[f, r], mm)
        if odd.size:
            _build_row(f, r, key, shuffled, perms, inv, masks, kind, ready, built, starts,
                       word_starts)  # fmt: skip
        pass_work = _grow(pass_work, n_pw + odd.size)
        for i in range(odd.size):
            pass_work[0, n_pw] = f
            pass_work[1, n_pw] = r
            pass_work[2, n_pw] = odd[i]
            pass_work[3, n_pw] = 1
            n_pw += 1
        state[f] = 0
    # Range answers: the left half's mismatch, the right half's by inference.
    for j in range(queries.shape[1]):
        f = queries[0, j]
        r = queries[1, j]
        a = starts[f]
        acc = np.uint8(0)
        for i in range(a + queries[4, j], a + queries[5, j]):
            acc ^= shuffled[r, i]
        base = offsets[f, r] + queries[2, j] * heap[f, r]
        h = queries[3, j]
        left = np.int8(bits[pos] ^ acc)
        pos += 1
        mm[base + 2 * h] = left + 1
        mm[base + 2 * h + 1] = np.int8(((mm[base + h] - 1) ^ left) + 1)
        state[f] = 0
    # New work, ordered by frame: pass starts, else answered searches then queued blocks.
    work = np.empty((4, max(16, n_pw + queries.shape[1] + pushes.shape[1])), dtype=np.int64)
    n = 0
    i_pw = 0
    i_q = 0
    i_p = 0
    for f in range(n_frames):
        while i_pw < n_pw and pass_work[0, i_pw] == f:
            for c in range(4):
                work[c, n] = pass_work[c, i_pw]
            n += 1
            i_pw += 1
        while i_q < queries.shape[1] and queries[0, i_q] == f:
            for c in range(4):
                work[c, n] = queries[c, i_q]
            n += 1
            i_q += 1
        while i_p < pushes.shape[1] and pushes[0, i_p] == f:
            for c in range(4):
                work[c, n] = pushes[c, i_p]
            n += 1
            i_p += 1
    return work, n


class GroupBob:
    """Bob's part for a group of frames: a state machine like
    :class:`~qkdnet.postprocess.cascade.CascadeBob`, for all frames at once.

    :meth:`request` returns the next ``(passes, ranges)`` request (``None`` when every frame
    is done); :meth:`deliver` takes Alice's parities for it. ``key`` is the corrected key."""

    def __init__(self, key: np.ndarray, schedule: GroupSchedule) -> None:
        if key.size != schedule.starts[-1]:
            raise ValueError(f"key has {key.size} bits, the group {schedule.starts[-1]}")
        s = self.schedule = schedule
        self.key = np.array(key, dtype=np.uint8, copy=True)
        self._shuffled = np.empty((s.passes, key.size), dtype=np.uint8)  # rows built lazily
        self._built = np.zeros((s.frames, s.passes), dtype=np.bool_)
        self._masks = _mask_state(s)  # cached mask-pass parities, valid at a flip count
        self._heap = np.array(
            [[2 ** (math.ceil(math.log2(max(int(k), 1))) + 1) for k in row] for row in s.sizes],
            dtype=np.int64,
        ).reshape(s.sizes.shape)
        flat = (s.n_blocks * self._heap).ravel()
        self._offsets = np.concatenate([[0], np.cumsum(flat)[:-1]]).astype(np.int64)
        self._offsets = self._offsets.reshape(s.sizes.shape)
        self._mm = np.zeros(int(flat.sum()), dtype=np.int8)
        self._state = np.zeros(s.frames, dtype=np.int8)
        self._current = np.full(s.frames, -1, dtype=np.int64)
        self._work = np.zeros((4, 0), dtype=np.int64)
        self._n_work = 0
        self._pending: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.disclosed_bits = 0
        self.round_trips = 0
        self.corrected = 0

    def _arrays(self) -> tuple:
        s = self.schedule
        return (self.key, self._shuffled, s.perms, s.inv, s.masks, s.kind, s.ready, self._built,
                s.starts, s.word_starts)  # fmt: skip

    def request(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The next request: ``passes`` (2 × k int32) and ``ranges`` (4 × m int32)."""
        if self._pending is not None:
            raise RuntimeError("deliver the answer to the previous request first")
        passes, queries, pushes, fixed = _bob_request(
            self._work, self._n_work, self._state, self._current, *self._arrays(),
            self.schedule.sizes, self._heap, self._offsets, self._mm, self._masks[2],
        )  # fmt: skip
        self.corrected += int(fixed)
        if passes.shape[1] == 0 and queries.shape[1] == 0:
            return None
        self._pending = (passes, queries, pushes)
        ranges = np.empty((4, queries.shape[1]), dtype=np.int32)
        ranges[:2] = queries[:2]
        ranges[2:] = queries[4:]
        return passes, ranges

    def expected(self) -> int:
        """Parities the pending request asks for."""
        if self._pending is None:
            raise RuntimeError("no request is waiting for an answer")
        passes, queries, _ = self._pending
        return int(self.schedule.n_blocks[passes[0], passes[1]].sum()) + queries.shape[1]

    def deliver(self, parities: np.ndarray) -> None:
        """Alice's answer to the pending request (uint8 parities, in request order)."""
        expected = self.expected()
        if parities.size != expected:
            raise ValueError(f"expected {expected} parities (got {parities.size})")
        assert self._pending is not None
        passes, queries, pushes = self._pending
        self._work, self._n_work = _bob_deliver(
            np.ascontiguousarray(parities, dtype=np.uint8), passes, queries, pushes, self._state,
            *self._arrays(), self.schedule.sizes, self.schedule.n_blocks, self._heap,
            self._offsets, self._mm, *self._masks,
        )  # fmt: skip
        self._pending = None
        self.disclosed_bits += int(parities.size)
        self.round_trips += 1

    def run(self, alice: GroupAlice) -> np.ndarray:
        """Run every frame against ``alice`` directly; returns Bob's corrected key."""
        while (req := self.request()) is not None:
            self.deliver(alice.answer(*req))
        return self.key
