"""Asymptotic decoy-state BB84 against Ma, Qi, Zhao, Lo, Phys. Rev. A 72, 012326 (2005) with the
Gobby-Yuan-Shields parameters (preset gys-2004; references/physics.md)."""

from __future__ import annotations

import math

import pytest

from qkdnet.keyrate import key_rate
from qkdnet.keyrate.decoy import decoy_rate, decoy_rate_at
from qkdnet.keyrate.entropy import binary_entropy
from qkdnet.keyrate.optimise import cutoff_distance
from qkdnet.physics import get_preset

GYS = get_preset("gys-2004")
Y0 = 1.7e-6
E_D = 0.033
F_EC = 1.22


def _eta(length_km: float) -> float:
    return 0.045 * 10 ** (-0.21 * length_km / 10)


def _ma2005_by_hand(length_km: float, mu: float) -> float:
    """Ma 2005 eq. 1 with the infinite-decoy Y1, e1, written out as in references/physics.md."""
    eta = _eta(length_km)
    q = Y0 + 1 - math.exp(-eta * mu)
    e = (0.5 * Y0 + E_D * (1 - math.exp(-eta * mu))) / q
    y1 = Y0 + eta - Y0 * eta
    e1 = (0.5 * Y0 + E_D * eta) / y1
    q1 = y1 * mu * math.exp(-mu)
    return 0.5 * (-q * F_EC * binary_entropy(e) + q1 * (1 - binary_entropy(e1)))


def test_preset_matches_ma2005_table() -> None:
    assert GYS.eta_bob == pytest.approx(0.045)
    assert GYS.background_yield == pytest.approx(Y0, rel=1e-6)
    assert (GYS.optical_error, GYS.attenuation_db_per_km, GYS.ec_efficiency) == (0.033, 0.21, 1.22)


def test_zero_km_checkpoint_mu_048() -> None:
    """references/physics.md: at 0 km with μ = 0.48 the hand formula gives R ≈ 2.5e-3 per pulse
    (2.557e-3 unrounded); the model must match the hand value within 2 %."""
    hand = _ma2005_by_hand(0.0, 0.48)
    assert hand == pytest.approx(2.5e-3, rel=0.03)  # the quoted, rounded checkpoint
    r = key_rate("decoy-bb84", 0.0, "gys-2004", mu=0.48, decoy_method="infinite")
    assert r.key_rate_per_pulse == pytest.approx(hand, rel=0.02)


@pytest.mark.parametrize("length_km", [0.0, 50.0, 100.0, 130.0])
def test_rate_at_several_distances_matches_formula(length_km: float) -> None:
    """The model reproduces Ma 2005 eq. 1 (infinite decoy) within 1 % at 0-130 km (our channel
    model keeps the O(Y0·η) terms the hand formula drops)."""
    got = decoy_rate_at(0.48, 0.05, _eta(length_km), Y0, E_D, F_EC, "infinite").rate_per_pulse
    assert got == pytest.approx(_ma2005_by_hand(length_km, 0.48), rel=0.01)


def test_optimal_mu_at_short_distance_is_about_049() -> None:
    """Ma 2005: optimal μ ≈ 0.49 at short distance (tolerance ±0.02)."""
    r = decoy_rate(_eta(1.0), Y0, E_D, F_EC, method="infinite")
    assert r.mu == pytest.approx(0.49, abs=0.02)


def test_maximum_distance_infinite_decoy_is_about_142_km() -> None:
    """Ma 2005: the infinite-decoy key vanishes at about 142 km (tolerance ±3 km)."""
    d = cutoff_distance(lambda L: decoy_rate(_eta(L), Y0, E_D, F_EC, method="infinite").raw_rate)
    assert d == pytest.approx(142.0, abs=3.0)


def test_vacuum_plus_weak_decoy_loses_only_a_few_km() -> None:
    """Ma 2005: vacuum + weak decoy (ν = 0.05) comes within a few km of the infinite-decoy
    distance; we require a loss between 0 and 5 km."""
    infinite = cutoff_distance(
        lambda L: decoy_rate(_eta(L), Y0, E_D, F_EC, method="infinite").raw_rate
    )
    weak = cutoff_distance(
        lambda L: decoy_rate(_eta(L), Y0, E_D, F_EC, nu=0.05, method="vacuum-weak").raw_rate
    )
    assert 0.0 < infinite - weak < 5.0


def test_weak_decoy_bounds_are_conservative() -> None:
    """Y1^L ≤ Y1 and e1^U ≥ e1 (Ma 2005 eqs. 34-35 are bounds on the true values)."""
    eta = _eta(50.0)
    weak = decoy_rate_at(0.48, 0.1, eta, Y0, E_D, F_EC, "vacuum-weak")
    exact = decoy_rate_at(0.48, 0.1, eta, Y0, E_D, F_EC, "infinite")
    assert weak.y1 <= exact.y1
    assert weak.e1 >= exact.e1
    assert weak.rate_per_pulse < exact.rate_per_pulse


def test_rate_falls_with_distance_and_stays_below_plob() -> None:
    rates = [key_rate("decoy-bb84", d, "gys-2004") for d in (0.0, 20.0, 60.0, 120.0)]
    values = [r.key_rate_per_pulse for r in rates]
    assert values == sorted(values, reverse=True)
    assert all(r.key_rate_per_pulse < r.plob_per_pulse for r in rates)
    assert key_rate("decoy-bb84", 160.0, "gys-2004").key_rate_per_pulse == 0.0
