"""The network planner: per-link key rates, end-to-end capacities, bottlenecks, candidate links.

* Per link: :func:`qkdnet.keyrate.key_rate` for the link's protocol, hardware preset and loss.
  Decoy BB84 links get the finite-size rate of Lim et al., Phys. Rev. A 89, 022307 (2014) for
  the link's block size and (ε_sec, ε_cor); single-photon and entangled-pair links get their
  asymptotic models (keyrate implements finite size for decoy BB84 only); ``model`` says which.
  Finite-size figures are net of the authentication key each post-processing block spends
  (:func:`net_of_authentication`), so they are what a running link delivers to its KMEs.
* Per site pair: the max-flow through trusted nodes (:mod:`qkdnet.network.capacity`), the
  links of a minimum cut (the pair's bottleneck) and the fewest-hop route through trusted
  nodes, the one the runtime prefers when every pool is full (each hop pays the key again).
* Bottlenecks: links ranked by how many pairs' minimum cut they are in.
* Candidates: for the ``k`` closest unlinked site pairs, the rate a new link would have and how
  much it would add to the pair capacities.

Large networks: a key rate with finite-size optimisation costs ~0.5 s, so when a group of links
sharing hardware, protocol, block size and ε is larger than the number of points of a 0.25 dB
loss grid over its range, the rates of that group are interpolated in log(rate) on the grid
(rate depends on the link only through its total loss); each link's ``method`` says
``exact`` or ``interpolated``.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import networkx as nx
import numpy as np

from qkdnet.keyrate import KeyRateResult, key_rate
from qkdnet.network.capacity import PairCapacity, all_pair_capacities, capacity_matrix
from qkdnet.network.scenario import LinkSpec, Scenario
from qkdnet.network.topology import build_graph, closest_unlinked_pairs
from qkdnet.physics.hardware import get_preset
from qkdnet.postprocess.authentication import PAD_BYTES
from qkdnet.postprocess.pipeline import CASCADE_TAGS_PER_BLOCK

#: Loss step (dB) of the interpolation grid used for large groups of similar links.
GRID_STEP_DB = 0.25


@dataclass(frozen=True)
class LinkRate:
    """The planned secret key rate of one link."""

    link: LinkSpec
    key_rate_bps: float
    key_rate_per_pulse: float
    qber: float
    transmittance: float
    model: str
    finite_size: bool
    method: str = "exact"

    def as_dict(self) -> dict[str, Any]:
        lk = self.link
        return {
            "id": lk.id,
            "a": lk.a,
            "b": lk.b,
            "length_km": lk.length_km,
            "loss_db": round(lk.loss_db, 4),
            "protocol": lk.protocol,
            "hardware": lk.hardware,
            "key_rate_bps": self.key_rate_bps,
            "key_rate_per_pulse": self.key_rate_per_pulse,
            "qber": self.qber,
            "transmittance": self.transmittance,
            "model": self.model,
            "finite_size": self.finite_size,
            "block_size": lk.block_size if self.finite_size else None,
            "method": self.method,
        }


@dataclass(frozen=True)
class PairPlan:
    """End-to-end capacity between two sites through trusted nodes."""

    a: str
    b: str
    capacity_bps: float
    route: tuple[str, ...]
    bottleneck_links: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "capacity_bps": self.capacity_bps,
            "route": list(self.route),
            "hops": max(len(self.route) - 1, 0),
            "bottleneck_links": list(self.bottleneck_links),
        }


@dataclass(frozen=True)
class Candidate:
    """A link that could be added, its planned rate and what it would add."""

    a: str
    b: str
    length_km: float
    hardware: str
    key_rate_bps: float
    total_gain_bps: float
    pairs_improved: int
    worst_pair_before_bps: float
    worst_pair_after_bps: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Plan:
    """Everything ``qkdnet plan`` reports for a scenario."""

    scenario: Scenario
    links: tuple[LinkRate, ...]
    pairs: tuple[PairPlan, ...]
    bottlenecks: tuple[tuple[str, int], ...]
    candidates: tuple[Candidate, ...]
    timings_s: dict[str, float] = field(default_factory=dict)

    def link_rate(self, link_id: str) -> LinkRate:
        for lr in self.links:
            if lr.link.id == link_id:
                return lr
        raise KeyError(link_id)

    def capacity(self, a: str, b: str) -> float:
        a, b = sorted((a, b))
        for p in self.pairs:
            if (p.a, p.b) == (a, b):
                return p.capacity_bps
        raise KeyError((a, b))

    def as_dict(self) -> dict[str, Any]:
        sc = self.scenario
        return {
            "scenario": sc.name,
            "source": sc.source,
            "sites": [
                {
                    "id": s.id,
                    "name": s.name,
                    "sector": s.sector,
                    "lat": s.lat,
                    "lon": s.lon,
                    "trusted_node": s.trusted_node,
                    "press_named": s.press_named,
                    "kme_id": s.kme_id,
                    "saes": list(s.saes),
                }
                for s in sc.sites
            ],
            "links": [lr.as_dict() for lr in self.links],
            "pairs": [p.as_dict() for p in self.pairs],
            "bottlenecks": [{"link": i, "pairs_cut": n} for i, n in self.bottlenecks],
            "candidates": [c.as_dict() for c in self.candidates],
            "timings_s": self.timings_s,
        }


RateFunction = Callable[[LinkSpec], KeyRateResult]


def link_key_rate(link: LinkSpec, *, loss_db: float | None = None) -> KeyRateResult:
    """keyrate's answer for ``link`` (finite-size for decoy BB84 at the link's block size, net
    of the authentication key a block spends).

    With ``loss_db`` the same devices are evaluated at that total loss instead (used by the
    interpolation grid). Answers are memoised on the physics of the call (the runtime asks for
    the same links when it chooses block sizes and when it plans them).
    """
    finite = link.protocol == "decoy-bb84"
    if loss_db is None:
        distance, extra = link.length_km, link.extra_loss_db
    else:
        distance, extra = 0.0, loss_db
    position = ("alice" if link.entangled_source == "a" else "middle") if (
        link.protocol == "bbm92"
    ) else None  # fmt: skip
    r = _key_rate(
        link.protocol, distance, link.hardware, float(link.block_size) if finite else None,
        link.eps_sec, link.eps_cor, extra, link.attenuation_db_per_km, position,
    )  # fmt: skip
    r = replace(r, params=dict(r.params))  # callers may annotate their copy
    return net_of_authentication(r, link.block_size) if finite else r


@functools.lru_cache(maxsize=8192)
def _key_rate(
    protocol: str,
    distance: float,
    hardware: str,
    block_size: float | None,
    eps_sec: float,
    eps_cor: float,
    extra_loss_db: float,
    attenuation_db_per_km: float,
    source_position: str | None,
) -> KeyRateResult:
    kwargs: dict[str, Any] = {}
    if source_position is not None:
        kwargs["source_position"] = source_position
    return key_rate(
        protocol,
        distance,
        hardware,
        block_size=block_size,
        eps_sec=eps_sec,
        eps_cor=eps_cor,
        extra_loss_db=extra_loss_db,
        attenuation_db_per_km=attenuation_db_per_km,
        **kwargs,
    )


def net_of_authentication(r: KeyRateResult, block_pulses: int) -> KeyRateResult:
    """``r`` less the authentication key the post-processing spends per block (a fixed number
    of Wegman–Carter pads, :data:`qkdnet.postprocess.pipeline.CASCADE_TAGS_PER_BLOCK`): what
    a running link delivers to its KMEs. Matters only for small blocks (≈1 % at 10^8 pulses)."""
    auth_bits = CASCADE_TAGS_PER_BLOCK * PAD_BYTES * 8
    if r.key_rate_per_pulse <= 0:
        return r
    per_pulse = max(r.key_rate_per_pulse - auth_bits / block_pulses, 0.0)
    scale = per_pulse / r.key_rate_per_pulse
    params = {**r.params, "auth_key_bits_per_block": auth_bits}
    return replace(
        r, key_rate_per_pulse=per_pulse, key_rate_bps=r.key_rate_bps * scale, params=params
    )


def _as_link_rate(link: LinkSpec, r: KeyRateResult, method: str = "exact") -> LinkRate:
    model = str(r.params.get("model", "?"))
    return LinkRate(
        link=link,
        key_rate_bps=max(float(r.key_rate_bps), 0.0),
        key_rate_per_pulse=max(float(r.key_rate_per_pulse), 0.0),
        qber=float(r.qber),
        transmittance=float(r.transmittance),
        model=model,
        finite_size=model == "lim2014",
        method=method,
    )


def link_rates(links: Iterable[LinkSpec]) -> list[LinkRate]:
    """Planned rates of ``links`` (exact, or interpolated for large groups; see module doc)."""
    links = list(links)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, lk in enumerate(links):
        groups[
            (lk.hardware, lk.protocol, lk.block_size, lk.eps_sec, lk.eps_cor, lk.entangled_source)
        ].append(i)
    out: list[LinkRate | None] = [None] * len(links)
    for members in groups.values():
        losses = np.array([links[i].loss_db for i in members])
        lo = np.floor(losses.min() / GRID_STEP_DB) * GRID_STEP_DB
        hi = np.ceil(losses.max() / GRID_STEP_DB) * GRID_STEP_DB
        grid = np.arange(lo, hi + GRID_STEP_DB / 2, GRID_STEP_DB)
        if len(members) <= len(grid) + 1:
            for i in members:
                out[i] = _as_link_rate(links[i], link_key_rate(links[i]))
            continue
        ref = links[members[0]]
        results = [link_key_rate(ref, loss_db=float(x)) for x in grid]
        rates = np.array([max(r.key_rate_bps, 0.0) for r in results])
        qbers = np.array([r.qber for r in results])
        with np.errstate(divide="ignore"):
            log_rates = np.where(rates > 0, np.log(np.maximum(rates, 1e-300)), -np.inf)
        for i, loss in zip(members, losses, strict=True):
            j = int(np.clip(np.searchsorted(grid, loss) - 1, 0, len(grid) - 2))
            w = (loss - grid[j]) / (grid[j + 1] - grid[j])
            if np.isfinite(log_rates[j]) and np.isfinite(log_rates[j + 1]):
                rate = float(np.exp((1 - w) * log_rates[j] + w * log_rates[j + 1]))
            else:
                rate = float((1 - w) * rates[j] + w * rates[j + 1])
            base = _as_link_rate(links[i], results[j], method="interpolated")
            per_pulse = (
                rate / results[j].key_rate_bps * results[j].key_rate_per_pulse
                if results[j].key_rate_bps > 0
                else 0.0
            )
            out[i] = replace(
                base,
                key_rate_bps=rate,
                key_rate_per_pulse=per_pulse,
                qber=float((1 - w) * qbers[j] + w * qbers[j + 1]),
                transmittance=10 ** (-loss / 10),
            )
    return [lr for lr in out if lr is not None]


class RelayRoutes:
    """Fewest-hop routes between sites, relaying only at trusted nodes.

    Breadth-first layers from a source in which only the source and trusted nodes are
    expanded; among the routes with the fewest hops the widest one (largest smallest link rate)
    is kept, ties broken by site name so that routes are deterministic. The graph is read once
    into integer adjacency lists (sites indexed in name order), so routes from every source of
    a 1,000-site network cost seconds, not minutes.
    """

    def __init__(self, graph: nx.Graph, rate: str = "key_rate_bps") -> None:
        self.names = sorted(graph.nodes)
        index = {name: i for i, name in enumerate(self.names)}
        self.trusted = [bool(graph.nodes[x]["trusted"]) for x in self.names]
        self.adjacent: list[list[tuple[int, float]]] = [[] for _ in self.names]
        for x, y, data in graph.edges(data=True):
            r = float(data.get(rate) or 0.0)
            self.adjacent[index[x]].append((index[y], r))
            self.adjacent[index[y]].append((index[x], r))
        self.index = index

    def from_source(self, source: str) -> dict[str, tuple[str, ...]]:
        """Route to every site reachable from ``source`` (``source`` itself: ``(source,)``)."""
        s = self.index[source]
        n = len(self.names)
        layer = [-1] * n
        width = [0.0] * n
        parent = [-1] * n
        layer[s], width[s] = 0, float("inf")
        order = [s]
        frontier = [s]
        depth = 0
        trusted, adjacent = self.trusted, self.adjacent
        while frontier:
            depth += 1
            nxt: list[int] = []
            for x in sorted(frontier):
                if x != s and not trusted[x]:
                    continue
                w_x = width[x]
                for y, r in adjacent[x]:
                    seen = layer[y]
                    if seen != -1 and seen < depth:
                        continue
                    w = w_x if w_x < r else r
                    if seen == -1:
                        layer[y], width[y], parent[y] = depth, w, x
                        nxt.append(y)
                    elif w > width[y] or (w == width[y] and x < parent[y]):
                        width[y], parent[y] = w, x
            order.extend(nxt)
            frontier = nxt
        names = self.names
        path: dict[int, tuple[str, ...]] = {s: (names[s],)}
        for y in order[1:]:  # layer by layer: a parent's path is always ready
            path[y] = (*path[parent[y]], names[y])
        return {names[y]: p for y, p in path.items()}


def shortest_relay_routes(
    graph: nx.Graph, source: str, rate: str = "key_rate_bps"
) -> dict[str, tuple[str, ...]]:
    """Fewest-hop, then widest, routes from ``source`` through trusted nodes
    (:class:`RelayRoutes`)."""
    return RelayRoutes(graph, rate).from_source(source)


def _pairs(graph: nx.Graph) -> tuple[list[PairCapacity], dict[str, int]]:
    caps = all_pair_capacities(graph)
    cut_count: dict[str, int] = defaultdict(int)
    for pc in caps:
        for link_id in pc.cut_links:
            cut_count[link_id] += 1
    return caps, cut_count


def plan(
    scenario: Scenario,
    *,
    candidates: int = 5,
    candidate_hardware: str = "decoy-1550-spad",
) -> Plan:
    """Plan ``scenario``: link rates, all-pairs capacities, bottlenecks and candidate links."""
    t0 = time.perf_counter()
    rates = link_rates(scenario.links)
    t1 = time.perf_counter()
    graph = build_graph(scenario, {lr.link.id: lr.key_rate_bps for lr in rates})
    caps, cut_count = _pairs(graph)
    t2 = time.perf_counter()
    relay = RelayRoutes(graph)
    routes = {s: relay.from_source(s) for s in graph.nodes}
    pairs = tuple(
        PairPlan(pc.a, pc.b, pc.capacity_bps, routes[pc.a].get(pc.b, ()), pc.cut_links)
        for pc in caps
    )
    t3 = time.perf_counter()
    bottlenecks = tuple(sorted(cut_count.items(), key=lambda kv: (-kv[1], kv[0])))
    cands = tuple(_candidates(scenario, graph, caps, candidates, candidate_hardware))
    t4 = time.perf_counter()
    return Plan(
        scenario=scenario,
        links=tuple(rates),
        pairs=pairs,
        bottlenecks=bottlenecks,
        candidates=cands,
        timings_s={
            "link_rates": t1 - t0,
            "capacities": t2 - t1,
            "routes": t3 - t2,
            "candidates": t4 - t3,
        },
    )


def _candidates(
    scenario: Scenario, graph: nx.Graph, caps: list[PairCapacity], k: int, hardware: str
) -> list[Candidate]:
    """Rate and capacity gain of a new link between each of the ``k`` closest unlinked pairs."""
    if k <= 0:
        return []
    d = scenario.defaults
    names = sorted(graph.nodes)
    position = {x: i for i, x in enumerate(names)}
    before = np.zeros((len(names), len(names)))
    for pc in caps:
        before[position[pc.a], position[pc.b]] = pc.capacity_bps
    upper = np.triu_indices(len(names), k=1)
    worst_before = float(before[upper].min()) if caps else 0.0
    out = []
    preset = get_preset(hardware)
    for a, b, straight in closest_unlinked_pairs(scenario, k):
        link = LinkSpec(
            id=f"{a}--{b}",
            a=a,
            b=b,
            length_km=round(straight * d.route_factor, 3),
            straight_km=round(straight, 3),
            attenuation_db_per_km=preset.attenuation_db_per_km,
            extra_loss_db=d.extra_loss_db,
            wavelength_nm=preset.source.wavelength_nm,
            hardware=hardware,
            protocol=preset.protocol,
            block_size=d.block_size,
            eps_sec=d.eps_sec,
            eps_cor=d.eps_cor,
        )
        lr = _as_link_rate(link, link_key_rate(link))
        g2 = graph.copy()
        g2.add_edge(
            a, b, link=link, id=link.id, length_km=link.length_km, key_rate_bps=lr.key_rate_bps
        )
        after_names, after = capacity_matrix(g2)
        assert after_names == names  # a new link between existing sites
        gains = after[upper] - before[upper]
        out.append(
            Candidate(
                a=a,
                b=b,
                length_km=link.length_km,
                hardware=hardware,
                key_rate_bps=lr.key_rate_bps,
                total_gain_bps=float(gains.sum()),
                pairs_improved=int(np.count_nonzero(gains > 1e-9 * max(1.0, lr.key_rate_bps))),
                worst_pair_before_bps=worst_before,
                worst_pair_after_bps=float(after[upper].min()) if caps else 0.0,
            )
        )
    out.sort(key=lambda c: -c.total_gain_bps)
    return out
