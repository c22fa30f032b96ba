"""One KME of a running network, as its own process: ``python -m qkdnet.network.kme_process
CONFIG NETWORK_JSON``.

It is a KME from :mod:`qkdnet.kms.service` plus the network's hop-by-hop relay
(:mod:`qkdnet.kms.relay`), whose router takes routes through trusted nodes from the scenario's
topology (:mod:`qkdnet.network.routing`), avoiding links that are down or whose pools are low
according to the pool levels the runtime's controller writes to ``pools.json``.
SIGTERM and SIGINT stop it cleanly (store, audit log and peers closed).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from qkdnet.kms.config import load_config
from qkdnet.kms.relay import HopRelay, add_relay_routes
from qkdnet.kms.server import Server, freeze_heap
from qkdnet.kms.service import build
from qkdnet.network.routing import find_route
from qkdnet.network.scenario import load_scenario
from qkdnet.network.topology import build_graph


class PoolFileRouter:
    """``router(source_kme, target_kme, need_bits)`` over the scenario graph with live pools."""

    def __init__(self, network: dict[str, Any]) -> None:
        self.scenario = load_scenario(network["scenario"])
        self.graph = build_graph(self.scenario)
        self.site_of_kme = {s.kme_id: s.id for s in self.scenario.sites}
        self.kme_of_site = {s.id: s.kme_id for s in self.scenario.sites}
        self.pools_file = Path(network["pools_file"])
        self.low_water_bits = int(self.scenario.defaults.pool_low_water_bits)
        self._cache: tuple[float, dict[str, Any]] = (-1.0, {})

    def _pools(self) -> dict[str, Any]:
        try:
            mtime = self.pools_file.stat().st_mtime
        except FileNotFoundError:
            return {}
        if mtime != self._cache[0]:
            try:
                self._cache = (mtime, json.loads(self.pools_file.read_text()))
            except (OSError, ValueError):
                return self._cache[1]
        return self._cache[1]

    def __call__(self, source_kme: str, target_kme: str, need_bits: int) -> list[str]:
        state = self._pools()
        bits = state.get("link_bits")
        route = find_route(
            self.graph,
            self.site_of_kme[source_kme],
            self.site_of_kme[target_kme],
            need_bits=need_bits,
            pools_bits={k: int(v) for k, v in bits.items()} if bits else None,
            low_water_bits=self.low_water_bits,
            down_links=set(state.get("down_links", ())),
        )
        return [self.kme_of_site[s] for s in route.sites]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.stderr.write("usage: python -m qkdnet.network.kme_process CONFIG NETWORK_JSON\n")
        return 2
    config = load_config(Path(args[0]))
    network = json.loads(Path(args[1]).read_text())
    service = build(config)
    relay = HopRelay(
        service.kme,
        router=PoolFileRouter(network),
        peer_urls={p.kme_id: p.url for p in config.peers},
        cert=config.tls.cert,
        key=config.tls.key,
        ca=config.tls.ca,
    )
    service.kme.relay = relay
    add_relay_routes(service.app, relay, controllers=[network["controller_cn"]])
    server = Server(service.app, service.ssl_context, config.listen.host, config.listen.port)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        freeze_heap()
        print(f"KME {config.kme_id} listening on https://{config.listen.host}:{server.port}",
              flush=True)  # fmt: skip
        serving = asyncio.create_task(server.serve_forever())
        await stop.wait()
        await server.stop()
        serving.cancel()

    try:
        asyncio.run(run())
    finally:
        relay.close()
        service.close()
        print(f"KME {config.kme_id} stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
