"""The KME's HTTP/1.1 server on raw TLS connections: the fast parser serves plain requests
(pipelined, ``Connection: close``), and anything else — chunked bodies, other methods,
malformed heads — is handed to h11, which serves it or answers 400 with a JSON message."""

from __future__ import annotations

import json
import socket
import ssl
from pathlib import Path

import pytest

from kms_fixtures import Pair, make_pair, make_pki, make_store
from qkdnet.kms import ThreadedServer
from qkdnet.kms.kme import PeerError, owner_of
from qkdnet.kms.peering import HttpsPeer
from qkdnet.kms.store import GrantGroup


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    d = tmp_path_factory.mktemp("http")
    p = make_pair(
        make_pki(d / "pki"), make_store(f"sqlite:///{d}/a.db"), make_store(f"sqlite:///{d}/b.db")
    )
    p.feed(100)
    yield p
    p.close()


def _exchange(pair: Pair, raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Send ``raw`` as alice on one TLS connection; every response until the server closes."""
    pki: Path = pair.pki
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    ctx.load_cert_chain(str(pki / "alice.pem"), str(pki / "alice.key"))
    ctx.check_hostname = False
    sock = socket.create_connection(("127.0.0.1", pair.server_a.port), timeout=10)
    with sock, ctx.wrap_socket(sock) as tls:
        tls.sendall(raw)
        data = b""
        while True:
            try:
                chunk = tls.recv(65536)
            except (ssl.SSLError, ConnectionError, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        n = int(headers["content-length"])
        out.append((int(lines[0].split()[1]), headers, rest[:n]))
        data = rest[n:]
    return out


def _post(body: bytes, extra: str = "") -> bytes:
    return (
        f"POST /api/v1/keys/bob/enc_keys HTTP/1.1\r\nHost: x\r\n{extra}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def test_pipelined_then_close(pair: Pair) -> None:
    raw = _post(b'{"number": 2}') + _post(b"", "Connection: close\r\n") + _post(b"{}")
    got = _exchange(pair, raw)
    assert [s for s, _, _ in got] == [200, 200]  # nothing after Connection: close
    assert len(json.loads(got[0][2])["keys"]) == 2 and len(json.loads(got[1][2])["keys"]) == 1
    assert got[1][1]["connection"] == "close"


def test_chunked_body_goes_to_h11(pair: Pair) -> None:
    body = b'{"number": 3}'
    raw = (
        b"POST /api/v1/keys/bob/enc_keys HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n" + _post(b"", "Connection: close\r\n")
    )  # fmt: skip
    got = _exchange(pair, raw)
    assert [s for s, _, _ in got] == [200, 200]
    assert len(json.loads(got[0][2])["keys"]) == 3


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /api/v1/keys/bob/enc_keys HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",  # no Host
        b"GARBAGE\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
    ],
)
def test_malformed_requests_get_400_json(pair: Pair, raw: bytes) -> None:
    got = _exchange(pair, raw)
    assert len(got) == 1
    status, headers, body = got[0]
    assert status == 400 and headers["content-type"] == "application/json"
    assert isinstance(json.loads(body)["message"], str)


def test_https_peer_reconnects_after_the_peer_restarts(tmp_path: Path) -> None:
    """Grants go over one kept-alive connection per thread; when the peer KME restarts (the
    connection is gone), the next grant is sent again on a new one. A peer that is down is a
    PeerError."""
    pki = make_pki(tmp_path / "pki")
    p = make_pair(pki, make_store(f"sqlite:///{tmp_path}/a.db"), make_store(f"sqlite:///{tmp_path}/b.db"))  # fmt: skip
    try:
        bl = p.feed(20)
        peer = HttpsPeer(p.url_b, cert=pki / "KME_A.pem", key=pki / "KME_A.key", ca=pki / "ca.pem")
        mine = [k for k, _ in bl if owner_of(k, "KME_A", "KME_B") == "KME_A"]
        peer.grant("KME_A", [GrantGroup("alice", ("bob",), 256, [mine[0]])])
        port, app, ctx = p.server_b.port, p.server_b.server.app, p.server_b.server.ssl_context
        p.server_b.stop()
        with pytest.raises(PeerError):
            peer.grant("KME_A", [GrantGroup("alice", ("bob",), 256, [mine[1]])])
        p.server_b = ThreadedServer(app, ctx, port=port).start()
        peer.grant("KME_A", [GrantGroup("alice", ("bob",), 256, [mine[1]])])
        assert p.b.store.pending_grants() == 2
        peer.close()
    finally:
        p.close()
