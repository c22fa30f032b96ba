"""Privacy amplification (Toeplitz hashing: FFT and carry-less GF(2) paths) and the verification
hash, bit for bit."""

import numpy as np
import pytest

from qkdnet.postprocess.amplification import seed_length, toeplitz_direct, toeplitz_hash
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
