"""Benchmarks of ``qkdnet sweep``: tasks per second on a Dask LocalCluster against the serial
run of the same study in the same process (the baseline), and the cost of the resume journal.

The study is a grid of finite-size decoy-BB84 key rates (each point a global optimisation of
the intensities, ~0.1-0.5 s), the kind of work a study spreads over a cluster.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from qkdnet.bench import Figure
from qkdnet.sweep import parse_spec, run_sweep


def _spec(points: int):
    return parse_spec(
        {
            "target": "keyrate",
            "parameters": {
                "protocol": "decoy-bb84",
                "distance_km": {"start": 5, "stop": 80, "num": points},
                "block_size": [1e9, 1e11],
            },
        }
    )


def run(quick: bool) -> list[Figure]:
    """Serial vs LocalCluster(2 worker processes) tasks/s; journalled vs in-memory serial run."""
    from distributed import Client, LocalCluster

    spec = _spec(4 if quick else 12)
    tasks = 2 * (4 if quick else 12)
    run_sweep(_spec(1), progress=False)  # warm imports and compiled kernels outside the timing
    t0 = time.perf_counter()
    serial = run_sweep(spec, progress=False)
    serial_s = time.perf_counter() - t0
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        run_sweep(_spec(1), client=client, progress=False)  # warm both workers the same way
        t0 = time.perf_counter()
        dask = run_sweep(spec, client=client, progress=False)
        dask_s = time.perf_counter() - t0
    if not dask.table.equals(serial.table):
        raise AssertionError("the LocalCluster table differs from the serial one")

    cheap = parse_spec(
        {
            "target": "observables",
            "parameters": {"distance_km": {"start": 0, "stop": 100, "num": 2000}},
        }
    )
    t0 = time.perf_counter()
    run_sweep(cheap, progress=False)
    memory_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_sweep(cheap, out=Path(tmp) / "r.parquet", progress=False)
        journal_s = time.perf_counter() - t0
    return [
        Figure(
            "sweep",
            f"keyrate study on LocalCluster (2 workers), {tasks} finite-size points",
            tasks / dask_s,
            "tasks/s",
            "serial run in this process",
            tasks / serial_s,
            "≈ number of cores",
        ),
        Figure(
            "sweep",
            "journalled run (flush per task, fsync per second, Parquet), 2000 cheap points",
            2000 / journal_s,
            "tasks/s",
            "same study in memory",
            2000 / memory_s,
            "",
        ),
    ]
