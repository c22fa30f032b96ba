"""BBM92 with an entangled-pair source: coincidence model and asymptotic key rate.

Model (after Ma, Fung, Lo, Phys. Rev. A 76, 012307 (2007), eqs. 8-11, generalised from thermal
SPDC statistics to any pair-number distribution P(n)): each of the n pairs reaches Alice's
detectors with probability η_A and Bob's with η_B; each side has a background yield Y0 (two
threshold detectors). A coincidence is

    Q = Σ_n P(n) [1 − (1 − Y0A)(1 − η_A)^n − (1 − Y0B)(1 − η_B)^n
                  + (1 − Y0A)(1 − Y0B)((1 − η_A)(1 − η_B))^n].

It carries the pair's correlation only when exactly one photon of one pair is detected on each
side and nothing else clicks: P_c(n) = n η_A η_B ((1 − η_A)(1 − η_B))^{n−1} (1 − Y0A)(1 − Y0B);
every other coincidence (multi-pair accidentals, dark counts) is random, error ½:

    E·Q = ½·Q − (½ − e_pair) Σ_n P(n) P_c(n),  e_pair = e_V + e_d − 2 e_V e_d,  e_V = (1 − V)/2,

so without detector noise and multi-pairs E = (1 − V)/2 (+ optical error e_d). The key rate
(Ma, Fung, Lo 2007, eq. 3; the source may be untrusted and phase error = bit error by symmetry)
is R = q·Q·[1 − f h(E) − h(E)], q = ½, per trigger of the source.

Placement: ``source_position="middle"`` (default) puts the source halfway, each photon crossing
L/2 of fibre (η_A = η_B = η_rx·10^{−αL/20}); ``"alice"`` puts it in Alice's lab (η_A = η_rx,
η_B = η_rx·10^{−αL/10}). η_rx is each receiver's optics × detector efficiency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from qkdnet.keyrate.entropy import binary_entropy
from qkdnet.physics.source import EntangledPairSource

SourcePosition = Literal["middle", "alice"]
SIFTING = 0.5
E0 = 0.5


@dataclass(frozen=True)
class Bbm92Rate:
    """BBM92 rate per trigger (clipped at 0), coincidence probability and QBER."""

    rate_per_pulse: float
    raw_rate: float
    coincidence_prob: float
    qber: float
    eta_alice: float
    eta_bob: float


def arm_transmittances(
    channel_transmittance: float, receiver_efficiency: float, position: SourcePosition
) -> tuple[float, float]:
    """(η_A, η_B) for a link of total fibre transmittance ``channel_transmittance``."""
    if position == "middle":
        arm = receiver_efficiency * float(np.sqrt(channel_transmittance))
        return arm, arm
    if position == "alice":
        return receiver_efficiency, receiver_efficiency * channel_transmittance
    raise ValueError(f"source_position must be 'middle' or 'alice' (got {position!r})")


def coincidences(
    pair_probs: np.ndarray,
    eta_a: float,
    eta_b: float,
    y0_a: float,
    y0_b: float,
    pair_error: float,
) -> tuple[float, float]:
    """(Q, E): coincidence probability per trigger and its QBER (model in the module doc)."""
    n = np.arange(len(pair_probs))
    no_a = (1.0 - y0_a) * (1.0 - eta_a) ** n
    no_b = (1.0 - y0_b) * (1.0 - eta_b) ** n
    none = (1.0 - y0_a) * (1.0 - y0_b) * ((1.0 - eta_a) * (1.0 - eta_b)) ** n
    q = float(np.dot(pair_probs, 1.0 - no_a - no_b + none))
    lone = ((1.0 - eta_a) * (1.0 - eta_b)) ** np.maximum(n - 1, 0)
    correct = n * eta_a * eta_b * lone * (1.0 - y0_a) * (1.0 - y0_b)
    p_c = float(np.dot(pair_probs, correct))
    if q <= 0.0:
        return 0.0, 0.0
    return q, (E0 * q - (E0 - pair_error) * p_c) / q


def bbm92_rate(
    source: EntangledPairSource,
    channel_transmittance: float,
    receiver_efficiency: float,
    y0: float,
    optical_error: float,
    ec_efficiency: float,
    position: SourcePosition = "middle",
) -> Bbm92Rate:
    """Asymptotic BBM92 key rate per source trigger (Ma, Fung, Lo 2007, eq. 3)."""
    eta_a, eta_b = arm_transmittances(channel_transmittance, receiver_efficiency, position)
    e_v = source.intrinsic_qber
    pair_error = e_v + optical_error - 2.0 * e_v * optical_error
    q, e = coincidences(source.pair_number_probs(), eta_a, eta_b, y0, y0, pair_error)
    e = min(max(e, 0.0), 0.5)
    h_e = float(binary_entropy(e))
    raw = SIFTING * q * (1.0 - ec_efficiency * h_e - h_e)
    return Bbm92Rate(max(raw, 0.0), raw, q, e, eta_a, eta_b)
