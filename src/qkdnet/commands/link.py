"""``qkdnet link``: simulate a link and run the full post-processing between Alice and Bob."""

from __future__ import annotations

import math
from typing import Annotated

import typer

from qkdnet.commands.output import emit_json, fail


def link(
    protocol: Annotated[str, typer.Option("--protocol", help="decoy-bb84, sps-bb84 or bbm92.")],
    distance: Annotated[float, typer.Option("--distance", help="Fibre length in km.")],
    pulses: Annotated[str, typer.Option("--pulses", help="Pulses to emit, e.g. 1e9.")],
    reconciliation: Annotated[
        str, typer.Option("--reconciliation", help="Error correction: cascade or ldpc.")
    ] = "cascade",
    ldpc_codes: Annotated[
        str,
        typer.Option(
            "--ldpc-codes",
            help="LDPC code set: efficient (lowest disclosure) or fast (short frames, faster).",
        ),
    ] = "efficient",
    privacy_amplification: Annotated[
        str,
        typer.Option(
            "--privacy-amplification",
            help="Hash family: modified-toeplitz ((I | T), n - 1 seed bits, half the work at "
            "m = n/2) or toeplitz (n + m - 1 seed bits).",
        ),
    ] = "modified-toeplitz",
    transport: Annotated[
        str, typer.Option("--transport", help="memory (threads) or tcp (two processes).")
    ] = "memory",
    block_pulses: Annotated[
        str | None, typer.Option("--block-pulses", help="Pulses per finite-size block.")
    ] = None,
    detector_effects: Annotated[
        bool,
        typer.Option(
            "--detector-effects/--no-detector-effects",
            help="Dead time and afterpulses (off = the closed-form model's detectors).",
        ),
    ] = True,
    hardware: Annotated[str | None, typer.Option("--hardware", help="Hardware preset.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulation.")] = 1,
) -> None:
    """Simulate + post-process: sifting, estimation, Cascade or LDPC, verification, privacy
    amplification, over an authenticated channel; report the secret key obtained."""
    from qkdnet.link import TRANSPORTS, run_link
    from qkdnet.postprocess.amplification import PA_FAMILIES
    from qkdnet.postprocess.ldpc import CODE_SETS
    from qkdnet.postprocess.pipeline import RECONCILIATIONS
    from qkdnet.simulate import PROTOCOLS

    if protocol not in PROTOCOLS:
        fail("--protocol", f"choose one of {', '.join(PROTOCOLS)} (got {protocol!r})")
    if not (math.isfinite(distance) and distance >= 0):
        fail("--distance", f"must be a finite number >= 0 km (got {distance})")
    n = _count("--pulses", pulses)
    blocks = _count("--block-pulses", block_pulses) if block_pulses is not None else None
    if reconciliation not in RECONCILIATIONS:
        fail(
            "--reconciliation",
            f"choose one of {', '.join(RECONCILIATIONS)} (got {reconciliation!r})",
        )
    if ldpc_codes not in CODE_SETS:
        fail("--ldpc-codes", f"choose one of {', '.join(CODE_SETS)} (got {ldpc_codes!r})")
    if privacy_amplification not in PA_FAMILIES:
        fail(
            "--privacy-amplification",
            f"choose one of {', '.join(PA_FAMILIES)} (got {privacy_amplification!r})",
        )
    if transport not in TRANSPORTS:
        fail("--transport", f"choose one of {', '.join(TRANSPORTS)} (got {transport!r})")
    try:
        report = run_link(
            protocol, distance, n, seed=seed, preset=hardware, reconciliation=reconciliation,
            transport=transport, block_pulses=blocks, detector_effects=detector_effects,
            ldpc_codes=ldpc_codes, privacy_amplification=privacy_amplification,
        )  # fmt: skip
    except ValueError as exc:
        fail("--hardware" if hardware and "preset" in str(exc) else "link", str(exc))
    if json_out:
        emit_json({"protocol": protocol, "distance_km": distance, "pulses": n, **report})
        return
    for key, value in report.items():
        typer.echo(f"{key:22s} {value}")


def _count(flag: str, text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        fail(flag, f"must be a number such as 1e9 (got {text!r})")
    if not (math.isfinite(value) and value >= 1 and value == int(value)):
        fail(flag, f"must be a whole number >= 1 (got {text!r})")
    return int(value)


def register(app: typer.Typer) -> None:
    """Attach ``link`` to the ``qkdnet`` app."""
    app.command("link")(link)
