"""Wegman–Carter authentication and the authenticated channel."""

import random

import numpy as np
import pytest

from qkdnet.postprocess.authentication import P61, AuthenticationError, poly_hash, tag, verify
from qkdnet.postprocess.channel import Message, channel_pair, memory_pair


def _reference(message: bytes, key: bytes) -> tuple[int, int]:
    """Plain-Python polynomial hash mod 2^61 − 1 (length first, 56-bit chunks, times key)."""
    raw = message + bytes((-len(message)) % 7)
    out = []
    for k in (int.from_bytes(key[:8], "little") & P61, int.from_bytes(key[8:], "little") & P61):
        acc = len(message) % P61
        for i in range(0, len(raw), 7):
            acc = (acc * k + int.from_bytes(raw[i : i + 7], "little")) % P61
        out.append(acc * k % P61)
    return out[0], out[1]


def test_poly_hash_matches_reference() -> None:
    rng = random.Random(7)
    for _ in range(200):
        msg = rng.randbytes(rng.randint(0, 120))
        key = rng.randbytes(16)
        assert poly_hash(msg, key) == _reference(msg, key)
    assert poly_hash(b"x", b"\xff" * 16) == _reference(b"x", b"\xff" * 16)


def test_tag_verifies_and_rejects_changes() -> None:
    rng = random.Random(3)
    key, pad = rng.randbytes(16), rng.randbytes(16)
    msg = rng.randbytes(1000)
    t = tag(msg, key, pad)
    assert verify(msg, t, key, pad)
    forged = bytearray(msg)
    forged[500] ^= 1
    assert not verify(bytes(forged), t, key, pad)
    assert not verify(msg + b"\x00", t, key, pad)  # length is hashed: padding is not free
    assert not verify(msg, t, key, rng.randbytes(16))


class _Tamper:
    """Transport wrapper that flips one bit of the k-th frame it sends."""

    def __init__(self, inner, k: int) -> None:
        self.inner, self.k, self.count = inner, k, 0

    def send(self, frame: bytes) -> None:
        if self.count == self.k:
            frame = bytearray(frame)
            frame[-20] ^= 0x10  # a payload byte (the last 16 bytes are the tag)
            frame = bytes(frame)
        self.count += 1
        self.inner.send(frame)

    def recv(self) -> bytes:
        return self.inner.recv()

    def close(self) -> None:
        self.inner.close()


def _pair(tamper_at: int | None = None):
    a, b = memory_pair(timeout_s=5)
    if tamper_at is not None:
        a = _Tamper(a, tamper_at)
    return channel_pair((a, b), np.random.default_rng(1).bytes(4096))


def test_channel_roundtrip_counts_ledger() -> None:
    alice, bob = _pair()
    alice.send(Message("m", {"x": np.arange(5), "s": "hi"}, disclosed_bits=5, category="ec"))
    got = bob.recv("m")
    assert got["x"].tolist() == [0, 1, 2, 3, 4] and got["s"] == "hi"
    bob.send(Message("r"))
    alice.recv("r")
    for end in (alice, bob):
        assert end.ledger.messages == 2
        assert end.ledger.disclosed("ec") == 5
        assert end.ledger.auth_key_bits == 2 * 128
    assert alice.ledger.round_trips == 1


def test_tampered_message_is_detected() -> None:
    alice, bob = _pair(tamper_at=1)
    alice.send(Message("m", {"x": np.arange(100)}))
    bob.recv("m")
    alice.send(Message("m", {"x": np.arange(100)}))
    with pytest.raises(AuthenticationError):
        bob.recv("m")


def test_tampered_deferred_transcript_is_detected() -> None:
    """Messages sent untagged under deferred authentication are caught at settle()."""
    import threading

    alice, bob = _pair(tamper_at=1)
    alice.defer()
    bob.defer()
    alice.send(Message("a", {"x": np.arange(10)}))
    alice.send(Message("b", {"x": np.arange(10)}))  # tampered on the wire, untagged
    bob.recv("a")
    bob.recv("b")
    errors: list[BaseException] = []

    def _alice() -> None:
        try:
            alice.settle()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=_alice)
    thread.start()
    with pytest.raises(AuthenticationError):
        bob.settle()
    thread.join()


def test_replayed_message_is_rejected() -> None:
    a, b = memory_pair(timeout_s=5)
    alice, bob = channel_pair((a, b), np.random.default_rng(1).bytes(4096))
    frames: list[bytes] = []
    orig = a.send
    a.send = lambda f: (frames.append(f), orig(f))  # type: ignore[method-assign]
    alice.send(Message("m"))
    bob.recv("m")
    orig(frames[0])  # replay the first frame
    with pytest.raises(AuthenticationError):
        bob.recv("m")
