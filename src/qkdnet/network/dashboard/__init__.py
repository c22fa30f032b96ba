"""Live web dashboard of a running QKD network: map, link rates, pools, QBER, relays, alerts.

Wiring: the runtime creates a :class:`DashboardHub` (``DashboardHub.from_scenario(scenario)``),
reports to it as the network runs (see :mod:`.hub` for the calls), and mounts
``create_app(hub)`` (e.g. at ``/dashboard``) or runs it with :class:`BackgroundServer`. The page
is self-contained; for a running :class:`qkdnet.network.runtime.Network`,
:func:`attach_dashboard` wires hub, :class:`RuntimeBridge` and server in one call. The page
is self-contained (inline SVG map from site coordinates, no CDN) and updates over server-sent
events.
"""

from qkdnet.network.dashboard.app import create_app
from qkdnet.network.dashboard.bridge import RuntimeBridge, attach_dashboard
from qkdnet.network.dashboard.hub import DashboardHub, Event, LinkState, SiteInfo
from qkdnet.network.dashboard.server import BackgroundServer, free_port

__all__ = [
    "BackgroundServer",
    "DashboardHub",
    "Event",
    "LinkState",
    "RuntimeBridge",
    "SiteInfo",
    "attach_dashboard",
    "create_app",
    "free_port",
]
