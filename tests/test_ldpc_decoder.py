"""Frame-parallel LDPC decoder: agrees with Alice's words, refills lanes, warm-starts, and its
generated SIMD kernels are in sync with their generator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ldpc_support import bsc_frames
from qkdnet.postprocess.ldpc_codes import load_codes
from qkdnet.postprocess.ldpc_decoder import LANES, decode_frames
from qkdnet.postprocess.ldpc_fixed import decode_frames_fixed

ROOT = Path(__file__).resolve().parents[1]


def test_more_frames_than_lanes_each_decoded_or_reported_failed() -> None:
    code = load_codes()[0]  # rate 0.5: threshold near QBER 10 %
    rng = np.random.default_rng(11)
    count = LANES + 5  # lanes are refilled as frames finish
    qbers = [0.03] * count
    qbers[3] = qbers[LANES + 2] = 0.25  # hopeless frames among good ones
    x, syn, llr = bsc_frames(code, count, qbers, rng)
    hard, its = decode_frames(code.row_ptr, code.cols, syn, llr, 40)
    for i in range(count):
        if qbers[i] == 0.25:
            assert its[i] == -1
            assert not np.array_equal(code.syndrome(hard[i]), syn[i])
        else:
            assert its[i] > 0
            assert np.array_equal(hard[i], x[i])


def test_min_sum_rule_decodes_an_easy_frame() -> None:
    code = load_codes()[0]
    x, syn, llr = bsc_frames(code, 2, [0.01, 0.01], np.random.default_rng(12))
    hard, its = decode_frames(code.row_ptr, code.cols, syn, llr, 40, min_sum=True, alpha=0.8)
    assert (its > 0).all() and np.array_equal(hard, x)


@pytest.mark.parametrize(
    ("decode", "dtype"), [(decode_frames, np.float32), (decode_frames_fixed, np.int16)]
)
def test_warm_start_resumes_from_the_messages_left(decode, dtype) -> None:
    """Stopped after 2 iterations, resumed from its messages: converges in fewer iterations than
    a fresh start needs in total (float32 and 16-bit decoders)."""
    code = load_codes()[0]
    x, syn, llr = bsc_frames(code, 1, [0.07], np.random.default_rng(13))
    _, fresh = decode(code.row_ptr, code.cols, syn, llr, 60)
    assert fresh[0] > 3
    msgs = np.zeros((1, code.edges), dtype=dtype)
    _, first = decode(code.row_ptr, code.cols, syn, llr, 2, messages=msgs)
    assert first[0] == -1 and np.abs(msgs).max() > 0
    hard, resumed = decode(code.row_ptr, code.cols, syn, llr, 60, messages=msgs)
    assert 0 < resumed[0] < fresh[0]
    assert np.array_equal(hard[0], x[0])


def test_generated_lane_kernels_are_in_sync_with_the_generator() -> None:
    script = ROOT / "scripts" / "make_ldpc_lanes.py"
    done = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
