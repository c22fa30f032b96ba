"""Repeaterless bounds: PLOB (Pirandola et al., Nat. Commun. 8, 15043 (2017), eq. 19) and TGW
(Takeoka, Guha, Wilde, Nat. Commun. 5, 5235 (2014)); values from references/physics.md."""

from __future__ import annotations

import numpy as np
import pytest

from qkdnet.keyrate import plob_bound, tgw_bound


@pytest.mark.parametrize(("eta", "expected"), [(0.3162, 0.5484), (0.1, 0.1520), (0.01, 0.01450)])
def test_plob_reference_values(eta: float, expected: float) -> None:
    # -log2(1 - eta); the references quote 4 significant digits, so tolerance 1e-4 absolute.
    assert plob_bound(eta) == pytest.approx(expected, abs=1e-4)


def test_plob_is_about_1_44_eta_at_low_transmittance() -> None:
    assert plob_bound(1e-6) == pytest.approx(1e-6 / np.log(2), rel=1e-5)


def test_tgw_is_looser_than_plob_by_about_two() -> None:
    eta = np.geomspace(1e-6, 0.5, 20)
    ratio = tgw_bound(eta) / plob_bound(eta)
    assert np.all(ratio > 1.0)
    assert ratio[0] == pytest.approx(2.0, rel=1e-4)


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_bounds_reject_transmittance_outside_unit_interval(bad: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        plob_bound(bad)
