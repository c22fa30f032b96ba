"""The carry-less GF(2) Toeplitz product: intrinsics, block plan, and bit-exactness at every
tiling (against the explicit matrix on small inputs and the FFT path on large ones)."""

import hashlib

import numba as nb
import numpy as np
import pytest

from qkdnet.postprocess import clmul as clmul_module
from qkdnet.postprocess import toeplitz_gf2
from qkdnet.postprocess.amplification import seed_length, toeplitz_direct, toeplitz_hash
from qkdnet.postprocess.clmul import CLMUL_LANES, HAS_CLMUL
from qkdnet.postprocess.toeplitz_gf2 import middle_product_words, plan
from qkdnet.postprocess.xor_words import xor_words

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


@nb.njit
def _diagonals(a, i, v, jv, count, out, o):
    clmul_module.clmul_diagonals(a, i, v, jv, count, out, o)


@nb.njit
def _diagonals_short(a, i, v, jv, count, out, o):
    clmul_module.clmul_diagonals_short(a, i, v, jv, count, out, o)


@pytest.mark.skipif(CLMUL_LANES < 4, reason="this CPU has no VPCLMULQDQ")
@pytest.mark.parametrize(("kernel", "vectors"), [(_diagonals, 2), (_diagonals_short, 1)])
def test_clmul_diagonals_are_the_product_diagonals(kernel, vectors) -> None:
    """d(p) = XOR_j a[i + p − j] ⊗ v[jv + j] for p < vectors·lanes, as (lo, hi) pairs in
    order, and nothing written past them."""
    rng = np.random.default_rng(6)
    a = rng.integers(0, 2**64, 120, dtype=np.uint64)
    v = rng.integers(0, 2**64, 40, dtype=np.uint64)
    diagonals = vectors * CLMUL_LANES
    for i, jv, count in [(40, 0, 1), (50, 3, 13), (60, 0, 40), (70, 5, 0)]:
        out = np.zeros(4 * diagonals + 8, np.uint64)
        kernel(a, i, v, jv, count, out, 3)
        for p in range(diagonals):
            lo = hi = 0
            for j in range(count):
                q, r = _clmul_reference(int(a[i + p - j]), int(v[jv + j]))
                lo, hi = lo ^ q, hi ^ r
            assert (int(out[3 + 2 * p]), int(out[4 + 2 * p])) == (lo, hi), (i, count, p)
        assert not out[:3].any() and not out[3 + 2 * diagonals :].any()


@nb.njit
def _xor(out, o, a, i, b, j, count):
    xor_words(out, o, a, i, b, j, count)


def test_xor_words_on_vectors_and_tail_in_place_too() -> None:
    rng = np.random.default_rng(12)
    a = rng.integers(0, 2**64, 64, dtype=np.uint64)
    b = rng.integers(0, 2**64, 64, dtype=np.uint64)
    for count in range(0, 21):
        out = np.zeros(40, np.uint64)
        _xor(out, 3, a, 5, b, 1, count)
        assert np.array_equal(out[3 : 3 + count], a[5 : 5 + count] ^ b[1 : 1 + count])
        assert not out[:3].any() and not out[3 + count :].any()
        same = a.copy()
        _xor(same, 2, same, 2, b, 7, count)  # out is a, at the same offset
        assert np.array_equal(same[2 : 2 + count], a[2 : 2 + count] ^ b[7 : 7 + count])


def test_plan_tiles_cover_the_matrix_with_valid_leaves() -> None:
    for n, m in [(1, 1), (64, 64), (65, 1), (10**5, 6 * 10**4), (10**6, 5 * 10**5), (777, 10**6)]:
        w, leaf, rows, cols = plan(n, m)
        assert leaf in toeplitz_gf2._LEAVES and w % leaf == 0
        assert (w // leaf) & (w // leaf - 1) == 0  # leaf·2^k: Karatsuba halves down to a leaf
        assert rows * w * 64 >= m and cols * w * 64 >= n


def test_plan_is_the_least_modelled_work_of_every_leaf_and_level() -> None:
    """The array search against a plain loop over (leaf, k), in Python integers."""
    rng = np.random.default_rng(13)
    sizes = [(1, 1), (10**6, 5 * 10**5), (10**7, 5 * 10**6), (10**16, 10**15)]
    sizes += [(int(rng.integers(1, 10**9)), int(rng.integers(1, 10**9))) for _ in range(200)]
    for n, m in sizes:
        nw, mw = -(-n // 64), -(-m // 64)
        best = None
        for leaf in toeplitz_gf2._LEAVES:
            cost = toeplitz_gf2._leaf_products(leaf) + toeplitz_gf2._LEAF_OVERHEAD
            for k in range(toeplitz_gf2._MAX_LEVELS):
                w = leaf << k
                rows, cols = -(-mw // w), -(-nw // w)
                work = rows * cols * 3.0**k * cost
                if best is None or work < best[0]:
                    best = (work, (w, leaf, rows, cols))
                if w >= max(mw, nw):
                    break
        assert best is not None and plan(n, m) == best[1], (n, m)


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
        w, leaf, rows, cols = plan(n, m)
        assert w // leaf >= 4 and rows * w * 64 >= m and cols * w * 64 >= n  # ≥ 2 levels
        x = rng.integers(0, 2, n, dtype=np.uint8)
        s = rng.integers(0, 2, seed_length(n, m), dtype=np.uint8)
        assert np.array_equal(toeplitz_hash(x, s, m, "gf2"), toeplitz_hash(x, s, m, "fft"))


def _middle_product_reference(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bits 64W − 1 … 128W − 2 of the GF(2)[z] product of a (2W words) and v (W words), by
    Python integers: the middle product the kernels compute."""
    big_a = int.from_bytes(a.astype("<u8").tobytes(), "little")
    big_v = int.from_bytes(v.astype("<u8").tobytes(), "little")
    product = 0
    while big_v:
        low = big_v & -big_v
        product ^= big_a << (low.bit_length() - 1)
        big_v ^= low
    w = v.size
    middle = (product >> (64 * w - 1)) & ((1 << (64 * w)) - 1)
    return np.frombuffer(middle.to_bytes(8 * w, "little"), "<u8").astype(np.uint64)


def test_every_leaf_size_and_one_level_above_it_is_exact() -> None:
    """Each schoolbook size the plan may pick (the diagonal leaf's runs end at every possible
    remainder), alone and under one Karatsuba level, against a bignum product."""
    rng = np.random.default_rng(11)
    for leaf in toeplitz_gf2._LEAVES:
        for w in (leaf, 2 * leaf):
            u = rng.integers(0, 2**64, 2 * w + toeplitz_gf2._PAD_WORDS, dtype=np.uint64)
            v = rng.integers(0, 2**64, w, dtype=np.uint64)
            got = middle_product_words(u, v, w, 1, 1, leaf)
            assert np.array_equal(got, _middle_product_reference(u[: 2 * w], v)), (leaf, w)


def test_kernels_reloaded_from_numba_cache_give_the_same_product(tmp_path) -> None:
    """numba's on-disk cache once reloaded a literal-typed twin of the recursion wrongly and
    crashed the next process: two processes share one cache directory here, the second loads
    the kernels from it; both must match this process's product."""
    script = (
        "import hashlib, numpy as np\n"
        "from qkdnet.postprocess.toeplitz_gf2 import middle_product_words\n"
        "rng = np.random.default_rng(5)\n"
        "u = rng.integers(0, 2**64, 3 * 160 + 64, dtype=np.uint64)\n"
        "x = rng.integers(0, 2**64, 2 * 160, dtype=np.uint64)\n"
        "print(hashlib.sha256(middle_product_words(u, x, 160, 1, 2, 40).tobytes()).hexdigest())\n"
    )
    rng = np.random.default_rng(5)
    u = rng.integers(0, 2**64, 3 * 160 + 64, dtype=np.uint64)
    x = rng.integers(0, 2**64, 2 * 160, dtype=np.uint64)
    expected = hashlib.sha256(middle_product_words(u, x, 160, 1, 2, 40).tobytes()).hexdigest()
    for _ in range(2):
        assert _fresh_process(script, "auto", NUMBA_CACHE_DIR=str(tmp_path)).strip() == expected
    assert any(tmp_path.rglob("*.nbi")), "the first process wrote no cache"


def _fresh_process(script: str, clmul_mode: str, **env_extra: str) -> str:
    """stdout of ``script`` run by this Python with QKDNET_CLMUL (and ``env_extra``) set; fails
    on a non-zero exit."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "QKDNET_CLMUL": clmul_mode, **env_extra}
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
