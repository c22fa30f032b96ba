"""``run``: stream a simulated link as blocks of Alice's and Bob's records.

Per chunk of pulses: build the label table for the channel of each time segment
(``simulate.labels``), draw the clicked slots and their labels (``simulate.sampler``), apply dead
time and afterpulses in time order, then decode labels into the two parties' records. Memory is
bounded by the block size: a run of any length is a stream of blocks.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from qkdnet.physics import (
    EntangledPairSource,
    HardwarePreset,
    SinglePhotonSource,
    WeakCoherentSource,
    get_preset,
)
from qkdnet.simulate.attacks import parse_attack
from qkdnet.simulate.channel import (
    ENCODINGS,
    Compensation,
    PolarisationDrift,
    time_bin_transfer,
)
from qkdnet.simulate.labels import KEY, REFERENCE, LabelTable, PrepareMeasureModel
from qkdnet.simulate.records import AliceRecords, BobRecords, SimulationBlock
from qkdnet.simulate.sampler import build_alias, decode_prepare_measure, simulate_chunk

PROTOCOLS: tuple[str, ...] = ("decoy-bb84", "sps-bb84", "bbm92")
DEFAULT_PRESETS: dict[str, str] = {
    "decoy-bb84": "decoy-1550-spad",
    "sps-bb84": "qd-sps-1550",
    "bbm92": "qd-entangled-1550",
}
DEFAULT_BLOCK_PULSES = 2**27  # 134M pulses: arrays stay cache- and page-friendly
_NEVER = -(2**62)


def resolve_preset(protocol: str, preset: HardwarePreset | str | None) -> HardwarePreset:
    """The preset object for ``preset`` (name, object, or the protocol's default)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of: {', '.join(PROTOCOLS)}")
    if preset is None:
        preset = DEFAULT_PRESETS[protocol]
    if isinstance(preset, str):
        try:
            preset = get_preset(preset)
        except KeyError as exc:
            raise ValueError(str(exc.args[0])) from None
    expected = {
        "decoy-bb84": WeakCoherentSource,
        "sps-bb84": SinglePhotonSource,
        "bbm92": EntangledPairSource,
    }[protocol]
    if not isinstance(preset.source, expected):
        raise ValueError(
            f"hardware preset {preset.name!r} has a {preset.source.kind} source, which cannot run "
            f"{protocol}; choose a preset whose protocol is {protocol}"
        )
    return preset


def _check(name: str, value: float, low: float, high: float = math.inf) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
        bound = f"between {low} and {high}" if math.isfinite(high) else f">= {low}"
        raise ValueError(f"{name} must be a finite number {bound} (got {value!r})")


def run(
    protocol: str,
    distance_km: float,
    pulses: int,
    rng: np.random.Generator,
    *,
    preset: HardwarePreset | str | None = None,
    attack: str | None = None,
    block_pulses: int = DEFAULT_BLOCK_PULSES,
    basis_prob_x: float | None = None,
    intensity_probs: tuple[float, ...] | None = None,
    mu: float | None = None,
    nu: float | None = None,
    omega: float | None = None,
    encoding: str = "polarisation",
    drift_rad_per_sqrt_s: float = 0.0,
    compensation_fraction: float = 0.0,
    compensation_period_s: float = 0.01,
    segment_s: float = 1e-3,
    visibility: float = 1.0,
    dark_counts: bool = True,
    dead_time: bool = True,
    afterpulses: bool = True,
    afterpulse_delay_s: float | None = None,
    source_position: str = "middle",
) -> Iterator[SimulationBlock]:
    """Simulate ``pulses`` emitted pulses of ``protocol`` over ``distance_km`` of fibre.

    Yields :class:`SimulationBlock` objects of at most ``block_pulses`` pulses each (constant
    memory). ``attack``: ``None``, ``"intercept-resend"`` (``"intercept-resend:0.3"`` for a
    partial attack), ``"pns"`` or ``"blinding"``. ``basis_prob_x`` (default 0.9): probability
    of the key basis X for Alice and Bob. ``source_position`` (bbm92): ``"middle"`` or
    ``"alice"``. Detector effects can be switched off to compare with
    the closed-form model, which has none of them.

    Example::

        >>> rng = np.random.default_rng(1)
        >>> blocks = list(run("decoy-bb84", 25.0, 10**7, rng))
        >>> sum(len(b.bob) for b in blocks) > 0
        True
    """
    hw = resolve_preset(protocol, preset)
    _check("distance_km", distance_km, 0.0)
    if isinstance(pulses, bool) or not isinstance(pulses, (int, np.integer)) or pulses < 1:
        raise ValueError(f"pulses must be a positive integer (got {pulses!r})")
    if isinstance(block_pulses, bool) or not isinstance(block_pulses, (int, np.integer)):
        raise ValueError(f"block_pulses must be a positive integer (got {block_pulses!r})")
    if block_pulses < 1:
        raise ValueError(f"block_pulses must be a positive integer (got {block_pulses!r})")
    if basis_prob_x is None:
        basis_prob_x = 0.9
    _check("basis_prob_x", basis_prob_x, 0.0, 1.0)
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; choose one of: {', '.join(ENCODINGS)}")
    _check("drift_rad_per_sqrt_s", drift_rad_per_sqrt_s, 0.0)
    _check("compensation_fraction", compensation_fraction, 0.0, 0.5)
    _check("compensation_period_s", compensation_period_s, 1e-9)
    _check("segment_s", segment_s, 1e-9)
    _check("visibility", visibility, 0.0, 1.0)
    if afterpulse_delay_s is None:
        afterpulse_delay_s = hw.detector.afterpulse_delay_s
    _check("afterpulse_delay_s", afterpulse_delay_s, 0.0)
    if encoding == "time-bin" and (compensation_fraction or drift_rad_per_sqrt_s):
        raise ValueError(
            "drift_rad_per_sqrt_s/compensation_fraction model polarisation encoding; "
            "use encoding='polarisation' or set them to 0 for time-bin"
        )
    parsed_attack = parse_attack(attack)
    if protocol == "bbm92":
        unsupported = {
            "drift_rad_per_sqrt_s": drift_rad_per_sqrt_s != 0.0,
            "compensation_fraction": compensation_fraction != 0.0,
            "encoding": encoding != "polarisation",
            "mu/nu/omega/intensity_probs": any(
                v is not None for v in (mu, nu, omega, intensity_probs)
            ),
        }
        named = [name for name, given in unsupported.items() if given]
        if named:
            raise ValueError(
                f"{', '.join(named)} not modelled for bbm92 (prepare-and-measure only)"
            )
        from qkdnet.simulate.entangled import run_bbm92

        yield from run_bbm92(
            hw, distance_km, int(pulses), rng, block_pulses=int(block_pulses),
            basis_prob_x=basis_prob_x, attack=parsed_attack, dark_counts=dark_counts,
            dead_time=dead_time, afterpulses=afterpulses, afterpulse_delay_s=afterpulse_delay_s,
            source_position=source_position,
        )  # fmt: skip
        return
    model, rate_hz = _prepare_measure_model(
        hw, protocol, distance_km, basis_prob_x, intensity_probs, mu, nu, omega,
        parsed_attack, compensation_fraction, dark_counts,
    )  # fmt: skip
    timing = _Timing(hw, rate_hz, n_det=2, dead_time=dead_time, afterpulses=afterpulses,
                     afterpulse_delay_s=afterpulse_delay_s, linear_mode=parsed_attack is not None
                     and parsed_attack.name == "blinding")  # fmt: skip
    channel = _Channel(
        encoding, drift_rad_per_sqrt_s, segment_s, rate_hz, visibility,
        compensation_fraction, compensation_period_s, hw.optical_error, int(pulses),
    )  # fmt: skip
    n_classes = len(model.class_probs)
    for start in range(0, int(pulses), int(block_pulses)):
        n = min(int(block_pulses), int(pulses) - start)
        yield _simulate_block(model, channel, timing, rng, start, n, rate_hz, n_classes)


def _prepare_measure_model(
    hw, protocol, distance_km, basis_prob_x, intensity_probs, mu, nu, omega, attack,
    reference_fraction, dark_counts,
) -> tuple[PrepareMeasureModel, float]:  # fmt: skip
    source = hw.source
    eta = hw.fibre(distance_km).transmittance * hw.eta_bob
    dark = hw.detector.dark_count_prob if dark_counts else 0.0
    if protocol == "decoy-bb84":
        changes = {k: v for k, v in (("mu", mu), ("nu", nu), ("omega", omega)) if v is not None}
        if intensity_probs is not None:
            changes["intensity_probs"] = tuple(float(p) for p in intensity_probs)
        try:
            source = replace(source, **changes)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        intensities = source.intensities
        n_max = int(max(intensities) + 12.0 * math.sqrt(max(intensities)) + 16)
        photon_probs = tuple(source.photon_number_probs(x, n_max) for x in intensities)
        class_probs = tuple(source.intensity_probs)
    else:
        if any(v is not None for v in (mu, nu, omega, intensity_probs)):
            raise ValueError(
                f"mu/nu/omega/intensity_probs apply to decoy-bb84 only, not {protocol}"
            )
        photon_probs = (source.photon_number_probs(),)
        class_probs = (1.0,)
        if attack is not None and attack.name == "pns" and photon_probs[0][2] == 0.0:
            raise ValueError("pns needs multi-photon pulses; this source has none (g2_zero = 0)")
    model = PrepareMeasureModel(
        photon_probs=photon_probs,
        class_probs=class_probs,
        basis_prob_x=basis_prob_x,
        eta=eta,
        eta_bob=hw.eta_bob,
        dark_prob=dark,
        optical_error=hw.optical_error,
        attack=attack,
        reference_fraction=reference_fraction,
    )
    return model, source.rate_hz


class _Timing:
    """Detector timing state carried across chunks: last click and pending afterpulse."""

    def __init__(self, hw, rate_hz, n_det, dead_time, afterpulses, afterpulse_delay_s,
                 linear_mode=False) -> None:  # fmt: skip
        det = hw.detector
        self.dead_gates = math.ceil(det.dead_time_s * rate_hz - 1e-9) if dead_time else 0
        self.afterpulse_prob = det.afterpulse_prob if afterpulses and not linear_mode else 0.0
        self.afterpulse_gates = max(1.0, afterpulse_delay_s * rate_hz)
        self.last_click = np.full(n_det, _NEVER, dtype=np.int64)
        self.pending = np.full(n_det, _NEVER, dtype=np.int64)


class _Channel:
    """Transfer matrices per segment: static, drifting, or drifting under compensation."""

    def __init__(self, encoding, drift, segment_s, rate_hz, visibility, comp_fraction,
                 comp_period_s, optical_error, pulses) -> None:  # fmt: skip
        self.encoding = encoding
        self.visibility = visibility
        self.static = encoding == "time-bin" or drift == 0.0
        self.seg_len = max(1, round(segment_s * rate_hz))
        self.drift = PolarisationDrift(drift, self.seg_len / rate_hz)
        self.compensation = Compensation(optical_error) if comp_fraction > 0.0 else None
        period = max(1, round(comp_period_s * rate_hz / self.seg_len)) * self.seg_len
        self.chunk = period if self.compensation is not None else None
        if self.static:
            self.seg_len = pulses + 1

    def segments(self, start: int, n: int) -> tuple[int, np.ndarray]:
        if self.encoding == "time-bin":
            return 0, time_bin_transfer(self.visibility)
        if self.static and self.compensation is None:
            return 0, np.eye(3)[None, :, :]
        first = start // self.seg_len
        (start + n - 1) // self.seg_len
        return first, None  # filled by transfer()

    def transfer(self, start: int, n: int, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        first, fixed = self.segments(start, n)
        if fixed is not None:
            return first, fixed
        last = (start + n - 1) // self.seg_len
        rot = self.drift.rotations(first, last - first + 1, rng)
        if self.compensation is not None:
            rot = self.compensation.correction[None, :, :] @ rot
        return first, rot


def _simulate_block(model, channel, timing, rng, start, n, rate_hz, n_classes) -> SimulationBlock:
    bounds = [start, start + n]
    if channel.chunk is not None:
        step = channel.chunk
        bounds = [start, *range((start // step + 1) * step, start + n, step), start + n]
    parts = []
    per_class = np.zeros(n_classes, dtype=np.int64)
    counters = np.zeros(4, dtype=np.int64)
    for lo, hi in itertools.pairwise(bounds):
        first_seg, transfer = channel.transfer(lo, hi - lo, rng)
        table = model.table(transfer)
        accept, alias = build_alias(table.probs)
        q_accept, q_alias = build_alias(table.noclick[None, :])
        label_clicks = np.zeros(table.kind.size, dtype=np.int64)
        raw_before = int(counters[0])
        out = simulate_chunk(
            rng, hi - lo, table.click_prob, lo, channel.seg_len, first_seg, accept, alias,
            table.det, timing.dead_gates, timing.afterpulse_prob, timing.afterpulse_gates,
            timing.last_click, timing.pending, q_accept, q_alias, label_clicks, counters,
        )  # fmt: skip
        quiet = hi - lo - (int(counters[0]) - raw_before)
        per_class += _pulses_per_class(table, label_clicks, quiet, rng, n_classes)
        if channel.compensation is not None:
            _feed_compensation(channel.compensation, table, out[1], out[2])
        parts.append((table, *out))
    return _records(parts, rng, start, n, rate_hz, per_class, counters)


def _pulses_per_class(table: LabelTable, label_clicks, quiet_pulses, rng, n_classes) -> np.ndarray:
    """Key pulses sent per class: clicked ones counted, the silent rest drawn multinomially."""
    group = np.where(table.kind == KEY, table.intensity, n_classes)
    clicked = np.bincount(group, weights=label_clicks, minlength=n_classes + 1)
    weights = np.bincount(group, weights=table.noclick, minlength=n_classes + 1)
    silent = rng.multinomial(quiet_pulses, weights / weights.sum())
    return (clicked[:n_classes] + 0.5).astype(np.int64) + silent[:n_classes]


def _feed_compensation(comp: Compensation, table: LabelTable, lab, det) -> None:
    ref = table.kind[lab] == REFERENCE
    single = ref & ((det[:, 0] > 0) != (det[:, 1] > 0))
    outcome = np.where(det[single, 0] > 0, 1.0, -1.0)
    comp.update(table.alice_basis[lab[single]], table.bob_basis[lab[single]], outcome)


_COLUMNS = ("pos", "a_bit", "a_basis", "cls", "b_bit", "b_basis", "double", "cause", "eve")


def _records(parts, rng, start, n, rate_hz, per_class, counters) -> SimulationBlock:
    cols: dict[str, list[np.ndarray]] = {k: [] for k in _COLUMNS}
    for table, pos, lab, det in parts:
        decoded = decode_prepare_measure(
            rng, pos, lab, det, table.kind, table.alice_bit, table.alice_basis,
            table.intensity, table.bob_basis, table.eve_bit,
        )  # fmt: skip
        for name, col in zip(_COLUMNS, decoded, strict=True):
            cols[name].append(col)
    c = {k: v[0] if len(v) == 1 else np.concatenate(v) for k, v in cols.items()}
    cause = c["cause"]
    alice = AliceRecords(
        pulse_index=c["pos"],
        bit=c["a_bit"],
        basis=c["a_basis"],
        intensity=c["cls"],
        pulses_sent=int(per_class.sum()),
        pulses_per_class=per_class,
    )
    bob = BobRecords(
        pulse_index=c["pos"].copy(),
        bit=c["b_bit"],
        basis=c["b_basis"],
        double_click=c["double"],
        click_pattern=cause > 0,
    )
    diagnostics = {
        "raw_clicks": float(counters[0]),
        "dead_time_losses": float(counters[1]),
        "afterpulse_clicks": float(counters[2]),
        "afterpulse_only_slots": float(counters[3]),
        "dark_count_clicks": float(np.count_nonzero(cause == 2)),
        "double_clicks": float(np.count_nonzero(c["double"])),
        "reference_pulses": float(n - per_class.sum()),
    }
    return SimulationBlock(
        alice=alice,
        bob=bob,
        first_pulse=start,
        pulses=n,
        device_time_s=n / rate_hz,
        diagnostics=diagnostics,
        truth={"cause": cause, "eve_bit": c["eve"]},
    )
