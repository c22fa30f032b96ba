"""``qkdnet pki init``, ``qkdnet kme serve --config`` validation and the SAE commands."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from kms_fixtures import Pair, make_pair, make_pki, make_store
from qkdnet.cli import main
from qkdnet.kms.config import ConfigError, load_config


def test_pki_init_keys_0600_and_sans(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "pki"
    assert main(["pki", "init", "--dir", str(d), "--kme", "KME_A", "--sae", "alice", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["issued"]) == {"KME_A", "alice"}
    for name in ("ca.key", "KME_A.key", "alice.key"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((d / "alice.pem").read_bytes())
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "alice"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert main(["pki", "init", "--dir", str(d), "--sae", "bad id!"]) == 2
    assert "invalid value for --kme/--sae/--module" in capsys.readouterr().err


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "kme.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


GOOD = {
    "kme_id": "KME_A",
    "tls": {"cert": "a.pem", "key": "a.key", "ca": "ca.pem"},
    "master_key_file": "a.master",
    "saes": ["alice"],
    "peers": [{"kme_id": "KME_B", "url": "https://127.0.0.1:8444", "saes": ["bob"]}],
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kme_id": "KME A"}, "kme_id"),
        ({"store": {"url": "mysql://x"}}, "store.url"),
        ({"listen": {"port": 70000}}, "listen.port"),
        ({"limits": {"key_size": 100}}, "limits.key_size"),
        ({"colour": "red"}, "colour"),
        ({"peers": [{"kme_id": "KME_B", "url": "http://x"}]}, "peers.0.url"),
        ({"tls": None}, "tls"),
    ],
)
def test_config_errors_name_file_and_field(tmp_path: Path, change: dict, field: str) -> None:
    path = _write(tmp_path, {**GOOD, **change})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and f"field {field}" in str(err.value)


def test_config_paths_relative_to_file(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, {**GOOD, "store": {"url": "sqlite:///a.db"}}))
    assert cfg.tls.cert == tmp_path / "a.pem" and cfg.store.url == f"sqlite:///{tmp_path}/a.db"
    assert cfg.sae_directory() == {"bob": "KME_B"}


def test_serve_bad_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, {**GOOD, "listen": {"port": -1}})
    assert main(["kme", "serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "field listen.port" in err
    assert main(["kme", "serve", "--config", str(tmp_path / "missing.yaml")]) == 2


@pytest.fixture()
def pair(tmp_path: Path) -> Pair:
    pki = make_pki(tmp_path / "pki")
    p = make_pair(
        pki, make_store(f"sqlite:///{tmp_path}/a.db"), make_store(f"sqlite:///{tmp_path}/b.db")
    )
    p.feed(20)
    yield p
    p.close()


def test_sae_commands(pair: Pair, capsys: pytest.CaptureFixture[str]) -> None:
    def creds(sae: str) -> list[str]:
        return ["--cert", str(pair.pki / f"{sae}.pem"), "--key", str(pair.pki / f"{sae}.key"),
                "--ca", str(pair.pki / "ca.pem")]  # fmt: skip

    assert (
        main(["kme", "status", "--url", pair.url_a, *creds("alice"), "--slave", "bob", "--json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["target_KME_ID"] == "KME_B"
    args = [
        "kme",
        "get-key",
        "--url",
        pair.url_a,
        *creds("alice"),
        "--slave",
        "bob",
        "--number",
        "2",
        "--json",
    ]
    assert main(args) == 0
    keys = json.loads(capsys.readouterr().out)["keys"]
    ids = [a for k in keys for a in ("--key-id", k["key_ID"])]
    assert (
        main(
            [
                "kme",
                "get-key-with-ids",
                "--url",
                pair.url_b,
                *creds("bob"),
                "--master",
                "alice",
                *ids,
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["keys"] == keys
    assert (
        main(
            [
                "kme",
                "get-key-with-ids",
                "--url",
                pair.url_b,
                *creds("bob"),
                "--master",
                "alice",
                *ids,
            ]
        )
        == 1
    )
    assert "one or more keys specified are not found on KME" in capsys.readouterr().err
