"""Key management: KMEs with ETSI GS QKD 014 over mutual TLS and crash-safe key stores.

Public API: :class:`KME` (logic), :class:`KeyStore` (SQLite/PostgreSQL store),
:func:`create_app` (FastAPI routes), :class:`KMEClient`/:class:`AsyncKMEClient` (SAE SDK),
:func:`init_pki` (certificates), :class:`ThreadedServer` (mTLS server in a thread).
"""

from qkdnet.kms.api import create_app
from qkdnet.kms.client import AsyncKMEClient, Key, KMEClient, KMEClientError
from qkdnet.kms.kme import KME, InProcessPeer, KeyRelay, PeerError, PeerLink, link_in_process
from qkdnet.kms.messages import KMEError, Limits
from qkdnet.kms.pki import init_pki
from qkdnet.kms.sealing import Sealer
from qkdnet.kms.server import ThreadedServer, server_ssl_context
from qkdnet.kms.store import Grant, GrantGroup, KeyStore

__all__ = [
    "KME",
    "AsyncKMEClient",
    "Grant",
    "GrantGroup",
    "InProcessPeer",
    "KMEClient",
    "KMEClientError",
    "KMEError",
    "Key",
    "KeyRelay",
    "KeyStore",
    "Limits",
    "PeerError",
    "PeerLink",
    "Sealer",
    "ThreadedServer",
    "create_app",
    "init_pki",
    "link_in_process",
    "server_ssl_context",
]
