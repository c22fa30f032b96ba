"""A small HTTPS/1.1 ASGI server (asyncio; a strict fast parser, h11 for the rest) that hands the verified client certificate to
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
import gc
import json
import logging
import os
import re
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
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


def freeze_heap() -> None:
    """Collect once, then move every object alive (modules, app, routes, pools) out of the
    garbage collector's view (``gc.freeze``): a full collection otherwise walks all of them —
    measured under the KME benchmark's load, 6-7 full collections per process with pauses of
    100-525 ms each, the requests' p99. Call when the server is set up, before it serves."""
    gc.collect()
    gc.freeze()


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


# the fast path's request grammar (RFC 9112, a strict subset): anything else goes to h11
_REQUEST_LINE = re.compile(rb"(GET|POST) (/[\x21-\x7e]*) HTTP/1\.1")
_HEADER_LINE = re.compile(
    rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*((?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?)[ \t]*"
)
_MAX_HEAD = 64 * 1024


def _parse_head(head: bytes) -> tuple[str, str, list[tuple[bytes, bytes]], int, bool] | None:
    """``(method, target, headers, content length, close)`` of a plain HTTP/1.1 GET or POST
    head (without its final CRLF CRLF), or ``None`` when it is anything else — malformed,
    chunked, ``Expect``, no ``Host``, repeated ``Content-Length`` — which h11 then handles."""
    lines = head.split(b"\r\n")
    m = _REQUEST_LINE.fullmatch(lines[0])
    if m is None:
        return None
    headers = []
    length = -1
    close = False
    host = False
    for line in lines[1:]:
        h = _HEADER_LINE.fullmatch(line)
        if h is None:
            return None
        name = h.group(1).lower()
        value = h.group(2)
        if name == b"content-length":
            if length >= 0 or not value.isdigit() or len(value) > 12:
                return None
            length = int(value)
        elif name == b"host":
            if host:
                return None
            host = True
        elif name == b"connection":
            close = b"close" in value.lower()
        elif name in (b"transfer-encoding", b"expect", b"upgrade"):
            return None
        headers.append((name, value))
    if not host:
        return None
    return m.group(1).decode(), m.group(2).decode("latin-1"), headers, max(length, 0), close


class _Connection:
    """One client connection: run the app on each request, write its response.

    Plain HTTP/1.1 GET and POST requests (the whole ETSI API) are parsed by a small strict
    parser (:func:`_parse_head`; h11 cost about 20 % of the event loop's time per request);
    at the first request it does not take — malformed, chunked, another method — the
    connection is handed to h11 for good, which answers malformed requests with 400."""

    def __init__(self, app: ASGIApp, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.app = app
        self.reader = reader
        self.writer = writer
        self.conn: h11.Connection | None = None  # set when the connection goes to h11
        self.tls = peer_identity(writer.get_extra_info("ssl_object"))
        self.client = writer.get_extra_info("peername")
        self.server = writer.get_extra_info("sockname")
        # bytes of the response being built: written in one piece (one TLS record, one send)
        # when the response is complete, not one write per head, body and end
        self._out: list[bytes] = []
        self._close = False  # fast path: the client asked to close after this response

    async def _read(self) -> bytes:
        # asyncio.timeout, not wait_for: wait_for wraps every read in a new Task (3.11)
        async with asyncio.timeout(IDLE_TIMEOUT_S):
            return await self.reader.read(65536)

    async def _next_event(self) -> Any:
        assert self.conn is not None
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await self._read())

    async def _send(self, event: Any) -> None:
        assert self.conn is not None
        data = self.conn.send(event)
        if data:
            self._out.append(data)

    def _flush(self) -> None:
        if self._out:
            self.writer.write(b"".join(self._out))
            self._out.clear()

    def _fast_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Encode a whole response (fast path): status line, headers, Content-Length, body."""
        try:
            reason = HTTPStatus(status).phrase.encode()
        except ValueError:
            reason = b""
        out = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        has_length = False
        for name, value in headers:
            name = name.encode("latin-1") if isinstance(name, str) else name
            value = value.encode("latin-1") if isinstance(value, str) else value
            if name.lower() == b"content-length":
                has_length = True
            out.append(name + b": " + value + b"\r\n")
        if not has_length:
            out.append(b"content-length: %d\r\n" % len(body))
        if self._close:
            out.append(b"connection: close\r\n")
        out.append(b"\r\n")
        out.append(body)
        self._out.append(b"".join(out))

    async def _simple(self, status: int, message: str) -> None:
        body = _error_bytes(message)
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            ("connection", "close"),
        ]
        if self.conn is None:  # the connection closes after it
            self._close = True
            self._fast_response(status, [(k.encode(), v.encode()) for k, v in headers[:2]], body)
            return
        await self._send(h11.Response(status_code=status, headers=headers))
        await self._send(h11.Data(data=body))
        await self._send(h11.EndOfMessage())

    async def run(self) -> None:
        try:
            buffered = await self._run_fast()
            if buffered is not None:
                self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
                self.conn.receive_data(buffered)
                await self._run_h11()
        except (TimeoutError, ConnectionError, ssl.SSLError, h11.LocalProtocolError):
            pass
        except Exception:  # never let one connection take the server down
            log.exception("connection failed")
        finally:
            with contextlib.suppress(Exception):
                self.writer.close()

    async def _run_fast(self) -> bytes | None:
        """Serve requests with the fast parser; the unparsed bytes when the connection must go
        to h11, ``None`` when it is done."""
        buf = bytearray()
        while True:
            end = buf.find(b"\r\n\r\n")
            while end < 0:
                if len(buf) > _MAX_HEAD:
                    return bytes(buf)
                data = await self._read()
                if not data:
                    return bytes(buf) if buf else None  # h11 answers a cut request
                buf += data
                end = buf.find(b"\r\n\r\n")
            parsed = _parse_head(bytes(buf[:end]))
            if parsed is None:
                return bytes(buf)
            method, target, headers, length, self._close = parsed
            if length > MAX_BODY:
                await self._simple(400, f"request body larger than {MAX_BODY} bytes")
                self._flush()
                return None
            start = end + 4
            while len(buf) < start + length:
                data = await self._read()
                if not data:
                    return None
                buf += data
            body = bytes(buf[start : start + length])
            del buf[: start + length]
            keep_going = await self._serve(method, target, headers, body)
            self._flush()
            await self.writer.drain()
            if not keep_going or self._close:
                return None

    async def _run_h11(self) -> None:
        assert self.conn is not None
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
        return await self._serve(
            request.method.decode("ascii", "replace"),
            request.target.decode("latin-1"),
            [(k.lower(), v) for k, v in request.headers],
            b"".join(chunks),
            request.http_version.decode(),
        )

    async def _serve(self, method: str, target: str, headers: list[tuple[bytes, bytes]],
                     body: bytes, http_version: str = "1.1") -> bool:  # fmt: skip
        """Run the app on one request; its response goes to ``self._out``."""
        path, _, query = target.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": http_version,
            "method": method,
            "scheme": "https" if self.tls else "http",
            "path": unquote(path),
            "raw_path": path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "root_path": "",
            "headers": headers,
            "client": self.client[:2] if self.client else None,
            "server": self.server[:2] if self.server else None,
            "extensions": {"tls": self.tls} if self.tls else {},
            "state": {},
        }
        body_sent = False
        started = False
        fast = self.conn is None
        status = 0
        out_headers: list[tuple[bytes, bytes]] = []
        parts: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal started, status, out_headers
            if message["type"] == "http.response.start":
                started = True
                if fast:
                    status, out_headers = message["status"], list(message.get("headers", []))
                    return
                headers = list(message.get("headers", []))
                await self._send(h11.Response(status_code=message["status"], headers=headers))
            elif message["type"] == "http.response.body":
                data = message.get("body", b"")
                more = message.get("more_body", False)
                if fast:  # the whole body, then one write
                    parts.append(data)
                    if not more:
                        self._fast_response(status, out_headers, b"".join(parts))
                    return
                if data:
                    await self._send(h11.Data(data=data))
                if not more:
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
