"""Range checks shared by the physical models; each error names the field and the allowed range."""

from __future__ import annotations

import math


class PhysicsValueError(ValueError):
    """A physical parameter outside its allowed range. ``field`` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}")
        self.field = field


def check_probability(field: str, value: float) -> None:
    """Require ``0 <= value <= 1`` (efficiencies, probabilities, visibilities)."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0):
        raise PhysicsValueError(field, f"must be between 0 and 1 (got {value!r})")


def check_non_negative(field: str, value: float) -> None:
    """Require a finite ``value >= 0`` (lengths, losses, times, intensities)."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0.0):
        raise PhysicsValueError(field, f"must be a finite number >= 0 (got {value!r})")


def check_positive(field: str, value: float) -> None:
    """Require a finite ``value > 0`` (rates, wavelengths)."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0.0):
        raise PhysicsValueError(field, f"must be a finite number > 0 (got {value!r})")
