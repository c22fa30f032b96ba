"""Secure applications drawing keys from their site's KME through ETSI GS QKD 014.

- :mod:`qkdnet.apps.channel`: TCP channel with four modes (rekeying AES-256-GCM, QKD+ML-KEM hybrid,
  one-time pad, Wegman–Carter authentication only).
- :mod:`qkdnet.apps.authentication`: Wegman–Carter polynomial MAC over GF(2^127 - 1).
- :mod:`qkdnet.apps.hybrid`: CatKDF of a QKD key and an ML-KEM-768 secret (ETSI TS 103 744).
- :mod:`qkdnet.apps.keyschedule`: key prefetch (master) and fetch-by-ID (slave), shortage policy.
- :mod:`qkdnet.apps.keysource`: the 014 key calls an application needs (:class:`KeySource`).
"""

from qkdnet.apps.channel import (
    ChannelError,
    ChannelStats,
    IntegrityError,
    Mode,
    RekeyPolicy,
    ReplayError,
    SecureReceiver,
    SecureSender,
)
from qkdnet.apps.keyschedule import KeyReuseError, ShortagePolicy
from qkdnet.apps.keysource import (
    KeySource,
    KeySourceError,
    KMERefusedError,
    KMEUnreachableError,
    PoolDepletedError,
    PoolStatus,
    QuantumKey,
)

__all__ = [
    "ChannelError",
    "ChannelStats",
    "IntegrityError",
    "KMERefusedError",
    "KMEUnreachableError",
    "KeyReuseError",
    "KeySource",
    "KeySourceError",
    "Mode",
    "PoolDepletedError",
    "PoolStatus",
    "QuantumKey",
    "RekeyPolicy",
    "ReplayError",
    "SecureReceiver",
    "SecureSender",
    "ShortagePolicy",
]
