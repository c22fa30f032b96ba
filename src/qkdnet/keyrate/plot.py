"""Key rate against distance for several protocols beside the PLOB bound (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np
from matplotlib.figure import Figure

from qkdnet.keyrate.bounds import plob_bound
from qkdnet.keyrate.rate import key_rate


def rate_curve(
    protocol: str, distances_km: Sequence[float], **kwargs: Any
) -> tuple[np.ndarray, float]:
    """Key rate per pulse of ``protocol`` at each distance (0 where no key), and the fibre
    attenuation (dB/km) used, from :func:`qkdnet.keyrate.key_rate` with ``kwargs``."""
    rates = []
    attenuation = 0.0
    for d in distances_km:
        r = key_rate(protocol, float(d), **kwargs)
        rates.append(r.key_rate_per_pulse)
        attenuation = float(r.params["attenuation_db_per_km"])
    return np.asarray(rates), attenuation


def key_rate_figure(
    distances_km: Sequence[float],
    curves: dict[str, np.ndarray],
    attenuations_db_per_km: Sequence[float],
    title: str = "Secret key rate vs distance",
) -> Figure:
    """A figure with one line per protocol (zero rates left out on the log axis) and the PLOB
    bound −log2(1 − η) for each fibre attenuation in use."""
    d = np.asarray(distances_km, dtype=float)
    fig = Figure(figsize=(7.0, 4.8), layout="constrained")
    ax = fig.add_subplot()
    for label, rates in curves.items():
        y = np.where(np.asarray(rates) > 0, rates, np.nan)
        ax.plot(d, y, marker="o", markersize=3, label=label)
    for alpha in sorted(set(attenuations_db_per_km)):
        eta = 10.0 ** (-alpha * d / 10.0)
        with np.errstate(divide="ignore"):
            plob = np.where(eta < 1.0, plob_bound(np.minimum(eta, 1.0)), np.nan)
        ax.plot(d, plob, "k--", label=f"PLOB bound ({alpha:g} dB/km)")
    ax.set_yscale("log")
    ax.set_xlabel("Distance (km)")
    ax.set_ylabel("Secret key rate (bits per pulse)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return fig
