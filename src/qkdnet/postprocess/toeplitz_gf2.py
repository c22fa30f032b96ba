"""Toeplitz hashing as a GF(2) middle product: Karatsuba on bit-packed words with carry-less
multiplication.

y = T·x mod 2 for the m × n Toeplitz matrix T[i, j] = s[i − j + n − 1] is the middle of the
GF(2)[z] product s(z)·x(z): y_i is its coefficient of z^(i + n − 1). No rounding is involved, so
the result is exact by construction, and a 64-bit word holds 64 coefficients.

Square blocks, the Karatsuba middle product (Hanrot, Quercia, Zimmermann 2004, "The middle
product algorithm I", §3; the transposed Karatsuba product). An h × h Toeplitz block with
h = 2h' splits into h' × h' Toeplitz blocks A (diagonal), B (below), C (above):

    [y0]   [A C] [v0]          P0 = A (v0 + v1)
    [y1] = [B A] [v1]    with  P1 = (C + A) v1,  P2 = (B + A) v0:  y0 = P0 + P1,  y1 = P0 + P2

(signs vanish in characteristic 2). Sums of Toeplitz blocks are the Toeplitz blocks of the
XOR of their 2h' − 1 defining bits, so three half-size middle products and O(h) word XORs
replace four: cost O(h^1.585). At the leaf size the schoolbook takes over. With VPCLMULQDQ
it computes 16 product diagonals at a time, one per 64-bit lane, each input word broadcast
against two vectors of defining words (:func:`qkdnet.postprocess.clmul.clmul_diagonals`: no
horizontal sums, any leaf size, 8–128 words); without it, each output word pair is a dot
product of the defining words with the reversed input (:func:`qkdnet.postprocess.clmul.clmul_dot`).
Blocks travel as offsets into whole arrays, and the XOR passes run on explicit vectors
(:mod:`qkdnet.postprocess.xor_words`).

A rectangular m × n matrix is tiled into square blocks of one size H (x padded with zeros in
front, the seed behind, so every block's defining bits start on a word); block (I, J) depends on
I − J only, and y_I = Σ_J T_(I−J) x_J. :func:`plan` picks H to minimise the modelled work.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from qkdnet.postprocess.bits import pack_words, unpack_words
from qkdnet.postprocess.clmul import (
    CACHE_KERNELS,
    CLMUL_LANES,
    HAS_CLMUL,
    clmul,
    clmul_diagonals,
    clmul_diagonals_short,
    clmul_dot,
)
from qkdnet.postprocess.xor_words import xor_words

__all__ = ["HAS_CLMUL", "middle_product_words", "plan", "toeplitz_gf2"]

#: whether the leaves use :func:`_schoolbook_diagonals` (VPCLMULQDQ) or :func:`_schoolbook`.
_DIAGONALS = clmul_diagonals is not None
#: words kept readable past the defining words (the diagonal leaf reads up to CLMUL_LANES − 1
#: past a block).
_PAD_WORDS = 64
# Schoolbook sizes in words, and the fixed cost of one schoolbook call with its share of the
# XOR passes above it, in carry-less products. Product scanning (:func:`_schoolbook`) needs
# multiples of 8; measured ≈ 80 ns per call + 0.18 ns per product (AVX-512 Xeon, 8192–81920
# words). The diagonal leaf takes any size; it computes its W + 1 diagonals in runs of
# 2·CLMUL_LANES (sizes with W + 1 a multiple of CLMUL_LANES waste none); fitted ≈ 75 ns per
# call + 0.137 ns per product (Zen 5 EPYC, 1 × 2 blocks of 78848 and 79872 words).
_LEAVES = tuple(range(8, 129)) if _DIAGONALS else (8, 16, 24, 32, 40, 48, 56, 64)
_LEAF_OVERHEAD = 550 if _DIAGONALS else 450


def _leaf_products(leaf: int) -> int:
    """Carry-less products one schoolbook call of ``leaf`` words makes (its modelled work)."""
    if not _DIAGONALS:
        return leaf * (leaf + 1)
    # runs of 2·lanes diagonals and at most one of lanes: W + 1 rounded up to whole vectors
    return leaf * -(-(leaf + 1) // CLMUL_LANES) * CLMUL_LANES


_LEAF_ARRAY = np.array(_LEAVES, dtype=np.int64)
_LEAF_COST = np.array([_leaf_products(leaf) + _LEAF_OVERHEAD for leaf in _LEAVES], np.float64)
_MAX_LEVELS = 40


def plan(n: int, m: int) -> tuple[int, int, int, int]:
    """(block words W, schoolbook words, row blocks, column blocks) for an m × n matrix.

    W = leaf·2^k words, k up to the first W that covers the larger side; modelled work =
    blocks × 3^k × (leaf products + overhead), the least over every (leaf, k) (evaluated as one
    array: a Python loop over the 121 leaves cost 10 % of a 10^6-bit hash).

    >>> w, leaf, rows, cols = plan(10**6, 5 * 10**5)  # two square blocks of ≥ 7813 words
    >>> (rows, cols), w >= 7813, w == leaf << (w // leaf).bit_length() - 1
    ((1, 2), True, True)
    """
    nw, mw = -(-n // 64), -(-m // 64)
    levels = np.arange(_MAX_LEVELS, dtype=np.int64)
    w = _LEAF_ARRAY[:, None] << levels[None, :]
    rows, cols = -(-mw // w), -(-nw // w)
    work = rows.astype(np.float64) * cols * 3.0 ** levels[None, :] * _LEAF_COST[:, None]
    covered = w >= max(mw, nw)
    # each leaf's levels up to and including the first that covers the larger side
    last = np.where(covered.any(axis=1), np.argmax(covered, axis=1), _MAX_LEVELS - 1)
    work[levels[None, :] > last[:, None]] = np.inf
    i, k = np.unravel_index(int(np.argmin(work)), work.shape)
    return int(w[i, k]), int(_LEAF_ARRAY[i]), int(rows[i, k]), int(cols[i, k])


@nb.njit(cache=CACHE_KERNELS, inline="always")
def _schoolbook(a, v, y, q):
    """y ^= middle product of a (2W words) and v (W words), W ≤ 64 a multiple of 8; q: W words
    of scratch. Output word k takes bits 63 of P[W − 1 + k] and 0..62 of P[W + k], where
    P[p] = lo(diagonal p) ^ hi(diagonal p − 1), diagonal p = ⊕_j a[p − j] ⊗ v[j]."""
    w = v.size
    for k in range(w):
        q[k] = v[w - 1 - k]  # reversed: diagonal p is a dot of a[p−W+1 : p+1] with q
    carry = np.uint64(0)  # hi part of diagonal W − 2 (its j = W − 1 term reads a[−1] = 0)
    for k in range(1, w):
        _, hi = clmul(a[k - 1], q[k])
        carry ^= hi
    prev = np.uint64(0)
    for p in range(w - 1, 2 * w):
        lo, hi = clmul_dot(a, p - w + 1, q, 0, w)
        cur = lo ^ carry
        carry = hi
        if p >= w:
            y[p - w] ^= (prev >> np.uint64(63)) | (cur << np.uint64(1))
        prev = cur


@nb.njit(cache=CACHE_KERNELS, inline="always")
def _schoolbook_diagonals(a, ao, v, vo, w, y, yo, d, do):
    """y[yo:][:W] ^= middle product of a[ao:][:2W] and v[vo:][:W], by diagonals computed
    2·CLMUL_LANES at a time (:func:`qkdnet.postprocess.clmul.clmul_diagonals`) into
    d[do:][:2W + 2·CLMUL_LANES + 2]. Reads up to CLMUL_LANES − 1 words past a's 2W (only
    diagonals beyond 2W − 1 see them, and those are dropped).

    Needs diagonals W − 1 … 2W − 1: output word k takes bit 63 of P[W − 1 + k] and bits 0..62
    of P[W + k], P[p] = lo(d(p)) ^ hi(d(p − 1)). Bit 63 of P[W − 1] is bit 63 of lo(d(W − 1))
    alone, because a product of two 63rd-degree polynomials has no z^127 term."""
    run = 2 * CLMUL_LANES
    r = 0  # diagonal W − 1 + r
    while w + 1 - r > CLMUL_LANES:
        clmul_diagonals(a, ao + w - 1 + r, v, vo, w, d, do + 2 * r)
        r += run
    if r < w + 1:
        clmul_diagonals_short(a, ao + w - 1 + r, v, vo, w, d, do + 2 * r)
    prev = d[do]
    for k in range(w):
        cur = d[do + 2 * k + 2] ^ d[do + 2 * k + 1]  # lo(d(W + k)) ^ hi(d(W − 1 + k))
        y[yo + k] ^= (prev >> np.uint64(63)) | (cur << np.uint64(1))
        prev = cur


@nb.njit(cache=CACHE_KERNELS, inline="always")
def _schoolbook_words(a, ao, v, vo, w, y, yo, s, so):
    """:func:`_schoolbook` on the blocks at the given offsets."""
    _schoolbook(a[ao : ao + 2 * w], v[vo : vo + w], y[yo : yo + w], s[so : so + w])


#: the schoolbook that ends the recursion.
_leaf = _schoolbook_diagonals if _DIAGONALS else _schoolbook_words


@nb.njit(cache=CACHE_KERNELS)
def _karatsuba(a, ao, v, vo, y, yo, s, so, w, leaf):
    """y[yo:][:W] ^= middle product of a[ao:][:2W] and v[vo:][:W], W = leaf·2^k; s[so:]: ≥
    5W + 2·leaf + 64 words of scratch. Blocks go by offset into whole arrays: slicing would
    take and drop a reference count per view, which cost more than the XOR passes here."""
    if w <= leaf:
        _leaf(a, ao, v, vo, w, y, yo, s, so)
        return
    h = w // 2
    vsum, csum, bsum, rest = so, so + h, so + 3 * h, so + 5 * h
    # a[ao:][:4h] = C (above, words 0..2h), A (diagonal, h..3h), B (below, 2h..4h)
    xor_words(s, vsum, v, vo, v, vo + h, h)
    xor_words(s, csum, a, ao, a, ao + h, 2 * h)
    xor_words(s, bsum, a, ao + 2 * h, a, ao + h, 2 * h)
    # P0 goes to both halves without a buffer: y1 ^= y0, y0 ^= P0, y1 ^= y0 leaves y1 ^ P0.
    xor_words(y, yo + h, y, yo + h, y, yo, h)
    if h <= leaf:  # the three halves are leaves: inlined here rather than called (~3 %)
        _leaf(a, ao + h, s, vsum, h, y, yo, s, rest)
        xor_words(y, yo + h, y, yo + h, y, yo, h)
        _leaf(s, csum, v, vo + h, h, y, yo, s, rest)
        _leaf(s, bsum, v, vo, h, y, yo + h, s, rest)
        return
    _karatsuba(a, ao + h, s, vsum, y, yo, s, rest, h, leaf)  # y0 += P0 = A (v0 + v1)
    xor_words(y, yo + h, y, yo + h, y, yo, h)
    _karatsuba(s, csum, v, vo + h, y, yo, s, rest, h, leaf)  # y0 += (C + A) v1
    _karatsuba(s, bsum, v, vo, y, yo + h, s, rest, h, leaf)  # y1 += (B + A) v0


@nb.njit(cache=CACHE_KERNELS)
def middle_product_words(u, xw, w, rows, cols, leaf):
    """y (rows·W words) of the block-Toeplitz product: u holds (rows + cols)·W defining words
    and :data:`_PAD_WORDS` readable words after them, xw cols·W input words; block (I, J) is
    defined by u[(I − J + cols − 1)·W :][: 2W]."""
    y = np.zeros(rows * w, np.uint64)
    s = np.empty(6 * w + 64, np.uint64)
    # a literal 0 would compile a second, literal-typed specialisation of the recursion, and
    # numba's cache then reloads the recursive pair wrongly (a crash on the next run)
    origin = np.int64(0)
    for i in range(rows):
        for j in range(cols):
            _karatsuba(u, (i - j + cols - 1) * w, xw, j * w, y, i * w, s, origin, w, leaf)
    return y


@nb.njit(cache=CACHE_KERNELS)
def _shift_into(words, out, shift_bits):
    """out[...] = words shifted towards higher bit positions by shift_bits (zeros come in)."""
    q, r = shift_bits // 64, shift_bits % 64
    if r == 0:
        for i in range(min(words.size, out.size - q)):
            out[q + i] = words[i]
        return
    rs, ls = np.uint64(64 - r), np.uint64(r)
    prev = np.uint64(0)
    for i in range(min(words.size, out.size - q)):
        cur = words[i]
        out[q + i] = (cur << ls) | (prev >> rs)
        prev = cur
    if q + words.size < out.size:
        out[q + words.size] = prev >> rs


def toeplitz_gf2(x: np.ndarray, seed: np.ndarray, m: int) -> np.ndarray:
    """y = T·x mod 2 (T[i, j] = seed[i − j + n − 1]) for validated 0/1 uint8 arrays, n, m ≥ 1.

    Needs :data:`HAS_CLMUL`.

    >>> x = np.array([1, 0, 1], dtype=np.uint8); s = np.array([1, 0, 1, 1], dtype=np.uint8)
    >>> toeplitz_gf2(x, s, 2).tolist()  # rows (s2 s1 s0) = 101, (s3 s2 s1) = 110
    [0, 1]
    """
    if not HAS_CLMUL:
        raise RuntimeError("no carry-less multiply instruction on this CPU (PCLMULQDQ)")
    n = x.size
    w, leaf, rows, cols = plan(n, m)
    n_pad = cols * w * 64
    xw = np.zeros(cols * w, np.uint64)
    _shift_into(pack_words(x), xw, n_pad - n)  # zeros in front: T[i, j] = u[i − j + n_pad − 1]
    u = np.zeros((rows + cols) * w + _PAD_WORDS, np.uint64)
    packed = pack_words(seed)
    u[: packed.size] = packed
    y = middle_product_words(u, xw, w, rows, cols, leaf)
    return unpack_words(y, m)
