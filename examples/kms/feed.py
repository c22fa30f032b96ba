"""A stand-in QKD module for link KME_A—KME_B: push the same random key blocks, with the same
IDs, into both KMEs through the southbound API (see docs/southbound.md)."""

import base64
import os
import ssl
import uuid
from pathlib import Path

import httpx

PKI = Path(__file__).parent / "pki"
ctx = ssl.create_default_context(cafile=str(PKI / "ca.pem"))
ctx.load_cert_chain(str(PKI / "qkd_AB.pem"), str(PKI / "qkd_AB.key"))
blocks = [
    {"key_ID": str(uuid.uuid4()), "key": base64.b64encode(os.urandom(1024)).decode()}
    for _ in range(64)
]  # 64 blocks of 8192 bits: 2048 units of 256 bits at each KME
for url, peer in (("https://127.0.0.1:8443", "KME_B"), ("https://127.0.0.1:8444", "KME_A")):
    r = httpx.post(
        f"{url}/southbound/v1/keys", json={"peer_KME_ID": peer, "blocks": blocks}, verify=ctx
    )
    r.raise_for_status()
    print(url, r.json())
