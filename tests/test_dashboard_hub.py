"""The dashboard hub (state/event source) and its HTTP routes, without a browser."""

from __future__ import annotations

import json

import httpx
import pytest

from dashboard_network import four_site_hub
from qkdnet.network.dashboard import BackgroundServer, DashboardHub, LinkState, SiteInfo, create_app


def test_hub_tracks_state_and_raises_alerts_on_transitions() -> None:
    hub = four_site_hub()
    assert len(hub.sites) == 4 and len(hub.links) == 3
    assert hub.pool_low_water_bits == 4096 and hub.qber_alarm == 0.11  # scenario defaults
    hub.link_block("lab-hub", qber=0.012, key_rate_bps=2e6)
    hub.pool_level("lab-hub", 10_000)
    hub.pool_level("lab-hub", 3_000)  # crosses the low-water mark: one alert
    hub.pool_level("lab-hub", 2_000)  # already low: no second alert
    hub.link_block("hub-bank", qber=0.3, key_rate_bps=1e6, aborted=True, abort_reason="QBER 30 %")
    hub.link_block("hub-bank", qber=0.3, key_rate_bps=1e6, aborted=True, abort_reason="QBER 30 %")
    snap = hub.snapshot()
    links = {x["id"]: x for x in snap["links"]}
    assert links["lab-hub"]["pool_bits"] == 2000 and links["lab-hub"]["status"] == "up"
    assert links["lab-hub"]["history"]["pool_bits"] == [0, 10_000, 3_000, 2_000]
    assert links["hub-bank"]["key_rate_bps"] == 0.0 and links["hub-bank"]["status"] == "aborted"
    messages = [a["message"] for a in snap["alerts"]]
    assert messages == [
        "pool of link lab-hub running dry (3000 bits)",
        "link hub-bank aborted: QBER 30 %",
    ]
    hub.link_block("hub-bank", qber=0.01, key_rate_bps=1e6)
    assert hub.snapshot()["alerts"][-1]["message"] == "link hub-bank producing keys again"


def test_hub_rejects_unknown_names() -> None:
    hub = four_site_hub()
    with pytest.raises(KeyError, match="unknown link 'nope'; links: lab-hub"):
        hub.pool_level("nope", 1)
    with pytest.raises(KeyError, match="unknown site 'mars'"):
        hub.relay(["lab", "mars"], 256)
    with pytest.raises(ValueError, match="ends at unknown site 'c'"):
        DashboardHub([SiteInfo("a", "A", 45.0, 9.0)], [LinkState("a-c", "a", "c", 1.0, "bbm92")])


def test_routes_serve_page_assets_state_and_an_event_stream() -> None:
    hub = four_site_hub()
    with BackgroundServer(create_app(hub)) as server:
        page = httpx.get(server.url)
        assert page.status_code == 200 and 'id="map"' in page.text
        assert "http" not in page.text.replace("http://www.w3.org", "")  # no CDN, works offline
        js = httpx.get(server.url + "static/dashboard.js")
        assert js.status_code == 200 and "EventSource" in js.text
        assert httpx.get(server.url + "static/dashboard.css").status_code == 200
        state = httpx.get(server.url + "api/state").json()
        assert {s["id"] for s in state["sites"]} == {"lab", "hub", "bank", "hospital"}

        kinds: list[tuple[str, dict]] = []
        with httpx.stream("GET", server.url + "events", timeout=10) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            kind = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    kinds.append((kind, json.loads(line.removeprefix("data: "))))
                    if kind == "snapshot":
                        hub.kme_requests("hospital", 12.5)
                        hub.relay(["lab", "hub", "hospital"], 256)
                    if len(kinds) == 3:
                        break
        assert [k for k, _ in kinds] == ["snapshot", "kme", "relay"]
        assert kinds[1][1]["data"] == {"site": "hospital", "request_rate_hz": 12.5, "requests": 0}
        assert kinds[2][1]["data"]["route"] == ["lab", "hub", "hospital"]
        assert kinds[2][1]["seq"] > kinds[1][1]["seq"]


def test_runtime_events_reach_the_hub() -> None:
    """Events in the exact shapes ``qkdnet.network.runtime.Network`` publishes on its state."""
    import time
    from types import SimpleNamespace

    from dashboard_network import SCENARIO
    from qkdnet.network import parse_scenario
    from qkdnet.network.dashboard import RuntimeBridge
    from qkdnet.network.runtime import NetworkState

    scenario = parse_scenario(SCENARIO, "four-sites.yaml")
    stats = {x.id: SimpleNamespace(rate_bps=1.5e6) for x in scenario.links}
    net = SimpleNamespace(
        scenario=scenario, state=NetworkState(), stats=stats, high_water_units=100
    )
    hub = DashboardHub.from_scenario(scenario)
    bridge = RuntimeBridge(net, hub).start()
    kme = {s.id: s.kme_id for s in scenario.sites}
    try:
        net.state.publish({"type": "block", "link": "lab-hub", "key_bits": 4096, "qber": 0.012,
                           "device_time_s": 1.0, "aborted": False, "reason": ""})  # fmt: skip
        net.state.publish(
            {
                "type": "pools",
                "units": {"lab-hub": {kme["lab"]: 7, kme["hub"]: 5}},
                "down_links": [],
            }
        )
        reason = "QBER 0.262 above the alarm threshold 0.110: no key; link down"
        net.state.publish({"type": "alert", "link": "hub-bank", "message": reason})
        net.state.publish({"type": "block", "link": "hub-bank", "key_bits": 0, "qber": 0.262,
                           "device_time_s": 2.0, "aborted": True, "reason": reason})  # fmt: skip
        route = f"route {kme['lab']}>{kme['hub']}>{kme['hospital']} pads ['u1']"
        net.state.publish(
            {
                "type": "relay",
                "kme": kme["hub"],
                "event": "relay_out",
                "key_ids": ["k1"],
                "detail": route,
            }
        )  # a later hop: not drawn twice
        net.state.publish({"type": "relay", "kme": kme["lab"], "event": "relay_out",
                           "key_ids": ["k1"], "detail": route})  # fmt: skip
        deadline = time.monotonic() + 5
        while not hub.relays and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        bridge.stop()
    lab = hub.links["lab-hub"]
    assert (lab.qber, lab.key_rate_bps, lab.status) == (0.012, 1.5e6, "up")
    assert lab.pool_bits == 5 * 256 and lab.pool_capacity_bits == 100 * 256
    assert hub.links["hub-bank"].status == "aborted"
    assert [a["message"] for a in hub.alerts] == [f"link hub-bank aborted: {reason}"]
    assert [r["route"] for r in hub.relays] == [["lab", "hub", "hospital"]]
    assert hub.relays[0]["detail"] == "1 key(s)"


def test_kme_request_rates_come_from_the_audit_logs(tmp_path) -> None:
    from types import SimpleNamespace

    from dashboard_network import SCENARIO
    from qkdnet.network import parse_scenario
    from qkdnet.network.dashboard import RuntimeBridge
    from qkdnet.network.runtime import NetworkState

    scenario = parse_scenario(SCENARIO, "four-sites.yaml")
    net = SimpleNamespace(
        scenario=scenario, state=NetworkState(), audit_path=lambda site: tmp_path / f"{site}.jsonl"
    )
    hub = DashboardHub.from_scenario(scenario)
    bridge = RuntimeBridge(net, hub)
    lines = [{"event": "enc_keys", "key_ids": ["a"]}, {"event": "dec_keys"}, {"event": "ingest"}]
    (tmp_path / "hospital.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    bridge._last_poll -= 2.0  # two seconds since the last poll
    bridge.poll_requests()
    assert hub.kme_rates["hospital"] == pytest.approx(1.0, rel=0.05)  # 2 requests in ~2 s
    assert hub.kme_rates["lab"] == 0.0 and hub.kme_totals["hospital"] == 2
    bridge._last_poll -= 1.0
    bridge.poll_requests()  # nothing new: the rate falls to zero
    assert hub.kme_rates["hospital"] == 0.0
    net.state.unsubscribe(bridge._queue)


def test_bridge_starts_from_the_runtime_state() -> None:
    """A link that aborted before the dashboard attached still shows as aborted, with its pool."""
    from types import SimpleNamespace

    from dashboard_network import SCENARIO
    from qkdnet.network import parse_scenario
    from qkdnet.network.dashboard import RuntimeBridge
    from qkdnet.network.runtime import NetworkState

    scenario = parse_scenario(SCENARIO, "four-sites.yaml")
    state = NetworkState()
    kme = {s.id: s.kme_id for s in scenario.sites}
    state.update(
        lambda d: d["links"].update(
            {
                "hub-bank": {"down": True, "reason": "QBER 0.27 above alarm", "qber": 0.27},
                "lab-hub": {"qber": 0.01, "rate_bps": 2e5,
                            "pool_units": {kme["lab"]: 4, kme["hub"]: 9}},
            }
        )
    )  # fmt: skip
    hub = DashboardHub.from_scenario(scenario)
    bridge = RuntimeBridge(SimpleNamespace(scenario=scenario, state=state), hub)
    state.unsubscribe(bridge._queue)
    assert hub.links["hub-bank"].status == "aborted"
    assert hub.alerts[0]["message"] == "link hub-bank aborted: QBER 0.27 above alarm"
    assert (hub.links["lab-hub"].key_rate_bps, hub.links["lab-hub"].pool_bits) == (2e5, 4 * 256)
    assert hub.links["hub-hospital"].status == "idle"
