"""Parameter estimation: QBER on a random sample and on the decoy classes, and the finite-size
secret key length from the observed counts and the bits actually disclosed.

Decoy-state BB84 uses the bound of Lim, Curty, Walenta, Xu, Zbinden, PRA 89, 022307 (2014)
(:func:`qkdnet.keyrate.finite.lim2014_key_length`). Protocols with one intensity class
(single-photon-source BB84, BBM92) use Tomamichel, Lim, Gisin, Renner, Nat. Commun. 3, 634
(2012), eq. (2): ℓ = n_X (1 − h(e_Z + μ)) − λ_EC − log2(2/(ε_sec² ε_cor)) with
μ = √((n_X + n_Z)/(n_X n_Z) · (n_Z + 1)/n_Z · ln(2/ε_sec)); it treats every detection as a
single photon (exact for BBM92's basis-independent source, optimistic by the multi-photon
fraction for a single-photon source with g2(0) > 0).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from qkdnet.keyrate.entropy import binary_entropy
from qkdnet.keyrate.finite import DecoyCounts, lim2014_key_length


@dataclass(frozen=True)
class DecoySettings:
    """Public protocol parameters: mean photon number and probability of each intensity class
    (one class with intensity 0 means a non-decoy protocol)."""

    intensities: tuple[float, ...]
    probs: tuple[float, ...]

    @property
    def is_decoy(self) -> bool:
        return len(self.intensities) == 3


@dataclass(frozen=True)
class Counts:
    """Per-class detection counts of the sifted block."""

    n_x: tuple[int, ...]
    n_z: tuple[int, ...]
    m_z: tuple[int, ...]
    pulses_per_class: tuple[int, ...]

    @property
    def qber_z(self) -> float:
        total = sum(self.n_z)
        return sum(self.m_z) / total if total else 0.0


@dataclass(frozen=True)
class KeyLength:
    """Secret key length, or 0 with the reason."""

    key_length: int
    reason: str
    phi_x: float


def class_counts(classes: np.ndarray, n_classes: int) -> tuple[int, ...]:
    """How many entries fall in each intensity class (one comparison pass per class:
    ``np.bincount`` first widens the uint8 classes to int64, 8 bytes per key bit)."""
    return tuple(int(np.count_nonzero(classes == c)) for c in range(n_classes))


@nb.njit(cache=True)
def _without(values: np.ndarray, sorted_idx: np.ndarray) -> np.ndarray:
    out = np.empty(values.size - sorted_idx.size, dtype=values.dtype)
    src = 0
    dst = 0
    for i in sorted_idx:
        out[dst : dst + i - src] = values[src:i]
        dst += i - src
        src = i + 1
    out[dst:] = values[src:]
    return out


def drop_sample(values: np.ndarray, sample_idx: np.ndarray) -> np.ndarray:
    """``values`` without the disclosed sample positions (sorted, distinct, in range): the
    kept stretches are copied whole (a boolean mask would visit every bit twice)."""
    idx = np.asarray(sample_idx, dtype=np.int64)
    if idx.size and (np.any(np.diff(idx) <= 0) or idx[0] < 0 or idx[-1] >= values.size):
        raise ValueError("sample positions must be sorted, distinct and in range")
    return _without(np.ascontiguousarray(values), idx)


def sample_size(n_x: int, fraction: float, minimum: int = 200) -> int:
    """Bits of the X key disclosed to estimate its QBER before error correction."""
    return int(min(max(math.ceil(fraction * n_x), minimum), n_x // 4))


def decoy_consistency(counts: Counts, settings: DecoySettings, sigmas: float = 5.0) -> str:
    """Empty string when the gains fall with the intensity as physics demands (within ``sigmas``
    standard deviations); otherwise a reason to abort (a sign of tampering or a broken source)."""
    if not settings.is_decoy:
        return ""
    gains = []
    for k in range(3):
        pulses = max(counts.pulses_per_class[k], 1)
        clicks = counts.n_x[k] + counts.n_z[k]
        gains.append((clicks / pulses, math.sqrt(max(clicks, 1)) / pulses))
    order = np.argsort(settings.intensities)[::-1]
    for hi, lo in itertools.pairwise(order):
        (g_hi, s_hi), (g_lo, s_lo) = gains[hi], gains[lo]
        if g_lo - g_hi > sigmas * math.hypot(s_hi, s_lo):
            return (
                f"decoy estimates inconsistent: gain of intensity {settings.intensities[lo]} "
                f"({g_lo:.3g}) exceeds that of {settings.intensities[hi]} ({g_hi:.3g})"
            )
    return ""


def key_length(
    counts: Counts,
    settings: DecoySettings,
    lambda_ec: float,
    eps_sec: float,
    eps_cor: float,
) -> KeyLength:
    """Finite-size key length for the block (see module docstring for the bounds)."""
    if settings.is_decoy:
        bound = lim2014_key_length(
            DecoyCounts(
                tuple(settings.intensities),
                tuple(settings.probs),
                tuple(counts.n_x),
                tuple(counts.n_z),
                tuple(counts.m_z),
            ),
            lambda_ec=lambda_ec,
            eps_sec=eps_sec,
            eps_cor=eps_cor,
        )
        reason = bound.reason
        if reason.startswith(("no single-photon", "phase-error")):
            reason = f"decoy estimates inconsistent: {reason}"
        return KeyLength(bound.key_length, reason, bound.phi_x)
    n_x, n_z = sum(counts.n_x), sum(counts.n_z)
    if n_x == 0 or n_z == 0:
        return KeyLength(0, "no key: no detections in the X or Z basis", 0.5)
    mu = math.sqrt((n_x + n_z) / (n_x * n_z) * (n_z + 1) / n_z * math.log(2.0 / eps_sec))
    phi = min(counts.qber_z + mu, 0.5)
    ell = (
        n_x * (1.0 - float(binary_entropy(phi)))
        - lambda_ec
        - math.log2(2.0 / (eps_sec**2 * eps_cor))
    )
    if ell < 1.0:
        return KeyLength(0, f"finite-size key length bound <= 0 ({ell:.4g})", phi)
    return KeyLength(math.floor(ell), "", phi)
