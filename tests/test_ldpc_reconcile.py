"""LDPC reconciliation: correctness at QBER 1–8 %, leak accounting, failure reporting, codes."""

from __future__ import annotations

import numpy as np
import pytest

from qkdnet.postprocess.ldpc import (
    CODE_BY_QBER,
    CODE_SETS,
    FRAME_HASH_BITS,
    LdpcAlice,
    LdpcBob,
    LdpcPlan,
    RevealReply,
    RevealRequest,
    binary_entropy,
    reconcile_local,
    reveal_limit,
)
from qkdnet.postprocess.ldpc_codes import DEFAULT_N, DISTRIBUTIONS, LONG_RATES, load_codes
from qkdnet.postprocess.ldpc_decoder import decode_numpy, decode_syndrome

# Measured on these seeds (2 frames per QBER, n = 32768, 2026-11-23): f between 1.12 and 1.23
# (the last frame is padded, which costs a little). The bound asserted is the worst measured plus
# margin for other numba/numpy builds; the goal (f <= 1.10) is reached only at 5-8 %.
F_BOUND = 1.45


def _bsc(n: int, qber: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    alice = rng.integers(0, 2, n, dtype=np.uint8)
    errors = np.zeros(n, dtype=np.uint8)
    errors[rng.choice(n, round(qber * n), replace=False)] = 1  # exactly Q·n errors
    return alice, alice ^ errors


@pytest.mark.parametrize("qber", [0.01, 0.02, 0.03, 0.05, 0.08])
def test_corrects_bsc_errors_and_leak_is_bounded(qber: float) -> None:
    rng = np.random.default_rng(int(qber * 1000))
    frame = LdpcPlan.derive(1, qber).frame_key_bits
    n = 2 * frame - 1000  # two frames, the last one padded
    alice, bob = _bsc(n, qber, rng)
    result = reconcile_local(alice, bob, qber, rng)
    assert result.frames == 2
    ok = np.ones(n, dtype=bool)
    for f in result.failed_frames:
        ok[f * frame : (f + 1) * frame] = False
    assert np.array_equal(result.corrected[ok], alice[ok])
    assert result.failed_frames.size == 0
    f = result.disclosed_bits / (n * binary_entropy(qber))
    assert 1.0 < f <= F_BOUND
    assert result.rounds >= 1


def test_disclosed_counts_syndrome_minus_punctured_plus_hash_plus_reveals() -> None:
    rng = np.random.default_rng(5)
    n = LdpcPlan.derive(1, 0.03).frame_key_bits
    alice_key, bob_key = _bsc(n, 0.03, rng)
    plan = LdpcPlan.derive(n, 0.03)
    code = plan.code
    alice = LdpcAlice(alice_key, plan, rng)
    bob = LdpcBob(bob_key, plan)
    p0 = code.d - plan.shortened
    assert alice.disclosed_bits == code.m - p0 + FRAME_HASH_BITS
    request = bob.receive_syndromes(alice.syndromes())
    revealed = 0
    while request is not None:
        reply = alice.reveal(request)
        revealed += sum(v.size for v in reply.values)
        request = bob.receive_reveal(reply)
    assert alice.disclosed_bits == code.m - p0 + FRAME_HASH_BITS + revealed
    assert bob.disclosed_bits == alice.disclosed_bits  # both ends keep the same ledger
    assert np.array_equal(bob.result(alice.disclosed_bits).corrected, alice_key)


def test_alice_refuses_bad_reveal_requests_and_reveals_nothing_then() -> None:
    """A position twice, a known (shortened) one, out of range, a frame out of range, more than
    the frame's limit: ValueError, and neither the ledger nor the known positions change."""
    rng = np.random.default_rng(6)
    n = LdpcPlan.derive(1, 0.02).frame_key_bits  # one whole frame: no padding
    plan = LdpcPlan.derive(n, 0.02)
    code = plan.code
    alice = LdpcAlice(rng.integers(0, 2, n, dtype=np.uint8), plan, rng)
    punctured = code.modulated[plan.shortened :]
    first = RevealRequest(np.array([0]), [punctured[:5]])
    reply = alice.reveal(first)
    assert [v.size for v in reply.values] == [5]
    before = alice.disclosed_bits
    key_pos = np.setdiff1d(np.arange(code.n), code.modulated)
    bad = [
        ([0], [punctured[:5]], "cannot reveal a position twice or a known one"),
        ([0], [np.array([punctured[6], punctured[6]])], "twice or a known one"),
        ([0], [code.modulated[:1]], "twice or a known one"),  # shortened: public already
        ([0], [np.array([code.n])], "positions must be in"),
        ([1], [punctured[6:8]], "frame 1 out of range"),
        ([0], [key_pos[: reveal_limit(plan) - 4]], "cannot reveal more than"),
        ([0, 0], [punctured[6:7], punctured[7:8]], "names a frame twice"),
    ]
    for frames, positions, message in bad:
        with pytest.raises(ValueError, match=message):
            alice.reveal(RevealRequest(np.array(frames), positions))
    assert alice.disclosed_bits == before
    assert alice.reveal(RevealRequest(np.array([0]), [punctured[5:7]])).values[0].size == 2


def test_bob_asks_for_the_bits_his_decoding_is_least_sure_of() -> None:
    """After a failed first decoding, the requested positions are unknown ones (punctured or
    key), ``step`` per frame, and their |posterior LLR| is no larger than any other unknown
    bit's; what Alice reveals is her word there."""
    from qkdnet.postprocess.ldpc_reveals import posterior_magnitudes

    rng = np.random.default_rng(16)
    n = LdpcPlan.derive(1, 0.03).frame_key_bits
    plan = LdpcPlan.derive(n, 0.03, f_start=0.9)  # above capacity: round 1 fails
    alice_key, bob_key = _bsc(plan.frame_key_bits, 0.03, rng)
    alice = LdpcAlice(alice_key, plan, rng)
    bob = LdpcBob(bob_key, plan)
    request = bob.receive_syndromes(alice.syndromes())
    assert request is not None and request.frames.tolist() == [0]
    pos = request.positions[0]
    assert pos.size == plan.step and np.unique(pos).size == pos.size
    shortened = set(plan.code.modulated[: plan.shortened].tolist())
    assert not shortened & set(pos.tolist())
    magnitudes = posterior_magnitudes(bob._llr[0], plan.code.cols, bob._messages[0], 256.0)
    unknown = np.abs(bob._llr[0]) < 1e4
    others = np.setdiff1d(np.flatnonzero(unknown), pos)
    assert magnitudes[pos].max() <= magnitudes[others].min()
    reply = alice.reveal(request)
    assert np.array_equal(reply.values[0], alice._words[0, pos])
    with pytest.raises(ValueError, match="answers other frames"):
        bob.receive_reveal(RevealReply(np.array([1]), reply.values))
    with pytest.raises(ValueError, match="no request outstanding"):
        bob.receive_reveal(reply)  # the request was consumed by the bad reply


def test_hopeless_frame_is_reported_failed_not_wrong() -> None:
    """Bob's key at 25 % QBER while the plan assumes 1 %: decoding must fail, visibly."""
    rng = np.random.default_rng(7)
    n = LdpcPlan.derive(1, 0.03).frame_key_bits
    alice, bob = _bsc(n, 0.25, rng)
    result = reconcile_local(alice, bob, 0.01, rng, max_iter=10)
    assert result.failed_frames.tolist() == [0]
    assert np.array_equal(result.corrected, bob)  # Bob keeps his own bits in a failed frame


def test_decoder_output_always_matches_syndrome_when_it_reports_success() -> None:
    code = load_codes()[4]
    rng = np.random.default_rng(8)
    for qber in (0.03, 0.2):
        x = rng.integers(0, 2, code.n, dtype=np.uint8)
        y = x ^ (rng.random(code.n) < qber).astype(np.uint8)
        syn = code.syndrome(x)
        llr = (1 - 2.0 * y) * np.log((1 - qber) / qber)
        out = np.zeros(code.n, dtype=np.uint8)
        its = decode_syndrome(
            code.row_ptr, code.cols, syn, llr, 30, False, 1.0, out, np.zeros(code.edges)
        )
        if its > 0:
            assert np.array_equal(code.syndrome(out), syn)
            assert np.array_equal(out, x)
        else:
            assert qber == 0.2
            assert not np.array_equal(code.syndrome(out), syn)


def test_numpy_reference_decoder_agrees() -> None:
    code = load_codes()[0]
    rng = np.random.default_rng(9)
    x = rng.integers(0, 2, code.n, dtype=np.uint8)
    y = x ^ (rng.random(code.n) < 0.06).astype(np.uint8)
    syn = code.syndrome(x)
    llr = (1 - 2.0 * y) * np.log(0.94 / 0.06)
    hard, its = decode_numpy(code.row_ptr, code.cols, syn, llr, 60)
    assert its > 0 and np.array_equal(hard, x)


def test_bad_input_is_rejected_with_a_clear_message() -> None:
    rng = np.random.default_rng(10)
    key = rng.integers(0, 2, 100, dtype=np.uint8)
    with pytest.raises(ValueError, match="qber must be in"):
        reconcile_local(key, key, 0.0, rng)
    with pytest.raises(ValueError, match="differ in length"):
        reconcile_local(key, key[:50], 0.02, rng)
    with pytest.raises(ValueError, match="only 0 and 1"):
        reconcile_local(key * 2, key, 0.02, rng)


def test_codes_load_from_package_data_with_tabulated_rates() -> None:
    codes = load_codes()
    assert [c.rate for c in codes] == sorted(DISTRIBUTIONS)
    for code in codes:
        # the codes of QBER 1-4.4 % (LONG_RATES) are 4x longer; the rate-0.91 one has 8 % of n
        # modulated (d < m), the others 10 %
        expected = {rate: (131072, 13107) for rate in LONG_RATES} | {0.91: (131072, 10486)}
        assert (code.n, code.d) == expected.get(code.rate, (32768, 3277))
        assert code.m == round(code.n * (1 - code.rate))
        assert code.row_ptr[-1] == code.cols.size
        assert np.unique(code.modulated).size == code.d
        assert 2 * code.d <= code.n - code.m  # the reveal limit stays below the key bits


def test_a_decoded_word_that_is_not_alices_is_never_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A decoder that ends on a wrong word meeting every check Bob can make (syndrome reported
    met, known bits right) — one flipped key bit here — is caught by the frame hash: the frame
    goes through every blind round and is reported failed, never returned wrong."""
    import qkdnet.postprocess.ldpc as ldpc

    plan0 = LdpcPlan.derive(1, 0.03)
    flip = int(np.setdiff1d(np.arange(plan0.code.n), plan0.code.modulated)[0])

    def wrong_words(real):
        def wrong(*args, **kwargs):
            hard, its = real(*args, **kwargs)
            hard[:, flip] ^= 1
            return hard, np.abs(its) + 1

        return wrong

    for name in ("decode_frames", "decode_frames_fixed"):  # Bob's float and fixed decoders
        monkeypatch.setattr(ldpc, name, wrong_words(getattr(ldpc, name)))
    rng = np.random.default_rng(14)
    n = plan0.frame_key_bits
    alice, bob = _bsc(n, 0.03, rng)
    result = reconcile_local(alice, bob, 0.03, rng, max_iter=3)
    assert result.failed_frames.tolist() == [0]
    assert np.array_equal(result.corrected, bob)


@pytest.mark.parametrize("qber", [0.01, 0.02, 0.03, 0.05, 0.08])
def test_code_sets_fast_draws_short_frames_and_both_correct(qber: float) -> None:
    fast = LdpcPlan.derive(1, qber, codes="fast")
    efficient = LdpcPlan.derive(10**8, qber, codes="efficient")
    assert fast.code.n == DEFAULT_N
    assert fast.code.rate in CODE_SETS["fast"]
    assert efficient.code.rate in CODE_SETS["efficient"]
    # a key shorter than one long frame: the n = 32768 code (less padding to disclose)
    assert LdpcPlan.derive(fast.frame_key_bits, qber).code.n == DEFAULT_N
    rng = np.random.default_rng(round(qber * 1e4))
    n = fast.frame_key_bits
    alice, bob = _bsc(n, qber, rng)
    result = reconcile_local(alice, bob, qber, rng, codes="fast")
    assert result.failed_frames.size == 0
    assert np.array_equal(result.corrected, alice)


def test_unknown_code_set_is_refused_naming_the_sets() -> None:
    with pytest.raises(ValueError, match="efficient, fast"):
        LdpcPlan.derive(1000, 0.02, codes="turbo")


def test_the_efficient_sets_code_table_is_ordered_and_shipped() -> None:
    rows = CODE_BY_QBER["efficient"]
    bounds = [upper for upper, _ in rows]
    assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds)
    for _, rate in rows:
        assert rate in CODE_SETS["efficient"] and rate in DISTRIBUTIONS


def test_every_qber_from_1_to_8_percent_starts_near_capacity_with_room_for_blind_rounds() -> None:
    """Each plan of the efficient set starts with at least 8 % of the code's modulated positions
    punctured (below a tenth a long code ran out of punctured bits and needed f 1.17-1.34 with
    the fixed reveal order, the reason for the session-6 codes, docs/benchmarks.md) and at an
    effective rate within 4 % of h(Q) of the Shannon rate (f₀ = 1, or the code's highest rate
    where all of d is punctured, as for the rate-0.55 code at 7.25-7.6 %)."""
    codes = load_codes()
    for q in np.arange(0.01, 0.0801, 0.0005):
        plan = LdpcPlan.derive(10**8, float(q))
        code = codes[plan.code_index]
        punctured = (code.d - plan.shortened) / code.d
        rate = (code.k - plan.shortened) / (code.n - code.d)
        f0 = (1.0 - rate) / binary_entropy(float(q))
        assert punctured >= 0.08 and 0.99 <= f0 <= 1.04, (float(q), code.rate, punctured, f0)


def test_a_qber_between_the_old_long_codes_reconciles_near_the_goal() -> None:
    """QBER 1.5 %: with the rate-0.845 code punctured 45 % the blind protocol needed f 1.14
    (17 frames); its own rate-0.875 code needs about 1.10. Four seeded frames here."""
    rng = np.random.default_rng(21)
    frame = LdpcPlan.derive(10**8, 0.015).frame_key_bits
    plan = LdpcPlan.derive(4 * frame, 0.015)
    assert plan.code.rate == 0.875
    alice, bob = _bsc(plan.frames * plan.frame_key_bits, 0.015, rng)
    result = reconcile_local(alice, bob, 0.015, rng)
    assert result.failed_frames.size == 0
    assert np.array_equal(result.corrected, alice)
    assert result.efficiency(0.015) < 1.13


@pytest.mark.parametrize("decoder", ["fixed", "float"])
def test_blind_rounds_by_reliability_correct_with_either_decoder(decoder: str) -> None:
    """Starting below capacity forces blind rounds; each decoder's messages give the
    posteriors that choose the reveals, and both end on Alice's key."""
    rng = np.random.default_rng(31)
    n = 2 * LdpcPlan.derive(1, 0.03).frame_key_bits
    alice, bob = _bsc(n, 0.03, rng)
    result = reconcile_local(alice, bob, 0.03, rng, f_start=0.95, decoder=decoder)
    assert result.rounds > 1 and result.failed_frames.size == 0
    assert np.array_equal(result.corrected, alice)
    assert result.efficiency(0.03) < 1.2
