"""All-pairs key capacity through trusted nodes (max-flow) against networkx's max-flow."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from qkdnet.network.capacity import all_pair_capacities, pair_capacity
from qkdnet.network.topology import relay_graph


def _random_network(seed: int, n: int = 14, m: int = 26) -> nx.Graph:
    rng = np.random.default_rng(seed)
    graph = nx.Graph()
    for i in range(n):
        graph.add_node(f"s{i}", trusted=bool(rng.random() < 0.5))
    # a spanning tree plus random extra links, with rates over three decades
    for i in range(1, n):
        j = int(rng.integers(0, i))
        graph.add_edge(
            f"s{i}", f"s{j}", id=f"L{i}-{j}", key_rate_bps=float(10 ** rng.uniform(1, 4))
        )
    while graph.number_of_edges() < m:
        i, j = (int(x) for x in rng.choice(n, 2, replace=False))
        if not graph.has_edge(f"s{i}", f"s{j}"):
            graph.add_edge(
                f"s{i}", f"s{j}", id=f"L{i}-{j}", key_rate_bps=float(10 ** rng.uniform(1, 4))
            )
    return graph


def _reference(graph: nx.Graph, a: str, b: str) -> float:
    view = relay_graph(graph, a, b)
    return nx.maximum_flow_value(nx.Graph(view), a, b, capacity="key_rate_bps")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_all_pairs_match_networkx_max_flow(seed: int) -> None:
    graph = _random_network(seed)
    results = all_pair_capacities(graph)
    assert len(results) == 14 * 13 // 2
    rates = {d["id"]: d["key_rate_bps"] for *_, d in graph.edges(data=True)}
    for pc in results:
        ref = _reference(graph, pc.a, pc.b)
        assert pc.capacity_bps == pytest.approx(ref, rel=1e-6, abs=1e-6), (pc.a, pc.b)
        # the reported cut is a real cut of that value: removing its links separates the pair
        assert sum(rates[i] for i in pc.cut_links) == pytest.approx(pc.capacity_bps, rel=1e-6)
        cut = nx.Graph(relay_graph(graph, pc.a, pc.b))
        cut.remove_edges_from(
            [(u, v) for u, v, d in graph.edges(data=True) if d["id"] in pc.cut_links]
        )
        if pc.capacity_bps > 0:
            assert not nx.has_path(cut, pc.a, pc.b)


def test_end_site_never_carries_transit() -> None:
    # a - e - b with e an end site, plus a slow trusted path a - t - b
    graph = nx.Graph()
    for n, trusted in (("a", False), ("b", False), ("e", False), ("t", True)):
        graph.add_node(n, trusted=trusted)
    graph.add_edge("a", "e", id="ae", key_rate_bps=1000.0)
    graph.add_edge("e", "b", id="eb", key_rate_bps=1000.0)
    graph.add_edge("a", "t", id="at", key_rate_bps=5.0)
    graph.add_edge("t", "b", id="tb", key_rate_bps=7.0)
    assert pair_capacity(graph, "a", "b").capacity_bps == pytest.approx(5.0)
    caps = {(p.a, p.b): p.capacity_bps for p in all_pair_capacities(graph)}
    assert caps[("a", "b")] == pytest.approx(5.0)
    assert caps[("a", "e")] == pytest.approx(1000.0)  # the direct link only: b never relays
    assert caps[("e", "t")] == 0.0  # e reaches t only through the end sites a or b
