"""A 4-site network for the dashboard tests: scenario, hub, and a driver that runs its links.

The driver stands in for the network runtime: every tick each link produces key at the rate the
closed-form model gives for its length and hardware (``qkdnet.keyrate.key_rate``), its pool
fills, and the QBER of the block is reported, exactly the calls the runtime makes on the hub.
"""

from __future__ import annotations

import threading

from qkdnet.keyrate import key_rate
from qkdnet.network import parse_scenario
from qkdnet.network.dashboard import DashboardHub

SCENARIO = """\
name: four-sites
sites:
  - {id: lab, name: Bicocca lab, sector: university, lat: 45.5131, lon: 9.2110, saes: [lab-app]}
  - {id: hub, name: Palazzo Lombardia, sector: administration, lat: 45.4867, lon: 9.1953,
     trusted_node: true, saes: [hub-app]}
  - {id: bank, name: Intesa Sanpaolo, sector: finance, lat: 45.4680, lon: 9.1890, saes: [bank-app]}
  - {id: hospital, name: Niguarda hospital, sector: health, lat: 45.5107, lon: 9.1870,
     saes: [hospital-app]}
links:
  - {id: lab-hub, a: lab, b: hub, hardware: decoy-1550-spad}
  - {id: hub-bank, a: hub, b: bank, hardware: decoy-1550-snspd}
  - {id: hub-hospital, a: hub, b: hospital, hardware: decoy-1550-spad}
"""


def four_site_hub() -> DashboardHub:
    """A hub for the 4-site scenario (three links, relays through the trusted ``hub``)."""
    return DashboardHub.from_scenario(parse_scenario(SCENARIO, "four-sites.yaml"))


class NetworkDriver:
    """Runs the links of ``hub`` at their modelled key rates until stopped (a daemon thread)."""

    def __init__(self, hub: DashboardHub, tick_s: float = 0.2, speed: float = 1.0) -> None:
        self.hub = hub
        self.tick_s = tick_s
        self.speed = speed
        self.rates = {
            link.id: key_rate(link.protocol, link.length_km, block_size=None)
            for link in hub.links.values()
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            for link_id, rate in self.rates.items():
                link = self.hub.links[link_id]
                bits = min(
                    link.pool_capacity_bits,
                    link.pool_bits + int(rate.key_rate_bps * self.tick_s * self.speed),
                )
                self.hub.link_block(link_id, qber=rate.qber, key_rate_bps=rate.key_rate_bps)
                self.hub.pool_level(link_id, bits)

    def __enter__(self) -> NetworkDriver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
