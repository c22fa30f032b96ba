"""KME logic in process: the relay hook for non-adjacent slaves, the async SAE client, the
ownership rule and one-time-pad takes used by the relay."""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from kms_fixtures import SAES_A, blocks, make_pair, make_pki, make_store
from qkdnet.kms import KME, AsyncKMEClient, KMEClientError, KMEError, link_in_process
from qkdnet.kms.api import _parse_grants
from qkdnet.kms.kme import owner_of, unit_ids_of_block
from qkdnet.kms.store import GrantGroup


class _DirectRelay:
    """Test relay: hands keys straight to the far KME (the real one pads them hop by hop)."""

    def __init__(self, kmes: dict[str, KME], capacity: int = 100) -> None:
        self.kmes = kmes
        self.cap = capacity
        self.calls: list[tuple[str, str, int]] = []

    def capacity(self, source_kme: str, target_kme: str, size_bits: int) -> int:
        return self.cap

    def relay_keys(self, source_kme: str, target_kme: str, keys: Sequence[tuple[str, bytes]],
                   master_sae: str, slaves: Sequence[str]) -> None:  # fmt: skip
        if len(keys) > self.cap:
            raise RuntimeError("not enough link key on the path")
        self.calls.append((source_kme, target_kme, len(keys)))
        self.kmes[target_kme].accept_relayed(source_kme, keys, master_sae, slaves)


def test_relay_hook_serves_non_adjacent_slave(tmp_path: Path) -> None:
    a = KME("KME_A", make_store(f"sqlite:///{tmp_path}/a.db"), local_saes=["alice"],
            sae_directory={"carol": "KME_C"})  # fmt: skip
    c = KME("KME_C", make_store(f"sqlite:///{tmp_path}/c.db"), local_saes=["carol", "erin"],
            sae_directory={"alice": "KME_A"})  # fmt: skip
    relay = _DirectRelay({"KME_C": c}, capacity=5)
    a.relay = relay
    st = a.status("alice", "carol")
    assert st["target_KME_ID"] == "KME_C" and st["stored_key_count"] == 5
    keys = a.get_key("alice", "carol", {"number": 3, "size": 512})["keys"]
    assert relay.calls == [("KME_A", "KME_C", 3)]
    ids = [k["key_ID"] for k in keys]
    with pytest.raises(KMEError) as err:
        c.get_key_with_ids("erin", "alice", ids)
    assert err.value.status == 401
    assert c.get_key_with_ids("carol", "alice", ids)["keys"] == keys
    with pytest.raises(KMEError) as err:  # once only
        c.get_key_with_ids("carol", "alice", ids)
    assert err.value.message == "one or more keys specified are not found on KME"
    with pytest.raises(KMEError) as err:  # relay failure: 503, the master gets nothing
        a.get_key("alice", "carol", {"number": 6})
    assert err.value.status == 503 and "relay" in err.value.message
    relayed = [e for e in c.audit.recent if e["event"] == "relayed_in"]
    assert relayed[0]["key_ids"] == ids and relayed[0]["who"] == "KME_A"
    assert not any(k["key"] in repr(c.audit.recent + a.audit.recent) for k in keys)


def test_without_relay_a_far_slave_is_a_clear_400(tmp_path: Path) -> None:
    a = KME("KME_A", make_store(f"sqlite:///{tmp_path}/a.db"), local_saes=["alice"],
            sae_directory={"carol": "KME_C"})  # fmt: skip
    with pytest.raises(KMEError) as err:
        a.status("alice", "carol")
    assert err.value.status == 400 and "cannot reach" in err.value.message


def test_async_client(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    pair = make_pair(
        pki, make_store(f"sqlite:///{tmp_path}/a.db"), make_store(f"sqlite:///{tmp_path}/b.db")
    )
    pair.feed(100)

    def client(sae: str, url: str) -> AsyncKMEClient:
        return AsyncKMEClient(
            url, cert=pki / f"{sae}.pem", key=pki / f"{sae}.key", ca=pki / "ca.pem"
        )

    async def main() -> None:
        async with client("alice", pair.url_a) as alice, client("bob", pair.url_b) as bob:
            assert (await alice.status("bob"))["slave_SAE_ID"] == "bob"
            batches = await asyncio.gather(*(alice.get_key("bob", number=2) for _ in range(8)))
            keys = [k for b in batches for k in b]
            assert len({k.key_id for k in keys}) == 16
            got = await bob.get_key_with_ids("alice", [k.key_id for k in keys])
            assert [k.key for k in got] == [k.key for k in keys]
            with pytest.raises(KMEClientError) as err:
                await alice.get_key("bob", size=12)
            assert err.value.message == "size shall be a multiple of 8"

    try:
        asyncio.run(main())
    finally:
        pair.close()


def test_ownership_splits_a_link_between_its_ends() -> None:
    ids = [str(uuid.uuid4()) for _ in range(2000)]
    owners = [owner_of(i, "KME_A", "KME_B") for i in ids]
    assert owners == [owner_of(i, "KME_B", "KME_A") for i in ids]  # both ends agree
    assert 850 < owners.count("KME_A") < 1150  # about half each
    block = str(uuid.uuid4())
    assert unit_ids_of_block(block, 1) == [block]
    assert (
        unit_ids_of_block(block, 3) == unit_ids_of_block(block, 3)
        and len(set(unit_ids_of_block(block, 3))) == 3
    )


def test_one_time_pad_takes_between_two_kmes(tmp_path: Path) -> None:
    """What the relay does on a hop: the sender takes units it owns, the receiver takes the same
    IDs from its copy; both get the same bytes, each unit once."""
    a = KME("KME_A", make_store(f"sqlite:///{tmp_path}/a.db"), local_saes=list(SAES_A))
    b = KME("KME_B", make_store(f"sqlite:///{tmp_path}/b.db"), local_saes=["bob"])
    link_in_process(a, b)
    bl = blocks(64)
    a.ingest("KME_B", bl)
    b.ingest("KME_A", bl)
    pad = a.store.take_owned("KME_B", 4)
    assert all(owner_of(k, "KME_A", "KME_B") == "KME_A" for k, _ in pad)
    assert b.store.take_by_ids("KME_A", [k for k, _ in pad]) == pad
    with pytest.raises(Exception):  # noqa: B017 - a unit is used once
        b.store.take_by_ids("KME_A", [pad[0][0]])
    assert secrets.compare_digest(pad[0][1], dict(bl)[pad[0][0]])


def test_grant_groups_from_the_peer_are_checked(tmp_path: Path) -> None:
    """KME B records a grant group only when it is well formed: keys named, slaves attached
    to B, units that KME A owns, as many units per key as the size needs, each key's ID its
    first unit's; the wire forms (one ID string, or [key_ID, unit_ID...] lists) parse to the
    same groups, and a malformed ID string is a 400."""
    a = KME("KME_A", make_store(f"sqlite:///{tmp_path}/a.db"), local_saes=["alice"],
            sae_directory={"bob": "KME_B"})  # fmt: skip
    b = KME("KME_B", make_store(f"sqlite:///{tmp_path}/b.db"), local_saes=["bob"],
            sae_directory={"alice": "KME_A"})  # fmt: skip
    link_in_process(a, b)
    bl = blocks(40)
    b.ingest("KME_A", bl)
    theirs = [k for k, _ in bl if owner_of(k, "KME_A", "KME_B") == "KME_A"]
    mine = [k for k, _ in bl if owner_of(k, "KME_A", "KME_B") == "KME_B"]
    bad_groups = [
        GrantGroup("alice", ("bob",), 256, []),
        GrantGroup("alice", ("carol",), 256, theirs[:1]),
        GrantGroup("alice", ("bob",), 256, [mine[0]]),
        GrantGroup("alice", ("bob",), 512, theirs[:1]),
        GrantGroup("alice", ("bob",), 512, [theirs[0]], [(theirs[0],)]),
        GrantGroup("alice", ("bob",), 512, [theirs[1]], [(theirs[0], theirs[1])]),
    ]
    for group in bad_groups:
        with pytest.raises(KMEError) as err:
            b.accept_grants("KME_A", [group])
        assert err.value.status == 400, group
    assert b.store.pending_grants() == 0

    one = GrantGroup("alice", ("bob",), 256, theirs[:3])
    two = GrantGroup("alice", ("bob",), 512, [theirs[3]], [(theirs[3], theirs[4])])
    head = {"master_SAE_ID": "alice", "slave_SAE_IDs": ["bob"]}
    assert _parse_grants(
        {"groups": [{**head, "size": 256, "key_IDs": ",".join(theirs[:3])},
                    {**head, "size": 512, "keys": [[theirs[3], theirs[3], theirs[4]]]}]}
    ) == [one, two]  # fmt: skip
    assert _parse_grants(
        {"groups": [{**head, "size": 256, "keys": [[k, k] for k in theirs[:3]]}]}
    ) == [one]  # what earlier versions send
    for ids in ("", theirs[0] + ",", theirs[0].upper(), theirs[0] + ";" + theirs[1]):
        with pytest.raises(KMEError) as err:
            _parse_grants({"groups": [{**head, "size": 256, "key_IDs": ids}]})
        assert err.value.status == 400
    b.accept_grants("KME_A", [one, two])
    assert b.store.pending_grants() == 4
    material = dict(bl)
    got = b.get_key_with_ids("bob", "alice", [theirs[3], *theirs[:3]])["keys"]
    assert [k["key_ID"] for k in got] == [theirs[3], *theirs[:3]]
    assert base64.b64decode(got[0]["key"]) == material[theirs[3]] + material[theirs[4]]
    assert b.store.pending_grants() == 0
