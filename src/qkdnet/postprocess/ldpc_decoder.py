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

Bob's default is the same layered schedule in 16-bit fixed point
(:mod:`qkdnet.postprocess.ldpc_fixed`, about twice as fast); this float32 decoder remains for
min-sum, for codes of more than 32767 checks, and as the benchmark's baseline.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from qkdnet.postprocess.ldpc_jit import JIT_OPTIONS, prefetch_check, slp_vectorize
from qkdnet.postprocess.ldpc_lane_schedule import any_lane_clear, new_lanes, schedule_lanes
from qkdnet.postprocess.ldpc_lanes import LANES, bp_in, bp_out, ms_in, ms_out, parity, tally

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


# --- frame-parallel decoder ---------------------------------------------------------------------
#
# LANES frames are decoded together, interleaved so that every array row holds one value per
# frame (16 float32 = one AVX-512 register). The per-lane updates are the straight-line kernels
# of :mod:`qkdnet.postprocess.ldpc_lanes`, generated by scripts/make_ldpc_lanes.py, which LLVM's
# SLP vectoriser turns into SIMD (numba's loops over a few lanes do not vectorise). A lane whose
# frame has converged (or given up) takes the next waiting frame at once, so lanes do not idle
# while the slowest frame of a batch finishes.

#: Neutral element of ⊞ (an LLR so large that x ⊞ BOXPLUS_ID = x); its square fits float32.
BOXPLUS_ID = 1e15
MSG_CLIP = 60.0  # |LLR| held in float32 (known bits: KNOWN_LLR is clipped to this)
_SIG = (
    "void(i8[::1], i4[::1], f4[:, ::1], f4[:, ::1], b1, f4[:, ::1], i8, b1, f4, i8,"
    " u1[:, ::1], i8[::1], f4[:, ::1], f4[:, ::1])"
)


def _decode_all_py(
    row_ptr: np.ndarray,
    cols: np.ndarray,
    sg_all: np.ndarray,  # (F, m) float32: +1 or −1 (syndrome bit 0 or 1)
    llr_all: np.ndarray,  # (F, n) float32
    warm: bool,
    msg_all: np.ndarray,  # (F, E) float32 messages to start from and to leave (if warm)
    max_iter: int,
    min_sum: bool,
    alpha: float,
    stall_limit: int,
    out: np.ndarray,  # (F, n) uint8: hard decision at convergence (or the last one)
    its: np.ndarray,  # (F,) int64: iterations used, −1 on failure
    msg: np.ndarray,  # (E, LANES) float32 scratch: the lanes' messages
    post: np.ndarray,  # (n, LANES) float32 scratch: the lanes' posteriors
) -> None:
    """Layered decoding of all frames, LANES at a time. Check rule: sum-product as box-plus
    sums, extrinsic by forward/backward passes (correction terms piecewise linear, see
    scripts/make_ldpc_lanes.py), or normalised min-sum (α·min over the others, Chen and
    Fossorier 2002). Each check's parity is taken right after its update (an estimate: later
    checks of the same sweep may flip its bits); when it shows no unsatisfied check in a lane,
    an exact syndrome check of the hard decisions confirms convergence. A frame stops at
    convergence, after ``stall_limit`` iterations without fewer unsatisfied checks, or at
    ``max_iter``."""
    L = LANES
    m = row_ptr.size - 1
    fal = np.float32(alpha)
    maxdeg = 0
    for c in range(m):
        maxdeg = max(maxdeg, row_ptr[c + 1] - row_ptr[c])
    sg = np.ones((m, L), dtype=np.float32)
    msg[:] = 0.0
    post[:] = np.float32(MSG_CLIP)
    q = np.empty((maxdeg, L), dtype=np.float32)
    fwd = np.empty((maxdeg + 1, L), dtype=np.float32)
    fwd[0] = np.float32(BOXPLUS_ID)
    back = np.empty(L, dtype=np.float32)
    neg = np.empty(L, dtype=np.float32)
    m1 = np.empty(L, dtype=np.float32)
    m2 = np.empty(L, dtype=np.float32)
    arg = np.empty(L, dtype=np.int64)
    par = np.empty(L, dtype=np.float32)
    fly = np.empty(L, dtype=np.float32)
    exact = np.empty(L, dtype=np.float32)
    lo, hi = -np.inf, np.inf
    state = new_lanes(fly, exact)
    frame_of = state[0]  # −1: idle lane
    waiting = schedule_lanes(
        row_ptr, cols, sg_all, llr_all, warm, msg_all, sg, msg, post, lo, hi, *state, False,
        stall_limit, max_iter, out, its, 0,
    )  # fmt: skip
    while (frame_of >= 0).any():
        fly[:] = 0.0
        for c in range(m):
            s = row_ptr[c]
            deg = row_ptr[c + 1] - s
            prefetch_check(post, row_ptr, cols, c + 1)  # fetched while c computes
            par[:] = sg[c]
            neg[:] = sg[c]
            if min_sum:
                m1[:] = np.float32(1e30)
                m2[:] = np.float32(1e30)
                arg[:] = 0
                for k in range(deg):
                    ms_in(post[cols[s + k]], msg[s + k], q[k], m1, m2, arg, neg, k)
                for k in range(deg):
                    ms_out(post[cols[s + k]], msg[s + k], q[k], m1, m2, arg, neg, k, fal, par)
            else:
                for k in range(deg):
                    bp_in(post[cols[s + k]], msg[s + k], q[k], fwd[k], fwd[k + 1], neg)
                back[:] = np.float32(BOXPLUS_ID)
                for k in range(deg - 1, -1, -1):
                    bp_out(post[cols[s + k]], msg[s + k], q[k], fwd[k], back, neg, par)
            tally(par, fly)
        confirm = any_lane_clear(frame_of, fly)
        if confirm:  # exact syndrome check of the hard decisions, every lane
            exact[:] = 0.0
            for c in range(m):
                par[:] = sg[c]
                for e in range(row_ptr[c], row_ptr[c + 1]):
                    parity(post[cols[e]], par)
                tally(par, exact)
        waiting = schedule_lanes(
            row_ptr, cols, sg_all, llr_all, warm, msg_all, sg, msg, post, lo, hi, *state,
            confirm, stall_limit, max_iter, out, its, waiting,
        )  # fmt: skip


with slp_vectorize():
    _decode_all = nb.njit(_SIG, **JIT_OPTIONS)(_decode_all_py)


def decode_frames(
    row_ptr: np.ndarray,
    cols: np.ndarray,
    syndromes: np.ndarray,
    llr: np.ndarray,
    max_iter: int = 60,
    *,
    min_sum: bool = False,
    alpha: float = 0.8,
    messages: np.ndarray | None = None,
    stall_limit: int = STALL_ITERATIONS,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode F frames (``syndromes`` (F, m) 0/1, ``llr`` (F, n)), LANES at a time.

    Returns the hard decisions (F, n) uint8 and the iterations used per frame (−1: failed; the
    word then does not match its syndrome). ``messages`` (F, E) float32, when given, warm-starts
    every frame from it and receives the messages left at the end (blind rounds)."""
    llr = np.asarray(llr)
    frames, n = llr.shape
    sg = np.ascontiguousarray(1.0 - 2.0 * np.asarray(syndromes), dtype=np.float32)
    ll = np.ascontiguousarray(np.clip(llr, -MSG_CLIP, MSG_CLIP), dtype=np.float32)
    warm = messages is not None
    msg = messages if messages is not None else np.zeros((1, 1), dtype=np.float32)
    if warm and (msg.dtype != np.float32 or not msg.flags.c_contiguous):
        raise ValueError("messages must be a C-contiguous float32 array")
    if max_iter <= 0:  # no iteration: the a-priori hard decision, reported failed
        return (llr < 0).astype(np.uint8), np.full(frames, -1, dtype=np.int64)
    out = np.empty((frames, n), dtype=np.uint8)
    its = np.empty(frames, dtype=np.int64)
    _decode_all(
        np.ascontiguousarray(row_ptr, dtype=np.int64),
        np.ascontiguousarray(cols, dtype=np.int32),
        sg, ll, warm, msg, max_iter, min_sum, alpha, stall_limit, out, its,
        # allocated by numpy, which asks Linux for huge pages for large arrays: the random
        # reads of posteriors then miss the TLB far less often than in numba-allocated memory
        np.empty((cols.size, LANES), dtype=np.float32), np.empty((n, LANES), dtype=np.float32),
    )  # fmt: skip
    return out, its
