"""QBER over time: polarisation/phase drift, its compensation, attacks, and the abort threshold.

Each series is a time axis and the QBER measured per block; shaded spans mark events (an attack
running, a compensation step). The dotted line is the abort threshold (11 % for BB84 with one-way
post-processing: Shor and Preskill, Phys. Rev. Lett. 85, 441 (2000)).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from qkdnet.plots.canvas import new_figure, xy_arrays

X_LABEL = "Time (s)"
Y_LABEL = "QBER (%)"


@dataclass(frozen=True)
class QberSeries:
    """QBER (0..1) per block at ``time_s``."""

    label: str
    time_s: np.ndarray
    qber: np.ndarray

    def __post_init__(self) -> None:
        x, y = xy_arrays(f"series {self.label!r}", self.time_s, self.qber, "time_s", "qber")
        object.__setattr__(self, "time_s", x)
        object.__setattr__(self, "qber", y)


@dataclass(frozen=True)
class Span:
    """A shaded interval of time with a label (e.g. ``intercept-resend``)."""

    label: str
    start_s: float
    stop_s: float


def qber_time_figure(
    series: Sequence[QberSeries],
    spans: Sequence[Span] = (),
    threshold: float | None = 0.11,
    title: str | None = None,
) -> Figure:
    """Draw QBER series in percent against time, with event spans and the abort threshold."""
    if not series:
        raise ValueError("qber_time_figure needs at least one series")
    fig, ax = new_figure(6.4, 3.6)
    for s in series:
        ax.plot(
            s.time_s,
            100.0 * s.qber,
            label=s.label,
            lw=1.4,
            marker="." if len(s.time_s) < 60 else None,
        )
    colours = ("tab:red", "tab:purple", "tab:olive", "tab:cyan")
    for i, span in enumerate(spans):
        ax.axvspan(
            span.start_s, span.stop_s, color=colours[i % len(colours)], alpha=0.15, label=span.label
        )
    if threshold is not None:
        ax.axhline(
            100.0 * threshold,
            color="k",
            ls=":",
            lw=1.0,
            label=f"abort threshold {100 * threshold:g} %",
        )
    ax.set_xlabel(X_LABEL)
    ax.set_ylabel(Y_LABEL)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small", loc="best")
    if title:
        ax.set_title(title)
    return fig


class QberWindows:
    """QBER per window of device time, collected from simulation blocks as they stream by.

    Sifted bits are those where Alice's and Bob's bases agree (both bases, as in
    :func:`qkdnet.simulate.timeseries.qber_time_series`); a window is ``window_pulses`` pulses,
    i.e. ``window_pulses / rate_hz`` seconds of device time.
    """

    def __init__(self, total_pulses: int, window_pulses: int, rate_hz: float) -> None:
        if window_pulses < 1 or total_pulses < 1:
            raise ValueError("total_pulses and window_pulses must be >= 1")
        self.window = int(window_pulses)
        self.rate_hz = float(rate_hz)
        self.n = -(-int(total_pulses) // self.window)
        self.sifted = np.zeros(self.n, dtype=np.int64)
        self.errors = np.zeros(self.n, dtype=np.int64)

    def add(self, block: Any) -> None:
        """Count the sifted bits and errors of one :class:`SimulationBlock`."""
        a, b = block.alice, block.bob
        match = a.basis == b.basis
        w = a.pulse_index[match] // self.window
        self.sifted += np.bincount(w, minlength=self.n)[: self.n]
        wrong = a.bit[match] != b.bit[match]
        self.errors += np.bincount(w[wrong], minlength=self.n)[: self.n]

    def passing(self, blocks: Iterable[Any]) -> Iterator[Any]:
        """Yield ``blocks`` unchanged while counting them (to tee a streaming simulation)."""
        for block in blocks:
            self.add(block)
            yield block

    def series(self, label: str) -> QberSeries:
        """Windows with at least one sifted bit, at their start time in seconds."""
        keep = self.sifted > 0
        t = np.arange(self.n) * self.window / self.rate_hz
        return QberSeries(label, t[keep], self.errors[keep] / self.sifted[keep])
