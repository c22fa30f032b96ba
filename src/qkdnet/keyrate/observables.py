"""Expected detection statistics of a prepare-and-measure link: yields, gains and error rates.

The standard channel model of decoy-state QKD (Ma, Qi, Zhao, Lo, Phys. Rev. A 72, 012326
(2005), eqs. 2-7), shared by the closed-form key rates and by the simulator's agreement tests:

* overall transmittance η = η_fibre · η_Bob (Bob's optics × detector efficiency);
* n-photon yield Y_n = 1 − (1 − Y0)(1 − η)^n, Y0 the background (dark-count) yield;
* n-photon error e_n = (e0·Y0 + e_d·(Y_n − Y0)) / Y_n, e0 = ½, e_d the optical error;
* gain Q = Σ P(n) Y_n and error gain E·Q = Σ P(n) e_n Y_n over the source's photon-number
  distribution P(n) (Poisson for a laser: Q_μ = 1 − (1 − Y0)e^{−ημ}, E_μQ_μ = e0Y0 +
  e_d(1 − e^{−ημ}) up to O(Y0·η) terms).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

E0 = 0.5  # error rate of a random (background) click


def yields(eta: float, y0: float, n_max: int = 20) -> np.ndarray:
    """Y_n for n = 0..n_max: probability that an n-photon pulse makes Bob click."""
    n = np.arange(n_max + 1)
    return 1.0 - (1.0 - y0) * (1.0 - eta) ** n


def error_rates(eta: float, y0: float, optical_error: float, n_max: int = 20) -> np.ndarray:
    """e_n for n = 0..n_max: error rate of clicks caused by n-photon pulses."""
    y = yields(eta, y0, n_max)
    errors = E0 * y0 + optical_error * (y - y0)
    # A class that never clicks (Y_n = 0, e.g. vacuum without dark counts) has no errors.
    return np.divide(errors, y, out=np.zeros_like(y), where=y > 0)


@dataclass(frozen=True)
class Observables:
    """Gain Q (clicks per pulse) and QBER E for one intensity class."""

    gain: float
    qber: float


def observables(
    photon_probs: np.ndarray, eta: float, y0: float, optical_error: float
) -> Observables:
    """Q and E for a source with photon-number distribution ``photon_probs`` (P(0), P(1), …)."""
    n_max = len(photon_probs) - 1
    y = yields(eta, y0, n_max)
    e = error_rates(eta, y0, optical_error, n_max)
    gain = float(np.dot(photon_probs, y))
    error_gain = float(np.dot(photon_probs, e * y))
    return Observables(gain=gain, qber=error_gain / gain if gain > 0 else 0.0)


def poisson_gains(intensity, eta, y0, optical_error):
    """(Q_μ, E_μ·Q_μ) of a phase-randomised laser of mean photon number ``intensity``;
    elementwise on arrays (the finite-size optimiser evaluates whole populations)."""
    gain = 1.0 - (1.0 - y0) * np.exp(-eta * np.asarray(intensity, dtype=float))
    return gain, E0 * y0 + optical_error * (gain - y0)


def poisson_observables(
    intensity: float, eta: float, y0: float, optical_error: float
) -> Observables:
    """Closed-form Q_μ and E_μ of a phase-randomised laser of mean photon number ``intensity``."""
    gain, error_gain = (float(v) for v in poisson_gains(intensity, eta, y0, optical_error))
    return Observables(gain=gain, qber=error_gain / gain if gain > 0 else 0.0)
