"""Building blocks of the apps: Wegman–Carter polynomial MAC, CatKDF hybrid key, frame format."""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkdnet.apps.authentication import (
    BLOCK_BYTES,
    P127,
    TagMismatchError,
    forgery_bound,
    polynomial_hash,
    verify_tag,
    wegman_carter_tag,
)
from qkdnet.apps.frames import Frame, FrameError, FrameType
from qkdnet.apps.hybrid import LABEL, HybridInitiator, HybridResponder, cat_kdf


def reference_hash(message: bytes, k: int) -> int:
    """h_k(m) = sum_i c_i k^(L-i+1) mod p, written out term by term (module docstring)."""
    blocks = [message[i : i + BLOCK_BYTES] for i in range(0, len(message), BLOCK_BYTES)] or [b""]
    coeffs = [int.from_bytes(b, "little") + (1 << (8 * len(b))) for b in blocks]
    L = len(coeffs)
    return sum(c * pow(k, L - i, P127) for i, c in enumerate(coeffs)) % P127


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=P127 - 1))
def test_horner_hash_equals_the_polynomial(message: bytes, k: int) -> None:
    assert polynomial_hash(message, k) == reference_hash(message, k)


def test_padding_separates_trailing_zeros_and_lengths() -> None:
    k = int.from_bytes(os.urandom(16), "little") % P127
    msgs = [b"", b"\x00", b"\x00\x00", b"a" * 15, b"a" * 15 + b"\x00", b"\x00" * 30]
    hashes = {polynomial_hash(m, k) for m in msgs}
    assert len(hashes) == len(msgs)


def test_tag_verifies_and_any_change_is_caught() -> None:
    key = os.urandom(32)
    msg = b"decree 42/2026: permits 00001-02000 granted"
    tag = wegman_carter_tag(msg, key)
    verify_tag(msg, tag, key)
    with pytest.raises(TagMismatchError):
        verify_tag(msg[:-1] + b"X", tag, key)
    with pytest.raises(TagMismatchError):
        verify_tag(msg, bytes([tag[0] ^ 1]) + tag[1:], key)
    with pytest.raises(TagMismatchError):
        verify_tag(msg, tag, os.urandom(32))


def test_forgery_bound_is_blocks_over_p() -> None:
    # Bernstein (FSE 2005) Thm 3.3 style bound L/p: 64 KiB = 4370 blocks of 15 bytes.
    assert forgery_bound(64 * 1024) == pytest.approx(4370 / P127)
    assert forgery_bound(64 * 1024) < 1e-34


def test_cat_kdf_is_rfc5869_hkdf_over_the_concatenation() -> None:
    qkd, kem, transcript = os.urandom(32), os.urandom(32), os.urandom(100)
    key_id = "0b3f1a9e-3c51-4a55-9d0c-1d1c2a3b4c5d"
    info = LABEL + hashlib.sha256(transcript).digest() + key_id.encode()
    prk = hmac.new(b"\x00" * 32, qkd + kem, hashlib.sha256).digest()  # RFC 5869 2.2, empty salt
    okm = hmac.new(prk, info + b"\x01", hashlib.sha256).digest()  # RFC 5869 2.3, one block
    assert cat_kdf(qkd, kem, transcript, key_id) == okm


def test_hybrid_key_changes_with_either_secret() -> None:
    responder = HybridResponder()
    initiator = HybridInitiator(responder.public_bytes)
    qkd = os.urandom(32)
    key, ct = initiator.derive(qkd, "id-1")
    assert responder.derive(qkd, "id-1", ct) == key
    assert responder.derive(os.urandom(32), "id-1", ct) != key  # QKD part differs
    key2, ct2 = initiator.derive(qkd, "id-1")  # fresh encapsulation, same QKD key
    assert key2 != key and ct2 != ct
    tampered = bytes([ct[0] ^ 1]) + ct[1:]
    assert responder.derive(qkd, "id-1", tampered) != key  # implicit rejection (FIPS 203)
    assert responder.derive(qkd, "id-2", ct) != key  # bound to the key ID


def test_frame_round_trip_and_rejects_garbage() -> None:
    frame = Frame(FrameType.DATA, 1, 7, os.urandom(16), (str(uuid.uuid4()),), b"xyz")
    raw = frame.encode()
    assert Frame.decode(raw[4:]) == frame
    with pytest.raises(FrameError):
        Frame.decode(b"XX" + raw[6:])
    with pytest.raises(FrameError):
        Frame.decode(raw[4:20])
