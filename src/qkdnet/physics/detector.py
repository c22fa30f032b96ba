"""Single-photon detectors: efficiency, dark counts, dead time and afterpulsing.

Two families matter for metropolitan QKD at 1550 nm: gated InGaAs/InP avalanche photodiodes
(SPADs) and superconducting nanowire detectors (SNSPDs). The dark-count probability is per
detection gate (or per timing window of a free-running detector) and per detector.
"""

from __future__ import annotations

from dataclasses import dataclass

from qkdnet.physics.validation import check_non_negative, check_positive, check_probability


@dataclass(frozen=True)
class Detector:
    """One threshold detector (Bob has one per bit value; BBM92 Alice too)."""

    name: str
    efficiency: float
    dark_count_prob: float
    dead_time_s: float = 0.0
    afterpulse_prob: float = 0.0
    gate_width_s: float = 1e-9
    # Mean delay of an afterpulse after its click (trap release time); tens of ns for GHz-gated
    # InGaAs/InP SPADs (Zhang, Itzler, Zbinden, Pan, Light Sci. Appl. 4, e286 (2015)).
    afterpulse_delay_s: float = 50e-9

    def __post_init__(self) -> None:
        check_probability("efficiency", self.efficiency)
        check_probability("dark_count_prob", self.dark_count_prob)
        check_non_negative("dead_time_s", self.dead_time_s)
        check_probability("afterpulse_prob", self.afterpulse_prob)
        check_positive("gate_width_s", self.gate_width_s)
        check_non_negative("afterpulse_delay_s", self.afterpulse_delay_s)

    @classmethod
    def free_running(
        cls,
        name: str,
        efficiency: float,
        dark_count_rate_hz: float,
        window_s: float,
        dead_time_s: float = 0.0,
        afterpulse_prob: float = 0.0,
    ) -> Detector:
        """A free-running detector: its dark-count rate times the coincidence window."""
        check_non_negative("dark_count_rate_hz", dark_count_rate_hz)
        return cls(
            name=name,
            efficiency=efficiency,
            dark_count_prob=min(1.0, dark_count_rate_hz * window_s),
            dead_time_s=dead_time_s,
            afterpulse_prob=afterpulse_prob,
            gate_width_s=window_s,
        )

    @property
    def dark_count_rate_hz(self) -> float:
        """Equivalent dark-count rate over the gate/window width."""
        return self.dark_count_prob / self.gate_width_s


def ingaas_spad(efficiency: float = 0.20, dark_count_prob: float = 1e-6) -> Detector:
    """Gated InGaAs/InP SPAD at 1550 nm, GHz sinusoidal/self-differencing gating.

    Efficiency 10-30 %, dark-count probability ~1e-6 per 1 ns gate, afterpulsing a few %,
    Zhang, Itzler, Zbinden, Pan, "Advances in InGaAs/InP single-photon detector systems for
    quantum communication", Light Sci. Appl. 4, e286 (2015). Dead time 10 ns: self-differencing
    GHz gating sustains count rates of 100 MHz (Yuan, Kardynal, Sharpe, Shields, Appl. Phys.
    Lett. 91, 041114 (2007)); slower hold-off (µs) belongs to MHz-gated detectors.
    """
    return Detector(
        name="ingaas-spad",
        efficiency=efficiency,
        dark_count_prob=dark_count_prob,
        dead_time_s=10e-9,
        afterpulse_prob=0.02,
        gate_width_s=1e-9,
    )


def snspd(efficiency: float = 0.85, dark_count_rate_hz: float = 100.0) -> Detector:
    """Superconducting nanowire detector at 1550 nm.

    System efficiency 80-93 %, dark counts 1-1000 Hz, dead time ~50 ns, no afterpulsing:
    Marsili et al., Nat. Photon. 7, 210 (2013) (93 % system efficiency); Hadfield, Nat. Photon.
    3, 696 (2009). A 1 ns coincidence window turns 100 Hz into 1e-7 per window.
    """
    return Detector.free_running(
        name="snspd",
        efficiency=efficiency,
        dark_count_rate_hz=dark_count_rate_hz,
        window_s=1e-9,
        dead_time_s=50e-9,
        afterpulse_prob=0.0,
    )
