"""Key verification after error correction: Alice and Bob compare a universal hash of their keys.

The hash is a random Hankel (equivalently Toeplitz) matrix of t = ⌈log2(1/ε_cor)⌉ rows: for
keys x ≠ x', T(x ⊕ x') is uniform over t-bit strings, so unequal keys pass with probability
2^-t ≤ ε_cor (Carter & Wegman 1979; as used for verification by Lim et al., PRA 89, 022307
(2014), which charges log2(2/ε_cor) bits for it in the key length). Row i of the matrix is the
seed shifted by i bits; the kernel works on 64-bit words (bit-packed inner products).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from qkdnet.postprocess.bits import check_bits, pack_words


def tag_bits(eps_cor: float) -> int:
    """t = ⌈log2(1/ε_cor)⌉ hash bits (50 for ε_cor = 1e-15)."""
    if not 0.0 < eps_cor < 1.0:
        raise ValueError(f"eps_cor must be in (0, 1) (got {eps_cor})")
    return math.ceil(math.log2(1.0 / eps_cor))


@nb.njit(cache=True)
def _shifted_parity(key: np.ndarray, seed: np.ndarray, shift: int) -> int:
    """Parity of key · seed[shift : shift + n] on packed words (seed has one spare word)."""
    word = shift // 64
    bit = shift % 64
    acc = np.uint64(0)
    if bit == 0:
        for i in range(key.size):
            acc ^= key[i] & seed[word + i]
    else:
        lo = np.uint64(bit)
        hi = np.uint64(64 - bit)
        for i in range(key.size):
            acc ^= key[i] & ((seed[word + i] >> lo) | (seed[word + i + 1] << hi))
    # parity of a 64-bit word
    acc ^= acc >> np.uint64(32)
    acc ^= acc >> np.uint64(16)
    acc ^= acc >> np.uint64(8)
    acc ^= acc >> np.uint64(4)
    acc ^= acc >> np.uint64(2)
    acc ^= acc >> np.uint64(1)
    return int(acc & np.uint64(1))


def seed_bits_needed(n: int, t: int) -> int:
    """Seed length n + t − 1 of a t-row hash of n-bit keys."""
    return n + t - 1


def verification_hash(key: np.ndarray, seed: np.ndarray, t: int) -> np.ndarray:
    """t-bit hash h_i = ⊕_j key_j · seed_{i+j} (uint8 0/1 array of length t).

    >>> k = np.array([1, 0, 1, 1], dtype=np.uint8)
    >>> s = np.array([1, 1, 0, 1, 0], dtype=np.uint8)
    >>> verification_hash(k, s, 2).tolist()  # rows s[0:4], s[1:5]
    [0, 1]
    """
    key = check_bits("key", key)
    seed = check_bits("seed", seed)
    if seed.size < seed_bits_needed(key.size, t):
        raise ValueError(f"seed needs {seed_bits_needed(key.size, t)} bits (got {seed.size})")
    # Zero-pad the key to whole words; pad the seed so that every shifted row has a spare word.
    words = pack_words(key)
    padded = np.zeros(words.size * 64 + t + 128, dtype=np.uint8)
    padded[: seed.size] = seed
    seed_words = pack_words(padded)
    return np.array([_shifted_parity(words, seed_words, i) for i in range(t)], dtype=np.uint8)
