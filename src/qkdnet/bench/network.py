"""Benchmarks of the network layer.

* ``plan`` on a generated network (1,000 sites and 3,000 links; ``quick``: 200 and 600): load
  and validate the YAML, link rates, all-pairs max-flow, routes, one candidate link, JSON.
  Baseline: networkx's max-flow (preflow-push) per site pair, timed on a sample of pairs and
  scaled to all pairs (the straightforward way to get every pair's capacity).
* ``demo`` start to the first key delivered across a relay, Milan (13 KMEs). Baseline: the same
  for a 4-site network.
"""

from __future__ import annotations

import json
import tempfile
import time
from itertools import combinations
from pathlib import Path

import networkx as nx
import numpy as np
import yaml

from qkdnet.bench import Figure

CENTRE = (45.4642, 9.1900)  # Milan, Piazza del Duomo


def generated_scenario_yaml(n_sites: int, n_links: int, seed: int = 1) -> str:
    """A random metropolitan network: sites in a 25 km circle, links between near neighbours
    (a spanning tree of nearest links plus the shortest other pairs), 1 in 5 sites an end site
    with a single link, the rest trusted nodes."""
    rng = np.random.default_rng(seed)
    r_km = 12.5 * np.sqrt(rng.random(n_sites))
    phi = rng.random(n_sites) * 2 * np.pi
    lat = CENTRE[0] + (r_km * np.sin(phi)) / 111.2
    lon = CENTRE[1] + (r_km * np.cos(phi)) / (111.2 * np.cos(np.radians(CENTRE[0])))
    xy = np.column_stack([r_km * np.cos(phi), r_km * np.sin(phi)])
    end = rng.random(n_sites) < 0.2
    from scipy.spatial import cKDTree

    tree = cKDTree(xy)
    _, nn = tree.query(xy, k=12)
    g = nx.Graph()
    g.add_nodes_from(range(n_sites))
    candidates = sorted(
        {(min(i, int(j)), max(i, int(j))) for i in range(n_sites) for j in nn[i, 1:]},
        key=lambda p: float(np.hypot(*(xy[p[0]] - xy[p[1]]))),
    )
    for i in np.flatnonzero(end):  # end sites: one link to the nearest trusted node
        for j in nn[i, 1:]:
            if not end[j]:
                g.add_edge(int(i), int(j))
                break
    core = nx.utils.UnionFind(int(i) for i in np.flatnonzero(~end))
    rest = []
    for a, b in candidates:  # spanning forest of the trusted core, shortest links first
        if end[a] or end[b] or g.has_edge(a, b):
            continue
        if core[a] != core[b]:
            core.union(a, b)
            g.add_edge(a, b)
        else:
            rest.append((a, b))
    for a, b in rest:  # then the shortest remaining pairs up to n_links
        if g.number_of_edges() >= n_links:
            break
        g.add_edge(a, b)
    hardware = ["decoy-1550-spad", "decoy-1550-snspd"]
    doc = {
        "name": f"generated-{n_sites}",
        "defaults": {"kme_base_port": 0, "block_size": 100_000_000},
        "sites": [
            {
                "id": f"s{i}",
                "name": f"site {i}",
                "sector": "industry" if end[i] else "operator",
                "lat": float(lat[i]),
                "lon": float(lon[i]),
                "trusted_node": not bool(end[i]),
                "saes": [f"s{i}-app"],
            }
            for i in range(n_sites)
        ],
        "links": [
            {"a": f"s{a}", "b": f"s{b}", "hardware": hardware[(a + b) % 2]} for a, b in g.edges
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def _plan_figure(quick: bool) -> Figure:
    from qkdnet.network.planner import plan
    from qkdnet.network.scenario import load_scenario
    from qkdnet.network.topology import build_graph, relay_graph

    n_sites, n_links = (200, 600) if quick else (1000, 3000)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generated.yaml"
        path.write_text(generated_scenario_yaml(n_sites, n_links))
        t0 = time.perf_counter()
        sc = load_scenario(path)
        result = plan(sc, candidates=1)
        json.dumps(result.as_dict())
        wall = time.perf_counter() - t0
    rates = {lr.link.id: lr.key_rate_bps for lr in result.links}
    g = build_graph(sc, rates)
    rng = np.random.default_rng(2)
    pairs = list(combinations(sorted(g.nodes), 2))
    sample = [pairs[i] for i in rng.choice(len(pairs), size=40, replace=False)]
    t1 = time.perf_counter()
    for a, b in sample:
        nx.maximum_flow_value(nx.Graph(relay_graph(g, a, b)), a, b, capacity="key_rate_bps")
    per_pair = (time.perf_counter() - t1) / len(sample)
    return Figure(
        area="network",
        name=f"qkdnet plan, {len(sc.sites)} sites / {len(sc.links)} links (wall s)",
        value=wall,
        unit="s",
        baseline_name="networkx max-flow per pair, all pairs (extrapolated from 40)",
        baseline_value=per_pair * len(pairs),
        goal="<= 30 s at 1,000 sites / 3,000 links",
    )


_SQUARE = """\
name: square
defaults: {block_size: 10000000, kme_base_port: 0}
sites:
  - {id: hosp, name: H, sector: health, lat: 45.4589, lon: 9.1968, saes: [hosp-app]}
  - {id: t1, name: T1, sector: finance, lat: 45.4680, lon: 9.1890, trusted_node: true, saes: [t1-app]}
  - {id: t2, name: T2, sector: finance, lat: 45.4760, lon: 9.2150, trusted_node: true, saes: [t2-app]}
  - {id: lab, name: L, sector: research, lat: 45.4900, lon: 9.2050, saes: [lab-app]}
links:
  - {a: hosp, b: t1, hardware: decoy-1550-spad}
  - {a: t1, b: lab, hardware: decoy-1550-spad}
  - {a: hosp, b: t2, hardware: decoy-1550-spad}
  - {a: t2, b: lab, hardware: decoy-1550-spad}
"""


def first_key_seconds(scenario_path: Path | str, master: str, slave: str) -> float:
    """Seconds from ``Network.start()`` to the first key ``master`` gets for ``slave``."""
    from qkdnet.kms.client import KMEClientError
    from qkdnet.network.runtime import Network
    from qkdnet.network.scenario import load_scenario

    sc = load_scenario(scenario_path)
    with tempfile.TemporaryDirectory() as state:
        t0 = time.perf_counter()
        net = Network(sc, state, ports="free")
        net.start()
        try:
            with net.sae_client(master) as c:
                while True:
                    try:
                        c.get_key(slave)
                        break
                    except KMEClientError:
                        if time.perf_counter() - t0 > 120:
                            raise
                        time.sleep(0.1)
            return time.perf_counter() - t0
        finally:
            net.stop()


def _demo_figure() -> Figure:
    with tempfile.TemporaryDirectory() as tmp:
        square = Path(tmp) / "square.yaml"
        square.write_text(_SQUARE)
        base = first_key_seconds(square, "hosp-app", "lab-app")
    value = first_key_seconds("milan", "policlinico-records", "unimib-qdlab")
    return Figure(
        area="network",
        name="demo start to first relayed key, Milan 13 KMEs (s)",
        value=value,
        unit="s",
        baseline_name="same, 4-site network",
        baseline_value=base,
        goal="<= 15 s",
    )


def run(quick: bool) -> list[Figure]:
    """The network benchmarks (see module docstring)."""
    return [_plan_figure(quick), _demo_figure()]
