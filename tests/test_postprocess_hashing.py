"""Privacy amplification (Toeplitz hashing: FFT and carry-less GF(2) paths) and the verification
hash, bit for bit."""

import numpy as np
import pytest

from qkdnet.postprocess.amplification import (
    PA_FAMILIES,
    modified_toeplitz_direct,
    privacy_hash,
    seed_length,
    toeplitz_direct,
    toeplitz_hash,
)
from qkdnet.postprocess.clmul import HAS_CLMUL
from qkdnet.postprocess.verification import tag_bits, verification_hash

needs_clmul = pytest.mark.skipif(not HAS_CLMUL, reason="this CPU has no PCLMULQDQ (x86 only)")
METHODS = ["fft", pytest.param("gf2", marks=needs_clmul)]


@pytest.mark.parametrize("method", METHODS)
def test_toeplitz_equals_direct_product(method: str) -> None:
    rng = np.random.default_rng(11)
    for _ in range(300):
        n, m = int(rng.integers(1, 400)), int(rng.integers(1, 400))
        x = rng.integers(0, 2, n, dtype=np.uint8)
        s = rng.integers(0, 2, seed_length(n, m), dtype=np.uint8)
        assert np.array_equal(toeplitz_hash(x, s, m, method), toeplitz_direct(x, s, m))


@pytest.mark.parametrize("method", METHODS)
def test_toeplitz_all_ones_worst_case(method: str) -> None:
    """All-ones inputs give the largest convolution sums (n), the worst case for rounding."""
    n, m = 5000, 3000
    x = np.ones(n, dtype=np.uint8)
    s = np.ones(seed_length(n, m), dtype=np.uint8)
    assert np.array_equal(toeplitz_hash(x, s, m, method), toeplitz_direct(x, s, m))


def test_toeplitz_is_linear_and_checks_seed() -> None:
    rng = np.random.default_rng(2)
    n, m = 1000, 400
    x, y = rng.integers(0, 2, (2, n), dtype=np.uint8)
    s = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    assert np.array_equal(
        toeplitz_hash(x ^ y, s, m), toeplitz_hash(x, s, m) ^ toeplitz_hash(y, s, m)
    )
    with pytest.raises(ValueError, match="seed must have"):
        toeplitz_hash(x, s[:-1], m)
    with pytest.raises(ValueError, match="method must be one of"):
        toeplitz_hash(x, s, m, "ntt")
    # values other than 0 and 1, signed or unsigned, are refused whatever the dtype
    for bad in (np.where(x == 1, 2, 0).astype(np.uint8), x.astype(np.int64) - 1, x + 0.5):
        with pytest.raises(ValueError, match="x must hold only 0 and 1"):
            toeplitz_hash(bad, s, m)
    assert np.array_equal(toeplitz_hash(x.astype(bool), s, m), toeplitz_hash(x, s, m))


@pytest.mark.parametrize("method", METHODS)
def test_modified_toeplitz_equals_whole_matrix_product(method: str) -> None:
    """(I_m | T')·x bit for bit against the explicit matrix, every m from 0 to n included."""
    rng = np.random.default_rng(12)
    cases = [(n, m) for n in range(1, 40) for m in range(n + 1)]
    cases += [(int(n), int(rng.integers(0, n + 1))) for n in rng.integers(40, 3000, 60)]
    for n, m in cases:
        x = rng.integers(0, 2, n, dtype=np.uint8)
        s = rng.integers(0, 2, seed_length(n, m, "modified-toeplitz"), dtype=np.uint8)
        got = privacy_hash(x, s, m, "modified-toeplitz", method)
        assert np.array_equal(got, modified_toeplitz_direct(x, s, m)), (n, m)


def test_modified_toeplitz_is_two_universal_on_a_small_family() -> None:
    """A pair of distinct inputs collides on exactly 2^(n−1−m) of the 2^(n−1) seeds (probability
    2^−m) when they differ in the last n − m bits, and on none when they differ only in the first
    m (Hayashi–Tsurumaru 2016): checked exhaustively for n = 6, m = 3."""
    n, m = 6, 3
    seeds = [np.array([(k >> b) & 1 for b in range(n - 1)], np.uint8) for k in range(2 ** (n - 1))]
    inputs = [np.array([(k >> b) & 1 for b in range(n)], np.uint8) for k in range(2**n)]
    hashes = np.array([[privacy_hash(x, s, m).tolist() for s in seeds] for x in inputs])
    for a in range(2**n):
        for b in range(a + 1, 2**n):
            collisions = int(np.all(hashes[a] == hashes[b], axis=1).sum())
            tail_differs = np.any(inputs[a][m:] != inputs[b][m:])
            assert collisions == (2 ** (n - 1 - m) if tail_differs else 0), (a, b)


def test_privacy_hash_families_and_errors() -> None:
    rng = np.random.default_rng(4)
    n, m = 1000, 400
    x = rng.integers(0, 2, n, dtype=np.uint8)
    assert PA_FAMILIES[0] == "modified-toeplitz"
    assert seed_length(n, m, "modified-toeplitz") == n - 1
    assert seed_length(n, n, "modified-toeplitz") == 0
    assert seed_length(n, m) == seed_length(n, m, "toeplitz") == n + m - 1
    s = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    assert np.array_equal(privacy_hash(x, s, m, "toeplitz"), toeplitz_hash(x, s, m))
    assert np.array_equal(privacy_hash(x, np.zeros(0, np.uint8), n), x)
    with pytest.raises(ValueError, match="seed must have 999 bits"):
        privacy_hash(x, s, m)
    with pytest.raises(ValueError, match="output length must be in"):
        privacy_hash(x, s[: n - 1], n + 1)
    with pytest.raises(ValueError, match="family must be one of modified-toeplitz, toeplitz"):
        privacy_hash(x, s, m, "sha256")
    with pytest.raises(ValueError, match="family must be one of"):
        seed_length(n, m, "trevisan")


def test_verification_hash_matches_direct_and_detects_errors() -> None:
    rng = np.random.default_rng(5)
    t = tag_bits(1e-15)
    assert t == 50
    for _ in range(50):
        n = int(rng.integers(1, 700))
        k = rng.integers(0, 2, n, dtype=np.uint8)
        s = rng.integers(0, 2, n + t - 1, dtype=np.uint8)
        direct = np.array([(k & s[i : i + n]).sum() & 1 for i in range(t)], dtype=np.uint8)
        assert np.array_equal(verification_hash(k, s, t), direct)
        k2 = k.copy()
        k2[int(rng.integers(n))] ^= 1
        assert not np.array_equal(verification_hash(k2, s, t), direct) or n == 0


def test_fft_toeplitz_four_step_sizes_match_direct() -> None:
    """Shapes where both four-step factors exceed 1 and are mixed-radix, incl. odd n + m − 1."""
    rng = np.random.default_rng(4)
    for n, m in [(2999, 1500), (4097, 2047), (1, 6000), (6000, 1), (3125, 3125)]:
        x = rng.integers(0, 2, n, dtype=np.uint8)
        s = rng.integers(0, 2, seed_length(n, m), dtype=np.uint8)
        assert np.array_equal(toeplitz_hash(x, s, m, "fft"), toeplitz_direct(x, s, m))


def test_fft_toeplitz_split_fallback_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """If rounding were unsafe, splitting x into halves still gives the exact product."""
    import qkdnet.postprocess.amplification as amp

    real = amp._convolve_slice
    monkeypatch.setattr(
        amp, "_convolve_slice", lambda s, x, m: None if x.size > 100 else real(s, x, m)
    )
    rng = np.random.default_rng(6)
    n, m = 1000, 700
    x = rng.integers(0, 2, n, dtype=np.uint8)
    s = rng.integers(0, 2, seed_length(n, m), dtype=np.uint8)
    assert np.array_equal(amp.toeplitz_hash(x, s, m, "fft"), toeplitz_direct(x, s, m))
