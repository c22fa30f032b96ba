"""``key_rate``: one entry point that picks the model for a protocol and a hardware preset.

* ``decoy-bb84``: asymptotic vacuum + weak decoy (Ma et al. 2005; ``decoy_method="infinite"``
  for the infinite-decoy limit), or, with ``block_size`` = N pulses sent, the finite-key bound
  of Lim et al. 2014 on the expected counts (:mod:`qkdnet.keyrate.finite`);
* ``sps-bb84``: quantum-dot single photons, GLLP with p_multi from g2(0) (:mod:`.sps`);
* ``bbm92``: entangled pairs, coincidence model (:mod:`.bbm92`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from qkdnet.keyrate.bbm92 import SourcePosition, bbm92_rate
from qkdnet.keyrate.bounds import plob_bound
from qkdnet.keyrate.decoy import DecoyMethod, decoy_rate
from qkdnet.keyrate.detector_effects import effective_channel
from qkdnet.keyrate.finite import finite_key_rate
from qkdnet.keyrate.result import KeyRateResult
from qkdnet.keyrate.sps import sps_rate
from qkdnet.physics.fibre import Fibre
from qkdnet.physics.hardware import HardwarePreset, get_preset
from qkdnet.physics.source import EntangledPairSource, SinglePhotonSource, WeakCoherentSource
from qkdnet.physics.validation import PhysicsValueError

PROTOCOLS: tuple[str, ...] = ("decoy-bb84", "sps-bb84", "bbm92")
DEFAULT_PRESETS: dict[str, str] = {
    "decoy-bb84": "decoy-1550-spad",
    "sps-bb84": "qd-sps-1550",
    "bbm92": "qd-entangled-1550",
}
_SOURCE_KIND = {
    "decoy-bb84": (WeakCoherentSource, "an attenuated laser"),
    "sps-bb84": (SinglePhotonSource, "a single-photon source"),
    "bbm92": (EntangledPairSource, "an entangled-pair source"),
}


def resolve_preset(
    protocol: str,
    preset: HardwarePreset | str | None,
    *,
    detector_efficiency: float | None = None,
    dark_count_prob: float | None = None,
    optical_error: float | None = None,
) -> HardwarePreset:
    """The preset for ``protocol`` (its default when None) with the given device overrides.

    Raises ``ValueError`` for an unknown protocol, ``KeyError`` for an unknown preset name,
    and :class:`PhysicsValueError` (naming the field) for an override out of range or a preset
    whose source does not fit the protocol.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of: {', '.join(PROTOCOLS)}")
    if preset is None:
        preset = DEFAULT_PRESETS[protocol]
    if isinstance(preset, str):
        preset = get_preset(preset)
    kind, words = _SOURCE_KIND[protocol]
    if not isinstance(preset.source, kind):
        raise PhysicsValueError(
            "preset",
            f"{preset.name!r} has no {words.split(' ', 1)[1]}; protocol {protocol} needs {words} "
            f"(e.g. preset {DEFAULT_PRESETS[protocol]!r})",
        )
    detector_changes: dict[str, float] = {}
    if detector_efficiency is not None:
        detector_changes["efficiency"] = detector_efficiency
    if dark_count_prob is not None:
        detector_changes["dark_count_prob"] = dark_count_prob
    if detector_changes:
        preset = dataclasses.replace(
            preset, detector=dataclasses.replace(preset.detector, **detector_changes)
        )
    if optical_error is not None:
        preset = dataclasses.replace(preset, optical_error=optical_error)
    return preset


def key_rate(
    protocol: str,
    distance_km: float,
    preset: HardwarePreset | str | None = None,
    *,
    block_size: float | None = None,
    eps_sec: float = 1e-10,
    eps_cor: float = 1e-15,
    extra_loss_db: float = 0.0,
    attenuation_db_per_km: float | None = None,
    optimise: bool = True,
    mu: float | None = None,
    nu: float | None = None,
    decoy_method: DecoyMethod = "vacuum-weak",
    source_position: SourcePosition = "middle",
    detector_efficiency: float | None = None,
    dark_count_prob: float | None = None,
    optical_error: float | None = None,
    seed: int = 0,
) -> KeyRateResult:
    """Secret key rate of ``protocol`` over ``distance_km`` of fibre with a hardware preset.

    ``block_size`` None gives the asymptotic rate; a number N of pulses sent gives the
    finite-size rate ℓ/N of Lim et al. 2014 (decoy-bb84 only) with (ε_sec, ε_cor). ``optimise``
    chooses the free intensities (and, finite-size, the basis/intensity probabilities); ``mu`` and
    ``nu`` fix them. Range errors raise ``ValueError`` subclasses naming the parameter.

    >>> r = key_rate("decoy-bb84", 25.0)
    >>> 0 < r.key_rate_per_pulse < r.plob_per_pulse
    True
    """
    p = resolve_preset(
        protocol,
        preset,
        detector_efficiency=detector_efficiency,
        dark_count_prob=dark_count_prob,
        optical_error=optical_error,
    )
    attenuation = (
        p.attenuation_db_per_km if attenuation_db_per_km is None else attenuation_db_per_km
    )
    fibre = Fibre(distance_km, attenuation, extra_loss_db)
    if block_size is not None:
        if not (
            isinstance(block_size, (int, float)) and math.isfinite(block_size) and block_size > 0
        ):
            raise PhysicsValueError(
                "block_size", f"must be a number of pulses > 0 (got {block_size!r})"
            )
        if protocol != "decoy-bb84":
            raise PhysicsValueError(
                "block_size",
                f"the finite-size bound is implemented for decoy-bb84 only (got {protocol})",
            )
    for name, value in (("eps_sec", eps_sec), ("eps_cor", eps_cor)):
        if not (0.0 < value < 1.0):
            raise PhysicsValueError(name, f"must be between 0 and 1, exclusive (got {value!r})")
    channel = fibre.transmittance
    raw_eta, raw_y0 = channel * p.eta_bob, p.background_yield
    eta, y0 = raw_eta, raw_y0
    availability = 1.0

    def detectors_at(mean_photons: float) -> tuple[float, float]:
        """(η, Y0) after dead time and afterpulsing at ``mean_photons`` per pulse sent."""
        eff = effective_channel(raw_eta, raw_y0, p, mean_photons)
        return eff.eta, eff.background_yield

    if protocol != "bbm92":
        # Clicks of every intensity class keep the detectors busy and seed afterpulses, so the
        # correction uses the mean photon number over the intensity mix actually sent; where the
        # settings are optimised they are chosen self-consistently with it (below).
        if isinstance(p.source, WeakCoherentSource):
            levels = (mu if mu is not None else p.source.mu, p.source.nu, p.source.omega)
            mean_photons = sum(q * m for q, m in zip(p.source.intensity_probs, levels, strict=True))
        else:
            mean_photons = p.source.brightness
        effective = effective_channel(eta, y0, p, mean_photons)
        eta, y0, availability = effective.eta, effective.background_yield, effective.availability
    params: dict[str, Any] = {
        "preset": p.name,
        "attenuation_db_per_km": attenuation,
        "extra_loss_db": extra_loss_db,
        "eta_total": eta,
        "background_yield": y0,
        "detector_availability": availability,
        "optical_error": p.optical_error,
        "ec_efficiency": p.ec_efficiency,
        "source_rate_hz": p.source.rate_hz,
        "block_size": block_size,
    }
    if protocol == "decoy-bb84":
        src = p.source
        assert isinstance(src, WeakCoherentSource)
        fixed_mu = mu if (mu is not None or optimise) else src.mu
        use_nu = nu if nu is not None else src.nu
        if block_size is None:
            r = decoy_rate(
                eta,
                y0,
                p.optical_error,
                p.ec_efficiency,
                nu=use_nu,
                mu=fixed_mu,
                method=decoy_method,
            )
            for _ in range(4):  # fixed point: the detectors' load follows the chosen μ
                levels = (r.mu, r.nu, src.omega)
                mean = sum(q * m for q, m in zip(src.intensity_probs, levels, strict=True))
                effective = effective_channel(raw_eta, raw_y0, p, mean)
                if abs(effective.eta - eta) <= 1e-6 * eta:
                    break
                eta, y0 = effective.eta, effective.background_yield
                availability = effective.availability
                r = decoy_rate(
                    eta, y0, p.optical_error, p.ec_efficiency, nu=use_nu, mu=fixed_mu,
                    method=decoy_method,
                )  # fmt: skip
            params.update(eta_total=eta, background_yield=y0, detector_availability=availability)
            rate, qber = r.rate_per_pulse, r.qber
            params.update(
                model="ma2005-" + decoy_method,
                mu=r.mu,
                nu=r.nu,
                omega=0.0,
                y1=r.y1,
                e1=r.e1,
                gain=r.gain,
                sifting=0.5,
            )
        else:
            f = finite_key_rate(
                float(block_size),
                eta,
                y0,
                p.optical_error,
                p.ec_efficiency,
                eps_sec=eps_sec,
                eps_cor=eps_cor,
                mu3=src.omega,
                mu=mu if (mu is not None or optimise) else src.mu,
                nu=nu if (nu is not None or optimise) else src.nu,
                probs=None if optimise else src.intensity_probs,
                q_x=None if optimise else 0.5,
                seed=seed,
                channel=detectors_at,
            )
            rate, qber = f.rate_per_pulse, f.qber_x
            mean = sum(q * m for q, m in zip(f.probs, f.intensities, strict=True))
            effective = effective_channel(raw_eta, raw_y0, p, mean)
            eta, y0, availability = (
                effective.eta,
                effective.background_yield,
                effective.availability,
            )
            params.update(eta_total=eta, background_yield=y0, detector_availability=availability)
            params.update(
                model="lim2014",
                intensities=list(f.intensities),
                probs=list(f.probs),
                q_x=f.q_x,
                key_length=f.key_length,
                eps_sec=eps_sec,
                eps_cor=eps_cor,
                s_x1=f.bound.s_x1,
                phi_x=f.bound.phi_x,
                reason=f.bound.reason,
            )
    elif protocol == "sps-bb84":
        src = p.source
        assert isinstance(src, SinglePhotonSource)
        r = sps_rate(src, eta, y0, p.optical_error, p.ec_efficiency)
        rate, qber = r.rate_per_pulse, r.qber
        params.update(
            model="gllp-g2",
            brightness=src.brightness,
            g2_zero=src.g2_zero,
            p_multi=r.p_multi,
            gain=r.gain,
            e1=r.e1,
            sifting=0.5,
        )
    else:
        src = p.source
        assert isinstance(src, EntangledPairSource)
        r = bbm92_rate(
            src, channel, p.eta_bob, y0, p.optical_error, p.ec_efficiency, source_position
        )
        rate, qber = r.rate_per_pulse, r.qber
        params.update(
            model="bbm92-coincidence",
            source_position=source_position,
            pair_prob=src.pair_prob,
            visibility=src.visibility,
            coincidence_prob=r.coincidence_prob,
            sifting=0.5,
        )
    return KeyRateResult(
        protocol=protocol,
        distance_km=float(distance_km),
        transmittance=channel,
        qber=qber,
        key_rate_per_pulse=rate,
        key_rate_bps=rate * p.source.rate_hz,
        plob_per_pulse=float(plob_bound(channel)),
        params=params,
    )
