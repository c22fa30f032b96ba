"""The dashboard in headless Chromium: a running 4-site network, every site and link on the map,
a pool level change seen live over server-sent events; a screenshot is saved in artifacts/.

Chromium is driven over the DevTools protocol (``--remote-debugging-port`` + a websocket client).
CI installs Debian's ``chromium`` (``.ci/run``); only where it is genuinely absent does this skip.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboard_network import NetworkDriver, four_site_hub
from qkdnet.network.dashboard import BackgroundServer, create_app
from square_scenario import SQUARE_SCENARIO

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install -y --no-install-recommends chromium)",
)


class DevTools:
    """Just enough of the Chrome DevTools protocol: send a command, wait for its answer."""

    def __init__(self, ws_url: str) -> None:
        from websockets.sync.client import connect

        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(ws_url, max_size=64 * 2**20, open_timeout=10))
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=20))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                value = self.js(expression)
            except RuntimeError:  # the page is still loading (no body yet)
                value = None
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for: {expression}")

    def close(self) -> None:
        self._stack.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    profile = tmp_path / "chromium-profile"
    proc = subprocess.Popen(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "--window-size=1400,950",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        pages = []
        while not pages and time.monotonic() < deadline:
            pages = [
                t
                for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json()
                if t["type"] == "page"
            ]
            time.sleep(0.05)
        tools = DevTools(pages[0]["webSocketDebuggerUrl"])
        tools.call("Page.enable")
        tools.call("Runtime.enable")
        yield tools
        tools.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_dashboard_shows_every_site_and_link_and_a_live_pool_change(browser: DevTools) -> None:
    hub = four_site_hub()
    with BackgroundServer(create_app(hub)) as server, NetworkDriver(hub, tick_s=0.25, speed=1e-4):
        browser.call("Page.navigate", url=server.url)
        browser.wait_for("document.body.getAttribute('data-loaded') === '1'")

        sites = browser.js("[...document.querySelectorAll('#map g.site')].map(g => g.dataset.site)")
        assert sorted(sites) == sorted(hub.sites)
        names = browser.js(
            "[...document.querySelectorAll('#map g.site text')].map(t => t.textContent)"
        )
        assert sorted(names) == sorted(s.name for s in hub.sites.values())
        links = browser.js(
            "[...document.querySelectorAll('#map line.link')].map(l => l.dataset.link)"
        )
        assert sorted(links) == sorted(hub.links)
        rows = browser.js(
            "[...document.querySelectorAll('#links tbody tr')].map(r => r.dataset.link)"
        )
        assert sorted(rows) == sorted(hub.links)
        # every site is drawn at a distinct place inside the map
        xy = browser.js(
            "[...document.querySelectorAll('#map g.site circle')]"
            ".map(c => [+c.getAttribute('cx'), +c.getAttribute('cy')])"
        )
        assert len({tuple(p) for p in xy}) == 4
        assert all(0 < x < 800 and 0 < y < 600 for x, y in xy)

        # the driver's key fills the pools: the map shows a rising level, coloured, with trends
        browser.wait_for(
            "[...document.querySelectorAll('#map line.link')].every(l => +l.dataset.poolBits > 0)"
        )
        assert browser.js("document.getElementById('connection').textContent") == "live"
        browser.wait_for(
            "document.querySelector('#links tr[data-link=\"lab-hub\"] .spark-rate svg')"
            ".dataset.points > 2"
        )

        # a relay lab -> hub -> hospital draws 256 bits from two pools: the page must show the drop
        driver_rates = {k: v.key_rate_bps for k, v in hub.links.items()}
        assert all(rate > 0 for rate in driver_rates.values())
    # the driver is stopped: pool levels change only through what follows
    hub.alert("info", "driver stopped")
    with BackgroundServer(create_app(hub)) as server:
        browser.call("Page.navigate", url=server.url)
        browser.wait_for("document.body.getAttribute('data-loaded') === '1'")
        before = hub.links["lab-hub"].pool_bits
        shown = browser.js(
            "+document.querySelector('#map line.link[data-link=\"lab-hub\"]').dataset.poolBits"
        )
        assert shown == before
        hub.relay(["lab", "hub", "hospital"], 256)
        hub.pool_level("lab-hub", before - 256)
        hub.pool_level("hub-hospital", hub.links["hub-hospital"].pool_bits - 256)
        browser.wait_for(
            "+document.querySelector('#map line.link[data-link=\"lab-hub\"]').dataset.poolBits"
            f" === {before - 256}"
        )
        assert (
            browser.js(
                "+document.querySelector('#links tr[data-link=\"lab-hub\"] .pool-value').dataset.bits"
            )
            == before - 256
        )
        assert (
            browser.js("document.querySelector('#relays li').dataset.route") == "lab,hub,hospital"
        )
        assert (
            browser.js("document.querySelectorAll('#map-relays polyline.relay-path').length") == 1
        )

        # an aborting link and a pool running dry raise alerts and redraw the link
        hub.link_block(
            "hub-bank", qber=0.2, key_rate_bps=0.0, aborted=True, abort_reason="QBER 20 % > 11 %"
        )
        hub.pool_level("hub-bank", 2 * hub.pool_low_water_bits)
        hub.pool_level("hub-bank", 0)
        browser.wait_for(
            "document.querySelector('#map line.link[data-link=\"hub-bank\"]').classList.contains('aborted')"
        )
        alerts = browser.wait_for(
            "(t => t.includes('running dry') && t)"
            "([...document.querySelectorAll('#alerts li')].map(li => li.textContent).join('\\n'))"
        )
        assert "link hub-bank aborted: QBER 20 % > 11 %" in alerts
        assert "pool of link hub-bank running dry" in alerts

        ARTIFACTS.mkdir(exist_ok=True)
        shot = browser.call("Page.captureScreenshot", format="png")
        path = ARTIFACTS / "dashboard.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000


RUNTIME_SCENARIO = SQUARE_SCENARIO


def test_dashboard_of_the_real_runtime(browser: DevTools, tmp_path: Path) -> None:
    """The 4-site network started by ``qkdnet.network.runtime`` (KME processes, link workers),
    wired with ``attach_dashboard`` as ``qkdnet demo`` does."""
    from qkdnet.network import parse_scenario
    from qkdnet.network.dashboard import attach_dashboard
    from qkdnet.network.runtime import Network

    path = tmp_path / "square.yaml"  # the KME processes read the scenario file
    path.write_text(RUNTIME_SCENARIO)
    scenario = parse_scenario(RUNTIME_SCENARIO, str(path))
    net = Network(scenario, tmp_path / "state", speed=20.0, ports="free", high_water_units=3000)
    net.start()
    bridge = board = None
    try:
        hub, bridge, board = attach_dashboard(net)
        browser.call("Page.navigate", url=board.url)
        browser.wait_for("document.body && document.body.getAttribute('data-loaded') === '1'")
        sites = browser.js("[...document.querySelectorAll('#map g.site')].map(g => g.dataset.site)")
        assert sorted(sites) == ["hosp", "lab", "t1", "t2"]
        links = browser.js(
            "[...document.querySelectorAll('#map line.link')].map(l => l.dataset.link)"
        )
        assert sorted(links) == sorted(x.id for x in scenario.links)

        first = scenario.links[0].id  # hosp--t1
        assert first in hub.links
        seen = browser.wait_for(  # on a fresh install the first block compiles the engine
            f"+document.querySelector('#map line.link[data-link=\"{first}\"]').dataset.poolBits",
            timeout_s=120,
        )
        assert seen > 0
        browser.wait_for(
            f"+document.querySelector('#map line.link[data-link=\"{first}\"]').dataset.poolBits"
            f" !== {seen}",
            timeout_s=30,
        )  # the pool level changes live as the link worker pushes key blocks
        attacked = next(x.id for x in scenario.links if x.attack is not None)
        browser.wait_for(
            f"document.querySelector('#map line.link[data-link=\"{attacked}\"]')"
            ".classList.contains('aborted')",
            timeout_s=30,
        )
        alerts = browser.wait_for(
            "(t => t.includes('aborted') && t)"
            "([...document.querySelectorAll('#alerts li')].map(li => li.textContent).join(' '))"
        )
        assert f"link {attacked} aborted: QBER" in alerts
        # an SAE at the hospital asks for a key for the lab: relayed through Trusted 1
        deadline = time.monotonic() + 30
        keys = None
        with net.sae_client("hosp-app") as client:
            while keys is None and time.monotonic() < deadline:
                try:
                    keys = client.get_key("lab-app", number=1, size=256)
                except Exception:
                    time.sleep(0.3)
        assert keys is not None, "no key relayed from hospital to lab"
        route = browser.wait_for(
            "(li => li && li.dataset.route)(document.querySelector('#relays li'))"
        )
        assert route == "hosp,t1,lab"
        browser.wait_for(
            "+document.querySelector('#kmes tr[data-site=\"hosp\"] .kme-total').textContent >= 1"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        shot = browser.call("Page.captureScreenshot", format="png")
        (ARTIFACTS / "dashboard-runtime.png").write_bytes(base64.b64decode(shot["data"]))
    finally:
        if board is not None:
            bridge.stop()
            board.stop()
        net.stop()
