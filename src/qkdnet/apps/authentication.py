"""Wegman–Carter message authentication with quantum keys: integrity without encryption.

A tag is ``t = (h_k(m) + s) mod p`` with ``p = 2^127 - 1`` (Wegman & Carter, J. Comput. Syst. Sci.
22 (1981) 265, Section 3). ``h_k`` is the polynomial hash evaluated at the secret point ``k``:
the message is cut into 15-byte blocks, each read little-endian with a 1 bit appended above its
top byte (as in Poly1305, Bernstein FSE 2005, Section 2), giving coefficients ``c_1..c_L`` in
``[1, 2^121)``; ``h_k(m) = c_1 k^L + c_2 k^(L-1) + ... + c_L k  (mod p)``.

Security (information-theoretic): for two different messages of at most ``L`` blocks, their
difference polynomial is non-zero of degree <= L, so for any ``delta``
``Pr_k[h_k(m) - h_k(m') = delta] <= L / p`` (epsilon-almost-Delta-universal, Bernstein 2005,
Theorem 3.3). Adding a one-time pad ``s`` used for a single tag makes any forgery succeed with
probability at most ``L / p`` (Wegman–Carter; Stinson, Designs Codes Cryptogr. 4 (1994) 369).
A 64 KiB message (L = 4370) gives a forgery bound of 2.6e-35. The hash key ``k`` and pad ``s``
come from a QKD key (16 + 16 bytes) that is used for one tag only in this package.

Note: ``k`` and ``s`` are taken as 127-bit values reduced mod p; the all-ones value maps to 0,
a statistical distance of 2^-127 from uniform that adds to the bound above.
"""

from __future__ import annotations

import hmac

P127 = (1 << 127) - 1
BLOCK_BYTES = 15
TAG_BYTES = 16
KEY_BYTES = 32  # 16 bytes of hash key k, then 16 bytes of one-time pad s


class TagMismatchError(Exception):
    """The Wegman–Carter tag does not match the message: it was altered or the key is wrong."""


def _field_element(raw: bytes) -> int:
    """A 16-byte key part as an element of GF(p): low 127 bits, with 2^127 - 1 mapped to 0."""
    return (int.from_bytes(raw, "little") & P127) % P127


def polynomial_hash(message: bytes, k: int) -> int:
    """``h_k(message)`` over GF(2^127 - 1) with Poly1305-style block padding (see module doc)."""
    view = memoryview(message)
    acc = 0
    n = len(message)
    full = n - n % BLOCK_BYTES
    top = 1 << (8 * BLOCK_BYTES)
    for start in range(0, full, BLOCK_BYTES):
        acc = ((acc + int.from_bytes(view[start : start + BLOCK_BYTES], "little") + top) * k) % P127
    if full < n or n == 0:
        tail = view[full:]
        acc = ((acc + int.from_bytes(tail, "little") + (1 << (8 * len(tail)))) * k) % P127
    return acc


def forgery_bound(message_bytes: int) -> float:
    """Upper bound ``L / p`` on a forger's success for one tag over ``message_bytes`` bytes."""
    blocks = max(1, -(-message_bytes // BLOCK_BYTES))
    return blocks / P127


def wegman_carter_tag(message: bytes, key: bytes) -> bytes:
    """The 16-byte tag of ``message`` under a 32-byte one-time key (hash key, then pad)."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"Wegman–Carter key must be {KEY_BYTES} bytes (got {len(key)})")
    k = _field_element(key[:16])
    s = _field_element(key[16:])
    return ((polynomial_hash(message, k) + s) % P127).to_bytes(TAG_BYTES, "little")


def verify_tag(message: bytes, tag: bytes, key: bytes) -> None:
    """Raise :class:`TagMismatchError` unless ``tag`` is the tag of ``message`` (constant-time compare)."""
    if not hmac.compare_digest(wegman_carter_tag(message, key), tag):
        raise TagMismatchError("Wegman–Carter tag mismatch: message altered or wrong key")
