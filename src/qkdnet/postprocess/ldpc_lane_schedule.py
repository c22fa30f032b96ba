"""Which frame each lane of a frame-parallel LDPC decoder holds, and when a frame stops.

Both decoders (float32, :mod:`qkdnet.postprocess.ldpc_decoder`; 16-bit fixed point,
:mod:`qkdnet.postprocess.ldpc_fixed`) decode LANES frames at once, one per column of their
(rows, LANES) arrays. After every layered iteration :func:`schedule_lanes` decides per lane:
converged (the on-the-fly parity count and the exact syndrome check both found no unsatisfied
check), stuck (``stall_limit`` iterations without fewer unsatisfied checks) or out of
iterations — and then writes the frame's hard decision (and its messages, for a warm start
later) and loads the next waiting frame into the lane, so lanes do not idle while the slowest
frame of a batch finishes.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from qkdnet.postprocess.ldpc_jit import JIT_OPTIONS


@nb.njit(**JIT_OPTIONS)
def load_lane(
    row_ptr: np.ndarray,
    cols: np.ndarray,
    sg_all: np.ndarray,  # (F, m) the frames' syndrome signs, in the decoder's encoding
    llr_all: np.ndarray,  # (F, n) a-priori LLRs, in the decoder's units
    warm: bool,
    msg_all: np.ndarray,  # (F, E) messages to start from (if warm)
    sg: np.ndarray,  # (m, LANES)
    msg: np.ndarray,  # (E, LANES)
    post: np.ndarray,  # (n, LANES)
    lane: int,
    f: int,
    lo: float,
    hi: float,
) -> None:
    """Put frame f into a lane: its syndrome signs, its messages (zero or warm) and posteriors
    LLR + Σ messages, clipped to [lo, hi] (the fixed-point decoder's range)."""
    for c in range(row_ptr.size - 1):
        sg[c, lane] = sg_all[f, c]
    acc = np.empty(post.shape[0], dtype=np.float64)
    for j in range(post.shape[0]):
        acc[j] = llr_all[f, j]
    for e in range(cols.size):
        r = msg_all[f, e] if warm else 0
        msg[e, lane] = r
        acc[cols[e]] += r
    for j in range(post.shape[0]):
        post[j, lane] = min(max(acc[j], lo), hi)


@nb.njit(**JIT_OPTIONS)
def new_lanes(fly: np.ndarray, exact: np.ndarray) -> tuple:
    """The lanes' scheduling state, all idle: (frame_of, best, stall, used, fly, exact), the
    last two being the decoder's own unsatisfied-check counters (any numeric dtype)."""
    lanes = fly.size
    idle = np.full(lanes, -1, dtype=np.int64)
    return idle, np.zeros(lanes), np.zeros(lanes, np.int64), np.zeros(lanes, np.int64), fly, exact


@nb.njit(**JIT_OPTIONS)
def any_lane_clear(frame_of: np.ndarray, fly: np.ndarray) -> bool:
    """Whether some busy lane counted no unsatisfied check in the sweep (its hard decision is
    then confirmed by an exact syndrome check)."""
    return np.any((frame_of >= 0) & (fly == 0))


@nb.njit(**JIT_OPTIONS)
def schedule_lanes(
    row_ptr: np.ndarray,
    cols: np.ndarray,
    sg_all: np.ndarray,
    llr_all: np.ndarray,
    warm: bool,
    msg_all: np.ndarray,
    sg: np.ndarray,
    msg: np.ndarray,
    post: np.ndarray,
    lo: float,
    hi: float,
    frame_of: np.ndarray,  # (LANES,) int64: the frame in each lane, −1 for none
    best: np.ndarray,  # (LANES,) fewest unsatisfied checks seen
    stall: np.ndarray,  # (LANES,) int64: iterations since ``best`` last fell
    used: np.ndarray,  # (LANES,) int64: iterations of the lane's frame
    fly: np.ndarray,  # (LANES,) unsatisfied checks counted during the sweep
    exact: np.ndarray,  # (LANES,) unsatisfied checks of the final hard decision (if confirm)
    confirm: bool,  # whether ``exact`` was computed after this sweep
    stall_limit: int,
    max_iter: int,
    out: np.ndarray,  # (F, n) uint8 hard decisions
    its: np.ndarray,  # (F,) int64: iterations used, −1 on failure
    waiting: int,  # the next frame not yet loaded
) -> int:
    """After a sweep (or, with every lane idle, at the start): retire the frames that stop, load
    waiting frames into free lanes. Returns the next waiting frame."""
    m = row_ptr.size - 1
    for lane in range(frame_of.size):
        f = frame_of[lane]
        if f >= 0:
            used[lane] += 1
            ok = confirm and fly[lane] == 0 and exact[lane] == 0
            stop = ok
            if not ok:
                if fly[lane] < best[lane]:
                    best[lane] = fly[lane]
                    stall[lane] = 0
                else:
                    stall[lane] += 1
                stop = stall[lane] >= stall_limit or used[lane] >= max_iter
            if not stop:
                continue
            its[f] = used[lane] if ok else -1
            for j in range(post.shape[0]):
                out[f, j] = 1 if post[j, lane] < 0 else 0
            if warm:
                for e in range(cols.size):
                    msg_all[f, e] = msg[e, lane]
            frame_of[lane] = -1
        if waiting < llr_all.shape[0]:
            load_lane(row_ptr, cols, sg_all, llr_all, warm, msg_all, sg, msg, post, lane, waiting, lo, hi)  # fmt: skip
            frame_of[lane] = waiting
            best[lane] = m + 1
            stall[lane] = 0
            used[lane] = 0
            waiting += 1
    return waiting
