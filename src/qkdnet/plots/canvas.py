"""A blank figure in the project's style, and saving one to PNG/PDF/SVG by the file's suffix."""

from __future__ import annotations

from pathlib import Path

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
