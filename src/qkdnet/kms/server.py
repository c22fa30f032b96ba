"""A small HTTPS/1.1 ASGI server (asyncio + h11) that hands the verified client certificate to
the application — which uvicorn and hypercorn do not.

TLS is set up with ``verify_mode=CERT_REQUIRED`` against the KME's CA, so a client without a
certificate, or with one from another CA, never completes the handshake. For each connection the
peer certificate's subject CN and SANs go into the ASGI scope as the TLS extension
(``scope["extensions"]["tls"]``, ASGI TLS spec: ``client_cert_chain``, ``client_cert_name``) plus
``client_cert_cn``, which the KME takes as the caller's SAE/KME ID. Keep-alive, one request at a
time per connection, bodies up to :data:`MAX_BODY` bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import h11

log = logging.getLogger("qkdnet.kms.server")
ASGIApp = Callable[..., Awaitable[None]]
MAX_BODY = 4 * 1024 * 1024
IDLE_TIMEOUT_S = 60.0


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop when it is installed (optional: ``pip install qkdnet[fast]``) and
    ``QKDNET_UVLOOP`` is not ``0``, else asyncio's. uvloop's event loop and TLS are in C: the
    same server spends less CPU per request."""
    if os.environ.get("QKDNET_UVLOOP", "1") != "0":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def server_ssl_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """TLS ≥ 1.2 server context that requires a client certificate signed by ``ca``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    ctx.load_verify_locations(str(ca))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def peer_identity(ssl_object: ssl.SSLObject | None) -> dict[str, Any]:
    """CN, SANs and PEM of the verified peer certificate (empty without TLS)."""
    if ssl_object is None:
        return {}
    cert = ssl_object.getpeercert()
    der = ssl_object.getpeercert(binary_form=True)
    if not cert or der is None:
        return {}
    cn = None
    name_parts = []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            name_parts.append(f"{key}={value}")
            if key == "commonName":
                cn = value
    sans = [
        value for kind, value in cert.get("subjectAltName", ()) if kind in ("DNS", "IP Address")
    ]
    return {
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)],
        "client_cert_name": ",".join(reversed(name_parts)),
        "client_cert_error": None,
        "client_cert_cn": cn,
        "client_cert_sans": sans,
        "tls_version": ssl_object.version(),
        "cipher_suite": (ssl_object.cipher() or (None,))[0],
    }


def _error_bytes(message: str) -> bytes:
    return json.dumps({"message": message}).encode()


class _Connection:
    """One client connection: parse requests with h11, run the app, write responses."""

    def __init__(self, app: ASGIApp, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.app = app
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        self.tls = peer_identity(writer.get_extra_info("ssl_object"))
        self.client = writer.get_extra_info("peername")
        self.server = writer.get_extra_info("sockname")
        # bytes of the response being built: written in one piece (one TLS record, one send)
        # when the response is complete, not one write per head, body and end
        self._out: list[bytes] = []

    async def _next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            # asyncio.timeout, not wait_for: wait_for wraps every read in a new Task (3.11)
            async with asyncio.timeout(IDLE_TIMEOUT_S):
                data = await self.reader.read(65536)
            self.conn.receive_data(data)

    async def _send(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            self._out.append(data)

    def _flush(self) -> None:
        if self._out:
            self.writer.write(b"".join(self._out))
            self._out.clear()

    async def _simple(self, status: int, message: str) -> None:
        body = _error_bytes(message)
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            ("connection", "close"),
        ]
        await self._send(h11.Response(status_code=status, headers=headers))
        await self._send(h11.Data(data=body))
        await self._send(h11.EndOfMessage())

    async def run(self) -> None:
        try:
            while True:
                try:
                    event = await self._next_event()
                except h11.RemoteProtocolError as exc:
                    if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        await self._simple(400, f"malformed HTTP request: {exc}")
                        self._flush()
                    break
                if isinstance(event, (h11.ConnectionClosed, h11.EndOfMessage)) or event is None:
                    break
                if not isinstance(event, h11.Request):
                    break
                keep_going = await self._handle(event)
                self._flush()
                await self.writer.drain()
                if not keep_going or self.conn.our_state is h11.MUST_CLOSE:
                    break
                try:
                    self.conn.start_next_cycle()
                except h11.LocalProtocolError:
                    break
        except (TimeoutError, ConnectionError, ssl.SSLError, h11.LocalProtocolError):
            pass
        except Exception:  # never let one connection take the server down
            log.exception("connection failed")
        finally:
            with contextlib.suppress(Exception):
                self.writer.close()

    async def _handle(self, request: h11.Request) -> bool:
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                event = await self._next_event()
            except h11.RemoteProtocolError as exc:
                await self._simple(400, f"malformed HTTP request: {exc}")
                return False
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_BODY:
                    await self._simple(400, f"request body larger than {MAX_BODY} bytes")
                    return False
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                return False
        body = b"".join(chunks)
        target = request.target.decode("latin-1")
        path, _, query = target.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version.decode(),
            "method": request.method.decode("ascii", "replace"),
            "scheme": "https" if self.tls else "http",
            "path": unquote(path),
            "raw_path": path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "root_path": "",
            "headers": [(k.lower(), v) for k, v in request.headers],
            "client": self.client[:2] if self.client else None,
            "server": self.server[:2] if self.server else None,
            "extensions": {"tls": self.tls} if self.tls else {},
            "state": {},
        }
        body_sent = False
        started = False

        async def receive() -> dict[str, Any]:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                await self._send(h11.Response(status_code=message["status"], headers=headers))
            elif message["type"] == "http.response.body":
                data = message.get("body", b"")
                if data:
                    await self._send(h11.Data(data=data))
                if not message.get("more_body", False):
                    await self._send(h11.EndOfMessage())
                else:  # a streamed body goes out as it comes
                    self._flush()
                    await self.writer.drain()

        try:
            await self.app(scope, receive, send)
        except Exception:
            log.exception("application error")
            if not started:
                await self._simple(503, "internal error in the KME; see its log")
            return False
        return True


@dataclass
class Server:
    """Serve ``app`` over TLS on ``host:port`` (``port=0`` picks a free port)."""

    app: ASGIApp
    ssl_context: ssl.SSLContext | None
    host: str = "127.0.0.1"
    port: int = 0
    _server: asyncio.base_events.Server | None = field(default=None, repr=False)

    async def start(self) -> None:
        """Bind and start accepting; sets :attr:`port`."""

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _Connection(self.app, reader, writer).run()

        self._server = await asyncio.start_server(
            on_client,
            self.host,
            self.port,
            ssl=self.ssl_context,
            ssl_handshake_timeout=10,
            backlog=512,
            reuse_address=True,
        )
        sock = self._server.sockets[0]
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = sock.getsockname()[1]

    async def serve_forever(self) -> None:
        """Start (if needed) and serve until cancelled."""
        if self._server is None:
            await self.start()
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    async def stop(self) -> None:
        """Stop accepting and close the listening socket."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class ThreadedServer:
    """Run a :class:`Server` on its own event loop in a background thread (tests, runtime)."""

    def __init__(self, app: ASGIApp, ssl_context: ssl.SSLContext | None, host: str = "127.0.0.1",
                 port: int = 0) -> None:  # fmt: skip
        self.server = Server(app, ssl_context, host, port)
        self.loop = new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="kme-server")
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> ThreadedServer:
        """Start and wait until the port is bound."""
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    @property
    def port(self) -> int:
        """The bound port."""
        return self.server.port

    def stop(self) -> None:
        """Stop the server and its loop."""
        if not self.loop.is_running():
            return
        fut = asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop)
        try:
            fut.result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
