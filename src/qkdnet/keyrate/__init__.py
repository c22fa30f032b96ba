"""Closed-form secret-key-rate models sharing the physics of :mod:`qkdnet.physics`."""

from qkdnet.keyrate.entropy import binary_entropy, h
from qkdnet.keyrate.finite import DecoyCounts, FiniteKeyBound, lim2014_key_length

__all__ = ["DecoyCounts", "FiniteKeyBound", "binary_entropy", "h", "lim2014_key_length"]
