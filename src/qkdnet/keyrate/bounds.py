"""Fundamental limits of repeaterless QKD over a pure-loss channel of transmittance η.

* PLOB (Pirandola, Laurenza, Ottaviani, Banchi, Nat. Commun. 8, 15043 (2017), eq. 19): the
  secret-key capacity is −log2(1 − η) bits per channel use (≈ 1.44 η at small η).
* TGW (Takeoka, Guha, Wilde, Nat. Commun. 5, 5235 (2014), eq. 2): the earlier upper bound
  log2((1 + η)/(1 − η)) (≈ 2.89 η), looser than PLOB by about a factor 2.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _check(eta: ArrayLike) -> np.ndarray:
    arr = np.asarray(eta, dtype=float)
    if np.any(~np.isfinite(arr)) or np.any(arr < 0.0) or np.any(arr > 1.0):
        raise ValueError(f"transmittance must be between 0 and 1 (got {eta!r})")
    return arr


def _out(value: np.ndarray) -> np.ndarray | float:
    return float(value) if value.ndim == 0 else value


def plob_bound(eta: ArrayLike) -> np.ndarray | float:
    """PLOB bound −log2(1 − η) in secret bits per channel use (inf at η = 1).

    >>> round(plob_bound(0.1), 4)
    0.152
    """
    arr = _check(eta)
    with np.errstate(divide="ignore"):
        return _out(-np.log2(1.0 - arr))


def tgw_bound(eta: ArrayLike) -> np.ndarray | float:
    """TGW bound log2((1 + η)/(1 − η)) in secret bits per channel use (inf at η = 1)."""
    arr = _check(eta)
    with np.errstate(divide="ignore"):
        return _out(np.log2((1.0 + arr) / (1.0 - arr)))
