"""Named hardware presets: a source, a detector and the optics around them, each value cited.

A preset describes the devices of one link, not its length: combine it with a :class:`Fibre`
(``preset.fibre(length_km)``) to get a channel. ``bob_transmittance`` is the loss inside Bob's
receiver (optics before the detectors); ``optical_error`` is the probability that a photon reaches
the wrong detector (misalignment, finite interference visibility: e_detector in Ma et al. 2005).
"""

from __future__ import annotations

from dataclasses import dataclass

from qkdnet.physics.detector import Detector, ingaas_spad, snspd
from qkdnet.physics.fibre import Fibre
from qkdnet.physics.source import (
    EntangledPairSource,
    SinglePhotonSource,
    Source,
    WeakCoherentSource,
)
from qkdnet.physics.validation import check_non_negative, check_positive, check_probability


@dataclass(frozen=True)
class HardwarePreset:
    """The devices of one QKD link and the protocol they run by default."""

    name: str
    description: str
    protocol: str
    source: Source
    detector: Detector
    optical_error: float
    bob_transmittance: float
    attenuation_db_per_km: float
    ec_efficiency: float
    citation: str

    def __post_init__(self) -> None:
        check_probability("optical_error", self.optical_error)
        check_probability("bob_transmittance", self.bob_transmittance)
        check_non_negative("attenuation_db_per_km", self.attenuation_db_per_km)
        check_positive("ec_efficiency", self.ec_efficiency)

    @property
    def eta_bob(self) -> float:
        """Bob's total efficiency: internal transmittance times detector efficiency."""
        return self.bob_transmittance * self.detector.efficiency

    @property
    def background_yield(self) -> float:
        """Y0: probability of a click with no signal photon, two detectors: 1 − (1 − p_d)²."""
        return 1.0 - (1.0 - self.detector.dark_count_prob) ** 2

    def fibre(self, length_km: float, extra_loss_db: float = 0.0) -> Fibre:
        """A fibre span of ``length_km`` at this preset's wavelength attenuation."""
        return Fibre(length_km, self.attenuation_db_per_km, extra_loss_db)


PRESETS: dict[str, HardwarePreset] = {
    "gys-2004": HardwarePreset(
        name="gys-2004",
        description="Gobby-Yuan-Shields 1550 nm system as used by Ma, Qi, Zhao, Lo 2005",
        protocol="decoy-bb84",
        # The per-pulse figures of Ma et al. do not depend on the clock; 2 MHz is an assumed
        # clock used only to turn bits per pulse into bits per second.
        source=WeakCoherentSource(rate_hz=2e6, wavelength_nm=1550.0, mu=0.48, nu=0.05, omega=0.0),
        # Ma et al., Phys. Rev. A 72, 012326 (2005), Table I (GYS, Appl. Phys. Lett. 84, 3762):
        # eta_Bob = 4.5 % (Bob's transmittance x detector efficiency) and Y0 = 1.7e-6 for the
        # whole receiver, i.e. 8.5e-7 per detector and gate.
        detector=Detector(name="gys-ingaas-apd", efficiency=0.045, dark_count_prob=8.5e-7),
        optical_error=0.033,  # e_detector = 3.3 % (Ma et al. 2005, Table I)
        bob_transmittance=1.0,  # already folded into eta_Bob above
        attenuation_db_per_km=0.21,  # alpha = 0.21 dB/km (Ma et al. 2005, Table I)
        ec_efficiency=1.22,  # f(e) = 1.22 (Ma et al. 2005)
        citation="Ma, Qi, Zhao, Lo, Phys. Rev. A 72, 012326 (2005); Gobby, Yuan, Shields, "
        "Appl. Phys. Lett. 84, 3762 (2004)",
    ),
    "decoy-1550-spad": HardwarePreset(
        name="decoy-1550-spad",
        description="Typical metropolitan 1550 nm decoy BB84: 1 GHz laser, gated InGaAs SPADs",
        protocol="decoy-bb84",
        # 1 GHz decoy-BB84 transmitters: Lucamarini et al., Opt. Express 21, 24550 (2013).
        source=WeakCoherentSource(rate_hz=1e9, wavelength_nm=1550.0, mu=0.5, nu=0.1, omega=0.0),
        # InGaAs/InP SPAD, 20 % efficiency, 1e-6 dark counts per gate (Zhang et al. 2015 review).
        detector=ingaas_spad(efficiency=0.20, dark_count_prob=1e-6),
        optical_error=0.01,  # 1 % misalignment, typical of phase-encoded systems (Lucamarini 2013)
        bob_transmittance=0.5,  # ~3 dB receiver insertion loss (interferometer + filters)
        attenuation_db_per_km=0.20,  # G.652 fibre at 1550 nm
        ec_efficiency=1.10,  # modern LDPC/Cascade reconciliation efficiency
        citation="Lucamarini et al., Opt. Express 21, 24550 (2013); Zhang, Itzler, Zbinden, Pan, "
        "Light Sci. Appl. 4, e286 (2015)",
    ),
    "decoy-1550-snspd": HardwarePreset(
        name="decoy-1550-snspd",
        description="1550 nm decoy BB84 at 1 GHz with superconducting nanowire detectors",
        protocol="decoy-bb84",
        source=WeakCoherentSource(rate_hz=1e9, wavelength_nm=1550.0, mu=0.5, nu=0.1, omega=0.0),
        detector=snspd(efficiency=0.85, dark_count_rate_hz=100.0),  # Marsili et al. 2013
        optical_error=0.01,
        bob_transmittance=0.5,
        attenuation_db_per_km=0.20,
        ec_efficiency=1.10,
        citation="Marsili et al., Nat. Photon. 7, 210 (2013); Lucamarini et al. (2013)",
    ),
    "qd-sps-1550": HardwarePreset(
        name="qd-sps-1550",
        description="Telecom quantum-dot single-photon source, BB84 without decoys, SNSPDs",
        protocol="sps-bb84",
        # Telecom-band quantum dot with g2(0) = 0.005 and superconducting detectors: Takemoto
        # et al., Sci. Rep. 5, 14383 (2015). Brightness at the fibre 10 % and an 80 MHz trigger
        # are representative of current telecom quantum dots (Vajner et al., Adv. Quantum
        # Technol. 5, 2100116 (2022), review).
        source=SinglePhotonSource(
            rate_hz=80e6, wavelength_nm=1550.0, brightness=0.10, g2_zero=0.005
        ),
        detector=snspd(efficiency=0.85, dark_count_rate_hz=100.0),
        optical_error=0.01,
        bob_transmittance=0.7,  # passive polarisation-analysis receiver, ~1.5 dB
        attenuation_db_per_km=0.20,
        ec_efficiency=1.10,
        citation="Takemoto et al., Sci. Rep. 5, 14383 (2015); Vajner et al., Adv. Quantum "
        "Technol. 5, 2100116 (2022)",
    ),
    "qd-entangled-780": HardwarePreset(
        name="qd-entangled-780",
        description="GaAs quantum-dot entangled pairs at ~785 nm (Milan-Bicocca/Linz style), BBM92",
        protocol="bbm92",
        # GaAs droplet-epitaxy quantum dots emit entangled pairs on demand at ~785 nm with
        # fidelity ~0.9 and QKD QBER of a few %: Basso Basset et al., Sci. Adv. 7, eabe6379
        # (2021); Schimpf et al., Sci. Adv. 7, eabe8905 (2021) (80 MHz two-photon excitation).
        # Pair probability into the two fibres of 1 % is representative of those set-ups.
        source=EntangledPairSource(
            rate_hz=80e6,
            wavelength_nm=785.0,
            pair_prob=0.01,
            visibility=0.93,
            g2_zero=0.01,
            source_kind="quantum-dot",
        ),
        # Silicon SPADs at 785 nm: ~60 % efficiency, ~100 Hz dark counts, ~22 ns dead time
        # (Excelitas SPCM datasheet class); 1 ns coincidence window.
        detector=Detector.free_running(
            "si-spad", efficiency=0.6, dark_count_rate_hz=100.0, window_s=1e-9, dead_time_s=22e-9
        ),
        optical_error=0.005,
        bob_transmittance=0.8,
        attenuation_db_per_km=3.5,  # standard telecom fibre at ~785 nm (Rayleigh dominated)
        ec_efficiency=1.10,
        citation="Basso Basset et al., Sci. Adv. 7, eabe6379 (2021); Schimpf et al., Sci. Adv. "
        "7, eabe8905 (2021)",
    ),
    "qd-entangled-1550": HardwarePreset(
        name="qd-entangled-1550",
        description="Telecom C-band quantum-dot entangled pairs, BBM92 with SNSPDs",
        protocol="bbm92",
        # InAs/InP telecom quantum dots emitting entangled pairs in the C band: fidelity ~0.9;
        # Zeuner et al., ACS Photonics 8, 2337 (2021); Vajner et al. (2022) review.
        source=EntangledPairSource(
            rate_hz=80e6,
            wavelength_nm=1550.0,
            pair_prob=0.02,
            visibility=0.90,
            g2_zero=0.01,
            source_kind="quantum-dot",
        ),
        detector=snspd(efficiency=0.85, dark_count_rate_hz=100.0),
        optical_error=0.005,
        bob_transmittance=0.8,
        attenuation_db_per_km=0.20,
        ec_efficiency=1.10,
        citation="Zeuner et al., ACS Photonics 8, 2337 (2021); Vajner et al., Adv. Quantum "
        "Technol. 5, 2100116 (2022)",
    ),
}


def preset_names() -> list[str]:
    """Names of the built-in hardware presets, sorted."""
    return sorted(PRESETS)


def get_preset(name: str) -> HardwarePreset:
    """Look up a preset; an unknown name raises ``KeyError`` listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(
            f"unknown hardware preset {name!r}; choose one of: {', '.join(preset_names())}"
        ) from None
