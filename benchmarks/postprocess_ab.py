"""A/B of the whole post-processing chain against another checkout, in one process.

On a shared machine wall and CPU figures swing by 1.5–2× from run to run, so a change is
measured against the base code in the same process, alternating blocks. The base checkout's
``src/qkdnet`` is copied to a temporary directory as package ``qkdnet_base`` (imports
rewritten) and both run the bench's block (``qkdnet.bench.postprocess``: 2 % QBER, 80 % X
basis, both parties in two threads). Reported per version: process CPU (both parties), the
busier party's thread CPU, and the same without privacy amplification (``toeplitz_hash`` timed in
each thread and subtracted); the run fails if a block aborts or the keys differ.

    PYTHONPATH=src python benchmarks/postprocess_ab.py /work/main/src --blocks 8
"""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from qkdnet.bench.postprocess import synthetic_records


def _base_package(src: Path, into: Path) -> None:
    """Copy ``src/qkdnet`` to ``into/qkdnet_base`` with its imports renamed."""
    target = into / "qkdnet_base"
    shutil.copytree(src / "qkdnet", target, ignore=shutil.ignore_patterns("__pycache__"))
    for path in target.rglob("*.py"):
        text = path.read_text()
        text = re.sub(r"\bqkdnet\.", "qkdnet_base.", text)
        text = re.sub(r"\bfrom qkdnet import\b", "from qkdnet_base import", text)
        path.write_text(text)


class _Version:
    """One version's modules, with PA timed per thread."""

    def __init__(self, package: str) -> None:
        self.pipeline = importlib.import_module(f"{package}.postprocess.pipeline")
        self.channel = importlib.import_module(f"{package}.postprocess.channel")
        self.estimation = importlib.import_module(f"{package}.postprocess.estimation")
        self.records = importlib.import_module(f"{package}.simulate.records")
        self.pa: dict[str, float] = {}
        hash_ = self.pipeline.toeplitz_hash

        def timed(*args):
            start = time.thread_time()
            try:
                return hash_(*args)
            finally:
                self.pa[threading.current_thread().name] = time.thread_time() - start

        self.pipeline.toeplitz_hash = timed

    def block(self, n: int) -> dict[str, float]:
        ar, br = synthetic_records(n, self.records.AliceRecords, self.records.BobRecords)
        pl, ch = self.pipeline, self.channel
        config = pl.PostprocessConfig(self.estimation.DecoySettings((0.0,), (1.0,)))
        ca, cb = ch.channel_pair(ch.memory_pair(), np.random.default_rng(5).bytes(1 << 16))
        alice, bob = pl.Alice(ca, config), pl.Bob(cb, config)
        cpu: dict[str, float] = {}
        process = alice.process

        def timed_alice(*args):
            start = time.thread_time()
            try:
                return process(*args)
            finally:
                cpu["alice"] = time.thread_time() - start

        alice.process = timed_alice
        self.pa.clear()
        c0, b0 = time.process_time(), time.thread_time()
        ra, rb = pl.run_pair(alice, bob, ar, br, np.random.default_rng(1), np.random.default_rng(2))
        cpu["bob"] = time.thread_time() - b0
        total = time.process_time() - c0
        if rb.aborted or ra.key is None or not np.array_equal(ra.key, rb.key):
            raise RuntimeError(f"block failed: {rb.abort_reason or 'keys differ'}")
        pa_a, pa_b = self.pa.get("alice", 0.0), self.pa.get("MainThread", 0.0)
        return {
            "sifted": rb.sifted_bits,
            "disclosed": rb.disclosed_bits,
            "round_trips": rb.ledger["round_trips"],
            "bytes": rb.ledger["bytes"],
            "cpu": total,
            "busier": max(cpu["alice"], cpu["bob"]),
            "cpu_without_pa": total - pa_a - pa_b,
            "busier_without_pa": max(cpu["alice"] - pa_a, cpu["bob"] - pa_b),
            "pa_per_party": max(pa_a, pa_b),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_src", type=Path, help="the base checkout's src directory")
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--detections", type=float, default=4e6)
    args = parser.parse_args()
    n = int(args.detections)
    with tempfile.TemporaryDirectory() as tmp:
        _base_package(args.base_src, Path(tmp))
        sys.path.insert(0, tmp)
        versions = {"base": _Version("qkdnet_base"), "this": _Version("qkdnet")}
        for version in versions.values():
            version.block(20_000)
            version.block(n)  # kernels loaded, pools filled
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in versions}
        print("load before:", Path("/proc/loadavg").read_text().strip())
        for i in range(args.blocks):
            for name in ("base", "this") if i % 2 == 0 else ("this", "base"):
                runs[name].append(versions[name].block(n))
        print("load after: ", Path("/proc/loadavg").read_text().strip())
    for name, rows in runs.items():
        first = rows[0]
        print(f"{name}: sifted {first['sifted']}, disclosed {first['disclosed']}, "
              f"round trips {first['round_trips']}, bytes {first['bytes']}")  # fmt: skip
        for key in ("cpu", "busier", "cpu_without_pa", "busier_without_pa", "pa_per_party"):
            values = np.array([r[key] for r in rows])
            print(f"  {key:18s} best {values.min():.3f} s, median {np.median(values):.3f} s "
                  f"({first['sifted'] / values.min() / 1e6:.2f} Mbit/s best)")  # fmt: skip


if __name__ == "__main__":
    main()
