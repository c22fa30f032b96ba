"""Assemble and run one KME process from its :class:`~qkdnet.kms.config.KMEConfig`.

``build(config)`` gives the KME object, its ASGI app and the server TLS context (usable
in-process, e.g. by ``network/runtime.py``); ``serve(config)`` runs it until interrupted.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from qkdnet.kms.api import create_app
from qkdnet.kms.audit import AuditLog
from qkdnet.kms.config import KMEConfig
from qkdnet.kms.kme import KME
from qkdnet.kms.peering import HttpsPeer
from qkdnet.kms.sealing import Sealer, read_master_key, write_master_key
from qkdnet.kms.server import Server, freeze_heap, new_event_loop, server_ssl_context
from qkdnet.kms.store import KeyStore

log = logging.getLogger("qkdnet.kms")


@dataclass
class KMEService:
    """A configured KME with its app and TLS context."""

    config: KMEConfig
    kme: KME
    app: FastAPI
    ssl_context: ssl.SSLContext

    def close(self) -> None:
        """Close the store, peers and audit log."""
        for peer in self.kme.peers.values():
            close = getattr(peer, "close", None)
            if close:
                close()
        self.kme.store.close()
        self.kme.audit.close()


def build(config: KMEConfig) -> KMEService:
    """Open the store (creating the master key file if missing) and wire the KME."""
    if not config.master_key_file.exists():
        config.master_key_file.parent.mkdir(parents=True, exist_ok=True)
        write_master_key(config.master_key_file)
        log.warning("created new master key file %s", config.master_key_file)
    sealer = Sealer(read_master_key(config.master_key_file))
    if config.store.url.startswith("sqlite:///"):
        Path(config.store.url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    store = KeyStore(config.store.url, sealer, schema=config.store.schema_name)
    tls = config.tls
    peers = {
        p.kme_id: HttpsPeer(p.url, cert=tls.cert, key=tls.key, ca=tls.ca) for p in config.peers
    }
    kme = KME(
        config.kme_id,
        store,
        local_saes=config.saes,
        sae_directory=config.sae_directory(),
        peers=peers,
        limits=config.limits.limits(),
        unit_bits=config.unit_bits,
        audit=AuditLog(config.audit_log, config.kme_id),
    )
    app = create_app(kme, qkd_modules=config.qkd_modules())
    return KMEService(config, kme, app, server_ssl_context(tls.cert, tls.key, tls.ca))


def serve(config: KMEConfig) -> None:
    """Run the KME until interrupted (SIGINT/SIGTERM)."""
    service = build(config)
    server = Server(service.app, service.ssl_context, config.listen.host, config.listen.port)

    async def main() -> None:
        await server.start()
        freeze_heap()
        print(f"KME {config.kme_id} listening on https://{config.listen.host}:{server.port}",
              flush=True)  # fmt: skip
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            await server.serve_forever()
        except asyncio.CancelledError:
            await server.stop()

    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        service.close()
