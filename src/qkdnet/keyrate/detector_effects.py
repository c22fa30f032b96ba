"""Dead time and afterpulsing folded into the channel model of the closed-form rates.

The standard model (:mod:`qkdnet.keyrate.observables`) has ideal detectors. Two effects of real
detectors matter at metropolitan click rates, and the event-level simulator models both:

* dead time τ: a non-paralysable detector clicking at rate r is blind a fraction r·τ of the
  time, so every yield is scaled by the availability A = 1/(1 + r·τ) (Knoll, Radiation Detection
  and Measurement, 4th ed., eq. 4.4; for QKD: Rogers et al., New J. Phys. 9, 319 (2007));
* afterpulsing: each click triggers a spurious click in a later gate with probability p_ap,
  an extra background yield carrying random bits (Zhang et al., Light Sci. Appl. 4, e286
  (2015)). The afterpulse comes after a geometric delay of mean τ gates and is lost if the
  detector clicks again first (probability r per gate), so it survives with probability
  s = (1/τ) / (1 − (1 − 1/τ)(1 − r)) and adds the yield p_ap·s·Q.

For η·μ ≪ 1 scaling every yield by A equals scaling η and Y0 by A, so the corrected pair
(η_eff, Y0_eff) can be handed to the unchanged key-rate models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qkdnet.physics.hardware import HardwarePreset

DETECTORS_PER_RECEIVER = 2


@dataclass(frozen=True)
class EffectiveChannel:
    """η and Y0 after dead time and afterpulsing, with the two corrections themselves."""

    eta: float
    background_yield: float
    availability: float
    afterpulse_yield: float


def effective_channel(
    eta: float, background_yield: float, preset: HardwarePreset, mean_photons: float
) -> EffectiveChannel:
    """Correct (η, Y0) for the preset's detector at ``mean_photons`` per pulse, averaged over
    every pulse sent (all intensity classes: any click blinds the detector and seeds afterpulses)."""
    # numpy arithmetic: ``mean_photons`` may be an array (the optimiser's whole population)
    gain = 1.0 - (1.0 - background_yield) * np.exp(-eta * np.asarray(mean_photons, dtype=float))
    detector = preset.detector
    rate_per_detector_hz = gain * preset.source.rate_hz / DETECTORS_PER_RECEIVER
    availability = 1.0 / (1.0 + rate_per_detector_hz * detector.dead_time_s)
    clicks_per_gate = gain / DETECTORS_PER_RECEIVER
    delay_gates = max(1.0, detector.afterpulse_delay_s * preset.source.rate_hz)
    survival = (1.0 / delay_gates) / (1.0 - (1.0 - 1.0 / delay_gates) * (1.0 - clicks_per_gate))
    afterpulse_yield = detector.afterpulse_prob * survival * gain
    return EffectiveChannel(
        eta=availability * eta,
        background_yield=availability * (background_yield + afterpulse_yield),
        availability=availability,
        afterpulse_yield=afterpulse_yield,
    )
