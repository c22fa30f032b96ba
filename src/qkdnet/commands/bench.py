"""``qkdnet bench``: run the benchmarks and print each figure with its baseline and ratio."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from qkdnet.bench import AREAS, run_area
from qkdnet.commands.output import emit_json, fail


def bench(
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only these areas.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Smaller sizes, for a smoke run.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the benchmark inputs.")] = 1,
) -> None:
    """Run the benchmarks; every figure is shown with a baseline measured in the same run."""
    areas = list(only) if only else list(AREAS)
    for area in areas:
        if area not in AREAS:
            fail("--only", f"unknown area {area!r}; choose from {', '.join(AREAS) or '(none yet)'}")
    figures = [fig for area in areas for fig in run_area(area, quick=quick)]
    if json_out:
        emit_json({"seed": seed, "quick": quick, "figures": [f.as_dict() for f in figures]})
        return
    table = Table(title="qkdnet bench")
    for column in ("area", "figure", "value", "baseline", "baseline value", "ratio", "goal"):
        table.add_column(column)
    for f in figures:
        table.add_row(
            f.area,
            f.name,
            f"{f.value:.4g} {f.unit}",
            f.baseline_name,
            f"{f.baseline_value:.4g} {f.unit}",
            f"{f.ratio:.3g}x",
            f.goal,
        )
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Attach ``bench`` to the ``qkdnet`` app."""
    app.command("bench")(bench)
