"""Property-based fuzz of the KME's HTTP API (hypothesis): whatever an authenticated SAE sends —
any JSON, any query, any path segment, any method — the answer is JSON with a ``message`` and a
status among 200/400/401/405/503 with a known reason; never 500, 422 or an internal error."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kms_fixtures import Pair, make_pair, make_pki, make_store

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["number", "size", "additional_slave_SAE_IDs", "extension_mandatory", "extension_optional",
     "key_IDs", "key_ID", "key_IDs_extension", "other"]
)  # fmt: skip
bodies = (
    st.dictionaries(field_names, json_values, max_size=4).map(json.dumps)
    | json_values.map(json.dumps)
    | st.binary(max_size=60).map(lambda b: b.decode("latin-1"))
)
segments = st.sampled_from(["bob", "alice", "carol", "nobody", ""]) | st.text(max_size=12)
methods = st.sampled_from(["status", "enc_keys", "dec_keys"])
queries = st.lists(
    st.tuples(st.sampled_from(["number", "size", "key_ID", "x"]), st.text(max_size=12)), max_size=3
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    d = tmp_path_factory.mktemp("fuzz")
    p = make_pair(
        make_pki(d / "pki"), make_store(f"sqlite:///{d}/a.db"), make_store(f"sqlite:///{d}/b.db")
    )
    p.feed(2000)
    p.alice = p.client("alice")  # type: ignore[attr-defined]
    p.bob = p.client("bob", "b")  # type: ignore[attr-defined]
    yield p
    p.close()


def _check(response) -> None:
    assert response.status_code in (200, 400, 401, 404, 405, 503), response.text
    body = response.json()
    if response.status_code != 200:
        assert set(body) <= {"message", "details"} and isinstance(body["message"], str)
        assert "internal error" not in body["message"]
        if response.status_code == 503:
            assert body["message"].startswith("insufficient amount of key material")


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    sae=segments, method=methods, body=bodies, http=st.sampled_from(["GET", "POST"]), query=queries
)
def test_fuzz_api_never_500(pair: Pair, sae: str, method: str, body: str, http: str, query) -> None:
    client = pair.alice  # type: ignore[attr-defined]
    qs = "&".join(f"{quote(k)}={quote(v)}" for k, v in query)
    path = f"/api/v1/keys/{quote(sae, safe='')}/{method}" + (f"?{qs}" if qs else "")
    kwargs = {"content": body.encode("utf-8", "surrogatepass")} if http == "POST" else {}
    _check(client.request(http, path, **kwargs))
    assert pair.a.metrics.internal_errors.labels("KME_A")._value.get() == 0


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies)
def test_fuzz_dec_keys_at_slave_kme(pair: Pair, body: str) -> None:
    bob = pair.bob  # type: ignore[attr-defined]
    _check(
        bob.request(
            "POST", "/api/v1/keys/alice/dec_keys", content=body.encode("utf-8", "surrogatepass")
        )
    )
    assert pair.a.metrics.internal_errors.labels("KME_A")._value.get() == 0
    assert pair.b.metrics.internal_errors.labels("KME_B")._value.get() == 0
