"""Physical models of a QKD link: sources, fibre, detectors and named hardware presets."""

from qkdnet.physics.detector import Detector
from qkdnet.physics.fibre import Fibre, default_attenuation_db_per_km
from qkdnet.physics.hardware import PRESETS, HardwarePreset, get_preset, preset_names
from qkdnet.physics.source import EntangledPairSource, SinglePhotonSource, WeakCoherentSource

__all__ = [
    "PRESETS",
    "Detector",
    "EntangledPairSource",
    "Fibre",
    "HardwarePreset",
    "SinglePhotonSource",
    "WeakCoherentSource",
    "default_attenuation_db_per_km",
    "get_preset",
    "preset_names",
]
