"""KME benchmark: ETSI 014 enc_keys throughput and latency over mutual TLS on loopback.

Two KME processes (``qkdnet kme serve``) form one link, fed through the southbound API; 32
concurrent keep-alive mTLS clients (a lean asyncio HTTP/1.1 client, so the load generator costs
little CPU) call enc_keys at KME A, which confirms every key to KME B before answering.

Figures, for the SQLite store and (if reachable) PostgreSQL:
* requests/s of one 256-bit key each, baseline: a no-op request (unknown path, JSON 404) on the
  same server and connections (TLS + HTTP + app, no store) — the ratio is the share of the
  server's plain request capacity left when every request delivers a key;
* p50 and p99 latency of those requests (baseline: the same percentiles of the no-op request);
* keys/s in batched requests (``number`` = 512), baseline: keys/s of single-key requests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import yaml

from qkdnet.bench import Figure
from qkdnet.kms.client import client_ssl_context
from qkdnet.kms.pki import init_pki
from qkdnet.kms.server import new_event_loop

AREA = "kms"
CLIENTS = 32
PG_URL = os.environ.get("QKDNET_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Conn:
    """One keep-alive HTTP/1.1 connection over TLS with a pre-built request."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def call(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length)
        return status, body


def _request(method: str, path: str, body: dict | None = None) -> bytes:
    payload = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
    return (head + f"content-length: {len(payload)}\r\n\r\n").encode() + payload


async def _load(
    port: int, ctx: ssl.SSLContext, request: bytes, seconds: float, expect: int = 200
) -> tuple[int, list[float], float]:
    """``CLIENTS`` connections repeating ``request`` for ``seconds`` or until the pool is empty:
    (successful requests, their latencies, elapsed seconds)."""
    conns = []
    for _ in range(CLIENTS):
        r, w = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="localhost"
        )
        conns.append(_Conn(r, w))
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(conn: _Conn) -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            status, _ = await conn.call(request)
            if status != expect:
                return  # 503: the pool is empty; anything else would be a bug
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - start
    for c in conns:
        c.writer.close()
    return len(latencies), latencies, elapsed


class _Link:
    """Two KME processes joined by one link, in a temporary directory."""

    def __init__(self, store_url: str | None, units: int) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="qkdnet-bench-kms-"))
        pki = self.tmp / "pki"
        init_pki(pki, kmes=["KME_A", "KME_B"], saes=["alice", "bob"], modules=["qkd_AB"])
        self.pki = pki
        self.ports = {"KME_A": _free_port(), "KME_B": _free_port()}
        self.procs: list[subprocess.Popen] = []
        self.schemas: list[str] = []
        for me, peer, sae, peer_sae in (
            ("KME_A", "KME_B", "alice", "bob"),
            ("KME_B", "KME_A", "bob", "alice"),
        ):
            store: dict[str, str] = {"url": f"sqlite:///{me}.db"}
            if store_url:
                schema = f"bench_{me.lower()}_{uuid.uuid4().hex[:10]}"
                self.schemas.append(schema)
                store = {"url": store_url, "schema": schema}
            cfg = {
                "kme_id": me,
                "listen": {"host": "127.0.0.1", "port": self.ports[me]},
                "tls": {
                    "cert": str(pki / f"{me}.pem"),
                    "key": str(pki / f"{me}.key"),
                    "ca": str(pki / "ca.pem"),
                },
                "store": store,
                "master_key_file": f"{me}.master",
                "saes": [sae],
                "peers": [
                    {
                        "kme_id": peer,
                        "url": f"https://127.0.0.1:{self.ports[peer]}",
                        "saes": [peer_sae],
                        "qkd_modules": ["qkd_AB"],
                    }
                ],
            }
            path = self.tmp / f"{me}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            self.procs.append(self._start(path))
        self._feed(units)

    def _start(self, config: Path) -> subprocess.Popen:
        log = config.with_suffix(".log")
        src = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "qkdnet.cli", "kme", "serve", "--config",
                                     str(config)], stdout=out, stderr=subprocess.STDOUT, env=env)  # fmt: skip
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            if "listening on" in log.read_text():
                return proc
            time.sleep(0.05)
        proc.kill()
        raise RuntimeError(f"KME did not start: {log.read_text()[-2000:]}")

    def _feed(self, units: int) -> None:
        ctx = client_ssl_context(
            self.pki / "qkd_AB.pem", self.pki / "qkd_AB.key", self.pki / "ca.pem"
        )
        per_block = 64  # 64 units of 256 bits per block
        for start in range(0, units, 64 * 500):
            n_blocks = min(500, (units - start) // per_block)
            blocks = [{"key_ID": str(uuid.uuid4()), "key": base64.b64encode(os.urandom(32 * per_block)).decode()}
                      for _ in range(n_blocks)]  # fmt: skip
            for me, peer in (("KME_A", "KME_B"), ("KME_B", "KME_A")):
                with httpx.Client(verify=ctx, timeout=120) as c:
                    r = c.post(f"https://127.0.0.1:{self.ports[me]}/southbound/v1/keys",
                               json={"peer_KME_ID": peer, "blocks": blocks})  # fmt: skip
                    r.raise_for_status()

    def sae_context(self) -> ssl.SSLContext:
        return client_ssl_context(
            self.pki / "alice.pem", self.pki / "alice.key", self.pki / "ca.pem"
        )

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.schemas:
            from sqlalchemy import create_engine, text

            with create_engine(PG_URL).begin() as conn:
                for schema in self.schemas:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def _pct(latencies: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(latencies) * 1e3, q)) if latencies else float("nan")


def _measure(store: str, store_url: str | None, quick: bool) -> list[Figure]:
    seconds = 1.5 if quick else 4.0
    link = _Link(store_url, units=30_000 if quick else 200_000)
    try:
        port = link.ports["KME_A"]
        ctx = link.sae_context()
        noop = _request("GET", "/nowhere")
        single = _request("POST", "/api/v1/keys/bob/enc_keys", {"number": 1, "size": 256})
        batch_n = 512
        batched = _request("POST", "/api/v1/keys/bob/enc_keys", {"number": batch_n, "size": 256})
        # the load generator runs on the same event loop kind as the KMEs (uvloop if installed)
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            base_n, base_lat, t0 = runner.run(_load(port, ctx, noop, seconds, expect=404))
            n1, lat1, t1 = runner.run(_load(port, ctx, single, seconds))
            nb, _, tb = runner.run(_load(port, ctx, batched, seconds))
    finally:
        link.close()
    base_rps, rps = base_n / t0, n1 / t1
    keys_batched = nb * batch_n / tb
    probe = new_event_loop()
    uv = ", uvloop" if type(probe).__module__.startswith("uvloop") else ""
    probe.close()
    note = f" ({store}, {CLIENTS} mTLS clients{uv})"
    return [
        Figure(
            AREA,
            f"enc_keys 1x256-bit requests/s{note}",
            rps,
            "req/s",
            "no-op round trip req/s",
            base_rps,
            ">= 1000 req/s",
        ),
        Figure(
            AREA,
            f"enc_keys p50 latency{note}",
            _pct(lat1, 50),
            "ms",
            "no-op round trip p50",
            _pct(base_lat, 50),
        ),
        Figure(
            AREA,
            f"enc_keys p99 latency{note}",
            _pct(lat1, 99),
            "ms",
            "no-op round trip p99",
            _pct(base_lat, 99),
            "< 50 ms",
        ),
        Figure(
            AREA,
            f"enc_keys batched ({batch_n}/request) keys/s{note}",
            keys_batched,
            "keys/s",
            "single-key requests keys/s",
            rps,
            ">= 50000 keys/s",
        ),
    ]


def _pg_reachable() -> bool:
    try:
        from sqlalchemy import create_engine, text

        with create_engine(PG_URL, connect_args={"connect_timeout": 3}).connect() as conn:
            conn.execute(text("select 1"))
        return True
    except Exception:
        return False


def run(quick: bool) -> list[Figure]:
    """SQLite always; PostgreSQL when reachable at ``QKDNET_BENCH_PG``."""
    figures = _measure("SQLite", None, quick)
    if _pg_reachable():
        figures += _measure("PostgreSQL", PG_URL, quick)
    return figures
