"""Fixed-point LDPC decoder: its LLVM-IR check kernel agrees bit for bit with a plain-integer
reference, and the decoder corrects frames, refills lanes and warm-starts like the float one."""

from __future__ import annotations

import numba as nb
import numpy as np
import pytest

from ldpc_support import bsc_frames
from qkdnet.postprocess.ldpc import LdpcBob, LdpcPlan, reconcile_local
from qkdnet.postprocess.ldpc_codes import build_code, load_codes
from qkdnet.postprocess.ldpc_decoder import decode_frames
from qkdnet.postprocess.ldpc_fixed import (
    _C,
    _K,
    IDENTITY,
    LANES,
    MSG_MAX,
    SCALE,
    bp_check,
    decode_frames_fixed,
)


@nb.njit
def _run_check(post, msg, q, fwd, cols, s, deg, sgn, par):
    bp_check(post, msg, q, fwd, cols, s, deg, sgn, par)


def _sat(v: np.ndarray) -> np.ndarray:
    return np.clip(v, -32768, 32767)


def _corr(z: np.ndarray) -> np.ndarray:
    return np.maximum(np.maximum(_C[0] - (z * _K[0] >> 16), _C[1] - (z * _K[1] >> 16)), 0)


def _boxplus(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    m = _sat(_sat(lo + _corr(a + b)) - _corr(hi - lo))
    return np.maximum(m, 0)


def _reference(post, msg, cols, s, deg, sgn):
    """The kernel's arithmetic in plain int64 numpy (saturation written out)."""
    post, msg = post.astype(np.int64), msg.astype(np.int64)
    acc = np.full(LANES, IDENTITY)
    fwd = [acc]
    sign = sgn.astype(np.int64)
    q = []
    for k in range(deg):
        x = _sat(post[cols[s + k]] - msg[s + k])
        q.append(x)
        acc = _boxplus(acc, np.abs(x))
        fwd.append(acc)
        sign = sign ^ (x >> 15)
    back = np.full(LANES, IDENTITY)
    parity = sgn.astype(np.int64)
    for k in range(deg - 1, -1, -1):
        x = q[k]
        mag = np.minimum(_boxplus(fwd[k], back), MSG_MAX)
        neg = sign ^ (x >> 15)
        r = (mag ^ neg) - neg
        y = _sat(x + r)
        msg[s + k] = r
        post[cols[s + k]] = y
        back = _boxplus(back, np.abs(x))
        parity = parity ^ (y >> 15)
    return post, msg, parity


@pytest.mark.parametrize("deg", [1, 2, 7, 40])
def test_check_kernel_matches_integer_reference(deg: int) -> None:
    rng = np.random.default_rng(deg)
    n, s = 64, 3
    edges = s + deg + 2
    cols = rng.choice(n, size=edges, replace=False).astype(np.int32)
    post = rng.integers(-32768, 32768, (n, LANES)).astype(np.int16)
    post[:4] = [[32767], [-32768], [0], [-1]]  # extremes: saturation, abs(−32768), zero sign
    msg = rng.integers(-MSG_MAX, MSG_MAX + 1, (edges, LANES)).astype(np.int16)
    small = rng.random((edges, LANES)) < 0.5  # many messages near zero, where c() matters
    msg[small] = (msg[small] // 200).astype(np.int16)
    sgn = np.where(rng.random(LANES) < 0.5, -1, 0).astype(np.int16)
    want_post, want_msg, want_par = _reference(post, msg, cols, s, deg, sgn)
    q = np.empty((deg, LANES), np.int16)
    fwd = np.empty((deg + 1, LANES), np.int16)
    par = np.empty(LANES, np.int16)
    _run_check(post, msg, q, fwd, cols, s, deg, sgn, par)
    assert np.array_equal(post, want_post)
    assert np.array_equal(msg, want_msg)
    assert np.array_equal(par, want_par)


def test_box_plus_approximation_is_close_to_the_exact_rule() -> None:
    """|a ⊞ b| in fixed point vs 2·atanh(tanh(a/2)·tanh(b/2)): within 0.055 LLR (two
    corrections of error ≤ 0.026 each, plus rounding; 0.050 measured)."""
    a = np.arange(0, 12 * SCALE, 7)
    for b_llr in (0.05, 0.3, 1.0, 2.5, 6.0):
        b = np.full_like(a, round(b_llr * SCALE))
        got = _boxplus(a, b) / SCALE
        exact = 2 * np.arctanh(np.tanh(a / SCALE / 2) * np.tanh(b / SCALE / 2))
        assert np.abs(got - exact).max() < 0.055


def test_fixed_decoder_corrects_frames_and_reports_hopeless_ones() -> None:
    code = load_codes()[0]  # rate 0.5: threshold near QBER 10 %
    count = LANES + 5  # lanes refill as frames finish
    qbers = [0.04] * count
    qbers[2] = qbers[LANES + 1] = 0.25
    x, syn, llr = bsc_frames(code, count, qbers, np.random.default_rng(21))
    hard, its = decode_frames_fixed(code.row_ptr, code.cols, syn, llr, 40)
    _, its_float = decode_frames(code.row_ptr, code.cols, syn, llr, 40)
    for i in range(count):
        if qbers[i] == 0.25:
            assert its[i] == -1 and not np.array_equal(code.syndrome(hard[i]), syn[i])
        else:
            assert its[i] > 0 and np.array_equal(hard[i], x[i])
            assert abs(its[i] - its_float[i]) <= 3  # about the float decoder's iterations


def test_fixed_decoder_rejects_float_messages() -> None:
    code = load_codes()[0]
    _, syn, llr = bsc_frames(code, 1, [0.03], np.random.default_rng(1))
    with pytest.raises(ValueError, match="int16"):
        decode_frames_fixed(
            code.row_ptr, code.cols, syn, llr, 5, messages=np.zeros((1, code.edges), np.float32)
        )


@pytest.mark.parametrize("decoder", ["fixed", "float"])
def test_reconciliation_with_either_decoder(decoder: str) -> None:
    rng = np.random.default_rng(5)
    qber = 0.03
    plan = LdpcPlan.derive(10**8, qber, codes="fast")
    alice = rng.integers(0, 2, 3 * plan.frame_key_bits, dtype=np.uint8)
    bob = alice ^ (rng.random(alice.size) < qber).astype(np.uint8)
    result = reconcile_local(alice, bob, qber, rng, codes="fast", decoder=decoder)
    assert result.failed_frames.size == 0
    assert np.array_equal(result.corrected, alice)
    assert result.efficiency(qber) < 1.25


def test_bob_names_the_decoders_on_a_bad_choice() -> None:
    plan = LdpcPlan.derive(1000, 0.03)
    key = np.zeros(1000, np.uint8)
    with pytest.raises(ValueError, match="fixed, float"):
        LdpcBob(key, plan, decoder="double")
    with pytest.raises(ValueError, match="min-sum"):
        LdpcBob(key, plan, min_sum=True)


def test_fixed_decoder_counts_past_16_bits_of_checks() -> None:
    """A code with more than 2^15 checks (the unsatisfied-check counters are 32-bit): a rate-0.5
    code of n = 70000 (35000 checks) corrects a frame at QBER 3 %."""
    code = build_code(0.5, 70_000, np.random.default_rng(3))
    assert code.m > 32767
    x, syn, llr = bsc_frames(code, 2, [0.03, 0.03], np.random.default_rng(4))
    hard, its = decode_frames_fixed(code.row_ptr, code.cols, syn, llr, 60)
    assert (its > 0).all() and np.array_equal(hard, x)
