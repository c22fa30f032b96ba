"""Synthetic correlated records for post-processing tests: a binary symmetric channel."""

from __future__ import annotations

import numpy as np

from qkdnet.postprocess.estimation import DecoySettings
from qkdnet.simulate.records import AliceRecords, BobRecords

SINGLE = DecoySettings(intensities=(0.0,), probs=(1.0,))


def bsc_records(
    n: int, qber: float, rng: np.random.Generator, p_x: float = 0.9
) -> tuple[AliceRecords, BobRecords]:
    """n detections, both bases chosen with probability p_x of X, Bob's bit flipped with
    probability ``qber`` where the bases match (random where they differ)."""
    idx = np.sort(rng.choice(50 * n, size=n, replace=False)).astype(np.int64)
    a_bit = rng.integers(0, 2, n, dtype=np.uint8)
    a_basis = (rng.random(n) >= p_x).astype(np.uint8)
    b_basis = (rng.random(n) >= p_x).astype(np.uint8)
    flips = (rng.random(n) < qber).astype(np.uint8)
    b_bit = np.where(a_basis == b_basis, a_bit ^ flips, rng.integers(0, 2, n, dtype=np.uint8))
    alice = AliceRecords(
        pulse_index=idx,
        bit=a_bit,
        basis=a_basis,
        intensity=np.zeros(n, dtype=np.uint8),
        pulses_sent=50 * n,
        pulses_per_class=np.array([50 * n], dtype=np.int64),
    )
    bob = BobRecords(
        pulse_index=idx,
        bit=b_bit.astype(np.uint8),
        basis=b_basis,
        double_click=np.zeros(n, dtype=bool),
    )
    return alice, bob
