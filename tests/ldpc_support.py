"""Test helper for the LDPC decoders: frames of a code sent over binary symmetric channels."""

from __future__ import annotations

import numpy as np


def bsc_frames(code, count: int, qbers: list[float], rng: np.random.Generator):
    """``count`` random words of ``code`` with their syndromes and the a-priori LLRs of copies
    sent over BSCs of the given crossover probabilities (one per frame)."""
    x = rng.integers(0, 2, (count, code.n), dtype=np.uint8)
    q = np.array(qbers)[:, None]
    y = x ^ (rng.random((count, code.n)) < q).astype(np.uint8)
    syn = np.stack([code.syndrome(w) for w in x])
    llr = (1 - 2.0 * y) * np.log((1 - q) / q)
    return x, syn, llr
