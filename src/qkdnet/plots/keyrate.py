"""Secret key rate against fibre length for several protocols and hardware presets, with PLOB.

The PLOB bound −log2(1 − η) (Pirandola, Laurenza, Ottaviani, Banchi, Nat. Commun. 8, 15043
(2017), eq. 4) is the most any repeaterless protocol can distil per use of a lossy channel of
transmittance η; every curve must stay under the bound of its own channel. Rates are drawn in
secret bits per emitted pulse on a log scale; a rate of zero (beyond the cut-off) is not drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from qkdnet.plots.canvas import new_figure, xy_arrays

X_LABEL = "Fibre length (km)"
Y_LABEL = {"pulse": "Secret key rate (bits per pulse)", "s": "Secret key rate (bit/s)"}


@dataclass(frozen=True)
class RateCurve:
    """One series: ``rate`` (bits per pulse or per second) at ``distance_km``."""

    label: str
    distance_km: np.ndarray
    rate: np.ndarray

    def __post_init__(self) -> None:
        x, y = xy_arrays(
            f"curve {self.label!r}", self.distance_km, self.rate, "distance_km", "rate"
        )
        object.__setattr__(self, "distance_km", x)
        object.__setattr__(self, "rate", y)


def key_rate_figure(
    curves: Sequence[RateCurve],
    bounds: Sequence[RateCurve] = (),
    unit: str = "pulse",
    title: str | None = None,
) -> Figure:
    """Draw key-rate ``curves`` (solid) and ``bounds`` such as PLOB (dashed, grey) on log axes."""
    if unit not in Y_LABEL:
        raise ValueError(f"unit must be one of {', '.join(Y_LABEL)} (got {unit!r})")
    if not curves:
        raise ValueError("key_rate_figure needs at least one curve")
    fig, ax = new_figure()
    for curve in curves:
        positive = curve.rate > 0
        ax.plot(curve.distance_km[positive], curve.rate[positive], label=curve.label, lw=1.8)
    for i, bound in enumerate(bounds):
        positive = bound.rate > 0
        ax.plot(
            bound.distance_km[positive],
            bound.rate[positive],
            label=bound.label,
            color="0.35",
            ls=("--", ":", "-.")[i % 3],
            lw=1.2,
        )
    ax.set_yscale("log")
    ax.set_xlabel(X_LABEL)
    ax.set_ylabel(Y_LABEL[unit])
    ax.set_xlim(left=0)
    ax.legend(fontsize="small", loc="upper right")
    if title:
        ax.set_title(title)
    return fig


def key_rate_curves(
    setups: Sequence[tuple[str, str | None]],
    distance_km: Sequence[float] | np.ndarray,
    block_size: float | None = None,
    unit: str = "pulse",
) -> tuple[list[RateCurve], list[RateCurve]]:
    """Curves of :func:`qkdnet.keyrate.key_rate` for each ``(protocol, preset)`` and the PLOB
    bound of each distinct channel (per pulse only: PLOB is a per-channel-use bound).

    ``preset=None`` uses the protocol's default preset. Returns ``(curves, bounds)``.
    """
    from qkdnet.keyrate import key_rate, plob_bound, resolve_preset

    distances = np.asarray(distance_km, dtype=float)
    curves: list[RateCurve] = []
    attenuations: list[float] = []
    for protocol, preset in setups:
        results = [key_rate(protocol, float(d), preset, block_size=block_size) for d in distances]
        name = results[0].params.get("preset", preset) if results else preset
        field = "key_rate_per_pulse" if unit == "pulse" else "key_rate_bps"
        rate = np.array([getattr(r, field) for r in results])
        suffix = f", N = {block_size:.0e}" if block_size else ""
        curves.append(RateCurve(f"{protocol} ({name}{suffix})", distances, rate))
        attenuation = resolve_preset(protocol, preset).attenuation_db_per_km
        if attenuation not in attenuations:
            attenuations.append(attenuation)
    bounds = []
    if unit == "pulse":
        for attenuation in attenuations:
            eta = 10.0 ** (-attenuation * distances / 10.0)
            bounds.append(
                RateCurve(f"PLOB bound ({attenuation:g} dB/km)", distances, plob_bound(eta))
            )
    return curves, bounds
