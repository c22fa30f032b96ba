"""Privacy amplification by Toeplitz hashing.

A random m × n Toeplitz matrix T (T[i, j] = s[i − j + n − 1], seed s of n + m − 1 bits) is a
2-universal hash family, so the leftover hash lemma turns n bits about which Eve has smooth
min-entropy k into m ≈ k − 2 log2(1/ε) secret bits (Renner 2005; Lim et al. 2014, eq. 1).

The *modified* Toeplitz family (I_m | T'), T' a random m × (n − m) Toeplitz matrix (seed n − 1
bits), is 2-universal too (Hayashi and Tsurumaru, IEEE Trans. Inf. Theory 62, 2213 (2016),
arXiv:1311.5322, §V): for x ≠ x' with difference (d₁, d₂), d₂ = 0 leaves d₁ ≠ 0 and no collision,
and for d₂ ≠ 0 the linear map s ↦ T'·d₂ is onto (row i holds seed bit i − j* + n − m − 1, j*
the last 1 of d₂, and no later row does: the rows are triangular in those bits), so T'·d₂ is
uniform and Pr[T'·d₂ = d₁] = 2^−m. It hashes the same n bits to the same m with n − 1 seed
bits instead of n + m − 1 and, at m = n/2, half the work (:func:`privacy_hash`, the protocol's
default family).

y = T·x (mod 2) is a slice of the convolution s * x: y_i = (s * x)[i + n − 1] mod 2. Two exact
ways to compute it, chosen by :func:`toeplitz_hash` (``method="auto"``):

* ``"gf2"`` — the slice as a middle product in GF(2)[z] on bit-packed words, Karatsuba with
  carry-less multiplication (:mod:`qkdnet.postprocess.toeplitz_gf2`); needs PCLMULQDQ (x86 since
  2010). Exact by construction; 4–12× the FFT at n = 10^6–10^7 (docs/benchmarks.md), its cost
  grows as n^1.585, so above :data:`GF2_MAX_BITS` the FFT takes over.
* ``"fft"`` — the integer convolution by float64 FFT, rounded, parity taken (below). Runs
  anywhere numpy does.

How the FFT path is computed (one core, float64, bit-exact):

* Half-length complex transform. With L = 2N, the even/odd halves of x and s are packed as
  z = x_even + i·x_odd (a free reinterpretation of the zero-padded float array), and one complex
  FFT of length N per operand gives both halves' spectra (X_e = (Z_k + Z̄_{−k})/2,
  X_o = (Z_k − Z̄_{−k})/2i, the split used by every real FFT). The polyphase convolution
  C_even = x_e ⊛ s_e + shift(x_o ⊛ s_o), C_odd = x_e ⊛ s_o + x_o ⊛ s_e is formed in one pass
  over the spectra (:func:`_combine`) and packed as C_even + i·C_odd, so a single inverse
  complex FFT returns C in natural order as interleaved floats.
* Four-step FFT (Bailey 1990, "FFTs in external or hierarchical memory"): N = N1·N2 with
  N1, N2 ≈ √N; every transform is a batch of short row FFTs (scipy.fft, cache-resident), a
  twiddle multiplication fused with a blocked transpose (numba), and a second batch of rows.
  The spectrum stays in the four-step's scrambled order: the convolution does not need the
  natural order, only the index of −k (for the split) and ω^k (for the shift).
* Packing of the bits into the transposed layout and the final rounding/parity extraction are
  fused numba passes (blocked so that the strided side stays in cache).

Exactness: the entries are integers ≤ n. The float64 FFT error is ≲ ‖x‖₂‖s‖₂·c·u·log2 N
(u = 2⁻⁵³; Higham 2002, §24.1, Thm 24.2 for the radix-2 transform), about 10⁻⁶ at n = 10⁸,
far below 1/2; measured max |C − round(C)| is 4.7·10⁻¹⁰ at n = 10⁷ (random bits). The kernel
still checks that every rounded value lies within 0.25 of an integer and falls back to
splitting x into halves (each exact by the same bound) if one does not.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading

import numba as nb
import numpy as np
import scipy.fft

from qkdnet.postprocess.bits import check_bits
from qkdnet.postprocess.clmul import CLMUL_LANES, HAS_CLMUL
from qkdnet.postprocess.toeplitz_gf2 import toeplitz_gf2

_MAX_ROUNDING = 0.25
#: n + m above which ``method="auto"`` uses the FFT: the GF(2) product's n^1.585 cost meets the
#: FFT's n log n near 10^8 bits with 512-bit VPCLMULQDQ (measured 45 vs 21 Mbit/s at n = 2·10^7,
#: m = n/2), above 3·10^7 with 256-bit (30 vs 21 at 2·10^7) and near 1.5·10^7 with scalar
#: PCLMULQDQ (19 vs 23 Mbit/s at n = 10^7).
GF2_MAX_BITS = {8: 10**8, 4: 5 * 10**7}.get(CLMUL_LANES, 10**7)
METHODS = ("auto", "gf2", "fft")
_BLOCK = 64  # twiddle table granularity (fine table: 64 entries per row)
_TILE = 16  # transposition tile


#: hash families for privacy amplification (:func:`privacy_hash`); the first is the default.
PA_FAMILIES = ("modified-toeplitz", "toeplitz")


def seed_length(n: int, m: int, family: str = "toeplitz") -> int:
    """Bits of seed for hashing n bits to m: n + m − 1 for an m × n Toeplitz matrix, n − 1 for
    the modified family (I_m | T') (T' m × (n − m), no seed when m ≥ n: y = x)."""
    _check_family(family)
    if family == "toeplitz":
        return n + m - 1
    return n - 1 if m < n else 0  # m < n implies n >= 1


def _check_family(family: str) -> None:
    if family not in PA_FAMILIES:
        raise ValueError(
            f"privacy amplification family must be one of {', '.join(PA_FAMILIES)} (got {family!r})"
        )


@nb.njit(cache=True)
def _twiddle_tables(n1: int, n2: int, block: int):
    """ω^(k1·j) = coarse[k1, j // block]·fine[k1, j % block] (ω = e^(−2πi/N)); t1, t2: ω^k
    for k = k2 + N2·k1 split as ω^k2 · ω_{N1}^k1."""
    n = n1 * n2
    nc = (n2 + block - 1) // block
    fine = np.empty((n1, block), np.complex128)
    coarse = np.empty((n1, nc), np.complex128)
    w = -2.0 * np.pi / n
    for k1 in range(n1):
        for b in range(block):
            t = (k1 * b) % n
            fine[k1, b] = complex(np.cos(w * t), np.sin(w * t))
        for c in range(nc):
            t = (k1 * c * block) % n
            coarse[k1, c] = complex(np.cos(w * t), np.sin(w * t))
    t2 = np.empty(n2, np.complex128)
    for k2 in range(n2):
        t2[k2] = complex(np.cos(w * k2), np.sin(w * k2))
    t1 = np.empty(n1, np.complex128)
    for k1 in range(n1):
        a = -2.0 * np.pi * k1 / n1
        t1[k1] = complex(np.cos(a), np.sin(a))
    return fine, coarse, t1, t2


@functools.lru_cache(maxsize=8)
def _tables(n1: int, n2: int):
    return _twiddle_tables(n1, n2, _BLOCK)


@nb.njit(cache=True)
def _pack_transposed(bits: np.ndarray, out: np.ndarray) -> None:
    """out[j1, j2] = b[2j] + i·b[2j+1] with j = j1 + N1·j2 (bits zero-padded); out (N1, N2)."""
    n1, n2 = out.shape
    n = bits.size
    for j2b in range(0, n2, _TILE):
        j2e = min(j2b + _TILE, n2)
        for j1 in range(n1):
            for j2 in range(j2b, j2e):
                j = 2 * (j1 + n1 * j2)
                re = float(bits[j]) if j < n else 0.0
                im = float(bits[j + 1]) if j + 1 < n else 0.0
                out[j1, j2] = complex(re, im)


@nb.njit(cache=True)
def _twiddle_transpose(a, out, fine, coarse, inverse: bool) -> None:
    """out[q, p] = a[p, q]·ω^(j1·k2) (conjugated if ``inverse``), blocked transpose.

    Forward a is [j1, k2] (row p = j1); inverse a is [k2, j1] (column q = j1).
    """
    rows, cols = a.shape
    block = _BLOCK  # == fine.shape[1]; a compile-time power of two: // and % are shifts
    for p0 in range(0, rows, _TILE):
        p1 = min(p0 + _TILE, rows)
        for q0 in range(0, cols, _TILE):
            q1 = min(q0 + _TILE, cols)
            for p in range(p0, p1):
                for q in range(q0, q1):
                    if inverse:
                        w = coarse[q, p // block] * fine[q, p % block]
                        out[q, p] = a[p, q] * w.conjugate()
                    else:
                        w = coarse[p, q // block] * fine[p, q % block]
                        out[q, p] = a[p, q] * w


@nb.njit(cache=True)
def _combine(zx, zs, t1, t2) -> None:
    """zx ← F(C_even) + i·F(C_odd) from zx = F(x_e + i x_o), zs = F(s_e + i s_o), in place.

    Spectra are in four-step order: zx[k2, k1] holds frequency k = k2 + N2·k1 (ω^k = t2·t1).
    """
    n2, n1 = zx.shape
    for k2 in range(n2):
        p2 = (n2 - k2) % n2
        for k1 in range(n1):
            p1 = (n1 - k1 - (1 if k2 > 0 else 0)) % n1
            if k2 > p2 or (k2 == p2 and k1 > p1):
                continue  # each pair (k, −k) once
            a = zx[k2, k1]
            ac = zx[p2, p1].conjugate()
            b = zs[k2, k1]
            bc = zs[p2, p1].conjugate()
            xe = 0.5 * (a + ac)
            xo = -0.5j * (a - ac)
            se = 0.5 * (b + bc)
            so = -0.5j * (b - bc)
            w = t2[k2] * t1[k1]
            ee = xe * se
            oo = xo * so
            eo = xe * so + xo * se
            zx[k2, k1] = ee + w * oo + 1j * eo
            if p2 != k2 or p1 != k1:
                zx[p2, p1] = ee.conjugate() + (w * oo).conjugate() + 1j * eo.conjugate()


@nb.njit(cache=True)
def _extract(w, n: int, m: int, y) -> float:
    """y_i = C_(i+n−1) mod 2 from w[j1, j2] = C_2j + i·C_(2j+1), j = j1 + N1·j2; returns the
    largest distance of a used entry to its nearest integer."""
    n1, n2 = w.shape
    lo = n - 1
    worst = 0.0
    for j2b in range(0, n2, _TILE):
        j2e = min(j2b + _TILE, n2)
        for j1 in range(n1):
            for j2 in range(j2b, j2e):
                i = 2 * (j1 + n1 * j2) - lo
                if i < -1 or i >= m:
                    continue
                z = w[j1, j2]
                if i >= 0:
                    r = np.rint(z.real)
                    worst = max(worst, abs(z.real - r))
                    y[i] = np.int64(r) & 1
                if i + 1 < m:
                    r = np.rint(z.imag)
                    worst = max(worst, abs(z.imag - r))
                    y[i + 1] = np.int64(r) & 1
    return worst


def _shape(n_complex: int) -> tuple[int, int]:
    """N1·N2 ≥ n_complex with both factors fast FFT lengths near √n_complex, smallest product."""
    root = math.isqrt(n_complex)
    best = (1, scipy.fft.next_fast_len(n_complex))
    for d in range(0, root // 2 + 1, max(1, root // 64)):
        n2 = scipy.fft.next_fast_len(root + d)
        n1 = scipy.fft.next_fast_len(-(-n_complex // n2))
        if n1 * n2 < best[0] * best[1] or (n1 * n2 == best[0] * best[1] and best[0] == 1):
            best = (n1, n2)
    return best


def _forward(bits: np.ndarray, tables, work: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Four-step FFT of the packed bits: ``work`` (N1, N2) is scratch, ``out`` (N2, N1) receives
    the spectrum in four-step order, out[k2, k1] = Z_(k2 + N2·k1)."""
    fine, coarse, _, _ = tables
    _pack_transposed(bits, work)  # [j1, j2], j = j1 + N1·j2
    spec = scipy.fft.fft(work, axis=1, overwrite_x=True)  # over j2 → [j1, k2]
    _twiddle_transpose(spec, out, fine, coarse, False)  # × ω^(j1·k2) → [k2, j1]
    return scipy.fft.fft(out, axis=1, overwrite_x=True)  # over j1 → [k2, k1]


def _convolve_slice(seed: np.ndarray, x: np.ndarray, m: int) -> np.ndarray | None:
    """Entries n−1 … n+m−2 of s * x mod 2 (circular, length 2·N1·N2 ≥ n + m − 1); None if a
    value is not within 0.25 of an integer."""
    n = x.size
    n1, n2 = _shape(-(-(n + m - 1) // 2))
    tables = _tables(n1, n2)
    with _scratch(n1 * n2) as (a, b, c):
        work = a.reshape(n1, n2)
        zx = _forward(x, tables, work, b.reshape(n2, n1))
        zs = _forward(seed, tables, work, c.reshape(n2, n1))
        _combine(zx, zs, tables[2], tables[3])
        back = scipy.fft.ifft(zx, axis=1, overwrite_x=True)  # over k1 → [k2, j1]
        _twiddle_transpose(back, work, tables[0], tables[1], True)  # → [j1, k2]
        conv = scipy.fft.ifft(work, axis=1, overwrite_x=True)  # over k2 → [j1, j2]
        y = np.empty(m, dtype=np.uint8)
        if _extract(conv, n, m, y) > _MAX_ROUNDING:
            return None
    return y


_SCRATCH: list[np.ndarray] = []  # free complex buffers, reused across calls (and threads)
_SCRATCH_LOCK = threading.Lock()
_SCRATCH_BYTES = 1 << 29  # free buffers kept at most (two parties' calls at n ≈ 5·10^6)


@contextlib.contextmanager
def _scratch(size: int):
    """Three complex128 work buffers of ``size`` points, taken from a small process-wide pool
    and given back after use: a block's transforms then reuse memory instead of faulting in
    fresh pages (~100 MB per call at n = 2.6·10^6, a quarter of the chain's CPU time was the
    kernel's page faults)."""
    taken: list[np.ndarray] = []
    with _SCRATCH_LOCK:
        for buf in _SCRATCH:  # smallest first
            if buf.size >= size and len(taken) < 3:
                taken.append(buf)
        _SCRATCH[:] = [b for b in _SCRATCH if all(b is not t for t in taken)]
    while len(taken) < 3:
        taken.append(np.empty(size, np.complex128))
    try:
        yield tuple(buf[:size] for buf in taken)
    finally:
        with _SCRATCH_LOCK:
            _SCRATCH.extend(taken)
            _SCRATCH.sort(key=lambda b: b.size)
            while sum(b.nbytes for b in _SCRATCH) > _SCRATCH_BYTES:
                _SCRATCH.pop()  # the largest go back to the system


def toeplitz_hash(x: np.ndarray, seed: np.ndarray, m: int, method: str = "auto") -> np.ndarray:
    """y = T·x mod 2 for the m × n Toeplitz matrix of ``seed`` (n + m − 1 bits).

    ``method``: ``"gf2"`` (carry-less Karatsuba; needs PCLMULQDQ), ``"fft"``, or ``"auto"``
    (``"gf2"`` where the CPU has it and n + m ≤ :data:`GF2_MAX_BITS`). All give the same bits.

    >>> x = np.array([1, 0, 1], dtype=np.uint8); s = np.array([1, 0, 1, 1], dtype=np.uint8)
    >>> toeplitz_hash(x, s, 2).tolist()  # rows (s2 s1 s0) = 101, (s3 s2 s1) = 110
    [0, 1]
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)} (got {method!r})")
    if method == "gf2" and not HAS_CLMUL:
        raise ValueError('method "gf2" needs the PCLMULQDQ instruction, which this CPU lacks; '
                         'use "auto" or "fft"')  # fmt: skip
    x = check_bits("x", x)
    seed = check_bits("seed", seed)
    n = x.size
    if m < 0:
        raise ValueError(f"output length must be >= 0 (got {m})")
    if m == 0:
        return np.zeros(0, dtype=np.uint8)
    if n == 0:
        return np.zeros(m, dtype=np.uint8)
    if seed.size != seed_length(n, m):
        raise ValueError(f"seed must have n + m - 1 = {seed_length(n, m)} bits (got {seed.size})")
    if method == "gf2" or (method == "auto" and HAS_CLMUL and n + m <= GF2_MAX_BITS):
        return toeplitz_gf2(x, seed, m)
    return _toeplitz_fft(x, seed, m)


def privacy_hash(
    x: np.ndarray, seed: np.ndarray, m: int, family: str = "modified-toeplitz",
    method: str = "auto",
) -> np.ndarray:  # fmt: skip
    """The m-bit hash of key bits ``x`` by a member of ``family`` (:data:`PA_FAMILIES`) chosen
    by ``seed`` (:func:`seed_length` bits). ``"modified-toeplitz"``: y = x[:m] ⊕ T'·x[m:] with
    T' the m × (n − m) Toeplitz matrix of the seed (its product by :func:`toeplitz_hash` with
    ``method``); ``"toeplitz"``: :func:`toeplitz_hash`.

    >>> x = np.array([1, 0, 1, 1], dtype=np.uint8); s = np.array([1, 0, 1], dtype=np.uint8)
    >>> privacy_hash(x, s, 2).tolist()  # (1, 0) ⊕ [[s1 s0], [s2 s1]]·(1, 1) = (1, 0) ⊕ (1, 1)
    [0, 1]
    """
    _check_family(family)
    if family == "toeplitz":
        return toeplitz_hash(x, seed, m, method)
    x = check_bits("x", x)
    seed = check_bits("seed", seed)
    n = x.size
    if m < 0 or m > n:
        raise ValueError(f"output length must be in [0, n = {n}] (got {m})")
    if seed.size != seed_length(n, m, family):
        raise ValueError(
            f"seed must have {seed_length(n, m, family)} bits for the modified Toeplitz family "
            f"(n - 1 with n = {n}, none when m = n; got {seed.size})"
        )
    if m == n:
        return x.copy()
    return x[:m] ^ toeplitz_hash(x[m:], seed, m, method)


def modified_toeplitz_direct(x: np.ndarray, seed: np.ndarray, m: int) -> np.ndarray:
    """Reference (I_m | T')·x mod 2 with the whole m × n matrix built (small inputs only)."""
    x = check_bits("x", x)
    seed = check_bits("seed", seed)
    n = x.size
    i = np.arange(m)[:, None]
    j = np.arange(n - m)[None, :]
    matrix = np.concatenate([np.eye(m, dtype=np.int64), seed[i - j + n - m - 1]], axis=1)
    return ((matrix @ x.astype(np.int64)) & 1).astype(np.uint8)


def _toeplitz_fft(x: np.ndarray, seed: np.ndarray, m: int) -> np.ndarray:
    """The FFT path for validated inputs (n, m ≥ 1)."""
    n = x.size
    out = _convolve_slice(seed, x, m)
    if out is not None:
        return out
    # Split x into halves: T·x = T_left·x_left ⊕ T_right·x_right, each a smaller Toeplitz.
    half = n // 2
    left = _toeplitz_fft(x[:half], seed[n - half : n - half + half + m - 1], m)
    right = _toeplitz_fft(x[half:], seed[: n - half + m - 1], m)
    return left ^ right


def toeplitz_direct(x: np.ndarray, seed: np.ndarray, m: int) -> np.ndarray:
    """Reference y = T·x mod 2 with the matrix built explicitly (small inputs only)."""
    x = check_bits("x", x)
    seed = check_bits("seed", seed)
    n = x.size
    i = np.arange(m)[:, None]
    j = np.arange(n)[None, :]
    t = seed[i - j + n - 1]
    return ((t.astype(np.int64) @ x.astype(np.int64)) & 1).astype(np.uint8)
