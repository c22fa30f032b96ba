"""``qkdnet sweep SPEC.yaml``: a grid or random parameter study, serial or on a Dask cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from qkdnet.commands.output import emit_json, fail
from qkdnet.sweep import SweepSpecError, load_spec, run_sweep
from qkdnet.sweep.journal import check_table_path
from qkdnet.sweep.runner import RESERVED, SweepRun
from qkdnet.sweep.spec import PlotSpec, SweepSpec

PLOB = "plob_per_pulse"
SHOWN_RESULTS = 5  # result columns in the console table (the file has them all)


def _numeric(table: pd.DataFrame, column: str) -> bool:
    return pd.to_numeric(table[column], errors="coerce").notna().any()


def default_plot(spec: SweepSpec, table: pd.DataFrame) -> PlotSpec:
    """The spec's ``plot``, or: first varying numeric parameter against first numeric result."""
    if spec.plot is not None:
        return spec.plot
    varying = [p for p in spec.varying if p in table.columns]
    numeric = [p for p in varying if _numeric(table, p)]
    results = [
        c for c in table.columns if c not in {*spec.parameters, *RESERVED} and _numeric(table, c)
    ]
    if not numeric or not results:
        raise ValueError("cannot choose what to plot; add plot: {x: PARAM, y: RESULT} to the study")
    x = numeric[0]
    return PlotSpec(x=x, y=results[0], group=[p for p in varying if p != x])


def _summary(run: SweepRun) -> dict[str, Any]:
    return {
        "tasks": run.tasks,
        "ran": run.ran,
        "skipped": run.skipped,
        "failed": run.failed,
        "complete": run.complete,
        "scheduler": run.scheduler,
        "wall_s": run.wall_s,
    }


def sweep(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC.yaml", help="The study file.")],
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="Dask scheduler: 'local' (a LocalCluster here) or tcp://HOST:8786. "
            "Without it the study runs serially in this process.",
        ),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="Workers of a local cluster.")] = 2,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Results table (.parquet or .csv); rerunning resumes it."),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write a figure (.png/.pdf/.svg).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed", help="Overrides the study's seed (random points, per-task generators)."
        ),
    ] = None,
) -> None:
    """Run a parameter study over keyrate, simulate, link (or observables) and tabulate it."""
    try:
        spec = load_spec(spec_path)
    except SweepSpecError as exc:
        fail("SPEC.yaml", str(exc))
    if seed is not None:
        spec = spec.model_copy(update={"seed": seed})
    if (
        scheduler is not None
        and scheduler not in ("local", "serial")
        and not scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://"))
    ):
        fail(
            "--scheduler", f"use 'local' or an address such as tcp://HOST:8786 (got {scheduler!r})"
        )
    if workers < 1:
        fail("--workers", f"must be >= 1 (got {workers})")
    if out is not None:
        try:
            check_table_path(out)
        except ValueError as exc:
            fail("--out", str(exc))
    if plot is not None:
        from qkdnet.plots.canvas import check_plot_path

        try:
            check_plot_path(plot)
        except ValueError as exc:
            fail("--plot", str(exc))
    try:
        run = run_sweep(spec, out=out, scheduler=scheduler, workers=workers, progress=not json_out)
    except OSError as exc:
        fail("--scheduler", f"cannot reach the Dask scheduler {scheduler!r} ({exc})")
    plotted = None
    if plot is not None:
        from qkdnet.plots import save_figure, sweep_figure

        try:
            choice = default_plot(spec, run.table)
            bound = choice.bound
            if bound is None and choice.y == "key_rate_per_pulse" and PLOB in run.table:
                bound = PLOB  # the repeaterless limit every key rate per pulse stays under
            fig = sweep_figure(
                run.table, choice.x, choice.y, choice.group or (), choice.logx, choice.logy,
                bound=bound,
            )  # fmt: skip
        except ValueError as exc:
            fail("--plot", str(exc))
        plotted = str(save_figure(fig, plot))
    if json_out:
        payload: dict[str, Any] = {
            "spec": str(spec_path),
            "target": spec.target,
            "mode": spec.mode,
            "seed": spec.seed,
            **_summary(run),
            "out": str(out) if out else None,
            "plot": plotted,
            "columns": list(run.table.columns),
        }
        if out is None:
            payload["rows"] = run.table.to_dict(orient="records")
        emit_json(payload)
        return
    console = Console()
    results = [c for c in run.table.columns if c not in {*spec.parameters, *RESERVED}]
    results = sorted(results, key=lambda c: "." in c)[:SHOWN_RESULTS]  # nested ones last
    columns = ["index", *spec.parameters, *results, "error"]
    shown = run.table[columns].head(20)
    table = Table(title=f"qkdnet sweep {spec_path.name}: {spec.target}, {len(run.table)} rows")
    for column in shown.columns:
        table.add_column(column)
    for record in shown.to_dict(orient="records"):
        table.add_row(*(_cell(v) for v in record.values()))
    console.print(table)
    s = _summary(run)
    console.print(
        f"{s['tasks']} tasks: {s['ran']} ran, {s['skipped']} reused, {s['failed']} failed "
        f"on {s['scheduler']} in {s['wall_s']:.2f} s"
        + (f"; table {out}" if out else "")
        + (f"; plot {plotted}" if plotted else "")
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def register(app: typer.Typer) -> None:
    """Attach ``sweep`` to the ``qkdnet`` app."""
    app.command("sweep")(sweep)
