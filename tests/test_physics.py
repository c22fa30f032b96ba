"""Physical models: fibre transmittance, photon statistics, range checks, presets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qkdnet.keyrate.observables import observables, poisson_observables, yields
from qkdnet.physics import (
    Detector,
    EntangledPairSource,
    Fibre,
    SinglePhotonSource,
    WeakCoherentSource,
    get_preset,
    preset_names,
)
from qkdnet.physics.validation import PhysicsValueError


@pytest.mark.parametrize(("length_km", "expected"), [(25.0, 0.3162), (50.0, 0.1), (100.0, 0.01)])
def test_fibre_transmittance_matches_reference(length_km: float, expected: float) -> None:
    # eta = 10^(-alpha L / 10) at alpha = 0.2 dB/km (references/physics.md, "Channel").
    assert Fibre(length_km, 0.2).transmittance == pytest.approx(expected, rel=2e-4)


def test_fibre_extra_loss_adds_in_db() -> None:
    assert Fibre(10.0, 0.2, extra_loss_db=1.0).loss_db == pytest.approx(3.0)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_fibre_rejects_bad_length(bad: float) -> None:
    with pytest.raises(PhysicsValueError, match="length_km"):
        Fibre(bad)


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_detector_rejects_efficiency_outside_unit_interval(bad: float) -> None:
    with pytest.raises(PhysicsValueError, match="efficiency must be between 0 and 1"):
        Detector(name="x", efficiency=bad, dark_count_prob=1e-6)


def test_poisson_statistics_sum_to_one_and_have_mean_mu() -> None:
    probs = WeakCoherentSource.photon_number_probs(0.5, n_max=40)
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.dot(np.arange(41), probs) == pytest.approx(0.5, rel=1e-12)


def test_single_photon_source_multiphoton_part_from_g2() -> None:
    # P(n>=2) = g2 * B^2 / 2 (Waks et al. 2002): B = 0.2, g2 = 0.02 -> 4e-4.
    src = SinglePhotonSource(brightness=0.2, g2_zero=0.02)
    probs = src.photon_number_probs()
    assert probs[2] == pytest.approx(4e-4)
    assert probs.sum() == pytest.approx(1.0)
    assert SinglePhotonSource(brightness=0.2, g2_zero=0.0).photon_number_probs()[2] == 0.0


def test_entangled_source_intrinsic_qber_and_thermal_statistics() -> None:
    qd = EntangledPairSource(visibility=0.9)
    assert qd.intrinsic_qber == pytest.approx(0.05)  # (1 - V) / 2 (references/physics.md)
    spdc = EntangledPairSource(pair_prob=0.1, source_kind="spdc")
    probs = spdc.pair_number_probs(n_max=60)
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.dot(np.arange(61), probs) == pytest.approx(0.1, rel=1e-9)


def test_decoy_intensities_must_be_ordered() -> None:
    with pytest.raises(PhysicsValueError, match="mu > nu"):
        WeakCoherentSource(mu=0.1, nu=0.2)


def test_presets_resolve_and_unknown_preset_lists_choices() -> None:
    for name in preset_names():
        assert get_preset(name).name == name
    with pytest.raises(KeyError, match="gys-2004"):
        get_preset("nope")


def test_gys_preset_carries_ma_2005_parameters() -> None:
    gys = get_preset("gys-2004")
    assert gys.eta_bob == pytest.approx(0.045)
    assert gys.background_yield == pytest.approx(1.7e-6, rel=1e-6)
    assert gys.optical_error == 0.033 and gys.attenuation_db_per_km == 0.21
    assert gys.ec_efficiency == 1.22


def test_poisson_closed_form_equals_photon_number_sum() -> None:
    eta, y0, ed = 0.01, 1e-5, 0.02
    direct = observables(WeakCoherentSource.photon_number_probs(0.5, 40), eta, y0, ed)
    closed = poisson_observables(0.5, eta, y0, ed)
    assert direct.gain == pytest.approx(closed.gain, rel=1e-10)
    assert direct.qber == pytest.approx(closed.qber, rel=1e-10)
    assert yields(eta, y0)[0] == pytest.approx(y0)
