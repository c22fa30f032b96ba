"""``qkdnet demo [SCENARIO]``: run a whole QKD network (default: Milan) and a sample exchange.

Starts one KME per site (HTTPS on 127.0.0.1) and one key-generation worker per link, prints the
KME URLs, SAE certificate paths and a one-line curl example, then has a hospital SAE get keys for
a lab SAE at a site it shares no link with (relayed hop by hop through trusted nodes) and checks
that the lab's KME hands the lab the identical bytes. Runs until ``--duration`` seconds have
passed, or Ctrl-C / SIGTERM, then stops cleanly (exit 0).
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from qkdnet.commands.output import emit_json, fail


def _pick_exchange(net: Any) -> tuple[str, str, tuple[str, ...]]:
    """(hospital SAE, lab SAE, planned route) for a health site and a research/university site
    with no direct link, preferring the pair whose route has the fewest hops."""
    from qkdnet.network.routing import NoRouteError, find_route
    from qkdnet.network.topology import build_graph

    sc = net.scenario
    graph = build_graph(sc)
    best = None
    for h in (s for s in sc.sites if s.sector == "health"):
        for lab in (s for s in sc.sites if s.sector in ("research", "university")):
            if graph.has_edge(h.id, lab.id) or lab.id == h.id:
                continue
            try:
                route = find_route(graph, h.id, lab.id)
            except NoRouteError:
                continue
            key = (lab.sector != "research", route.hops, h.id, lab.id)
            if best is None or key < best[0]:
                best = (key, h.saes[0], lab.saes[0], route.sites)
    if best is None:
        raise RuntimeError("the scenario has no health site and lab site that need a relay")
    return best[1], best[2], best[3]


def demo(
    scenario: Annotated[
        str | None, typer.Argument(help="Scenario YAML file or built-in name (default: milan).")
    ] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", help="Stop after S seconds (default: Ctrl-C).")
    ] = None,
    speed: Annotated[
        float,
        typer.Option("--speed", help="Device time runs this many times faster than wall time."),
    ] = 1.0,
    state_dir: Annotated[
        Path | None,
        typer.Option("--state-dir", help="Stores, certificates, logs (kept across restarts)."),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="Key blocks from the link engine (simulation + post-processing), or 'planned':"
            " a labelled stand-in of random bytes at the planned rate.",
        ),
    ] = "link",
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Unused: live keys come from secrets.")] = 1,
) -> None:
    """Run the network with its KMEs and link workers and a sample hospital→lab exchange."""
    from qkdnet.kms.client import KMEClientError
    from qkdnet.network.runtime import Network
    from qkdnet.network.scenario import ScenarioError, load_scenario

    if duration is not None and duration <= 0:
        fail("--duration", f"must be > 0 seconds (got {duration})")
    if not speed > 0:
        fail("--speed", f"must be > 0 (got {speed})")
    if engine not in ("link", "planned"):
        fail("--engine", f"must be 'link' or 'planned' (got {engine!r})")
    try:
        sc = load_scenario(scenario)
    except ScenarioError as exc:
        fail("SCENARIO", str(exc))
    state = state_dir or Path("artifacts") / f"demo-{sc.name}"
    say = (lambda _m: None) if json_out else (lambda m: typer.echo(m))
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    t0 = time.perf_counter()
    net = Network(sc, state, speed=speed, log=say, engine=engine)
    summary: dict[str, Any] = {"scenario": sc.name, "state_dir": str(Path(state).resolve())}
    board: Any = None
    try:
        net.start()
        summary.update(kmes=dict(net.urls), engine=net.engine, speed=speed)
        from qkdnet.network.dashboard import attach_dashboard

        _hub, bridge, board = attach_dashboard(net)
        summary["dashboard"] = board.url
        say(f"dashboard: {board.url}")
        say(f"key-block engine: {net.engine}")
        others = sorted(k for k, v in net.link_engines.items() if v != net.engine)
        if others:
            say(
                f"  links on the planned-rate stand-in (engine cannot run them): {', '.join(others)}"
            )
        say("KMEs (ETSI GS QKD 014 over mutual TLS):")
        for site in sc.sites:
            say(f"  {site.kme_id:24s} {net.urls[site.id]}   SAEs: {', '.join(site.saes)}")
        master, slave, route = _pick_exchange(net)
        cert, key, ca = net.credentials(master)
        say(f"SAE certificates: {net.pki_dir}/<SAE_ID>.pem and .key, CA {ca}")
        master_url = net.urls[sc.site_of_sae(master).id]
        say(
            f"try: curl -s --cert {cert} --key {key} --cacert {ca} "
            f"'{master_url}/api/v1/keys/{slave}/enc_keys?number=1&size=256'"
        )
        say(
            f"SDK: KMEClient('{master_url}', cert='{cert}', key='{key}', ca='{ca}')"
            f".get_key('{slave}')"
        )
        say(f"sample exchange: {master} -> {slave}, planned route {' > '.join(route)}")
        exchange: dict[str, Any] = {"master": master, "slave": slave, "planned_route": list(route)}
        deadline = time.monotonic() + 60
        keys = None
        last_error = ""
        with net.sae_client(master) as c:
            while keys is None and not stop.is_set() and time.monotonic() < deadline:
                try:
                    keys = c.get_key(slave, number=4, size=256)
                except KMEClientError as exc:
                    last_error = exc.message
                    stop.wait(0.2)
        if keys is None:
            exchange["error"] = f"no key delivered: {last_error or 'interrupted'}"
            say(exchange["error"])
        else:
            exchange["first_key_s"] = round(time.perf_counter() - t0, 2)
            with net.sae_client(slave) as c:
                got = c.get_key_with_ids(master, [k.key_id for k in keys])
            same = [a.key == b.key for a, b in zip(keys, got, strict=True)]
            exchange.update(key_ids=[k.key_id for k in keys], identical=all(same))
            say(
                f"{master} got {len(keys)} keys (IDs {', '.join(k.key_id[:8] for k in keys)}...); "
                f"{slave} fetched them by ID at its own KME: "
                f"{'identical bytes at both ends' if all(same) else 'MISMATCH'} "
                f"({exchange['first_key_s']} s after start)"
            )
        summary["exchange"] = exchange
        end = None if duration is None else time.monotonic() + duration
        next_report = time.monotonic() + 5
        while not stop.is_set() and (end is None or time.monotonic() < end):
            stop.wait(0.2 if end is None else max(0.0, min(0.2, end - time.monotonic())))
            if time.monotonic() >= next_report:
                next_report += 5
                s = net.state.snapshot()
                up = sum(1 for v in s["links"].values() if not v.get("down"))
                bits = sum(st.key_bits for st in net.stats.values())
                say(f"[{time.perf_counter() - t0:6.1f} s] {up}/{len(sc.links)} links up, "
                    f"{bits / 1e6:.1f} Mbit of key made, {len(s['relays'])} relay events")  # fmt: skip
    finally:
        if board is not None:
            bridge.stop()
            board.stop()
        run_s = time.time() - (net.started_at or time.time())
        net.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    summary["links"] = {
        lid: {
            "blocks": st.blocks,
            "key_bits": st.key_bits,
            "device_time_s": st.device_time_s,
            "rate_bps": st.rate_bps,
            "down": st.down,
            "reason": st.reason,
            "aborted_blocks": st.aborted_blocks,
            "engine": net.link_engines.get(lid, net.engine),
            "block_pulses": net.block_pulses.get(lid),
            "achieved_speed": st.device_time_s / max(run_s, 1e-9),
        }
        for lid, st in net.stats.items()
    }
    summary["clean_stop"] = True
    summary["seed"] = seed
    if json_out:
        emit_json(summary)
    else:
        typer.echo("stopped cleanly")


def register(app: typer.Typer) -> None:
    """Attach ``demo`` to the ``qkdnet`` app."""
    app.command("demo")(demo)
