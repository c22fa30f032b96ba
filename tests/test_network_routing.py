"""Routing through trusted nodes: end sites never relay, low pools and down links avoided."""

from __future__ import annotations

import pytest

from qkdnet.network import parse_scenario
from qkdnet.network.routing import NoRouteError, find_route
from qkdnet.network.topology import build_graph, closest_unlinked_pairs

# Square: h (hospital) - t1 - l (lab) and h - t2 - l; e is an end site linked to h and l.
SQUARE = """\
name: square
sites:
  - {id: h, name: H, sector: health, lat: 45.46, lon: 9.19, saes: [h-app]}
  - {id: t1, name: T1, sector: finance, lat: 45.47, lon: 9.20, trusted_node: true, saes: [t1-app]}
  - {id: t2, name: T2, sector: finance, lat: 45.45, lon: 9.20, trusted_node: true, saes: [t2-app]}
  - {id: l, name: L, sector: research, lat: 45.46, lon: 9.21, saes: [l-app]}
  - {id: e, name: E, sector: industry, lat: 45.46, lon: 9.20, saes: [e-app]}
links:
  - {a: h, b: t1, hardware: decoy-1550-spad}
  - {a: t1, b: l, hardware: decoy-1550-spad}
  - {a: h, b: t2, hardware: decoy-1550-spad}
  - {a: t2, b: l, hardware: decoy-1550-spad}
  - {a: h, b: e, hardware: decoy-1550-spad}
  - {a: e, b: l, hardware: decoy-1550-spad}
"""


@pytest.fixture()
def graph():
    return build_graph(parse_scenario(SQUARE))


def test_route_goes_through_trusted_nodes_only(graph) -> None:
    route = find_route(graph, "h", "l")
    assert route.hops == 2
    assert route.relays in (("t1",), ("t2",))  # never the end site e
    assert len(route.links) == 2


def test_direct_link_is_one_hop(graph) -> None:
    route = find_route(graph, "h", "e")
    assert route.sites == ("h", "e") and route.links == ("h--e",)


def test_low_pool_avoided_and_down_link_skipped(graph) -> None:
    pools = {"h--t1": 10_000, "t1--l": 300, "h--t2": 10_000, "t2--l": 10_000}
    route = find_route(graph, "h", "l", need_bits=256, pools_bits=pools, low_water_bits=1000)
    assert route.relays == ("t2",)  # t1--l would fall below the low-water mark
    route = find_route(
        graph, "h", "l", need_bits=256, pools_bits=pools, low_water_bits=1000, down_links={"t2--l"}
    )
    assert route.relays == ("t1",)  # a low pool is still usable when it is the only way
    with pytest.raises(NoRouteError, match="t1--l"):
        find_route(
            graph, "h", "l", need_bits=512, pools_bits=pools, low_water_bits=0, down_links={"t2--l"}
        )


def test_closest_unlinked_pairs(graph) -> None:
    sc = parse_scenario(SQUARE)
    pairs = closest_unlinked_pairs(sc, 3)
    assert len(pairs) == 3
    assert all(not graph.has_edge(a, b) for a, b, _ in pairs)
    assert [d for *_, d in pairs] == sorted(d for *_, d in pairs)
