"""Finite-key decoy-state BB84: Lim, Curty, Walenta, Xu, Zbinden, Phys. Rev. A 89, 022307 (2014).

The protocol of Lim et al.: Alice sends one of three intensities μ1 > μ2 + μ3, μ2 > μ3 ≥ 0 with
probabilities p_k; the X basis makes the key and the Z basis estimates the phase error. From the
OBSERVED counts (detections n_{X,k}, n_{Z,k} per intensity and Z bit errors m_{Z,k}) the bound is

* Hoeffding-corrected counts (eq. 2 context): n^±_{X,k} = (e^k / p_k)(n_{X,k} ± δ(n_X, ε_sec/21)),
  δ(n, ε) = √(n/2 · ln(1/ε)); likewise m^±_{Z,k} with δ(m_Z, ε_sec/21);
* τ_n = Σ_k p_k e^{−k} k^n / n!, the probability that a pulse holds n photons;
* vacuum events (eq. 2): s_{X,0} ≥ τ0 (μ2 n^-_{X,μ3} − μ3 n^+_{X,μ2}) / (μ2 − μ3);
* single-photon events (eq. 3): s_{X,1} ≥ τ1 μ1 [n^-_{X,μ2} − n^+_{X,μ3}
  − (μ2² − μ3²)/μ1² (n^+_{X,μ1} − s_{X,0}/τ0)] / [μ1(μ2 − μ3) − μ2² + μ3²]; same for Z;
* single-photon errors in Z (eq. 4): v_{Z,1} ≤ τ1 (m^+_{Z,μ2} − m^-_{Z,μ3}) / (μ2 − μ3);
* phase error (eq. 5): φ_X ≤ v_{Z,1}/s_{Z,1} + γ(ε_sec, v_{Z,1}/s_{Z,1}, s_{Z,1}, s_{X,1}),
  γ(a, b, c, d) = √[ (c+d)(1−b)b / (c d ln 2) · log2( (c+d)/(c d (1−b) b) · 21²/a² ) ];
* key length (eq. 1): ℓ = ⌊s_{X,0} + s_{X,1}(1 − h(φ_X)) − λ_EC − 6 log2(21/ε_sec)
  − log2(2/ε_cor)⌋, with λ_EC the bits actually disclosed by error correction.

Lower bounds that come out negative are clipped at 0 (a count is never negative, so the clipped
value is still a valid bound). :func:`finite_key_rate` evaluates the bound on the EXPECTED counts
of a link (:mod:`qkdnet.keyrate.observables`) for N sent pulses, with λ_EC = f·n_X·h(E_X), and
optimises the intensities and the basis/intensity probabilities globally.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import differential_evolution, minimize

from qkdnet.keyrate.entropy import binary_entropy
from qkdnet.keyrate.observables import poisson_gains, poisson_observables

_EPS_SPLIT = 21.0  # Lim et al. 2014: every error term is ε_sec/21 (eq. 1 and Appendix)

#: (η, Y0) of the link as a function of the mean photon number per pulse sent: real detectors'
#: dead time and afterpulsing depend on how often they click, hence on the settings themselves
#: (:func:`qkdnet.keyrate.detector_effects.effective_channel`).
ChannelModel = Callable[[float], tuple[float, float]]


@dataclass(frozen=True)
class DecoyCounts:
    """Observed counts of one block of decoy-state BB84, per intensity class (μ1, μ2, μ3).

    ``n_x``: detections with both parties in X (key basis); ``n_z``: both in Z (test basis);
    ``m_z``: bit errors found in Z by the public comparison.
    """

    intensities: tuple[float, float, float]
    probs: tuple[float, float, float]
    n_x: tuple[int, int, int]
    n_z: tuple[int, int, int]
    m_z: tuple[int, int, int]

    def __post_init__(self) -> None:
        mu1, mu2, mu3 = self.intensities
        if not (mu3 >= 0.0 and mu2 > mu3 and mu1 > mu2 + mu3):
            raise ValueError(
                "intensities need mu1 > mu2 + mu3 and mu2 > mu3 >= 0 "
                f"(got {tuple(self.intensities)})"
            )
        if any(not (0.0 < p <= 1.0) for p in self.probs) or abs(sum(self.probs) - 1.0) > 1e-9:
            raise ValueError(f"probs must be in (0, 1] and sum to 1 (got {tuple(self.probs)})")
        for name in ("n_x", "n_z", "m_z"):
            values = getattr(self, name)
            if len(values) != 3 or any(v < 0 for v in values):
                raise ValueError(f"{name} needs three counts >= 0 (got {tuple(values)})")
        if any(m > n for m, n in zip(self.m_z, self.n_z, strict=True)):
            raise ValueError(f"m_z cannot exceed n_z (got m_z={self.m_z}, n_z={self.n_z})")


@dataclass(frozen=True)
class FiniteKeyBound:
    """The bounded quantities of Lim et al. 2014 and the resulting key length (``reason`` says
    why no key when ``key_length`` is 0, and is empty otherwise)."""

    s_x0: float
    s_x1: float
    s_z1: float
    v_z1: float
    phi_x: float
    key_length: int
    reason: str


def _hoeffding(n_total, eps: float):
    """δ(n, ε) = √(n/2 · ln(1/ε)) (Lim et al. 2014, Hoeffding's inequality); n may be an array."""
    return np.sqrt(np.asarray(n_total, dtype=float) / 2.0 * math.log(1.0 / eps))


def _tau(n: int, intensities, probs):
    """τ_n = Σ_k p_k e^{−k} k^n / n! (scalars or arrays of settings)."""
    return sum(p * np.exp(-k) * k**n for k, p in zip(intensities, probs, strict=True)) / float(
        math.factorial(n)
    )


def _corrected(counts, intensities, probs, delta, sign: float) -> list:
    """(e^k / p_k)(count_k ± δ), lower bounds clipped at 0."""
    out = [
        np.exp(k) / p * (c + sign * delta)
        for c, k, p in zip(counts, intensities, probs, strict=True)
    ]
    return [np.maximum(v, 0.0) for v in out] if sign < 0 else out


def _vacuum_and_single(counts, intensities, probs, eps: float, tau0, tau1):
    """(s_0, s_1) lower bounds from eqs. 2 and 3 of Lim et al. 2014 for one basis."""
    mu1, mu2, mu3 = intensities
    delta = _hoeffding(counts[0] + counts[1] + counts[2], eps)
    n_minus = _corrected(counts, intensities, probs, delta, -1.0)
    n_plus = _corrected(counts, intensities, probs, delta, +1.0)
    s0 = np.maximum(tau0 * (mu2 * n_minus[2] - mu3 * n_plus[1]) / (mu2 - mu3), 0.0)
    denom = mu1 * (mu2 - mu3) - mu2**2 + mu3**2
    s1 = (
        tau1
        * mu1
        * (n_minus[1] - n_plus[2] - (mu2**2 - mu3**2) / mu1**2 * (n_plus[0] - s0 / tau0))
        / denom
    )
    return s0, np.maximum(s1, 0.0)


def _gamma_many(a: float, b, c, d) -> np.ndarray:
    """:func:`gamma` elementwise on arrays."""
    b, c, d = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (b, c, d)))
    inside = (b > 0.0) & (b < 1.0) & (c > 0.0) & (d > 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        arg = np.where(inside, (c + d) / (c * d * (1.0 - b) * b) * (_EPS_SPLIT**2 / a**2), 1.0)
        value = np.where(
            arg > 1.0,
            np.sqrt(
                np.maximum((c + d) * (1.0 - b) * b / (c * d * math.log(2.0)), 0.0)
                * np.log2(np.maximum(arg, 1.0))
            ),
            0.0,
        )
    outside = np.where((b <= 0.0) & (c > 0.0) & (d > 0.0), 0.0, 0.5)
    return np.where(inside, value, outside)


def gamma(a: float, b: float, c: float, d: float) -> float:
    """γ(a, b, c, d) of Lim et al. 2014, eq. 5: the sampling deviation of the phase error,
    √[(c+d)(1−b)b / (c d ln 2) · log2((c+d)/(c d (1−b) b) · 21²/a²)]; 0 when the logarithm's
    argument is ≤ 1 or b ≤ 0, 1/2 outside the domain."""
    return float(_gamma_many(a, b, c, d))


def _bound_values(intensities, probs, n_x, n_z, m_z, lambda_ec, eps_sec, eps_cor, asymptotic):
    """(s_x0, s_x1, s_z1, v_z1, φ_X, real-valued ℓ, ok) of eqs. 1–5 for scalars or arrays of
    settings; ``ok`` is False where no single-photon events are bounded (then φ_X = 1/2 and
    ℓ = s_x0 − λ_EC − penalty)."""
    eps = 1.0 if asymptotic else eps_sec / _EPS_SPLIT  # ln(1/1) = 0: no Hoeffding deviation
    tau0 = _tau(0, intensities, probs)
    tau1 = _tau(1, intensities, probs)
    s_x0, s_x1 = _vacuum_and_single(n_x, intensities, probs, eps, tau0, tau1)
    _, s_z1 = _vacuum_and_single(n_z, intensities, probs, eps, tau0, tau1)
    mu2, mu3 = intensities[1], intensities[2]
    delta_m = _hoeffding(m_z[0] + m_z[1] + m_z[2], eps)
    m_plus = _corrected(m_z, intensities, probs, delta_m, +1.0)
    m_minus = _corrected(m_z, intensities, probs, delta_m, -1.0)
    v_z1 = np.maximum(tau1 * (m_plus[1] - m_minus[2]) / (mu2 - mu3), 0.0)
    penalty = (
        0.0 if asymptotic else 6.0 * math.log2(_EPS_SPLIT / eps_sec) + math.log2(2.0 / eps_cor)
    )
    ok = (s_z1 > 0.0) & (s_x1 > 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ok, np.minimum(v_z1 / s_z1, 1.0), 0.5)
    deviation = 0.0 if asymptotic else _gamma_many(eps_sec, ratio, s_z1, s_x1)
    phi_x = np.where(ok, np.minimum(ratio + deviation, 0.5), 0.5)
    with_single = s_x0 + s_x1 * (1.0 - binary_entropy(phi_x)) - lambda_ec - penalty
    ell = np.where(ok, with_single, s_x0 - lambda_ec - penalty)
    return s_x0, s_x1, s_z1, v_z1, phi_x, ell, ok


def _bound(
    intensities: tuple[float, float, float],
    probs: tuple[float, float, float],
    n_x,
    n_z,
    m_z,
    lambda_ec: float,
    eps_sec: float,
    eps_cor: float,
    asymptotic: bool = False,
) -> tuple[float, float, float, float, float, float, str]:
    """(s_x0, s_x1, s_z1, v_z1, phi_x, real-valued ℓ before flooring, reason).

    ``asymptotic`` drops every finite-size term (δ = 0, γ = 0, no ε penalty): the N → ∞ limit.
    """
    values = _bound_values(
        intensities, probs, n_x, n_z, m_z, lambda_ec, eps_sec, eps_cor, asymptotic
    )
    s_x0, s_x1, s_z1, v_z1, phi_x, ell = (float(v) for v in values[:6])
    if not values[6]:
        basis = "Z" if s_z1 <= 0.0 else "X"
        return s_x0, s_x1, s_z1, v_z1, 0.5, ell, f"no single-photon events bounded in {basis}"
    reason = ""
    if phi_x >= 0.5:
        reason = "phase-error bound phi_X reached 1/2"
    elif ell < 1.0:
        reason = (
            f"finite-size key length bound <= 0 ({ell:.4g}): error-correction leakage and "
            "epsilon terms exceed the privacy-amplified single-photon bits"
        )
    return s_x0, s_x1, s_z1, v_z1, phi_x, ell, reason


def lim2014_key_length(
    counts: DecoyCounts, lambda_ec: float, eps_sec: float = 1e-10, eps_cor: float = 1e-15
) -> FiniteKeyBound:
    """Secret key length ℓ of one block from its observed counts (Lim et al. 2014, eq. 1).

    ``lambda_ec`` is the number of bits disclosed by error correction (and verification, if the
    caller counts it). ε_sec-secret and ε_cor-correct; 0 with a reason when no key can be made.

    >>> c = DecoyCounts((0.5, 0.1, 0.0), (0.7, 0.2, 0.1), n_x=(8442647, 485595, 162),
    ...                 n_z=(104230, 5995, 2), m_z=(1049, 62, 1))
    >>> lim2014_key_length(c, lambda_ec=799272).key_length
    491194
    """
    if not (0.0 < eps_sec < 1.0):
        raise ValueError(f"eps_sec must be in (0, 1) (got {eps_sec})")
    if not (0.0 < eps_cor < 1.0):
        raise ValueError(f"eps_cor must be in (0, 1) (got {eps_cor})")
    if not (lambda_ec >= 0.0 and math.isfinite(lambda_ec)):
        raise ValueError(f"lambda_ec must be a finite number >= 0 (got {lambda_ec})")
    s_x0, s_x1, s_z1, v_z1, phi_x, ell, reason = _bound(
        tuple(counts.intensities),
        tuple(counts.probs),
        counts.n_x,
        counts.n_z,
        counts.m_z,
        lambda_ec,
        eps_sec,
        eps_cor,
    )
    length = max(math.floor(ell), 0) if not reason else 0
    return FiniteKeyBound(s_x0, s_x1, s_z1, v_z1, phi_x, length, reason)


def expected_counts(
    n_pulses: float,
    intensities: tuple[float, float, float],
    probs: tuple[float, float, float],
    q_x: float,
    eta: float,
    y0: float,
    optical_error: float,
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Expected (n_X, m_X, n_Z, m_Z) per intensity for ``n_pulses`` sent, both bases chosen with
    probability q_x (X) and 1 − q_x (Z) by each party; gains/QBER of
    :func:`qkdnet.keyrate.observables.poisson_observables` (η includes Bob's detector)."""
    n_x, m_x, n_z, m_z = [], [], [], []
    for k, p in zip(intensities, probs, strict=True):
        gain, error_gain = poisson_gains(k, eta, y0, optical_error)
        n_x.append(n_pulses * p * q_x**2 * gain)
        m_x.append(n_pulses * p * q_x**2 * error_gain)
        n_z.append(n_pulses * p * (1.0 - q_x) ** 2 * gain)
        m_z.append(n_pulses * p * (1.0 - q_x) ** 2 * error_gain)
    return n_x, m_x, n_z, m_z


@dataclass(frozen=True)
class FiniteRate:
    """Finite-size rate at N pulses with the settings that achieve it."""

    rate_per_pulse: float
    key_length: int
    intensities: tuple[float, float, float]
    probs: tuple[float, float, float]
    q_x: float
    qber_x: float
    gain_signal: float
    bound: FiniteKeyBound


def _counts_and_leakage(x, n_pulses, mu3, eta, y0, optical_error, ec_efficiency, channel):
    """Settings x = (μ1, μ2, p1, p2, q_x) (scalars, or arrays of a population) → intensities,
    probabilities, expected (n_X, m_X, n_Z, m_Z), X-basis QBER and λ_EC = f·n_X·h(E_X); with
    ``channel`` the (η, Y0) pair the detectors see at these settings' mean photon number."""
    mu1, mu2, p1, p2, q_x = x
    p3 = 1.0 - p1 - p2
    intensities = (mu1, mu2, mu1 * 0.0 + mu3)
    probs = (p1, p2, p3)
    if channel is not None:
        eta, y0 = channel(p1 * mu1 + p2 * mu2 + p3 * mu3)
    n_x, m_x, n_z, m_z = expected_counts(n_pulses, intensities, probs, q_x, eta, y0, optical_error)
    total_x = n_x[0] + n_x[1] + n_x[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        qber_x = np.where(total_x > 0, (m_x[0] + m_x[1] + m_x[2]) / total_x, 0.5)
    lambda_ec = ec_efficiency * total_x * binary_entropy(np.clip(qber_x, 0.0, 0.5))
    return intensities, probs, (n_x, m_x, n_z, m_z), qber_x, lambda_ec


def _evaluate(
    x: np.ndarray | tuple[float, ...],
    n_pulses: float,
    mu3: float,
    eta: float,
    y0: float,
    optical_error: float,
    ec_efficiency: float,
    eps_sec: float,
    eps_cor: float,
    channel: ChannelModel | None = None,
):
    """Real-valued ℓ for settings x = (μ1, μ2, p1, p2, q_x), plus the pieces."""
    settings = tuple(float(v) for v in x)
    intensities, probs, counts, qber_x, lambda_ec = _counts_and_leakage(
        settings, n_pulses, mu3, eta, y0, optical_error, ec_efficiency, channel
    )
    n_x, _, n_z, m_z = counts
    parts = _bound(intensities, probs, n_x, n_z, m_z, float(lambda_ec), eps_sec, eps_cor)
    return parts, intensities, probs, settings[4], float(qber_x)


def _ell_many(
    x: np.ndarray,
    n_pulses: float,
    mu3: float,
    eta: float,
    y0: float,
    optical_error: float,
    ec_efficiency: float,
    eps_sec: float,
    eps_cor: float,
    channel: ChannelModel | None = None,
) -> np.ndarray:
    """Real-valued ℓ of :func:`_evaluate` for many settings at once: ``x`` has shape (5, S)
    (μ1, μ2, p1, p2, q_x per column), so the global optimiser evaluates a whole population
    per call (tests check it against :func:`_evaluate`)."""
    settings = tuple(np.asarray(v, dtype=float) for v in x)
    intensities, probs, counts, _, lambda_ec = _counts_and_leakage(
        settings, n_pulses, mu3, eta, y0, optical_error, ec_efficiency, channel
    )
    n_x, _, n_z, m_z = counts
    with np.errstate(divide="ignore", invalid="ignore"):
        values = _bound_values(
            intensities, probs, n_x, n_z, m_z, lambda_ec, eps_sec, eps_cor, False
        )
    return values[5]


def finite_key_rate(
    n_pulses: float,
    eta: float,
    y0: float,
    optical_error: float,
    ec_efficiency: float,
    *,
    eps_sec: float = 1e-10,
    eps_cor: float = 1e-15,
    mu3: float = 0.0,
    mu: float | None = None,
    nu: float | None = None,
    probs: tuple[float, float, float] | None = None,
    q_x: float | None = None,
    optimise: bool = True,
    seed: int = 0,
    channel: ChannelModel | None = None,
) -> FiniteRate:
    """Finite-size decoy BB84 rate ℓ/N for N sent pulses, on the expected counts of the link.

    With ``optimise`` the free settings among (μ1, μ2, p1, p2, q_x) are chosen by differential
    evolution (a global search: at 10⁴–10⁵ pulses key exists only in a narrow region) maximising
    the real-valued ℓ, then polished locally; fixed ``mu``/``nu``/``probs``/``q_x`` stay fixed.
    ``channel`` (optional) replaces (``eta``, ``y0``) by the pair the detectors see at each
    candidate's mean photon number, so the optimum is self-consistent with dead time and
    afterpulsing (which the settings themselves change).
    """
    if not (n_pulses > 0 and math.isfinite(n_pulses)):
        raise ValueError(f"n_pulses must be a finite number > 0 (got {n_pulses})")
    defaults = (
        mu if mu is not None else 0.5,
        nu if nu is not None else 0.1,
        probs[0] if probs is not None else 0.7,
        probs[1] if probs is not None else 0.2,
        q_x if q_x is not None else 0.9,
    )
    ranges = [
        (mu3 + 0.02, 1.2),
        (mu3 + 0.005, 0.6),
        (0.05, 0.98),
        (0.01, 0.9),
        (0.5, 0.9999),
    ]
    fixed = [mu is not None, nu is not None, probs is not None, probs is not None, q_x is not None]
    args = (n_pulses, mu3, eta, y0, optical_error, ec_efficiency, eps_sec, eps_cor, channel)

    def full(free: np.ndarray) -> list[float]:
        values, it = [], iter(free)
        for d, f in zip(defaults, fixed, strict=True):
            values.append(d if f else float(next(it)))
        return values

    def objective(free: np.ndarray) -> np.ndarray:
        """−ℓ/N of every column of ``free`` (shape (n_free, S)); 1 + 10·violation when the
        settings break μ1 > μ2 + μ3 or p1 + p2 < 1."""
        free = np.atleast_2d(np.asarray(free, dtype=float).T).T
        rows, it = [], iter(free)
        for dflt, f in zip(defaults, fixed, strict=True):
            rows.append(np.full(free.shape[1], dflt) if f else next(it))
        x = np.vstack(rows)
        violation = np.maximum(0.0, x[1] + mu3 - x[0] + 1e-3) + np.maximum(0.0, x[2] + x[3] - 0.999)
        with np.errstate(all="ignore"):
            value = -_ell_many(x, *args) / n_pulses
        value = np.where(np.isfinite(value), value, 1.0)
        return np.where(violation > 0.0, 1.0 + 10.0 * violation, value)

    free_ranges = [r for r, f in zip(ranges, fixed, strict=True) if not f]
    if optimise and free_ranges:
        res = differential_evolution(
            objective, free_ranges, seed=seed, tol=1e-10, maxiter=80, popsize=12, polish=False,
            vectorized=True, updating="deferred",
        )  # fmt: skip
        polished = minimize(
            lambda v: float(objective(v[:, None])[0]), res.x, method="L-BFGS-B",
            bounds=free_ranges,
        )  # fmt: skip
        best = full(polished.x if polished.fun <= res.fun else res.x)
    else:
        best = list(defaults)
    parts, intensities, probs_used, q_used, qber_x = _evaluate(best, *args)
    s_x0, s_x1, s_z1, v_z1, phi_x, ell, reason = parts
    length = max(math.floor(ell), 0) if not reason else 0
    bound = FiniteKeyBound(s_x0, s_x1, s_z1, v_z1, phi_x, length, reason)
    if channel is not None:
        eta, y0 = channel(float(np.dot(probs_used, intensities)))
    gain = poisson_observables(intensities[0], eta, y0, optical_error).gain
    return FiniteRate(
        rate_per_pulse=length / n_pulses,
        key_length=length,
        intensities=intensities,
        probs=probs_used,
        q_x=q_used,
        qber_x=qber_x,
        gain_signal=gain,
        bound=bound,
    )


def asymptotic_rate(
    eta: float, y0: float, optical_error: float, ec_efficiency: float, *, mu3: float = 0.0
) -> FiniteRate:
    """The N → ∞ limit of :func:`finite_key_rate`: the same three-intensity bound with no
    statistical deviations or ε terms, q_x → 1 and p_1 → 1 (efficient BB84, Lo, Chau, Ardehali,
    J. Cryptol. 18, 133 (2005)), maximised over μ1 and μ2. Bits per pulse (``key_length`` 0)."""
    tiny = 1e-9
    probs = (1.0 - 2.0 * tiny, tiny, tiny)

    def at(mu1: float, mu2: float):
        intensities = (mu1, mu2, mu3)
        n_x, m_x, _, _ = expected_counts(1.0, intensities, probs, 1.0, eta, y0, optical_error)
        qber = sum(m_x) / sum(n_x)
        lam = ec_efficiency * sum(n_x) * float(binary_entropy(min(qber, 0.5)))
        parts = _bound(intensities, probs, n_x, n_x, m_x, lam, 0.5, 0.5, asymptotic=True)
        return parts, intensities, qber

    def objective(x: np.ndarray) -> float:
        if x[1] + mu3 >= x[0] - 1e-4:
            return 1.0
        return -at(float(x[0]), float(x[1]))[0][5]

    res = differential_evolution(
        objective, [(mu3 + 0.02, 1.2), (mu3 + 1e-3, 0.3)], seed=0, tol=1e-12, maxiter=60
    )
    parts, intensities, qber = at(float(res.x[0]), float(res.x[1]))
    s_x0, s_x1, s_z1, v_z1, phi_x, ell, _ = parts
    rate = max(ell, 0.0)
    bound = FiniteKeyBound(s_x0, s_x1, s_z1, v_z1, phi_x, 0, "" if rate > 0 else "no key")
    gain = poisson_observables(intensities[0], eta, y0, optical_error).gain
    return FiniteRate(rate, 0, intensities, probs, 1.0, qber, gain, bound)
