"""A blank figure in the project's style, saving one to PNG/PDF/SVG by the file's suffix, and
checking a plotted series' arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SAVE_SUFFIXES = (".png", ".pdf", ".svg")


def new_figure(width_in: float = 6.4, height_in: float = 4.2) -> tuple[Figure, Axes]:
    """A figure with one axes, grid on, sized for a single-column paper figure by default."""
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.grid(True, which="major", alpha=0.35)
    return fig, ax


def check_plot_path(path: Path) -> None:
    """Require a supported image suffix and an existing directory (raises ``ValueError``)."""
    if path.suffix.lower() not in SAVE_SUFFIXES:
        raise ValueError(f"must end in {', '.join(SAVE_SUFFIXES)} (got {path.name!r})")
    if not path.parent.exists():
        raise ValueError(f"directory {path.parent} does not exist")


def save_figure(fig: Figure, path: Path | str, dpi: int = 200) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix) and return the path."""
    path = Path(path)
    check_plot_path(path)
    fig.savefig(path, dpi=dpi)
    return path


def xy_arrays(
    what: str, x: object, y: object, x_name: str, y_name: str
) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` as 1-D float arrays of one length (a plotted series), else ValueError
    naming ``what`` and both fields."""
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError(f"{what}: {x_name} and {y_name} must be 1-D, same length")
    return xs, ys
