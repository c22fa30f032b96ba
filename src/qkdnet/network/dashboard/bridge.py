"""Feed a running :class:`qkdnet.network.runtime.Network` into a :class:`DashboardHub`.

The runtime publishes dict events on ``net.state`` (see :mod:`qkdnet.network.runtime`); the
bridge thread translates them into hub calls:

* ``block`` → :meth:`DashboardHub.link_block` (QBER, the worker's key rate per device second,
  abort and reason);
* ``pools`` → :meth:`DashboardHub.pool_level` per link: the smaller end's available units ×
  the key size (what a relay or an SAE can still draw), capacity = the runtime's high-water mark;
* ``relay`` → :meth:`DashboardHub.relay` at the site of the KME that logged it (IDs only);
* ``alert`` without a link → :meth:`DashboardHub.alert` (link aborts raise their own alert
  in the hub, with the runtime's reason).

:func:`attach_dashboard` does the whole wiring for ``qkdnet demo``: a hub for the scenario,
the bridge, and a background web server, returning the URL to print.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from qkdnet.network.dashboard.app import create_app
from qkdnet.network.dashboard.hub import DashboardHub
from qkdnet.network.dashboard.server import BackgroundServer


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
        self._queue = net.state.subscribe()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dashboard-bridge", daemon=True)

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
        elif kind == "relay":
            site = self.site_of_kme.get(str(event.get("kme")))
            if site is not None:
                ids = event.get("key_ids") or []
                detail = f"{event.get('event', 'relay')} {len(ids)} key(s)"
                self.hub.relay([site], None, detail)
        elif kind == "alert" and not event.get("link"):
            self.hub.alert("warning", str(event.get("message", "")))


def attach_dashboard(
    net: Any, host: str = "127.0.0.1", port: int | None = None
) -> tuple[DashboardHub, RuntimeBridge, BackgroundServer]:
    """Hub + bridge + web server for a started ``net``; stop with ``bridge.stop(); server.stop()``."""
    hub = DashboardHub.from_scenario(net.scenario)
    bridge = RuntimeBridge(net, hub).start()
    server = BackgroundServer(create_app(hub), host, port)
    server.start()
    return hub, bridge, server
