"""Numba kernels: draw the clicked pulses of a block directly, then apply detector timing.

Never a random number per emitted pulse. Pulses click independently with a probability P that
does not change along a block (drift changes *which* detector clicks, not whether one does), so
the clicked slots are a Bernoulli(P) process: the gap to the next click is geometric,
``floor(log(U) / log(1 − P))`` (Devroye, *Non-Uniform Random Variate Generation*, 1986, §X.2).
This is the same law as drawing the click count from Binomial(n, P) and then the positions
uniformly without replacement, sorted, but costs O(clicks) and comes out ordered. Each click's
label (cell, Eve's knowledge, detector states) is drawn from its exact conditional distribution
with Walker's alias method (one uniform per event).

Detector timing needs the time order, so it runs over the sorted events: a detector that clicked
at slot t is blind until t + dead_gates (non-paralysable hold-off; clicks that fall inside are
lost); after a registered click it fires an afterpulse with probability ``afterpulse_prob`` at
t + dead_gates + 1 + Geometric (trapped carriers released with mean delay ``afterpulse_gates``).
A new registered click replaces the detector's pending afterpulse (simplification: one trap
population per detector).
"""

from __future__ import annotations

import numba
import numpy as np

_NEVER = -(2**62)


@numba.njit(cache=True)
def build_alias(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias tables for each row of ``probs`` (n_rows, L); rows need not sum to 1."""
    n_rows, n = probs.shape
    accept = np.ones((n_rows, n))
    alias = np.zeros((n_rows, n), dtype=np.int32)
    small = np.empty(n, dtype=np.int64)
    large = np.empty(n, dtype=np.int64)
    for r in range(n_rows):
        total = probs[r].sum()
        if total <= 0.0:
            continue
        scaled = probs[r] * (n / total)
        ns = 0
        nl = 0
        for i in range(n):
            if scaled[i] < 1.0:
                small[ns] = i
                ns += 1
            else:
                large[nl] = i
                nl += 1
        while ns > 0 and nl > 0:
            ns -= 1
            s = small[ns]
            g = large[nl - 1]
            accept[r, s] = scaled[s]
            alias[r, s] = g
            scaled[g] = scaled[g] + scaled[s] - 1.0
            if scaled[g] < 1.0:
                nl -= 1
                small[ns] = g
                ns += 1
        for i in range(nl):
            accept[r, large[i]] = 1.0
            alias[r, large[i]] = large[i]
        for i in range(ns):
            accept[r, small[i]] = 1.0
            alias[r, small[i]] = small[i]
    return accept, alias


@numba.njit(cache=True)
def _grow(arr: np.ndarray) -> np.ndarray:
    out = np.empty(max(16, 2 * arr.shape[0]), dtype=arr.dtype)
    out[: arr.shape[0]] = arr
    return out


@numba.njit(cache=True)
def sample_clicks(
    rng: np.random.Generator,
    n_pulses: int,
    click_prob: float,
    first_pulse: int,
    seg_len: int,
    first_seg: int,
    accept: np.ndarray,
    alias: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Slots (relative to the chunk, sorted) and labels of the clicked pulses of one chunk."""
    cap = int(n_pulses * click_prob + 10.0 * np.sqrt(n_pulses * click_prob + 1.0) + 16)
    pos = np.empty(cap, dtype=np.int64)
    lab = np.empty(cap, dtype=np.int32)
    if click_prob <= 0.0:
        return pos[:0], lab[:0]
    n_labels = accept.shape[1]
    log_q = np.log1p(-click_prob) if click_prob < 1.0 else -np.inf
    t = -1
    k = 0
    while True:
        u = rng.random()
        gap = 0 if click_prob >= 1.0 else int(np.log1p(-u) / log_q)
        t += gap + 1
        if t >= n_pulses:
            break
        seg = (first_pulse + t) // seg_len - first_seg
        v = rng.random() * n_labels
        j = int(v)
        if v - j >= accept[seg, j]:
            j = alias[seg, j]
        if k == pos.shape[0]:
            pos = _grow(pos)
            lab = _grow(lab)
        pos[k] = t
        lab[k] = j
        k += 1
    return pos[:k], lab[:k]


@numba.njit(cache=True)
def _draw_afterpulse(
    rng: np.random.Generator, t: int, prob: float, dead_gates: int, log_keep: float
) -> int:
    if prob <= 0.0 or rng.random() >= prob:
        return _NEVER
    delay = 0 if log_keep == 0.0 else int(np.log1p(-rng.random()) / log_keep)
    return t + dead_gates + 1 + delay


@numba.njit(cache=True)
def detector_timing(
    rng: np.random.Generator,
    pos: np.ndarray,
    lab: np.ndarray,
    det_table: np.ndarray,
    first_pulse: int,
    n_pulses: int,
    dead_gates: int,
    afterpulse_prob: float,
    afterpulse_gates: float,
    last_click: np.ndarray,
    pending: np.ndarray,
    quiet_accept: np.ndarray,
    quiet_alias: np.ndarray,
    counters: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply dead time and afterpulses to one chunk's sorted events.

    ``last_click``/``pending`` (absolute slots, one per detector) carry the detectors' state
    across chunks. Returns (slots, labels, detector states) of the events with at least one
    registered click; afterpulse-only slots get a label drawn from the no-click cells.
    ``counters``: [dead-time losses, afterpulse clicks, afterpulse-only slots].
    """
    n_det = det_table.shape[1]
    n_ev = pos.shape[0]
    cap = n_ev + n_ev // 8 + 16
    out_pos = np.empty(cap, dtype=np.int64)
    out_lab = np.empty(cap, dtype=np.int32)
    out_det = np.empty((cap, n_det), dtype=np.uint8)
    log_keep = np.log1p(-1.0 / afterpulse_gates) if afterpulse_gates > 1.0 else 0.0
    end = first_pulse + n_pulses
    n_quiet = quiet_accept.shape[1]
    states = np.empty(n_det, dtype=np.uint8)
    k = 0
    i = 0
    while True:
        # next regular event and next pending afterpulse inside this chunk
        t_ev = first_pulse + pos[i] if i < n_ev else end
        t_ap = end
        for d in range(n_det):
            if pending[d] != _NEVER and pending[d] < t_ap:
                t_ap = pending[d]
        if t_ev >= end and t_ap >= end:
            break
        if t_ap < t_ev:
            t = t_ap
            for d in range(n_det):
                states[d] = 3 if pending[d] == t else 0
            v = rng.random() * n_quiet
            j = int(v)
            if v - j >= quiet_accept[0, j]:
                j = quiet_alias[0, j]
            label = j
            counters[2] += 1
        else:
            t = t_ev
            label = lab[i]
            for d in range(n_det):
                states[d] = det_table[label, d]
                if pending[d] == t and states[d] == 0:
                    states[d] = 3
            i += 1
        any_click = False
        for d in range(n_det):
            if states[d] == 0:
                continue
            if t - last_click[d] <= dead_gates:
                states[d] = 0
                counters[0] += 1
                continue
            if states[d] == 3:
                counters[1] += 1
            last_click[d] = t
            pending[d] = _draw_afterpulse(rng, t, afterpulse_prob, dead_gates, log_keep)
            any_click = True
        for d in range(n_det):
            if pending[d] == t:
                pending[d] = _NEVER
        if not any_click:
            continue
        if k == out_pos.shape[0]:
            out_pos = _grow(out_pos)
            out_lab = _grow(out_lab)
            bigger = np.empty((2 * out_det.shape[0], n_det), dtype=np.uint8)
            bigger[: out_det.shape[0]] = out_det
            out_det = bigger
        out_pos[k] = t
        out_lab[k] = label
        for d in range(n_det):
            out_det[k, d] = states[d]
        k += 1
    return out_pos[:k], out_lab[:k], out_det[:k]
