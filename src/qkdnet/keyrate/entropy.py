"""Binary Shannon entropy, the information-theoretic cost of one bit error rate.

h(x) = −x·log2(x) − (1 − x)·log2(1 − x), with h(0) = h(1) = 0. Error correction at the Shannon
limit discloses h(E) bits per sifted bit; privacy amplification removes h(e_phase) per
single-photon bit (Shor–Preskill; GLLP).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def binary_entropy(x: ArrayLike) -> np.ndarray | float:
    """h(x) in bits, elementwise; 0 at x ∈ {0, 1}. Raises ``ValueError`` outside [0, 1].

    >>> round(binary_entropy(0.11), 5)
    0.49992
    """
    arr = np.asarray(x, dtype=float)
    if np.any(~np.isfinite(arr)) or np.any(arr < 0.0) or np.any(arr > 1.0):
        raise ValueError(f"binary entropy needs 0 <= x <= 1 (got {x!r})")
    inner = np.clip(arr, 1e-300, 1.0 - 1e-16)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = -inner * np.log2(inner) - (1.0 - inner) * np.log2(1.0 - inner)
    value = np.where((arr == 0.0) | (arr == 1.0), 0.0, value)
    return float(value) if value.ndim == 0 else value


h = binary_entropy
