"""Hybrid key: a QKD key and an ML-KEM-768 shared secret combined by a concatenation KDF.

Follows the concatenation KDF ("CatKDF") of ETSI TS 103 744 (Quantum-safe hybrid key exchanges),
clause 8.2: the component secrets are concatenated and fed to one KDF whose context binds the
messages that produced them::

    key = HKDF-SHA256(salt = b"",  ikm = k_QKD || ss_MLKEM,
                      info = label || SHA-256(pk_MLKEM || ct_MLKEM) || key_ID, length = 32)

HKDF is RFC 5869; the ML-KEM-768 implementation is FIPS 203 from ``cryptography`` (>= 47, OpenSSL
or AWS-LC backend), not hand-written. The result is a uniformly random AES-256 key as long as
*either* input is secret: an eavesdropper who stores the traffic and later breaks ML-KEM still
lacks the QKD key, and one who learns the QKD key (a compromised relay) still lacks the ML-KEM secret.

Active attacks: the responder's ML-KEM public key travels unauthenticated in HELLO_ACK; it is bound
into every derived key (``info``), so a substituted key only gives the attacker the ML-KEM half —
the channel then rests on the QKD key alone, which the KMEs authenticate. Authenticating the ML-KEM
key itself (e.g. with ML-DSA certificates) is outside this package.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

LABEL = b"qkdnet hybrid QKD+ML-KEM-768 CatKDF v1"
MLKEM768_PUBLIC_KEY_BYTES = 1184
MLKEM768_CIPHERTEXT_BYTES = 1088


def cat_kdf(qkd_key: bytes, kem_secret: bytes, transcript: bytes, key_id: str) -> bytes:
    """AES-256 key from the concatenated secrets, bound to the KEM transcript and the QKD key ID."""
    info = LABEL + hashlib.sha256(transcript).digest() + key_id.encode("ascii")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"", info=info)
    return hkdf.derive(qkd_key + kem_secret)


class HybridResponder:
    """The responder's ephemeral ML-KEM-768 key pair for one session."""

    def __init__(self) -> None:
        self._private = MLKEM768PrivateKey.generate()
        self.public_bytes = self._private.public_key().public_bytes_raw()

    def derive(self, qkd_key: bytes, key_id: str, ciphertext: bytes) -> bytes:
        """Decapsulate ``ciphertext`` and derive the epoch key."""
        if len(ciphertext) != MLKEM768_CIPHERTEXT_BYTES:
            raise ValueError(f"ML-KEM-768 ciphertext must be {MLKEM768_CIPHERTEXT_BYTES} bytes")
        secret = self._private.decapsulate(ciphertext)
        return cat_kdf(qkd_key, secret, self.public_bytes + ciphertext, key_id)


class HybridInitiator:
    """The initiator's side: encapsulate to the responder's public key once per epoch."""

    def __init__(self, responder_public: bytes) -> None:
        if len(responder_public) != MLKEM768_PUBLIC_KEY_BYTES:
            raise ValueError(f"ML-KEM-768 public key must be {MLKEM768_PUBLIC_KEY_BYTES} bytes")
        self._public = MLKEM768PublicKey.from_public_bytes(responder_public)
        self._public_bytes = responder_public

    def derive(self, qkd_key: bytes, key_id: str) -> tuple[bytes, bytes]:
        """A fresh encapsulation: (epoch key, ciphertext to send to the responder)."""
        secret, ciphertext = self._public.encapsulate()
        return cat_kdf(qkd_key, secret, self._public_bytes + ciphertext, key_id), ciphertext
