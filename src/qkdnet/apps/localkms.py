"""Two real KMEs on 127.0.0.1 joined by one link, for examples, benchmarks and tests.

Each KME is the project's ETSI GS QKD 014 server (``qkdnet.kms``) with its own SQLite store,
listening with mutual TLS on a free port; a fresh PKI (CA, two KME and two SAE certificates) is
written into a private temporary directory. :meth:`LocalKMEPair.fill` plays the part of the QKD
link: it pushes the same random key blocks into both stores, as a link's post-processing would.
The applications then see only the 014 API, exactly as with a remote vendor KME.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from types import TracebackType

from qkdnet.apps.kme import KMEKeySource, kme_key_source
from qkdnet.kms.api import create_app
from qkdnet.kms.kme import KME, link_in_process
from qkdnet.kms.pki import init_pki
from qkdnet.kms.sealing import Sealer
from qkdnet.kms.server import ThreadedServer, server_ssl_context
from qkdnet.kms.store import KeyStore

BLOCK_BYTES = 64 * 1024


class LocalKMEPair:
    """KME ``kme_a`` serving SAE ``master_sae`` and KME ``kme_b`` serving ``slave_sae``."""

    def __init__(
        self,
        key_bits: int = 1 << 20,
        *,
        master_sae: str = "sae-a",
        slave_sae: str = "sae-b",
        kme_a: str = "kme-a",
        kme_b: str = "kme-b",
        directory: Path | None = None,
    ) -> None:
        self.master_sae, self.slave_sae = master_sae, slave_sae
        self.kme_ids = (kme_a, kme_b)
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="qkdnet-kms-"))
        os.chmod(self.directory, 0o700)
        self.pki = init_pki(self.directory, kmes=[kme_a, kme_b], saes=[master_sae, slave_sae])
        self.ca = self.directory / "ca.pem"
        self.stores: list[KeyStore] = []
        self.kmes: list[KME] = []
        for kme_id, sae, other_sae, other_kme in (
            (kme_a, master_sae, slave_sae, kme_b),
            (kme_b, slave_sae, master_sae, kme_a),
        ):
            store = KeyStore(f"sqlite:///{self.directory / kme_id}.db", Sealer(os.urandom(32)))
            self.stores.append(store)
            self.kmes.append(
                KME(kme_id, store, local_saes=[sae], sae_directory={other_sae: other_kme})
            )
        link_in_process(*self.kmes)
        self.servers: list[ThreadedServer] = []
        for kme in self.kmes:
            issued = self.pki[kme.kme_id]
            ctx = server_ssl_context(issued.cert, issued.key, self.ca)
            self.servers.append(ThreadedServer(create_app(kme), ctx).start())
        self.urls = tuple(f"https://127.0.0.1:{s.port}" for s in self.servers)
        self._sources: list[KMEKeySource] = []
        if key_bits:
            self.fill(key_bits)

    def fill(self, key_bits: int) -> None:
        """Put ``key_bits`` of fresh shared key into both KMEs (what the QKD link delivers)."""
        remaining = (key_bits + 7) // 8
        while remaining > 0:
            n = min(BLOCK_BYTES, remaining)
            block = [(str(uuid.uuid4()), os.urandom(n))]
            self.kmes[0].ingest(self.kme_ids[1], block, source="localkms")
            self.kmes[1].ingest(self.kme_ids[0], block, source="localkms")
            remaining -= n

    def source(
        self, sae_id: str, *, cert: Path | None = None, key: Path | None = None
    ) -> KMEKeySource:
        """A 014 client of the KME serving ``sae_id``, with its certificate (or the ones given)."""
        index = 0 if sae_id == self.master_sae else 1
        issued = self.pki[sae_id]
        src = kme_key_source(
            self.urls[index],
            cert=cert or issued.cert,
            key=key or issued.key,
            ca=self.ca,
            sae_id=sae_id,
        )
        self._sources.append(src)
        return src

    def master_source(self) -> KMEKeySource:
        """The initiator SAE's client of KME A."""
        return self.source(self.master_sae)

    def slave_source(self) -> KMEKeySource:
        """The responder SAE's client of KME B."""
        return self.source(self.slave_sae)

    def cli_flags(self, sae_id: str) -> list[str]:
        """``--kme-url --cert --key --ca --sae-id`` for ``qkdnet app`` run as ``sae_id``."""
        index = 0 if sae_id == self.master_sae else 1
        issued = self.pki[sae_id]
        return [
            "--kme-url", self.urls[index], "--cert", str(issued.cert), "--key", str(issued.key),
            "--ca", str(self.ca), "--sae-id", sae_id,
        ]  # fmt: skip

    def close(self) -> None:
        """Stop the servers, close the stores and delete the temporary PKI and databases."""
        for src in self._sources:
            src.close()
        for server in self.servers:
            server.stop()
        for store in self.stores:
            store.close()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LocalKMEPair:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
