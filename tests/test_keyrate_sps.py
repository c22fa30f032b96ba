"""BB84 with a quantum-dot single-photon source (GLLP with p_multi from g2(0)) and the trade-offs
against lasers (references/physics.md, "Trade-offs the models must show")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qkdnet.keyrate import key_rate
from qkdnet.keyrate.decoy import decoy_rate
from qkdnet.keyrate.gllp import laser_no_decoy_rate
from qkdnet.keyrate.sps import sps_rate
from qkdnet.physics import SinglePhotonSource, get_preset

QD = get_preset("qd-sps-1550")  # B = 0.10 at the fibre, g2(0) = 0.005, 80 MHz, SNSPDs
DECOY_GHZ = get_preset("decoy-1550-snspd")  # 1 GHz decoy BB84 with the same SNSPDs


def test_reduces_to_ideal_bb84() -> None:
    """g2(0) = 0, B = 1, no dark counts, f = 1: R = ½η(1 − 2h(e)); η = 0.1, e = 2 % gives
    0.03586 per pulse (references/physics.md, exact; tolerance 1e-5)."""
    r = sps_rate(SinglePhotonSource(brightness=1.0, g2_zero=0.0), 0.1, 0.0, 0.02, 1.0)
    assert r.qber == pytest.approx(0.02, abs=1e-12)
    assert r.rate_per_pulse == pytest.approx(0.03586, abs=1e-5)


def test_lower_g2_gives_higher_rate_at_equal_detection_rate() -> None:
    eta = QD.eta_bob * QD.fibre(40.0).transmittance
    rates = [
        sps_rate(SinglePhotonSource(brightness=0.5, g2_zero=g), eta, 2e-7, 0.01, 1.1)
        for g in (0.0, 0.02, 0.05, 0.1)
    ]
    values = [r.rate_per_pulse for r in rates]
    assert values == sorted(values, reverse=True) and values[0] > values[-1]
    # the multi-photon part barely changes the gain, so this is a secret-fraction effect
    assert rates[0].gain == pytest.approx(rates[-1].gain, rel=0.03)


def _channel(length_km: float) -> float:
    return QD.eta_bob * QD.fibre(length_km).transmittance


@pytest.mark.parametrize("length_km", [30.0, 50.0, 80.0, 100.0])
def test_quantum_dot_beats_laser_without_decoys_at_metropolitan_distances(
    length_km: float,
) -> None:
    """Same receiver, channel and clock (bits per pulse): the qd-sps-1550 source (B = 0.10,
    g2(0) = 0.005) beats a laser without decoys (GLLP, μ optimised) from 30 to 100 km. (With
    this dim source the laser still wins below ~20 km, where its μ ≈ 0.3-0.7 outshines B = 0.1.)"""
    eta, y0 = _channel(length_km), QD.background_yield
    qd = sps_rate(QD.source, eta, y0, QD.optical_error, QD.ec_efficiency).rate_per_pulse
    laser = laser_no_decoy_rate(eta, y0, QD.optical_error, QD.ec_efficiency).rate_per_pulse
    assert qd > laser > 0.0


def test_quantum_dot_rate_falls_like_eta_laser_without_decoys_like_eta_squared() -> None:
    """Log-log slope of rate vs η between 40 and 80 km: ≈ 1 for the QD, ≈ 2 for the laser
    without decoys (tolerance ±0.25)."""
    y0 = QD.background_yield
    etas = [_channel(40.0), _channel(80.0)]
    qd = [sps_rate(QD.source, e, y0, 0.01, 1.1).rate_per_pulse for e in etas]
    laser = [laser_no_decoy_rate(e, y0, 0.01, 1.1).rate_per_pulse for e in etas]
    d_log_eta = math.log(etas[0] / etas[1])
    assert math.log(qd[0] / qd[1]) / d_log_eta == pytest.approx(1.0, abs=0.25)
    assert math.log(laser[0] / laser[1]) / d_log_eta == pytest.approx(2.0, abs=0.25)


def test_dim_quantum_dot_loses_to_ghz_decoy_bb84_at_every_metropolitan_distance() -> None:
    """A quantum dot with 3 % brightness at the fibre, g2(0) = 0.005, 80 MHz, against decoy BB84
    with a 1 GHz laser (preset decoy-1550-snspd), same SNSPDs: decoy BB84 gives more secret
    bits per second at every distance 0-100 km (step 10 km), and more bits per pulse too."""
    dim = SinglePhotonSource(rate_hz=80e6, wavelength_nm=1550.0, brightness=0.03, g2_zero=0.005)
    for length_km in np.arange(0.0, 101.0, 10.0):
        qd = sps_rate(
            dim, _channel(length_km), QD.background_yield, QD.optical_error, QD.ec_efficiency
        )
        eta_decoy = DECOY_GHZ.eta_bob * DECOY_GHZ.fibre(length_km).transmittance
        decoy = decoy_rate(
            eta_decoy,
            DECOY_GHZ.background_yield,
            DECOY_GHZ.optical_error,
            DECOY_GHZ.ec_efficiency,
            nu=0.1,
        )
        assert decoy.rate_per_pulse * 1e9 > qd.rate_per_pulse * dim.rate_hz > 0.0
        assert decoy.rate_per_pulse > qd.rate_per_pulse


def test_key_rate_sps_uses_preset_clock() -> None:
    r = key_rate("sps-bb84", 25.0)
    assert r.params["preset"] == "qd-sps-1550"
    assert r.key_rate_bps == pytest.approx(r.key_rate_per_pulse * 80e6)
    assert 0.0 < r.key_rate_per_pulse < r.plob_per_pulse
