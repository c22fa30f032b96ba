"""Link engines in host processes, so a running network's links use every core.

The runtime has one worker thread per link, and the link engine (simulation + post-processing)
is mostly Python and numpy holding the GIL: in threads, all links of a network share one core.
:class:`EngineHosts` starts ``min(cores, links)`` processes (fresh interpreters, safe beside the
runtime's threads); each hosts the :class:`~qkdnet.network.link_worker.LinkEngineBlocks` of
the links assigned to it round-robin and answers one request at a time over a pipe. A worker
thread holds a :class:`RemoteLinkEngine`, which has the interface of ``LinkEngineBlocks``
(``next_block``, ``qber``, ``block_device_s``) and waits its turn on its host. Key blocks come
back to the runtime, which pushes them to the KMEs as before (keys never leave through logs).

A host exits when asked, or when its pipe closes (the runtime process died).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not on Windows: hosts then compile side by side
    fcntl = None  # type: ignore[assignment]

from qkdnet.link import AbortedBlock, KeyBlockPair
from qkdnet.network.link_worker import ENGINE_LINK, LinkEngineBlocks
from qkdnet.network.scenario import LinkSpec
from qkdnet.physics.hardware import get_preset


@contextlib.contextmanager
def _first_compile(first: bool) -> Iterator[None]:
    """Hosts run their first block one at a time (a lock file): on a fresh install the first
    compiles the engine's numba kernels into the on-disk cache and the others then load them,
    instead of every host compiling the same kernels at once on the same cores."""
    if not first or fcntl is None:
        yield
        return
    path = Path(tempfile.gettempdir()) / "qkdnet-engine-compile.lock"
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _serve(conn: Connection) -> None:
    """A host's loop: ("create", key, link, seed, pulses, live) | ("next", key, device_time) |
    ("exit",)."""
    engines: dict[str, LinkEngineBlocks] = {}
    first = True
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        op = message[0]
        if op == "exit":
            conn.send((True, None))
            return
        try:
            if op == "create":
                _, key, link, seed, pulses, live = message
                engines[key] = LinkEngineBlocks(link, seed, pulses, live=live)
                reply: Any = None
            elif op == "next":
                _, key, device_time_s = message
                engine = engines[key]
                with _first_compile(first):
                    reply = (engine.next_block(device_time_s), engine.qber)
                first = False
            else:
                raise ValueError(f"unknown request {op!r}")
        except Exception as exc:  # reported to the worker thread, which raises it
            conn.send((False, f"{type(exc).__name__}: {exc}"))
            continue
        conn.send((True, reply))


class EngineHost:
    """One host process (``python -m qkdnet.network.engine_hosts FD``, connected over a socket
    pair: no re-import of the caller's ``__main__`` as multiprocessing's spawn would do) and
    the lock that gives its connection to one worker thread at a time."""

    def __init__(self, name: str) -> None:
        mine, theirs = socket.socketpair()
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, "-m", "qkdnet.network.engine_hosts", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            env=env,
            start_new_session=True,  # Ctrl-C goes to the runtime, which stops the hosts
        )
        theirs.close()
        self._conn = Connection(mine.detach())
        self._lock = threading.Lock()

    def call(self, *message: Any) -> Any:
        """Send one request and wait for its answer (raises ``RuntimeError`` on a failure)."""
        with self._lock:
            try:
                self._conn.send(message)
                ok, value = self._conn.recv()
            except (EOFError, OSError) as exc:
                code = self.process.poll()
                raise RuntimeError(f"link engine host {self.name} is gone (exit {code})") from exc
        if not ok:
            raise RuntimeError(f"link engine host {self.name}: {value}")
        return value

    def close(self, timeout_s: float = 10.0) -> int | None:
        """Ask the host to exit (after any request in progress); kill it if it does not."""
        with self._lock:
            try:
                self._conn.send(("exit",))
                if self._conn.poll(timeout_s):
                    self._conn.recv()
            except (EOFError, OSError):
                pass
            self._conn.close()
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)


class EngineHosts:
    """The pool of host processes of one running network."""

    def __init__(self, n_links: int, processes: int | None = None) -> None:
        count = processes or min(os.cpu_count() or 1, max(n_links, 1))
        self.hosts = [EngineHost(f"qkdnet-engine-{i}") for i in range(max(count, 1))]
        self._next = 0

    def engine(
        self, link: LinkSpec, seed: int, block_pulses: int, live: bool = False
    ) -> RemoteLinkEngine:
        """A link engine on the next host (round-robin)."""
        host = self.hosts[self._next % len(self.hosts)]
        self._next += 1
        return RemoteLinkEngine(host, link, seed, block_pulses, live)

    def close(self) -> list[int | None]:
        return [host.close() for host in self.hosts]


class RemoteLinkEngine:
    """:class:`~qkdnet.network.link_worker.LinkEngineBlocks` of one link, run on a host."""

    engine = ENGINE_LINK
    qber_source = "link engine"

    def __init__(
        self, host: EngineHost, link: LinkSpec, seed: int, block_pulses: int, live: bool = False
    ) -> None:
        self.host = host
        self.link = link
        self.block_pulses = int(block_pulses)
        self.block_device_s = self.block_pulses / get_preset(link.hardware).source.rate_hz
        self.qber = 0.0
        host.call("create", link.id, link, int(seed), self.block_pulses, bool(live))

    def next_block(self, device_time_s: float = 0.0) -> KeyBlockPair | AbortedBlock:
        """The block starting at ``device_time_s`` (see ``LinkEngineBlocks.next_block``)."""
        block, self.qber = self.host.call("next", self.link.id, device_time_s)
        return block


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
