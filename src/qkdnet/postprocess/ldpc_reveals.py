"""Which bits Bob asks Alice to reveal after a failed LDPC decoding: the least reliable ones.

After belief propagation stops without meeting the syndrome, the posterior log-likelihood
ratio of bit v is L_v = a-priori L_v + Σ (check-to-variable messages into v). The bits with the
smallest |L_v| are those the decoder is least sure of; revealing them helps the next decoding
more than revealing bits in a fixed order, as in symmetric blind reconciliation (Kiktenko,
Trushechkin, Lim, Kurochkin, Fedorov, "Symmetric blind information reconciliation for quantum
key distribution", Phys. Rev. Applied 8, 044017 (2017), §III: the positions with the lowest
|LLR| after a failed decoding are disclosed). Measured with the codes of this package
(docs/benchmarks.md, ``ldpc``): 0.008 lower f at QBER 1 % than the fixed order from the same
start, and, because such reveals are cheap, the first decoding can start at the Shannon rate:
together 0.02-0.04 lower f at QBER 1-8 %.

Leakage: each revealed value is one disclosed bit, as in the fixed order. The positions are a
function of the syndrome of the error word and of Bob's a-priori magnitudes, which are the same
for every key bit; for a binary symmetric channel the error word is independent of Alice's key,
so the positions tell nothing about the key itself (as Cascade's parity positions).
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True)
def _magnitudes(llr, scale, cols, messages, out):
    """out[v] = |llr[v]·scale + Σ messages into v|."""
    for v in range(llr.size):
        out[v] = llr[v] * scale
    for e in range(cols.size):
        out[cols[e]] += messages[e]
    for v in range(llr.size):
        out[v] = abs(out[v])


def posterior_magnitudes(
    llr: np.ndarray, cols: np.ndarray, messages: np.ndarray, scale: float = 1.0
) -> np.ndarray:
    """|posterior LLR| per bit of one frame: a-priori ``llr`` (float, LLR units) times ``scale``
    (the decoder's fixed-point scale, 1 for float messages) plus the check-to-variable
    ``messages`` (one per edge, edge e entering variable cols[e])."""
    out = np.empty(llr.size, dtype=np.float64)
    _magnitudes(np.asarray(llr, dtype=np.float64), float(scale), cols, messages, out)
    return out


def least_reliable(magnitudes: np.ndarray, unknown: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` positions among ``unknown`` (bool mask) with the smallest magnitudes, in
    increasing position order (all of them if fewer)."""
    candidates = np.flatnonzero(unknown)
    if count >= candidates.size:
        return candidates.astype(np.int64)
    pick = np.argpartition(magnitudes[candidates], count - 1)[:count]
    return np.sort(candidates[pick]).astype(np.int64)
