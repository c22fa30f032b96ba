"""Closed-form secret-key-rate models sharing the physics of :mod:`qkdnet.physics`.

>>> from qkdnet.keyrate import key_rate
>>> key_rate("decoy-bb84", 25.0).key_rate_per_pulse > key_rate("decoy-bb84", 50.0).key_rate_per_pulse
True
"""

from qkdnet.keyrate.bounds import plob_bound, tgw_bound
from qkdnet.keyrate.entropy import binary_entropy, h
from qkdnet.keyrate.finite import (
    DecoyCounts,
    FiniteKeyBound,
    FiniteRate,
    finite_key_rate,
    lim2014_key_length,
)
from qkdnet.keyrate.rate import DEFAULT_PRESETS, PROTOCOLS, key_rate, resolve_preset
from qkdnet.keyrate.result import KeyRateResult

__all__ = [
    "DEFAULT_PRESETS",
    "PROTOCOLS",
    "DecoyCounts",
    "FiniteKeyBound",
    "FiniteRate",
    "KeyRateResult",
    "binary_entropy",
    "finite_key_rate",
    "h",
    "key_rate",
    "lim2014_key_length",
    "plob_bound",
    "resolve_preset",
    "tgw_bound",
]
