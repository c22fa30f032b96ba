"""Density evolution for the BSC reproduces a known threshold; the LP step raises the rate."""

from __future__ import annotations

from qkdnet.postprocess import ldpc_design as de


def test_regular_3_6_threshold_matches_the_literature() -> None:
    # BP threshold of the (3,6)-regular ensemble on the BSC: 0.084 (Richardson, Urbanke,
    # "Modern Coding Theory", Table 4.94); the quantisation costs less than 0.001
    thr = de.threshold({3: 1.0}, {6: 1.0}, 0.07, 0.1, tol=2e-4)
    assert 0.0825 < thr < 0.0855
    assert de.evolve({3: 1.0}, {6: 1.0}, 0.08)[0]
    assert not de.evolve({3: 1.0}, {6: 1.0}, 0.09)[0]


def test_optimise_raises_the_rate_and_still_converges() -> None:
    start = {2: 0.2, 3: 0.5, 6: 0.3}
    rho = {7: 1.0}
    lam = de.optimise(start, rho, 0.06, max_degree=8, steps=3)
    assert de.rate(lam, rho) > de.rate(start, rho) + 0.01
    assert de.evolve(lam, rho, 0.06)[0]
    # λ₂ within the zigzag room (at most m − 1 degree-2 variables) and stability
    assert lam.get(2, 0.0) / 2.0 <= 1.0 / 7.0


def test_concentrated_rho_has_the_average_degree() -> None:
    rho = de.concentrated_rho(34.7)
    assert set(rho) == {34, 35}
    # node-average degree 1 / Σ ρ_j / j
    assert abs(1.0 / sum(r / j for j, r in rho.items()) - 34.7) < 1e-9
