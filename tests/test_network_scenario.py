"""Scenario files: validation errors name file, line and field; the Milan scenario's properties."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pytest

from qkdnet.network import ScenarioError, load_scenario, parse_scenario
from qkdnet.network.geodesy import great_circle_km
from qkdnet.network.topology import build_graph, diameter_km, pairs_needing_relay, relay_graph

MINIMAL = """\
name: tiny
sites:
  - id: a
    name: A
    sector: finance
    lat: 45.46
    lon: 9.19
    trusted_node: true
    saes: [a-app]
  - id: b
    name: B
    sector: health
    lat: 45.51
    lon: 9.19
    saes: [b-app]
links:
  - a: a
    b: b
    hardware: decoy-1550-spad
"""


def _err(text: str, tmp_path: Path) -> ScenarioError:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return info.value


def test_minimal_scenario_applies_defaults() -> None:
    sc = parse_scenario(MINIMAL)
    (link,) = sc.links
    straight = great_circle_km(45.46, 9.19, 45.51, 9.19)
    assert link.id == "a--b"
    assert link.protocol == "decoy-bb84"  # the preset's protocol
    assert link.length_km == pytest.approx(1.45 * straight, rel=1e-3)
    assert link.attenuation_db_per_km == pytest.approx(0.20)
    assert link.loss_db == pytest.approx(link.length_km * 0.2 + 1.0)
    assert sc.site("a").kme_id == "kme-a"
    assert sc.site("b").kme_port == 8701
    assert sc.site("a").store_url_for("/tmp/s") == "sqlite:////tmp/s/kme-a.db"


def test_unknown_preset_names_file_line_field_and_choices(tmp_path: Path) -> None:
    err = _err(MINIMAL.replace("decoy-1550-spad", "decoy-9000"), tmp_path)
    assert err.file.endswith("bad.yaml")
    assert err.line == 19
    assert err.path == "links[0].hardware"
    assert "decoy-1550-snspd" in err.message and "qd-sps-1550" in err.message
    assert str(err).startswith(f"{err.file}:19: links[0].hardware: unknown hardware preset")


def test_bad_sector_lists_allowed_values(tmp_path: Path) -> None:
    err = _err(MINIMAL.replace("sector: health", "sector: hospital"), tmp_path)
    assert (err.line, err.path) == (12, "sites[1].sector")
    assert "'health'" in err.message and "'finance'" in err.message


def test_typo_field_lists_allowed_fields(tmp_path: Path) -> None:
    err = _err(MINIMAL.replace("    b: b\n", "    b: b\n    lenght_km: 3\n"), tmp_path)
    assert (err.line, err.path) == (19, "links[0].lenght_km")
    assert "length_km" in err.message and "route_factor" in err.message


def test_unknown_site_in_link(tmp_path: Path) -> None:
    err = _err(MINIMAL.replace("    b: b\n", "    b: c\n"), tmp_path)
    assert (err.line, err.path) == (18, "links[0].b")
    assert "unknown site 'c'" in err.message and "a, b" in err.message


def test_latitude_out_of_range(tmp_path: Path) -> None:
    err = _err(MINIMAL.replace("lat: 45.51", "lat: 145.51"), tmp_path)
    assert (err.line, err.path) == (13, "sites[1].lat")
    assert "less than or equal to 90" in err.message


def test_missing_field(tmp_path: Path) -> None:
    err = _err(MINIMAL.replace("    saes: [b-app]\n", ""), tmp_path)
    assert err.path == "sites[1].saes" and "required" in err.message
    assert err.line == 10  # the site's mapping starts there


def test_protocol_incompatible_with_preset(tmp_path: Path) -> None:
    err = _err(
        MINIMAL.replace(
            "hardware: decoy-1550-spad", "hardware: decoy-1550-spad\n    protocol: bbm92"
        ),
        tmp_path,
    )
    assert err.path == "links[0].protocol"
    assert "entangled-pair" in err.message and "qd-entangled-780" in err.message


def test_fibre_shorter_than_straight_line(tmp_path: Path) -> None:
    err = _err(MINIMAL.replace("    b: b\n", "    b: b\n    length_km: 1.0\n"), tmp_path)
    assert err.path == "links[0].length_km" and "straight line" in err.message


def test_duplicate_sae_and_yaml_syntax(tmp_path: Path) -> None:
    err = _err(MINIMAL.replace("[b-app]", "[a-app]"), tmp_path)
    assert err.path == "sites[1].saes[0]" and "already used" in err.message
    err = _err(MINIMAL.replace("saes: [a-app]", "saes: [a-app"), tmp_path)
    assert err.line is not None and "YAML syntax" in err.message


def test_unknown_builtin_name() -> None:
    with pytest.raises(ScenarioError, match="built-in: milan"):
        load_scenario("rome")


def test_milan_scenario_properties() -> None:
    sc = load_scenario("milan")
    assert len(sc.sites) == 13
    press = {s.id for s in sc.sites if s.press_named}
    assert press == {"intesa", "santabarbara", "aria", "polimi-leonardo", "polimi-bovisa"}
    assert all(s.trusted_node for s in sc.sites if s.press_named)
    sectors = {s.sector for s in sc.sites}
    assert {"administration", "finance", "health"} <= sectors
    # within the 25 km circle; reference: Santa Barbara–San Raffaele about 10.3 km (milan.md)
    assert diameter_km(sc) == pytest.approx(10.3, abs=0.1)
    graph = build_graph(sc)
    n = len(sc.sites)
    assert len(sc.links) < n * (n - 1) // 2
    assert pairs_needing_relay(graph), "not a full mesh: some pairs need relays"
    # every pair can reach each other through trusted nodes
    for a, b in combinations(graph.nodes, 2):
        import networkx as nx

        assert nx.has_path(relay_graph(graph, a, b), a, b), (a, b)
    protocols = [link.protocol for link in sc.links]
    assert protocols.count("decoy-bb84") > len(protocols) / 2
    qd = {(link.protocol, link.hardware) for link in sc.links if "unimib" in (link.a, link.b)}
    assert ("sps-bb84", "qd-sps-1550") in qd
    assert any(p == "bbm92" and h.startswith("qd-entangled") for p, h in qd)
    for link in sc.links:
        assert link.length_km >= link.straight_km * 0.95
        if link.length_km > link.straight_km and link.straight_km > 1.0:
            assert 1.3 <= link.length_km / link.straight_km <= 1.6 + 1e-9, link.id
        assert 0.5 <= link.extra_loss_db <= 1.5
    assert sum(len(s.saes) for s in sc.sites) >= 13
