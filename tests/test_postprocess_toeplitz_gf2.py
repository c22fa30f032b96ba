"""The carry-less GF(2) Toeplitz product: intrinsics, block plan, and bit-exactness at every
tiling (against the explicit matrix on small inputs and the FFT path on large ones)."""

import numba as nb
import numpy as np
import pytest

from qkdnet.postprocess import clmul as clmul_module
from qkdnet.postprocess.amplification import seed_length, toeplitz_direct, toeplitz_hash
from qkdnet.postprocess.clmul import CLMUL_LANES, HAS_CLMUL
from qkdnet.postprocess.toeplitz_gf2 import plan

pytestmark = pytest.mark.skipif(not HAS_CLMUL, reason="this CPU has no PCLMULQDQ (x86 only)")


def _clmul_reference(a: int, b: int) -> tuple[int, int]:
    r = 0
    for i in range(64):
        if (b >> i) & 1:
            r ^= a << i
    return r & (2**64 - 1), r >> 64


@nb.njit
def _one(a, b):
    return clmul_module.clmul(a, b)


@nb.njit
def _dot_512(a, i, b, j, count):
    return clmul_module._clmul_dot_512(a, i, b, j, count)


@nb.njit
def _dot_256(a, i, b, j, count):
    return clmul_module._clmul_dot_256(a, i, b, j, count)


@nb.njit
def _dot_scalar(a, i, b, j, count):
    return clmul_module._clmul_dot_scalar(a, i, b, j, count)


def test_clmul_matches_schoolbook_polynomial_product() -> None:
    rng = np.random.default_rng(1)
    words = rng.integers(0, 2**64, (200, 2), dtype=np.uint64, endpoint=False)
    words[0] = (2**64 - 1, 2**64 - 1)
    for a, b in words:
        assert tuple(int(v) for v in _one(a, b)) == _clmul_reference(int(a), int(b))


@pytest.mark.parametrize(
    "dot",
    [_dot_scalar,
     pytest.param(_dot_256, marks=pytest.mark.skipif(
         CLMUL_LANES < 4, reason="this CPU has no VPCLMULQDQ")),
     pytest.param(_dot_512, marks=pytest.mark.skipif(
         CLMUL_LANES < 8, reason="this CPU has no VPCLMULQDQ on 512-bit registers"))],
)  # fmt: skip
def test_clmul_dot_is_xor_of_products(dot) -> None:
    rng = np.random.default_rng(2)
    a = rng.integers(0, 2**64, 80, dtype=np.uint64)
    b = rng.integers(0, 2**64, 80, dtype=np.uint64)
    for i, j, count in [(0, 0, 8), (3, 5, 16), (11, 0, 64), (1, 2, 0)]:
        lo = hi = 0
        for k in range(count):
            p, q = _clmul_reference(int(a[i + k]), int(b[j + k]))
            lo, hi = lo ^ p, hi ^ q
        assert tuple(int(v) for v in dot(a, i, b, j, count)) == (lo, hi)


def test_plan_tiles_cover_the_matrix_with_valid_leaves() -> None:
    for n, m in [(1, 1), (64, 64), (65, 1), (10**5, 6 * 10**4), (10**6, 5 * 10**5), (777, 10**6)]:
        w, leaf, rows, cols = plan(n, m)
        assert leaf % 8 == 0 and leaf <= 64 and w % leaf == 0
        assert (w // leaf) & (w // leaf - 1) == 0  # leaf·2^k: Karatsuba halves down to a leaf
        assert rows * w * 64 >= m and cols * w * 64 >= n


def test_gf2_equals_direct_at_word_and_block_boundaries() -> None:
    rng = np.random.default_rng(3)
    sizes = [(1, 1), (1, 64), (64, 1), (63, 65), (64, 64), (65, 63), (512, 512), (513, 4000),
             (4000, 513), (3000, 2999), (8192, 64)]  # fmt: skip
    sizes += [(int(rng.integers(1, 2500)), int(rng.integers(1, 2500))) for _ in range(30)]
    for n, m in sizes:
        x = rng.integers(0, 2, n, dtype=np.uint8)
        s = rng.integers(0, 2, seed_length(n, m), dtype=np.uint8)
        assert np.array_equal(toeplitz_hash(x, s, m, "gf2"), toeplitz_direct(x, s, m)), (n, m)


def test_gf2_equals_fft_on_multi_level_karatsuba_sizes() -> None:
    """Sizes whose plans recurse several Karatsuba levels and tile 1×3, 4×1, 2×3 and 3×2 blocks."""
    rng = np.random.default_rng(4)
    for n, m in [
        (300_001, 100_003),
        (123_457, 400_000),
        (200_000, 190_000),
        (65_536, 65_536),
        (29_993, 20_000),
        (20_000, 28_882),
    ]:
        assert plan(n, m)[2:] in {(1, 3), (4, 1), (1, 1), (2, 3), (3, 2)}
        x = rng.integers(0, 2, n, dtype=np.uint8)
        s = rng.integers(0, 2, seed_length(n, m), dtype=np.uint8)
        assert np.array_equal(toeplitz_hash(x, s, m, "gf2"), toeplitz_hash(x, s, m, "fft"))


def _fresh_process(script: str, clmul_mode: str) -> str:
    """stdout of ``script`` run by this Python with QKDNET_CLMUL set (fails on a non-zero exit)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "QKDNET_CLMUL": clmul_mode}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.parametrize(("mode", "lanes"), [("scalar", 1), ("256", 4)])
def test_narrower_clmul_paths_are_exact_too(mode: str, lanes: int) -> None:
    """CPUs with PCLMULQDQ but no VPCLMULQDQ take the scalar schoolbook, those without 512-bit
    registers the 256-bit one: forced here in a fresh process (a forced mode compiles its
    kernels afresh, never from the widest build's cache)."""
    if lanes > CLMUL_LANES:
        pytest.skip(f"this CPU cannot run the {mode} path")
    script = (
        "import numpy as np\n"
        "from qkdnet.postprocess.amplification import seed_length, toeplitz_direct, toeplitz_hash\n"
        "from qkdnet.postprocess.clmul import CLMUL_LANES\n"
        f"assert CLMUL_LANES == {lanes}, CLMUL_LANES\n"
        "rng = np.random.default_rng(7)\n"
        "for n, m in [(1, 1), (64, 65), (3000, 2000), (4000, 513), (9000, 300)]:\n"
        "    x = rng.integers(0, 2, n, dtype=np.uint8)\n"
        "    s = rng.integers(0, 2, seed_length(n, m), dtype=np.uint8)\n"
        "    assert np.array_equal(toeplitz_hash(x, s, m, 'gf2'), toeplitz_direct(x, s, m))\n"
        "print('exact')\n"
    )
    assert _fresh_process(script, mode).strip() == "exact"


def test_clmul_off_falls_back_to_fft() -> None:
    """Without a carry-less multiply, ``auto`` takes the FFT and ``gf2`` is refused clearly."""
    script = (
        "import numpy as np\n"
        "from qkdnet.postprocess.amplification import toeplitz_direct, toeplitz_hash\n"
        "x = np.array([1, 0, 1, 1], np.uint8); s = np.array([1, 1, 0, 1, 0], np.uint8)\n"
        "assert np.array_equal(toeplitz_hash(x, s, 2), toeplitz_direct(x, s, 2))\n"
        "try:\n"
        "    toeplitz_hash(x, s, 2, 'gf2')\n"
        "except ValueError as e:\n"
        "    print(e)\n"
    )
    assert "needs the PCLMULQDQ instruction" in _fresh_process(script, "off")


def test_an_unknown_clmul_mode_is_refused_clearly() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "QKDNET_CLMUL": "avx9000"}
    out = subprocess.run([sys.executable, "-c", "import qkdnet.postprocess.clmul"], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode != 0
    assert "QKDNET_CLMUL must be one of auto, 256, scalar, off (got 'avx9000')" in out.stderr
