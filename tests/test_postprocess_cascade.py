"""Cascade: correctness over many random blocks and its efficiency f."""

import numpy as np
import pytest

from qkdnet.keyrate.entropy import binary_entropy
from qkdnet.postprocess.cascade import block_sizes, reconcile_local


def test_block_sizes_option8() -> None:
    """Martinez-Mateo et al. 2015, option 8: k1 = 2^ceil(log2(1/Q) - 1/2), k3 = 4096."""
    assert block_sizes(0.01, 10**5)[:4] == [128, 1024, 4096, 50000]
    assert len(block_sizes(0.05, 10**5)) == 14


@pytest.mark.parametrize("qber", [0.01, 0.02, 0.03, 0.05, 0.08])
def test_cascade_corrects_random_blocks(qber: float) -> None:
    """60 blocks per QBER (300 in all): Bob ends with Alice's key every time."""
    rng = np.random.default_rng(int(qber * 1000))
    for rep in range(60):
        n = int(rng.integers(2000, 6000))
        a = rng.integers(0, 2, n, dtype=np.uint8)
        b = a ^ (rng.random(n) < qber).astype(np.uint8)
        corrected, stats = reconcile_local(a, b, qber, seed=rep)
        assert np.array_equal(corrected, a)
        assert stats.corrected == int(np.count_nonzero(a ^ b))


def test_cascade_efficiency_at_1e5_bits() -> None:
    """f = disclosed / (n h(Q)) ≤ 1.06 at 10^5 bits (the goal; published Cascade: 1.06-1.08)."""
    rng = np.random.default_rng(9)
    n = 10**5
    for qber in (0.02, 0.05):
        fs = []
        for rep in range(3):
            a = rng.integers(0, 2, n, dtype=np.uint8)
            e = (rng.random(n) < qber).astype(np.uint8)
            corrected, stats = reconcile_local(a, a ^ e, qber, seed=rep)
            assert np.array_equal(corrected, a)
            fs.append(stats.disclosed_bits / (n * float(binary_entropy(e.mean()))))
        assert 1.0 < np.mean(fs) <= 1.06


def _eager_run(alice_key: np.ndarray, bob_key: np.ndarray, qber: float, seed: int):
    """Reference: the same protocol with every pass's shuffle built before the first pass."""
    from qkdnet.postprocess.cascade import CascadeAlice, CascadeBob, Schedule

    schedule = Schedule.derive(alice_key.size, qber, seed)
    bob = CascadeBob(bob_key, schedule)
    for r in range(len(schedule.sizes)):
        bob._build(r)
    bob.run(CascadeAlice(alice_key, schedule))
    return bob.key, bob.stats


def test_lazy_mask_passes_match_eager_shuffles() -> None:
    """Mask passes build their shuffle only when a block turns odd; the parities asked, the
    bits corrected and the key are those of the eager protocol. An underestimated QBER leaves
    errors for the mask passes, so that a flip there makes an earlier mask pass's block odd."""
    import qkdnet.postprocess.cascade as cascade

    rng = np.random.default_rng(9)
    built_late = 0
    for rep in range(40):
        n = int(rng.integers(3000, 9000))
        a = rng.integers(0, 2, n, dtype=np.uint8)
        b = a ^ (rng.random(n) < 0.06).astype(np.uint8)
        schedule = cascade.Schedule.derive(n, 0.005, rep)
        bob = cascade.CascadeBob(b, schedule)
        bob.run(cascade.CascadeAlice(a, schedule))
        key, stats = _eager_run(a, b, 0.005, rep)
        assert np.array_equal(bob.key, a) and np.array_equal(key, a)
        assert (bob.stats.disclosed_bits, bob.stats.corrected) == (
            stats.disclosed_bits,
            stats.corrected,
        )
        built_late += int(np.count_nonzero(bob._live[3:]))
    assert built_late > 0  # mask passes were built (at their start or after a later flip)


def test_group_cascade_matches_frame_by_frame() -> None:
    """A group of frames run together (one call per round trip) asks the same parities,
    corrects the same bits and ends with the same keys as each frame run on its own."""
    from qkdnet.postprocess import cascade
    from qkdnet.postprocess.cascade_group import GroupAlice, GroupBob, GroupSchedule

    rng = np.random.default_rng(5)
    fixed = [[64, 4096, 2, 3], [63, 65, 128]]  # whole packed words, and frames of 2-3 bits
    for i in range(14):
        lengths = (
            fixed[i]
            if i < 2
            else [int(rng.integers(100, 9000)) for _ in range(int(rng.integers(1, 6)))]
        )
        qber = float(rng.choice([0.005, 0.02, 0.05]))
        seeds = [int(rng.integers(0, 2**62)) for _ in lengths]
        a = rng.integers(0, 2, sum(lengths), dtype=np.uint8)
        b = a ^ (rng.random(a.size) < float(rng.choice([qber, 0.06]))).astype(np.uint8)
        edges = np.concatenate([[0], np.cumsum(lengths)])
        keys, disclosed, corrected = [], 0, 0
        for f, seed in enumerate(seeds):
            schedule = cascade.Schedule.derive(lengths[f], qber, seed)
            bob = cascade.CascadeBob(b[edges[f] : edges[f + 1]], schedule)
            keys.append(bob.run(cascade.CascadeAlice(a[edges[f] : edges[f + 1]], schedule)))
            disclosed += bob.stats.disclosed_bits
            corrected += bob.stats.corrected
        group_bob = GroupBob(b, GroupSchedule.derive(lengths, qber, seeds))
        group_alice = GroupAlice(a, GroupSchedule.derive(lengths, qber, seeds))
        assert np.array_equal(group_bob.run(group_alice), np.concatenate(keys))
        assert (group_bob.disclosed_bits, group_alice.disclosed_bits) == (disclosed, disclosed)
        assert group_bob.corrected == corrected


def test_group_alice_rejects_requests_outside_the_group() -> None:
    """Passes outside the group, and node numbers that are no node of any block's bisection
    tree, are refused; a node's answer is the parity of its range of the shuffled key."""
    from qkdnet.postprocess.cascade_group import GroupAlice, GroupSchedule

    schedule = GroupSchedule.derive([100, 120], 0.02, [1, 2])
    key = np.random.default_rng(3).integers(0, 2, 220, dtype=np.uint8)
    alice = GroupAlice(key, schedule)
    none_p, none_n = np.zeros((2, 0), np.int32), np.zeros(0, np.int32)
    toff, heap = schedule.toff, schedule.heap
    assert schedule.sizes[0, 0] == 64 and heap[0, 0] == 128  # frame 0, pass 1: [0, 64), [64, 100)
    total = int(schedule.tree_nodes + schedule.mask_tree_nodes)
    for passes, nodes in [
        (np.array([[2], [0]], np.int32), none_n),
        (np.array([[0], [14]], np.int32), none_n),
        (none_p, np.array([-1])),
        (none_p, np.array([total])),
        (none_p, np.array([toff[0, 0] + 128])),  # node 0 of block 1: no node
        (none_p, np.array([toff[0, 0] + 128 + 127])),  # [99, 100) cannot be split further
    ]:
        with pytest.raises(ValueError):
            alice.answer(passes, nodes)
    # Node 5 (binary 101: left, then right) of frame 0, pass 1, block 1: [64, 82), [73, 82).
    got = alice.answer(none_p, np.array([toff[0, 0] + 128 + 5]))
    assert got.tolist() == [int(key[73:82].sum() % 2)]
    assert alice.answer(np.array([[1], [0]], np.int32), none_n).size == 2  # frame 1: 120 / 64


def test_group_cascade_reuses_pooled_work_arrays() -> None:
    """Bob's work arrays come back to the pool dirty; a later group (mask passes turning odd
    included) asks the same parities and ends with the same key as the reference."""
    from qkdnet.postprocess import cascade, scratch
    from qkdnet.postprocess.cascade_group import GroupAlice, GroupBob, GroupSchedule

    rng = np.random.default_rng(12)
    for _ in range(6):
        n = int(rng.integers(3000, 9000))
        a = rng.integers(0, 2, n, dtype=np.uint8)
        b = a ^ (rng.random(n) < 0.06).astype(np.uint8)
        seed = int(rng.integers(0, 2**62))
        reference = cascade.CascadeBob(b, cascade.Schedule.derive(n, 0.005, seed))
        reference.run(cascade.CascadeAlice(a, cascade.Schedule.derive(n, 0.005, seed)))
        schedule = GroupSchedule.derive([n], 0.005, [seed])
        with GroupBob(b, schedule) as bob:
            assert np.array_equal(bob.run(GroupAlice(a, schedule)), a)
            assert bob.disclosed_bits == reference.stats.disclosed_bits
        assert scratch._free  # given back, reused by the next group
