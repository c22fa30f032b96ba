"""BB84 with a quantum-dot single-photon source and no decoys (GLLP with p_multi from g2(0)).

The source emits P(0) = 1 − B, P(1) = B − p_2, P(2) = p_2 with p_2 = g2(0)·B²/2 (Waks, Santori,
Yamamoto, Phys. Rev. A 66, 042315 (2002), eq. 9; see :class:`qkdnet.physics.SinglePhotonSource`).
Gains and QBER follow the channel model of :mod:`qkdnet.keyrate.observables`; the key rate is
the GLLP bound of :mod:`qkdnet.keyrate.gllp` with Q_1 ≥ Q − p_2:

    R = q·{−Q f h(E) + Q_1 [1 − h(e_1)]},  e_1 = E·Q/Q_1,  q = ½.

With g2(0) = 0, B = 1, no dark counts and f = 1 this is ideal BB84, R = ½·η·(1 − 2h(e)).
Per pulse means per trigger of the source.
"""

from __future__ import annotations

from qkdnet.keyrate.gllp import GllpRate, gllp_rate
from qkdnet.keyrate.observables import observables
from qkdnet.physics.source import SinglePhotonSource


def sps_rate(
    source: SinglePhotonSource,
    eta: float,
    y0: float,
    optical_error: float,
    ec_efficiency: float,
) -> GllpRate:
    """GLLP key rate per trigger of a single-photon source over total transmittance ``eta``."""
    obs = observables(source.photon_number_probs(), eta, y0, optical_error)
    return gllp_rate(obs.gain, obs.qber, source.multi_photon_prob, ec_efficiency)
