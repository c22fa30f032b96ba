"""QBER over device time: shows polarisation drift and what the compensation loop recovers.

Device time of a pulse is its index over the source's repetition rate. The series bins the
sifted bits (Alice's basis = Bob's basis) of both bases into windows of ``window_s`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qkdnet.simulate.engine import resolve_preset, run


@dataclass(frozen=True)
class QberSeries:
    """Window start times (s), sifted bits and errors per window, and their ratio."""

    t_s: np.ndarray
    sifted: np.ndarray
    errors: np.ndarray

    @property
    def qber(self) -> np.ndarray:
        return self.errors / np.maximum(self.sifted, 1)


def qber_time_series(
    protocol: str,
    distance_km: float,
    duration_s: float,
    rng: np.random.Generator,
    *,
    window_s: float = 0.01,
    **options,
) -> QberSeries:
    """Simulate ``duration_s`` seconds of a link and return its QBER per window.

    ``options`` go to :func:`qkdnet.simulate.run` (e.g. ``drift_rad_per_sqrt_s=2.0,
    compensation_fraction=0.02``).

    Example::

        >>> s = qber_time_series("decoy-bb84", 25.0, 0.05, np.random.default_rng(1),
        ...                      drift_rad_per_sqrt_s=3.0)
        >>> s.qber.shape
        (5,)
    """
    if not (np.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a positive number of seconds (got {duration_s})")
    if not (np.isfinite(window_s) and 0 < window_s <= duration_s):
        raise ValueError(f"window_s must be in (0, duration_s] (got {window_s})")
    rate = resolve_preset(protocol, options.get("preset")).source.rate_hz
    pulses = round(duration_s * rate)
    window = max(1, round(window_s * rate))
    n_windows = -(-pulses // window)
    sifted = np.zeros(n_windows, dtype=np.int64)
    errors = np.zeros(n_windows, dtype=np.int64)
    for block in run(protocol, distance_km, pulses, rng, **options):
        a, b = block.alice, block.bob
        match = a.basis == b.basis
        w = a.pulse_index[match] // window
        sifted += np.bincount(w, minlength=n_windows)[:n_windows]
        errors += np.bincount(w[a.bit[match] != b.bit[match]], minlength=n_windows)[:n_windows]
    return QberSeries(t_s=np.arange(n_windows) * window / rate, sifted=sifted, errors=errors)
