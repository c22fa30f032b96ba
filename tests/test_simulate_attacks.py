"""Attacks leave the fingerprints the literature predicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qkdnet.keyrate.observables import poisson_observables
from qkdnet.physics import get_preset
from qkdnet.simulate import run
from qkdnet.simulate.statistics import LinkStatistics

HW = get_preset("decoy-1550-spad")


def _stats(km: float, pulses: int, attack: str | None, seed: int = 7) -> LinkStatistics:
    blocks = run("decoy-bb84", km, pulses, np.random.default_rng(seed), attack=attack,
                 basis_prob_x=0.5, dead_time=False, afterpulses=False)  # fmt: skip
    return LinkStatistics.of(blocks)


def _sigma(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


def test_full_intercept_resend_gives_quarter_qber() -> None:
    """Full intercept-resend on BB84: QBER = 25 % (Bennett et al. 1992; Gisin et al., Rev. Mod.
    Phys. 74, 145 (2002), §VI.A), plus the honest optical error e_d: 1/4 + e_d/2 (Eve's
    resent photon meets the same optics). Tolerance: 5σ statistical."""
    s = _stats(25.0, 3 * 10**8, "intercept-resend")
    expected = 0.25 + HW.optical_error / 2
    assert abs(s.qber(None) - expected) < 5 * _sigma(expected, s.sifted_bits) + 1e-3
    assert s.qber(None) == pytest.approx(0.25, abs=0.01)
    # Eve guesses her basis right half the time: she knows 75 % of the sifted bits
    assert s.eve_information() == pytest.approx(0.75, abs=0.01)


@pytest.mark.parametrize("fraction", [0.2, 0.6])
def test_partial_intercept_resend_scales_qber(fraction: float) -> None:
    s = _stats(25.0, 3 * 10**8, f"intercept-resend:{fraction}")
    eta = HW.fibre(25.0).transmittance * HW.eta_bob
    y0 = HW.background_yield
    honest = poisson_observables(0.5, eta, y0, HW.optical_error)
    # Eve resends one photon whenever the pulse was not empty: gain 1 − (1 − Y0)(e^{−μ} +
    # (1 − e^{−μ})(1 − η)); her share of the detections is f·Q_I / (f·Q_I + (1 − f)·Q_H).
    q_eve = 1 - (1 - y0) * (math.exp(-0.5) + (1 - math.exp(-0.5)) * (1 - eta))
    share = fraction * q_eve / (fraction * q_eve + (1 - fraction) * honest.gain)
    # the intercepted share errs 1/4 + e_d/2 (Eve's photon meets the same optics)
    expected = share * (0.25 + HW.optical_error / 2) + (1 - share) * honest.qber
    assert abs(s.qber_per_class()[0] - expected) < 5 * _sigma(expected, int(s.sifted[0].sum()))


def test_pns_keeps_qber_but_breaks_decoy_statistics() -> None:
    """PNS (Brassard et al. 2000): signal gain and QBER look honest, but the decoy gain falls
    short of the Poisson prediction and the decoy single-photon yield bound (Ma et al. 2005,
    eq. 34) collapses (Hwang 2003; Lo, Ma, Chen 2005)."""
    km, pulses = 25.0, 4 * 10**8
    honest = _stats(km, pulses, None, seed=1)
    pns = _stats(km, pulses, "pns", seed=2)
    eta = HW.fibre(km).transmittance * HW.eta_bob
    mu, nu, _ = HW.source.intensities
    q_mu = poisson_observables(mu, eta, HW.background_yield, HW.optical_error).gain
    q_nu = poisson_observables(nu, eta, HW.background_yield, HW.optical_error).gain
    n_mu, n_nu = int(pns.pulses_per_class[0]), int(pns.pulses_per_class[1])
    assert abs(pns.gains()[0] - q_mu) < 5 * _sigma(q_mu, n_mu)  # Eve matched the signal gain
    assert (q_nu - pns.gains()[1]) > 20 * _sigma(q_nu, n_nu)  # decoy gain is far too low
    assert abs(pns.qber(None) - honest.qber(None)) < 0.002  # no disturbance

    def y1_lower(s: LinkStatistics) -> float:
        qm, qn, y0 = s.gains()
        return mu / (mu * nu - nu**2) * (qn * math.exp(nu) - qm * math.exp(mu) * nu**2 / mu**2
                                         - (mu**2 - nu**2) / mu**2 * y0)  # fmt: skip

    assert y1_lower(honest) > 0.85 * eta
    assert y1_lower(pns) < 0.6 * y1_lower(honest)
    assert pns.eve_information() > 0.7  # Eve holds a copy of every multi-photon detection


def test_detector_blinding_is_invisible_in_qber_but_kills_dark_counts() -> None:
    """Blinding (Lydersen et al., Nat. Photon. 4, 686 (2010)): Eve knows every sifted bit, the
    QBER drops to 0 (below the honest optical-error floor), no dark counts or double clicks, and
    the vacuum decoy never clicks — the decoy vacuum yield Y0 is the fingerprint."""
    s = _stats(25.0, 2 * 10**8, "blinding")
    honest = _stats(25.0, 2 * 10**8, None, seed=3)
    assert s.qber(None) == 0.0 and honest.qber(None) > 0.008
    assert s.eve_information() == 1.0
    assert s.gains()[2] == 0.0 and honest.gains()[2] > 0
    assert s.diagnostics["dark_count_clicks"] == 0 and s.diagnostics["double_clicks"] == 0
    # Eve tuned her triggers so the signal gain looks honest
    assert s.gains()[0] == pytest.approx(honest.gains()[0], rel=0.02)


def test_unknown_attack_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown attack"):
        next(run("decoy-bb84", 10.0, 1000, np.random.default_rng(0), attack="teleport"))
    with pytest.raises(ValueError, match="between 0 and 1"):
        next(run("decoy-bb84", 10.0, 1000, np.random.default_rng(0), attack="intercept-resend:2"))
    with pytest.raises(ValueError, match="bbm92"):
        next(run("bbm92", 10.0, 1000, np.random.default_rng(0), attack="pns"))
