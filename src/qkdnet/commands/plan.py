"""``qkdnet plan [SCENARIO]``: link key rates, site-pair capacities, bottlenecks, candidates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from qkdnet.commands.output import emit_json, fail
from qkdnet.network.scenario import ScenarioError, load_scenario
from qkdnet.physics.hardware import PRESETS, preset_names


def plan_command(
    scenario: Annotated[
        str | None, typer.Argument(help="Scenario YAML file or built-in name (default: milan).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write the map and capacity matrix (PNG).")
    ] = None,
    candidates: Annotated[
        int, typer.Option("--candidates", help="Candidate links to evaluate (closest pairs).")
    ] = 5,
    candidate_hardware: Annotated[
        str, typer.Option("--candidate-hardware", help="Hardware preset of candidate links.")
    ] = "decoy-1550-spad",
    seed: Annotated[int, typer.Option("--seed", help="Unused: the plan is deterministic.")] = 1,
) -> None:
    """Plan a network: per-link finite-size key rates, end-to-end capacity for every site pair
    (max-flow through trusted nodes), bottleneck links and the gain of candidate links."""
    from qkdnet.network.planner import plan

    if candidates < 0:
        fail("--candidates", f"must be >= 0 (got {candidates})")
    if candidate_hardware not in PRESETS:
        fail("--candidate-hardware", f"unknown preset; choose one of: {', '.join(preset_names())}")
    if PRESETS[candidate_hardware].source.kind != "laser":
        fail("--candidate-hardware", "candidate links run decoy BB84: choose a laser preset")
    if plot is not None and plot.suffix.lower() != ".png":
        fail("--plot", f"must be a .png file (got {plot})")
    try:
        sc = load_scenario(scenario)
    except ScenarioError as exc:
        fail("SCENARIO", str(exc))
    result = plan(sc, candidates=candidates, candidate_hardware=candidate_hardware)
    if plot is not None:
        from qkdnet.network.plots import save_plan_plot

        save_plan_plot(result, plot)
    if json_out:
        payload = result.as_dict()
        payload["seed"] = seed
        payload["plot"] = str(plot) if plot else None
        emit_json(payload)
        return
    console = Console()
    links = Table(title=f"{sc.name}: links ({len(sc.links)})")
    for col in ("link", "km", "loss dB", "protocol", "hardware", "QBER", "key rate", "model"):
        links.add_column(col)
    for lr in result.links:
        lk = lr.link
        links.add_row(
            lk.id,
            f"{lk.length_km:.2f}",
            f"{lk.loss_db:.2f}",
            lk.protocol,
            lk.hardware,
            f"{lr.qber:.4f}",
            f"{lr.key_rate_bps:,.0f} b/s",
            lr.model + (f" N={lk.block_size:.0e}" if lr.finite_size else " (asymptotic)"),
        )
    console.print(links)
    pairs = Table(title="site pairs needing relays: capacity (max-flow through trusted nodes)")
    for col in ("a", "b", "capacity", "route", "bottleneck links"):
        pairs.add_column(col)
    for p in result.pairs:
        if len(p.route) > 2 or not p.route:
            pairs.add_row(
                p.a,
                p.b,
                f"{p.capacity_bps:,.0f} b/s",
                " > ".join(p.route),
                ", ".join(p.bottleneck_links),
            )
    console.print(pairs)
    console.print(
        "bottleneck links (pairs whose min cut contains them): "
        + ", ".join(f"{i} ({n})" for i, n in result.bottlenecks[:8])
    )
    if result.candidates:
        cand = Table(title="candidate links (closest unlinked pairs)")
        for col in ("a", "b", "km", "rate", "total gain", "pairs improved"):
            cand.add_column(col)
        for c in result.candidates:
            cand.add_row(
                c.a,
                c.b,
                f"{c.length_km:.2f}",
                f"{c.key_rate_bps:,.0f} b/s",
                f"{c.total_gain_bps:,.0f} b/s",
                str(c.pairs_improved),
            )
        console.print(cand)
    if plot is not None:
        console.print(f"plot written to {plot}")


def register(app: typer.Typer) -> None:
    """Attach ``plan`` to the ``qkdnet`` app."""
    app.command("plan")(plan_command)
