"""Finite-key bound of Lim, Curty, Walenta, Xu, Zbinden, Phys. Rev. A 89, 022307 (2014)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qkdnet.keyrate.entropy import binary_entropy
from qkdnet.keyrate.finite import (
    DecoyCounts,
    expected_counts,
    gamma,
    lim2014_key_length,
)

# Expected counts of 1e9 pulses, eta = 0.03, Y0 = 2e-6, e_d = 1 %, q_x = 0.9 (rounded).
COUNTS = DecoyCounts(
    intensities=(0.5, 0.1, 0.0),
    probs=(0.7, 0.2, 0.1),
    n_x=(8442647, 485595, 162),
    n_z=(104230, 5995, 2),
    m_z=(1049, 62, 1),
)
LAMBDA_EC = 799272


def _hand_bound(c: DecoyCounts, lambda_ec: float, eps_sec: float, eps_cor: float) -> dict:
    """Lim 2014 eqs. 1-5 written out independently, term by term, for the test."""
    mu = c.intensities
    p = c.probs
    eps = eps_sec / 21.0
    tau0 = sum(pk * math.exp(-k) for k, pk in zip(mu, p, strict=True))
    tau1 = sum(pk * math.exp(-k) * k for k, pk in zip(mu, p, strict=True))

    def corr(n, tot, sign):
        d = math.sqrt(tot / 2 * math.log(1 / eps))
        return [
            max(0.0, math.exp(k) / pk * (x + sign * d)) for x, k, pk in zip(n, mu, p, strict=True)
        ]

    def s01(n):
        lo, hi = corr(n, sum(n), -1), corr(n, sum(n), +1)
        s0 = max(0.0, tau0 * (mu[1] * lo[2] - mu[2] * hi[1]) / (mu[1] - mu[2]))
        s1 = (tau1 * mu[0] / (mu[0] * (mu[1] - mu[2]) - (mu[1] ** 2 - mu[2] ** 2))) * (
            lo[1] - hi[2] - (mu[1] ** 2 - mu[2] ** 2) / mu[0] ** 2 * (hi[0] - s0 / tau0)
        )
        return s0, s1

    s_x0, s_x1 = s01(c.n_x)
    _, s_z1 = s01(c.n_z)
    mp, mm = corr(c.m_z, sum(c.m_z), +1), corr(c.m_z, sum(c.m_z), -1)
    v_z1 = tau1 * (mp[1] - mm[2]) / (mu[1] - mu[2])
    b = v_z1 / s_z1
    cc, dd = s_z1, s_x1
    g = math.sqrt(
        (cc + dd)
        * (1 - b)
        * b
        / (cc * dd * math.log(2))
        * math.log2((cc + dd) / (cc * dd * (1 - b) * b) * 21**2 / eps_sec**2)
    )
    phi = b + g
    ell = (
        s_x0
        + s_x1 * (1 - binary_entropy(phi))
        - lambda_ec
        - 6 * math.log2(21 / eps_sec)
        - math.log2(2 / eps_cor)
    )
    return {"s_x0": s_x0, "s_x1": s_x1, "s_z1": s_z1, "v_z1": v_z1, "phi_x": phi, "ell": ell}


def test_key_length_matches_equations_written_out() -> None:
    """Lim 2014 eqs. 1-5: every bounded quantity agrees with an independent transcription
    to 1e-9 relative, and ℓ is its floor."""
    got = lim2014_key_length(COUNTS, LAMBDA_EC)
    ref = _hand_bound(COUNTS, LAMBDA_EC, 1e-10, 1e-15)
    for name in ("s_x0", "s_x1", "s_z1", "v_z1", "phi_x"):
        assert getattr(got, name) == pytest.approx(ref[name], rel=1e-9, abs=1e-9)
    assert got.key_length == math.floor(ref["ell"])
    assert got.reason == ""
    assert 0 < got.key_length < got.s_x1


def test_each_disclosed_bit_costs_one_key_bit() -> None:
    a = lim2014_key_length(COUNTS, LAMBDA_EC).key_length
    b = lim2014_key_length(COUNTS, LAMBDA_EC + 1000).key_length
    assert a - b == 1000


def test_tighter_epsilons_shorten_the_key() -> None:
    loose = lim2014_key_length(COUNTS, LAMBDA_EC, eps_sec=1e-6, eps_cor=1e-9)
    tight = lim2014_key_length(COUNTS, LAMBDA_EC, eps_sec=1e-15, eps_cor=1e-20)
    assert tight.key_length < loose.key_length


def test_high_error_rate_gives_no_key_and_says_why() -> None:
    noisy = DecoyCounts(
        COUNTS.intensities, COUNTS.probs, COUNTS.n_x, COUNTS.n_z, m_z=(15000, 900, 1)
    )
    bound = lim2014_key_length(noisy, LAMBDA_EC)
    assert bound.key_length == 0
    assert bound.reason


def test_too_few_counts_give_no_key() -> None:
    small = DecoyCounts((0.5, 0.1, 0.0), (0.7, 0.2, 0.1), (800, 50, 0), (10, 1, 0), (0, 0, 0))
    bound = lim2014_key_length(small, lambda_ec=100)
    assert bound.key_length == 0
    assert "no" in bound.reason or "<= 0" in bound.reason


def test_gamma_vanishes_without_errors_and_grows_for_small_samples() -> None:
    assert gamma(1e-10, 0.0, 1e4, 1e6) == 0.0
    assert gamma(1e-10, 0.02, 1e3, 1e5) > gamma(1e-10, 0.02, 1e6, 1e8) > 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"intensities": (0.1, 0.1, 0.0)}, "mu1 > mu2"),
        ({"probs": (0.5, 0.2, 0.2)}, "sum to 1"),
        ({"m_z": (200000, 0, 0)}, "m_z cannot exceed"),
        ({"n_x": (-1, 0, 0)}, "n_x"),
    ],
)
def test_counts_are_validated(kwargs: dict, match: str) -> None:
    base = {
        "intensities": COUNTS.intensities,
        "probs": COUNTS.probs,
        "n_x": COUNTS.n_x,
        "n_z": COUNTS.n_z,
        "m_z": COUNTS.m_z,
    }
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        DecoyCounts(**base)


def test_expected_counts_split_by_basis_probability() -> None:
    n_x, m_x, n_z, m_z = expected_counts(
        1e9, (0.5, 0.1, 0.0), (0.7, 0.2, 0.1), 0.9, 0.03, 2e-6, 0.01
    )
    assert n_x[0] / n_z[0] == pytest.approx(0.81 / 0.01)
    assert m_x[0] / n_x[0] == pytest.approx(m_z[0] / n_z[0])
    assert n_x[2] == pytest.approx(1e9 * 0.1 * 0.81 * (1 - (1 - 2e-6)))


# --- finite-size rate on the expected counts of a link -----------------------------------------
from qkdnet.keyrate import key_rate  # noqa: E402
from qkdnet.keyrate.decoy import decoy_rate  # noqa: E402
from qkdnet.keyrate.finite import _evaluate, asymptotic_rate, finite_key_rate  # noqa: E402
from qkdnet.physics import get_preset  # noqa: E402

PRESET = get_preset("decoy-1550-spad")
ETA_25 = PRESET.eta_bob * PRESET.fibre(25.0).transmittance
LINK = (ETA_25, PRESET.background_yield, PRESET.optical_error, PRESET.ec_efficiency)


@pytest.fixture(scope="module")
def limit() -> float:
    return asymptotic_rate(*LINK).rate_per_pulse


def test_asymptotic_limit_equals_ma2005_with_efficient_sifting(limit: float) -> None:
    """With no finite-size terms, q_x → 1 and p_1 → 1, Lim's three-intensity bound is Ma 2005's
    vacuum + weak decoy rate without the ½ sifting factor (ν → 0); agreement within 1 %."""
    ma = decoy_rate(*LINK, nu=1e-3).rate_per_pulse
    assert limit == pytest.approx(2 * ma, rel=0.01)


def test_finite_rate_grows_with_block_size_and_stays_below_the_limit(limit: float) -> None:
    rates = [finite_key_rate(n, *LINK).rate_per_pulse for n in (1e8, 1e10, 1e12)]
    assert 0.0 < rates[0] < rates[1] < rates[2] < limit


def test_about_a_factor_two_below_asymptotic_at_a_billion_key_bits(limit: float) -> None:
    """references/physics.md (Lim et al. 2014): at n_X ≈ 1e9 the bound stays roughly a factor
    2 below the asymptotic rate. Measured ratio at N = 1e11 pulses (n_X ≈ 1.5e9): ≈ 0.62; we
    require 0.4-0.75."""
    r = finite_key_rate(1e11, *LINK)
    n_x = (
        1e11
        * r.q_x**2
        * sum(
            p * (1 - (1 - LINK[1]) * math.exp(-LINK[0] * k))
            for k, p in zip(r.intensities, r.probs, strict=True)
        )
    )
    assert 5e8 < n_x < 5e9
    assert 0.4 < r.rate_per_pulse / limit < 0.75


def test_small_blocks_have_key_only_in_a_narrow_region_found_by_the_global_search() -> None:
    """N = 1e7 pulses at 25 km: a few % of random settings give key, the preset's fixed settings
    give none, and the global optimiser finds a positive key length."""
    rng = np.random.default_rng(7)
    trials, good = 500, 0
    for _ in range(trials):
        mu1 = rng.uniform(0.05, 1.2)
        mu2 = rng.uniform(0.005, mu1)
        p1 = rng.uniform(0.05, 0.95)
        p2 = rng.uniform(0.01, 1 - p1 - 0.01)
        q = rng.uniform(0.5, 0.9999)
        parts = _evaluate((mu1, mu2, p1, p2, q), 1e7, 0.0, *LINK, 1e-10, 1e-15)[0]
        good += parts[5] >= 1 and not parts[6]
    assert good / trials < 0.1
    fixed = finite_key_rate(
        1e7, *LINK, optimise=False, mu=0.5, nu=0.1, probs=(0.8, 0.15, 0.05), q_x=0.5
    )
    assert fixed.key_length == 0 and fixed.bound.reason
    assert finite_key_rate(1e7, *LINK).key_length > 0


def test_key_rate_with_block_size_reports_lim2014_settings() -> None:
    r = key_rate("decoy-bb84", 25.0, block_size=1e9)
    asym = key_rate("decoy-bb84", 25.0)
    assert r.params["model"] == "lim2014"
    assert r.params["key_length"] == pytest.approx(r.key_rate_per_pulse * 1e9)
    assert sum(r.params["probs"]) == pytest.approx(1.0)
    assert 0.0 < r.key_rate_per_pulse < r.plob_per_pulse
    # biased basis choice (q_x ≈ 0.88) beats the symmetric-sifting asymptotic rate at large N
    assert r.params["q_x"] > 0.8
    assert asym.params["sifting"] == 0.5


def test_population_evaluation_matches_the_scalar_bound() -> None:
    """The optimiser's array form of ℓ (``_ell_many``) is the scalar ``_evaluate`` on every
    column, in the key-making region and outside it (s1 = 0, φ capped, violations)."""
    from qkdnet.keyrate.finite import _ell_many

    rng = np.random.default_rng(0)
    cols = 500
    x = np.vstack([
        rng.uniform(0.2, 1.0, cols), rng.uniform(0.01, 0.19, cols),
        rng.uniform(0.05, 0.5, cols), rng.uniform(0.05, 0.45, cols), rng.uniform(0.5, 0.99, cols),
    ])  # fmt: skip
    for n in (1e5, 1e8, 1e10):
        args = (n, 0.0, 0.03, 1.5e-4, 0.01, 1.1, 1e-10, 1e-15)
        many = _ell_many(x, *args)
        one = np.array([_evaluate(tuple(x[:, i]), *args)[0][5] for i in range(cols)])
        assert np.allclose(many, one, rtol=1e-12, atol=1e-6)
    assert (one > 0).mean() > 0.5  # the check covered key-making settings too
