"""The planner's capacity matrix: secret-key capacity between every pair of sites (bit/s).

Cells are coloured on a log scale and annotated with the value; a pair with no route (capacity
zero) is left blank and marked "–". The diagonal (a site with itself) is blank, whatever it
holds (the planner's :func:`qkdnet.network.plots.capacity_matrix` puts NaN there).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from qkdnet.plots.canvas import new_figure

COLORBAR_LABEL = "Secret-key capacity (bit/s)"


def _short(value: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def capacity_matrix_figure(
    sites: Sequence[str], capacity_bps: np.ndarray, title: str | None = None, annotate: bool = True
) -> Figure:
    """Heat map of ``capacity_bps[i, j]`` between ``sites[i]`` and ``sites[j]``."""
    cap = np.asarray(capacity_bps, dtype=float)
    n = len(sites)
    if cap.shape != (n, n):
        raise ValueError(f"capacity_bps must be {n}x{n} for {n} sites (got {cap.shape})")
    off = ~np.eye(n, dtype=bool)
    if np.any(cap[off] < 0) or not np.all(np.isfinite(cap[off])):
        raise ValueError("capacity_bps must be finite and >= 0 off the diagonal")
    size = max(4.5, 0.45 * n + 2.5)
    fig, ax = new_figure(size + 1.2, size)
    ax.grid(False)
    shown = cap.copy()
    np.fill_diagonal(shown, np.nan)
    shown[shown <= 0] = np.nan
    positive = shown[np.isfinite(shown)]
    norm = LogNorm(vmin=positive.min(), vmax=positive.max()) if positive.size else None
    image = ax.imshow(np.ma.masked_invalid(shown), cmap="viridis", norm=norm)
    colorbar = fig.colorbar(image, ax=ax, shrink=0.85)
    colorbar.set_label(COLORBAR_LABEL)
    ax.set_xticks(range(n), labels=list(sites), rotation=60, ha="right", fontsize="small")
    ax.set_yticks(range(n), labels=list(sites), fontsize="small")
    ax.set_xlabel("To site")
    ax.set_ylabel("From site")
    if annotate and n <= 16:
        for i in range(n):
            for j in range(n):
                if i == j:
                    continue
                text = _short(cap[i, j]) if cap[i, j] > 0 else "–"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="w" if cap[i, j] > 0 else "0.3",
                )
    if title:
        ax.set_title(title)
    return fig
