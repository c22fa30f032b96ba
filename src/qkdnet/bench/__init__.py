"""Benchmarks run by ``qkdnet bench``: each figure is printed beside a baseline measured in the
same run and their ratio, so that results compare across machines.

Each area adds one module here (``qkdnet.bench.<area>``) with a function
``run(quick: bool) -> list[Figure]`` and lists it in :data:`AREAS`.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass

AREAS: tuple[str, ...] = ("simulate", "postprocess", "kms", "apps", "network", "sweep")


@dataclass(frozen=True)
class Figure:
    """One measured figure and the baseline it is compared with (``ratio = value / baseline``)."""

    area: str
    name: str
    value: float
    unit: str
    baseline_name: str
    baseline_value: float
    goal: str = ""

    @property
    def ratio(self) -> float:
        """How many times the baseline the figure is (inf when the baseline is zero)."""
        return self.value / self.baseline_value if self.baseline_value else float("inf")

    def as_dict(self) -> dict[str, object]:
        """Plain dict for ``--json`` output, ratio included."""
        return {**asdict(self), "ratio": self.ratio}


def run_area(area: str, quick: bool) -> list[Figure]:
    """Import ``qkdnet.bench.<area>`` and run its benchmarks."""
    if area not in AREAS:
        raise KeyError(f"unknown benchmark area {area!r}; choose one of: {', '.join(AREAS)}")
    module = importlib.import_module(f"qkdnet.bench.{area}")
    return list(module.run(quick=quick))
