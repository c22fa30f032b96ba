"""Configuration of one KME process (``qkdnet kme serve --config FILE``), YAML or JSON.

Example (paths are relative to the file)::

    kme_id: KME_A
    listen: {host: 127.0.0.1, port: 8443}
    tls: {cert: pki/KME_A.pem, key: pki/KME_A.key, ca: pki/ca.pem}
    store: {url: "sqlite:///a.db"}          # or postgresql+psycopg://user@host/db, schema: kme_a
    master_key_file: a.master              # 32 random bytes, mode 0600; created if missing
    audit_log: a.audit.jsonl
    saes: [alice]
    peers:
      - {kme_id: KME_B, url: "https://127.0.0.1:8444", saes: [bob], qkd_modules: [qkd_AB]}
    remote_saes: {carol: KME_C}             # SAEs at non-adjacent KMEs (served by a relay)
    limits: {key_size: 256, max_key_per_request: 1024, max_SAE_ID_count: 4}

A bad file fails with one message naming the file, the field path and what is allowed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from qkdnet.kms.messages import ID_RE, Limits

EntityId = Annotated[str, Field(pattern=f"^{ID_RE.pattern}$", min_length=1, max_length=64)]


class ConfigError(ValueError):
    """The configuration file is missing or invalid; the message names file and field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListenConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8443, ge=0, le=65535)


class TLSConfig(_Model):
    cert: Path
    key: Path
    ca: Path


class StoreConfig(_Model):
    url: str = "sqlite:///kme.db"
    schema_name: str | None = Field(None, alias="schema", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not (value.startswith("sqlite:///") or value.startswith("postgresql+psycopg://")):
            raise ValueError("must start with sqlite:/// or postgresql+psycopg://")
        return value


class PeerConfig(_Model):
    kme_id: EntityId
    url: str = Field(pattern=r"^https://")
    saes: list[EntityId] = []
    qkd_modules: list[EntityId] = []


class LimitsConfig(_Model):
    key_size: int = Field(256, ge=8, le=65536, multiple_of=8)
    min_key_size: int = Field(64, ge=8, le=65536, multiple_of=8)
    max_key_size: int = Field(8192, ge=8, le=65536, multiple_of=8)
    max_key_per_request: int = Field(1024, ge=1, le=100_000)
    max_key_count: int = Field(1_000_000, ge=1)
    max_SAE_ID_count: int = Field(4, ge=0, le=64)  # noqa: N815 - the ETSI field name

    @model_validator(mode="after")
    def _order(self) -> LimitsConfig:
        if not self.min_key_size <= self.key_size <= self.max_key_size:
            raise ValueError("need min_key_size <= key_size <= max_key_size")
        return self

    def limits(self) -> Limits:
        """As the KME's :class:`Limits`."""
        return Limits(
            key_size=self.key_size,
            min_key_size=self.min_key_size,
            max_key_size=self.max_key_size,
            max_key_per_request=self.max_key_per_request,
            max_key_count=self.max_key_count,
            max_sae_id_count=self.max_SAE_ID_count,
        )


class KMEConfig(_Model):
    """One KME process."""

    kme_id: EntityId
    listen: ListenConfig = ListenConfig()
    tls: TLSConfig
    store: StoreConfig = StoreConfig()
    master_key_file: Path
    audit_log: Path | None = None
    saes: list[EntityId] = []
    peers: list[PeerConfig] = []
    remote_saes: dict[EntityId, EntityId] = {}
    unit_bits: int = Field(256, ge=8, le=65536, multiple_of=8)
    limits: LimitsConfig = LimitsConfig()

    @model_validator(mode="after")
    def _consistent(self) -> KMEConfig:
        ids = [p.kme_id for p in self.peers]
        if len(set(ids)) != len(ids):
            raise ValueError("peers: each kme_id may appear once")
        if self.kme_id in ids:
            raise ValueError("peers: a KME cannot be its own peer")
        remote = [s for p in self.peers for s in p.saes] + list(self.remote_saes)
        clash = set(self.saes) & set(remote)
        if clash:
            raise ValueError(f"SAE IDs both local and remote: {sorted(clash)}")
        return self

    def sae_directory(self) -> dict[str, str]:
        """SAE ID -> KME ID for every SAE not attached to this KME."""
        out = {s: p.kme_id for p in self.peers for s in p.saes}
        out.update(self.remote_saes)
        return out

    def qkd_modules(self) -> dict[str, str]:
        """QKD module CN -> peer KME of the link it feeds."""
        return {m: p.kme_id for p in self.peers for m in p.qkd_modules}


def _resolve(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make relative file paths (and sqlite:/// paths) relative to the config file."""

    def rel(value: Any) -> Any:
        if isinstance(value, str) and not Path(value).is_absolute():
            return str(base / value)
        return value

    out = dict(data)
    if isinstance(out.get("tls"), dict):
        out["tls"] = {k: rel(v) for k, v in out["tls"].items()}
    for name in ("master_key_file", "audit_log"):
        if name in out:
            out[name] = rel(out[name])
    store = out.get("store")
    if isinstance(store, dict) and isinstance(store.get("url"), str):
        url = store["url"]
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            store = {**store, "url": "sqlite:///" + str(base / url[len("sqlite:///") :])}
            out["store"] = store
    return out


def load_config(path: Path) -> KMEConfig:
    """Read and validate ``path`` (.yaml/.yml/.json)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                          f"{str(exc).splitlines()[0]}") from None  # fmt: skip
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping with kme_id, tls, master_key_file, ...")
    try:
        return KMEConfig.model_validate(_resolve(data, path.parent.resolve()))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ConfigError(f"{path}: field {where}: {err['msg']}") from None
