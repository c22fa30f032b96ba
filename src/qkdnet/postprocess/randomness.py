"""The parties' private and protocol randomness in live mode: the operating system's CSPRNG.

In a reproducible simulation Alice and Bob draw their choices (which sifted bits are sampled
for the QBER estimate, Cascade's shuffle seed, the verification hash and the Toeplitz seed of
privacy amplification) from a seeded ``numpy.random.Generator``. In live mode (a running network
with no seed) these choices must be unpredictable, so :class:`SystemRandomness` answers the same
calls (the subset of the ``Generator`` interface the post-processing uses) from ``os.urandom``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np


class SystemRandomness:
    """``integers``, ``choice``, ``random`` and ``bytes`` of ``numpy.random.Generator``, drawn
    from ``os.urandom`` (unbiased: powers of two by masking, other ranges by rejection)."""

    def bytes(self, length: int) -> bytes:
        return os.urandom(int(length))

    def _words(self, count: int) -> np.ndarray:
        return np.frombuffer(os.urandom(8 * count), dtype=np.uint64).copy()

    def _below(self, bound: int, count: int) -> np.ndarray:
        """``count`` uniform integers in [0, bound), bound ≤ 2^63, as uint64."""
        if bound <= 0:
            raise ValueError(f"high must exceed low (range {bound})")
        if bound & (bound - 1) == 0:  # a power of two: the low bits are uniform
            return self._words(count) & np.uint64(bound - 1)
        limit = np.uint64((2**64 // bound) * bound)  # reject the biased top of the range
        out = np.empty(0, dtype=np.uint64)
        while out.size < count:
            words = self._words(max(2 * (count - out.size), 16))
            out = np.concatenate([out, words[words < limit] % np.uint64(bound)])
        return out[:count]

    def integers(
        self, low: int, high: int | None = None, size: Any = None, dtype: Any = np.int64
    ) -> Any:
        """Uniform integers in [low, high) (``Generator.integers`` with endpoint=False)."""
        if high is None:
            low, high = 0, low
        span = int(high) - int(low)
        if not 0 < span <= 2**63:
            raise ValueError(f"integers needs 0 < high - low <= 2^63 (got [{low}, {high}))")
        count = int(np.prod(size)) if size is not None else 1
        values = (self._below(span, count).astype(np.int64) + int(low)).astype(dtype)
        if size is None:
            return values[0].item()
        return values.reshape(size)

    def random(self, size: Any = None) -> Any:
        """Uniform floats in [0, 1) with 53 random bits each."""
        count = int(np.prod(size)) if size is not None else 1
        values = (self._words(count) >> np.uint64(11)).astype(np.float64) * 2.0**-53
        return float(values[0]) if size is None else values.reshape(size)

    def choice(self, a: Any, size: int | None = None, replace: bool = True) -> Any:
        """Elements of ``a`` (or of ``range(a)`` for an int); without replacement: the
        ``size`` smallest of random 64-bit keys, a uniform random subset in random order."""
        pool = np.arange(a) if isinstance(a, (int, np.integer)) else np.asarray(a)
        n = pool.shape[0]
        count = 1 if size is None else int(size)
        if replace:
            picked = pool[self._below(n, count).astype(np.int64)]
        else:
            if count > n:
                raise ValueError(f"cannot take {count} of {n} without replacement")
            keys = self._words(n)
            first = np.argpartition(keys, count - 1)[:count] if 0 < count < n else np.arange(n)
            picked = pool[first[:count][np.argsort(keys[first[:count]])]]
        return picked[0] if size is None else picked
