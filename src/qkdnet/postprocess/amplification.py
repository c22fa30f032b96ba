"""Privacy amplification by Toeplitz hashing, computed with the FFT.

A random m × n Toeplitz matrix T (T[i, j] = s[i − j + n − 1], seed s of n + m − 1 bits) is a
2-universal hash family, so the leftover hash lemma turns n bits about which Eve has smooth
min-entropy k into m ≈ k − 2 log2(1/ε) secret bits (Renner 2005; Lim et al. 2014, eq. 1).

y = T·x (mod 2) is a slice of the integer convolution s * x: y_i = (s * x)[i + n − 1] mod 2.
A circular convolution of length L ≥ n + m − 1 leaves those entries untouched by wrap-around,
so one real FFT of length L per operand suffices (numpy/scipy ``rfft``). The entries are
integers ≤ n; float64 FFT error grows like ε·log2(L)·√(n·|s|), far below 1/2 at every size
used here, and :func:`toeplitz_hash` still checks every rounded value lies within 0.25 of an
integer, falling back to splitting x into pieces (exact by the same bound) if one does not.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from qkdnet.postprocess.bits import check_bits

_MAX_ROUNDING = 0.25


def seed_length(n: int, m: int) -> int:
    """Bits of Toeplitz seed for an m × n matrix."""
    return n + m - 1


def _convolve_slice(seed: np.ndarray, x: np.ndarray, m: int) -> np.ndarray | None:
    """Entries n−1 … n+m−2 of s * x via circular FFT convolution; None if rounding is unsafe."""
    n = x.size
    length = scipy.fft.next_fast_len(n + m - 1, real=True)
    fs = scipy.fft.rfft(seed.astype(np.float64), length)
    fx = scipy.fft.rfft(x.astype(np.float64), length)
    fs *= fx
    conv = scipy.fft.irfft(fs, length)[n - 1 : n - 1 + m]
    rounded = np.rint(conv)
    if conv.size and np.max(np.abs(conv - rounded)) > _MAX_ROUNDING:
        return None
    return (rounded.astype(np.int64) & 1).astype(np.uint8)


def toeplitz_hash(x: np.ndarray, seed: np.ndarray, m: int) -> np.ndarray:
    """y = T·x mod 2 for the m × n Toeplitz matrix of ``seed`` (n + m − 1 bits), by FFT.

    >>> x = np.array([1, 0, 1], dtype=np.uint8); s = np.array([1, 0, 1, 1], dtype=np.uint8)
    >>> toeplitz_hash(x, s, 2).tolist()  # rows (s2 s1 s0) = 101, (s3 s2 s1) = 110
    [0, 1]
    """
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
    out = _convolve_slice(seed, x, m)
    if out is not None:
        return out
    # Split x into halves: T·x = T_left·x_left ⊕ T_right·x_right, each a smaller Toeplitz.
    half = n // 2
    left = toeplitz_hash(x[:half], seed[n - half : n - half + half + m - 1], m)
    right = toeplitz_hash(x[half:], seed[: n - half + m - 1], m)
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
