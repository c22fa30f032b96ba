"""Live-mode randomness: os.urandom behind the Generator calls the post-processing makes."""

from __future__ import annotations

import numpy as np
import pytest

from qkdnet.link import KeyBlockPair, LinkEngine
from qkdnet.postprocess.randomness import SystemRandomness


def test_integers_are_in_range_and_unbiased() -> None:
    r = SystemRandomness()
    bits = r.integers(0, 2, 200_000, dtype=np.uint8)
    assert bits.dtype == np.uint8 and set(np.unique(bits)) == {0, 1}
    assert abs(bits.mean() - 0.5) < 0.005  # 7 standard deviations
    dice = r.integers(1, 7, 60_000)
    counts = np.bincount(dice, minlength=7)[1:]
    assert dice.min() == 1 and dice.max() == 6
    chi2 = float(((counts - 10_000) ** 2 / 10_000).sum())
    assert chi2 < 30.0  # 5 degrees of freedom: p < 2e-5 of failing by chance
    big = r.integers(0, 2**62)
    assert isinstance(big, int) and 0 <= big < 2**62
    with pytest.raises(ValueError, match="high - low"):
        r.integers(5, 5)


def test_choice_without_replacement_is_a_uniform_subset() -> None:
    r = SystemRandomness()
    picks = r.choice(1000, size=300, replace=False)
    assert len(set(picks.tolist())) == 300 and picks.min() >= 0 and picks.max() < 1000
    hits = np.zeros(10)
    for _ in range(2000):
        hits[r.choice(10, size=3, replace=False)] += 1
    assert np.all(np.abs(hits - 600) < 120)  # each element in 3/10 of the draws
    assert sorted(r.choice(5, size=5, replace=False).tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="without replacement"):
        r.choice(3, size=4, replace=False)
    assert 0.0 <= r.random() < 1.0 and r.random(5).shape == (5,)


def test_live_link_engine_makes_identical_unpredictable_keys() -> None:
    """Same device seed twice, live mode: both ends agree, yet the runs' keys differ (the
    sample, Cascade and privacy-amplification choices come from os.urandom)."""
    keys = []
    for _ in range(2):
        engine = LinkEngine("decoy-bb84", 25.0, 10**8, seed=9, block_pulses=10**8, live=True)
        block = engine.next_block()
        assert isinstance(block, KeyBlockPair) and block.alice_key == block.bob_key
        assert engine.config.live
        keys.append(block.alice_key)
    assert keys[0] != keys[1]
    sim = [LinkEngine("decoy-bb84", 25.0, 10**8, seed=9, block_pulses=10**8).next_block()
           for _ in range(2)]  # fmt: skip
    assert sim[0].alice_key == sim[1].alice_key  # simulation mode stays reproducible
