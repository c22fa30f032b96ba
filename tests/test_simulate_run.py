"""Streaming, determinism, records and bad input of ``qkdnet.simulate.run`` and the command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qkdnet.cli import main
from qkdnet.simulate import run


def _arrays(blocks):
    out = []
    for b in blocks:
        for rec in (b.alice, b.bob):
            for v in vars(rec).values():
                if isinstance(v, np.ndarray):
                    out.append(v)
    return out


@pytest.mark.parametrize("protocol", ["decoy-bb84", "sps-bb84", "bbm92"])
def test_same_seed_same_output_bit_for_bit(protocol: str) -> None:
    kw = {"block_pulses": 3 * 10**6}
    a = list(run(protocol, 20.0, 10**7, np.random.default_rng(42), **kw))
    b = list(run(protocol, 20.0, 10**7, np.random.default_rng(42), **kw))
    c = list(run(protocol, 20.0, 10**7, np.random.default_rng(43), **kw))
    xa, xb, xc = _arrays(a), _arrays(b), _arrays(c)
    assert len(xa) == len(xb) and all(np.array_equal(x, y) for x, y in zip(xa, xb, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(xa, xc, strict=False))


def test_blocks_stream_and_records_are_consistent() -> None:
    blocks = list(run("decoy-bb84", 25.0, 10**7 + 5, np.random.default_rng(1), block_pulses=10**6))
    assert len(blocks) == 11 and blocks[-1].pulses == 5
    assert [b.first_pulse for b in blocks] == [i * 10**6 for i in range(11)]
    for b in blocks:
        a, r = b.alice, b.bob
        assert a.pulses_sent == b.pulses == int(a.pulses_per_class.sum())
        assert np.array_equal(a.pulse_index, r.pulse_index)
        idx = a.pulse_index
        assert np.all(np.diff(idx) > 0) and (idx.size == 0 or b.first_pulse <= idx[0])
        assert idx.size == 0 or idx[-1] < b.first_pulse + b.pulses
        assert a.bit.dtype == np.uint8 and r.basis.dtype == np.uint8
        assert set(np.unique(a.intensity)) <= {0, 1, 2}
        assert np.array_equal(r.double_click, r.click_pattern.all(axis=1))
        assert b.device_time_s == pytest.approx(b.pulses / 1e9)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocol": "b92"}, "unknown protocol"),
        ({"distance_km": -1.0}, "distance_km"),
        ({"distance_km": float("nan")}, "distance_km"),
        ({"pulses": 0}, "pulses"),
        ({"pulses": 1.5}, "pulses"),
        ({"preset": "qd-sps-1550"}, "cannot run decoy-bb84"),
        ({"preset": "nope"}, "unknown hardware preset"),
        ({"basis_prob_x": 1.2}, "basis_prob_x"),
        ({"mu": 0.05}, "mu > nu"),
        ({"intensity_probs": (0.5, 0.6, 0.1)}, "sum to 1"),
        ({"encoding": "phase"}, "encoding"),
        ({"compensation_fraction": 0.9}, "compensation_fraction"),
        ({"protocol": "bbm92", "drift_rad_per_sqrt_s": 1.0}, "not modelled for bbm92"),
        ({"protocol": "sps-bb84", "mu": 0.3}, "decoy-bb84 only"),
        ({"encoding": "time-bin", "compensation_fraction": 0.1}, "polarisation"),
        ({"protocol": "bbm92", "source_position": "bob"}, "source_position"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(kwargs, message) -> None:
    args = {"protocol": "decoy-bb84", "distance_km": 10.0, "pulses": 1000, **kwargs}
    with pytest.raises(ValueError, match=message):
        next(run(args.pop("protocol"), args.pop("distance_km"), args.pop("pulses"),
                 np.random.default_rng(0), **args))  # fmt: skip


def test_cli_json_contract(capsys) -> None:
    argv = ["simulate", "--protocol", "decoy-bb84", "--distance", "25", "--pulses", "1e7",
            "--seed", "3", "--json"]  # fmt: skip
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    for key in ("pulses", "detections", "sifted_bits", "qber", "wall_s", "pulses_per_s"):
        assert key in first
    assert first["pulses"] == 10**7 and 0 < first["sifted_bits"] < first["detections"]
    assert 0.005 < first["qber"] < 0.05
    assert len(first["gain_per_class"]) == 3
    assert main(argv) == 0
    second = json.loads(capsys.readouterr().out)
    assert {k: v for k, v in second.items() if "wall" not in k and "per_s" not in k} == {
        k: v for k, v in first.items() if "wall" not in k and "per_s" not in k
    }


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--pulses", "lots"], "--pulses"),
        (["--pulses", "0"], "--pulses"),
        (["--distance", "-5"], "--distance"),
        (["--attack", "sniff"], "--attack"),
        (["--hardware", "qd-sps-1550"], "--hardware"),
        (["--protocol", "e91"], "--protocol"),
        (["--compensation", "0.9"], "--compensation"),
        (["--encoding", "phase"], "--encoding"),
    ],
)
def test_cli_bad_input_one_line_exit_2(capsys, extra, flag) -> None:
    argv = ["simulate", "--protocol", "decoy-bb84", "--distance", "10", "--pulses", "1000", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and flag in err and "Traceback" not in err
