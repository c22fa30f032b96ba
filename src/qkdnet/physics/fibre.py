"""Optical fibre: loss grows linearly in dB with length, so transmittance is 10^(-loss/10)."""

from __future__ import annotations

from dataclasses import dataclass

from qkdnet.physics.validation import check_non_negative, check_positive

# Typical attenuation of installed standard single-mode fibre (ITU-T G.652) by band; urban
# figures from the Milan scenario notes: 0.20-0.22 dB/km at 1550 nm, 0.32-0.35 dB/km at 1310 nm.
# Below 1 µm (GaAs quantum dots at ~780 nm) telecom fibre is not single-mode and Rayleigh
# scattering dominates: about 3.5 dB/km at 780-850 nm (Keiser, Optical Fiber Communications).
_BAND_ATTENUATION_DB_PER_KM: tuple[tuple[float, float, float], ...] = (
    (1500.0, 1625.0, 0.20),  # C/L band
    (1260.0, 1360.0, 0.33),  # O band
    (1360.0, 1500.0, 0.25),  # E/S band
    (700.0, 1000.0, 3.5),  # visible/NIR, short-wavelength quantum dots
)


def default_attenuation_db_per_km(wavelength_nm: float) -> float:
    """Attenuation of standard telecom fibre at ``wavelength_nm`` (dB/km), by band."""
    check_positive("wavelength_nm", wavelength_nm)
    for low, high, attenuation in _BAND_ATTENUATION_DB_PER_KM:
        if low <= wavelength_nm < high:
            return attenuation
    raise ValueError(
        f"wavelength_nm {wavelength_nm} has no default fibre attenuation; "
        "give attenuation_db_per_km explicitly (bands known: 700-1000, 1260-1625 nm)"
    )


@dataclass(frozen=True)
class Fibre:
    """A fibre span: ``length_km`` at ``attenuation_db_per_km`` plus fixed connector/splice loss."""

    length_km: float
    attenuation_db_per_km: float = 0.2
    extra_loss_db: float = 0.0

    def __post_init__(self) -> None:
        check_non_negative("length_km", self.length_km)
        check_non_negative("attenuation_db_per_km", self.attenuation_db_per_km)
        check_non_negative("extra_loss_db", self.extra_loss_db)

    @property
    def loss_db(self) -> float:
        """Total loss of the span in dB."""
        return self.length_km * self.attenuation_db_per_km + self.extra_loss_db

    @property
    def transmittance(self) -> float:
        """Probability that a photon survives the span: 10^(-loss_db/10)."""
        return 10.0 ** (-self.loss_db / 10.0)
