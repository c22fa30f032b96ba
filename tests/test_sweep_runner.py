"""Parameter studies: expansion, serial vs Dask LocalCluster, resume after interruption."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qkdnet.sweep import expand, link_observables, parse_spec, run_sweep
from qkdnet.sweep import runner as runner_module
from qkdnet.sweep.spec import SweepSpecError

GRID = {
    "target": "observables",
    "parameters": {
        "distance_km": {"start": 0, "stop": 80, "num": 5},
        "preset": ["decoy-1550-spad", "qd-sps-1550"],
        "extra_loss_db": 1.0,
    },
}


def test_grid_expands_every_combination_in_order() -> None:
    tasks = expand(parse_spec(GRID))
    assert len(tasks) == 10
    assert [t.params["distance_km"] for t in tasks[:2]] == [0.0, 0.0]
    assert {t.params["preset"] for t in tasks} == {"decoy-1550-spad", "qd-sps-1550"}
    assert len({t.key for t in tasks}) == 10
    assert all(t.params["extra_loss_db"] == 1.0 for t in tasks)


def test_random_mode_is_reproducible_and_inside_ranges() -> None:
    data = {
        "target": "observables",
        "mode": "random",
        "samples": 25,
        "seed": 7,
        "parameters": {
            "distance_km": {"start": 1, "stop": 100, "log": True},
            "preset": ["decoy-1550-spad", "decoy-1550-snspd"],
        },
    }
    a, b = expand(parse_spec(data)), expand(parse_spec(data))
    assert [t.params for t in a] == [t.params for t in b]
    d = np.array([t.params["distance_km"] for t in a])
    assert d.min() >= 1 and d.max() <= 100 and len(set(d)) == 25
    other = expand(parse_spec({**data, "seed": 8}))
    assert [t.params for t in other] != [t.params for t in a]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"target": "nope"}, "choose one of: observables, keyrate"),
        ({"parameters": {"distance_km": 1, "colour": 3}}, "takes no parameter 'colour'"),
        ({"parameters": {"preset": "gys-2004"}}, "needs parameter(s): distance_km"),
        ({"mode": "random"}, "needs samples"),
        ({"parameters": {"distance_km": {"start": 0, "stop": 5}}}, "needs num"),
        ({"parameters": {"distance_km": []}}, "empty list"),
        ({"plot": {"x": "qber", "y": "gain"}}, "plot.x 'qber' is not a parameter"),
    ],
)
def test_bad_study_files_say_what_is_wrong(change: dict, needle: str) -> None:
    with pytest.raises(SweepSpecError, match=None) as info:
        parse_spec({**GRID, **change}, "study.yaml")
    assert needle in str(info.value)
    assert str(info.value).startswith("study.yaml: ")


def test_serial_table_matches_the_physics_and_records_bad_points() -> None:
    spec = parse_spec(
        {
            "target": "observables",
            "parameters": {"distance_km": [0.0, 50.0], "preset": ["gys-2004", "qd-entangled-780"]},
        }
    )
    run = run_sweep(spec, progress=False)
    table = run.table
    assert list(table["index"]) == [0, 1, 2, 3]
    ok = table[table["error"].isna()]
    assert len(ok) == 2 and run.failed == 2
    for row in ok.to_dict(orient="records"):
        expected = link_observables(row["distance_km"], row["preset"])
        assert row["gain"] == pytest.approx(expected["gain"], rel=1e-12)
        assert row["qber"] == pytest.approx(expected["qber"], rel=1e-12)
    # GYS at 50 km: eta = 0.045 * 10^(-0.21*50/10) (Ma et al. 2005, Table I parameters).
    far = ok[ok["distance_km"] == 50.0].iloc[0]
    assert far["eta_total"] == pytest.approx(0.045 * 10 ** (-1.05), rel=1e-9)
    assert table[table["error"].notna()]["error"].str.contains("entangled-pair").all()


def test_local_cluster_with_two_workers_gives_the_serial_table() -> None:
    distributed = pytest.importorskip("distributed")
    spec = parse_spec(GRID)
    serial = run_sweep(spec, progress=False).table
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        assert len(client.scheduler_info()["workers"]) == 2
        run = run_sweep(spec, client=client, progress=False)
    assert run.scheduler.startswith("dask") and run.ran == len(serial)
    pd.testing.assert_frame_equal(run.table, serial)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_interrupted_study_resumes_without_redoing_finished_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    spec = parse_spec(GRID)
    out = tmp_path / f"results{suffix}"
    real = runner_module.run_target
    calls: list[dict] = []

    def interrupted(target: str, params: dict, seed: int) -> dict:
        if len(calls) == 4:
            raise KeyboardInterrupt  # the user presses Ctrl-C during the fifth task
        calls.append(params)
        return real(target, params, seed)

    monkeypatch.setattr(runner_module, "run_target", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out=out, progress=False)
    journal = out.with_name(out.name + ".journal.jsonl")
    assert len(journal.read_text().splitlines()) == 4
    assert out.exists()  # the partial table is written too

    counted: list[dict] = []

    def counting(target: str, params: dict, seed: int) -> dict:
        counted.append(params)
        return real(target, params, seed)

    monkeypatch.setattr(runner_module, "run_target", counting)
    resumed = run_sweep(spec, out=out, progress=False)
    assert (resumed.ran, resumed.skipped, resumed.complete) == (6, 4, True)
    assert not any(p in calls for p in counted)
    assert not journal.exists()

    monkeypatch.setattr(runner_module, "run_target", real)
    fresh = run_sweep(spec, progress=False).table
    from qkdnet.sweep.journal import read_table

    on_disk = read_table(out)
    assert len(on_disk) == 10
    for column in ("gain", "qber", "distance_km"):
        np.testing.assert_allclose(on_disk[column], fresh[column], rtol=1e-12)
    assert list(on_disk["task"]) == list(fresh["task"])

    again = run_sweep(spec, out=out, progress=False)
    assert (again.ran, again.skipped) == (0, 10)


def test_task_seed_depends_on_study_seed_and_key_only() -> None:
    from qkdnet.sweep import task_seed

    assert task_seed(1, "00ff00ff00ff00ff") == task_seed(1, "00ff00ff00ff00ff")
    assert task_seed(1, "00ff00ff00ff00ff") != task_seed(2, "00ff00ff00ff00ff")
    assert task_seed(1, "00ff00ff00ff00ff") != task_seed(1, "00ff00ff00ff00fe")


def test_keyrate_study_rows_equal_direct_key_rate_calls() -> None:
    from qkdnet.keyrate import key_rate

    spec = parse_spec(
        {
            "target": "keyrate",
            "parameters": {
                "protocol": ["decoy-bb84", "bbm92"],
                "distance_km": [10.0, 40.0],
                "block_size": [None, 1e10],
            },
        }
    )
    table = run_sweep(spec, progress=False).table
    assert len(table) == 8
    assert table[table["protocol"] == "decoy-bb84"]["error"].isna().all()  # finite size too
    finite_bbm92 = table[(table["protocol"] == "bbm92") & table["block_size"].notna()]
    assert finite_bbm92["error"].str.contains("decoy-bb84 only").all()  # said, not hidden
    for row in table[table["error"].isna()].to_dict(orient="records"):
        block = None if pd.isna(row["block_size"]) else row["block_size"]
        direct = key_rate(row["protocol"], row["distance_km"], block_size=block)
        assert row["key_rate_per_pulse"] == pytest.approx(direct.key_rate_per_pulse, rel=1e-9)
        assert row["plob_per_pulse"] == pytest.approx(direct.plob_per_pulse, rel=1e-12)
    decoy = table[(table["protocol"] == "decoy-bb84") & table["block_size"].isna()]
    assert (decoy["params.model"] == "ma2005-vacuum-weak").all()
    assert decoy["params.mu"].between(0, 1).all()


def test_simulate_study_is_reproducible_from_its_seed() -> None:
    data = {
        "target": "simulate",
        "mode": "random",
        "samples": 3,
        "seed": 11,
        "parameters": {
            "protocol": "decoy-bb84",
            "distance_km": {"start": 5, "stop": 30},
            "pulses": 100_000,
        },
    }
    a = run_sweep(parse_spec(data), progress=False).table
    b = run_sweep(parse_spec(data), progress=False).table
    pd.testing.assert_frame_equal(a, b)
    assert a["error"].isna().all() and (a["detections"] > 0).all()
    assert (a["sifted_bits"] <= a["detections"]).all()
