"""``qkdnet simulate``: event-level simulation of one link, summarised as gains and QBER."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from qkdnet.commands.output import emit_json, fail
from qkdnet.physics import preset_names
from qkdnet.physics.validation import PhysicsValueError
from qkdnet.simulate import ATTACKS, DEFAULT_BLOCK_PULSES, PROTOCOLS, resolve_preset, run
from qkdnet.simulate.channel import ENCODINGS
from qkdnet.simulate.statistics import LinkStatistics

PLOT_WINDOWS = 50  # QBER points on the --plot figure


def parse_count(flag: str, text: str) -> int:
    """A positive whole count written as ``1000000``, ``1e6`` or ``1_000_000``."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        fail(flag, f"must be a positive whole number such as 1000000 or 1e6 (got {text!r})")
    if not math.isfinite(value) or value < 1 or value != int(value) or value > 2**62:
        fail(flag, f"must be a positive whole number such as 1000000 or 1e6 (got {text!r})")
    return int(value)


def simulate(
    protocol: Annotated[str, typer.Option("--protocol", help=f"One of {', '.join(PROTOCOLS)}.")],
    distance: Annotated[float, typer.Option("--distance", help="Fibre length in km.")],
    pulses: Annotated[str, typer.Option("--pulses", help="Emitted pulses, e.g. 1e9.")],
    attack: Annotated[
        str | None,
        typer.Option("--attack", help=f"{', '.join(ATTACKS)}; intercept-resend:F for a fraction."),
    ] = None,
    hardware: Annotated[
        str | None, typer.Option("--hardware", help=f"Preset: {', '.join(preset_names())}.")
    ] = None,
    basis_prob_x: Annotated[
        float | None, typer.Option("--basis-prob-x", help="Probability of the key basis X.")
    ] = None,
    drift: Annotated[
        float, typer.Option("--drift", help="Polarisation drift rate in rad/sqrt(s).")
    ] = 0.0,
    compensation: Annotated[
        float, typer.Option("--compensation", help="Share of pulses spent as reference states.")
    ] = 0.0,
    encoding: Annotated[
        str, typer.Option("--encoding", help="polarisation or time-bin.")
    ] = "polarisation",
    visibility: Annotated[
        float, typer.Option("--visibility", help="Time-bin interferometer visibility.")
    ] = 1.0,
    source_position: Annotated[
        str, typer.Option("--source-position", help="bbm92: pair source at 'middle' or 'alice'.")
    ] = "middle",
    ideal_timing: Annotated[
        bool, typer.Option("--ideal-timing", help="No dead time or afterpulses.")
    ] = False,
    block_pulses: Annotated[
        str, typer.Option("--block-pulses", help="Pulses per streamed block.")
    ] = str(DEFAULT_BLOCK_PULSES),
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Write QBER over device time (.png/.pdf/.svg)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulation.")] = 1,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Simulate a link event by event and print detections, sifted bits, QBER and speed."""
    n_pulses = parse_count("--pulses", pulses)
    n_block = parse_count("--block-pulses", block_pulses)
    if protocol not in PROTOCOLS:
        fail("--protocol", f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if not math.isfinite(distance) or distance < 0:
        fail("--distance", f"must be a finite number of km >= 0 (got {distance})")
    if attack is not None and attack.partition(":")[0] not in ATTACKS:
        fail("--attack", f"unknown attack {attack!r}; choose one of {', '.join(ATTACKS)}")
    if hardware is not None and hardware not in preset_names():
        fail(
            "--hardware", f"unknown preset {hardware!r}; choose one of {', '.join(preset_names())}"
        )
    if source_position not in ("middle", "alice"):
        fail("--source-position", f"must be 'middle' or 'alice' (got {source_position!r})")
    if encoding not in ENCODINGS:
        fail("--encoding", f"unknown encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}")
    for flag, value, high in (("--drift", drift, math.inf), ("--compensation", compensation, 0.5),
                              ("--visibility", visibility, 1.0)):  # fmt: skip
        if not (math.isfinite(value) and 0.0 <= value <= high):
            fail(flag, f"must be a number between 0 and {high} (got {value})")
    if plot is not None:
        from qkdnet.plots.canvas import check_plot_path

        try:
            check_plot_path(plot)
        except ValueError as exc:
            fail("--plot", str(exc))
    try:
        preset = resolve_preset(protocol, hardware)
    except ValueError as exc:
        fail("--hardware", str(exc))
    windows = None
    if plot is not None:
        from qkdnet.plots.qber import QberWindows

        windows = QberWindows(n_pulses, max(1, n_pulses // PLOT_WINDOWS), preset.source.rate_hz)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    try:
        blocks = run(
            protocol, distance, n_pulses, rng, preset=preset, attack=attack,
            block_pulses=n_block, basis_prob_x=basis_prob_x, encoding=encoding,
            drift_rad_per_sqrt_s=drift, compensation_fraction=compensation,
            visibility=visibility, dead_time=not ideal_timing, afterpulses=not ideal_timing,
            source_position=source_position,
        )  # fmt: skip
        if windows is not None:
            blocks = windows.passing(blocks)
        stats = LinkStatistics.of(blocks, n_classes=3 if protocol == "decoy-bb84" else 1)
    except (ValueError, PhysicsValueError) as exc:
        fail("simulate", str(exc))
    wall = time.perf_counter() - start
    payload = {
        "protocol": protocol,
        "distance_km": distance,
        "hardware": preset.name,
        "attack": attack,
        "seed": seed,
        "pulses": stats.pulses,
        "detections": stats.detections,
        "sifted_bits": stats.sifted_bits,
        "qber": stats.qber(0),
        "qber_z": stats.qber(1),
        "wall_s": wall,
        "pulses_per_s": stats.pulses / wall if wall > 0 else None,
        "detections_per_s": stats.detections / wall if wall > 0 else None,
        "device_time_s": stats.device_time_s,
        "pulses_per_class": stats.pulses_per_class,
        "gain_per_class": stats.gains(),
        "qber_per_class": stats.qber_per_class(None),
        "eve_information": stats.eve_information(),
        "diagnostics": stats.diagnostics,
    }
    if windows is not None and plot is not None:
        from qkdnet.plots import save_figure
        from qkdnet.plots.qber import qber_time_figure

        label = "compensated" if compensation > 0 else ("drifting" if drift > 0 else "QBER")
        what = [f"{protocol}, {distance:g} km"]
        if drift > 0:
            what.append(f"drift {drift:g} rad/√s")
        if compensation > 0:
            what.append(f"compensation {compensation:g}")
        if attack:
            what.append(f"attack {attack}")
        fig = qber_time_figure([windows.series(label)], title=", ".join(what))
        payload["plot"] = str(save_figure(fig, plot))
    if json_out:
        emit_json(payload)
        return
    for name, value in payload.items():
        typer.echo(f"{name:>18}: {value}")


def register(app: typer.Typer) -> None:
    """Attach ``simulate`` to the ``qkdnet`` app."""
    app.command("simulate")(simulate)
