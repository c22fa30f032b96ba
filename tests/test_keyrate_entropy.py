"""Binary entropy: exact values from references/physics.md ("BB84 sanity values")."""

from __future__ import annotations

import numpy as np
import pytest

from qkdnet.keyrate.entropy import binary_entropy


@pytest.mark.parametrize(("x", "expected"), [(0.02, 0.14144), (0.11, 0.49992), (0.5, 1.0)])
def test_binary_entropy_reference_values(x: float, expected: float) -> None:
    # h(x) = -x log2 x - (1-x) log2(1-x); tolerance 5e-6 (5 digits quoted).
    assert binary_entropy(x) == pytest.approx(expected, abs=5e-6)


def test_binary_entropy_endpoints_and_symmetry() -> None:
    assert binary_entropy(0.0) == 0.0
    assert binary_entropy(1.0) == 0.0
    xs = np.linspace(0.01, 0.99, 7)
    assert np.allclose(binary_entropy(xs), binary_entropy(1 - xs))


@pytest.mark.parametrize("bad", [-0.1, 1.1, float("nan")])
def test_binary_entropy_rejects_values_outside_unit_interval(bad: float) -> None:
    with pytest.raises(ValueError, match="0 <= x <= 1"):
        binary_entropy(bad)
