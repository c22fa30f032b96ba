"""Wegman–Carter message authentication: a polynomial hash mod p = 2^61 − 1, one-time-padded.

Construction (Wegman & Carter, J. Comput. Syst. Sci. 22, 265 (1981); Stinson, "Universal hashing
and authentication codes", Des. Codes Cryptogr. 4, 369 (1994)):

* the message is cut into L chunks of 56 bits, m_1 … m_L (each < p), preceded by its byte
  length m_0; h_k(m) = Σ_{i=0..L} m_i k^{L+1−i} mod p is ε-almost-Δ-universal with
  ε = (L+1)/p for a uniform key k (two different messages give polynomials of degree ≤ L+1 whose
  difference has at most L+1 roots);
* two independent hash keys (k1, k2) give a 122-bit hash with ε = ((L+1)/p)²;
* the tag is t_j = h_{k_j}(m) + r_j mod p with a fresh one-time pad r_j per message; the hash
  keys are reused for every message, the pads never are. An adversary who sees any number of
  (message, tag) pairs forges a new pair with probability ≤ ε (ε-ASU via AΔU + one-time pad).

Hash keys and pads come from key shared in advance and then from key produced by the link. Each
tag costs ``PAD_BYTES`` (128 bits) of pad; r_j is the low 61 bits of a 64-bit word, uniform on
{0, …, 2^61 − 1}, whose residues mod p are uniform up to a statistical distance of 2^-61.

The apps layer reuses :func:`tag` / :func:`verify` for its own message authentication.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

import numba as nb
import numpy as np

P61 = (1 << 61) - 1
HASH_KEY_BYTES = 16  # two 61-bit keys, stored as two little-endian 64-bit words
PAD_BYTES = 16  # one-time pad per tag
TAG_BYTES = 16
_P = np.uint64(P61)
_M32 = np.uint64(0xFFFFFFFF)
_M29 = np.uint64((1 << 29) - 1)


class AuthenticationError(Exception):
    """A message tag did not verify: the message was altered, replayed or forged."""


@nb.njit(cache=True, inline="always")
def _mulmod61(a: np.uint64, b: np.uint64) -> np.uint64:
    """a·b mod 2^61 − 1 for a, b < 2^61, with 64-bit words only (2^61 ≡ 1, 2^64 ≡ 8)."""
    a_hi = a >> np.uint64(32)
    a_lo = a & _M32
    b_hi = b >> np.uint64(32)
    b_lo = b & _M32
    lo = a_lo * b_lo
    mid = a_hi * b_lo + a_lo * b_hi
    hi = a_hi * b_hi
    r = (
        (lo & _P)
        + (lo >> np.uint64(61))
        + (hi << np.uint64(3))
        + (mid >> np.uint64(29))
        + ((mid & _M29) << np.uint64(32))
    )
    r = (r & _P) + (r >> np.uint64(61))
    r = (r & _P) + (r >> np.uint64(61))
    if r >= _P:
        r -= _P
    return r


@nb.njit(cache=True)
def _poly_hash2(raw: np.ndarray, k1: np.uint64, k2: np.uint64) -> tuple[np.uint64, np.uint64]:
    """Horner evaluation of (length, chunks…) as a polynomial in k1 and in k2 mod p, times the
    key; chunks are read straight from the bytes (56-bit little-endian, the last zero-padded),
    and the two independent chains interleave."""
    n = raw.size
    a1 = np.uint64(n) % _P
    a2 = a1
    full = n // 7
    for i in range(full + (1 if n % 7 else 0)):
        c = np.uint64(0)
        base = i * 7
        for j in range(min(7, n - base)):
            c |= np.uint64(raw[base + j]) << np.uint64(8 * j)
        a1 = _mulmod61(a1, k1) + c
        if a1 >= _P:
            a1 -= _P
        a2 = _mulmod61(a2, k2) + c
        if a2 >= _P:
            a2 -= _P
    return _mulmod61(a1, k1), _mulmod61(a2, k2)


def _keys(hash_key: bytes) -> tuple[np.uint64, np.uint64]:
    if len(hash_key) != HASH_KEY_BYTES:
        raise ValueError(f"hash key must be {HASH_KEY_BYTES} bytes (got {len(hash_key)})")
    words = np.frombuffer(hash_key, dtype="<u8") & np.uint64(P61)
    return np.uint64(words[0]), np.uint64(words[1])


def poly_hash(message: bytes, hash_key: bytes) -> tuple[int, int]:
    """The two 61-bit polynomial hashes of ``message`` (ε = ((L+1)/p)², L = ⌈len/7⌉ chunks).

    >>> poly_hash(b"abc", bytes(range(16))) == poly_hash(b"abc", bytes(range(16)))
    True
    """
    k1, k2 = _keys(hash_key)
    h1, h2 = _poly_hash2(np.frombuffer(message, dtype=np.uint8), k1, k2)
    return int(h1), int(h2)


def tag(message: bytes, hash_key: bytes, pad: bytes) -> bytes:
    """Wegman–Carter tag of ``message``: polynomial hashes plus a one-time pad, mod p.

    ``pad`` must be ``PAD_BYTES`` fresh secret bytes, never used for another tag.
    """
    if len(pad) != PAD_BYTES:
        raise ValueError(f"pad must be {PAD_BYTES} bytes (got {len(pad)})")
    r = np.frombuffer(pad, dtype="<u8") & np.uint64(P61)
    h1, h2 = poly_hash(message, hash_key)
    t1 = (h1 + int(r[0])) % P61
    t2 = (h2 + int(r[1])) % P61
    return t1.to_bytes(8, "little") + t2.to_bytes(8, "little")


def verify(message: bytes, received_tag: bytes, hash_key: bytes, pad: bytes) -> bool:
    """True when ``received_tag`` is the tag of ``message`` under this key and pad (constant
    time comparison)."""
    return hmac.compare_digest(tag(message, hash_key, pad), received_tag)


@dataclass
class AuthKeyPool:
    """Secret key shared by both parties for authentication: the reused hash key and a stream of
    one-time pads. ``consumed_bits`` counts pad bits used; :meth:`replenish` appends fresh key
    (from a block the link produced) so that authentication never runs dry.
    """

    hash_key: bytes
    pads: bytearray
    consumed_bits: int = 0
    _offset: int = field(default=0, repr=False)

    @classmethod
    def from_preshared(cls, key: bytes) -> AuthKeyPool:
        """Split an initial pre-shared key: the first 16 bytes are the hash key, the rest pads."""
        if len(key) < HASH_KEY_BYTES + PAD_BYTES:
            raise ValueError(
                f"pre-shared key needs at least {HASH_KEY_BYTES + PAD_BYTES} bytes (got {len(key)})"
            )
        return cls(hash_key=bytes(key[:HASH_KEY_BYTES]), pads=bytearray(key[HASH_KEY_BYTES:]))

    @property
    def available_bytes(self) -> int:
        """Pad bytes left."""
        return len(self.pads) - self._offset

    def next_pad(self) -> bytes:
        """The next unused one-time pad (raises when the pool is exhausted)."""
        if self.available_bytes < PAD_BYTES:
            raise AuthenticationError(
                "authentication key exhausted: replenish the pool with key from the link"
            )
        pad = bytes(self.pads[self._offset : self._offset + PAD_BYTES])
        # Burn the pad: zero it in memory so it cannot be reused.
        self.pads[self._offset : self._offset + PAD_BYTES] = bytes(PAD_BYTES)
        self._offset += PAD_BYTES
        self.consumed_bits += 8 * PAD_BYTES
        return pad

    def replenish(self, key: bytes) -> None:
        """Append fresh secret key to the pad stream (dropping used pads)."""
        del self.pads[: self._offset]
        self._offset = 0
        self.pads.extend(key)
