"""The code generator is deterministic and its codes are sound (small n so that it is fast)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from qkdnet.postprocess.ldpc_codes import DISTRIBUTIONS, load_code_file, save_code

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_ldpc_codes.py"


def _script():
    spec = importlib.util.spec_from_file_location("make_ldpc_codes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_same_seed_same_codes_other_seed_other_codes(tmp_path: Path) -> None:
    make = _script().make_codes
    a = make(2048, 7, [0.5, 0.8])
    b = make(2048, 7, [0.5, 0.8])
    c = make(2048, 8, [0.5, 0.8])
    for x, y, z in zip(a, b, c, strict=True):
        assert np.array_equal(x.cols, y.cols) and np.array_equal(x.modulated, y.modulated)
        assert not np.array_equal(x.cols, z.cols)
        save_code(x, tmp_path / "code.npz")
        back = load_code_file(tmp_path / "code.npz")
        assert np.array_equal(back.cols, x.cols) and back.rate == x.rate


def test_generated_code_matches_its_degree_distribution() -> None:
    code = _script().make_codes(2048, 3, [0.7])[0]
    lam, _ = DISTRIBUTIONS[0.7]
    deg = np.bincount(code.cols, minlength=code.n)
    # edge fraction on degree-2 variables within rounding of the Table I value
    assert abs(np.sum(deg[deg == 2]) / code.cols.size - lam[2]) < 0.01
    rows = np.repeat(np.arange(code.m), np.diff(code.row_ptr)).astype(np.int64)
    assert np.unique(rows * code.n + code.cols).size == code.cols.size  # no repeated edge
    check_deg = np.diff(code.row_ptr)
    assert check_deg.max() - check_deg.min() <= 1  # concentrated checks


def test_rate_091_code_has_no_4cycle_among_low_degree_variables() -> None:
    code = _script().make_codes(4096, 3, [0.91])[0]
    assert code.d == round(0.08 * 4096) < code.m
    rows = np.repeat(np.arange(code.m), np.diff(code.row_ptr))
    h = np.zeros((code.m, code.n), dtype=np.int32)
    h[rows, code.cols] = 1
    assert h.sum() == code.cols.size  # no repeated edge
    low = h[:, h.sum(axis=0) <= 3]
    shared = low.T @ low
    np.fill_diagonal(shared, 0)
    assert low.shape[1] > code.n // 2 and shared.max() <= 1
