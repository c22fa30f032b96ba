"""BBM92 with an entangled-pair source: coincidence model after Ma, Fung, Lo, Phys. Rev. A 76,
012307 (2007)."""

from __future__ import annotations

import pytest

from qkdnet.keyrate import key_rate
from qkdnet.keyrate.bbm92 import bbm92_rate, coincidences
from qkdnet.physics import EntangledPairSource


@pytest.mark.parametrize("visibility", [0.80, 0.90, 0.97])
def test_qber_is_one_minus_visibility_over_two_without_detector_noise(visibility: float) -> None:
    """references/physics.md: intrinsic QBER (1 − V)/2 before detector noise. Exact with single
    pairs (g2 = 0); within 1e-3 with g2(0) = 0.01 at 2 % pair probability (multi-pairs)."""
    ideal = EntangledPairSource(pair_prob=0.02, visibility=visibility, g2_zero=0.0)
    r = bbm92_rate(ideal, 0.1, 0.8, 0.0, 0.0, 1.1)
    assert r.qber == pytest.approx((1 - visibility) / 2, abs=1e-12)
    real = EntangledPairSource(pair_prob=0.02, visibility=visibility, g2_zero=0.01)
    assert bbm92_rate(real, 0.1, 0.8, 0.0, 0.0, 1.1).qber == pytest.approx(
        (1 - visibility) / 2, abs=1e-3
    )


def test_coincidence_of_single_pairs_is_product_of_arm_transmittances() -> None:
    q, e = coincidences([0.9, 0.1], 0.3, 0.2, 0.0, 0.0, 0.01)
    assert q == pytest.approx(0.1 * 0.3 * 0.2)
    assert e == pytest.approx(0.01)


def test_dark_counts_and_multi_pairs_raise_the_qber() -> None:
    src = EntangledPairSource(pair_prob=0.05, visibility=0.95, source_kind="spdc")
    quiet = bbm92_rate(src, 0.01, 0.8, 0.0, 0.0, 1.1)
    noisy = bbm92_rate(src, 0.01, 0.8, 1e-5, 0.0, 1.1)
    assert noisy.qber > quiet.qber > 0.025  # thermal multi-pairs add accidentals


def test_source_position_changes_arms_not_the_noiseless_coincidence_rate() -> None:
    src = EntangledPairSource(pair_prob=0.02, visibility=0.9, g2_zero=0.0)
    middle = bbm92_rate(src, 0.01, 0.8, 0.0, 0.0, 1.1, "middle")
    alice = bbm92_rate(src, 0.01, 0.8, 0.0, 0.0, 1.1, "alice")
    assert middle.eta_alice == pytest.approx(middle.eta_bob)
    assert alice.eta_alice == pytest.approx(0.8)
    assert middle.coincidence_prob == pytest.approx(alice.coincidence_prob, rel=1e-9)


def test_key_rate_bbm92_default_preset_and_cutoff_by_visibility() -> None:
    r = key_rate("bbm92", 25.0)
    assert r.params["preset"] == "qd-entangled-1550"
    assert 0.0 < r.key_rate_per_pulse < r.plob_per_pulse
    # BBM92 needs E below ~10 % with f = 1.1: V = 0.75 gives E ≥ 12.5 %, no key.
    bad = EntangledPairSource(pair_prob=0.02, visibility=0.75, g2_zero=0.0)
    assert bbm92_rate(bad, 0.3, 0.8, 0.0, 0.0, 1.1).rate_per_pulse == 0.0
