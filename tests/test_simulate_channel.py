"""Polarisation drift raises the QBER over time; the compensation loop holds it down; time-bin
visibility sets the phase-basis error."""

from __future__ import annotations

import numpy as np
import pytest

from qkdnet.physics import get_preset
from qkdnet.simulate import run
from qkdnet.simulate.channel import PolarisationDrift
from qkdnet.simulate.statistics import LinkStatistics
from qkdnet.simulate.timeseries import qber_time_series

OPTS = {"dead_time": False, "afterpulses": False, "basis_prob_x": 0.5}


def test_drift_walk_spreads_like_a_random_walk() -> None:
    """Isotropic random walk on SO(3): E[R_11] = exp(−σ²t) for small steps (the S1 axis
    diffuses on the sphere with E[cos θ] = e^{−σ²t}, Perrin 1934 rotational diffusion, with
    diffusion constant σ²/2 per axis)."""
    sigma, seg, steps = 1.0, 1e-3, 300
    rng = np.random.default_rng(0)
    r11 = []
    for _ in range(400):
        walk = PolarisationDrift(sigma, seg)
        r11.append(walk.rotations(steps, 1, rng)[0, 0, 0])
    t = steps * seg
    assert np.mean(r11) == pytest.approx(np.exp(-(sigma**2) * t), abs=0.05)


def test_qber_series_shows_drift_and_compensation() -> None:
    kw = {"window_s": 0.05, "drift_rad_per_sqrt_s": 2.0, **OPTS}
    drifting = qber_time_series("decoy-bb84", 25.0, 0.5, np.random.default_rng(3), **kw)
    held = qber_time_series("decoy-bb84", 25.0, 0.5, np.random.default_rng(3),
                            compensation_fraction=0.02, **kw)  # fmt: skip
    assert drifting.qber.shape == (10,) and drifting.t_s[1] == pytest.approx(0.05)
    floor = get_preset("decoy-1550-spad").optical_error
    # starts at the optical-error floor, then wanders far above it
    assert drifting.qber[0] < 0.05
    assert drifting.qber[5:].mean() > 0.1
    # with the loop the QBER stays within a few % of the floor all the time
    assert held.qber.max() < floor + 0.05
    assert held.qber[5:].mean() < drifting.qber[5:].mean() / 3


def test_compensation_spends_its_share_of_pulses() -> None:
    blocks = list(run("decoy-bb84", 10.0, 10**8, np.random.default_rng(1),
                      drift_rad_per_sqrt_s=1.0, compensation_fraction=0.05, **OPTS))  # fmt: skip
    sent = sum(int(b.alice.pulses_per_class.sum()) for b in blocks)
    assert sent / 1e8 == pytest.approx(0.95, abs=5e-4)


def test_time_bin_visibility_sets_phase_basis_error() -> None:
    """Phase basis (Z here) error = e_d ⊕ (1 − V)/2: (1 − (1 − 2e_d)V)/2; time basis only e_d."""
    hw = get_preset("decoy-1550-spad")
    blocks = run("decoy-bb84", 5.0, 5 * 10**7, np.random.default_rng(2), encoding="time-bin",
                 visibility=0.9, **OPTS)  # fmt: skip
    s = LinkStatistics.of(blocks)
    expected_z = (1 - (1 - 2 * hw.optical_error) * 0.9) / 2
    assert s.qber(1) == pytest.approx(expected_z, rel=0.03)
    assert s.qber(0) == pytest.approx(hw.optical_error, rel=0.05)
