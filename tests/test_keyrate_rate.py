"""The ``key_rate`` entry point: presets, overrides, result fields and range errors."""

from __future__ import annotations

import pytest

from qkdnet.keyrate import DEFAULT_PRESETS, PROTOCOLS, KeyRateResult, key_rate
from qkdnet.physics.validation import PhysicsValueError


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_protocol_gives_a_rate_below_plob(protocol: str) -> None:
    r = key_rate(protocol, 25.0)
    assert isinstance(r, KeyRateResult)
    assert r.params["preset"] == DEFAULT_PRESETS[protocol]
    assert r.transmittance == pytest.approx(10 ** (-0.2 * 25 / 10))
    assert 0.0 < r.key_rate_per_pulse < r.plob_per_pulse
    assert r.key_rate_bps == pytest.approx(r.key_rate_per_pulse * r.params["source_rate_hz"])
    assert 0.0 < r.qber < 0.11


def test_extra_loss_and_attenuation_override_lower_the_rate() -> None:
    base = key_rate("decoy-bb84", 25.0).key_rate_per_pulse
    assert key_rate("decoy-bb84", 25.0, extra_loss_db=3.0).key_rate_per_pulse < base
    r = key_rate("decoy-bb84", 25.0, attenuation_db_per_km=0.3)
    assert r.key_rate_per_pulse < base
    assert r.params["attenuation_db_per_km"] == 0.3


def test_fixed_intensities_are_used_and_optimised_ones_are_no_worse() -> None:
    fixed = key_rate("decoy-bb84", 25.0, mu=0.3, nu=0.05)
    best = key_rate("decoy-bb84", 25.0, nu=0.05)
    assert (fixed.params["mu"], fixed.params["nu"]) == (0.3, 0.05)
    assert best.key_rate_per_pulse >= fixed.key_rate_per_pulse
    not_optimised = key_rate("decoy-bb84", 25.0, optimise=False)
    assert not_optimised.params["mu"] == 0.5  # the preset's signal intensity


def test_detector_efficiency_override_changes_the_rate() -> None:
    low = key_rate("decoy-bb84", 25.0, detector_efficiency=0.05)
    high = key_rate("decoy-bb84", 25.0, detector_efficiency=0.5)
    assert low.key_rate_per_pulse < high.key_rate_per_pulse


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"distance_km": -5.0}, "length_km"),
        ({"detector_efficiency": 1.5}, "efficiency"),
        ({"block_size": 0}, "block_size"),
        ({"eps_sec": 0.0}, "eps_sec"),
        ({"preset": "gys-2004", "protocol": "bbm92"}, "preset"),
    ],
)
def test_range_errors_name_the_parameter(kwargs: dict, field: str) -> None:
    args = {"protocol": "decoy-bb84", "distance_km": 10.0} | kwargs
    with pytest.raises(PhysicsValueError) as info:
        key_rate(args.pop("protocol"), args.pop("distance_km"), **args)
    assert info.value.field == field


def test_unknown_protocol_and_preset() -> None:
    with pytest.raises(ValueError, match="choose one of"):
        key_rate("b92", 10.0)
    with pytest.raises(KeyError, match="unknown hardware preset"):
        key_rate("decoy-bb84", 10.0, "nope")
