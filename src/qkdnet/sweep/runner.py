"""Run a study: serially in this process, or on a Dask cluster, with a rich progress bar.

``scheduler`` is ``None`` (serial), ``"local"`` (a :class:`distributed.LocalCluster` started here)
or the address of a running scheduler (``tcp://HOST:8786``). Each task runs
:func:`execute`, which never raises: a failing point becomes a row with its ``error``. Rows are
journalled as they finish (:mod:`qkdnet.sweep.journal`), so an interrupted study resumes where
it stopped. The table is the same whichever way it ran: one row per task in study order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from qkdnet.sweep.journal import Journal, Row, check_table_path, previous_rows, write_table
from qkdnet.sweep.spec import SweepSpec, Task, expand
from qkdnet.sweep.targets import run_target

RESERVED = ("index", "task", "error")


def task_seed(study_seed: int, key: str) -> int:
    """Seed of one task, from the study seed and the task key (independent of run order);
    32 bits, the range every seeded function of qkdnet accepts."""
    return int(np.random.SeedSequence([study_seed, int(key, 16)]).generate_state(1, np.uint32)[0])


def execute(target: str, key: str, params: dict[str, Any], seed: int) -> Row:
    """Run one task and return its row: parameters, results, ``error`` (None when it worked)."""
    row: Row = {"task": key, **params}
    try:
        result = run_target(target, params, seed)
    except Exception as exc:  # a bad point must not stop a study of thousands
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row
    for name, value in result.items():
        if name in params:
            if params[name] == value:
                continue  # the result echoes its input
            name = f"result_{name}"
        elif name in RESERVED:
            name = f"result_{name}"
        row[name] = value
    row["error"] = None
    return row


def _failed(row: Row) -> bool:
    error = row.get("error")
    return not (error is None or (isinstance(error, float) and math.isnan(error)))


@dataclass
class SweepRun:
    """Outcome of :func:`run_sweep`: the table and how many tasks ran, were reused or failed."""

    table: pd.DataFrame
    tasks: int
    ran: int
    skipped: int
    failed: int
    wall_s: float
    scheduler: str
    complete: bool


def build_table(spec: SweepSpec, tasks: list[Task], rows: dict[str, Row]) -> pd.DataFrame:
    """One row per task in study order: index, task, parameters, results, error."""
    records = []
    for task in tasks:
        row = rows.get(task.key)
        if row is None:
            continue
        records.append({**row, "index": task.index, **task.params})
    params = list(spec.parameters)
    results = sorted({c for r in records for c in r} - {*params, *RESERVED})
    columns = ["index", "task", *params, *results, "error"]
    table = pd.DataFrame.from_records(records, columns=columns)
    if not table.empty:
        table["error"] = table["error"].astype(object).where(table["error"].notna(), None)
    return table


@contextmanager
def _client(scheduler: str, workers: int) -> Iterator[Any]:
    """A Dask client for ``"local"`` (a LocalCluster of ``workers``) or a scheduler address."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise RuntimeError(
            "running on Dask needs dask[distributed]: pip install 'dask[distributed]'"
        ) from exc
    if scheduler == "local":
        with (
            LocalCluster(
                n_workers=workers, threads_per_worker=1, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
    else:
        with Client(scheduler, timeout="10s") as client:
            yield client


def _progress(console: Console | None, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]sweep[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


def run_sweep(
    spec: SweepSpec,
    *,
    out: Path | None = None,
    scheduler: str | None = None,
    workers: int = 2,
    client: Any = None,
    progress: bool = True,
    console: Console | None = None,
) -> SweepRun:
    """Run every task of ``spec`` not already done in ``out`` and return the whole table.

    ``client`` (a ``distributed.Client``) takes precedence over ``scheduler``. With ``out``,
    finished rows are journalled and the table (Parquet or CSV by suffix) written at the end, and
    also when interrupted, so that a rerun of the same command resumes.
    """
    start = time.perf_counter()
    tasks = expand(spec)
    journal: Journal | None = None
    rows: dict[str, Row] = {}
    if out is not None:
        check_table_path(out)
        journal = Journal(out)
        rows = {k: r for k, r in previous_rows(out, journal).items() if not _failed(r)}
    todo: dict[str, Task] = {}
    for task in tasks:
        if task.key not in rows:
            todo.setdefault(task.key, task)
    skipped = len({t.key for t in tasks}) - len(todo)
    ran = 0
    complete = False

    def record(row: Row) -> None:
        nonlocal ran
        rows[row["task"]] = row
        ran += 1
        if journal is not None:
            journal.append(row)

    label = "serial"
    try:
        with _progress(console, progress) as bar:
            bar_id = bar.add_task(f"{spec.target} ({spec.mode})", total=len(todo))
            if not todo:
                pass
            elif client is None and scheduler in (None, "serial"):
                for task in todo.values():
                    record(
                        execute(spec.target, task.key, task.params, task_seed(spec.seed, task.key))
                    )
                    bar.advance(bar_id)
            else:
                label = "dask"
                with _dask(client, scheduler or "local", workers) as dask_client:
                    label = f"dask ({_describe(dask_client)})"
                    _run_dask(
                        dask_client, spec, list(todo.values()), record, lambda: bar.advance(bar_id)
                    )
        complete = True
    finally:
        table = build_table(spec, tasks, rows)
        if out is not None and journal is not None:
            write_table(table, out)
            if complete:
                journal.remove()
            else:
                journal.close()
    failed = sum(1 for t in {t.key for t in tasks} if t in rows and _failed(rows[t]))
    return SweepRun(
        table=table,
        tasks=len(tasks),
        ran=ran,
        skipped=skipped,
        failed=failed,
        wall_s=time.perf_counter() - start,
        scheduler=label,
        complete=complete,
    )


@contextmanager
def _dask(client: Any, scheduler: str, workers: int) -> Iterator[Any]:
    if client is not None:
        yield client
        return
    with _client(scheduler, workers) as made:
        yield made


def _describe(client: Any) -> str:
    try:
        info = client.scheduler_info()
        return f"{info['address']}, {len(info['workers'])} workers"
    except Exception:
        return "cluster"


def _run_dask(client: Any, spec: SweepSpec, tasks: list[Task], record: Any, advance: Any) -> None:
    """Submit every task and record rows in completion order; cancel the rest if interrupted."""
    from distributed import as_completed

    futures = [
        client.submit(
            execute,
            spec.target,
            t.key,
            t.params,
            task_seed(spec.seed, t.key),
            key=f"qkdnet-sweep-{spec.target}-{t.key}",
            pure=False,
        )
        for t in tasks
    ]
    try:
        for future in as_completed(futures):
            record(future.result())
            advance()
    except BaseException:
        client.cancel(futures)
        raise
