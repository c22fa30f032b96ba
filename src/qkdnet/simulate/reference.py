"""Dense per-pulse reference simulator: every pulse, every photon, in plain numpy.

This is the slow, obviously-right model the fast sampler is checked against (tests) and timed
against (``qkdnet bench``): it draws each pulse's intensity class, bases, bit and photon
number, sends each photon through the channel (binomial survival) and the analyser, adds dark
counts per detector, and runs dead time and afterpulses with a Python loop over the clicked
slots. It shares no code with ``simulate.labels``/``simulate.sampler``. Prepare-and-measure
protocols (decoy and single-photon BB84), optionally under intercept-resend, static channel.
"""

from __future__ import annotations

import math

import numpy as np

from qkdnet.physics import HardwarePreset
from qkdnet.simulate.records import AliceRecords, BobRecords, SimulationBlock


def dense_block(
    hw: HardwarePreset,
    distance_km: float,
    pulses: int,
    rng: np.random.Generator,
    *,
    basis_prob_x: float = 0.9,
    intercept_fraction: float = 0.0,
    dead_time: bool = True,
    afterpulses: bool = True,
    afterpulse_delay_s: float = 50e-9,
) -> SimulationBlock:
    """One block of ``pulses`` pulses simulated pulse by pulse."""
    src = hw.source
    if src.kind == "laser":
        intensities = np.array(src.intensities)
        cls = rng.choice(len(intensities), size=pulses, p=np.array(src.intensity_probs))
        photons = rng.poisson(intensities[cls])
    else:
        cls = np.zeros(pulses, dtype=np.int64)
        photons = rng.choice(3, size=pulses, p=src.photon_number_probs()[:3])
    a_basis = (rng.random(pulses) >= basis_prob_x).astype(np.uint8)
    b_basis = (rng.random(pulses) >= basis_prob_x).astype(np.uint8)
    a_bit = rng.integers(0, 2, size=pulses, dtype=np.uint8)
    prep_basis, prep_bit = a_basis.copy(), a_bit.copy()
    eve_bit = np.full(pulses, 2, dtype=np.uint8)
    if intercept_fraction > 0.0:
        hit = (rng.random(pulses) < intercept_fraction) & (photons > 0)
        e_basis = rng.integers(0, 2, size=pulses, dtype=np.uint8)
        e_bit = np.where(e_basis == a_basis, a_bit, rng.integers(0, 2, size=pulses)).astype(
            np.uint8
        )
        prep_basis = np.where(hit, e_basis, prep_basis)
        prep_bit = np.where(hit, e_bit, prep_bit)
        photons = np.where(hit, 1, photons)
        eve_bit = np.where(hit, e_bit, eve_bit).astype(np.uint8)
    eta = hw.fibre(distance_km).transmittance * hw.eta_bob
    arrived = rng.binomial(photons, eta)
    p_right = np.where(prep_basis == b_basis, 1.0 - hw.optical_error, 0.5)
    right = rng.binomial(arrived, p_right)
    wrong = arrived - right
    photon_at = np.zeros((pulses, 2), dtype=bool)
    rows = np.arange(pulses)
    photon_at[rows, prep_bit] = right > 0
    photon_at[rows, 1 - prep_bit] = wrong > 0
    dark_at = (rng.random((pulses, 2)) < hw.detector.dark_count_prob) & ~photon_at
    state = np.where(photon_at, 1, np.where(dark_at, 2, 0)).astype(np.uint8)
    rate = src.rate_hz
    dead = math.ceil(hw.detector.dead_time_s * rate - 1e-9) if dead_time else 0
    ap_prob = hw.detector.afterpulse_prob if afterpulses else 0.0
    state = _timing(state, dead, ap_prob, max(1.0, afterpulse_delay_s * rate), rng)
    fired = state > 0
    slots = np.flatnonzero(fired.any(axis=1))
    double = fired[slots, 0] & fired[slots, 1]
    b_bit = fired[slots, 1].astype(np.uint8)
    b_bit[double] = rng.integers(0, 2, size=int(double.sum()), dtype=np.uint8)
    n_classes = 3 if src.kind == "laser" else 1
    alice = AliceRecords(
        pulse_index=slots.astype(np.int64),
        bit=a_bit[slots],
        basis=a_basis[slots],
        intensity=cls[slots].astype(np.uint8),
        pulses_sent=pulses,
        pulses_per_class=np.bincount(cls, minlength=n_classes).astype(np.int64),
    )
    bob = BobRecords(
        pulse_index=slots.astype(np.int64),
        bit=b_bit,
        basis=b_basis[slots],
        double_click=double,
        click_pattern=fired[slots],
    )
    return SimulationBlock(
        alice=alice,
        bob=bob,
        first_pulse=0,
        pulses=pulses,
        device_time_s=pulses / rate,
        diagnostics={"double_clicks": float(double.sum())},
        truth={"cause": state[slots], "eve_bit": eve_bit[slots]},
    )


def _timing(state: np.ndarray, dead: int, ap_prob: float, ap_gates: float, rng) -> np.ndarray:
    """Dead time and afterpulses, pulse by pulse over the slots where anything happens."""
    out = state.copy()
    last = [-(10**18), -(10**18)]
    pending: list[int | None] = [None, None]
    candidates = set(np.flatnonzero(state.any(axis=1)).tolist())
    queue = sorted(candidates)
    i = 0
    n = state.shape[0]
    while True:
        t_ev = queue[i] if i < len(queue) else n
        t_ap = min((p for p in pending if p is not None), default=n)
        t = min(t_ev, t_ap)
        if t >= n:
            break
        if t == t_ev:
            i += 1
        for d in (0, 1):
            if pending[d] == t:
                pending[d] = None
                if out[t, d] == 0:
                    out[t, d] = 3
            if out[t, d] == 0:
                continue
            if t - last[d] <= dead:
                out[t, d] = 0
                continue
            last[d] = t
            pending[d] = None
            if ap_prob > 0 and rng.random() < ap_prob:
                pending[d] = t + dead + 1 + int(rng.geometric(1.0 / ap_gates) - 1)
    return out
