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

from collections.abc import Iterator
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


def _multi_homed_pairs(
    graph: nx.Graph, multi: set[str], capacity: str
) -> Iterator[tuple[str, str, float, tuple[str, ...]]]:
    """(a, b, capacity, cut link ids) of every pair with a multi-homed end site: one max-flow
    each on the pair's own restricted graph."""
    nodes = sorted(graph.nodes)
    flow = _Flow(graph, nodes, capacity)
    trusted = np.array([bool(graph.nodes[n]["trusted"]) for n in nodes])
    for a, b in combinations(nodes, 2):
        if a in multi or b in multi:
            ia, ib = flow.index[a], flow.index[b]
            allowed = trusted.copy()
            allowed[[ia, ib]] = True
            value, crossing = flow.restricted_min_cut(allowed, ia, ib)
            yield a, b, value, tuple(sorted(flow.ids[i] for i in np.flatnonzero(crossing)))


def all_pair_capacities(graph: nx.Graph, capacity: str = "key_rate_bps") -> list[PairCapacity]:
    """Max-flow capacity and a minimum cut for every pair of sites (sorted pairs)."""
    multi = _multi_homed_end_sites(graph)
    core_nodes = sorted(n for n in graph.nodes if n not in multi)
    out: dict[tuple[str, str], PairCapacity] = {}
    if len(core_nodes) >= 2:
        out.update(_cut_tree_pairs(graph, core_nodes, capacity))
    for a, b, value, ids in _multi_homed_pairs(graph, multi, capacity) if multi else ():
        out[(a, b)] = PairCapacity(a, b, value, ids)
    return [out[key] for key in sorted(out)]


def capacity_matrix(
    graph: nx.Graph, capacity: str = "key_rate_bps"
) -> tuple[list[str], np.ndarray]:
    """The capacities of :func:`all_pair_capacities` as a symmetric matrix over the sorted
    sites (no cut links): what comparing two networks needs, without 10^5–10^6 objects."""
    nodes = sorted(graph.nodes)
    position = {x: i for i, x in enumerate(nodes)}
    multi = _multi_homed_end_sites(graph)
    core_nodes = [n for n in nodes if n not in multi]
    out = np.zeros((len(nodes), len(nodes)))
    if len(core_nodes) >= 2:
        _, parent, value = _cut_tree(graph, core_nodes, capacity)
        cap, _ = _path_minima(parent, value)
        idx = np.array([position[x] for x in core_nodes])
        out[np.ix_(idx, idx)] = cap
    for a, b, v, _ in _multi_homed_pairs(graph, multi, capacity) if multi else ():
        out[position[a], position[b]] = out[position[b], position[a]] = v
    np.fill_diagonal(out, 0.0)
    return nodes, out


def pair_capacity(graph: nx.Graph, a: str, b: str, capacity: str = "key_rate_bps") -> PairCapacity:
    """Max-flow between ``a`` and ``b`` through trusted nodes only (one max-flow)."""
    nodes = sorted(n for n in graph.nodes if n in (a, b) or graph.nodes[n]["trusted"])
    flow = _Flow(graph, nodes, capacity)
    value, side = flow.min_cut(flow.index[a], flow.index[b])
    ids = tuple(sorted(flow.ids[i] for i in np.flatnonzero(flow.cut_links(side))))
    return PairCapacity(a, b, value, ids)


def _cut_tree(
    graph: nx.Graph, nodes: list[str], capacity: str
) -> tuple[_Flow, np.ndarray, np.ndarray]:
    """Gusfield's Gomory–Hu cut tree on ``nodes``: (flow, parent, value), tree edges
    (s, parent[s]) of weight value[s] for s ≥ 1, rooted at node 0."""
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
    return flow, parent, value


def _path_minima(parent: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(capacity, edge) matrices: the lightest tree edge on each pair's path and its child
    node s. Adding the tree edges heaviest first (as Kruskal would), an edge joins two
    components whose cross pairs all have it as their lightest path edge."""
    n = len(parent)
    cap = np.zeros((n, n))
    edge_of = np.zeros((n, n), dtype=np.int64)
    members: list[list[int]] = [[i] for i in range(n)]
    comp = list(range(n))
    for s in sorted(range(1, n), key=lambda e: (-value[e], e)):
        ca, cb = comp[s], comp[int(parent[s])]
        left, right = members[ca], members[cb]
        for block in (np.ix_(left, right), np.ix_(right, left)):
            cap[block] = value[s]
            edge_of[block] = s
        if len(left) < len(right):
            ca, cb, left, right = cb, ca, right, left
        for x in right:
            comp[x] = ca
        left.extend(right)
        members[cb] = []
    return cap, edge_of


def _cut_tree_pairs(
    graph: nx.Graph, nodes: list[str], capacity: str
) -> dict[tuple[str, str], PairCapacity]:
    """Every pair of (sorted) ``nodes`` from the cut tree: path minima and fundamental cuts."""
    flow, parent, value = _cut_tree(graph, nodes, capacity)
    n = len(nodes)
    # The fundamental cut of edge (s, parent[s]) is the subtree of s, read off a depth-first
    # numbering (subtree = tin in [tin[s], tout[s]]).
    children: list[list[int]] = [[] for _ in range(n)]
    for s in range(1, n):
        children[int(parent[s])].append(s)
    tin = np.zeros(n, dtype=np.int64)
    tout = np.zeros(n, dtype=np.int64)
    clock = 0
    stack: list[tuple[int, bool]] = [(0, False)]
    while stack:
        x, done = stack.pop()
        if done:
            tout[x] = clock - 1
            continue
        tin[x] = clock
        clock += 1
        stack.append((x, True))
        stack.extend((c, False) for c in reversed(children[x]))
    cut_of: list[tuple[str, ...]] = [()] * n
    for s in range(1, n):
        half = (tin >= tin[s]) & (tin <= tout[s])
        cut_of[s] = tuple(sorted(flow.ids[i] for i in np.flatnonzero(flow.cut_links(half))))
    cap, edge_of = _path_minima(parent, value)
    out: dict[tuple[str, str], PairCapacity] = {}
    for u in range(n):  # ``nodes`` are sorted: nodes[u] < nodes[v] for u < v
        a, cap_u, edge_u = nodes[u], cap[u].tolist(), edge_of[u].tolist()
        out.update(
            ((a, nodes[v]), PairCapacity(a, nodes[v], cap_u[v], cut_of[edge_u[v]]))
            for v in range(u + 1, n)
        )
    return out
