"""Parameter studies over ``keyrate``, ``simulate`` or ``link``, serial or on a Dask cluster.

>>> from qkdnet.sweep import parse_spec, run_sweep
>>> spec = parse_spec({"target": "observables",
...                    "parameters": {"distance_km": {"start": 0, "stop": 50, "num": 3}}})
>>> run_sweep(spec, progress=False).table["qber"].is_monotonic_increasing
True

Modules: :mod:`~qkdnet.sweep.spec` (the study file), :mod:`~qkdnet.sweep.targets` (what a
point runs), :mod:`~qkdnet.sweep.journal` (resumable results), :mod:`~qkdnet.sweep.runner`.
"""

from qkdnet.sweep.runner import SweepRun, execute, run_sweep, task_seed
from qkdnet.sweep.spec import SweepSpec, SweepSpecError, Task, expand, load_spec, parse_spec
from qkdnet.sweep.targets import TARGETS, link_observables

__all__ = [
    "TARGETS",
    "SweepRun",
    "SweepSpec",
    "SweepSpecError",
    "Task",
    "execute",
    "expand",
    "link_observables",
    "load_spec",
    "parse_spec",
    "run_sweep",
    "task_seed",
]
