"""The planner: link rates are keyrate's, capacities are max-flows, plots have content, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

from qkdnet.keyrate import key_rate
from qkdnet.network import load_scenario, parse_scenario
from qkdnet.network.planner import link_rates, plan
from qkdnet.network.topology import relay_graph
from qkdnet.physics.hardware import get_preset

# Small scenario: a line a - t - b with a trusted middle, and a direct a - c link.
SMALL = """\
name: small
defaults: {block_size: 100000000}
sites:
  - {id: a, name: A, sector: health, lat: 45.46, lon: 9.19, saes: [a-app]}
  - {id: t, name: T, sector: finance, lat: 45.47, lon: 9.20, trusted_node: true, saes: [t-app]}
  - {id: b, name: B, sector: research, lat: 45.48, lon: 9.21, saes: [b-app]}
  - {id: c, name: C, sector: university, lat: 45.455, lon: 9.18, saes: [c-app]}
links:
  - {a: a, b: t, hardware: decoy-1550-spad}
  - {a: t, b: b, hardware: decoy-1550-snspd, extra_loss_db: 1.5}
  - {a: a, b: c, hardware: qd-sps-1550}
"""


@pytest.fixture(scope="module")
def small_plan():
    return plan(parse_scenario(SMALL), candidates=2)


def test_link_rates_are_keyrates_finite_size_figure(small_plan) -> None:
    """Each link's rate is keyrate's, less (finite size) the fixed authentication key a block
    of the post-processing spends: 10 Wegman–Carter pads of 128 bits."""
    sc = small_plan.scenario
    for lr in small_plan.links:
        lk = lr.link
        finite = lk.protocol == "decoy-bb84"
        ref = key_rate(
            lk.protocol,
            lk.length_km,
            lk.hardware,
            block_size=float(lk.block_size) if finite else None,
            extra_loss_db=lk.extra_loss_db,
            attenuation_db_per_km=lk.attenuation_db_per_km,
        )
        auth_bps = 1280 * get_preset(lk.hardware).source.rate_hz / lk.block_size if finite else 0
        assert lr.key_rate_bps == pytest.approx(ref.key_rate_bps - auth_bps, rel=1e-9)
        assert lr.finite_size is finite
        assert lr.method == "exact"
    assert sc.link("a--t").block_size == 10**8


def test_capacities_are_max_flows_through_trusted_nodes(small_plan) -> None:
    rates = {lr.link.id: lr.key_rate_bps for lr in small_plan.links}
    # a - b only through t: the smaller of the two links
    assert small_plan.capacity("a", "b") == pytest.approx(min(rates["a--t"], rates["t--b"]))
    # c - b: c's only link goes to a, an end site that never relays
    assert small_plan.capacity("b", "c") == 0.0
    pair = next(p for p in small_plan.pairs if (p.a, p.b) == ("a", "b"))
    assert pair.route == ("a", "t", "b")
    assert pair.bottleneck_links == (min(("a--t", "t--b"), key=rates.get),)
    assert {c.a + c.b for c in small_plan.candidates} and len(small_plan.candidates) == 2
    best = small_plan.candidates[0]
    assert best.total_gain_bps >= small_plan.candidates[1].total_gain_bps
    assert best.total_gain_bps > 0


def test_milan_plan_properties() -> None:
    p = plan(load_scenario("milan"), candidates=0)
    assert len(p.pairs) == 13 * 12 // 2
    g = nx.Graph()
    for lr in p.links:
        g.add_edge(lr.link.a, lr.link.b, key_rate_bps=lr.key_rate_bps)
    for s in p.scenario.sites:
        g.nodes[s.id]["trusted"] = s.trusted_node
    for pair in p.pairs[::7]:
        ref = nx.maximum_flow_value(
            nx.Graph(relay_graph(g, pair.a, pair.b)), pair.a, pair.b, capacity="key_rate_bps"
        )
        assert pair.capacity_bps == pytest.approx(ref, rel=1e-6)
        assert all(g.nodes[x]["trusted"] for x in pair.route[1:-1]), "relays are trusted nodes only"
    relayed = [x for x in p.pairs if len(x.route) > 2]
    assert relayed, "some pairs need relays"
    assert p.bottlenecks[0][1] >= p.bottlenecks[-1][1]


def test_interpolated_rates_stay_close_to_exact() -> None:
    """Large groups are interpolated on a 0.25 dB loss grid: within 1 % of keyrate."""
    sc = parse_scenario(SMALL)
    base = sc.link("a--t")
    from dataclasses import replace

    links = [replace(base, id=f"x{i}", extra_loss_db=1.0 + 0.05 * i) for i in range(20)]
    rates = link_rates(links)
    assert {r.method for r in rates} == {"interpolated"}
    for r in rates[3::7]:
        exact = key_rate(
            "decoy-bb84", r.link.length_km, "decoy-1550-spad", block_size=1e8,
            extra_loss_db=r.link.extra_loss_db,
        ).key_rate_bps  # fmt: skip
        assert r.key_rate_bps == pytest.approx(exact, rel=0.01)


def test_plot_has_map_and_matrix(small_plan, tmp_path: Path) -> None:
    from qkdnet.network.plots import capacity_matrix, plan_figure, save_plan_plot

    fig = plan_figure(small_plan)
    by_title = {ax.get_title(): ax for ax in fig.axes}
    ax_map = by_title["small: links (squares: trusted nodes)"]
    ax_cap = by_title["site-pair key capacity (max-flow)"]
    link_lines = [ln for ln in ax_map.get_lines() if str(ln.get_gid()).startswith("link:")]
    assert len(link_lines) == 3
    labels = {t.get_text() for t in ax_map.texts}
    assert {"a", "t", "b", "c"} <= labels
    image = ax_cap.get_images()[0].get_array()
    ids, m = capacity_matrix(small_plan)
    assert image.shape == (4, 4)
    assert m[ids.index("a"), ids.index("b")] == pytest.approx(small_plan.capacity("a", "b"))
    out = save_plan_plot(small_plan, tmp_path / "plan.png")
    assert out.stat().st_size > 20_000
    import matplotlib.image as mpimg

    pixels = mpimg.imread(out)
    assert pixels.std() > 0.05  # not a blank canvas


def test_plan_cli_json_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    cmd = [sys.executable, "-m", "qkdnet.cli", "plan", str(path), "--json", "--candidates", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    data = json.loads(out.stdout)
    assert {"sites", "links", "pairs"} <= set(data)
    assert {"a", "b", "length_km", "protocol", "key_rate_bps"} <= set(data["links"][0])
    assert {"a", "b", "capacity_bps", "route"} <= set(data["pairs"][0])
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMALL.replace("qd-sps-1550", "qd-sps-9"))
    r = subprocess.run(
        [sys.executable, "-m", "qkdnet.cli", "plan", str(bad)], capture_output=True, text=True
    )
    assert r.returncode == 2
    assert f"{bad}:11: links[2].hardware: unknown hardware preset" in r.stderr
    assert "Traceback" not in r.stderr
