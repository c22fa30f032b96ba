"""The event sampler reproduces the closed-form channel model of ``qkdnet.keyrate.observables``.

Model: Ma, Qi, Zhao, Lo, Phys. Rev. A 72, 012326 (2005), eqs. 2-7 (gain Q_k = 1 − (1 − Y0)
e^{−ημ_k}, error E_k Q_k = e0 Y0 + e_d (Q_k − Y0)). The closed form neglects dead time and
afterpulses, so these runs switch them off. Tolerance: 5 standard deviations of the binomial
statistics (the closed form's O(η²μ²e_d) double-click approximation stays well inside that at
the chosen pulse counts).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from qkdnet.keyrate.bbm92 import arm_transmittances, coincidences
from qkdnet.keyrate.observables import observables, poisson_observables
from qkdnet.physics import get_preset
from qkdnet.simulate import run
from qkdnet.simulate.statistics import LinkStatistics

Z = 5.0


def _ideal(protocol: str, km: float, pulses: int, seed: int, **kw) -> LinkStatistics:
    blocks = run(protocol, km, pulses, np.random.default_rng(seed), dead_time=False,
                 afterpulses=False, **kw)  # fmt: skip
    return LinkStatistics.of(blocks, n_classes=3 if protocol == "decoy-bb84" else 1)


def _close(observed: float, expected: float, trials: int) -> bool:
    sigma = math.sqrt(max(expected * (1.0 - expected), 1e-300) / trials)
    return abs(observed - expected) <= Z * sigma


@pytest.mark.parametrize(("km", "pulses"), [(5.0, 3 * 10**7), (25.0, 10**8), (50.0, 2 * 10**8)])
def test_decoy_gains_and_qber_per_intensity_match_closed_form(km: float, pulses: int) -> None:
    hw = get_preset("decoy-1550-spad")
    stats = _ideal("decoy-bb84", km, pulses, seed=11)
    eta = hw.fibre(km).transmittance * hw.eta_bob
    sifted = stats.sifted.sum(axis=1)
    for k, mu in enumerate(hw.source.intensities):
        model = poisson_observables(mu, eta, hw.background_yield, hw.optical_error)
        n_k = int(stats.pulses_per_class[k])
        assert _close(stats.gains()[k], model.gain, n_k), (k, stats.gains()[k], model.gain)
        assert _close(stats.qber_per_class()[k], model.qber, int(sifted[k])), (
            k,
            stats.qber_per_class()[k],
            model.qber,
        )
    # pulses per class follow the intensity probabilities (multinomial)
    for k, p in enumerate(hw.source.intensity_probs):
        assert _close(stats.pulses_per_class[k] / stats.pulses, p, stats.pulses)


@pytest.mark.parametrize("km", [5.0, 25.0, 50.0])
def test_single_photon_source_matches_photon_number_sum(km: float) -> None:
    hw = get_preset("qd-sps-1550")
    stats = _ideal("sps-bb84", km, 2 * 10**7, seed=5)
    eta = hw.fibre(km).transmittance * hw.eta_bob
    model = observables(hw.source.photon_number_probs(), eta, hw.background_yield, hw.optical_error)
    assert _close(stats.gains()[0], model.gain, stats.pulses)
    assert _close(stats.qber(None), model.qber, stats.sifted_bits)


def test_decoy_yields_per_photon_number_via_vacuum_and_decoy_estimate() -> None:
    """Y1 lower bound of Ma et al. 2005, eq. 34, from simulated gains ≈ η (the true Y1)."""
    hw = get_preset("decoy-1550-spad")
    stats = _ideal("decoy-bb84", 25.0, 4 * 10**8, seed=3)
    mu, nu, _ = hw.source.intensities
    q_mu, q_nu, y0 = stats.gains()
    y1_lower = (
        mu
        / (mu * nu - nu**2)
        * (q_nu * math.exp(nu) - q_mu * math.exp(mu) * nu**2 / mu**2 - (mu**2 - nu**2) / mu**2 * y0)
    )
    eta = hw.fibre(25.0).transmittance * hw.eta_bob
    y1_true = hw.background_yield + eta - hw.background_yield * eta
    # the bound is tight to a few % with a weak decoy; statistical error ~3 % here
    assert 0.85 * y1_true < y1_lower <= 1.1 * y1_true


@pytest.mark.parametrize(("km", "position"), [(5.0, "middle"), (25.0, "middle"), (50.0, "alice")])
def test_bbm92_matches_keyrate_coincidence_model(km: float, position: str) -> None:
    """Coincidence gain and QBER against ``keyrate.bbm92`` (Ma, Fung, Lo, Phys. Rev. A 76,
    012307 (2007), eqs. 8-11): E → (1 − V)/2 ⊕ e_d, the pairs' intrinsic error (Bennett,
    Brassard, Mermin 1992). Tolerance 5σ."""
    hw = get_preset("qd-entangled-1550")
    stats = _ideal("bbm92", km, 10**8, seed=9, source_position=position)
    eta_a, eta_b = arm_transmittances(hw.fibre(km).transmittance, hw.eta_bob, position)
    e_v = hw.source.intrinsic_qber
    pair_error = e_v + hw.optical_error - 2 * e_v * hw.optical_error
    y0 = hw.background_yield
    q, e = coincidences(hw.source.pair_number_probs(), eta_a, eta_b, y0, y0, pair_error)
    assert _close(stats.gains()[0], q, stats.pulses), (stats.gains()[0], q)
    assert _close(stats.qber(None), e, stats.sifted_bits), (stats.qber(None), e)
    assert e == pytest.approx(pair_error, abs=2e-3)
