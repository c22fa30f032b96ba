"""GLLP key rate for BB84 with an imperfect source and no decoy states.

Gottesman, Lo, Lütkenhaus, Preskill, Quantum Inf. Comput. 4, 325 (2004): only single-photon
detections give secure bits; without decoys Alice must assume every multi-photon pulse was
detected (photon-number splitting), so with p_multi the probability of emitting ≥ 2 photons

    Q_1 ≥ Q − p_multi,   e_1 ≤ E·Q / Q_1   (all errors put on single photons),
    R = q·{−Q f h(E) + Q_1 [1 − h(e_1)]},  q = ½.

For a laser without decoys p_multi = 1 − e^{−μ}(1 + μ) and the optimal μ is of order η, so R
falls like η²; a single-photon source has p_multi ≈ g2(0)·B²/2 and R falls like η.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qkdnet.keyrate.entropy import binary_entropy
from qkdnet.keyrate.observables import poisson_observables
from qkdnet.keyrate.optimise import maximise_scalar

SIFTING = 0.5


@dataclass(frozen=True)
class GllpRate:
    """GLLP rate (clipped at 0; ``raw_rate`` unclipped) with the gain, QBER and bounds used."""

    rate_per_pulse: float
    raw_rate: float
    gain: float
    qber: float
    q1: float
    e1: float
    p_multi: float
    mu: float | None = None


def gllp_rate(gain: float, qber: float, p_multi: float, ec_efficiency: float) -> GllpRate:
    """GLLP rate from the observed gain Q, QBER E and the source's multi-photon probability."""
    q1 = gain - p_multi
    if gain <= 0.0 or q1 <= 0.0:
        raw = -SIFTING * gain * ec_efficiency * float(binary_entropy(min(qber, 0.5))) - (
            p_multi - gain
        )
        return GllpRate(0.0, min(raw, 0.0), gain, qber, max(q1, 0.0), 0.5, p_multi)
    e1 = min(qber * gain / q1, 0.5)
    raw = SIFTING * (
        -gain * ec_efficiency * float(binary_entropy(min(qber, 0.5)))
        + q1 * (1.0 - float(binary_entropy(e1)))
    )
    return GllpRate(max(raw, 0.0), raw, gain, qber, q1, e1, p_multi)


def laser_multi_photon_prob(mu: float) -> float:
    """P(n ≥ 2) of a Poisson source: 1 − e^{−μ}(1 + μ)."""
    return -math.expm1(-mu) - mu * math.exp(-mu)


def laser_no_decoy_rate(
    eta: float,
    y0: float,
    optical_error: float,
    ec_efficiency: float,
    mu: float | None = None,
) -> GllpRate:
    """BB84 with a laser and no decoys (GLLP), maximised over μ unless ``mu`` is given."""

    def at(m: float) -> GllpRate:
        obs = poisson_observables(m, eta, y0, optical_error)
        r = gllp_rate(obs.gain, obs.qber, laser_multi_photon_prob(m), ec_efficiency)
        return GllpRate(r.rate_per_pulse, r.raw_rate, r.gain, r.qber, r.q1, r.e1, r.p_multi, m)

    if mu is not None:
        return at(mu)
    best, _ = maximise_scalar(lambda m: at(m).raw_rate, 1e-6, 1.0, grid=60)
    return at(best)
