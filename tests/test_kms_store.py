"""Key stores over real connections (SQLite file and PostgreSQL): encryption at rest, schema
versioning, exactly-once takes, and 64 concurrent HTTPS clients that never get a key twice.

PostgreSQL runs at 127.0.0.1:5432, database ``test`` (``.ci/run`` starts it); set
``QKDNET_TEST_PG`` to another SQLAlchemy URL to use a different server. Each run uses its own
schema, so parallel runs do not clash.
"""

from __future__ import annotations

import json
import queue
import secrets
import sqlite3
import threading
import uuid
from collections import Counter
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    func,
    inspect,
    select,
    text,
)

from kms_fixtures import PG_URL, blocks, make_pair, make_pki
from qkdnet.kms import GrantGroup, KeyStore, KMEClientError, Sealer
from qkdnet.kms.store import (
    AVAILABLE,
    GRANTED,
    SCHEMA_VERSION,
    USED,
    KeysNotFoundError,
    schema_version,
)


def _pg_available() -> str | None:
    try:
        with create_engine(PG_URL, connect_args={"connect_timeout": 3}).connect() as conn:
            conn.execute(text("select 1"))
        return None
    except Exception as exc:
        return (
            f"PostgreSQL not reachable at {PG_URL} ({type(exc).__name__}); start it with "
            "'.ci/run' or 'pg_ctlcluster 15 main start', or set QKDNET_TEST_PG"
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path):
    made: list[KeyStore] = []

    def factory(name: str, key: bytes | None = None) -> KeyStore:
        sealer = Sealer(key or secrets.token_bytes(32))
        if request.param == "sqlite":
            store = KeyStore(f"sqlite:///{tmp_path}/{name}.db", sealer)
        else:
            reason = _pg_available()
            if reason:
                pytest.skip(reason)
            schema = f"kms_test_{name}_{uuid.uuid4().hex[:12]}"
            store = KeyStore(PG_URL, sealer, schema=schema)
        made.append(store)
        return store

    factory.kind = request.param  # type: ignore[attr-defined]
    yield factory
    for store in made:
        store.drop_schema()


def test_material_is_encrypted_at_rest_and_bound_to_its_id(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    store = KeyStore(f"sqlite:///{tmp_path}/s.db", Sealer(key))
    bl = blocks(5)
    store.ingest("KME_B", [(k, m, True) for k, m in bl])
    rows = (
        sqlite3.connect(tmp_path / "s.db")
        .execute("select key_id, material from kms_units")
        .fetchall()
    )
    for kid, sealed in rows:
        assert dict(bl)[kid] not in sealed  # no plaintext in the file
    with pytest.raises(InvalidTag):  # a row moved onto another ID no longer opens
        store.sealer.open(rows[0][1], "KME_B", rows[1][0])
    store.close()
    with pytest.raises(InvalidTag):  # another master key cannot open them
        KeyStore(f"sqlite:///{tmp_path}/s.db", Sealer(secrets.token_bytes(32))).take_owned(
            "KME_B", 1
        )


def test_schema_version_and_reopen(store_factory) -> None:
    store = store_factory("v")
    store.ingest("L", [(k, m, True) for k, m in blocks(3)])
    again = KeyStore(store.url, store.sealer, schema=store.schema)  # migrate is idempotent
    with again.engine.connect() as conn:
        assert conn.execute(select(func.max(schema_version.c.version))).scalar() == SCHEMA_VERSION
    assert again.available_units("L") == 3
    again.close()


def test_take_exactly_once_under_threads(store_factory) -> None:
    store = store_factory("t")
    bl = blocks(400)
    store.ingest("L", [(k, m, True) for k, m in bl])
    taken: list[tuple[str, bytes]] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            try:
                got = store.take_owned("L", 3)
            except Exception:
                return
            with lock:
                taken.extend(got)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [k for k, _ in taken]
    assert len(ids) == len(set(ids)) == 399  # 133 takes of 3; one unit left
    assert all(dict(bl)[k] == m for k, m in taken)
    states = store.unit_states("L")
    assert Counter(s for s, _ in states.values()) == {USED: 399, AVAILABLE: 1}
    assert not any(has for s, has in states.values() if s == USED)  # erased


def test_batches_in_flight_take_different_units(store_factory) -> None:
    """While one batch waits for the peer (its before_commit), another takes other units; a
    batch whose before_commit fails gives its units back, and they are found again even below
    units still held by another batch."""
    store = store_factory("f")
    bl = blocks(10)
    store.ingest("L", [(k, m, True) for k, m in bl])
    seen: dict[str, list[str]] = {}

    def inner(alloc) -> None:
        seen["inner"] = [k for k, _ in alloc]
        with pytest.raises(RuntimeError):  # a third batch fails: its 2 units come back
            store.take_owned("L", 2, lambda a: (_ for _ in ()).throw(RuntimeError("peer")))
        seen["after_fail"] = [k for k, _ in store.take_owned("L", 5)]

    def outer(alloc) -> None:
        seen["outer"] = [k for k, _ in alloc]
        store.take_owned("L", 2, inner)

    store.take_owned("L", 3, outer)
    ids = [k for k, _ in bl]
    assert seen["outer"] == ids[:3] and seen["inner"] == ids[3:5]
    assert seen["after_fail"] == ids[5:10]  # above every held unit
    assert store.available_units("L") == 0
    with pytest.raises(Exception, match="available"):
        store.take_owned("L", 1)


def test_sqlite_erase_refuses_units_taken_meanwhile(tmp_path: Path) -> None:
    """SQLite reads units without a row lock: if any was consumed by another writer before the
    final erase, the whole take fails and delivers nothing."""
    store = KeyStore(f"sqlite:///{tmp_path}/e.db", Sealer(secrets.token_bytes(32)))
    bl = blocks(4)
    store.ingest("L", [(k, m, True) for k, m in bl])

    def meddle(alloc) -> None:
        with sqlite3.connect(tmp_path / "e.db") as other:
            other.execute("UPDATE kms_units SET state = ? WHERE key_id = ?", (USED, alloc[1][0]))

    with pytest.raises(Exception, match="no longer available"):
        store.take_owned("L", 3, meddle)
    states = store.unit_states("L")
    assert Counter(s for s, _ in states.values()) == {USED: 1, AVAILABLE: 3}
    assert [k for k, _ in store.take_owned("L", 3)] == [bl[0][0], bl[2][0], bl[3][0]]
    store.close()


def test_one_time_pad_receive_by_ids(store_factory) -> None:
    store = store_factory("o")
    bl = blocks(10)
    store.ingest("L", [(k, m, False) for k, m in bl])
    ids = [k for k, _ in bl[:4]]
    assert store.take_by_ids("L", ids) == bl[:4]
    with pytest.raises(KeysNotFoundError):
        store.take_by_ids("L", ids[:1])
    assert store.available_units("L", owned=False) == 6


def test_64_concurrent_clients_never_twice(store_factory, tmp_path_factory) -> None:
    """32 masters hammer enc_keys at KME A while 32 slaves fetch at KME B: no key ID or key
    twice, every slave gets the master's bytes, and the unit counts balance."""
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    pair = make_pair(pki, store_factory("a"), store_factory("b"))
    try:
        fed = pair.feed(900)
        owned = pair.a.store.available_units("KME_B")
        handed: queue.Queue = queue.Queue()
        master_keys: list = []
        slave_keys: list = []
        errors: list = []
        lock = threading.Lock()

        def master(i: int) -> None:
            c = pair.client("alice")
            n = 1 + i % 3
            while True:
                try:
                    keys = c.get_key("bob", number=n)
                except KMEClientError as exc:
                    if exc.status != 503:
                        errors.append(exc)
                    if n == 1 or exc.status != 503:
                        break
                    n = 1
                    continue
                with lock:
                    master_keys.extend(keys)
                handed.put([k.key_id for k in keys])

        def slave() -> None:
            c = pair.client("bob", "b")
            while (ids := handed.get()) is not None:
                try:
                    got = c.get_key_with_ids("alice", ids)
                except Exception as exc:
                    errors.append(exc)
                    continue
                with lock:
                    slave_keys.extend(got)

        masters = [threading.Thread(target=master, args=(i,)) for i in range(32)]
        slaves = [threading.Thread(target=slave) for _ in range(32)]
        for t in masters + slaves:
            t.start()
        for t in masters:
            t.join()
        for _ in slaves:
            handed.put(None)
        for t in slaves:
            t.join()
        assert not errors, errors[:3]
        ids = [k.key_id for k in master_keys]
        assert len(ids) == len(set(ids)) == owned  # every owned unit delivered once
        assert len({k.key for k in master_keys}) == len(master_keys)
        assert sorted(slave_keys, key=lambda k: k.key_id) == sorted(
            master_keys, key=lambda k: k.key_id
        )
        assert {k.key for k in master_keys} <= {m for _, m in fed}
        a, b = pair.a.store.counts()["KME_B"], pair.b.store.counts()["KME_A"]
        assert a == {"available": len(fed) - owned, "granted": 0, "used": owned, "reserved": 0}
        assert b == {"available": len(fed) - owned, "granted": 0, "used": owned, "reserved": 0}
        assert pair.b.store.pending_grants() == 0
    finally:
        pair.close()


def test_both_directions_at_once_do_not_block(store_factory, tmp_path_factory) -> None:
    """Masters on both sides of a link (alice at A for bob, bob at B for alice) at the same
    time: each KME grants to the other while serving its own SAEs; nobody waits forever."""
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    pair = make_pair(pki, store_factory("a"), store_factory("b"))
    try:
        pair.feed(700)
        got: dict[str, list] = {"a": [], "b": []}
        errors: list = []

        def run(side: str, master: str, slave: str) -> None:
            c = pair.client(master, side)
            for _ in range(25):
                try:
                    got[side].extend(c.get_key(slave, number=2))
                except Exception as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=run, args=args) for args in
                   [("a", "alice", "bob"), ("b", "bob", "alice")] * 4]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
        assert not errors, errors[:3]
        assert len(got["a"]) == len(got["b"]) == 200
        fetched = pair.client("bob", "b").get_key_with_ids(
            "alice", [k.key_id for k in got["a"][:50]]
        )
        assert [k.key for k in fetched] == [k.key for k in got["a"][:50]]
        fetched = pair.client("alice", "a").get_key_with_ids(
            "bob", [k.key_id for k in got["b"][:50]]
        )
        assert [k.key for k in fetched] == [k.key for k in got["b"][:50]]
        assert not {k.key for k in got["a"]} & {k.key for k in got["b"]}
    finally:
        pair.close()


def test_units_given_back_below_a_later_take_are_found_again(store_factory) -> None:
    """A take whose peer call fails gives its units back after a later take committed above
    them; the next take finds them first (PostgreSQL reads from its take frontier on)."""
    store = store_factory("g")
    bl = blocks(6)
    store.ingest("L", [(k, m, True) for k, m in bl])
    ids = [k for k, _ in bl]

    def fail_after_another_take(alloc) -> None:
        assert [k for k, _ in store.take_owned("L", 2)] == ids[2:4]
        raise RuntimeError("peer did not confirm")

    with pytest.raises(RuntimeError):
        store.take_owned("L", 2, fail_after_another_take)
    assert [k for k, _ in store.take_owned("L", 3)] == [ids[0], ids[1], ids[4]]
    assert store.available_units("L") == 1


def _v1_tables(meta: MetaData) -> tuple[Table, Table, Table]:
    """The key store tables as schema version 1 created them (one grant row per key)."""
    version = Table("kms_schema_version", meta, Column("version", Integer, primary_key=True))
    unit_rows = Table(
        "kms_units",
        meta,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        Column("link", String(64), nullable=False),
        Column("key_id", String(36), nullable=False),
        Column("size_bits", Integer, nullable=False),
        Column("owned", Boolean, nullable=False),
        Column("state", SmallInteger, nullable=False),
        Column("grant_id", String(36), nullable=True),
        Column("material", LargeBinary, nullable=True),
        Column("created_at", Float, nullable=False),
        Column("used_at", Float, nullable=True),
        UniqueConstraint("link", "key_id", name="uq_kms_units_link_key"),
        Index("ix_kms_units_take", "link", "owned", "state", "id"),
    )
    grant_rows = Table(
        "kms_grants",
        meta,
        Column("key_id", String(36), primary_key=True),
        Column("link", String(64), nullable=False),
        Column("master_sae", String(64), nullable=False),
        Column("slaves", Text, nullable=False),
        Column("pending", Text, nullable=False),
        Column("size_bits", Integer, nullable=False),
        Column("unit_ids", Text, nullable=False),
        Column("created_at", Float, nullable=False),
    )
    return version, unit_rows, grant_rows


def test_version_1_store_is_migrated_with_its_pending_grants(store_factory, tmp_path: Path) -> None:
    """A store written by schema version 1 (one grant row per key) opens as version 2: its
    pending grants become grant groups and are fetched once per slave as before (a slave that
    had fetched a key before the upgrade cannot fetch it again), its units are taken as usual."""
    sealer = Sealer(secrets.token_bytes(32))
    if store_factory.kind == "sqlite":
        url, schema = f"sqlite:///{tmp_path}/v1.db", None
        engine = create_engine(url)
    else:
        probe = store_factory("probe")  # skips when PostgreSQL is not reachable
        probe.drop_schema()
        url, schema = PG_URL, f"kms_test_v1_{uuid.uuid4().hex[:12]}"
        with create_engine(PG_URL).begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine = create_engine(url, execution_options={"schema_translate_map": {None: schema}})
    version, unit_rows, grant_rows = _v1_tables(MetaData())
    one, two_a, two_b, free = (str(uuid.uuid4()) for _ in range(4))
    material = {k: secrets.token_bytes(32) for k in (one, two_a, two_b, free)}
    with engine.begin() as conn:
        version.metadata.create_all(conn)
        conn.execute(version.insert().values(version=1))
        conn.execute(
            unit_rows.insert(),
            [
                {"link": "KME_A", "key_id": k, "size_bits": 256, "owned": k == free,
                 "state": GRANTED if k != free else AVAILABLE,
                 "grant_id": None if k == free else (one if k == one else two_a),
                 "material": sealer.seal(material[k], "KME_A", k), "created_at": 1.0,
                 "used_at": None}
                for k in (one, two_a, two_b, free)
            ],
        )  # fmt: skip
        conn.execute(
            grant_rows.insert(),
            [
                {"key_id": one, "link": "KME_A", "master_sae": "alice", "slaves": '["bob"]',
                 "pending": '["bob"]', "size_bits": 256, "unit_ids": json.dumps([one]),
                 "created_at": 1.0},
                {"key_id": two_a, "link": "KME_A", "master_sae": "alice",
                 "slaves": '["bob","carol"]', "pending": '["carol"]', "size_bits": 512,
                 "unit_ids": json.dumps([two_a, two_b]), "created_at": 2.0},
            ],
        )  # fmt: skip
    engine.dispose()

    store = KeyStore(url, sealer, schema=schema)
    try:
        with store.engine.connect() as conn:
            assert conn.execute(select(func.max(schema_version.c.version))).scalar() == 2
            assert "kms_grants" not in inspect(conn).get_table_names(schema=schema)
        assert store.pending_grants() == 2
        assert store.fetch_granted("KME_A", "bob", "alice", [one]) == [(one, material[one])]
        with pytest.raises(KeysNotFoundError):  # bob fetched it before the upgrade
            store.fetch_granted("KME_A", "bob", "alice", [two_a])
        assert store.fetch_granted("KME_A", "carol", "alice", [two_a]) == [
            (two_a, material[two_a] + material[two_b])
        ]
        assert store.pending_grants() == 0
        states = store.unit_states("KME_A")
        assert states[one] == states[two_a] == states[two_b] == (USED, False)  # erased
        assert store.take_owned("KME_A", 1) == [(free, material[free])]
        again = KeyStore(url, sealer, schema=schema)  # reopening a version 2 store: no-op
        again.close()
    finally:
        store.drop_schema()


def test_grants_in_store_order_out_of_order_and_over_unfetched_grants(store_factory) -> None:
    """The slave side records a group of one-unit keys whether they are the peer's next units
    in store order (one range) or not (a lookup per key); a unit already granted and not fetched
    (the owner re-used it after a crash) moves to the new grant. Every key is fetched once."""
    store = store_factory("gr")
    bl = blocks(12)
    store.ingest("A", [(k, m, False) for k, m in bl])
    ids = [k for k, _ in bl]

    def grant(keys: list[str]) -> None:
        store.add_grants("A", [GrantGroup("alice", ("bob",), 256, keys)])

    grant(ids[0:4])  # in store order
    grant([ids[6], ids[4], ids[5]])  # not in store order
    grant([ids[2], ids[3], ids[7]])  # 2 and 3 were granted above, nobody fetched them
    grant([ids[9]])
    grant(ids[8:11])  # in order, but 9 is granted already
    assert store.pending_grants() == 11
    states = store.unit_states("A")
    assert Counter(s for s, _ in states.values()) == {GRANTED: 11, AVAILABLE: 1}
    assert store.fetch_granted("A", "bob", "alice", ids[:11]) == bl[:11]
    assert store.pending_grants() == 0
    with pytest.raises(KeysNotFoundError):
        store.fetch_granted("A", "bob", "alice", ids[:1])
    with pytest.raises(KeysNotFoundError):  # used units are never granted again
        grant(ids[0:1])
