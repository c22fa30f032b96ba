"""A whole QKD network running: one KME process per site, one key-generation worker per link.

:class:`Network` (a context manager) does, in ``start()``:

1. certificates for every KME, SAE, QKD module (one per link) and the controller
   (:func:`qkdnet.kms.pki.init_pki`, reused on restart), one KME config per site;
2. one KME process per site (:mod:`qkdnet.network.kme_process`) on an HTTPS port of
   127.0.0.1, with the hop-by-hop relay between non-adjacent sites;
3. one worker thread per link that produces key blocks paced to the link's device time
   (``block_pulses / source rate``) divided by ``speed``, and pushes every block, under one block
   ID, into both KMEs of the link through their southbound interface with the link's QKD-module
   certificate (the link engines run in ``min(cores, links)`` host processes,
   :mod:`qkdnet.network.engine_hosts`, so every core works; block sizes and planned rates are
   computed before the KMEs boot, and the first blocks while they do). A worker pauses while both ends hold more than ``high_water_units`` of its link
   (a KME's buffer is full), and stops producing when the link's QBER exceeds the scenario's
   alarm threshold (the reason is published and the link leaves routing);
4. a controller thread that reads every KME's pool levels (``GET /peer/v1/pools``) twice a
   second, writes them to ``pools.json`` for the KMEs' routers, and publishes them.

``stop()`` (also on ``with`` exit) stops the workers, sends SIGTERM to every KME and waits for
them. Keys stay in the KMEs' stores (``state_dir``): a restart on the same ``state_dir`` serves
them again.

**Key-block engine.** By default (``engine="link"``) every worker runs the link engine
(:class:`qkdnet.network.link_worker.LinkEngineBlocks` over :class:`qkdnet.link.LinkEngine`):
each block is the event simulation of ``block_pulses`` pulses of the link followed by the full
post-processing; Alice's key is pushed into the KME at end A and Bob's into the KME at end B
under the engine's key ID (they are identical; if they ever differ nothing is pushed and an
alert is raised). An aborted block makes no key and publishes its reason; a QBER (from the
engine's report) above the scenario's alarm takes the link down. The scenario's attack is
simulated from its start time. Pulses per block come from
:func:`qkdnet.network.link_worker.engine_block_pulses` and the runtime's planned rates use the
same size. When the machine cannot keep the pace of ``speed``, a worker runs as fast as it can
(device time still advances per block, so bits per device second are right) and the snapshot
reports its ``achieved_speed``. ``engine="planned"`` (``qkdnet demo --engine planned``) is the
opt-in *planned-rate stand-in*: each block holds ``floor(planned finite-size rate × block
device time)`` bits drawn from ``secrets``; its QBER is measured by the event simulator on a
sample of the link's pulses (with the attack once it has started) when the simulator is
compiled, else the planned QBER plus the attack's known effect. Links whose protocol the engine
cannot run also use the stand-in, labelled as such. Every snapshot and event names the engine
(``engine``) and the QBER's source (``qber_source``), so the stand-in is never mistaken for the
physics.

**State/event API for the dashboard** (in-process, thread-safe)::

    net.state.snapshot() -> {"scenario", "engine", "speed", "started_at", "kmes": {site: url},
                             "links": {link_id: {...rate, pools, qber, down, reason...}},
                             "alerts": [...], "relays": [...recent relay events...]}
    q = net.state.subscribe()      # queue.Queue of event dicts, newest last
    event = q.get(timeout=1.0)     # {"type": "block"|"pools"|"relay"|"alert"|"started"|"stopped",
                                   #  "time": unix seconds, ...}
    net.state.unsubscribe(q)

``block`` events carry ``link``, ``engine``, ``key_bits``, ``qber`` (``qber_source``: "link
engine", the block's own estimate; for the stand-in "event simulator",
measured on a sample of the link's simulated pulses, or "closed-form"), ``device_time_s``,
``aborted`` and ``reason``; ``pools`` events the units available per link end; ``relay`` events the key IDs and
route of relayed keys (read from the KMEs' audit logs: IDs only); ``alert`` events a ``link``
and a ``message``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import yaml

from qkdnet.kms.client import KMEClient, client_ssl_context
from qkdnet.kms.pki import init_pki
from qkdnet.link import AbortedBlock, KeyBlockPair
from qkdnet.network.engine_hosts import EngineHosts, RemoteLinkEngine
from qkdnet.network.link_worker import (
    ENGINE_LINK,
    ENGINE_PROTOCOLS,
    engine_block_pulses,
)
from qkdnet.network.scenario import LinkSpec, Scenario, SiteSpec
from qkdnet.physics.hardware import get_preset

CONTROLLER_CN = "qkdnet-controller"
ENGINE_STANDIN = "planned-rate stand-in"
#: ``engine`` argument of :class:`Network`: the link engine (default) or the stand-in.
ENGINES = ("link", "planned")
#: QBER an intercept-resend attack adds on the attacked fraction of pulses.
INTERCEPT_RESEND_QBER = 0.25


def module_id(link: LinkSpec) -> str:
    """Certificate CN of the QKD module (key-generation worker) of ``link``."""
    return f"qkdm-{link.id}"[:64]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free at the time of the call."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class NetworkState:
    """Thread-safe state of a running network and a fan-out of events (see module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[queue.Queue[dict[str, Any]]] = []
        self.data: dict[str, Any] = {"links": {}, "alerts": [], "relays": [], "kmes": {}}

    def subscribe(self, maxsize: int = 10_000) -> queue.Queue[dict[str, Any]]:
        q: queue.Queue[dict[str, Any]] = queue.Queue(maxsize)
        with self._lock:
            self._subscribers.append(q)
        return q

    def unsubscribe(self, q: queue.Queue[dict[str, Any]]) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._subscribers.remove(q)

    def publish(self, event: dict[str, Any]) -> None:
        event = {"time": time.time(), **event}
        with self._lock:
            subs = list(self._subscribers)
        for q in subs:
            with contextlib.suppress(queue.Full):
                q.put_nowait(event)

    def update(self, fn: Any) -> None:
        with self._lock:
            fn(self.data)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self.data, default=str))


@dataclass
class LinkWorkerStats:
    """What a link worker has produced so far (device time is the simulated clock)."""

    blocks: int = 0
    aborted_blocks: int = 0
    key_bits: int = 0
    units_pushed: int = 0
    device_time_s: float = 0.0
    last_qber: float = 0.0
    down: bool = False
    reason: str = ""
    paused_s: float = 0.0
    push_errors: int = 0
    first_push_at: float | None = None
    block_ids: list[str] = field(default_factory=list)

    @property
    def rate_bps(self) -> float:
        """Secret key bits per second of device time."""
        return self.key_bits / self.device_time_s if self.device_time_s > 0 else 0.0


#: Pulses simulated per block to measure its QBER with the event simulator.
QBER_SAMPLE_PULSES = 1_000_000
_SIM_ATTACK = {
    "intercept-resend": "intercept-resend:{f}",
    "pns": "pns",
    "detector-blinding": "blinding",
}


class SimulatorWarmup:
    """Compiles the event simulator's kernels once in a background thread (numba JIT, ~10 s);
    until it is ready, stand-in blocks use the closed-form QBER."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.failed = ""
        threading.Thread(target=self._run, name="simulator-warmup", daemon=True).start()

    def _run(self) -> None:
        try:
            import numpy as np

            from qkdnet.simulate import run

            for _ in run("decoy-bb84", 5.0, 10_000, np.random.default_rng(0)):
                pass
            self.ready.set()
        except Exception as exc:  # the stand-in then keeps the closed-form QBER
            self.failed = f"{type(exc).__name__}: {exc}"


class StandInBlocks:
    """Planned-rate stand-in for the link engine (see module docstring): clearly not physics.

    When the event simulator is available and warm, each block's QBER is measured on a sample
    of :data:`QBER_SAMPLE_PULSES` simulated pulses of the link (with the scenario's attack once
    it has started); otherwise it is the planned QBER plus the attack's known effect.
    """

    engine = ENGINE_STANDIN

    def __init__(
        self,
        link: LinkSpec,
        planned_rate_bps: float,
        planned_qber: float,
        warmup: SimulatorWarmup | None = None,
        seed: int | None = None,
    ) -> None:
        import numpy as np

        self.link = link
        self.rate_bps = planned_rate_bps
        self.qber = planned_qber
        self.warmup = warmup
        self.rng = np.random.default_rng(seed)
        preset = get_preset(link.hardware)
        self.block_device_s = link.block_size / preset.source.rate_hz
        self._carry = 0.0
        self.qber_source = "closed-form"

    def _simulated_qber(self, attacked: bool) -> float | None:
        if self.warmup is None or not self.warmup.ready.is_set():
            return None
        attack = self.link.attack
        spec = None
        if attacked and attack is not None:
            if attack.kind not in _SIM_ATTACK:
                return None
            spec = _SIM_ATTACK[attack.kind].format(f=attack.fraction)
        try:
            from qkdnet.simulate import run
            from qkdnet.simulate.statistics import LinkStatistics

            kwargs = {}
            if self.link.protocol == "bbm92":
                kwargs["source_position"] = (
                    "alice" if self.link.entangled_source == "a" else "middle"
                )
            blocks = run(
                self.link.protocol,
                self.link.length_km
                + self.link.extra_loss_db / max(self.link.attenuation_db_per_km, 1e-9),
                QBER_SAMPLE_PULSES,
                self.rng,
                preset=self.link.hardware,
                attack=spec,
                **kwargs,
            )
            stats = LinkStatistics.of(blocks)
        except Exception:
            return None
        if stats.sifted_bits < 100:
            return None
        if self.link.protocol == "decoy-bb84":
            return float(stats.qber_per_class(0)[0])  # signal pulses, key basis
        return stats.qber()

    def next_block(self, device_time_s: float) -> tuple[int, float, str]:
        """(secret bits, QBER, abort reason or "") of the block starting at ``device_time_s``."""
        attack = self.link.attack
        attacked = attack is not None and device_time_s >= attack.start_s
        qber = self._simulated_qber(attacked)
        if qber is not None:
            self.qber_source = "event simulator"
        else:
            self.qber_source = "closed-form"
            qber = self.qber
            if attacked and attack is not None:
                # Only attacks that disturb the states raise the QBER: intercept-resend (25 % on
                # the attacked fraction) and added noise (a depolarised fraction errs half the
                # time). Photon-number splitting and blinding leave it unchanged.
                added = {"intercept-resend": INTERCEPT_RESEND_QBER, "noise": 0.5}.get(
                    attack.kind, 0.0
                )
                qber = min(0.5, qber + added * attack.fraction)
        exact = self.rate_bps * self.block_device_s + self._carry
        bits = math.floor(exact)
        self._carry = exact - bits
        return bits, qber, ""


class Network:
    """Start, run and stop a scenario's network (see the module docstring)."""

    def __init__(
        self,
        scenario: Scenario,
        state_dir: Path | str,
        *,
        speed: float = 1.0,
        ports: str = "scenario",
        high_water_units: int = 20_000,
        planned: dict[str, tuple[float, float]] | None = None,
        log: Any = None,
        simulate_qber: bool = True,
        engine: str = "link",
        seed: int | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be > 0 (got {speed})")
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)} (got {engine!r})")
        self.scenario = scenario
        self.state_dir = Path(state_dir).resolve()
        self.speed = float(speed)
        self.ports_mode = ports
        self.high_water_units = high_water_units
        self._planned = planned
        self.log = log or (lambda msg: None)
        self.simulate_qber = simulate_qber
        self.state = NetworkState()
        self.engine_kind = engine
        self.engine = ENGINE_LINK if engine == "link" else ENGINE_STANDIN
        self.seed = seed
        #: Engine of each link (links the link engine cannot run fall back to the stand-in).
        self.link_engines: dict[str, str] = {}
        #: Pulses per block of each link.
        self.block_pulses: dict[str, int] = {}
        self.urls: dict[str, str] = {}
        self.kme_of_site: dict[str, str] = {s.id: s.kme_id for s in scenario.sites}
        self.stats: dict[str, LinkWorkerStats] = {x.id: LinkWorkerStats() for x in scenario.links}
        self.pools: dict[str, dict[str, int]] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()
        self._pki: dict[str, Any] = {}
        self._hosts: EngineHosts | None = None
        self._kmes_ready = threading.Event()
        self._audit_offsets: dict[str, int] = {}
        self.started_at: float | None = None
        self.exit_codes: dict[str, int | None] = {}

    # -- paths and credentials -----------------------------------------------------------------
    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def ca_path(self) -> Path:
        return self.pki_dir / "ca.pem"

    def credentials(self, entity_id: str) -> tuple[Path, Path, Path]:
        """(certificate, private key, CA) paths of an SAE, KME, module or the controller."""
        issued = self._pki[entity_id]
        return issued.cert, issued.key, self.ca_path

    def sae_client(self, sae_id: str) -> KMEClient:
        """An ETSI 014 client for SAE ``sae_id`` at its own KME."""
        site = self.scenario.site_of_sae(sae_id)
        cert, key, ca = self.credentials(sae_id)
        return KMEClient(self.urls[site.id], cert=cert, key=key, ca=ca)

    def audit_path(self, site_id: str) -> Path:
        return self.state_dir / f"{self.kme_of_site[site_id]}.audit.jsonl"

    # -- start ---------------------------------------------------------------------------------
    def start(self) -> Network:
        """Bring the whole network up; returns when every KME answers and workers run."""
        t0 = time.perf_counter()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        sc = self.scenario
        self._pki = init_pki(
            self.pki_dir,
            kmes=[s.kme_id for s in sc.sites],
            saes=[sae for s in sc.sites for sae in s.saes],
            modules=[module_id(x) for x in sc.links] + [CONTROLLER_CN],
        )
        ports = self._ports()
        self.urls = {s.id: f"https://{s.kme_host}:{ports[s.id]}" for s in sc.sites}
        pools_file = self.state_dir / "pools.json"
        network_json = self.state_dir / "network.json"
        network_json.write_text(
            json.dumps(
                {
                    "scenario": str(Path(sc.source).resolve()),
                    "pools_file": str(pools_file),
                    "controller_cn": CONTROLLER_CN,
                    "urls": self.urls,
                },
                indent=1,
            )
        )
        # Block sizes and planned rates first, while this process has the cores to itself
        # (the KMEs and engine hosts booting next take every core for seconds).
        for x in sc.links:
            uses_engine = self.engine_kind == "link" and x.protocol in ENGINE_PROTOCOLS
            self.link_engines[x.id] = ENGINE_LINK if uses_engine else ENGINE_STANDIN
            self.block_pulses[x.id] = engine_block_pulses(x) if uses_engine else x.block_size
            if self.engine_kind == "link" and not uses_engine:
                self.log(f"link {x.id}: the link engine cannot run {x.protocol}: {ENGINE_STANDIN}")
        planned = self._planned if self._planned is not None else self._plan_rates()
        engine_links = sum(1 for x in sc.links if self.link_engines[x.id] == ENGINE_LINK)
        if engine_links:
            self._hosts = EngineHosts(engine_links)
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        for site in sc.sites:
            cfg = self._write_config(site, ports)
            logf = open(self.state_dir / f"{site.kme_id}.log", "ab")  # noqa: SIM115
            self._procs[site.id] = subprocess.Popen(
                [sys.executable, "-m", "qkdnet.network.kme_process", str(cfg), str(network_json)],
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
            logf.close()
        self.started_at = time.time()
        self.state.update(
            lambda d: d.update(
                scenario=sc.name,
                engine=self.engine,
                speed=self.speed,
                started_at=self.started_at,
                kmes=dict(self.urls),
                links={
                    x.id: {
                        "a": x.a,
                        "b": x.b,
                        "protocol": x.protocol,
                        "planned_rate_bps": planned[x.id][0],
                        "engine": self.link_engines[x.id],
                        "block_pulses": self.block_pulses[x.id],
                    }
                    for x in sc.links
                },
            )
        )
        # Workers start now: their first blocks are computed while the KMEs boot, and each
        # waits for every KME to answer before its first push.
        standin = [x for x in sc.links if self.link_engines[x.id] == ENGINE_STANDIN]
        warmup = SimulatorWarmup() if self.simulate_qber and standin else None
        for link in sc.links:
            rate, qber = planned[link.id]
            source: StandInBlocks | Callable[[], RemoteLinkEngine]
            if self.link_engines[link.id] == ENGINE_LINK:
                assert self._hosts is not None
                # live mode: the devices' seed from `secrets` and the parties' choices from
                # os.urandom; simulation: everything from the scenario's/caller's seed
                live = self.seed is None
                seed = secrets.randbits(128) if live else self.seed
                source = partial(self._hosts.engine, link, seed + sc.links.index(link) * 7919,
                                 self.block_pulses[link.id], live)  # fmt: skip
            else:
                source = StandInBlocks(link, rate, qber, warmup)
            worker = threading.Thread(
                target=self._worker,
                args=(link, source),
                name=f"link-{link.id}",
                daemon=True,
            )
            worker.start()
            self._threads.append(worker)
        self._wait_ready(timeout_s=60.0)
        self._kmes_ready.set()
        self.state.publish({"type": "started", "engine": self.engine, "kmes": dict(self.urls)})
        poller = threading.Thread(target=self._poll_loop, name="pools", daemon=True)
        poller.start()
        self._threads.append(poller)
        self._poll_once()
        self.log(f"network {sc.name} up in {time.perf_counter() - t0:.1f} s ({len(sc.sites)} KMEs)")
        return self

    def _plan_rates(self) -> dict[str, tuple[float, float]]:
        """Planned (finite-size rate, QBER) per link at the block size its worker uses."""
        from dataclasses import replace

        from qkdnet.network.planner import link_rates

        links = [replace(x, block_size=self.block_pulses[x.id]) for x in self.scenario.links]
        return {lr.link.id: (lr.key_rate_bps, lr.qber) for lr in link_rates(links)}

    def _ports(self) -> dict[str, int]:
        if self.ports_mode == "free":
            return {s.id: free_port(s.kme_host) for s in self.scenario.sites}
        return {s.id: s.kme_port or free_port(s.kme_host) for s in self.scenario.sites}

    def _write_config(self, site: SiteSpec, ports: dict[str, int]) -> Path:
        sc = self.scenario
        issued = self._pki[site.kme_id]
        peers = []
        adjacent_saes: set[str] = set()
        for link in sc.links:
            if site.id not in (link.a, link.b):
                continue
            other = sc.site(link.other(site.id))
            adjacent_saes.update(other.saes)
            peers.append(
                {
                    "kme_id": other.kme_id,
                    "url": self.urls[other.id],
                    "saes": list(other.saes),
                    "qkd_modules": [module_id(link)],
                }
            )
        remote = {
            sae: s.kme_id
            for s in sc.sites
            if s.id != site.id
            for sae in s.saes
            if sae not in adjacent_saes
        }
        config = {
            "kme_id": site.kme_id,
            "listen": {"host": site.kme_host, "port": ports[site.id]},
            "tls": {"cert": str(issued.cert), "key": str(issued.key), "ca": str(self.ca_path)},
            "store": {"url": site.store_url_for(self.state_dir)},
            "master_key_file": str(self.state_dir / f"{site.kme_id}.master"),
            "audit_log": str(self.audit_path(site.id)),
            "saes": list(site.saes),
            "peers": peers,
            "remote_saes": remote,
            "unit_bits": 256,
            "limits": {"key_size": sc.defaults.key_size_bits, "max_key_count": 10_000_000},
        }
        path = self.state_dir / f"{site.kme_id}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def _controller_http(self) -> httpx.Client:
        cert, key, ca = self.credentials(CONTROLLER_CN)
        return httpx.Client(verify=client_ssl_context(cert, key, ca), timeout=5.0)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = set(self.urls)
        with self._controller_http() as http:
            while pending:
                for site in list(pending):
                    proc = self._procs[site]
                    if proc.poll() is not None:
                        log = (self.state_dir / f"{self.kme_of_site[site]}.log").read_text()[-800:]
                        self.stop()
                        raise RuntimeError(f"KME of {site} exited ({proc.returncode}): {log}")
                    with contextlib.suppress(httpx.HTTPError):
                        if http.get(f"{self.urls[site]}/peer/v1/pools").status_code == 200:
                            pending.discard(site)
                if pending and time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"KMEs not ready after {timeout_s} s: {sorted(pending)}")
                if pending:
                    time.sleep(0.1)

    # -- workers -------------------------------------------------------------------------------
    def _worker(
        self, link: LinkSpec, source: StandInBlocks | Callable[[], RemoteLinkEngine]
    ) -> None:
        if not isinstance(source, StandInBlocks):
            source = source()  # the engine's set-up (operating point) runs on its host
        sc = self.scenario
        st = self.stats[link.id]
        ka, kb = self.kme_of_site[link.a], self.kme_of_site[link.b]
        cert, key, ca = self.credentials(module_id(link))
        alarm = sc.defaults.qber_alarm
        wall0 = time.monotonic()
        with httpx.Client(verify=client_ssl_context(cert, key, ca), timeout=10.0) as http:
            while not self._stop.is_set():
                if self._paused.is_set():
                    t = time.monotonic()
                    self._stop.wait(0.02)
                    wall0 += time.monotonic() - t
                    continue
                if st.down:
                    self._stop.wait(0.2)
                    continue
                if self._full(link):
                    t = time.monotonic()
                    self._stop.wait(0.05)
                    st.paused_s += time.monotonic() - t
                    wall0 += time.monotonic() - t  # device clock pauses with the buffer full
                    continue
                with self._busy_lock:
                    if self._paused.is_set():
                        continue
                    self._busy.add(link.id)
                try:
                    self._one_block(link, source, st, http, ka, kb, alarm)
                finally:
                    with self._busy_lock:
                        self._busy.discard(link.id)
                due = wall0 + st.device_time_s / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)

    def _one_block(
        self,
        link: LinkSpec,
        source: StandInBlocks | RemoteLinkEngine,
        st: LinkWorkerStats,
        http: httpx.Client,
        ka: str,
        kb: str,
        alarm: float,
    ) -> None:
        """Make one block and push it into both KMEs of ``link`` (Alice's key to the KME at
        end A, Bob's to the KME at end B, under one key ID)."""
        if not isinstance(source, StandInBlocks):
            block = source.next_block(st.device_time_s)
            dt = block.device_time_s or source.block_device_s
            qber = source.qber
            st.last_qber = qber
            if isinstance(block, AbortedBlock) and qber <= alarm:
                self._aborted(link, st, dt, qber, block.reason)
                return
            if isinstance(block, KeyBlockPair) and block.alice_key != block.bob_key:
                self._aborted(link, st, dt, qber, "BUG: Alice's and Bob's keys differ; not pushed")
                return
            if qber > alarm or not isinstance(block, KeyBlockPair):
                reason = f"QBER {qber:.3f} above the alarm threshold {alarm:.3f}: no key; link down"
                self._down(link, st, dt, qber, reason)
                return
            whole = block.bits // 8  # whole bytes: the KMEs store bytes
            self._push(link, source, st, dt, http, ka, kb, qber, block.key_id,
                       block.alice_key[:whole], block.bob_key[:whole])  # fmt: skip
            return
        bits, qber, reason = source.next_block(st.device_time_s)
        dt = source.block_device_s
        st.last_qber = qber
        if qber > alarm:
            reason = f"QBER {qber:.3f} above the alarm threshold {alarm:.3f}: no key; link down"
        if reason:
            self._down(link, st, dt, qber, reason)
            return
        material = secrets.token_bytes(bits // 8)
        self._push(link, source, st, dt, http, ka, kb, qber, str(uuid.uuid4()), material, material)

    def _down(
        self, link: LinkSpec, st: LinkWorkerStats, dt: float, qber: float, reason: str
    ) -> None:
        """The link stops producing key (QBER alarm): publish why; routing avoids it."""
        st.device_time_s += dt
        st.aborted_blocks += 1
        st.down = True
        st.reason = reason
        self._set_link(link.id, down=True, reason=reason, qber=qber)
        self.state.publish({"type": "alert", "link": link.id, "message": reason})
        self.state.publish(
            {"type": "block", "link": link.id, "key_bits": 0, "qber": qber,
             "device_time_s": st.device_time_s, "aborted": True, "reason": reason}
        )  # fmt: skip
        self.log(f"link {link.id}: {reason}")

    def _aborted(
        self, link: LinkSpec, st: LinkWorkerStats, dt: float, qber: float, reason: str
    ) -> None:
        """One engine block made no key (the link stays up); alert when the reason changes."""
        st.device_time_s += dt
        st.aborted_blocks += 1
        if reason != st.reason:
            self.state.publish({"type": "alert", "link": link.id, "message": reason})
            self.log(f"link {link.id}: block aborted: {reason}")
        st.reason = reason
        self._set_link(link.id, reason=reason, qber=qber, aborted_blocks=st.aborted_blocks,
                       device_time_s=st.device_time_s, rate_bps=st.rate_bps)  # fmt: skip
        self.state.publish(
            {"type": "block", "link": link.id, "key_bits": 0, "qber": qber,
             "device_time_s": st.device_time_s, "aborted": True, "reason": reason,
             "engine": ENGINE_LINK}
        )  # fmt: skip

    def _push(
        self,
        link: LinkSpec,
        source: StandInBlocks | RemoteLinkEngine,
        st: LinkWorkerStats,
        dt: float,
        http: httpx.Client,
        ka: str,
        kb: str,
        qber: float,
        block_id: str,
        key_a: bytes,
        key_b: bytes,
    ) -> None:
        """Push ``key_a`` into the KME at end A and ``key_b`` into the KME at end B. The block's
        device time ``dt`` is counted with its outcome, so a rate read at any moment is the key
        of the blocks completed over their device time."""
        while not self._kmes_ready.wait(0.05):  # the first blocks finish while KMEs boot
            if self._stop.is_set():
                return
        units = 0
        ok = True
        for me, peer, material in ((ka, kb, key_a), (kb, ka, key_b)):
            url = self.urls[link.a if me == ka else link.b]
            body = {
                "peer_KME_ID": peer,
                "blocks": [{"key_ID": block_id, "key": base64.b64encode(material).decode()}],
            }
            try:
                r = http.post(f"{url}/southbound/v1/keys", json=body)
            except httpx.HTTPError:
                ok = False
                break
            if r.status_code != 200:
                ok = False
                break
            units = int(r.json().get("units", 0))
        if not ok:
            st.device_time_s += dt
            st.push_errors += 1
            return
        bits = 8 * len(key_a)
        st.device_time_s += dt
        st.key_bits += bits
        st.blocks += 1
        st.units_pushed += units
        st.block_ids.append(block_id)
        if st.first_push_at is None:
            st.first_push_at = time.time()
        self._set_link(
            link.id, qber=qber, qber_source=source.qber_source, blocks=st.blocks, key_bits=st.key_bits,
            device_time_s=st.device_time_s, rate_bps=st.rate_bps, down=False, reason="",
            achieved_speed=st.device_time_s / max(time.time() - (self.started_at or 0.0), 1e-9),
            engine=source.engine,
        )  # fmt: skip
        st.reason = ""
        self.state.publish(
            {"type": "block", "link": link.id, "key_bits": bits, "qber": qber,
             "device_time_s": st.device_time_s, "aborted": False, "reason": "",
             "qber_source": source.qber_source, "engine": source.engine}
        )  # fmt: skip

    def pause(self) -> None:
        """Stop producing blocks (device clocks stop too); returns when no push is in flight."""
        with self._busy_lock:
            self._paused.set()
        while True:
            with self._busy_lock:
                if not self._busy:
                    return
            time.sleep(0.01)

    def resume(self) -> None:
        """Produce blocks again after :meth:`pause`."""
        self._paused.clear()

    def poll(self) -> dict[str, dict[str, int]]:
        """Read every KME's pool levels now: link id -> {KME id: owned available units}."""
        self._poll_once()
        return self.pools

    def _full(self, link: LinkSpec) -> bool:
        levels = self.pools.get(link.id)
        if not levels:
            return False
        ka, kb = self.kme_of_site[link.a], self.kme_of_site[link.b]
        return min(levels.get(ka, 0), levels.get(kb, 0)) >= self.high_water_units

    def _set_link(self, link_id: str, **values: Any) -> None:
        self.state.update(lambda d: d["links"].setdefault(link_id, {}).update(values))

    # -- controller ----------------------------------------------------------------------------
    def _poll_loop(self) -> None:
        while not self._stop.wait(0.5):
            with contextlib.suppress(Exception):
                self._poll_once()

    def _poll_once(self) -> None:
        sc = self.scenario
        levels: dict[str, dict[str, int]] = {x.id: {} for x in sc.links}
        link_of = {(self.kme_of_site[x.a], self.kme_of_site[x.b]): x.id for x in sc.links} | {
            (self.kme_of_site[x.b], self.kme_of_site[x.a]): x.id for x in sc.links
        }
        unit_bits = 256
        with self._controller_http() as http:
            for site, url in self.urls.items():
                try:
                    r = http.get(f"{url}/peer/v1/pools")
                except httpx.HTTPError:
                    continue
                if r.status_code != 200:
                    continue
                me = self.kme_of_site[site]
                for peer, v in r.json()["links"].items():
                    lid = link_of.get((me, peer))
                    if lid:
                        levels[lid][me] = int(v["owned_units"])
                        unit_bits = int(v["unit_bits"])
        self.pools = levels
        down = [lid for lid, st in self.stats.items() if st.down]
        link_bits = {
            lid: unit_bits * min(v.values()) if len(v) == 2 else 0 for lid, v in levels.items()
        }
        # One temporary file per writer: the controller thread and poll() may write at once.
        tmp = self.state_dir / f"pools.json.{threading.get_ident()}.tmp"
        tmp.write_text(
            json.dumps({"link_bits": link_bits, "down_links": down, "time": time.time()})
        )
        tmp.replace(self.state_dir / "pools.json")
        for lid, v in levels.items():
            self._set_link(lid, pool_units=v)
        self.state.publish({"type": "pools", "units": levels, "down_links": down})
        self._read_relay_events()

    def _read_relay_events(self) -> None:
        for site in self.urls:
            path = self.audit_path(site)
            try:
                with open(path, encoding="utf-8") as f:
                    f.seek(self._audit_offsets.get(site, 0))
                    lines = f.readlines()
                    self._audit_offsets[site] = f.tell()
            except FileNotFoundError:
                continue
            for line in lines:
                with contextlib.suppress(ValueError):
                    e = json.loads(line)
                    if str(e.get("event", "")).startswith("relay"):
                        ev = {"type": "relay", "kme": e.get("kme"), "event": e["event"],
                              "key_ids": e.get("key_ids", []), "detail": e.get("message", "")}  # fmt: skip
                        self.state.update(lambda d, ev=ev: d["relays"].append(ev))
                        self.state.publish(ev)

    # -- stop ----------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop workers and controller, then every KME (SIGTERM, then SIGKILL after 10 s)."""
        self._stop.set()
        for t in self._threads:
            t.join(15)
        self._threads.clear()
        if self._hosts is not None:
            self._hosts.close()
            self._hosts = None
        for proc in self._procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in self._procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        codes = {s: p.returncode for s, p in self._procs.items()}
        self.exit_codes.update(codes)
        self._procs.clear()
        self.state.publish({"type": "stopped", "exit_codes": codes})
        self.log("network stopped")

    def __enter__(self) -> Network:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
