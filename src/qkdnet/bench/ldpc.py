"""Benchmarks of LDPC reconciliation (area ``ldpc``).

* Decoding throughput (Mbit/s of sifted key, CPU time of one core) of the frame-parallel
  16-bit fixed-point decoder (Bob's default) against the float32 one (baseline, same frames), at
  QBER 2 % and 5 %; and of the whole rate-adaptive protocol (all blind rounds included).
* Efficiency f = disclosed / (n·h(Q)) at QBER 1, 2, 3, 5, 8 % against the Shannon limit 1.
* Frame error rate after blind rounds against the first-round frame error rate (same frames).
"""

from __future__ import annotations

import time

import numpy as np
from scipy.stats import beta

from qkdnet.bench import Figure
from qkdnet.postprocess.ldpc import (
    CODE_SETS,
    DECODERS,
    LdpcPlan,
    binary_entropy,
    reconcile_local,
)
from qkdnet.postprocess.ldpc_codes import load_codes
from qkdnet.postprocess.ldpc_decoder import KNOWN_LLR, decode_frames
from qkdnet.postprocess.ldpc_fixed import decode_frames_fixed

AREA = "ldpc"
QBERS = (0.01, 0.02, 0.03, 0.05, 0.08)
#: A key long enough that the plan takes its code set's own code (not the short-key fallback).
LONG_KEY = 10**8


def _bsc(n: int, qber: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    alice = rng.integers(0, 2, n, dtype=np.uint8)
    return alice, alice ^ (rng.random(n) < qber).astype(np.uint8)


def _decoder_figures(
    qber: float, rng: np.random.Generator, frames: int, codes: str = "efficient"
) -> list[Figure]:
    """Frames of the code the plan picks from the code set ``codes``, modulated bits all
    shortened (plain decoding): the 16-bit fixed-point decoder against the float32 one, same
    frames, same process, best of two runs each. Times are CPU seconds of this process."""
    plan = LdpcPlan.derive(LONG_KEY, qber, codes=codes)
    code = plan.code
    x = rng.integers(0, 2, (frames, code.n), dtype=np.uint8)
    y = x ^ (rng.random((frames, code.n)) < qber).astype(np.uint8)
    syn = np.stack([code.syndrome(w) for w in x])
    llr = (1 - 2.0 * y) * np.log((1 - qber) / qber)
    llr[:, code.modulated] = (1 - 2.0 * x[:, code.modulated]) * KNOWN_LLR
    seconds = {}
    for name, decode in (("fixed", decode_frames_fixed), ("float", decode_frames)):
        decode(code.row_ptr, code.cols, syn[:1], llr[:1], 60)  # compile / warm
        best = np.inf
        for _ in range(2):
            t0 = time.process_time()
            hard, its = decode(code.row_ptr, code.cols, syn, llr, 60)
            best = min(best, time.process_time() - t0)
        seconds[name] = best
        if name == "fixed":
            ok = int(np.sum(np.all(hard == x, axis=1)))
            mean_its = float(np.mean(its[its > 0]))
    key_bits = code.n - code.d
    return [
        Figure(
            AREA,
            f"decode {frames} frames, QBER {qber:.0%} ({codes} codes: rate {code.rate}, "
            f"n = {code.n}; 16-bit decoder, mean {mean_its:.1f} layered iterations, "
            f"{ok}/{frames} decoded)",
            frames * key_bits / seconds["fixed"] / 1e6,
            "Mbit/s",
            "float32 decoder, same frames",
            frames * key_bits / seconds["float"] / 1e6,
            ">= 10 Mbit/s",
        )
    ]


def run(quick: bool) -> list[Figure]:
    rng = np.random.default_rng(2026)
    load_codes()
    figures: list[Figure] = []
    single: dict[float, float] = {}
    for qber in (0.02, 0.05):
        for codes in CODE_SETS:
            figures += _decoder_figures(qber, rng, 16 if quick else 64, codes)
        single[qber] = figures[-len(CODE_SETS)].value
    for qber in QBERS:
        frame = LdpcPlan.derive(LONG_KEY, qber).frame_key_bits
        # 32 frames per QBER (1-4 Mbit): f of 8 frames of n = 131072 varied by ±0.015 (1 %,
        # random errors), too much to read against the goal
        frames = 2 if quick else 32
        n = frames * frame
        alice, bob = _bsc(n, qber, rng)
        t0 = time.process_time()
        result = reconcile_local(alice, bob, qber, rng)
        seconds = time.process_time() - t0
        assert np.array_equal(
            np.delete(result.corrected, _failed_bits(result.failed_frames, n, frame)),
            np.delete(alice, _failed_bits(result.failed_frames, n, frame)),
        ), "a frame reported decoded differs from Alice's"
        first = result.iterations[: result.frames]
        first_fer = sum(i < 0 for i in first) / result.frames
        figures += [
            Figure(
                AREA,
                f"efficiency f, QBER {qber:.0%} ({result.frames} frames, {result.rounds} rounds)",
                result.efficiency(qber),
                "f",
                "Shannon limit",
                1.0,
                "<= 1.10",
            ),
            Figure(
                AREA,
                f"frame error rate after blind rounds, QBER {qber:.0%}",
                result.failed_frames.size / result.frames,
                "FER",
                "first-round FER",
                first_fer,
                "<= 1e-3",
            ),
        ]
        if qber in (0.02, 0.05):
            figures.append(
                Figure(
                    AREA,
                    f"whole protocol incl. blind rounds, QBER {qber:.0%}",
                    n / seconds / 1e6,
                    "Mbit/s",
                    "one decode per frame (no blind round)",
                    single[qber],
                    ">= 10 Mbit/s",
                )
            )
    return figures


def _failed_bits(failed: np.ndarray, n: int, frame: int) -> np.ndarray:
    idx = [np.arange(f * frame, min((f + 1) * frame, n)) for f in failed.tolist()]
    return np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64)


def efficiency_table(
    frames: int,
    qbers: tuple[float, ...] = QBERS,
    chunk: int = 64,
    progress: bool = False,
    codes: str = "efficient",
    decoder: str = "fixed",
) -> str:
    """f and frame error rate of the whole protocol over ``frames`` frames per QBER (BSC, seeded),
    as a markdown table, with the plan's code from the code set ``codes``. A frame is in error when it fails after every blind round or when its
    corrected bits differ from Alice's (an undetected error). Mbit/s: CPU time of this process."""
    rows = [
        "| QBER | code rate | frames | f | failed | undetected | FER (95 % upper bound) "
        "| rounds (max) | Mbit/s (CPU) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for qber in qbers:
        rng = np.random.default_rng(round(qber * 1e4) + 7)
        plan = LdpcPlan.derive(LONG_KEY, qber, codes=codes)
        frame = plan.frame_key_bits
        disclosed = bits = failed = wrong = done = rounds = 0
        seconds = 0.0
        while done < frames:
            k = min(chunk, frames - done)
            alice, bob = _bsc(k * frame, qber, rng)
            t0 = time.process_time()
            result = reconcile_local(alice, bob, qber, rng, codes=codes, decoder=decoder)
            seconds += time.process_time() - t0
            disclosed += result.disclosed_bits
            bits += alice.size
            bad = set(result.failed_frames.tolist())
            failed += len(bad)
            diff = (result.corrected != alice).reshape(k, frame).any(axis=1)
            wrong += sum(1 for f in np.flatnonzero(diff).tolist() if f not in bad)
            rounds = max(rounds, result.rounds)
            done += k
        errors = failed + wrong
        # exact one-sided 95 % bound for a binomial count (Clopper-Pearson; ≈ 3/N at 0 errors)
        upper = float(beta.ppf(0.95, errors + 1, frames - errors)) if errors < frames else 1.0
        f = disclosed / (bits * binary_entropy(qber))
        rows.append(
            f"| {qber * 100:g}% | {plan.code.rate} (n = {plan.code.n}) | {frames} | {f:.3f} | {failed} | {wrong} "
            f"| {errors / frames:.1e} (≤ {upper:.1e}) | {rounds} | {bits / seconds / 1e6:.2f} |"
        )
        if progress:
            print(rows[-1], flush=True)
    return "\n".join(rows)


def main() -> None:
    """``python -m qkdnet.bench.ldpc --frames 1000``: print the efficiency/FER table."""
    import argparse

    parser = argparse.ArgumentParser(description=efficiency_table.__doc__)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--qbers", default=",".join(str(q) for q in QBERS))
    parser.add_argument("--codes", default="efficient", choices=tuple(CODE_SETS))
    parser.add_argument("--decoder", default="fixed", choices=DECODERS)
    args = parser.parse_args()
    qbers = tuple(float(q) for q in args.qbers.split(","))
    table = efficiency_table(
        args.frames, qbers, progress=True, codes=args.codes, decoder=args.decoder
    )
    print(table, flush=True)


if __name__ == "__main__":
    main()
