"""What one point of a study runs: a named function of keyword parameters returning scalars.

Targets resolve their function lazily (``qkdnet.keyrate.key_rate``, :func:`simulate_summary`
over ``qkdnet.simulate.run``, ``qkdnet.link.run``), so a study names only parameters the function really takes, checked
against its signature before anything runs. A function that takes ``rng`` gets a
``numpy.random.Generator`` (``seed`` an int) derived from the study seed and the task key, so a
point gives the same result wherever and whenever it runs.

The result (a dataclass, pydantic model or mapping) becomes one table row: its scalar fields are
kept, and so are those of a nested mapping one level down (``params.mu`` for the optimised
intensity of a key rate); anything else is dropped.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from qkdnet.keyrate.observables import observables, poisson_observables
from qkdnet.physics import WeakCoherentSource, get_preset

Scalar = bool | int | float | str | None
_INJECTED = ("rng", "seed")


def link_observables(
    distance_km: float,
    preset: str = "decoy-1550-spad",
    intensity: float | None = None,
    extra_loss_db: float = 0.0,
) -> dict[str, float]:
    """Expected channel transmittance, total efficiency η, gain and QBER of a prepare-and-measure link (no key-rate model).

    The channel model of Ma, Qi, Zhao, Lo, Phys. Rev. A 72, 012326 (2005), eqs. 2-7, via
    :mod:`qkdnet.keyrate.observables`; ``intensity`` (μ) defaults to the preset's signal level.
    """
    hw = get_preset(preset)
    channel = hw.fibre(distance_km, extra_loss_db).transmittance
    eta = channel * hw.eta_bob
    y0 = hw.background_yield
    source = hw.source
    if isinstance(source, WeakCoherentSource):
        mu = source.mu if intensity is None else float(intensity)
        obs = poisson_observables(mu, eta, y0, hw.optical_error)
    elif hasattr(source, "photon_number_probs"):
        if intensity is not None:
            raise ValueError(f"intensity applies to laser presets only ({preset} is not one)")
        obs = observables(source.photon_number_probs(), eta, y0, hw.optical_error)
    else:
        raise ValueError(
            f"preset {preset!r} has an entangled-pair source; the observables target models "
            "prepare-and-measure links only"
        )
    return {
        "transmittance": channel,
        "eta_total": eta,
        "gain": obs.gain,
        "qber": obs.qber,
        "detections_per_s": obs.gain * source.rate_hz,
    }


def simulate_summary(
    protocol: str,
    distance_km: float,
    pulses: int,
    rng: np.random.Generator,
    preset: str | None = None,
    attack: str | None = None,
    drift_rad_per_sqrt_s: float = 0.0,
    compensation_fraction: float = 0.0,
    mu: float | None = None,
    nu: float | None = None,
) -> dict[str, float | int]:
    """Run :func:`qkdnet.simulate.run` for ``pulses`` and summarise it as ``qkdnet simulate``
    does (detections, sifted bits, QBER in the key basis and the other one)."""
    from qkdnet.simulate import run
    from qkdnet.simulate.statistics import LinkStatistics

    blocks = run(
        protocol, distance_km, int(pulses), rng, preset=preset, attack=attack,
        drift_rad_per_sqrt_s=drift_rad_per_sqrt_s, compensation_fraction=compensation_fraction,
        mu=mu, nu=nu,
    )  # fmt: skip
    stats = LinkStatistics.of(blocks, n_classes=3 if protocol == "decoy-bb84" else 1)
    return {
        "pulses": stats.pulses,
        "detections": stats.detections,
        "sifted_bits": stats.sifted_bits,
        "qber": stats.qber(0),
        "qber_z": stats.qber(1),
        "device_time_s": stats.device_time_s,
    }


@dataclass(frozen=True)
class Target:
    """A named function a study can run: ``module:function`` candidates, first found wins."""

    name: str
    description: str
    candidates: tuple[tuple[str, str], ...]

    def resolve(self) -> Callable[..., Any]:
        """Import the function; a missing one raises ``ValueError`` saying what is needed."""
        for module_name, attr in self.candidates:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            func = getattr(module, attr, None)
            if callable(func):
                return func
        wanted = " or ".join(f"{m}.{a}" for m, a in self.candidates)
        raise ValueError(f"target {self.name!r} needs {wanted}, which this build does not have")


TARGETS: dict[str, Target] = {
    "observables": Target(
        "observables",
        "expected transmittance, gain and QBER of a link (physics only, fast)",
        (("qkdnet.sweep.targets", "link_observables"),),
    ),
    "keyrate": Target(
        "keyrate",
        "closed-form secret key rate (qkdnet keyrate)",
        (("qkdnet.keyrate", "key_rate"),),
    ),
    "simulate": Target(
        "simulate",
        "event-level Monte Carlo of one link, summarised as qkdnet simulate does",
        (("qkdnet.sweep.targets", "simulate_summary"),),
    ),
    "link": Target(
        "link",
        "simulation plus full post-processing (qkdnet link)",
        (("qkdnet.link", "run"), ("qkdnet.link", "run_link")),
    ),
}


def get_target(name: str) -> Target:
    """Look up a target; an unknown name raises ``ValueError`` listing the known ones."""
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(
            f"target {name!r} is unknown; choose one of: {', '.join(TARGETS)}"
        ) from None


def check_parameters(target: str, names: list[str]) -> None:
    """Require that the target's function takes every parameter in ``names`` and no required
    one is missing; the error lists what the function accepts."""
    func = get_target(target).resolve()
    sig = inspect.signature(func)
    params = sig.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = [
        n
        for n, p in params.items()
        if n not in _INJECTED
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    unknown = [n for n in names if n not in accepted and not takes_any]
    if unknown:
        raise ValueError(
            f"target {target!r} takes no parameter {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(accepted)}"
        )
    missing = [
        n
        for n, p in params.items()
        if n in accepted and p.default is inspect.Parameter.empty and n not in names
    ]
    if missing:
        raise ValueError(f"target {target!r} needs parameter(s): {', '.join(missing)}")


def _scalar(value: Any) -> Scalar | object:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) or math.isinf(value) else math.nan
    return _SKIP


_SKIP = object()


def result_row(result: Any) -> dict[str, Scalar]:
    """Scalar fields of a target's result (dataclass, pydantic model or mapping)."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    elif hasattr(result, "model_dump"):
        fields = result.model_dump()
    elif isinstance(result, dict):
        fields = dict(result)
    else:
        raise TypeError(
            f"a target must return a dataclass, model or mapping (got {type(result).__name__})"
        )
    row: dict[str, Scalar] = {}
    for name, value in fields.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, item in items:  # one nested level (e.g. KeyRateResult.params) as "params.mu"
            converted = _scalar(item)
            if converted is not _SKIP:
                row[str(name) if sub is None else f"{name}.{sub}"] = converted  # type: ignore[assignment]
    return row


def run_target(target: str, params: dict[str, Scalar], seed: int) -> dict[str, Scalar]:
    """Run one point: call the target's function with ``params`` (and ``rng``/``seed``)."""
    func = get_target(target).resolve()
    accepted = inspect.signature(func).parameters
    kwargs: dict[str, Any] = dict(params)
    if "rng" in accepted:
        kwargs["rng"] = np.random.default_rng(seed)
    elif "seed" in accepted:
        kwargs["seed"] = seed
    return result_row(func(**kwargs))
