"""Belief-propagation syndrome decoding of LDPC codes (numba, layered schedule).

Bob knows the syndrome s = H·x of Alice's word x and a noisy copy y; the a-priori LLR of bit j is
(1 − 2 y_j)·ln((1 − Q)/Q) (±∞ for bits both know, 0 for bits only Alice knows). Check c imposes
⊕_j x_j = s_c, i.e. the usual check-node rule with its output sign flipped when s_c = 1.

The layered (row-by-row, "shuffled") schedule updates the posterior after every check, which
converges in about half the iterations of flooding (Hocevar, "A reduced complexity decoder
architecture via layered decoding of LDPC codes", SIPS 2004). Check-node rule: exact sum-product
(tanh rule, extrinsic products by forward/backward passes) or normalised min-sum (Chen and
Fossorier, IEEE Trans. Commun. 50, 406 (2002)). Decoding stops as soon as the hard decision
satisfies every check (so a returned word always has Alice's syndrome), and gives up early
when the count of unsatisfied checks stalls (a stuck decoder rarely recovers; blind rounds then
add information and resume from the messages it left).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

KNOWN_LLR = 1e4  # |LLR| of known bits (shortened, padding): above any sum of check messages
_TANH_CLIP = 1.0 - 1e-12
#: Iterations without fewer unsatisfied checks after which decoding is declared stuck.
STALL_ITERATIONS = 8
_Q_CLIP = 40.0


@nb.njit(cache=True)
def decode_syndrome(
    row_ptr: np.ndarray,
    cols: np.ndarray,
    syndrome: np.ndarray,
    llr: np.ndarray,
    max_iter: int,
    min_sum: bool,
    alpha: float,
    out: np.ndarray,
    msg: np.ndarray,
) -> int:
    """Decode one word into ``out`` (uint8); return the iterations used, or −1 on failure
    (``out`` then holds the last hard decision, which does not match the syndrome).

    ``msg`` (float64, one per edge) holds the check-to-variable messages: zeros for a fresh
    decoding, or those a previous attempt left (warm start of a blind round, where only the
    a-priori LLRs of newly revealed bits changed)."""
    m = row_ptr.size - 1
    n = llr.size
    post = llr.astype(np.float64)
    for e in range(cols.size):
        post[cols[e]] += msg[e]
    maxdeg = 0
    for c in range(m):
        maxdeg = max(maxdeg, row_ptr[c + 1] - row_ptr[c])
    q = np.empty(maxdeg, dtype=np.float64)
    t = np.empty(maxdeg, dtype=np.float64)
    fwd = np.empty(maxdeg + 1, dtype=np.float64)
    best = m + 1
    stall = 0
    for it in range(max_iter):
        for c in range(m):
            s = row_ptr[c]
            deg = row_ptr[c + 1] - s
            sg = -1.0 if syndrome[c] else 1.0
            if min_sum:
                min1 = 1e300
                min2 = 1e300
                arg = -1
                sign = sg
                for k in range(deg):
                    v = post[cols[s + k]] - msg[s + k]
                    q[k] = v
                    a = abs(v)
                    if v < 0.0:
                        sign = -sign
                    if a < min1:
                        min2 = min1
                        min1 = a
                        arg = k
                    elif a < min2:
                        min2 = a
                for k in range(deg):
                    mag = min2 if k == arg else min1
                    sk = sign if q[k] >= 0.0 else -sign
                    r = alpha * sk * mag
                    msg[s + k] = r
                    post[cols[s + k]] = q[k] + r
            else:
                fwd[0] = sg
                for k in range(deg):
                    v = post[cols[s + k]] - msg[s + k]
                    q[k] = v  # unclipped: post must stay llr + Σ messages
                    t[k] = math.tanh(0.5 * min(max(v, -_Q_CLIP), _Q_CLIP))
                    fwd[k + 1] = fwd[k] * t[k]
                acc = 1.0
                for k in range(deg - 1, -1, -1):
                    ext = fwd[k] * acc
                    acc *= t[k]
                    ext = min(max(ext, -_TANH_CLIP), _TANH_CLIP)
                    r = 2.0 * math.atanh(ext)
                    msg[s + k] = r
                    post[cols[s + k]] = q[k] + r
        # early stop: hard decision satisfies every check; give up when the number of
        # unsatisfied checks has not improved for ``STALL_ITERATIONS`` iterations
        for j in range(n):
            out[j] = 1 if post[j] < 0.0 else 0
        unsat = 0
        for c in range(m):
            par = syndrome[c]
            for e in range(row_ptr[c], row_ptr[c + 1]):
                par ^= out[cols[e]]
            unsat += par
        if unsat == 0:
            return it + 1
        if unsat < best:
            best = unsat
            stall = 0
        else:
            stall += 1
            if stall >= STALL_ITERATIONS:
                return -1
    return -1


def decode_numpy(
    row_ptr: np.ndarray,
    cols: np.ndarray,
    syndrome: np.ndarray,
    llr: np.ndarray,
    max_iter: int,
) -> tuple[np.ndarray, int]:
    """Plain numpy flooding sum-product decoder (tanh rule): the benchmark's reference baseline.

    Returns the hard decision and the iterations used (−1 when the syndrome never matched).
    """
    deg = np.diff(row_ptr)
    rows = np.repeat(np.arange(deg.size), deg)
    sg = np.where(syndrome[rows] == 1, -1.0, 1.0)
    msg = np.zeros(cols.size)
    post = llr.astype(np.float64).copy()
    for it in range(max_iter):
        q = np.clip(post[cols] - msg, -_Q_CLIP, _Q_CLIP)
        th = np.tanh(0.5 * q)
        th = np.where(np.abs(th) < 1e-300, 1e-300, th)
        # log-domain product per check of |tanh| and sign
        logabs = np.log(np.abs(th))
        neg = (th < 0).astype(np.int64)
        tot_log = np.add.reduceat(logabs, row_ptr[:-1])[rows]
        tot_neg = np.add.reduceat(neg, row_ptr[:-1])[rows]
        ext = np.exp(tot_log - logabs) * np.where((tot_neg - neg) % 2 == 1, -1.0, 1.0) * sg
        msg = 2.0 * np.arctanh(np.clip(ext, -_TANH_CLIP, _TANH_CLIP))
        post = llr + np.bincount(cols, weights=msg, minlength=llr.size)
        hard = (post < 0).astype(np.uint8)
        par = np.add.reduceat(hard[cols], row_ptr[:-1]) & 1
        if np.array_equal(par.astype(np.uint8), syndrome):
            return hard, it + 1
    return (post < 0).astype(np.uint8), -1
