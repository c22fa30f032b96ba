"""The answer of :func:`qkdnet.keyrate.key_rate`: one protocol over one link length."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class KeyRateResult:
    """Secret key rate of one link.

    ``transmittance`` is the channel's (fibre plus extra loss, Bob's receiver excluded), the η
    of the PLOB bound ``plob_per_pulse``; ``qber`` is the QBER of the key (signal) pulses;
    ``key_rate_per_pulse`` is secret bits per emitted pulse (per source trigger for single
    photons and pairs); ``key_rate_bps`` multiplies it by the source's repetition rate.
    ``params`` holds the settings used (intensities, probabilities, preset, block size, ...).
    """

    protocol: str
    distance_km: float
    transmittance: float
    qber: float
    key_rate_per_pulse: float
    key_rate_bps: float
    plob_per_pulse: float
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The CLI's JSON object: the contract keys first, then ``params``."""
        return {
            "protocol": self.protocol,
            "distance_km": self.distance_km,
            "transmittance": self.transmittance,
            "qber": self.qber,
            "key_rate_per_pulse": self.key_rate_per_pulse,
            "key_rate_bps": self.key_rate_bps,
            "plob_per_pulse": self.plob_per_pulse,
            "params": dict(self.params),
        }
