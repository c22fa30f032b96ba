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
replace four: cost O(h^1.585). At ≤ 64 words the schoolbook takes over: each output word
pair is a dot product, over the whole block, of the defining words with the reversed input
(:func:`qkdnet.postprocess.clmul.clmul_dot`, eight carry-less products per step).

A rectangular m × n matrix is tiled into square blocks of one size H (x padded with zeros in
front, the seed behind, so every block's defining bits start on a word); block (I, J) depends on
I − J only, and y_I = Σ_J T_(I−J) x_J. :func:`plan` picks H to minimise the modelled work.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from qkdnet.postprocess.bits import pack_words, unpack_words
from qkdnet.postprocess.clmul import CACHE_KERNELS, HAS_CLMUL, clmul, clmul_dot

__all__ = ["HAS_CLMUL", "middle_product_words", "plan", "toeplitz_gf2"]

_LEAVES = (8, 16, 24, 32, 40, 48, 56, 64)  # schoolbook sizes in words (multiples of 8)
# Fixed cost of one schoolbook call and its share of the XOR passes above it, in carry-less
# products: measured ≈ 80 ns per call + 0.18 ns per product (AVX-512 host, 8192–81920 words).
_LEAF_OVERHEAD = 450


def plan(n: int, m: int) -> tuple[int, int, int, int]:
    """(block words W, schoolbook words, row blocks, column blocks) for an m × n matrix.

    W = leaf·2^k words; modelled work = blocks × 3^k × (leaf·(leaf + 1) + overhead).

    >>> plan(10**6, 5 * 10**5)  # two square blocks of 8192 words (524,288 bits)
    (8192, 64, 1, 2)
    """
    nw, mw = -(-n // 64), -(-m // 64)
    best: tuple[float, tuple[int, int, int, int]] | None = None
    for leaf in _LEAVES:
        for k in range(0, 40):
            w = leaf << k
            rows, cols = -(-mw // w), -(-nw // w)
            work = rows * cols * 3.0**k * (leaf * (leaf + 1) + _LEAF_OVERHEAD)
            if best is None or work < best[0]:
                best = (work, (w, leaf, rows, cols))
            if w >= max(mw, nw):
                break
    assert best is not None
    return best[1]


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


@nb.njit(cache=CACHE_KERNELS)
def _karatsuba(a, v, y, s, leaf):
    """y ^= middle product of a (2W words) and v (W = leaf·2^k words); s: ≥ 6W words of
    scratch."""
    w = v.size
    if w <= leaf:
        _schoolbook(a, v, y, s)
        return
    h = w // 2
    vsum, csum, bsum = s[:h], s[h : 3 * h], s[3 * h : 5 * h]
    p0, rest = s[5 * h : 6 * h], s[6 * h :]
    v0, v1 = v[:h], v[h:]
    for k in range(h):
        vsum[k] = v0[k] ^ v1[k]
        p0[k] = 0
    c, d, b = a[: 2 * h], a[h : 3 * h], a[2 * h : 4 * h]  # C (above), A (diagonal), B (below)
    for k in range(2 * h):
        csum[k] = c[k] ^ d[k]
        bsum[k] = b[k] ^ d[k]
    _karatsuba(d, vsum, p0, rest, leaf)  # P0 = A (v0 + v1)
    y0, y1 = y[:h], y[h:]
    _karatsuba(csum, v1, y0, rest, leaf)  # y0 += (C + A) v1
    _karatsuba(bsum, v0, y1, rest, leaf)  # y1 += (B + A) v0
    for k in range(h):
        y0[k] ^= p0[k]
        y1[k] ^= p0[k]


@nb.njit(cache=CACHE_KERNELS)
def middle_product_words(u, xw, w, rows, cols, leaf):
    """y (rows·W words) of the block-Toeplitz product: u holds (rows + cols)·W defining words,
    xw cols·W input words; block (I, J) is defined by u[(I − J + cols − 1)·W :][: 2W]."""
    y = np.zeros(rows * w, np.uint64)
    s = np.empty(6 * w + 64, np.uint64)
    for i in range(rows):
        for j in range(cols):
            start = (i - j + cols - 1) * w
            _karatsuba(u[start : start + 2 * w], xw[j * w : (j + 1) * w], y[i * w : (i + 1) * w],
                       s, leaf)  # fmt: skip
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
    u = np.zeros((rows + cols) * w, np.uint64)
    packed = pack_words(seed)
    u[: packed.size] = packed
    y = middle_product_words(u, xw, w, rows, cols, leaf)
    return unpack_words(y, m)
