"""Publication-quality figures, one module per kind, each returning a matplotlib ``Figure``.

Figures are built with the object-oriented API (``matplotlib.figure.Figure``, no pyplot state),
so they are thread-safe and testable: a test reads the returned figure's axes, labels and lines.

* :mod:`~qkdnet.plots.keyrate` — secret key rate vs distance, several protocols and presets, PLOB;
* :mod:`~qkdnet.plots.qber` — QBER over time (drift, compensation, attacks);
* :mod:`~qkdnet.plots.capacity` — the planner's site-to-site capacity matrix;
* :mod:`~qkdnet.plots.sweep` — a result column of a parameter study against one parameter.
"""

from qkdnet.plots.canvas import new_figure, save_figure
from qkdnet.plots.capacity import capacity_matrix_figure
from qkdnet.plots.keyrate import RateCurve, key_rate_figure
from qkdnet.plots.qber import QberSeries, qber_time_figure
from qkdnet.plots.sweep import sweep_figure

__all__ = [
    "QberSeries",
    "RateCurve",
    "capacity_matrix_figure",
    "key_rate_figure",
    "new_figure",
    "qber_time_figure",
    "save_figure",
    "sweep_figure",
]
