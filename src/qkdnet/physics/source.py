"""Photon sources: attenuated laser with decoy intensities, quantum-dot single photons, pairs.

Each source gives its photon-number statistics per emitted pulse (``photon_number_probs``), the
one thing the key-rate models and the simulator both need:

* attenuated laser: Poisson, P(n) = e^{-μ} μ^n / n! (phase-randomised coherent state);
* quantum-dot single-photon source: P(≥1) = brightness at the fibre, and the multi-photon part
  bounded from the second-order correlation, P(≥2) ≤ g2(0)·μ²/2 with μ the mean photon number
  (Waks, Santori, Yamamoto, Phys. Rev. A 66, 042315 (2002), eq. 9); we take P(n≥3) = 0;
* entangled pairs: thermal statistics for SPDC, P(n) = μ^n / (1+μ)^{n+1}, or on-demand pairs
  from a quantum dot (biexciton cascade) with the multi-pair part from g2(0) as above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from qkdnet.physics.validation import (
    PhysicsValueError,
    check_non_negative,
    check_positive,
    check_probability,
)


@dataclass(frozen=True)
class WeakCoherentSource:
    """Phase-randomised attenuated laser with signal (μ), weak decoy (ν) and vacuum (ω) levels.

    ``intensity_probs`` are the probabilities of choosing (signal, decoy, vacuum) per pulse.
    """

    rate_hz: float = 1e9
    wavelength_nm: float = 1550.0
    mu: float = 0.5
    nu: float = 0.1
    omega: float = 0.0
    intensity_probs: tuple[float, float, float] = (0.8, 0.15, 0.05)
    kind: Literal["laser"] = field(default="laser", init=False)

    def __post_init__(self) -> None:
        check_positive("rate_hz", self.rate_hz)
        check_positive("wavelength_nm", self.wavelength_nm)
        for name in ("mu", "nu", "omega"):
            check_non_negative(name, getattr(self, name))
        if not self.mu > self.nu + self.omega:
            raise PhysicsValueError(
                "nu",
                f"decoy intensities need mu > nu + omega (got mu={self.mu}, nu={self.nu}, omega={self.omega})",
            )
        for i, p in enumerate(self.intensity_probs):
            check_probability(f"intensity_probs[{i}]", p)
        if abs(sum(self.intensity_probs) - 1.0) > 1e-9:
            raise PhysicsValueError(
                "intensity_probs", f"must sum to 1 (got {sum(self.intensity_probs)})"
            )

    @property
    def intensities(self) -> tuple[float, float, float]:
        """Mean photon numbers of the (signal, decoy, vacuum) classes."""
        return (self.mu, self.nu, self.omega)

    @staticmethod
    def photon_number_probs(intensity: float, n_max: int = 20) -> np.ndarray:
        """Poisson photon-number distribution P(n), n = 0..n_max, for mean ``intensity``."""
        check_non_negative("intensity", intensity)
        from scipy.stats import poisson  # imported here: scipy.stats costs ~1 s at start-up

        return poisson.pmf(np.arange(n_max + 1), intensity)


@dataclass(frozen=True)
class SinglePhotonSource:
    """Triggered quantum-dot single-photon source.

    ``brightness`` is the probability that a trigger puts at least one photon into the fibre
    (collection and coupling included); ``g2_zero`` is the measured second-order correlation.
    """

    rate_hz: float = 80e6
    wavelength_nm: float = 1550.0
    brightness: float = 0.1
    g2_zero: float = 0.01
    kind: Literal["single-photon"] = field(default="single-photon", init=False)

    def __post_init__(self) -> None:
        check_positive("rate_hz", self.rate_hz)
        check_positive("wavelength_nm", self.wavelength_nm)
        check_probability("brightness", self.brightness)
        check_non_negative("g2_zero", self.g2_zero)
        if self.g2_zero > 1.0:
            raise PhysicsValueError(
                "g2_zero",
                f"must be between 0 and 1 for a sub-Poissonian source (got {self.g2_zero})",
            )

    @property
    def multi_photon_prob(self) -> float:
        """P(n ≥ 2) ≤ g2(0)·B²/2 (Waks et al. 2002, eq. 9), capped so that P(1) ≥ P(2)."""
        return min(self.g2_zero * self.brightness**2 / 2.0, self.brightness / 2.0)

    def photon_number_probs(self, n_max: int = 2) -> np.ndarray:
        """P(0), P(1), P(2) (zeros beyond): the emitted photon-number distribution per trigger."""
        probs = np.zeros(max(n_max, 2) + 1)
        p2 = self.multi_photon_prob
        probs[0] = 1.0 - self.brightness
        probs[1] = self.brightness - p2
        probs[2] = p2
        return probs


@dataclass(frozen=True)
class EntangledPairSource:
    """Polarisation-entangled photon-pair source: a quantum dot (on demand) or SPDC (thermal).

    ``pair_prob`` is the probability of a pair per trigger into the two fibres (quantum dot) or
    the mean pair number per pulse (SPDC). ``visibility`` V of the two-photon interference gives
    an intrinsic QBER of (1 − V)/2; ``fidelity`` F to the Bell state relates as V = (4F − 1)/3
    for Werner-state noise.
    """

    rate_hz: float = 80e6
    wavelength_nm: float = 1550.0
    pair_prob: float = 0.05
    visibility: float = 0.95
    g2_zero: float = 0.01
    source_kind: Literal["quantum-dot", "spdc"] = "quantum-dot"
    kind: Literal["entangled-pair"] = field(default="entangled-pair", init=False)

    def __post_init__(self) -> None:
        check_positive("rate_hz", self.rate_hz)
        check_positive("wavelength_nm", self.wavelength_nm)
        check_probability("visibility", self.visibility)
        check_non_negative("g2_zero", self.g2_zero)
        if self.source_kind == "quantum-dot":
            check_probability("pair_prob", self.pair_prob)
        elif self.source_kind == "spdc":
            check_non_negative("pair_prob", self.pair_prob)
        else:
            raise PhysicsValueError(
                "source_kind", f"must be 'quantum-dot' or 'spdc' (got {self.source_kind!r})"
            )

    @property
    def fidelity(self) -> float:
        """Bell-state fidelity of the equivalent Werner state, F = (3V + 1)/4."""
        return (3.0 * self.visibility + 1.0) / 4.0

    @property
    def intrinsic_qber(self) -> float:
        """QBER of the pairs before any channel or detector noise: (1 − V)/2."""
        return (1.0 - self.visibility) / 2.0

    def pair_number_probs(self, n_max: int = 20) -> np.ndarray:
        """P(n pairs per trigger), n = 0..n_max."""
        probs = np.zeros(n_max + 1)
        if self.source_kind == "spdc":
            mu = self.pair_prob
            n = np.arange(n_max + 1)
            probs = mu**n / (1.0 + mu) ** (n + 1)
            return probs
        p2 = min(self.g2_zero * self.pair_prob**2 / 2.0, self.pair_prob / 2.0)
        probs[0] = 1.0 - self.pair_prob
        probs[1] = self.pair_prob - p2
        probs[2] = p2
        return probs


Source = WeakCoherentSource | SinglePhotonSource | EntangledPairSource
