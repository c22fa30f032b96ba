"""Routes for keys between sites through trusted nodes, avoiding links whose pools run low.

A key between two sites with a direct link uses that link. Otherwise it travels hop by hop, and
every intermediate site must be a trusted node. Each hop consumes as many bits of its link's pool
as the key is long (one-time pad), so the route:

* skips links that are down (aborted: QBER alarm, attack) or whose pool cannot pay the key;
* prefers links whose pool stays above the low-water mark after paying: a link below it costs
  :data:`LOW_POOL_PENALTY` extra hops, so a slightly longer route with full pools wins;
* among routes of equal cost, prefers fuller pools (cost 1 + need/available per hop).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from itertools import pairwise

import networkx as nx

from qkdnet.network.topology import relay_graph

#: Extra cost (in hops) of a link whose pool would drop below the low-water mark.
LOW_POOL_PENALTY = 10.0


class NoRouteError(RuntimeError):
    """No route can carry the key now; the message says why (down links, empty pools)."""


@dataclass(frozen=True)
class Route:
    """A path of sites from source to destination and the link crossed at each hop."""

    sites: tuple[str, ...]
    links: tuple[str, ...]

    @property
    def relays(self) -> tuple[str, ...]:
        """The intermediate (trusted) sites."""
        return self.sites[1:-1]

    @property
    def hops(self) -> int:
        """Number of links crossed."""
        return len(self.links)


def find_route(
    graph: nx.Graph,
    source: str,
    target: str,
    *,
    need_bits: int = 0,
    pools_bits: Mapping[str, int] | None = None,
    low_water_bits: int = 0,
    down_links: Collection[str] = (),
) -> Route:
    """The cheapest route from ``source`` to ``target`` for a key of ``need_bits`` bits.

    ``pools_bits`` maps link id → bits available now (``None``: all links have plenty, e.g. for
    planning); ``down_links`` are link ids that must not be used.
    """
    for site in (source, target):
        if site not in graph:
            raise NoRouteError(f"unknown site {site!r}")
    if source == target:
        raise NoRouteError(f"source and target are the same site {source!r}")
    down = set(down_links)

    def cost(u: str, v: str, data: dict) -> float | None:
        link_id = data["id"]
        if link_id in down:
            return None
        if pools_bits is None:
            return 1.0
        available = int(pools_bits.get(link_id, 0))
        if available < need_bits or available <= 0:
            return None
        penalty = LOW_POOL_PENALTY if available - need_bits < low_water_bits else 0.0
        return 1.0 + penalty + need_bits / available

    view = relay_graph(graph, source, target)
    try:
        path = nx.dijkstra_path(view, source, target, weight=cost)
    except nx.NetworkXNoPath:
        raise NoRouteError(_why(graph, source, target, need_bits, pools_bits, down)) from None
    links = tuple(graph.edges[u, v]["id"] for u, v in pairwise(path))
    return Route(sites=tuple(path), links=links)


def _why(
    graph: nx.Graph,
    source: str,
    target: str,
    need_bits: int,
    pools_bits: Mapping[str, int] | None,
    down: set[str],
) -> str:
    """Explain a missing route: topology, down links or empty pools."""
    view = relay_graph(graph, source, target)
    if not nx.has_path(view, source, target):
        return f"no path from {source!r} to {target!r} through trusted nodes in the topology"
    reasons = []
    if down:
        reasons.append(f"links down: {', '.join(sorted(down))}")
    if pools_bits is not None:
        short = sorted(
            f"{d['id']} ({int(pools_bits.get(d['id'], 0))} bits)"
            for _, _, d in view.edges(data=True)
            if int(pools_bits.get(d["id"], 0)) < max(need_bits, 1) and d["id"] not in down
        )
        if short:
            reasons.append(f"pools short of {need_bits} bits: {', '.join(short)}")
    return f"no usable route from {source!r} to {target!r} now: " + "; ".join(reasons)
