"""Asymptotic decoy-state BB84 with a phase-randomised laser: Ma, Qi, Zhao, Lo, Phys. Rev. A 72,
012326 (2005).

The key rate (GLLP with decoy estimates, Ma 2005 eq. 1) is

    R ≥ q·{−Q_μ f(E_μ) h(E_μ) + Q_1 [1 − h(e_1)]},  Q_1 = Y_1 μ e^{−μ},

with q = ½ (symmetric BB84 sifting). The single-photon yield Y_1 and error e_1 come from

* infinite decoys (Ma 2005 Sec. III): Y_1 and e_1 known exactly, Y_1 = Y0 + η − Y0·η,
  e_1 = (e0·Y0 + e_d·η)/Y_1;
* vacuum + one weak decoy ν (Ma 2005 eqs. 34-35):
  Y_1 ≥ Y_1^L = μ/(μν − ν²) · [Q_ν e^ν − Q_μ e^μ ν²/μ² − (μ² − ν²)/μ² · Y0],
  e_1 ≤ e_1^U = (E_ν Q_ν e^ν − e0·Y0)/(Y_1^L ν).

The vacuum decoy measures Y0 itself. Asymptotically the weak-decoy bound tightens monotonically
as ν → 0, so ν is a device setting here (the preset's or the caller's), not optimised; μ is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from qkdnet.keyrate.entropy import binary_entropy
from qkdnet.keyrate.observables import E0, error_rates, poisson_observables, yields
from qkdnet.keyrate.optimise import maximise_scalar
from qkdnet.physics.validation import PhysicsValueError

DecoyMethod = Literal["vacuum-weak", "infinite"]
SIFTING = 0.5


@dataclass(frozen=True)
class DecoyRate:
    """Asymptotic decoy-BB84 rate (bits per pulse, 0 when the bound is negative) and its inputs."""

    rate_per_pulse: float
    raw_rate: float
    mu: float
    nu: float
    gain: float
    qber: float
    y1: float
    e1: float


def single_photon_bounds(
    mu: float, nu: float, eta: float, y0: float, optical_error: float, method: DecoyMethod
) -> tuple[float, float]:
    """(Y_1 lower bound, e_1 upper bound) for the chosen decoy method (Ma 2005)."""
    if method == "infinite":
        y1 = float(yields(eta, y0, 1)[1])
        e1 = float(error_rates(eta, y0, optical_error, 1)[1])
        return y1, e1
    if method != "vacuum-weak":
        raise ValueError(f"decoy method must be 'vacuum-weak' or 'infinite' (got {method!r})")
    if not (0.0 < nu < mu):
        raise PhysicsValueError(
            "nu", f"must be > 0 and below mu for vacuum+weak decoys (got mu={mu}, nu={nu})"
        )
    sig = poisson_observables(mu, eta, y0, optical_error)
    dec = poisson_observables(nu, eta, y0, optical_error)
    y1 = (
        mu
        / (mu * nu - nu**2)
        * (
            dec.gain * math.exp(nu)
            - sig.gain * math.exp(mu) * nu**2 / mu**2
            - (mu**2 - nu**2) / mu**2 * y0
        )
    )
    if y1 <= 0.0:
        return 0.0, 0.5
    e1 = (dec.qber * dec.gain * math.exp(nu) - E0 * y0) / (y1 * nu)
    return y1, min(max(e1, 0.0), 0.5)


def decoy_rate_at(
    mu: float,
    nu: float,
    eta: float,
    y0: float,
    optical_error: float,
    ec_efficiency: float,
    method: DecoyMethod = "vacuum-weak",
) -> DecoyRate:
    """Ma 2005 eq. 1 at fixed intensities (rate clipped at 0, ``raw_rate`` unclipped)."""
    sig = poisson_observables(mu, eta, y0, optical_error)
    y1, e1 = single_photon_bounds(mu, nu, eta, y0, optical_error, method)
    q1 = y1 * mu * math.exp(-mu)
    raw = SIFTING * (
        -sig.gain * ec_efficiency * float(binary_entropy(min(sig.qber, 0.5)))
        + q1 * (1.0 - float(binary_entropy(e1)))
    )
    return DecoyRate(max(raw, 0.0), raw, mu, nu, sig.gain, sig.qber, y1, e1)


def decoy_rate(
    eta: float,
    y0: float,
    optical_error: float,
    ec_efficiency: float,
    *,
    nu: float = 0.05,
    mu: float | None = None,
    method: DecoyMethod = "vacuum-weak",
) -> DecoyRate:
    """Asymptotic decoy-BB84 rate, maximised over μ unless ``mu`` is given."""
    if mu is not None:
        return decoy_rate_at(mu, nu, eta, y0, optical_error, ec_efficiency, method)
    low = nu * 1.05 if method == "vacuum-weak" else 1e-4
    best_mu, _ = maximise_scalar(
        lambda m: decoy_rate_at(m, nu, eta, y0, optical_error, ec_efficiency, method).raw_rate,
        low,
        1.5,
    )
    return decoy_rate_at(best_mu, nu, eta, y0, optical_error, ec_efficiency, method)
