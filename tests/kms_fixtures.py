"""Shared set-up of the KMS tests: a PKI, two linked KMEs served over real mTLS, key blocks."""

from __future__ import annotations

import os
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from qkdnet.kms import KME, KeyStore, KMEClient, Limits, Sealer, ThreadedServer, create_app
from qkdnet.kms.kme import link_in_process
from qkdnet.kms.pki import init_pki
from qkdnet.kms.server import server_ssl_context

PG_URL = os.environ.get("QKDNET_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

SAES_A = ("alice", "mallory")
SAES_B = ("bob", "carol", "dave")


def make_pki(directory: Path) -> Path:
    """CA + KME_A, KME_B, SAEs and a QKD module; plus a second, unknown CA with an 'alice'."""
    init_pki(directory, kmes=["KME_A", "KME_B"], saes=[*SAES_A, *SAES_B], modules=["qkd_AB"])
    init_pki(directory / "rogue", saes=["alice", "bob"])
    return directory


def blocks(n: int, unit_bytes: int = 32) -> list[tuple[str, bytes]]:
    """``n`` random one-unit key blocks with fresh UUIDs."""
    return [(str(uuid.uuid4()), secrets.token_bytes(unit_bytes)) for _ in range(n)]


@dataclass
class Pair:
    """Two KMEs of one link, each served over mTLS in this process."""

    pki: Path
    a: KME
    b: KME
    server_a: ThreadedServer
    server_b: ThreadedServer
    clients: list[KMEClient] = field(default_factory=list)

    @property
    def url_a(self) -> str:
        return f"https://127.0.0.1:{self.server_a.port}"

    @property
    def url_b(self) -> str:
        return f"https://127.0.0.1:{self.server_b.port}"

    def client(self, sae: str, at: str = "a", pki: Path | None = None) -> KMEClient:
        d = pki or self.pki
        url = self.url_a if at == "a" else self.url_b
        c = KMEClient(url, cert=d / f"{sae}.pem", key=d / f"{sae}.key", ca=self.pki / "ca.pem")
        self.clients.append(c)
        return c

    def feed(self, n: int) -> list[tuple[str, bytes]]:
        """Push ``n`` units into both ends, as the QKD module would."""
        bl = blocks(n, self.a.unit_bits // 8)
        self.a.ingest("KME_B", bl, "test")
        self.b.ingest("KME_A", bl, "test")
        return bl

    def close(self) -> None:
        for c in self.clients:
            c.close()
        self.server_a.stop()
        self.server_b.stop()
        self.a.store.close()
        self.b.store.close()


def make_store(url: str, schema: str | None = None) -> KeyStore:
    return KeyStore(url, Sealer(secrets.token_bytes(32)), schema=schema)


def make_pair(
    pki: Path, store_a: KeyStore, store_b: KeyStore, limits: Limits | None = None
) -> Pair:
    a = KME("KME_A", store_a, local_saes=SAES_A, sae_directory={s: "KME_B" for s in SAES_B},
            limits=limits)  # fmt: skip
    b = KME("KME_B", store_b, local_saes=SAES_B, sae_directory={s: "KME_A" for s in SAES_A},
            limits=limits)  # fmt: skip
    link_in_process(a, b)
    modules = {"qkd_AB": "KME_B"}
    sa = ThreadedServer(
        create_app(a, qkd_modules=modules),
        server_ssl_context(pki / "KME_A.pem", pki / "KME_A.key", pki / "ca.pem"),
    ).start()
    sb = ThreadedServer(
        create_app(b, qkd_modules={"qkd_AB": "KME_A"}),
        server_ssl_context(pki / "KME_B.pem", pki / "KME_B.key", pki / "ca.pem"),
    ).start()
    return Pair(pki, a, b, sa, sb)
