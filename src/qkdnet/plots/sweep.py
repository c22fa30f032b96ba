"""A parameter study's result against one parameter, one line per combination of the others."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from matplotlib.figure import Figure

from qkdnet.plots.canvas import new_figure

_UNITS = {"_km": "km", "_bps": "bit/s", "_hz": "Hz", "_db": "dB", "_s": "s"}


def axis_label(name: str) -> str:
    """Axis label from a column name: ``distance_km`` → ``distance (km)``."""
    for suffix, unit in _UNITS.items():
        if name.endswith(suffix):
            return f"{name[: -len(suffix)].replace('_', ' ')} ({unit})"
    return name.replace("_", " ")


def sweep_figure(
    table: pd.DataFrame,
    x: str,
    y: str,
    group: Sequence[str] = (),
    logx: bool = False,
    logy: bool | None = None,
    title: str | None = None,
    bound: str | None = None,
) -> Figure:
    """Plot column ``y`` against ``x``; rows are grouped by the ``group`` columns (one line each).

    ``logy=None`` picks a log scale when the positive values span more than two decades. Rows
    with a missing or non-positive ``y`` on a log scale are not drawn. ``bound`` names a column
    drawn dashed as an upper bound (e.g. ``plob_per_pulse``), once per distinct curve.
    """
    for column in (x, y, *group, *([bound] if bound else [])):
        if column not in table.columns:
            raise ValueError(
                f"column {column!r} is not in the results; columns: {', '.join(table.columns)}"
            )
    data = table[pd.to_numeric(table[y], errors="coerce").notna()]
    values = pd.to_numeric(data[y]).to_numpy(dtype=float)
    positive = values[values > 0]
    if logy is None:
        logy = bool(positive.size) and positive.max() / positive.min() > 100.0
    fig, ax = new_figure()
    groups = data.groupby(list(group), sort=False, dropna=False) if group else [((), data)]
    for name, part in groups:
        part = part.sort_values(x)
        xs = pd.to_numeric(part[x]).to_numpy(dtype=float)
        ys = pd.to_numeric(part[y]).to_numpy(dtype=float)
        if logy:
            keep = ys > 0
            xs, ys = xs[keep], ys[keep]
        key = name if isinstance(name, tuple) else (name,)
        label = ", ".join(f"{g}={v}" for g, v in zip(group, key, strict=False)) or axis_label(y)
        ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, ms=3, lw=1.5, label=label)
    if bound:
        drawn: list[tuple[tuple[float, ...], tuple[float, ...]]] = []
        for _, part in groups:
            part = part.sort_values(x)
            xs = tuple(pd.to_numeric(part[x]).to_numpy(dtype=float))
            ys = tuple(pd.to_numeric(part[bound]).to_numpy(dtype=float))
            if (xs, ys) in drawn:
                continue
            name = "PLOB bound" if bound == "plob_per_pulse" else f"bound: {axis_label(bound)}"
            label = name + (f" ({len(drawn) + 1})" if drawn else "")
            drawn.append((xs, ys))
            ax.plot(xs, ys, color="0.35", ls="--", lw=1.2, label=label)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(axis_label(y))
    if group or bound:
        ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return fig
