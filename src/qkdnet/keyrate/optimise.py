"""Choosing source settings that maximise a key rate, and the distance where the rate ends.

Key-rate formulas are smooth in μ where they are positive but can be flat (clipped at 0) or
multi-modal elsewhere, so a coarse logarithmic grid brackets the maximum before a bounded scalar
search refines it (scipy.optimize.minimize_scalar); the cut-off distance is a root of the
unclipped rate (scipy.optimize.brentq).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.optimize import brentq, minimize_scalar


def maximise_scalar(
    f: Callable[[float], float], low: float, high: float, grid: int = 40
) -> tuple[float, float]:
    """(x*, f(x*)) maximising ``f`` on [low, high]: log grid, then bounded Brent refinement."""
    if not (0.0 < low < high):
        raise ValueError(f"need 0 < low < high (got {low}, {high})")
    xs = np.geomspace(low, high, grid)
    values = np.array([f(float(x)) for x in xs])
    i = int(np.argmax(values))
    lo, hi = xs[max(i - 1, 0)], xs[min(i + 1, grid - 1)]
    res = minimize_scalar(
        lambda x: -f(float(x)), bounds=(lo, hi), method="bounded", options={"xatol": 1e-6 * hi}
    )
    if -res.fun >= values[i]:
        return float(res.x), float(-res.fun)
    return float(xs[i]), float(values[i])


def cutoff_distance(
    rate: Callable[[float], float], low_km: float = 0.0, high_km: float = 400.0
) -> float:
    """Largest distance in [low_km, high_km] with ``rate(d) > 0`` (``rate`` decreasing in d).

    Returns ``low_km`` when there is no key even there and ``high_km`` when key remains.
    """
    if rate(low_km) <= 0.0:
        return low_km
    if rate(high_km) > 0.0:
        return high_km
    return float(brentq(rate, low_km, high_km, xtol=1e-3))
