"""End-to-end key capacity between every pair of sites: max-flow through trusted nodes.

Keys between two sites may travel over several routes at once, every hop paid from its link's
pool, so the most key per second the network can deliver between sites ``s`` and ``t`` is the
maximum ``s``–``t`` flow in the graph whose edge capacities are the link key rates, restricted to
``s``, ``t`` and the trusted nodes (end sites never relay). By max-flow/min-cut its value is the
smallest total rate of a set of links separating ``s`` from ``t``: those links are the pair's
bottleneck.

All pairs at once (Gomory & Hu, J. SIAM 9, 551 (1961); Gusfield, SIAM J. Comput. 19, 143
(1990)): on an undirected graph, n − 1 max-flow computations give a cut tree whose path minima
are the max-flow values of all n(n−1)/2 pairs, and whose edges' fundamental cuts are minimum
cuts. The restriction to trusted relays breaks that for end sites with two or more links
(they could carry transit flow in the unrestricted graph), so:

* the cut tree is built on the graph without those multi-homed end sites (end sites with one
  link can never carry transit flow, so they stay) — exact for every pair inside it;
* pairs with a multi-homed end site get their own max-flow on their restricted graph.

Max-flow runs in SciPy's Dinic implementation on integer capacities; rates are scaled to integers
so that no sum can overflow, and every reported value is the float sum of the rates of the links
in the minimum cut found.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, maximum_flow

_INT_BUDGET = 2**30  # keep every flow sum well inside int32, scipy's capacity type


@dataclass(frozen=True)
class PairCapacity:
    """The max-flow (bit/s) between two sites and the links of a minimum cut between them."""

    a: str
    b: str
    capacity_bps: float
    cut_links: tuple[str, ...]


class _Flow:
    """Integer-scaled symmetric capacity matrix of a node subset, with min-cut queries."""

    def __init__(self, graph: nx.Graph, nodes: list[str], capacity: str) -> None:
        self.nodes = nodes
        self.index = {n: i for i, n in enumerate(nodes)}
        rows, cols, rates, ids = [], [], [], []
        for u, v, data in graph.subgraph(nodes).edges(data=True):
            rate = float(data.get(capacity) or 0.0)
            if rate <= 0.0:
                continue
            rows.append(self.index[u])
            cols.append(self.index[v])
            rates.append(rate)
            ids.append(data["id"])
        self.rows = np.array(rows, dtype=np.int64)
        self.cols = np.array(cols, dtype=np.int64)
        self.rates = np.array(rates, dtype=float)
        self.ids = ids
        n = len(nodes)
        node_sum = np.zeros(n)
        np.add.at(node_sum, self.rows, self.rates)
        np.add.at(node_sum, self.cols, self.rates)
        top = float(node_sum.max()) if n and len(rates) else 1.0
        self.scale = min(1e6, _INT_BUDGET / max(top, 1e-300))
        caps = np.maximum(np.round(self.rates * self.scale), 0).astype(np.int32)
        both_r = np.concatenate([self.rows, self.cols])
        both_c = np.concatenate([self.cols, self.rows])
        data = np.concatenate([caps, caps])
        self.matrix = sp.csr_array((data, (both_r, both_c)), shape=(n, n), dtype=np.int32)
        self.matrix.sum_duplicates()

    def min_cut(self, s: int, t: int) -> tuple[float, np.ndarray]:
        """(cut rate in bit/s, boolean mask of the source side) of a minimum s–t cut."""
        n = len(self.nodes)
        if self.matrix.nnz == 0:
            side = np.zeros(n, dtype=bool)
            side[s] = True
            return 0.0, side
        result = maximum_flow(self.matrix, s, t, method="dinic")
        residual = (self.matrix - result.flow).tocsr()
        residual.data[residual.data < 0] = 0
        residual.eliminate_zeros()
        reach = breadth_first_order(residual, s, directed=True, return_predecessors=False)
        side = np.zeros(n, dtype=bool)
        side[reach] = True
        return self.cut_rate(side), side

    def restricted_min_cut(self, allowed: np.ndarray, s: int, t: int) -> tuple[float, np.ndarray]:
        """Minimum s–t cut using only the nodes in the boolean mask ``allowed``.

        Returns the cut rate and the mask of links crossing it (links with both ends allowed).
        """
        idx = np.flatnonzero(allowed)
        where = np.full(len(self.nodes), -1)
        where[idx] = np.arange(len(idx))
        sub = self.matrix[idx][:, idx].tocsr()
        side_sub = np.zeros(len(idx), dtype=bool)
        side_sub[where[s]] = True
        if sub.nnz:
            result = maximum_flow(sub, int(where[s]), int(where[t]), method="dinic")
            residual = (sub - result.flow).tocsr()
            residual.data[residual.data < 0] = 0
            residual.eliminate_zeros()
            reach = breadth_first_order(residual, int(where[s]), directed=True,
                                        return_predecessors=False)  # fmt: skip
            side_sub[reach] = True
        side = np.zeros(len(self.nodes), dtype=bool)
        side[idx[side_sub]] = True
        inside = allowed[self.rows] & allowed[self.cols]
        crossing = inside & (side[self.rows] != side[self.cols])
        return float(self.rates[crossing].sum()), crossing

    def cut_links(self, side: np.ndarray) -> np.ndarray:
        """Mask of the links crossing the cut ``side``."""
        return side[self.rows] != side[self.cols]

    def cut_rate(self, side: np.ndarray) -> float:
        """Total float rate of the links crossing the cut."""
        return float(self.rates[self.cut_links(side)].sum())


def _multi_homed_end_sites(graph: nx.Graph) -> set[str]:
    return {n for n in graph.nodes if not graph.nodes[n]["trusted"] and graph.degree(n) >= 2}


def all_pair_capacities(graph: nx.Graph, capacity: str = "key_rate_bps") -> list[PairCapacity]:
    """Max-flow capacity and a minimum cut for every pair of sites (sorted pairs)."""
    multi = _multi_homed_end_sites(graph)
    core_nodes = sorted(n for n in graph.nodes if n not in multi)
    out: dict[tuple[str, str], PairCapacity] = {}
    if len(core_nodes) >= 2:
        out.update(_cut_tree_pairs(graph, core_nodes, capacity))
    if multi:
        nodes = sorted(graph.nodes)
        flow = _Flow(graph, nodes, capacity)
        trusted = np.array([bool(graph.nodes[n]["trusted"]) for n in nodes])
        for a, b in combinations(nodes, 2):
            if a in multi or b in multi:
                ia, ib = flow.index[a], flow.index[b]
                allowed = trusted.copy()
                allowed[[ia, ib]] = True
                value, crossing = flow.restricted_min_cut(allowed, ia, ib)
                ids = tuple(sorted(flow.ids[i] for i in np.flatnonzero(crossing)))
                out[(a, b)] = PairCapacity(a, b, value, ids)
    return [out[key] for key in sorted(out)]


def pair_capacity(graph: nx.Graph, a: str, b: str, capacity: str = "key_rate_bps") -> PairCapacity:
    """Max-flow between ``a`` and ``b`` through trusted nodes only (one max-flow)."""
    nodes = sorted(n for n in graph.nodes if n in (a, b) or graph.nodes[n]["trusted"])
    flow = _Flow(graph, nodes, capacity)
    value, side = flow.min_cut(flow.index[a], flow.index[b])
    ids = tuple(sorted(flow.ids[i] for i in np.flatnonzero(flow.cut_links(side))))
    return PairCapacity(a, b, value, ids)


def _cut_tree_pairs(
    graph: nx.Graph, nodes: list[str], capacity: str
) -> dict[tuple[str, str], PairCapacity]:
    """Gusfield's Gomory–Hu cut tree on ``nodes``, then every pair from its path minima."""
    flow = _Flow(graph, nodes, capacity)
    n = len(nodes)
    parent = np.zeros(n, dtype=np.int64)
    value = np.zeros(n)
    for s in range(1, n):
        t = int(parent[s])
        cut, side = flow.min_cut(s, t)
        value[s] = cut
        others = np.arange(n) != s
        parent[others & side & (parent == t)] = s
        if side[parent[t]]:
            parent[s] = parent[t]
            parent[t] = s
            value[s] = value[t]
            value[t] = cut
    tree = nx.Graph()
    tree.add_nodes_from(range(n))
    tree.add_edges_from((s, int(parent[s]), {"w": value[s]}) for s in range(1, n))
    # Fundamental cut of each tree edge: the links of G between the two halves of the tree.
    cut_of: dict[frozenset[int], tuple[str, ...]] = {}
    for s in range(1, n):
        p = int(parent[s])
        tree.remove_edge(s, p)
        half = np.zeros(n, dtype=bool)
        half[list(nx.node_connected_component(tree, s))] = True
        tree.add_edge(s, p, w=value[s])
        cut_of[frozenset((s, p))] = tuple(
            sorted(flow.ids[i] for i in np.flatnonzero(flow.cut_links(half)))
        )
    out: dict[tuple[str, str], PairCapacity] = {}
    for u in range(n):
        # Walk the tree from u, carrying the lightest edge seen on the path.
        best: dict[int, tuple[float, frozenset[int] | None]] = {u: (np.inf, None)}
        stack = [u]
        while stack:
            x = stack.pop()
            w_x, e_x = best[x]
            for y in tree.neighbors(x):
                if y in best:
                    continue
                w = tree.edges[x, y]["w"]
                best[y] = (w, frozenset((x, y))) if w < w_x else (w_x, e_x)
                stack.append(y)
        for v in range(u + 1, n):
            if v not in best:  # a different component of the tree cannot happen; be safe
                continue
            w, edge = best[v]
            a, b = sorted((nodes[u], nodes[v]))
            links = cut_of[edge] if edge is not None else ()
            out[(a, b)] = PairCapacity(a, b, float(w) if np.isfinite(w) else 0.0, links)
    return out
