"""Feed a running :class:`qkdnet.network.runtime.Network` into a :class:`DashboardHub`.

The runtime publishes dict events on ``net.state`` (see :mod:`qkdnet.network.runtime`); the
bridge thread translates them into hub calls:

* ``block`` → :meth:`DashboardHub.link_block` (QBER, the worker's key rate per device second,
  abort and reason);
* ``pools`` → :meth:`DashboardHub.pool_level` per link: the smaller end's available units ×
  the key size (what a relay or an SAE can still draw), capacity = the runtime's high-water mark;
* ``relay`` → :meth:`DashboardHub.relay`: a ``relay_out`` logged by the first KME of a route
  (``route kmeA>kmeB>kmeC`` in its audit message) becomes the route of sites, once per relay;
* KME request rates: the bridge tails each KME's audit log (``net.audit_path(site)``, one JSON
  line per event, IDs only) and reports ``enc_keys``/``dec_keys`` calls per second each second;
* ``alert`` without a link → :meth:`DashboardHub.alert` (link aborts raise their own alert
  in the hub, with the runtime's reason).

:func:`attach_dashboard` does the whole wiring for ``qkdnet demo``: a hub for the scenario,
the bridge, and a background web server, returning the URL to print.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from pathlib import Path
from typing import Any

from qkdnet.network.dashboard.app import create_app
from qkdnet.network.dashboard.hub import DashboardHub
from qkdnet.network.dashboard.server import BackgroundServer

_ROUTE = re.compile(r"route (\S+)")
REQUEST_EVENTS = ("enc_keys", "dec_keys")


class RuntimeBridge:
    """A thread moving ``net.state`` events into ``hub`` until :meth:`stop`."""

    def __init__(self, net: Any, hub: DashboardHub) -> None:
        self.net = net
        self.hub = hub
        self.unit_bits = int(net.scenario.defaults.key_size_bits)
        self.site_of_kme = {s.kme_id: s.id for s in net.scenario.sites}
        capacity = int(getattr(net, "high_water_units", 0)) * self.unit_bits
        if capacity > 0:
            for link in hub.links.values():
                link.pool_capacity_bits = capacity
        self._offsets: dict[str, int] = {}
        self._totals: dict[str, int] = {}
        self._last_poll = time.monotonic()
        self._queue = net.state.subscribe()
        self._seed(net.state.snapshot())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dashboard-bridge", daemon=True)

    def _seed(self, snapshot: dict[str, Any]) -> None:
        """Start from the runtime's current state (events before we subscribed are gone)."""
        for link_id, link in snapshot.get("links", {}).items():
            if link_id not in self.hub.links:
                continue
            if link.get("down"):
                self.hub.link_block(
                    link_id,
                    qber=float(link.get("qber") or 0.0),
                    key_rate_bps=0.0,
                    aborted=True,
                    abort_reason=link.get("reason") or None,
                )
            elif link.get("qber") is not None:
                self.hub.link_block(
                    link_id, qber=float(link["qber"]), key_rate_bps=float(link.get("rate_bps", 0.0))
                )
            units = link.get("pool_units") or {}
            if len(units) == 2:
                self.hub.pool_level(link_id, self.unit_bits * min(units.values()))

    def start(self) -> RuntimeBridge:
        """Start forwarding events."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop forwarding and unsubscribe from the runtime."""
        self._stop.set()
        self._thread.join(5)
        self.net.state.unsubscribe(self._queue)

    def _run(self) -> None:
        while not self._stop.is_set():
            if time.monotonic() - self._last_poll >= 1.0:
                self.poll_requests()
            try:
                event = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.handle(event)
            except (KeyError, ValueError, TypeError):
                continue  # an event about something the map does not show

    def handle(self, event: dict[str, Any]) -> None:
        """Translate one runtime event into hub calls."""
        kind = event.get("type")
        if kind == "block":
            link_id = event["link"]
            stats = getattr(self.net, "stats", {}).get(link_id)
            rate = float(stats.rate_bps) if stats is not None else 0.0
            self.hub.link_block(
                link_id,
                qber=float(event["qber"]),
                key_rate_bps=rate,
                aborted=bool(event.get("aborted")),
                abort_reason=event.get("reason") or None,
            )
        elif kind == "pools":
            for link_id, ends in event["units"].items():
                bits = self.unit_bits * min(ends.values()) if len(ends) == 2 else 0
                self.hub.pool_level(link_id, bits)
        elif kind == "relay" and event.get("event") == "relay_out":
            match = _ROUTE.search(str(event.get("detail", "")))
            if match is None:
                return
            kmes = match.group(1).split(">")
            if kmes[0] != event.get("kme"):  # a later hop of a relay already shown
                return
            sites = [self.site_of_kme[k] for k in kmes]
            ids = event.get("key_ids") or []
            self.hub.relay(sites, None, f"{len(ids)} key(s)")
        elif kind == "alert" and not event.get("link"):
            self.hub.alert("warning", str(event.get("message", "")))

    def poll_requests(self) -> None:
        """Count new ETSI 014 key requests in every KME's audit log; report per-second rates."""
        now = time.monotonic()
        elapsed = max(now - self._last_poll, 1e-3)
        self._last_poll = now
        audit_path = getattr(self.net, "audit_path", None)
        if audit_path is None:
            return
        for site in self.hub.sites:
            path = Path(audit_path(site))
            try:
                with path.open(encoding="utf-8") as fh:
                    fh.seek(self._offsets.get(site, 0))
                    lines = fh.readlines()
                    self._offsets[site] = fh.tell()
            except (FileNotFoundError, KeyError):
                continue
            count = 0
            for line in lines:
                try:
                    count += json.loads(line).get("event") in REQUEST_EVENTS
                except (ValueError, AttributeError):
                    continue
            rate = count / elapsed
            self._totals[site] = self._totals.get(site, 0) + count
            if rate or self.hub.kme_rates.get(site):
                self.hub.kme_requests(site, rate, self._totals[site])


def attach_dashboard(
    net: Any, host: str = "127.0.0.1", port: int | None = None
) -> tuple[DashboardHub, RuntimeBridge, BackgroundServer]:
    """Hub + bridge + web server for a started ``net``; stop with ``bridge.stop(); server.stop()``."""
    hub = DashboardHub.from_scenario(net.scenario)
    bridge = RuntimeBridge(net, hub).start()
    server = BackgroundServer(create_app(hub), host, port)
    server.start()
    return hub, bridge, server
