"""Figures of a plan: the network map with link key rates, and the site-pair capacity matrix."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from qkdnet.network.planner import Plan


def capacity_matrix(plan: Plan) -> tuple[list[str], np.ndarray]:
    """(site ids, symmetric matrix of end-to-end capacities in bit/s; diagonal NaN)."""
    ids = [s.id for s in plan.scenario.sites]
    index = {s: i for i, s in enumerate(ids)}
    m = np.full((len(ids), len(ids)), np.nan)
    for p in plan.pairs:
        m[index[p.a], index[p.b]] = m[index[p.b], index[p.a]] = p.capacity_bps
    return ids, m


def plan_figure(plan: Plan) -> Figure:
    """Two panels: the map (sites by longitude/latitude, links coloured by key rate, trusted
    nodes as squares) and the capacity matrix (log colour scale)."""
    fig, (ax_map, ax_cap) = plt.subplots(1, 2, figsize=(15, 6.5))
    sites = {s.id: s for s in plan.scenario.sites}
    rates = np.array([max(lr.key_rate_bps, 1e-3) for lr in plan.links])
    norm = LogNorm(vmin=max(rates.min(), 1e-3), vmax=max(rates.max(), 1e-2))
    cmap = plt.get_cmap("viridis")
    for lr in plan.links:
        a, b = sites[lr.link.a], sites[lr.link.b]
        ax_map.plot(
            [a.lon, b.lon],
            [a.lat, b.lat],
            color=cmap(norm(max(lr.key_rate_bps, 1e-3))),
            lw=2.5,
            gid=f"link:{lr.link.id}",
        )
        ax_map.annotate(
            _si(lr.key_rate_bps),
            ((a.lon + b.lon) / 2, (a.lat + b.lat) / 2),
            fontsize=7,
            ha="center",
            color="0.25",
        )
    for s in sites.values():
        ax_map.scatter(
            [s.lon],
            [s.lat],
            marker="s" if s.trusted_node else "o",
            s=60,
            c="C3" if s.trusted_node else "C0",
            zorder=3,
        )
        ax_map.annotate(s.id, (s.lon, s.lat), xytext=(4, 4), textcoords="offset points", fontsize=8)
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax_map, label="link secret key rate (bit/s)")
    ax_map.set_xlabel("longitude (°)")
    ax_map.set_ylabel("latitude (°)")
    ax_map.set_title(f"{plan.scenario.name}: links (squares: trusted nodes)")
    ax_map.set_aspect(1 / np.cos(np.radians(np.mean([s.lat for s in sites.values()]))))

    ids, m = capacity_matrix(plan)
    positive = m[np.isfinite(m) & (m > 0)]
    cap_norm = LogNorm(vmin=positive.min(), vmax=positive.max()) if positive.size else None
    image = ax_cap.imshow(np.where(m > 0, m, np.nan), norm=cap_norm, cmap="magma")
    ax_cap.set_xticks(range(len(ids)), ids, rotation=90, fontsize=7)
    ax_cap.set_yticks(range(len(ids)), ids, fontsize=7)
    fig.colorbar(image, ax=ax_cap, label="end-to-end capacity through trusted nodes (bit/s)")
    ax_cap.set_title("site-pair key capacity (max-flow)")
    fig.tight_layout()
    return fig


def save_plan_plot(plan: Plan, path: str | Path) -> Path:
    """Write :func:`plan_figure` to ``path`` (PNG) and return it."""
    path = Path(path)
    fig = plan_figure(plan)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _si(rate_bps: float) -> str:
    for unit, scale in (("Mb/s", 1e6), ("kb/s", 1e3)):
        if rate_bps >= scale:
            return f"{rate_bps / scale:.3g} {unit}"
    return f"{rate_bps:.3g} b/s"
