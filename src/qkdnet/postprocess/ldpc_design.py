"""Degree-distribution design for the BSC: discretised density evolution + iterated LP.

Used by ``scripts/make_ldpc_codes.py --design`` for the high-rate codes (QBER ≤ 3 %); the
shipped tables live in :mod:`qkdnet.postprocess.ldpc_codes`.

Density evolution of sum-product decoding (Richardson, Shokrollahi, Urbanke, IEEE Trans. IT 47,
619 (2001), "RSU") on LLRs quantised to a grid of step ``DELTA`` (Chung, Forney, Richardson,
Urbanke, IEEE Comm. Lett. 5, 58 (2001)): the variable-node rule is a convolution (FFT), the
check-node rule a pairwise table lookup of the quantised box-plus, applied j − 1 times by repeated
squaring. All-zero word, BSC with crossover q: L₀ = ±ln((1 − q)/q).

Design (RSU Sec. V, hill climbing by linear programming): for a fixed concentrated ρ and design
QBER q, run DE with the current λ and keep the check-to-variable densities Q_ℓ of every
iteration. The error probability of the variable-to-check messages at iteration ℓ is
Σ_i λ_i e_i(ℓ), e_i(ℓ) = P(P₀ ⊛ Q_ℓ^{⊛(i−1)} < 0), linear in λ for fixed Q_ℓ. The LP
maximises the rate (Σ λ_i / i) subject to Σ_i λ_i e_i(ℓ) ≤ old(ℓ) + γ·(old(ℓ−1) − old(ℓ))
(keep a share 1 − γ of each iteration's progress), a trust region |λ − λ_old| ≤ t, stability
λ₂ ρ'(1) ≤ 1 / (2√(q(1 − q))) (RSU Thm. 5) and the zigzag room of the degree-2 variables
(at most m − 1 of them: λ₂ / 2 ≤ Σ_j ρ_j / j). A step is kept only if the new λ still
converges at q within ``MAX_DE_ITER`` iterations (the decoder stops after 60 layered
iterations, about twice as many flooding ones); otherwise γ and t are halved.

Measured (docs/benchmarks.md): this DE's threshold of the Table I rate-0.9 code is 0.0109, the
QBER at which half of its n = 32768 frames decode is ≈ 0.011, while the Gaussian approximation
(Chung, Richardson, Urbanke, IEEE Trans. IT 47, 657 (2001)) says 0.0125: at these rates the
Gaussian approximation is too optimistic to design with.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.optimize import linprog

#: LLR quantisation step and half-width (bins −K..K, saturating at ±K·DELTA = ±25).
DELTA = 0.1
K = 250
NBINS = 2 * K + 1
#: DE iterations within which a design must converge (error probability < TARGET_ERROR).
MAX_DE_ITER = 400
TARGET_ERROR = 1e-7


@functools.cache
def _boxplus_table() -> np.ndarray:
    """Bin of 2 atanh(tanh(a/2) tanh(b/2)) for every pair of bins (a, b)."""
    vals = np.arange(-K, K + 1) * DELTA
    t = np.tanh(vals[:, None] / 2.0) * np.tanh(vals[None, :] / 2.0)
    out = 2.0 * np.arctanh(np.clip(t, -1.0 + 1e-15, 1.0 - 1e-15))
    return np.clip(np.rint(out / DELTA), -K, K).astype(np.int64) + K


def boxplus(pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """Density of the box-plus of two independent quantised LLRs."""
    ia = np.flatnonzero(pa > 1e-14)
    ib = np.flatnonzero(pb > 1e-14)
    w = np.outer(pa[ia], pb[ib])
    idx = _boxplus_table()[np.ix_(ia, ib)]
    return np.bincount(idx.ravel(), weights=w.ravel(), minlength=NBINS)


def _boxpow(p: np.ndarray, e: int) -> np.ndarray:
    """p box-plus-ed e times (e ≥ 1), by repeated squaring."""
    result: np.ndarray | None = None
    base = p
    while e:
        if e & 1:
            result = base if result is None else boxplus(result, base)
        e >>= 1
        if e:
            base = boxplus(base, base)
    assert result is not None
    return result


def check_density(p: np.ndarray, rho: dict[int, float]) -> np.ndarray:
    """Check-to-variable density for variable-to-check density p (edge-perspective ρ)."""
    out = np.zeros(NBINS)
    prev_e, prev = -1, None
    for j in sorted(rho):
        cur = boxplus(prev, p) if prev is not None and j - 1 == prev_e + 1 else _boxpow(p, j - 1)
        out += rho[j] * cur
        prev_e, prev = j - 1, cur
    return out


def channel_density(q: float) -> np.ndarray:
    """±L₀ with probabilities 1 − q and q (all-zero word)."""
    p0 = np.zeros(NBINS)
    k = round(math.log((1.0 - q) / q) / DELTA)
    p0[K + k] += 1.0 - q
    p0[K - k] += q
    return p0


def _degree_convolutions(q: float, qc: np.ndarray, degrees: list[int]) -> list[np.ndarray]:
    """P₀ ⊛ Q^{⊛(i−1)} for each degree i, saturated to the grid."""
    fft_n = 1 << math.ceil(math.log2(max(degrees) * NBINS + 1))
    f0 = np.fft.rfft(channel_density(q), fft_n)
    fq = np.fft.rfft(qc, fft_n)
    out = []
    for i in degrees:
        full = np.maximum(np.fft.irfft(f0 * fq ** (i - 1), fft_n), 0.0)
        zero = i * K  # bin of LLR 0 in the i-fold sum
        seg = full[zero - K : zero + K + 1].copy()
        seg[0] += full[: zero - K].sum()
        seg[-1] += full[zero + K + 1 :].sum()
        out.append(seg / seg.sum())
    return out


def error_probability(p: np.ndarray) -> float:
    """P(LLR < 0) + ½ P(LLR = 0)."""
    return float(p[:K].sum() + 0.5 * p[K])


def evolve(
    lam: dict[int, float], rho: dict[int, float], q: float, max_iter: int = MAX_DE_ITER
) -> tuple[bool, list[np.ndarray]]:
    """Run DE; return (converged, the check-to-variable densities of every iteration)."""
    degrees = sorted(lam)
    p0 = channel_density(q)
    pv = p0
    trace: list[np.ndarray] = []
    last, stuck = 1.0, 0
    for _ in range(max_iter):
        qc = check_density(pv, rho)
        trace.append(qc)
        parts = _degree_convolutions(q, qc, degrees)
        pv = sum(lam[d] * part for d, part in zip(degrees, parts, strict=True))
        e = error_probability(pv)
        if e < TARGET_ERROR:
            return True, trace
        stuck = stuck + 1 if e > last * (1.0 - 1e-5) else 0
        if stuck > 20:
            return False, trace
        last = e
    return False, trace


def threshold(
    lam: dict[int, float], rho: dict[int, float], lo: float, hi: float, tol: float = 2e-5
) -> float:
    """Largest QBER in [lo, hi] at which :func:`evolve` converges (bisection)."""
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if evolve(lam, rho, mid)[0] else (lo, mid)
    return lo


def rate(lam: dict[int, float], rho: dict[int, float]) -> float:
    """Design rate 1 − (Σ ρ_j / j) / (Σ λ_i / i)."""
    return 1.0 - sum(r / j for j, r in rho.items()) / sum(v / i for i, v in lam.items())


def concentrated_rho(avg: float) -> dict[int, float]:
    """Edge-perspective ρ with node degrees ⌊avg⌋ and ⌈avg⌉ only, node-average ``avg``."""
    lo = math.floor(avg)
    if avg == lo:
        return {lo: 1.0}
    e_hi = (avg - lo) * (lo + 1)
    e_lo = (1.0 - (avg - lo)) * lo
    return {lo: e_lo / (e_lo + e_hi), lo + 1: e_hi / (e_lo + e_hi)}


def _feasible_start(
    lam: dict[int, float], rho: dict[int, float], q: float, heavy: int
) -> dict[int, float]:
    """``lam`` mixed toward {3: ¼, heavy: ¾} (lower rate, higher threshold) until DE converges
    at q; excess degree-2 mass beyond the zigzag room moved to degree 3."""
    cap2 = 2.0 * sum(r / j for j, r in rho.items()) * 0.99
    for w in np.arange(0.0, 1.0001, 0.05):
        out = {k: (1.0 - w) * v for k, v in lam.items()}
        out[3] = out.get(3, 0.0) + 0.25 * w
        out[heavy] = out.get(heavy, 0.0) + 0.75 * w
        if out.get(2, 0.0) > cap2:
            out[3] += out[2] - cap2
            out[2] = cap2
        if evolve(out, rho, q)[0]:
            return out
    raise ValueError(f"no feasible start at QBER {q}")


def optimise(
    start: dict[int, float],
    rho: dict[int, float],
    q: float,
    max_degree: int,
    steps: int = 12,
    gamma: float = 0.3,
    trust: float = 0.03,
    heavy: int = 12,
) -> dict[int, float]:
    """λ of (locally) largest rate that converges at q for this ρ (see the module docstring)."""
    degrees = np.arange(2, max_degree + 1)
    cur = _feasible_start({k: v for k, v in start.items() if k <= max_degree}, rho, q, heavy)
    lam_v = np.array([cur.get(int(d), 0.0) for d in degrees])
    inv_c = sum(r / j for j, r in rho.items())
    stab = 1.0 / (2.0 * math.sqrt(q * (1.0 - q))) / sum(r * (j - 1) for j, r in rho.items())
    e0 = error_probability(channel_density(q))
    two = (degrees == 2).astype(float)[None, :]
    for _ in range(steps):
        lam_d = {int(d): float(x) for d, x in zip(degrees, lam_v, strict=True) if x > 1e-7}
        _, trace = evolve(lam_d, rho, q)
        errs = np.array(
            [
                [error_probability(p) for p in _degree_convolutions(q, qc, degrees.tolist())]
                for qc in trace
            ]
        )
        old = errs @ lam_v
        prev = np.concatenate([[e0], old[:-1]])
        keep = old > 1e-9
        bound = old + gamma * np.maximum(prev - old, 0.0)
        res = linprog(
            -1.0 / degrees,
            A_ub=np.vstack([errs[keep], two, two / 2.0]),
            b_ub=np.concatenate([bound[keep], [stab], [inv_c * 0.999]]),
            A_eq=np.ones((1, degrees.size)),
            b_eq=[1.0],
            bounds=[(max(0.0, x - trust), min(1.0, x + trust)) for x in lam_v],
            method="highs",
        )
        if not res.success:
            break
        new = np.where(res.x < 1e-7, 0.0, res.x)
        new /= new.sum()
        if np.abs(new - lam_v).max() < 1e-5:
            break
        lam_new = {int(d): float(x) for d, x in zip(degrees, new, strict=True) if x > 0.0}
        if evolve(lam_new, rho, q)[0]:
            lam_v = new
        else:
            gamma, trust = gamma / 2.0, trust / 2.0
            if trust < 1e-3:
                break
    return {int(d): round(float(x), 5) for d, x in zip(degrees, lam_v, strict=True) if x > 1e-5}
