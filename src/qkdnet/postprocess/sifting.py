"""Sifting: keep the detections where Alice and Bob used the same basis, sorted by intensity.

Bob's record already lists only the slots in which a detector clicked (Bob announced them); a
double click was mapped to a uniformly random bit by the squashing map
(:class:`qkdnet.simulate.records.BobRecords`), so it is kept like any other click. Bob announces
his bases and a digest of the clicked slots; Alice checks the digest, announces her bases and
intensity classes, and both keep the slots with matching bases: X (basis 0) makes the key, Z
(basis 1) is disclosed for the phase-error estimate (Lim et al. 2014).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from qkdnet.postprocess.channel import Message
from qkdnet.simulate.records import AliceRecords, BobRecords


@dataclass(frozen=True)
class Sifted:
    """One party's sifted bits: X (key) and Z (test) bits with their intensity classes."""

    x_bits: np.ndarray
    x_class: np.ndarray
    z_bits: np.ndarray
    z_class: np.ndarray
    detections: int

    @property
    def sifted_bits(self) -> int:
        """Detections kept in either basis."""
        return int(self.x_bits.size + self.z_bits.size)


def _digest(pulse_index: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pulse_index, dtype="<i8").tobytes()).hexdigest()


def bob_announcement(bob: BobRecords) -> Message:
    """Bob's bases (packed) and a digest of his clicked slots."""
    return Message(
        "sift_bob",
        {
            "n": len(bob),
            "slots": _digest(bob.pulse_index),
            "bases": np.packbits(bob.basis),
            "double_clicks": int(np.count_nonzero(bob.double_click)),
        },
        category="sifting",
    )


def _split(bits, basis_a, basis_b, classes) -> Sifted:
    x = (basis_a == 0) & (basis_b == 0)
    z = (basis_a == 1) & (basis_b == 1)
    return Sifted(bits[x], classes[x], bits[z], classes[z], int(bits.size))


def alice_sift(alice: AliceRecords, announcement: Message) -> tuple[Sifted, Message]:
    """Alice checks Bob's slots, sifts, and answers with her bases and intensity classes."""
    n = int(announcement["n"])
    if n != len(alice) or announcement["slots"] != _digest(alice.pulse_index):
        raise ValueError("Bob's clicked slots differ from Alice's record of them")
    bob_basis = np.unpackbits(announcement["bases"], count=n)
    sifted = _split(alice.bit, alice.basis, bob_basis, alice.intensity.astype(np.uint8))
    reply = Message(
        "sift_alice",
        {"bases": np.packbits(alice.basis), "classes": alice.intensity.astype(np.uint8)},
        category="sifting",
    )
    return sifted, reply


def bob_sift(bob: BobRecords, reply: Message) -> Sifted:
    """Bob sifts with Alice's announced bases and classes."""
    n = len(bob)
    alice_basis = np.unpackbits(reply["bases"], count=n)
    classes = np.asarray(reply["classes"], dtype=np.uint8)
    if classes.size != n:
        raise ValueError("Alice's intensity classes do not match Bob's detections")
    return _split(bob.bit, alice_basis, bob.basis, classes)
