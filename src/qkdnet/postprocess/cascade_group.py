"""Cascade on a group of frames at once, one numba call per round trip for all of them.

The protocol is that of :mod:`qkdnet.postprocess.cascade` ("option 8" of Martinez-Mateo et al.,
QIC 15, 453 (2015), same shuffles from the same seeds), run frame by frame exactly as
:class:`~qkdnet.postprocess.cascade.CascadeBob` would (the readable reference; a test checks
that both ask the same parities and correct the same bits): each frame asks for the block
parities of its next pass when its searches are exhausted, else for one parity per search in
flight. What differs is the bookkeeping, built for speed:

* the frames of a group share flat arrays (keys concatenated, one row per pass, work lists
  ordered by frame), so that Bob turns Alice's answer into his next request, and Alice answers
  a request, in one compiled call each, whatever the number of frames;
* Alice never changes her key, so for each pass she keeps only the *prefix parities* of her
  shuffled key, bit-packed (n/8 bytes): any range parity is two bit reads. She shuffles her key
  bits directly (the same Fisher–Yates swaps that build the permutation) and needs no
  permutation tables at all;
* Bob keeps his shuffled copies bit-packed (a range parity is an XOR of words and one parity),
  and the permutation and inverse of a shuffled pass only from its start; pass 1 is the key
  itself (no identity tables);
* shuffles are derived per pass from the SplitMix64 stream position (its state after k draws
  is seed + k·γ), not by running the stream through every pass;
* Bob's large arrays (shuffles, packed rows, known-parity trees at 2 bits per node) come from
  :mod:`qkdnet.postprocess.scratch`, reused across groups and blocks instead of faulting in
  fresh pages; the trees of mask passes (which almost never need one) sit at the end of the
  tree array and are zeroed and touched only when such a pass turns odd, their two top
  mismatches living in a small table until then.

Requests travel as two integer arrays: ``passes`` (2 × k int32: frame, pass) asks for every
block parity of a frame's pass, ``nodes`` (m node numbers) for the parity of one node of a
pass's bisection tree each: node h of block b of frame f's pass r is numbered
``toff[f, r] + b·heap[f, r] + h`` (see :class:`GroupSchedule`), int32 whenever the numbers fit
(4 bytes per parity asked, where (frame, pass, start, end) took 16: less to send, frame and
authenticate). Alice maps a number back to its range of the shuffled key, and refuses one that
is no node. Answers are the pass parities in request order, then the node parities. Frames
are indices within the group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from qkdnet.postprocess import scratch
from qkdnet.postprocess.cascade import PASSES, _splitmix64, block_sizes

_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64 increment
_ONE = np.uint64(1)
_EVEN = np.int8(1)  # known-parity tree entries, as in cascade.py (0 unknown, 3 requested)
_ODD = np.int8(2)
_PENDING = np.int8(3)
_THREE = np.uint8(3)


@nb.njit(cache=True, inline="always")
def _tget(mm, node: int) -> np.int8:
    """State of tree node ``node`` (2 bits each, four per byte: the trees stay ~4× smaller
    than one byte per node, so more of them stay in cache)."""
    return np.int8((mm[node >> 2] >> np.uint8(2 * (node & 3))) & _THREE)


@nb.njit(cache=True, inline="always")
def _tset(mm, node: int, v) -> None:
    shift = np.uint8(2 * (node & 3))
    i = node >> 2
    mm[i] = (mm[i] & ~(_THREE << shift)) | (np.uint8(v) << shift)


@nb.njit(cache=True)
def _derive_frame(n: int, sizes, seed: np.uint64, masks, kind, streams) -> None:
    """One frame's public schedule: the mask of each mask pass (block ≥ n/2; ``kind`` 1: its
    ones first, 2: its zeros; ``sizes`` becomes the larger part's size) and, for each shuffled
    pass, the SplitMix64 state its Fisher–Yates draws start from (``streams``). The stream is
    the one of :func:`qkdnet.postprocess.cascade._derive_into`: a shuffled pass draws n − 1
    values, a mask pass one per 64-bit word."""
    passes = sizes.size
    n_words = (n + 63) // 64
    state = seed
    for r in range(1, passes):
        if sizes[r] >= n // 2 and n >= 4:
            ones = 0
            for w in range(n_words):
                state, masks[r, w] = _splitmix64(state)
            if n % 64:
                masks[r, n_words - 1] &= (_ONE << np.uint64(n % 64)) - _ONE
            for w in range(n_words):
                x = masks[r, w]
                while x:
                    x &= x - _ONE
                    ones += 1
            kind[r] = 1 if ones >= n - ones else 2
            sizes[r] = max(ones if kind[r] == 1 else n - ones, 1)
        else:
            streams[r] = state
            state = state + np.uint64(n - 1) * _GAMMA


@dataclass(frozen=True)
class GroupSchedule:
    """The public Cascade schedule of every frame of a group, from the announced seeds.

    Frame f holds key bits ``[starts[f], starts[f + 1])`` of the group and words
    ``[word_starts[f], word_starts[f + 1])`` of bit-packed rows; its passes are those of
    ``Schedule.derive(n_f, qber, seeds[f])``. ``heap`` is the number of tree nodes per block
    (heap layout, root 1) and ``toff`` where a pass's trees start in Bob's tree array: the
    shuffled passes' (``kind`` 0) first, then the mask passes', which stay untouched unless
    such a pass turns odd."""

    starts: np.ndarray  # (F + 1,) int64
    word_starts: np.ndarray  # (F + 1,) int64
    sizes: np.ndarray  # (F, passes) int64 block size (part size for mask passes)
    n_blocks: np.ndarray  # (F, passes) int64
    heap: np.ndarray  # (F, passes) int64
    toff: np.ndarray  # (F, passes) int64
    masks: np.ndarray  # (passes, words) uint64
    kind: np.ndarray  # (F, passes) int8
    streams: np.ndarray  # (F, passes) uint64
    tree_nodes: int  # shuffled passes' tree entries
    mask_tree_nodes: int  # mask passes' tree entries
    segments: np.ndarray  # (3, F·passes) int64: toff sorted, its frame, its pass

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
        masks = np.zeros((passes, int(word_starts[-1])), dtype=np.uint64)
        kind = np.zeros((n_frames, passes), dtype=np.int8)
        streams = np.zeros((n_frames, passes), dtype=np.uint64)
        sizes = np.zeros((n_frames, passes), dtype=np.int64)
        for f, (n, seed) in enumerate(zip(lengths, seeds, strict=True)):
            sizes[f] = block_sizes(qber, n, passes)
            _derive_frame(
                n, sizes[f], np.uint64(int(seed) % 2**64),
                masks[:, word_starts[f] : word_starts[f + 1]], kind[f], streams[f],
            )  # fmt: skip
        lengths_col = np.asarray(lengths, dtype=np.int64)[:, None]
        n_blocks = (lengths_col + sizes - 1) // sizes
        heap = np.array(
            [[2 ** (math.ceil(math.log2(max(int(k), 1))) + 1) for k in row] for row in sizes],
            dtype=np.int64,
        ).reshape(sizes.shape)
        nodes = n_blocks * heap
        toff = np.zeros_like(nodes)
        totals = [0, 0]
        for side in (0, 1):
            for f in range(n_frames):
                for r in range(passes):
                    if int(kind[f, r] != 0) == side:
                        toff[f, r] = totals[0] + totals[1]
                        totals[side] += -(-int(nodes[f, r]) // 4) * 4  # whole bytes per pass
        order = np.argsort(toff, axis=None, kind="stable")
        segments = np.stack([toff.ravel()[order], order // passes, order % passes])
        return cls(starts, word_starts, sizes, n_blocks, heap, toff, masks, kind, streams,
                   totals[0], totals[1], segments.astype(np.int64))  # fmt: skip

    @property
    def frames(self) -> int:
        return int(self.starts.size - 1)

    @property
    def passes(self) -> int:
        return int(self.sizes.shape[1])

    @property
    def node_dtype(self) -> type:
        """Node numbers travel as int32 when they fit."""
        return np.int32 if self.tree_nodes + self.mask_tree_nodes < 2**31 else np.int64

    def arrays(self) -> tuple:
        """The arrays the kernels read, in their order."""
        return (self.starts, self.word_starts, self.sizes, self.n_blocks, self.heap, self.toff,
                self.masks, self.kind, self.streams)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Bit-level helpers


@nb.njit(cache=True, inline="always")
def _parity64(x: np.uint64) -> np.uint8:
    x ^= x >> np.uint64(32)
    x ^= x >> np.uint64(16)
    x ^= x >> np.uint64(8)
    x ^= x >> np.uint64(4)
    x ^= x >> np.uint64(2)
    x ^= x >> np.uint64(1)
    return np.uint8(x & _ONE)


@nb.njit(cache=True, inline="always")
def _range_parity(row, w0: int, s: int, e: int) -> np.uint8:
    """Parity of bits [s, e) (s < e) of a packed row whose bit 0 is bit 0 of word ``w0``."""
    s += w0 * 64
    e += w0 * 64
    ws = s >> 6
    we = (e - 1) >> 6
    x = row[ws] >> np.uint64(s & 63)
    if ws == we:
        if e - s < 64:
            x &= (_ONE << np.uint64(e - s)) - _ONE
        return _parity64(x)
    for w in range(ws + 1, we):
        x ^= row[w]
    top = (e - 1) & 63
    last = row[we]
    if top < 63:
        last &= (_ONE << np.uint64(top + 1)) - _ONE
    return _parity64(x ^ last)


@nb.njit(cache=True, inline="always")
def _bit(row, w0: int, i: int) -> np.uint8:
    return np.uint8((row[w0 + (i >> 6)] >> np.uint64(i & 63)) & _ONE)


@nb.njit(cache=True, inline="always")
def _in_first(masks, w0: int, kind: int, r: int, i: int) -> int:
    """1 if frame-local index i lies in the first (larger) part of mask pass r, else 0."""
    bit = np.int64((masks[r, w0 + (i >> 6)] >> np.uint64(i & 63)) & _ONE)
    return bit if kind == 1 else 1 - bit


@nb.njit(cache=True)
def _pack(bits, a: int, n: int, out, w0: int) -> None:
    """out[w0 : w0 + ⌈n/64⌉] = bits[a : a + n] packed, little-endian within each word."""
    for w in range((n + 63) // 64):
        base = a + w * 64
        word = np.uint64(0)
        for t in range(min(64, n - w * 64)):
            word |= np.uint64(bits[base + t]) << np.uint64(t)
        out[w0 + w] = word


@nb.njit(cache=True)
def _fisher_yates(n: int, state: np.uint64, row) -> None:
    """The Fisher–Yates swaps of a shuffled pass (Lemire's multiply-shift bound), applied to
    ``row``: on the identity it builds the permutation (position → key index), on a copy of
    the key it builds the shuffled key directly.

    Swap t (t = 0, 1, …; i = n − 1 − t) uses SplitMix64 output t + 1, whose state is
    state + (t + 1)·γ: the swap targets are computed a chunk at a time in a loop without a
    carried dependency (it vectorises), then the swaps are done."""
    chunk = 2048
    js = np.empty(chunk, dtype=np.int64)
    for t0 in range(0, n - 1, chunk):
        m = min(chunk, n - 1 - t0)
        for u in range(m):
            z = state + np.uint64(t0 + u + 1) * _GAMMA
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z ^= z >> np.uint64(31)
            js[u] = np.int64(((z >> np.uint64(32)) * np.uint64(n - t0 - u)) >> np.uint64(32))
        for u in range(m):
            i = n - 1 - t0 - u
            j = js[u]
            x = row[i]
            row[i] = row[j]
            row[j] = x


@nb.njit(cache=True)
def _mask_sweep(words, w0: int, n: int, masks, kind_row, out) -> None:
    """Block parities of every mask pass of a frame in one sweep over its packed key
    (``out[r]``: first part, second part): AND with each mask word, XOR-accumulate, parity."""
    passes = kind_row.size
    acc = np.zeros(passes, dtype=np.uint64)
    total = np.uint64(0)
    for w in range((n + 63) // 64):
        k = words[w0 + w]
        total ^= k
        for r in range(passes):
            acc[r] ^= k & masks[r, w0 + w]  # zero rows for shuffled passes
    tot = _parity64(total)
    for r in range(passes):
        if kind_row[r]:
            first = _parity64(acc[r])
            if kind_row[r] != 1:
                first ^= tot
            out[r, 0] = first
            out[r, 1] = first ^ tot


@nb.njit(cache=True)
def _mask_parities(f, r, words, sch, mask_par, mask_at, flips) -> np.ndarray:
    """Block parities of frame f's mask pass r from the (cached) sweep of its packed key."""
    starts, word_starts, _sizes, n_blocks, _heap, _toff, masks, kind, _streams = sch
    if mask_at[f] != flips[f]:
        a = starts[f]
        _mask_sweep(words, word_starts[f], starts[f + 1] - a, masks, kind[f], mask_par[f])
        mask_at[f] = flips[f]
    out = mask_par[f, r, : n_blocks[f, r]].copy()
    if n_blocks[f, r] == 1:
        out[0] = mask_par[f, r, 0] ^ mask_par[f, r, 1]
    return out


# ---------------------------------------------------------------------------------------------
# Alice


@nb.njit(cache=True)
def _alice_build(f, r, key, buf, prefix, pw_starts, sch) -> None:
    """Prefix parities of frame f's pass-r shuffled key: bit i of the row is the parity of its
    first i bits (i = 0 … n). Shuffled passes apply their Fisher–Yates swaps to a copy of the
    key; mask passes take the first part, then the second, each in key order."""
    starts, word_starts, _sizes, _n_blocks, _heap, _toff, masks, kind, streams = sch
    a = starts[f]
    n = starts[f + 1] - a
    c = buf[:n]
    if kind[f, r] == 0:
        c[:] = key[a : a + n]
        if r > 0:
            _fisher_yates(n, streams[f, r], c)
    else:
        w0 = word_starts[f]
        first = 0
        for i in range(n):
            first += _in_first(masks, w0, kind[f, r], r, i)
        p = 0
        q = first
        for i in range(n):  # branch-free: a random bit would mispredict half the time
            sel = _in_first(masks, w0, kind[f, r], r, i)
            c[sel * p + (1 - sel) * q] = key[a + i]
            p += sel
            q += 1 - sel
    # 64 bits at a time: pack, prefix-XOR inside the word (log-step shifts), complement by the
    # parity of everything before; word w's bit t is the parity of the first 64w + t bits.
    p0 = pw_starts[f]
    carry = np.uint64(0)
    n_words = (n + 63) // 64
    for w in range(n_words):
        base = w * 64
        y = np.uint64(0)
        for t in range(min(64, n - base)):
            y |= np.uint64(c[base + t]) << np.uint64(t)
        y ^= y << np.uint64(1)
        y ^= y << np.uint64(2)
        y ^= y << np.uint64(4)
        y ^= y << np.uint64(8)
        y ^= y << np.uint64(16)
        y ^= y << np.uint64(32)
        y ^= np.uint64(0) - carry
        prefix[r, p0 + w] = (y << _ONE) | carry
        carry = y >> np.uint64(63)
    if n % 64 == 0:
        prefix[r, p0 + n_words] = carry


@nb.njit(cache=True, inline="always")
def _node_span(h: int, s: int, e: int) -> tuple[int, int]:
    """Range of node h (root 1) of the bisection of [s, e), or (-1, -1) if there is none: in
    closed form for a power-of-two block (every node down to single bits exists), else by
    branch-free halving (the path bits of h are random: a branch would mispredict)."""
    depth = 0
    x = h
    while x > 1:
        x >>= 1
        depth += 1
    length = e - s
    if length & (length - 1) == 0 and h < 2 * length:  # a whole power-of-two block
        width = length >> depth
        start = s + (h - (1 << depth)) * width
        return start, start + width
    for d in range(depth - 1, -1, -1):
        if e - s < 2:
            return -1, -1
        mid = s + (e - s + 1) // 2
        bit = (h >> d) & 1
        s += bit * (mid - s)
        e = mid + bit * (e - mid)
    return s, e


@nb.njit(cache=True)
def _alice_answer(passes, nodes, segments, key, words, buf, prefix, pw_starts, built, mask_par,
                  mask_at, sch):  # fmt: skip
    """Alice's answer to one request: (parities, "" or the reason the request is invalid)."""
    starts, _word_starts, sizes, n_blocks, heap, toff, _masks, kind, _streams = sch
    n_frames = starts.size - 1
    n_passes = sizes.shape[1]
    total = nodes.size
    for j in range(passes.shape[1]):
        f = passes[0, j]
        r = passes[1, j]
        if f < 0 or f >= n_frames or r < 0 or r >= n_passes:
            return np.zeros(0, np.uint8), "pass request outside the group"
        total += n_blocks[f, r]
    spans = np.empty((4, nodes.size), dtype=np.int64)  # frame, pass, start, end
    last = 0
    for f in range(n_frames):
        for r in range(n_passes):
            last = max(last, toff[f, r] + n_blocks[f, r] * heap[f, r])
    lo = 0  # the segment of the previous node (consecutive nodes mostly share one)
    hi = -1
    f = 0
    r = 0
    shift = 0
    for j in range(nodes.size):
        g = nodes[j]
        if g < 0 or g >= last:
            return np.zeros(0, np.uint8), "node outside the group"
        if g < lo or g >= hi:
            i = np.searchsorted(segments[0], g, side="right") - 1
            f = segments[1, i]
            r = segments[2, i]
            lo = toff[f, r]
            hi = lo + n_blocks[f, r] * heap[f, r]
            shift = 0
            while (1 << shift) < heap[f, r]:  # heap sizes are powers of two
                shift += 1
        local = g - lo
        if local >= hi - lo:  # between two passes' trees (each starts on a whole byte)
            return np.zeros(0, np.uint8), "node outside its block"
        b = local >> shift
        h = local & (heap[f, r] - 1)
        k = sizes[f, r]
        s, e = _node_span(h, b * k, min(b * k + k, starts[f + 1] - starts[f]))
        if h < 1 or s < 0:
            return np.zeros(0, np.uint8), "node outside its block"
        spans[0, j] = f
        spans[1, j] = r
        spans[2, j] = s
        spans[3, j] = e
    out = np.empty(total, dtype=np.uint8)
    pos = 0
    never = np.zeros(n_frames, dtype=np.int64)  # Alice's key never changes
    for j in range(passes.shape[1]):
        f = passes[0, j]
        r = passes[1, j]
        nb_ = n_blocks[f, r]
        if kind[f, r] != 0 and not built[f, r]:
            out[pos : pos + nb_] = _mask_parities(f, r, words, sch, mask_par, mask_at, never)
        else:
            if not built[f, r]:
                _alice_build(f, r, key, buf, prefix, pw_starts, sch)
                built[f, r] = True
            n = starts[f + 1] - starts[f]
            k = sizes[f, r]
            p0 = pw_starts[f]
            for b in range(nb_):
                out[pos + b] = _bit(prefix[r], p0, b * k) ^ _bit(prefix[r], p0, min(b * k + k, n))
        pos += nb_
    for j in range(nodes.size):
        f = spans[0, j]
        r = spans[1, j]
        if not built[f, r]:
            _alice_build(f, r, key, buf, prefix, pw_starts, sch)
            built[f, r] = True
        p0 = pw_starts[f]
        out[pos] = _bit(prefix[r], p0, spans[2, j]) ^ _bit(prefix[r], p0, spans[3, j])
        pos += 1
    return out, ""


class GroupAlice:
    """Alice's part for a group of frames: answers requests, keeps her key unchanged."""

    def __init__(self, key: np.ndarray, schedule: GroupSchedule) -> None:
        if key.size != schedule.starts[-1]:
            raise ValueError(f"key has {key.size} bits, the group {schedule.starts[-1]}")
        s = self.schedule = schedule
        self._key = np.ascontiguousarray(key, dtype=np.uint8)
        lengths = np.diff(s.starts)
        self._words = np.empty(int(s.word_starts[-1]), dtype=np.uint64)
        for f in range(s.frames):
            _pack(self._key, int(s.starts[f]), int(lengths[f]), self._words, int(s.word_starts[f]))
        self._pw_starts = np.concatenate([[0], np.cumsum(lengths // 64 + 1)]).astype(np.int64)
        self._prefix = np.empty((s.passes, int(self._pw_starts[-1])), dtype=np.uint64)
        self._buf = np.empty(int(lengths.max()), dtype=np.uint8)
        self._built = np.zeros((s.frames, s.passes), dtype=np.bool_)
        self._mask_par = np.zeros((s.frames, s.passes, 2), dtype=np.uint8)
        self._mask_at = np.full(s.frames, -1, dtype=np.int64)
        self._args = (self._key, self._words, self._buf, self._prefix, self._pw_starts,
                      self._built, self._mask_par, self._mask_at, s.arrays())  # fmt: skip
        self.disclosed_bits = 0

    def answer(self, passes: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """Parities asked by one request (:class:`ValueError` if it is malformed)."""
        passes = np.asarray(passes, dtype=np.int32)
        nodes = np.asarray(nodes, dtype=np.int64)
        if passes.ndim != 2 or passes.shape[0] != 2 or nodes.ndim != 1:
            raise ValueError("Cascade request arrays have the wrong shape")
        out, error = _alice_answer(passes, nodes, self.schedule.segments, *self._args)
        if error:
            raise ValueError(error)
        self.disclosed_bits += out.size
        return out


# ---------------------------------------------------------------------------------------------
# Bob


@nb.njit(cache=True)
def _bob_build(f, r, sch, st) -> None:
    """Bob's pass r of frame f: its shuffle and inverse (Fisher–Yates, or the mask's stable
    partition), and the packed shuffled copy of his current key."""
    starts, word_starts, _sizes, _n_blocks, _heap, _toff, masks, kind, streams = sch
    key, rows, perms, inv, built, _mm, _top, _current, _fstate, _flips, _mask_par, _mask_at = st  # fmt: skip
    a = starts[f]
    n = starts[f + 1] - a
    perm = perms[r, a : a + n]
    back = inv[r, a : a + n]
    if kind[f, r] == 0:
        for i in range(n):
            perm[i] = i
        _fisher_yates(n, streams[f, r], perm)
        for i in range(n):
            back[perm[i]] = i
    else:
        w0 = word_starts[f]
        first = 0
        for i in range(n):
            first += _in_first(masks, w0, kind[f, r], r, i)
        p = 0
        q = first
        for i in range(n):  # branch-free: a random bit would mispredict half the time
            sel = _in_first(masks, w0, kind[f, r], r, i)
            pos = sel * p + (1 - sel) * q
            perm[pos] = i
            back[i] = pos
            p += sel
            q += 1 - sel
    w0 = word_starts[f]
    for w in range((n + 63) // 64):
        word = np.uint64(0)
        for t in range(min(64, n - w * 64)):
            word |= np.uint64(key[a + perm[w * 64 + t]]) << np.uint64(t)
        rows[r, w0 + w] = word
    built[f, r] = True


@nb.njit(cache=True)
def _go_live(f, r, sch, st) -> None:
    """A mask pass of frame f whose block turned odd: build it, and move its two top
    mismatches into its tree."""
    _starts, _word_starts, _sizes, n_blocks, heap, toff, _masks, _kind, _streams = sch
    _key, _rows, _perms, _inv, _built, mm, top, _current, _fstate, _flips, _mask_par, _mask_at = st  # fmt: skip
    _bob_build(f, r, sch, st)
    base = toff[f, r]
    # pooled memory: zeroed when first used (each pass's nodes start on a byte)
    mm[base >> 2 : (base + n_blocks[f, r] * heap[f, r] + 3) >> 2] = 0
    for b in range(n_blocks[f, r]):
        _tset(mm, base + b * heap[f, r] + 1, top[f, r, b])


@nb.njit(cache=True, inline="always")
def _flip(f, p, started, sch, st, push, n_push) -> int:
    """Flip Bob's bit p of frame f; toggle the mismatch of every known block holding it in the
    started passes and queue the smallest odd known block of each pass (as
    :func:`qkdnet.postprocess.cascade._flip`). Returns the new push count."""
    starts, word_starts, sizes, _n_blocks, heap, toff, masks, kind, _streams = sch
    key, rows, _perms, inv, built, mm, top, _current, _fstate, _flips, _mask_par, _mask_at = st  # fmt: skip
    a = starts[f]
    n = starts[f + 1] - a
    w0 = word_starts[f]
    key[a + p] ^= 1
    for r in range(sizes.shape[1]):
        if not built[f, r]:
            if r >= started:
                continue  # built from the key when the pass starts
            b = 1 - _in_first(masks, w0, kind[f, r], r, p)
            v = top[f, r, b] ^ 3
            top[f, r, b] = v
            if v == _ODD:
                _go_live(f, r, sch, st)
                push[0, n_push] = r
                push[1, n_push] = b
                push[2, n_push] = 1
                n_push += 1
            continue
        q = p if r == 0 else inv[r, a + p]
        rows[r, w0 + (q >> 6)] ^= _ONE << np.uint64(q & 63)
        if r >= started:
            continue
        k = sizes[f, r]
        b = q // k
        s = b * k
        e = min(s + k, n)
        h = 1
        base = toff[f, r] + b * heap[f, r]
        deepest = -1
        while True:
            v = _tget(mm, base + h)
            if v != _EVEN and v != _ODD:
                break
            v ^= 3
            _tset(mm, base + h, v)
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
            push[0, n_push] = r
            push[1, n_push] = b
            push[2, n_push] = deepest
            n_push += 1
    return n_push


@nb.njit(cache=True)
def _advance(f, w_r, w_b, w_h, started, sch, st):
    """Move every search of frame f as far as known parities allow: correct the bit it reaches,
    or queue the parity request of the left half of its current block (as
    :func:`qkdnet.postprocess.cascade._advance`)."""
    starts, _word_starts, sizes, _n_blocks, heap, toff, _masks, _kind, _streams = sch
    _key, _rows, perms, _inv, _built, mm, _top, _current, _fstate, _flips, _mask_par, _mask_at = st  # fmt: skip
    a = starts[f]
    n = starts[f + 1] - a
    passes = sizes.shape[1]
    m = w_r.size
    q = np.empty((5, m), dtype=np.int64)  # pass, block, node, start, end
    push = np.empty((3, m * passes + 1), dtype=np.int64)
    n_q = 0
    n_push = 0
    corrected = 0
    for j in range(m):
        r = w_r[j]
        b = w_b[j]
        h = w_h[j]
        base = toff[f, r] + b * heap[f, r]
        if _tget(mm, base + h) != _ODD:
            continue
        k = sizes[f, r]
        s0 = b * k
        s, e = _node_span(h, s0, min(s0 + k, n))
        while True:
            if e - s == 1:
                p = s if r == 0 else perms[r, a + s]
                n_push = _flip(f, p, started, sch, st, push, n_push)
                corrected += 1
                break
            mid = s + (e - s + 1) // 2
            left = _tget(mm, base + 2 * h)
            if left == 0:
                _tset(mm, base + 2 * h, _PENDING)
                q[0, n_q] = r
                q[1, n_q] = b
                q[2, n_q] = h
                q[3, n_q] = s
                q[4, n_q] = mid
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
    return q[:, :n_q], push[:, :n_push], corrected


@nb.njit(cache=True)
def _grow(buf: np.ndarray, need: int) -> np.ndarray:
    if need <= buf.shape[1]:
        return buf
    out = np.empty((buf.shape[0], max(need, 2 * buf.shape[1])), dtype=buf.dtype)
    out[:, : buf.shape[1]] = buf
    return out


@nb.njit(cache=True)
def _bob_request(work, n_work, sch, st):
    """Every frame's next request, frame by frame as ``CascadeBob.next_request`` would make it.

    ``work`` (4 × n: frame, pass, block, heap node; ordered by frame) holds the searches in
    flight. A frame whose searches are exhausted asks for its next pass (state 1) or is done
    (state 3); otherwise its searches advance until they need parities (state 2; the blocks
    they queued stay pending until the answer). Returns (pass requests, the node numbers sent
    to Alice, the same requests with their blocks, nodes and ranges, pending pushes, bits
    corrected, parities expected)."""
    starts, _word_starts, sizes, n_blocks, heap, toff, _masks, _kind, _streams = sch
    _key, _rows, _perms, _inv, _built, _mm, _top, current, fstate, flips, _mask_par, _mask_at = st  # fmt: skip
    n_frames = starts.size - 1
    n_passes = sizes.shape[1]
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
        if fstate[f] == 3:
            continue
        w_r = work[1, first:j]
        w_b = work[2, first:j]
        w_h = work[3, first:j]
        while True:
            if w_r.size == 0:
                if current[f] + 1 >= n_passes:
                    fstate[f] = 3
                else:
                    current[f] += 1
                    fstate[f] = 1
                    passes[0, n_pass] = f
                    passes[1, n_pass] = current[f]
                    n_pass += 1
                break
            q, p, fixed = _advance(f, w_r, w_b, w_h, current[f] + 1, sch, st)
            corrected += fixed
            flips[f] += fixed
            if q.shape[1]:
                queries = _grow(queries, n_q + q.shape[1])
                for i in range(q.shape[1]):
                    queries[0, n_q] = f
                    for c in range(5):
                        queries[c + 1, n_q] = q[c, i]
                    n_q += 1
                pushes = _grow(pushes, n_p + p.shape[1])
                for i in range(p.shape[1]):
                    pushes[0, n_p] = f
                    for c in range(3):
                        pushes[c + 1, n_p] = p[c, i]
                    n_p += 1
                fstate[f] = 2
                break
            w_r = p[0].copy()
            w_b = p[1].copy()
            w_h = p[2].copy()
    nodes = np.empty(n_q, dtype=np.int64)  # what Alice is sent: the left child's number
    expected = n_q
    for i in range(n_q):
        f = queries[0, i]
        r = queries[1, i]
        nodes[i] = toff[f, r] + queries[2, i] * heap[f, r] + 2 * queries[3, i]
    for i in range(n_pass):
        expected += n_blocks[passes[0, i], passes[1, i]]
    return passes[:, :n_pass], nodes, queries[:, :n_q], pushes[:, :n_p], corrected, expected


@nb.njit(cache=True)
def _bob_deliver(bits, passes, queries, pushes, sch, st):
    """Take Alice's answer: start the asked passes (their odd blocks become searches), record
    the range parities (both halves' mismatches); returns the new work list (ordered by frame:
    a frame's pass-start blocks, its answered searches, then the blocks its flips queued)."""
    starts, word_starts, sizes, n_blocks, heap, toff, _masks, kind, _streams = sch
    _key, rows, _perms, _inv, built, mm, top, _current, fstate, flips, mask_par, mask_at = st  # fmt: skip
    n_frames = starts.size - 1
    pos = 0
    pass_work = np.empty((4, 16), dtype=np.int64)
    n_pw = 0
    for j in range(passes.shape[1]):
        f = passes[0, j]
        r = passes[1, j]
        nb_ = n_blocks[f, r]
        a = starts[f]
        n = starts[f + 1] - a
        w0 = word_starts[f]
        pass_work = _grow(pass_work, n_pw + nb_)
        odd_first = n_pw
        if kind[f, r] != 0 and not built[f, r]:
            bob = _mask_parities(f, r, rows[0], sch, mask_par, mask_at, flips)
            for b in range(nb_):
                v = np.int8(bits[pos + b] ^ bob[b])
                top[f, r, b] = v + 1
                if v == 1:
                    pass_work[2, n_pw] = b
                    n_pw += 1
            if n_pw > odd_first:
                _go_live(f, r, sch, st)
        else:
            if not built[f, r]:
                _bob_build(f, r, sch, st)
            k = sizes[f, r]
            for b in range(nb_):
                v = np.int8(bits[pos + b] ^ _range_parity(rows[r], w0, b * k, min(b * k + k, n)))
                _tset(mm, toff[f, r] + b * heap[f, r] + 1, v + 1)
                if v == 1:
                    pass_work[2, n_pw] = b
                    n_pw += 1
        for i in range(odd_first, n_pw):
            pass_work[0, i] = f
            pass_work[1, i] = r
            pass_work[3, i] = 1
        pos += nb_
        fstate[f] = 0
    for j in range(queries.shape[1]):
        f = queries[0, j]
        r = queries[1, j]
        bob = _range_parity(rows[r], word_starts[f], queries[4, j], queries[5, j])
        base = toff[f, r] + queries[2, j] * heap[f, r]
        h = queries[3, j]
        left = np.int8(bits[pos] ^ bob)
        pos += 1
        _tset(mm, base + 2 * h, left + 1)
        _tset(mm, base + 2 * h + 1, ((_tget(mm, base + h) - 1) ^ left) + 1)
        fstate[f] = 0
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


@nb.njit(cache=True)
def _bob_step(bits, passes, queries, pushes, sch, st):
    """Deliver Alice's answer to the pending request and make the next one, in one call."""
    work, n_work = _bob_deliver(bits, passes, queries, pushes, sch, st)
    return _bob_request(work, n_work, sch, st)


@nb.njit(cache=True)
def _bob_start(sch, st):
    """Bob's packed pass-1 rows (his key in order) and his first request."""
    starts, word_starts, _sizes, _n_blocks, _heap, _toff, _masks, _kind, _streams = sch
    key, rows, _perms, _inv, built, _mm, _top, _current, _fstate, _flips, _mask_par, _mask_at = st  # fmt: skip
    for f in range(starts.size - 1):
        _pack(key, starts[f], starts[f + 1] - starts[f], rows[0], word_starts[f])
        built[f, 0] = True
    return _bob_request(np.zeros((4, 0), dtype=np.int64), 0, sch, st)


class GroupBob:
    """Bob's part for a group of frames: a state machine like
    :class:`~qkdnet.postprocess.cascade.CascadeBob`, for all frames at once.

    :meth:`request` returns the next ``(passes, nodes)`` request (``None`` when every frame
    is done); :meth:`deliver` takes Alice's parities for it. ``key`` is the corrected key.
    :meth:`close` (or leaving a ``with`` block) gives the work arrays back to the pool."""

    def __init__(self, key: np.ndarray, schedule: GroupSchedule) -> None:
        if key.size != schedule.starts[-1]:
            raise ValueError(f"key has {key.size} bits, the group {schedule.starts[-1]}")
        s = self.schedule = schedule
        self.key = np.array(key, dtype=np.uint8, copy=True)
        frames, passes, total = s.frames, s.passes, key.size
        self._pooled = [
            scratch.take((passes, int(s.word_starts[-1])), np.uint64),  # packed rows
            scratch.take((passes, total), np.int32),  # shuffles (rows built at pass start)
            scratch.take((passes, total), np.int32),  # inverses
            scratch.take((s.tree_nodes + s.mask_tree_nodes) // 4, np.uint8),  # 2-bit trees
        ]
        self._pooled[3][: s.tree_nodes // 4].fill(0)  # mask passes' trees: zeroed if they go live
        rows, perms, inv, trees = self._pooled
        self._state = (
            self.key, rows, perms, inv,
            np.zeros((frames, passes), dtype=np.bool_),  # Bob's pass built (row, shuffle)
            trees,
            np.zeros((frames, passes, 2), dtype=np.int8),  # mask passes' top mismatches
            np.full(frames, -1, dtype=np.int64),  # current pass
            np.zeros(frames, dtype=np.int8),  # 0 working, 1 pass asked, 2 ranges asked, 3 done
            np.zeros(frames, dtype=np.int64),  # bits corrected (mask-sweep cache key)
            np.zeros((frames, passes, 2), dtype=np.uint8),  # cached mask-pass parities
            np.full(frames, -1, dtype=np.int64),  # flip count they are valid at
        )  # fmt: skip
        self._sch = s.arrays()
        self._pending: tuple | None = None
        self.disclosed_bits = 0
        self.round_trips = 0
        self.corrected = 0
        self._next = self._take(*_bob_start(self._sch, self._state))

    def _take(self, passes, nodes, queries, pushes, fixed, expected) -> tuple | None:
        self.corrected += int(fixed)
        if expected == 0:
            return None
        return passes, nodes.astype(self.schedule.node_dtype), queries, pushes, int(expected)

    def request(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The next request: ``passes`` (2 × k int32) and ``nodes`` (m node numbers)."""
        if self._pending is not None:
            raise RuntimeError("deliver the answer to the previous request first")
        if self._next is None:
            return None
        self._pending = self._next
        return self._next[0], self._next[1]

    def expected(self) -> int:
        """Parities the pending request asks for."""
        if self._pending is None:
            raise RuntimeError("no request is waiting for an answer")
        return self._pending[4]

    def deliver(self, parities: np.ndarray) -> None:
        """Alice's answer to the pending request (uint8 parities, in request order); Bob's next
        request is made in the same call."""
        expected = self.expected()
        if parities.size != expected:
            raise ValueError(f"expected {expected} parities (got {parities.size})")
        assert self._pending is not None
        passes, _, queries, pushes, _ = self._pending
        self._next = self._take(*_bob_step(
            np.ascontiguousarray(parities, dtype=np.uint8), passes, queries, pushes, self._sch,
            self._state,
        ))  # fmt: skip
        self._pending = None
        self.disclosed_bits += expected
        self.round_trips += 1

    def close(self) -> None:
        """Give the pooled work arrays back (the corrected ``key`` stays valid)."""
        if self._pooled:
            scratch.give(*self._pooled)
            self._pooled = []
            self._state = ()

    def __enter__(self) -> GroupBob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, alice: GroupAlice) -> np.ndarray:
        """Run every frame against ``alice`` directly; returns Bob's corrected key."""
        while (req := self.request()) is not None:
            self.deliver(alice.answer(*req))
        return self.key
