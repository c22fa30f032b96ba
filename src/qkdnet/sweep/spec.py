"""The study file of ``qkdnet sweep``: which function to run over which parameter values.

A study is a YAML mapping::

    target: keyrate            # what runs per point (see qkdnet.sweep.targets.TARGETS)
    mode: grid                 # grid: every combination; random: `samples` random points
    samples: 200               # random mode only
    seed: 1                    # random points and per-task generators derive from it
    parameters:
      protocol: [decoy-bb84, bbm92]                 # a list: these values
      distance_km: {start: 0, stop: 100, num: 11}   # a range: num points (grid) / uniform (random)
      block_size: {start: 1e8, stop: 1e12, num: 5, log: true}   # log-spaced / log-uniform
      preset: decoy-1550-spad                       # a scalar: fixed
    plot: {x: distance_km, y: key_rate_per_pulse}   # optional; groups by the other varying
                                                    # parameters; PLOB drawn for key rates per pulse

Each point is a :class:`Task` whose ``key`` hashes the target and its parameters, so a rerun of
the same study recognises the tasks it already finished (``qkdnet.sweep.journal``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

Scalar = bool | int | float | str | None

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)$")


def _number(value: Scalar) -> Scalar:
    """YAML 1.1 reads ``1e8`` as a string; take such exponent notations as numbers."""
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        number = float(value)
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    return value


class SweepSpecError(ValueError):
    """A study file that cannot run; the message names the file, the field and what is allowed."""


class Range(BaseModel):
    """``num`` points from ``start`` to ``stop`` (grid), or uniform in [start, stop] (random)."""

    model_config = ConfigDict(extra="forbid")

    start: float
    stop: float
    num: int | None = Field(default=None, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> Range:
        if not (math.isfinite(self.start) and math.isfinite(self.stop)):
            raise ValueError("start and stop must be finite numbers")
        if self.log and (self.start <= 0 or self.stop <= 0):
            raise ValueError(
                f"log ranges need start > 0 and stop > 0 (got {self.start}, {self.stop})"
            )
        return self

    def grid(self) -> list[float]:
        """The ``num`` grid values (linear or logarithmic spacing)."""
        if self.num is None:
            raise ValueError("a range in grid mode needs num (how many points)")
        space = np.geomspace if self.log else np.linspace
        return [float(v) for v in space(self.start, self.stop, self.num)]

    def draw(self, rng: np.random.Generator) -> float:
        """One value uniform (or log-uniform) in [start, stop]."""
        if self.log:
            return float(np.exp(rng.uniform(np.log(self.start), np.log(self.stop))))
        return float(rng.uniform(self.start, self.stop))


class PlotSpec(BaseModel):
    """Which result column to plot against which parameter; other varying parameters group."""

    model_config = ConfigDict(extra="forbid")

    x: str
    y: str
    group: list[str] | None = None
    logx: bool = False
    logy: bool | None = None  # None: log when the positive values span more than two decades
    bound: str | None = None  # a result column drawn dashed as an upper bound (plob_per_pulse)


class SweepSpec(BaseModel):
    """A parameter study, validated (see the module docstring for the file format)."""

    model_config = ConfigDict(extra="forbid")

    target: str
    mode: Literal["grid", "random"] = "grid"
    samples: int | None = Field(default=None, ge=1)
    seed: int = 1
    parameters: dict[str, Range | list[Scalar] | Scalar]
    plot: PlotSpec | None = None

    @field_validator("parameters", mode="before")
    @classmethod
    def _numbers(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        parsed: dict[str, Any] = {}
        for name, item in value.items():
            if isinstance(item, dict):
                try:
                    parsed[name] = Range.model_validate(item)
                except ValidationError as exc:
                    problems = "; ".join(
                        f"{'.'.join(map(str, e['loc'])) or 'range'}: {e['msg']}"
                        for e in exc.errors()
                    )
                    raise ValueError(
                        f"parameters.{name} is a range {{start, stop, num, log}}: {problems}"
                    ) from None
            elif isinstance(item, list):
                parsed[name] = [_number(v) for v in item]
            else:
                parsed[name] = _number(item)
        return parsed

    @model_validator(mode="after")
    def _check(self) -> SweepSpec:
        if not self.parameters:
            raise ValueError("parameters must name at least one parameter")
        if self.mode == "random" and self.samples is None:
            raise ValueError("mode 'random' needs samples (how many random points)")
        if self.mode == "grid" and self.samples is not None:
            raise ValueError("samples is for mode 'random'; a grid runs every combination")
        for name, value in self.parameters.items():
            if isinstance(value, list) and not value:
                raise ValueError(f"parameters.{name} is an empty list; give at least one value")
            if self.mode == "grid" and isinstance(value, Range) and value.num is None:
                raise ValueError(f"parameters.{name}: a range in grid mode needs num")
        return self

    @property
    def varying(self) -> list[str]:
        """Parameters that take more than one value in this study."""
        return [
            name
            for name, value in self.parameters.items()
            if isinstance(value, Range) or (isinstance(value, list) and len(value) > 1)
        ]


@dataclass(frozen=True)
class Task:
    """One point of a study: its position, its stable key and its parameters."""

    index: int
    key: str
    params: dict[str, Scalar]


def task_key(target: str, params: dict[str, Scalar]) -> str:
    """Stable 16-hex-digit key of one point: same target and parameters, same key."""
    blob = json.dumps({"target": target, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _values(value: Range | list[Scalar] | Scalar) -> list[Scalar]:
    if isinstance(value, Range):
        return list(value.grid())
    if isinstance(value, list):
        return list(value)
    return [value]


def expand(spec: SweepSpec) -> list[Task]:
    """Every task of the study, in a fixed order (grid: row-major over ``parameters``)."""
    names = list(spec.parameters)
    points: list[dict[str, Scalar]] = []
    if spec.mode == "grid":
        for combo in itertools.product(*(_values(spec.parameters[n]) for n in names)):
            points.append(dict(zip(names, combo, strict=True)))
    else:
        rng = np.random.default_rng(spec.seed)
        for _ in range(spec.samples or 0):
            point: dict[str, Scalar] = {}
            for name in names:
                value = spec.parameters[name]
                if isinstance(value, Range):
                    point[name] = value.draw(rng)
                elif isinstance(value, list):
                    point[name] = value[int(rng.integers(len(value)))]
                else:
                    point[name] = value
            points.append(point)
    return [Task(i, task_key(spec.target, p), p) for i, p in enumerate(points)]


def _format_error(path: Path | str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        message = str(err["msg"]).removeprefix("Value error, ")
        parts.append(message if message.startswith("parameters.") else f"{where}: {message}")
    return f"{path}: " + "; ".join(parts)


def parse_spec(data: Any, source: Path | str = "<spec>") -> SweepSpec:
    """Validate a study given as a mapping; errors name ``source`` and the field path."""
    if not isinstance(data, dict):
        raise SweepSpecError(
            f"{source}: a study file must be a YAML mapping (got {type(data).__name__})"
        )
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SweepSpecError(_format_error(source, exc)) from None
    from qkdnet.sweep.targets import check_parameters  # late: targets import heavy modules lazily

    try:
        check_parameters(spec.target, list(spec.parameters))
    except ValueError as exc:
        raise SweepSpecError(f"{source}: {exc}") from None
    if spec.plot is not None:
        if spec.plot.x not in spec.parameters:
            raise SweepSpecError(
                f"{source}: plot.x {spec.plot.x!r} is not a parameter; choose one of: "
                + ", ".join(spec.parameters)
            )
        for name in spec.plot.group or []:
            if name not in spec.parameters:
                raise SweepSpecError(f"{source}: plot.group {name!r} is not a parameter")
    return spec


def load_spec(path: Path | str) -> SweepSpec:
    """Read and validate a study file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SweepSpecError(f"{path}: cannot read the study file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SweepSpecError(f"{path}: not valid YAML ({exc})") from None
    return parse_spec(data, path)
