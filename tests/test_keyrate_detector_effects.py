"""Dead time and afterpulsing in the closed-form model agree with the event-level simulator."""

from __future__ import annotations

import numpy as np
import pytest

from qkdnet import simulate
from qkdnet.keyrate import key_rate
from qkdnet.keyrate.detector_effects import effective_channel
from qkdnet.keyrate.observables import poisson_observables
from qkdnet.physics import get_preset


def test_ideal_detectors_leave_the_channel_unchanged() -> None:
    gys = get_preset("gys-2004")  # no dead time, no afterpulsing
    eff = effective_channel(0.01, 1.7e-6, gys, 0.5)
    assert eff.availability == 1.0 and eff.eta == 0.01 and eff.background_yield == 1.7e-6


def test_dead_time_lowers_the_rate_of_a_saturated_receiver() -> None:
    preset = get_preset("decoy-1550-spad")
    eff = effective_channel(0.3162 * preset.eta_bob, preset.background_yield, preset, 0.5)
    assert 0.85 < eff.availability < 0.99
    assert key_rate("decoy-bb84", 25.0).params["detector_availability"] == pytest.approx(
        eff.availability, rel=0.5
    )


def test_corrected_signal_gain_matches_simulation_with_dead_time_and_afterpulses() -> None:
    """Signal-class gain of the simulator (dead time + afterpulses on) within 2 % of the model."""
    preset = get_preset("decoy-1550-spad")
    mu = preset.source.mu
    eta = preset.fibre(25.0).transmittance * preset.eta_bob
    mean_photons = float(np.dot(preset.source.intensity_probs, preset.source.intensities))
    eff = effective_channel(eta, preset.background_yield, preset, mean_photons)
    expected = poisson_observables(mu, eff.eta, eff.background_yield, preset.optical_error).gain
    rng = np.random.default_rng(7)
    clicks = sent = 0
    for block in simulate.run("decoy-bb84", 25.0, 200_000_000, rng, preset=preset):
        signal = block.alice.intensity == 0
        clicks += int(signal.sum())
        sent += int(block.alice.pulses_per_class[0])
    assert clicks / sent == pytest.approx(expected, rel=0.02)


def test_corrected_model_matches_simulated_gains_and_qber_of_every_class() -> None:
    """Per-class gains and QBER (dead time + afterpulses on) within 10 % of the simulator; the
    afterpulse survival factor is what brings the vacuum-class yield into agreement."""
    preset = get_preset("decoy-1550-spad")
    eta = preset.fibre(25.0).transmittance * preset.eta_bob
    mean_photons = float(np.dot(preset.source.intensity_probs, preset.source.intensities))
    eff = effective_channel(eta, preset.background_yield, preset, mean_photons)
    rng = np.random.default_rng(11)
    clicks = np.zeros(3)
    errors = np.zeros(3)
    sent = np.zeros(3)
    for block in simulate.run("decoy-bb84", 25.0, 400_000_000, rng, preset=preset):
        a, b = block.alice, block.bob
        same = a.basis == b.basis
        for k in range(3):
            cls = a.intensity == k
            clicks[k] += cls.sum()
            errors[k] += (
                (cls & same & (a.bit != b.bit)).sum() / max((cls & same).sum(), 1) * cls.sum()
            )
            sent[k] += block.alice.pulses_per_class[k]
    for k, mu in enumerate(preset.source.intensities):
        model = poisson_observables(mu, eff.eta, eff.background_yield, preset.optical_error)
        assert clicks[k] / sent[k] == pytest.approx(model.gain, rel=0.10)
        if k < 2:
            assert errors[k] / clicks[k] == pytest.approx(model.qber, rel=0.10)


def test_finite_size_optimum_sees_the_detectors_its_own_settings_load() -> None:
    """The finite-size optimiser picks intensities and probabilities; dead time and afterpulses
    depend on them, so the reported channel is the one at the chosen mix (self-consistent), not
    at the preset's default mix."""
    from qkdnet.keyrate.rate import key_rate

    preset = get_preset("decoy-1550-spad")
    r = key_rate("decoy-bb84", 25.0, preset, block_size=1e8)
    mix = float(np.dot(r.params["probs"], r.params["intensities"]))
    default_mix = float(np.dot(preset.source.intensity_probs, preset.source.intensities))
    assert abs(mix - default_mix) > 0.02  # the optimum moved: the distinction matters here
    eta = preset.fibre(25.0).transmittance * preset.eta_bob
    eff = effective_channel(eta, preset.background_yield, preset, mix)
    assert r.params["background_yield"] == pytest.approx(eff.background_yield, rel=1e-9)
    assert r.params["detector_availability"] == pytest.approx(eff.availability, rel=1e-9)
