"""ETSI GS QKD 014 conformance of the KME over real HTTPS with client certificates.

Every method (GET/POST forms), field, status code and error message of
``references/etsi-qkd-014.md`` is exercised against two linked KMEs (SQLite stores).
"""

from __future__ import annotations

import base64
import ssl
import uuid
from pathlib import Path

import httpx
import pytest

from kms_fixtures import Pair, make_pair, make_pki, make_store
from qkdnet.kms import KMEClientError

STATUS_FIELDS = {
    "source_KME_ID", "target_KME_ID", "master_SAE_ID", "slave_SAE_ID", "key_size",
    "stored_key_count", "max_key_count", "max_key_per_request", "max_key_size",
    "min_key_size", "max_SAE_ID_count",
}  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture()
def pair(pki: Path, tmp_path: Path) -> Pair:
    p = make_pair(
        pki, make_store(f"sqlite:///{tmp_path}/a.db"), make_store(f"sqlite:///{tmp_path}/b.db")
    )
    p.feed(200)
    yield p
    p.close()


def _err(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) <= {"message", "details"} and isinstance(body["message"], str)
    return body["message"]


def test_status_fields(pair: Pair) -> None:
    st = pair.client("alice").status("bob")
    assert set(st) == STATUS_FIELDS
    assert st["source_KME_ID"] == "KME_A" and st["target_KME_ID"] == "KME_B"
    assert st["master_SAE_ID"] == "alice" and st["slave_SAE_ID"] == "bob"
    owned = pair.a.store.available_units("KME_B")
    assert st["stored_key_count"] == owned > 50  # 256-bit units, default key_size 256
    assert st["min_key_size"] <= st["key_size"] <= st["max_key_size"]
    assert st["max_SAE_ID_count"] == 4


def test_get_key_post_then_dec_keys_post(pair: Pair) -> None:
    alice, bob = pair.client("alice"), pair.client("bob", "b")
    before = alice.status("bob")["stored_key_count"]
    keys = alice.get_key("bob", number=3, size=512)
    assert len(keys) == 3 and all(len(k.key) == 64 for k in keys)
    assert all(str(uuid.UUID(k.key_id)) == k.key_id for k in keys)
    assert alice.status("bob")["stored_key_count"] == before - 6  # 2 units per 512-bit key
    ids = [k.key_id for k in reversed(keys)]
    got = bob.get_key_with_ids("alice", ids)
    assert [k.key_id for k in got] == ids  # request order
    assert {k.key_id: k.key for k in got} == {k.key_id: k.key for k in keys}
    with pytest.raises(KMEClientError) as err:  # delivered keys leave the pool
        bob.get_key_with_ids("alice", ids[:1])
    assert err.value.status == 400
    assert err.value.message == "one or more keys specified are not found on KME"


def test_get_forms(pair: Pair) -> None:
    alice, bob = pair.client("alice"), pair.client("bob", "b")
    r = alice.request("GET", "/api/v1/keys/bob/enc_keys?number=2&size=128")
    assert r.status_code == 200
    keys = r.json()["keys"]
    assert len(keys) == 2 and all(len(base64.b64decode(k["key"])) == 16 for k in keys)
    r = alice.request("GET", "/api/v1/keys/bob/enc_keys")  # empty request: defaults
    assert r.status_code == 200 and len(base64.b64decode(r.json()["keys"][0]["key"])) == 32
    r = bob.request("GET", f"/api/v1/keys/alice/dec_keys?key_ID={keys[0]['key_ID']}")
    assert r.status_code == 200 and r.json()["keys"] == [keys[0]]
    msg = _err(bob.request("GET", f"/api/v1/keys/alice/dec_keys?key_ID={keys[1]['key_ID']}&key_ID={keys[0]['key_ID']}"), 400)  # fmt: skip
    assert "exactly one" in msg
    msg = _err(alice.request("GET", "/api/v1/keys/bob/enc_keys?number=1&additional_slave_SAE_IDs=carol"), 400)  # fmt: skip
    assert "only the query parameters number and size" in msg


def test_spec_error_messages(pair: Pair) -> None:
    alice, bob = pair.client("alice"), pair.client("bob", "b")
    post = "/api/v1/keys/bob/enc_keys"
    assert (
        _err(alice.request("POST", post, json={"size": 100}), 400)
        == "size shall be a multiple of 8"
    )
    r = alice.request("POST", post, json={"extension_mandatory": [{"abc_route_type": "direct"}]})
    assert _err(r, 400) == "not all extension_mandatory parameters are supported"
    assert r.json()["details"] == [{"extension_mandatory_unsupported": "abc_route_type"}]
    r = alice.request("POST", post, json={"extension_optional": [{"abc_route_type": "direct"}]})
    assert r.status_code == 200  # optional extensions may be ignored
    r = bob.request(
        "POST", "/api/v1/keys/alice/dec_keys", json={"key_IDs": [{"key_ID": str(uuid.uuid4())}]}
    )
    assert _err(r, 400) == "one or more keys specified are not found on KME"


def test_insufficient_keys_is_503_and_consumes_nothing(pair: Pair) -> None:
    alice = pair.client("alice")
    before = pair.a.store.available_units("KME_B")
    r = alice.request("POST", "/api/v1/keys/bob/enc_keys", json={"number": before + 1})
    msg = _err(r, 503)
    assert msg.startswith("insufficient amount of key material") and f"{before} keys" in msg
    assert pair.a.store.available_units("KME_B") == before


def test_multicast_and_unauthorised_slave(pair: Pair) -> None:
    alice = pair.client("alice")
    bob, carol, dave = (pair.client(s, "b") for s in ("bob", "carol", "dave"))
    keys = alice.get_key("bob", number=2, additional_slaves=["carol"])
    ids = [k.key_id for k in keys]
    with pytest.raises(KMEClientError) as err:  # dave was not named: 401 ...
        dave.get_key_with_ids("alice", ids)
    assert err.value.status == 401 and err.value.message
    assert [k.key for k in bob.get_key_with_ids("alice", ids)] == [k.key for k in keys]
    # ... and the key stays available to the rightful slave carol
    assert [k.key for k in carol.get_key_with_ids("alice", ids)] == [k.key for k in keys]
    with pytest.raises(KMEClientError):
        carol.get_key_with_ids("alice", ids)
    assert all(not has for s, has in pair.b.store.unit_states("KME_A").values() if s == 2)
    r = alice.request("POST", "/api/v1/keys/bob/enc_keys",
                      json={"additional_slave_SAE_IDs": ["carol", "dave", "x1", "x2", "x3"]})  # fmt: skip
    assert "max_SAE_ID_count" in _err(r, 400)
    r = alice.request(
        "POST", "/api/v1/keys/bob/enc_keys", json={"additional_slave_SAE_IDs": ["mallory"]}
    )
    assert "attached to this KME" in _err(r, 400)


def test_wrong_master_in_path_is_not_found(pair: Pair) -> None:
    keys = pair.client("alice").get_key("bob")
    with pytest.raises(KMEClientError) as err:
        pair.client("bob", "b").get_key_with_ids("mallory", [keys[0].key_id])
    assert err.value.status == 400
    assert pair.client("bob", "b").get_key_with_ids("alice", [keys[0].key_id])[0].key == keys[0].key


def test_tls_refuses_no_certificate_and_unknown_ca(pair: Pair, pki: Path) -> None:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    with pytest.raises(httpx.HTTPError), httpx.Client(verify=ctx) as c:  # no client cert
        c.get(f"{pair.url_a}/api/v1/keys/bob/status")
    rogue = pair.client("alice", pki=pki / "rogue")  # same CN 'alice', other CA
    with pytest.raises(httpx.HTTPError):
        rogue.status("bob")


def test_another_saes_certificate_is_refused(pair: Pair) -> None:
    # bob's (valid) certificate at alice's KME: bob is not registered there
    r = pair.client("bob", "a").request("GET", "/api/v1/keys/alice/status")
    assert "not an SAE registered at KME KME_A" in _err(r, 401)
    last = pair.a.audit.recent[-1]
    assert (last["event"], last["who"], last["status"]) == ("status", "bob", 401)
    keys = pair.client("alice").get_key("bob")
    # mallory (an SAE of KME A) cannot fetch bob's key at KME B with her own certificate
    r = pair.client("mallory", "b").request(
        "GET", f"/api/v1/keys/alice/dec_keys?key_ID={keys[0].key_id}"
    )
    _err(r, 401)
    # a QKD module certificate cannot call the SAE API, an SAE cannot push keys
    _err(pair.client("qkd_AB").request("GET", "/api/v1/keys/bob/status"), 401)
    r = pair.client("alice").request(
        "POST", "/southbound/v1/keys", json={"peer_KME_ID": "KME_B", "blocks": []}
    )
    _err(r, 401)
    # KME-to-KME grants only from an adjacent KME
    _err(pair.client("alice").request("POST", "/peer/v1/grants", json={"grants": []}), 401)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("POST", "/api/v1/keys/bob/enc_keys", {"content": b"{not json"}, 400),
        ("POST", "/api/v1/keys/bob/enc_keys", {"content": b"[1,2]"}, 400),
        ("POST", "/api/v1/keys/bob/enc_keys", {"json": {"number": "2"}}, 400),
        ("POST", "/api/v1/keys/bob/enc_keys", {"json": {"number": True}}, 400),
        ("POST", "/api/v1/keys/bob/enc_keys", {"json": {"number": 10**40}}, 400),
        ("POST", "/api/v1/keys/bob/enc_keys", {"content": b'{"number": 1e400}'}, 400),
        ("POST", "/api/v1/keys/bob/enc_keys", {"content": b'{"size": NaN}'}, 400),
        ("POST", "/api/v1/keys/bob/enc_keys", {"json": {"number": 0}}, 400),
        ("POST", "/api/v1/keys/bob/enc_keys", {"json": {"size": -8}}, 400),
        ("POST", "/api/v1/keys/bob/enc_keys", {"json": {"size": 1 << 70}}, 400),
        ("POST", "/api/v1/keys/bob/enc_keys", {"json": {"colour": "red"}}, 400),
        ("POST", "/api/v1/keys/bob/enc_keys", {"json": {"extension_mandatory": {"a": 1}}}, 400),
        ("POST", "/api/v1/keys/bob/enc_keys", {"json": {"additional_slave_SAE_IDs": "carol"}}, 400),
        ("POST", "/api/v1/keys/bob/enc_keys", {"content": b"\xff\xfe"}, 400),
        ("POST", "/api/v1/keys/bob/enc_keys", {"content": b"[" * 100000}, 400),
        ("GET", "/api/v1/keys/bob/enc_keys?number=abc", {}, 400),
        ("GET", "/api/v1/keys/bob/enc_keys?number=99999999999999999999", {}, 400),
        ("GET", "/api/v1/keys/bob/status?x=1", {}, 400),
        ("GET", "/api/v1/keys/b%20ob/status", {}, 400),
        ("GET", "/api/v1/keys/b%2Fob/status", {}, 400),
        ("GET", "/api/v1/keys/%F0%9F%94%91/status", {}, 400),
        ("GET", "/api/v1/keys/" + "x" * 65 + "/status", {}, 400),
        ("GET", "/api/v1/keys/..%2F..%2Fetc/enc_keys", {}, 400),
        ("GET", "/api/v1/keys/nobody/status", {}, 400),
        ("GET", "/api/v1/keys/alice/dec_keys?key_ID=not-a-uuid", {}, 400),
        ("POST", "/api/v1/keys/alice/dec_keys", {"json": {"key_IDs": []}}, 400),
        ("POST", "/api/v1/keys/alice/dec_keys", {"json": {"key_IDs": [{"key_ID": 5}]}}, 400),
        ("POST", "/api/v1/keys/alice/dec_keys", {"json": {"key_IDs": "x"}}, 400),
        ("POST", "/api/v1/keys/alice/dec_keys", {"json": {}}, 400),
        ("PUT", "/api/v1/keys/bob/enc_keys", {}, 405),
        ("GET", "/nowhere", {}, 404),
    ],
)
def test_bad_input_is_json_400(
    pair: Pair, method: str, path: str, kwargs: dict, status: int
) -> None:
    msg = _err(pair.client("alice").request(method, path, **kwargs), status)
    assert msg and "detail" not in msg


def test_southbound_https_and_metrics(pair: Pair) -> None:
    module = pair.client("qkd_AB")
    block = {"key_ID": str(uuid.uuid4()), "key": base64.b64encode(bytes(range(64))).decode()}
    r = module.request(
        "POST", "/southbound/v1/keys", json={"peer_KME_ID": "KME_B", "blocks": [block]}
    )
    assert r.status_code == 200 and r.json()["units"] == 2
    r = module.request(
        "POST", "/southbound/v1/keys", json={"peer_KME_ID": "KME_B", "blocks": [block]}
    )
    assert "already stored" in _err(r, 400)  # a block ID is accepted once
    r = module.request(
        "POST", "/southbound/v1/keys", json={"peer_KME_ID": "KME_C", "blocks": [block]}
    )
    _err(r, 401)  # the module feeds only its own link
    pair.client("alice").get_key("bob", number=2)
    text = pair.client("alice").request("GET", "/metrics").text
    assert (
        'qkdnet_kme_keys_delivered_total{kme="KME_A",method="enc_keys",peer_kme="KME_B"} 2.0'
        in text
    )
    assert "qkdnet_kme_request_seconds_bucket" in text and 'state="used"' in text


def test_audit_log_never_holds_key_bytes(pair: Pair) -> None:
    keys = pair.client("alice").get_key("bob", number=2)
    pair.client("bob", "b").get_key_with_ids("alice", [k.key_id for k in keys])
    entries = pair.a.audit.recent + pair.b.audit.recent
    enc = [e for e in entries if e["event"] == "enc_keys" and e["result"] == "ok"][-1]
    assert (
        enc["who"] == "alice"
        and enc["peer_kme"] == "KME_B"
        and enc["key_ids"] == [k.key_id for k in keys]
    )
    dec = [e for e in entries if e["event"] == "dec_keys"][-1]
    assert dec["who"] == "bob" and dec["result"] == "ok"
    blob = repr(entries)
    for k in keys:
        assert base64.b64encode(k.key).decode() not in blob and k.key.hex() not in blob
