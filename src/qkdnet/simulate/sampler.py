"""Numba kernels: draw the clicked pulses of a block directly, then apply detector timing.

Never a random number per emitted pulse. Pulses click independently with a probability P that
does not change along a block (drift changes *which* detector clicks, not whether one does), so
the clicked slots are a Bernoulli(P) process: the gap to the next click is geometric,
``floor(E / λ)`` with E ~ Exp(1) and λ = −log(1 − P) (Devroye, *Non-Uniform Random Variate
Generation*, 1986, §X.2).
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
def _next_slot(rng: np.random.Generator, t: int, rate: float, n_pulses: int) -> int:
    """Next clicked slot after ``t``: gap = floor(Exp(1) / λ) with λ = −log(1 − P) is exactly
    Geometric(P) (Devroye 1986, §X.2); the ziggurat exponential costs a few ns."""
    if rate == np.inf:
        return t + 1
    if rate <= 0.0:
        return n_pulses
    gap = rng.standard_exponential() / rate
    if gap >= n_pulses:
        return n_pulses
    return t + 1 + int(gap)


@numba.njit(cache=True)
def _draw_afterpulse(
    rng: np.random.Generator, t: int, prob: float, dead_gates: int, log_keep: float
) -> int:
    if prob <= 0.0 or rng.random() >= prob:
        return _NEVER
    delay = 0 if log_keep == 0.0 else int(rng.standard_exponential() / -log_keep)
    return t + dead_gates + 1 + delay


@numba.njit(cache=True)
def simulate_chunk(
    rng: np.random.Generator,
    n_pulses: int,
    click_prob: float,
    first_pulse: int,
    seg_len: int,
    first_seg: int,
    accept: np.ndarray,
    alias: np.ndarray,
    det_table: np.ndarray,
    dead_gates: int,
    afterpulse_prob: float,
    afterpulse_gates: float,
    last_click: np.ndarray,
    pending: np.ndarray,
    quiet_accept: np.ndarray,
    quiet_alias: np.ndarray,
    label_clicks: np.ndarray,
    counters: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one chunk's clicked slots and labels, and apply dead time and afterpulses.

    Slots clicking before detector timing are counted per label in ``label_clicks``;
    ``last_click``/``pending`` (absolute slots, one per detector) carry the detectors' state
    across chunks. Returns (slots, labels, detector states) of the events with at least one
    registered click; afterpulse-only slots get a label drawn from the no-click cells.
    ``counters``: [raw clicks, dead-time losses, afterpulse clicks, afterpulse-only slots].
    """
    n_det = det_table.shape[1]
    n_labels = accept.shape[1]
    n_seg = accept.shape[0]
    n_quiet = quiet_accept.shape[1]
    expected = n_pulses * click_prob
    cap = int(expected + 10.0 * np.sqrt(expected + 1.0) + 16)
    out_pos = np.empty(cap, dtype=np.int64)
    out_lab = np.empty(cap, dtype=np.int32)
    out_det = np.empty((cap, n_det), dtype=np.uint8)
    log_keep = np.log1p(-1.0 / afterpulse_gates) if afterpulse_gates > 1.0 else 0.0
    rate = -np.log1p(-click_prob) if click_prob < 1.0 else np.inf
    end = first_pulse + n_pulses
    states = np.empty(n_det, dtype=np.uint8)
    t_rel = _next_slot(rng, -1, rate, n_pulses)
    k = 0
    while True:
        t_ev = first_pulse + t_rel if t_rel < n_pulses else end
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
            label = int(v)
            if v - label >= quiet_accept[0, label]:
                label = quiet_alias[0, label]
            counters[3] += 1
        else:
            t = t_ev
            seg = min(max(t // seg_len - first_seg, 0), n_seg - 1)  # guard: never out of bounds
            v = rng.random() * n_labels
            label = int(v)
            if v - label >= accept[seg, label]:
                label = alias[seg, label]
            label_clicks[label] += 1
            counters[0] += 1
            for d in range(n_det):
                states[d] = det_table[label, d]
                if pending[d] == t and states[d] == 0:
                    states[d] = 3
            t_rel = _next_slot(rng, t_rel, rate, n_pulses)
        any_click = False
        for d in range(n_det):
            if pending[d] == t:
                pending[d] = _NEVER
            if states[d] == 0:
                continue
            if t - last_click[d] <= dead_gates:
                states[d] = 0
                counters[1] += 1
                continue
            if states[d] == 3:
                counters[2] += 1
            last_click[d] = t
            pending[d] = _draw_afterpulse(rng, t, afterpulse_prob, dead_gates, log_keep)
            any_click = True
        if not any_click:
            continue
        if k == out_pos.shape[0]:
            out_pos = _grow(out_pos)
            out_lab = _grow(out_lab)
            bigger = np.empty((out_pos.shape[0], n_det), dtype=np.uint8)
            bigger[: out_det.shape[0]] = out_det
            out_det = bigger
        out_pos[k] = t
        out_lab[k] = label
        for d in range(n_det):
            out_det[k, d] = states[d]
        k += 1
    return out_pos[:k], out_lab[:k], out_det[:k]


@numba.njit(cache=True)
def decode_prepare_measure(
    rng: np.random.Generator,
    pos: np.ndarray,
    lab: np.ndarray,
    det: np.ndarray,
    kind: np.ndarray,
    alice_bit: np.ndarray,
    alice_basis: np.ndarray,
    intensity: np.ndarray,
    bob_basis: np.ndarray,
    eve_bit: np.ndarray,
):
    """Key-pulse events into record columns; a double click gets a random bit (squashing)."""
    n = 0
    for i in range(pos.shape[0]):
        if kind[lab[i]] == 0:
            n += 1
    o_pos = np.empty(n, dtype=np.int64)
    a_bit = np.empty(n, dtype=np.uint8)
    a_basis = np.empty(n, dtype=np.uint8)
    a_cls = np.empty(n, dtype=np.uint8)
    b_bit = np.empty(n, dtype=np.uint8)
    b_basis = np.empty(n, dtype=np.uint8)
    double = np.empty(n, dtype=np.bool_)
    cause = np.empty((n, 2), dtype=np.uint8)
    eve = np.empty(n, dtype=np.uint8)
    j = 0
    for i in range(pos.shape[0]):
        label = lab[i]
        if kind[label] != 0:
            continue
        o_pos[j] = pos[i]
        a_bit[j] = alice_bit[label]
        a_basis[j] = alice_basis[label]
        a_cls[j] = intensity[label]
        b_basis[j] = bob_basis[label]
        eve[j] = eve_bit[label]
        c0 = det[i, 0]
        c1 = det[i, 1]
        cause[j, 0] = c0
        cause[j, 1] = c1
        both = c0 > 0 and c1 > 0
        double[j] = both
        if both:
            b_bit[j] = 1 if rng.random() < 0.5 else 0
        else:
            b_bit[j] = 1 if c1 > 0 else 0
        j += 1
    return o_pos, a_bit, a_basis, a_cls, b_bit, b_basis, double, cause, eve
