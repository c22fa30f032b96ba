"""A small PKI for a qkdnet network: one CA, a certificate per KME, SAE and QKD module.

The entity's ID is the certificate's subject Common Name (this is how a KME learns who is calling:
ETSI 014 leaves the field open). Every certificate carries SANs ``localhost`` and ``127.0.0.1``
(plus any extra host names), EC P-256 keys, and private keys are written with mode 0600 through
``os.open`` so they are never readable by others, not even for an instant.

Layout of ``DIR``: ``ca.pem`` (+ ``ca.key``), ``<ID>.pem`` and ``<ID>.key`` for each entity.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from qkdnet.kms.messages import ID_RE

VALID_DAYS = 825


@dataclass(frozen=True)
class Issued:
    """Paths of one issued certificate and its private key."""

    entity_id: str
    cert: Path
    key: Path


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "qkdnet"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


class CertificateAuthority:
    """The network's CA, loaded from or created in a directory."""

    def __init__(self, directory: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey):
        self.directory = directory
        self.cert = cert
        self.key = key

    @property
    def cert_path(self) -> Path:
        """``DIR/ca.pem``."""
        return self.directory / "ca.pem"

    @classmethod
    def create_or_load(cls, directory: Path, name: str = "qkdnet CA") -> CertificateAuthority:
        """Load ``DIR/ca.pem``/``ca.key`` or create them."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / "ca.pem", directory / "ca.key"
        if cert_path.exists() and key_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            return cls(directory, cert, key)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _write_private(key_path, key)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(directory, cert, key)

    def issue(self, entity_id: str, *, server: bool, hosts: Sequence[str] = ()) -> Issued:
        """Issue ``DIR/<entity_id>.pem``/``.key`` (client auth; also server auth if ``server``)."""
        if not ID_RE.fullmatch(entity_id):
            raise ValueError(f"ID {entity_id!r} must be 1 to 64 characters from A-Z a-z 0-9 _ . -")
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        names: list[x509.GeneralName] = [x509.DNSName("localhost")]
        names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(entity_id))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_path = self.directory / f"{entity_id}.pem"
        key_path = self.directory / f"{entity_id}.key"
        _write_private(key_path, key)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return Issued(entity_id, cert_path, key_path)


def init_pki(
    directory: Path,
    *,
    kmes: Sequence[str] = (),
    saes: Sequence[str] = (),
    modules: Sequence[str] = (),
    hosts: Sequence[str] = (),
) -> dict[str, Issued]:
    """Create (or reuse) the CA in ``directory`` and issue certificates for every entity.

    KMEs get server+client certificates (they also call each other); SAEs and QKD modules get
    client certificates.
    """
    ca = CertificateAuthority.create_or_load(directory)
    issued: dict[str, Issued] = {}
    seen: set[str] = set()
    for entity_id, server in [*((k, True) for k in kmes), *((s, False) for s in saes),
                              *((m, False) for m in modules)]:  # fmt: skip
        if entity_id in seen:
            raise ValueError(f"ID {entity_id!r} given twice; IDs must be unique in the network")
        seen.add(entity_id)
        issued[entity_id] = ca.issue(entity_id, server=server, hosts=hosts)
    return issued
