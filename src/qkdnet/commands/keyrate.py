"""``qkdnet keyrate``: closed-form secret key rate of one link, as a table, JSON or a plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from qkdnet.commands.output import emit_json, fail
from qkdnet.keyrate import PROTOCOLS, KeyRateResult, key_rate
from qkdnet.physics import preset_names
from qkdnet.physics.validation import PhysicsValueError

# Field named in a model's range error -> the flag that set it.
_FIELD_FLAGS = {
    "length_km": "--distance",
    "efficiency": "--efficiency",
    "dark_count_prob": "--dark-count-prob",
    "optical_error": "--optical-error",
    "attenuation_db_per_km": "--attenuation",
    "extra_loss_db": "--extra-loss",
    "block_size": "--block-size",
    "eps_sec": "--eps-sec",
    "eps_cor": "--eps-cor",
    "preset": "--hardware",
    "mu": "--mu",
    "nu": "--nu",
}


def _check_inputs(
    protocols: list[str],
    distance: float,
    hardware: str | None,
    block_size: float | None,
    mu: float | None,
    nu: float | None,
    efficiency: float | None,
    plot: Path | None,
    plot_max_km: float,
) -> None:
    """Reject bad flags before any model runs, naming the flag and the allowed range."""
    for p in protocols:
        if p not in PROTOCOLS:
            fail("--protocol", f"unknown protocol {p!r}; choose one of {', '.join(PROTOCOLS)}")
    if not (math.isfinite(distance) and distance >= 0.0):
        fail("--distance", f"must be a finite number of km >= 0 (got {distance})")
    if hardware is not None and hardware not in preset_names():
        fail(
            "--hardware", f"unknown preset {hardware!r}; choose one of {', '.join(preset_names())}"
        )
    if block_size is not None and not (math.isfinite(block_size) and block_size > 0):
        fail("--block-size", f"must be a number of pulses > 0 (got {block_size:g})")
    if mu is not None and not (math.isfinite(mu) and 0.0 < mu <= 2.0):
        fail("--mu", f"signal intensity must be in (0, 2] photons per pulse (got {mu})")
    if nu is not None and not (math.isfinite(nu) and 0.0 < nu < (mu if mu is not None else 2.0)):
        fail("--nu", f"decoy intensity must be > 0 and below --mu (got {nu})")
    if efficiency is not None and not (0.0 <= efficiency <= 1.0):
        fail("--efficiency", f"detector efficiency must be between 0 and 1 (got {efficiency})")
    if plot is not None:
        if not plot.parent.exists():
            fail("--plot", f"directory {str(plot.parent)!r} does not exist")
        if plot.suffix.lower() not in (".png", ".pdf", ".svg"):
            fail("--plot", f"file must end in .png, .pdf or .svg (got {plot.name!r})")
    if not (math.isfinite(plot_max_km) and plot_max_km > 0):
        fail("--plot-max-km", f"must be a number of km > 0 (got {plot_max_km})")


def _run(protocol: str, distance: float, kwargs: dict[str, Any]) -> KeyRateResult:
    try:
        return key_rate(protocol, distance, **kwargs)
    except PhysicsValueError as exc:
        flag = _FIELD_FLAGS.get(exc.field, exc.field)
        message = str(exc).removeprefix(exc.field).strip()
        fail(flag, message)
    except KeyError as exc:
        fail("--hardware", str(exc.args[0]) if exc.args else "unknown preset")
    except ValueError as exc:
        fail("--protocol", str(exc))


def _settings(p: dict[str, Any]) -> str:
    if "intensities" in p:
        mus = ", ".join(f"{m:.3g}" for m in p["intensities"])
        return f"mu=({mus}) q_x={p['q_x']:.3g}"
    if "mu" in p:
        return f"mu={p['mu']:.3g} nu={p['nu']:.3g}"
    if "g2_zero" in p:
        return f"B={p['brightness']:.3g} g2(0)={p['g2_zero']:.3g}"
    if "visibility" in p:
        return f"V={p['visibility']:.3g} pairs={p['pair_prob']:.3g} ({p['source_position']})"
    return ""


def _table(results: list[KeyRateResult]) -> Table:
    """One column per protocol, one row per quantity (fits a narrow terminal)."""
    table = Table(title="qkdnet keyrate")
    table.add_column("")
    for r in results:
        table.add_column(r.protocol, justify="right")
    rows: list[tuple[str, Any]] = [
        ("hardware", lambda r: str(r.params["preset"])),
        ("model", lambda r: str(r.params["model"])),
        ("distance", lambda r: f"{r.distance_km:g} km"),
        ("transmittance", lambda r: f"{r.transmittance:.4g}"),
        ("QBER", lambda r: f"{100 * r.qber:.2f} %"),
        ("key rate / pulse", lambda r: f"{r.key_rate_per_pulse:.4g}"),
        ("key rate", lambda r: f"{r.key_rate_bps:.4g} bit/s"),
        ("PLOB bound / pulse", lambda r: f"{r.plob_per_pulse:.4g}"),
        ("settings", lambda r: _settings(r.params)),
    ]
    if any(r.params.get("block_size") for r in results):
        rows.insert(2, ("block size", lambda r: f"{r.params['block_size'] or 0:.3g} pulses"))
        rows.append(("no key because", lambda r: str(r.params.get("reason", "")) or "-"))
    for name, cell in rows:
        table.add_row(name, *(cell(r) for r in results))
    return table


def _plot(
    protocols: list[str], kwargs: dict[str, Any], path: Path, max_km: float, finite: bool
) -> None:
    from qkdnet.keyrate.plot import key_rate_figure, rate_curve

    distances = [max_km * i / (20 if finite else 40) for i in range((20 if finite else 40) + 1)]
    curves, attenuations = {}, []
    for protocol in protocols:
        rates, attenuation = rate_curve(protocol, distances, **kwargs)
        if finite:
            asymptotic, _ = rate_curve(protocol, distances, **(kwargs | {"block_size": None}))
            curves[f"{protocol} (asymptotic)"] = asymptotic
            curves[f"{protocol} (N = {kwargs['block_size']:.2g} pulses)"] = rates
        else:
            curves[protocol] = rates
        attenuations.append(attenuation)
    fig = key_rate_figure(distances, curves, attenuations)
    fig.savefig(path, dpi=120)


def keyrate(
    protocol: Annotated[
        list[str],
        typer.Option("--protocol", help=f"One of {', '.join(PROTOCOLS)}; repeat to compare."),
    ],
    distance: Annotated[float, typer.Option("--distance", help="Fibre length in km (>= 0).")],
    hardware: Annotated[
        str | None,
        typer.Option("--hardware", help="Hardware preset (default: the protocol's own)."),
    ] = None,
    block_size: Annotated[
        float | None,
        typer.Option("--block-size", help="Pulses sent N: finite-size key (decoy-bb84)."),
    ] = None,
    mu: Annotated[float | None, typer.Option("--mu", help="Fix the signal intensity.")] = None,
    nu: Annotated[float | None, typer.Option("--nu", help="Fix the weak decoy intensity.")] = None,
    decoy_method: Annotated[
        str, typer.Option("--decoy-method", help="vacuum-weak (default) or infinite.")
    ] = "vacuum-weak",
    efficiency: Annotated[
        float | None, typer.Option("--efficiency", help="Override detector efficiency (0..1).")
    ] = None,
    dark_count_prob: Annotated[
        float | None,
        typer.Option("--dark-count-prob", help="Override dark-count probability per gate."),
    ] = None,
    optical_error: Annotated[
        float | None, typer.Option("--optical-error", help="Override misalignment error.")
    ] = None,
    attenuation: Annotated[
        float | None, typer.Option("--attenuation", help="Fibre loss in dB/km (default: preset).")
    ] = None,
    extra_loss: Annotated[
        float, typer.Option("--extra-loss", help="Extra fixed loss in dB (connectors).")
    ] = 0.0,
    eps_sec: Annotated[float, typer.Option("--eps-sec", help="Secrecy parameter.")] = 1e-10,
    eps_cor: Annotated[float, typer.Option("--eps-cor", help="Correctness parameter.")] = 1e-15,
    source_position: Annotated[
        str, typer.Option("--source-position", help="bbm92 pair source: middle or alice.")
    ] = "middle",
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write key rate vs distance to this PNG.")
    ] = None,
    plot_max_km: Annotated[
        float, typer.Option("--plot-max-km", help="Largest distance on the plot.")
    ] = 200.0,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the global optimiser.")] = 0,
) -> None:
    """Secret key rate of a QKD link from closed-form models, beside the PLOB bound."""
    _check_inputs(protocol, distance, hardware, block_size, mu, nu, efficiency, plot, plot_max_km)
    if decoy_method not in ("vacuum-weak", "infinite"):
        fail("--decoy-method", f"choose vacuum-weak or infinite (got {decoy_method!r})")
    if source_position not in ("middle", "alice"):
        fail("--source-position", f"choose middle or alice (got {source_position!r})")
    kwargs: dict[str, Any] = {
        "preset": hardware,
        "block_size": block_size,
        "eps_sec": eps_sec,
        "eps_cor": eps_cor,
        "extra_loss_db": extra_loss,
        "attenuation_db_per_km": attenuation,
        "mu": mu,
        "nu": nu,
        "decoy_method": decoy_method,
        "source_position": source_position,
        "detector_efficiency": efficiency,
        "dark_count_prob": dark_count_prob,
        "optical_error": optical_error,
        "seed": seed,
    }
    results = [_run(p, distance, kwargs) for p in protocol]
    if plot is not None:
        _plot(protocol, kwargs, plot, plot_max_km, block_size is not None)
    if json_out:
        payload = results[0].as_dict()
        payload["seed"] = seed
        payload["results"] = [r.as_dict() for r in results]
        if plot is not None:
            payload["plot"] = str(plot)
        emit_json(payload)
        return
    console = Console()
    console.print(_table(results))
    if plot is not None:
        console.print(f"plot written to {plot}")


def register(app: typer.Typer) -> None:
    """Attach ``keyrate`` to the ``qkdnet`` app."""
    app.command("keyrate")(keyrate)
