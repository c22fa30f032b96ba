"""The whole two-party pipeline: identical keys, and every abort path."""

import numpy as np
import pytest

from postprocess_synthetic import SINGLE, bsc_records
from qkdnet.postprocess import pipeline
from qkdnet.postprocess.channel import channel_pair, local_pair, memory_pair
from qkdnet.postprocess.estimation import DecoySettings
from qkdnet.postprocess.pipeline import Alice, Bob, PostprocessConfig, run_pair
from qkdnet.simulate.records import AliceRecords

#: both ways of running the two parties in one process: two threads, or greenlets of one thread
PAIRS = [pytest.param(lambda: memory_pair(timeout_s=30), id="threads"),
         pytest.param(local_pair, id="greenlets")]  # fmt: skip


def _parties(config: PostprocessConfig, transports=None, bob_config=None):
    a, b = transports or memory_pair(timeout_s=30)
    ca, cb = channel_pair((a, b), np.random.default_rng(0).bytes(1 << 15))
    return Alice(ca, config), Bob(cb, bob_config or config)


def test_hundreds_of_blocks_give_identical_keys() -> None:
    """200 blocks at QBER 1–8 %: whenever neither party aborts, the keys are identical."""
    rng = np.random.default_rng(21)
    alice, bob = _parties(PostprocessConfig(SINGLE, frame_bits=2048))
    produced = 0
    for i in range(200):
        qber = float(rng.uniform(0.01, 0.08))
        ar, br = bsc_records(int(rng.integers(20000, 40000)), qber, rng, p_x=0.5)
        ra, rb = run_pair(
            alice, bob, ar, br, np.random.default_rng(i), np.random.default_rng(1000 + i)
        )
        assert ra.aborted == rb.aborted
        if not ra.aborted:
            produced += 1
            assert np.array_equal(ra.key, rb.key)
            assert ra.final_key_bits == rb.final_key_bits > 0
            assert abs(rb.qber - qber) < 0.02
        else:
            assert ra.key is None and rb.key is None and rb.abort_reason
        assert rb.auth_key_bits > 0
    assert produced >= 50


def _run(config, n=30000, qber=0.02, seed=1, records=None, transports=None, bob_config=None):
    rng = np.random.default_rng(seed)
    ar, br = records or bsc_records(n, qber, rng)
    alice, bob = _parties(config, transports, bob_config)
    return run_pair(alice, bob, ar, br, np.random.default_rng(1), np.random.default_rng(2))


def test_privacy_amplification_families_give_identical_keys() -> None:
    """Either hash family: equal keys of the computed length; the same blocks give different
    keys under the two families, and plain Toeplitz's seed costs m more bits on the channel
    (n + m − 1 against the modified family's n − 1)."""
    runs = {}
    for family in ("modified-toeplitz", "toeplitz"):
        ra, rb = _run(PostprocessConfig(SINGLE, privacy_amplification=family), n=60000, qber=0.03)
        assert not ra.aborted and not rb.aborted
        assert np.array_equal(ra.key, rb.key) and ra.key.size == rb.final_key_bits > 0
        runs[family] = ra
    mod, plain = runs["modified-toeplitz"], runs["toeplitz"]
    assert mod.key.size == plain.key.size and not np.array_equal(mod.key, plain.key)
    extra = plain.ledger["bytes"] - mod.ledger["bytes"]
    assert abs(extra - mod.key_length / 8) < 16, (extra, mod.key_length)


def test_abort_privacy_amplification_families_differ() -> None:
    config = PostprocessConfig(SINGLE, privacy_amplification="modified-toeplitz")
    other = PostprocessConfig(SINGLE, privacy_amplification="toeplitz")
    _, rb = _run(config, n=60000, qber=0.03, bob_config=other)
    assert rb.aborted and rb.key is None
    assert "same privacy_amplification setting" in rb.abort_reason
    with pytest.raises(ValueError, match="privacy_amplification must be one of"):
        PostprocessConfig(SINGLE, privacy_amplification="sha3")


@pytest.mark.parametrize("pair", PAIRS)
def test_abort_qber_above_threshold(pair) -> None:
    ra, rb = _run(PostprocessConfig(SINGLE), qber=0.15, transports=pair())
    assert ra.aborted and rb.aborted and "QBER above threshold" in rb.abort_reason
    assert rb.key is None and rb.auth_key_bits > 0


@pytest.mark.parametrize("pair", PAIRS)
def test_abort_key_length_not_positive(pair) -> None:
    ra, rb = _run(PostprocessConfig(SINGLE), n=3000, qber=0.06, transports=pair())
    assert rb.aborted and ra.aborted and "key length" in rb.abort_reason


def test_abort_verification_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Error correction that leaves errors is caught by the verification hash."""
    original = pipeline.Bob._cascade

    def broken(self, key, qber, rng):
        out = original(self, key, qber, rng)
        out = out.copy()
        out[7] ^= 1
        return out

    monkeypatch.setattr(pipeline.Bob, "_cascade", broken)
    ra, rb = _run(PostprocessConfig(SINGLE))
    assert ra.aborted and rb.aborted
    assert "verification mismatch" in ra.abort_reason and "verification mismatch" in rb.abort_reason


def test_abort_authentication_failure() -> None:
    from test_postprocess_auth import _Tamper

    a, b = memory_pair(timeout_s=30)
    ra, rb = _run(PostprocessConfig(SINGLE), transports=(_Tamper(a, 1), b))
    assert rb.aborted and "authentication failure" in rb.abort_reason
    assert ra.aborted and ra.key is None


@pytest.mark.parametrize("pair", PAIRS)
def test_abort_decoy_inconsistent(pair) -> None:
    """The vacuum class clicking more often than the signal is not physics: abort."""
    rng = np.random.default_rng(3)
    ar, br = bsc_records(60000, 0.02, rng)
    classes = rng.integers(0, 3, len(ar), dtype=np.uint8)
    tampered = AliceRecords(
        ar.pulse_index, ar.bit, ar.basis, classes, ar.pulses_sent,
        np.array([10**7, 10**6, 10**5], dtype=np.int64),
    )  # fmt: skip
    settings = DecoySettings((0.5, 0.1, 0.0), (0.8, 0.15, 0.05))
    ra, rb = _run(PostprocessConfig(settings), records=(tampered, br), transports=pair())
    assert ra.aborted and rb.aborted and "decoy estimates inconsistent" in rb.abort_reason


def test_a_cascade_block_spends_the_planners_fixed_authentication_key() -> None:
    """The planner subtracts CASCADE_TAGS_PER_BLOCK pads per block (network/planner.py): the
    ledger of real blocks of different sizes says exactly that many."""
    from qkdnet.link import LinkEngine
    from qkdnet.postprocess.authentication import PAD_BYTES
    from qkdnet.postprocess.pipeline import CASCADE_TAGS_PER_BLOCK

    for pulses in (3 * 10**7, 10**8):
        engine = LinkEngine("decoy-bb84", 25.0, pulses, seed=4, block_pulses=pulses)
        block = engine.next_block()
        assert block.report["aborted"] is False
        assert block.report["auth_key_bits"] == CASCADE_TAGS_PER_BLOCK * PAD_BYTES * 8


def test_sifting_gives_both_parties_the_same_classes() -> None:
    """Alice announces the classes of the matching-basis slots only, bit-packed; Bob's sifted
    classes and Alice's agree, and equal a plain boolean-mask sift."""
    from qkdnet.postprocess.sifting import alice_sift, bob_announcement, bob_sift
    from qkdnet.simulate.records import BobRecords

    rng = np.random.default_rng(4)
    n = 5000
    idx = np.arange(n, dtype=np.int64)
    bits = rng.integers(0, 2, n, dtype=np.uint8)
    classes = rng.integers(0, 3, n, dtype=np.uint8)
    ar = AliceRecords(idx, bits, rng.integers(0, 2, n, dtype=np.uint8), classes, 10 * n,
                      np.array([4 * n, 3 * n, 3 * n], np.int64))  # fmt: skip
    br = BobRecords(idx, bits, rng.integers(0, 2, n, dtype=np.uint8), np.zeros(n, bool))
    sa, reply = alice_sift(ar, bob_announcement(br))
    sb = bob_sift(br, reply)
    x = (ar.basis == 0) & (br.basis == 0)
    z = (ar.basis == 1) & (br.basis == 1)
    for s in (sa, sb):
        assert np.array_equal(s.x_class, classes[x]) and np.array_equal(s.z_class, classes[z])
        assert np.array_equal(s.x_bits, bits[x]) and np.array_equal(s.z_bits, bits[z])


def test_sifting_refuses_records_out_of_step() -> None:
    """Alice refuses Bob's announcement when one clicked slot differs, one is missing, or two
    are swapped (the slot digest); identical slot lists pass."""
    from qkdnet.postprocess.sifting import alice_sift, bob_announcement
    from qkdnet.simulate.records import BobRecords

    rng = np.random.default_rng(6)
    n = 4099  # not a multiple of the hash's four lanes
    idx = np.sort(rng.choice(40 * n, size=n, replace=False)).astype(np.int64)
    bits = rng.integers(0, 2, n, dtype=np.uint8)
    ar = AliceRecords(idx, bits, np.zeros(n, np.uint8), np.zeros(n, np.uint8), 40 * n,
                      np.array([40 * n], np.int64))  # fmt: skip
    basis = np.zeros(n, np.uint8)
    alice_sift(ar, bob_announcement(BobRecords(idx, bits, basis, np.zeros(n, bool))))
    changed = idx.copy()
    changed[-1] += 1
    swapped = idx.copy()
    swapped[[5, 6]] = swapped[[6, 5]]
    for slots in (changed, swapped):
        with pytest.raises(ValueError, match="clicked slots differ"):
            alice_sift(ar, bob_announcement(BobRecords(slots, bits, basis, np.zeros(n, bool))))
    short = BobRecords(idx[:-1], bits[:-1], basis[:-1], np.zeros(n - 1, bool))
    with pytest.raises(ValueError, match="clicked slots differ"):
        alice_sift(ar, bob_announcement(short))


def test_drop_sample_matches_a_mask_and_rejects_bad_positions() -> None:
    from qkdnet.postprocess.estimation import drop_sample

    rng = np.random.default_rng(8)
    values = rng.integers(0, 2, 1000, dtype=np.uint8)
    for idx in (np.zeros(0, np.int64), np.array([0, 999]), np.sort(rng.choice(1000, 50, False))):
        keep = np.ones(1000, bool)
        keep[idx] = False
        assert np.array_equal(drop_sample(values, idx), values[keep])
    for bad in (np.array([3, 3]), np.array([5, 2]), np.array([-1]), np.array([1000])):
        with pytest.raises(ValueError):
            drop_sample(values, bad)
