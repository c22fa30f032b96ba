"""The network as a graph: sites are nodes, fibre links are edges (networkx).

Node attributes: ``site`` (:class:`SiteSpec`), ``trusted`` (may relay keys for others).
Edge attributes: ``link`` (:class:`LinkSpec`), ``id``, ``length_km``, and ``key_rate_bps`` when
rates are given (the planner's capacities). A pair of sites with no link between them needs
relays: keys travel hop by hop through trusted nodes only.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations

import networkx as nx
import numpy as np

from qkdnet.network.geodesy import great_circle_matrix_km
from qkdnet.network.scenario import Scenario


def build_graph(scenario: Scenario, rates_bps: Mapping[str, float] | None = None) -> nx.Graph:
    """The scenario's sites and links as an undirected graph, optionally with link key rates."""
    graph = nx.Graph(name=scenario.name)
    for site in scenario.sites:
        graph.add_node(site.id, site=site, trusted=site.trusted_node)
    for link in scenario.links:
        rate = float(rates_bps.get(link.id, 0.0)) if rates_bps is not None else None
        graph.add_edge(
            link.a, link.b, link=link, id=link.id, length_km=link.length_km, key_rate_bps=rate
        )
    return graph


def trusted_nodes(graph: nx.Graph) -> list[str]:
    """Sites that may relay keys for other sites."""
    return [n for n, trusted in graph.nodes(data="trusted") if trusted]


def relay_graph(graph: nx.Graph, a: str, b: str) -> nx.Graph:
    """The part of ``graph`` that keys between ``a`` and ``b`` may cross: ``a``, ``b`` and the
    trusted nodes (an end site never relays for others)."""
    return nx.subgraph_view(graph, filter_node=lambda n: n in (a, b) or graph.nodes[n]["trusted"])


def distance_matrix_km(scenario: Scenario) -> np.ndarray:
    """Great-circle distances between all sites (km), in the order of ``scenario.sites``."""
    return great_circle_matrix_km(np.array([[s.lat, s.lon] for s in scenario.sites]))


def pairs_needing_relay(graph: nx.Graph) -> list[tuple[str, str]]:
    """Site pairs with no direct link (their keys must be relayed through trusted nodes)."""
    return [(a, b) for a, b in combinations(sorted(graph.nodes), 2) if not graph.has_edge(a, b)]


def closest_unlinked_pairs(scenario: Scenario, k: int) -> list[tuple[str, str, float]]:
    """The ``k`` closest site pairs (straight line, km) not yet joined by a link."""
    ids = [s.id for s in scenario.sites]
    index = {s: i for i, s in enumerate(ids)}
    dist = distance_matrix_km(scenario)
    dist[np.tril_indices(len(ids))] = np.inf
    for link in scenario.links:
        i, j = sorted((index[link.a], index[link.b]))
        dist[i, j] = np.inf
    flat = dist.ravel()
    k = min(max(k, 0), int(np.isfinite(flat).sum()))
    if k == 0:
        return []
    best = np.argpartition(flat, k - 1)[:k]
    out = [(ids[i // len(ids)], ids[i % len(ids)], float(flat[i])) for i in best]
    out.sort(key=lambda t: (t[2], t[0], t[1]))
    return out


def diameter_km(scenario: Scenario) -> float:
    """Largest straight-line distance between two sites (km)."""
    return float(distance_matrix_km(scenario).max())
