"""Packing 0/1 bit arrays into little-endian 64-bit words (the layout of the hot kernels)."""

from __future__ import annotations

import numpy as np


def pack_words(bits: np.ndarray) -> np.ndarray:
    """uint8 0/1 array → uint64 words, bit i of the input at bit (i mod 64) of word i // 64."""
    packed = np.packbits(np.asarray(bits, dtype=np.uint8), bitorder="little")
    pad = (-packed.size) % 8
    if pad:
        packed = np.concatenate([packed, np.zeros(pad, dtype=np.uint8)])
    return packed.view("<u8")


def unpack_words(words: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`pack_words`: the first n bits as a uint8 0/1 array."""
    return np.unpackbits(words.view(np.uint8), count=n, bitorder="little")


def check_bits(name: str, bits: np.ndarray) -> np.ndarray:
    """``bits`` as a 1-D uint8 array of 0/1, or a ValueError naming ``name``."""
    arr = np.asarray(bits)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of bits (got shape {arr.shape})")
    unsigned = arr.dtype.kind in "ub"  # no value below 0: one pass instead of two
    if arr.size and ((not unsigned and arr.min() < 0) or arr.max() > 1):
        raise ValueError(f"{name} must hold only 0 and 1")
    return arr.astype(np.uint8, copy=False)
