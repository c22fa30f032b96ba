"""The key store of one KME: link key units and the grants waiting for slave SAEs.

Tables (SQLAlchemy Core, SQLite or PostgreSQL):

* ``kms_units`` — key material of each link, as fixed-size *units* with the ID the QKD module
  gave them. ``link`` is the peer KME of the link (or the source KME of a relayed key). A unit is
  ``owned`` when this KME may hand it out on its own initiative (enc_keys, one-time pads); the
  other end of the link owns the others, so the two KMEs never pick the same unit. A unit goes
  ``AVAILABLE -> GRANTED -> USED`` or ``AVAILABLE -> USED``; a USED row keeps its ID as the
  record of delivery but its material is erased (set to NULL) in the same transaction.
  (``RESERVED`` is left only by older versions; :meth:`KeyStore.recover` makes it AVAILABLE.)
  A GRANTED unit names its key's grant group (``grant_group``) and, when the key has several
  units, the key (``grant_id``: the key_ID, which is the ID of the key's first unit; NULL for a
  one-unit key, which is its unit). The key's first unit also carries the key's unit IDs when it
  has several (``key_units``) and the slaves that fetched it so far (``fetched``).
* ``kms_grant_groups`` — keys that a master SAE received at the other KME and that the named
  slave SAEs may fetch once each with dec_keys: one row per (master, slaves, size) of a grant
  call, not one per key (a batched delivery grants hundreds of keys at once), with the number of
  its keys not yet fetched by every slave. The material stays in the units until the last slave
  fetched.

Every take is one transaction: PostgreSQL locks the rows it takes with ``FOR UPDATE SKIP LOCKED``
(concurrent requests take different rows); SQLite serialises writers (``BEGIN IMMEDIATE`` plus an
in-process lock). A crash leaves each unit either USED (delivered) or still AVAILABLE.
Material at rest is sealed with AES-GCM (:mod:`qkdnet.kms.sealing`).

Schema versions (``kms_schema_version``, migrated on open by :meth:`KeyStore._migrate`):
1: units + one ``kms_grants`` row per key; 2: grant groups, and the take index is partial (only
owned AVAILABLE units: a unit leaving that state leaves the index, one that was never in it —
the peer's units — costs no index write when granted).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
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
    event,
    func,
    select,
    text,
)
from sqlalchemy.pool import NullPool

from qkdnet.kms.frontier import TakeFrontier
from qkdnet.kms.sealing import Sealer

AVAILABLE, GRANTED, USED, RESERVED = 0, 1, 2, 3
SCHEMA_VERSION = 2
# owned units still AVAILABLE: the predicate of the partial take index, written the same in every
# query that should use it (the planners match the index's predicate against the query's text)
_FREE = {
    "sqlite": f"owned = 1 AND state = {AVAILABLE}",
    "postgresql": f"owned AND state = {AVAILABLE}",
}

metadata = MetaData()
schema_version = Table("kms_schema_version", metadata, Column("version", Integer, primary_key=True))
units = Table(
    "kms_units",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("link", String(64), nullable=False),
    Column("key_id", String(36), nullable=False),
    Column("size_bits", Integer, nullable=False),
    Column("owned", Boolean, nullable=False),
    Column("state", SmallInteger, nullable=False),
    Column("grant_id", String(36), nullable=True),
    Column("material", LargeBinary, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("used_at", Float, nullable=True),
    Column("grant_group", BigInteger, nullable=True),
    Column("key_units", Text, nullable=True),
    Column("fetched", Text, nullable=True),
    UniqueConstraint("link", "key_id", name="uq_kms_units_link_key"),
)
# the take index. SQLite: only owned AVAILABLE units (partial), so a unit leaves it when taken
# and a peer's unit is never in it. PostgreSQL: every unit, and no column that a take or a grant
# changes, so those updates are HOT (heap-only: no index write) when the page has room (the
# table's fillfactor keeps some); a take starts above the units taken before (TakeFrontier)
free_index = Index(
    "ix_kms_units_free",
    units.c.link,
    units.c.owned,
    units.c.id,
    sqlite_where=text(_FREE["sqlite"]),
)
PG_FILLFACTOR = 70  # % of each heap page filled by inserts: the rest takes updated row versions
grant_groups = Table(
    "kms_grant_groups",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("link", String(64), nullable=False),
    Column("master_sae", String(64), nullable=False),
    Column("slaves", Text, nullable=False),
    Column("size_bits", Integer, nullable=False),
    Column("open_keys", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
)


class StoreError(Exception):
    """Base of the store's refusals (nothing was consumed when one is raised)."""


class InsufficientKeysError(StoreError):
    """Fewer available owned units than a request needs."""

    def __init__(self, available_units: int, needed_units: int) -> None:
        super().__init__(f"{available_units} key units available, {needed_units} needed")
        self.available_units = available_units
        self.needed_units = needed_units


class KeysNotFoundError(StoreError):
    """A requested key ID does not exist here (or was already delivered to this caller)."""


class NotAuthorizedError(StoreError):
    """The caller is not among the slaves named for one of the requested keys."""


class DuplicateKeysError(StoreError):
    """An ingested key ID is already stored for that link."""


class _ShortError(Exception):
    """Too few units for a whole group commit (rolls its transaction back)."""


class Grant(NamedTuple):
    """One delivered key as the slave side must learn it: its ID, units, size and SAEs (the
    per-key form; :func:`group_grants` turns a list of them into :class:`GrantGroup`)."""

    key_id: str
    unit_ids: tuple[str, ...]
    size_bits: int
    master_sae: str
    slaves: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        """JSON form used between KMEs."""
        return {
            "key_ID": self.key_id,
            "unit_IDs": list(self.unit_ids),
            "size": self.size_bits,
            "master_SAE_ID": self.master_sae,
            "slave_SAE_IDs": list(self.slaves),
        }


class GrantGroup(NamedTuple):
    """Keys delivered to one master SAE for the same slaves and size: what the slave side
    records, once per group (a batched delivery grants hundreds of keys that share these).

    ``key_ids``: the keys' IDs, each the ID of the key's first unit (the owner's rule).
    ``units``: each key's unit IDs when keys span several units; ``None`` when every key is the
    one unit of its ID (the common case: no per-key tuple to build, send or parse)."""

    master_sae: str
    slaves: tuple[str, ...]
    size_bits: int
    key_ids: list[str]
    units: list[tuple[str, ...]] | None = None

    def unit_ids(self) -> list[str]:
        """Every unit of the group, key by key."""
        if self.units is None:
            return self.key_ids
        return [u for key in self.units for u in key]


def group_grants(grants: Sequence[Grant]) -> list[GrantGroup]:
    """Per-key grants as groups by (master, slaves, size), in their order."""
    groups: dict[tuple[str, tuple[str, ...], int], GrantGroup] = {}
    for g in grants:
        group = groups.get((g.master_sae, g.slaves, g.size_bits))
        if group is None:
            group = GrantGroup(g.master_sae, g.slaves, g.size_bits, [], [])
            groups[g.master_sae, g.slaves, g.size_bits] = group
        group.key_ids.append(g.key_id)
        assert group.units is not None
        group.units.append(tuple(g.unit_ids))
    return [
        g._replace(units=None)
        if all(u == (k,) for k, u in zip(g.key_ids, g.units or [], strict=True))
        else g
        for g in groups.values()
    ]


def _plain(text: str) -> bool:
    """Nothing in ``text`` that JSON escapes: printable ASCII without ``"`` and ``\\``."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _json_ids(ids: Sequence[str], plain: bool | None = None) -> str:
    """``json.dumps(list(ids))``, built directly when no ID needs escaping (``plain``: already
    checked by the caller for a whole batch; one check of the joined IDs otherwise)."""
    if plain or (plain is None and _plain("".join(ids))):
        return '["' + '","'.join(ids) + '"]'
    return json.dumps(list(ids))


def _in_list(column: str, dialect: str) -> str:
    """``column`` is one of a list passed as one parameter (see :func:`_list_param`): SQLite
    reads a JSON array with ``json_each``; PostgreSQL an array literal (``= ANY`` uses the
    index). ``column`` ``id`` holds integers, any other text."""
    if dialect == "sqlite":
        return f"{column} IN (SELECT value FROM json_each(?))"
    return f"{column} = ANY(%s::{'bigint' if column == 'id' else 'text'}[])"


def _list_param(values: Sequence[int] | Sequence[str], dialect: str) -> Any:
    """One parameter for a list of row IDs or of plain text IDs: a JSON array for SQLite; for
    PostgreSQL the text of an array literal (psycopg adapts a Python list element by element,
    in Python: ~8 µs per element)."""
    if values and isinstance(values[0], int):
        inner = ",".join(map(str, values))
        return f"[{inner}]" if dialect == "sqlite" else f"{{{inner}}}"
    if dialect == "sqlite":
        return _json_ids(values)  # type: ignore[arg-type]
    if _plain("".join(values)):  # type: ignore[arg-type]
        return '{"' + '","'.join(values) + '"}'  # type: ignore[arg-type]
    return list(values)


def _split(
    rows: list[tuple[int, str, bytes]], wanted: Sequence[int]
) -> tuple[list[list[tuple[int, str, bytes]] | None], list[int]]:
    """Give each request its ``wanted[i]`` rows in order, ``None`` when too few remain; and the
    row IDs of all rows given."""
    plan: list[list[tuple[int, str, bytes]] | None] = []
    used: list[int] = []
    pos = 0
    for n in wanted:
        if pos + n > len(rows):
            plan.append(None)
            continue
        part = rows[pos : pos + n]
        pos += n
        used.extend(r[0] for r in part)
        plan.append(part)
    return plan, used


def _assemble(parts: Sequence[bytes], size_bits: int) -> bytes:
    """Concatenate unit material and cut it to ``size_bits`` (a multiple of 8)."""
    return b"".join(parts)[: size_bits // 8]


class KeyStore:
    """Key units and grants of one KME over SQLAlchemy (``sqlite:///file`` or PostgreSQL).

    ``schema`` (PostgreSQL only) puts the tables in their own schema, created if missing, so that
    several KMEs or test runs share one database without clashing.
    """

    def __init__(self, url: str, sealer: Sealer, *, schema: str | None = None) -> None:
        self.url = url
        self.sealer = sealer
        self.dialect = url.split(":", 1)[0].split("+", 1)[0]
        self._lock = threading.Lock() if self.dialect == "sqlite" else None
        # SQLite: units read by batches in flight, per link: {batch: (highest row ID, row IDs)}
        self._held: dict[str, dict[object, tuple[int, set[int]]]] = {}
        self.engine = self._make_engine(url, schema)
        self.schema = schema
        # the hot statements are written in the driver's SQL (no compile per call, one
        # parameter for a whole list of IDs): table names and placeholders per dialect
        prefix = f'"{schema}".' if schema and self.dialect == "postgresql" else ""
        self._units = prefix + "kms_units"
        self._grants = prefix + "kms_grants"  # version 1 only (see _upgrade_to_2)
        self._groups = prefix + "kms_grant_groups"
        self._free = _FREE[self.dialect]
        self._rows_at_analyze = 0  # PostgreSQL statistics, see _refresh_statistics
        self._frontier = TakeFrontier()  # PostgreSQL: where takes look for free units
        self._added_since_analyze = 0
        self._p = "?" if self.dialect == "sqlite" else "%s"
        self._migrate()
        self.recover()

    # -- setup ---------------------------------------------------------------------------------
    def _make_engine(self, url: str, schema: str | None) -> Engine:
        if self.dialect == "sqlite":
            engine = create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8
            )

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
                cursor = dbapi_conn.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=FULL")
                cursor.execute("PRAGMA busy_timeout=30000")
                cursor.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

            return engine
        if self.dialect != "postgresql":
            raise ValueError(
                f"unsupported store URL {url!r}: use sqlite:///FILE or postgresql+psycopg://..."
            )
        # no pre-ping (a round trip per transaction): a connection the server dropped fails one
        # transaction, and SQLAlchemy then replaces the pool's connections
        kwargs: dict[str, object] = {"pool_size": 16, "max_overflow": 16, "pool_recycle": 3600}
        if schema:
            if not schema.replace("_", "").isalnum():
                raise ValueError(f"schema name {schema!r} must be letters, digits and _")
            kwargs["execution_options"] = {"schema_translate_map": {None: schema}}
            with create_engine(url, poolclass=NullPool).begin() as conn:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        return create_engine(url, **kwargs)

    def _migrate(self) -> None:
        """Create the tables, or bring an older schema up to :data:`SCHEMA_VERSION`."""
        with self._write() as conn:
            schema_version.create(conn, checkfirst=True)
            current = conn.execute(select(func.max(schema_version.c.version))).scalar() or 0
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"key store schema version {current} is newer than this qkdnet "
                    f"({SCHEMA_VERSION}); upgrade qkdnet"
                )
            if current < 1:
                metadata.create_all(conn, tables=[units, grant_groups])
            elif current < 2:
                self._upgrade_to_2(conn)
            if current < 2 and self.dialect == "postgresql":
                conn.exec_driver_sql(
                    f"ALTER TABLE {self._units} SET (fillfactor = {PG_FILLFACTOR})"
                )
            if current < SCHEMA_VERSION:
                conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))

    def _upgrade_to_2(self, conn: Connection) -> None:
        """Version 1 -> 2: the grant columns of the units, one grant group per old per-key
        grant row (its slaves that already fetched go to the key's ``fetched``), the partial
        take index; ``kms_grants`` is dropped."""
        for column, kind in (("grant_group", "BIGINT"), ("key_units", "TEXT"), ("fetched", "TEXT")):
            conn.exec_driver_sql(f"ALTER TABLE {self._units} ADD COLUMN {column} {kind}")
        prefix = self._units[: -len("kms_units")]
        conn.exec_driver_sql(f"DROP INDEX {prefix}ix_kms_units_take")
        free_index.create(conn)
        grant_groups.create(conn)
        old = conn.exec_driver_sql(
            "SELECT key_id, link, master_sae, slaves, pending, size_bits, unit_ids, created_at "
            f"FROM {self._grants} ORDER BY created_at, key_id"
        ).fetchall()
        for key_id, link, master, slaves, pending, size_bits, unit_ids, created in old:
            ids, waiting = json.loads(unit_ids), json.loads(pending)
            if ids[0] != key_id:
                raise RuntimeError(f"grant {key_id}: its first unit is {ids[0]}, not the key ID")
            gid = conn.execute(
                grant_groups.insert().values(link=link, master_sae=master, slaves=slaves,
                                             size_bits=size_bits, open_keys=1, created_at=created)
            ).inserted_primary_key[0]  # fmt: skip
            fetched = [x for x in json.loads(slaves) if x not in waiting]
            conn.execute(
                units.update()
                .where(units.c.link == link, units.c.key_id == key_id)
                .values(key_units=json.dumps(ids) if len(ids) > 1 else None,
                        fetched=json.dumps(fetched) if fetched else None)
            )  # fmt: skip
            conn.execute(
                units.update()
                .where(units.c.link == link, units.c.key_id.in_(ids))
                .values(grant_group=gid)
            )
        conn.exec_driver_sql(f"DROP TABLE {self._grants}")

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction (serialised on SQLite), committed durably."""
        if self._lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._lock, self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def drop_schema(self) -> None:
        """Delete everything (tests only): drop the PostgreSQL schema or the tables."""
        if self.dialect == "postgresql" and self.schema:
            with self.engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        else:
            with self._write() as conn:
                metadata.drop_all(conn)
        self.close()

    # -- southbound ----------------------------------------------------------------------------
    def ingest(self, link: str, keys: Sequence[tuple[str, bytes, bool]]) -> int:
        """Store units ``(key_id, material, owned)`` of ``link``; all or nothing.

        Raises :class:`DuplicateKeysError` if any ID is already stored for this link.
        """
        if not keys:
            return 0
        now = time.time()
        rows = [
            {
                "link": link,
                "key_id": key_id,
                "size_bits": len(material) * 8,
                "owned": owned,
                "state": AVAILABLE,
                "grant_id": None,
                "material": self.sealer.seal(material, link, key_id),
                "created_at": now,
                "used_at": None,
            }
            for key_id, material, owned in keys
        ]
        ids = [r["key_id"] for r in rows]
        if len(set(ids)) != len(ids):
            raise DuplicateKeysError("the same key_ID appears twice in one block")
        with self._write() as conn:
            clash = conn.execute(
                select(func.count())
                .select_from(units)
                .where(units.c.link == link, units.c.key_id.in_(ids))
            ).scalar()
            if clash:
                raise DuplicateKeysError(
                    f"{clash} of these key_IDs are already stored for link {link}"
                )
            conn.execute(units.insert(), rows)
        self._refresh_statistics(len(rows))
        return len(rows)

    def _refresh_statistics(self, added: int) -> None:
        """PostgreSQL: ``ANALYZE`` the units after ingests that grew them by a fifth since the
        last one here. Without column statistics (a new table, before autovacuum gets to it) the
        planner takes ``link = ...`` for a few rows and answers ``key_id = ANY(...)`` by reading
        every unit of the link: measured 16-23 ms instead of 2-6 ms for a 512-key grant on 64,000
        units. ANALYZE samples at most 30,000 rows (~0.1 s)."""
        if self.dialect != "postgresql":
            return
        self._added_since_analyze += added
        if self._added_since_analyze < max(1000, self._rows_at_analyze // 5):
            return
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"ANALYZE {self._units}")
            self._rows_at_analyze = int(
                conn.exec_driver_sql(
                    "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (self._units,)
                ).scalar()
                or 0
            )
        self._added_since_analyze = 0

    # -- counts --------------------------------------------------------------------------------
    def available_units(self, link: str, owned: bool = True) -> int:
        """Units of ``link`` still available (owned by this KME unless ``owned=False``)."""
        with self.engine.connect() as conn:
            if owned:  # SQLite: the partial take index; PostgreSQL: from the take frontier on
                sqlite = self.dialect == "sqlite"
                where, params = ("1 = 1", ()) if sqlite else self._frontier_where(link)
                sql = (
                    f"SELECT count(*) FROM {self._units} WHERE link = {self._p} AND {self._free} "
                    f"AND {where}"
                )
                return int(self._sql(conn, sql, (link, *params)).fetchone()[0])
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(units)
                    .where(units.c.link == link, units.c.owned == owned, units.c.state == AVAILABLE)
                ).scalar()
                or 0
            )

    def counts(self) -> dict[str, dict[str, int]]:
        """Units per link and state (``available``/``granted``/``used``) — for metrics and tests."""
        names = {
            AVAILABLE: "available",
            GRANTED: "granted",
            USED: "used",
            RESERVED: "reserved",
        }
        out: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for link, state, n in conn.execute(
                select(units.c.link, units.c.state, func.count()).group_by(
                    units.c.link, units.c.state
                )
            ):
                out.setdefault(link, {v: 0 for v in names.values()})[names[state]] = int(n)
        return out

    def unit_states(self, link: str) -> dict[str, tuple[int, bool]]:
        """``key_id -> (state, has_material)`` of every unit of ``link`` (tests and audits)."""
        with self.engine.connect() as conn:
            return {
                k: (s, m is not None)
                for k, s, m in conn.execute(
                    select(units.c.key_id, units.c.state, units.c.material).where(
                        units.c.link == link
                    )
                )
            }

    # -- taking owned units --------------------------------------------------------------------
    def _sql(self, conn: Connection, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run driver SQL on ``conn``'s transaction; the DBAPI cursor (plain tuples, no ORM
        rows: a batch handles thousands of rows)."""
        cursor = conn.connection.cursor()
        cursor.execute(sql, params)
        return cursor

    def _lock_owned(self, conn: Connection, link: str, n: int) -> list[tuple[int, str, bytes]]:
        """The first ``n`` available owned units of ``link`` (PostgreSQL: locked, from the
        take frontier on)."""
        if self.dialect == "postgresql":
            where, params = self._frontier_where(link)
            sql = (
                f"SELECT id, key_id, material FROM {self._units} WHERE link = %s AND "
                f"{self._free} AND {where} ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
            )
            return self._sql(conn, sql, (link, *params, n)).fetchall()
        sql = (
            f"SELECT id, key_id, material FROM {self._units} WHERE link = ? AND {self._free} "
            "ORDER BY id LIMIT ?"
        )
        return self._sql(conn, sql, (link, n)).fetchall()

    def _frontier_where(self, link: str) -> tuple[str, tuple[Any, ...]]:
        """PostgreSQL: the units a take of ``link`` reads (:class:`TakeFrontier`)."""
        floor, back = self._frontier.where(link)
        if back:
            return "(id > %s OR id = ANY(%s::bigint[]))", (floor, _list_param(back, self.dialect))
        return "id > %s", (floor,)

    def _take_erase(self, conn: Connection, link: str, n: int) -> list[tuple[int, str, bytes]]:
        """PostgreSQL: lock the first ``n`` available owned units of ``link`` from the take
        frontier on, mark them USED with their material erased, and return them as they were,
        in ID order — one statement (one round trip) instead of a SELECT and an UPDATE. Final
        only when the transaction commits."""
        where, params = self._frontier_where(link)
        sql = (
            f"WITH picked AS MATERIALIZED (SELECT id, key_id, material FROM {self._units} "
            f"WHERE link = %s AND {self._free} AND {where} ORDER BY id LIMIT %s "
            f"FOR UPDATE SKIP LOCKED), gone AS (UPDATE {self._units} AS u SET state = {USED}, "
            "material = NULL, used_at = %s FROM picked WHERE u.id = picked.id) "
            "SELECT id, key_id, material FROM picked ORDER BY id"
        )
        return self._sql(conn, sql, (link, *params, n, time.time())).fetchall()

    def _pick_owned(self, conn: Connection, link: str, n: int) -> list[tuple[int, str, bytes]]:
        """SQLite: the first ``n`` available owned units of ``link`` that no batch in flight
        holds (call with ``self._lock`` held). Batches hold the lowest IDs they found, so the
        free units usually lie above the highest held ID; only when too few are there (a held
        batch was given back, leaving free units below) is the whole link read."""
        held = self._held.get(link)
        if not held:
            return self._lock_owned(conn, link, n)
        floor = max(top for top, _ in held.values())
        p = self._p
        sql = (
            f"SELECT id, key_id, material FROM {self._units} WHERE link = {p} AND {self._free} "
            f"AND id > {p} ORDER BY id LIMIT {p}"
        )
        rows = self._sql(conn, sql, (link, floor, n)).fetchall()
        if len(rows) < n:
            taken = set().union(*(ids for _, ids in held.values()))
            rows = self._lock_owned(conn, link, n + len(taken))
            rows = [r for r in rows if r[0] not in taken][:n]
        return rows

    def _erase(self, conn: Connection, row_ids: Sequence[int], held: bool = False) -> None:
        """Mark ``row_ids`` USED and erase their material. ``held`` (units read without a row
        lock, SQLite): all of them or none — a unit no longer AVAILABLE raises
        :class:`StoreError`, which rolls the transaction back, so nothing is delivered twice."""
        if not row_ids:
            return
        sql = (
            f"UPDATE {self._units} SET state = {USED}, material = NULL, used_at = {self._p} "
            f"WHERE {_in_list('id', self.dialect)}"
        )
        if held:
            sql += f" AND state = {AVAILABLE}"
        cursor = self._sql(conn, sql, (time.time(), _list_param(row_ids, self.dialect)))
        if held and cursor.rowcount != len(row_ids):
            raise StoreError(
                f"{len(row_ids) - cursor.rowcount} of {len(row_ids)} units were no longer "
                "available when erased; nothing delivered"
            )

    def take_owned(
        self,
        link: str,
        n_units: int,
        before_commit: Callable[[list[tuple[str, bytes]]], None] | None = None,
    ) -> list[tuple[str, bytes]]:
        """Take ``n_units`` owned units of ``link`` exactly once: ``[(key_id, material)]``.

        ``before_commit`` runs before the take is final, with the taken units (the KME uses it
        to tell the peer KME which keys its slave may fetch); if it raises, nothing is consumed.
        Raises :class:`InsufficientKeysError` when fewer units are available.
        """

        def hook(alloc: list[list[tuple[str, bytes]] | None]) -> None:
            if before_commit is not None and alloc[0] is not None:
                before_commit(alloc[0])

        alloc, available = self.take_owned_batch(link, [n_units], hook)
        if alloc[0] is None:
            raise InsufficientKeysError(available, n_units)
        return alloc[0]

    def take_owned_batch(
        self,
        link: str,
        wanted: Sequence[int],
        before_commit: Callable[[list[list[tuple[str, bytes]] | None]], None] | None = None,
    ) -> tuple[list[list[tuple[str, bytes]] | None], int]:
        """Serve several requests for owned units of ``link`` at once (group commit).

        Request ``i`` gets ``wanted[i]`` units, or ``None`` when too few remain (it consumes
        nothing). ``before_commit`` sees the allocation before it is final; if it raises,
        nothing at all is consumed. Returns the allocation and the units that were available
        (exact when some request got ``None``; otherwise the number taken, a lower bound).

        PostgreSQL: one transaction, the rows locked ``FOR UPDATE SKIP LOCKED`` while
        ``before_commit`` runs. SQLite has one writer for the whole file, which must not be held
        while ``before_commit`` calls the peer KME (two KMEs granting to each other would wait on
        each other): the units are held in memory by this process (read, not written), then
        erased (USED) by one durable commit that requires every unit to be still AVAILABLE.
        A crash in between leaves them AVAILABLE in the file — no SAE received them, since keys
        are answered only after the final commit.
        """
        if self.dialect == "postgresql":
            return self._take_batch_pg(link, wanted, before_commit)
        assert self._lock is not None
        with self._lock, self.engine.connect() as conn:
            rows = self._pick_owned(conn, link, sum(wanted))
            plan, used = _split(rows, wanted)
            if not used:
                return [None] * len(wanted), len(rows)
            token = object()
            self._held.setdefault(link, {})[token] = (max(used), set(used))
        try:
            alloc = self._open(plan, link)
            if before_commit is not None:
                before_commit(alloc)
            with self._write() as conn:
                self._erase(conn, used, held=True)
        finally:
            with self._lock:
                del self._held[link][token]
        return alloc, len(rows)

    def _take_batch_pg(
        self,
        link: str,
        wanted: Sequence[int],
        before_commit: Callable[[list[list[tuple[str, bytes]] | None]], None] | None,
    ) -> tuple[list[list[tuple[str, bytes]] | None], int]:
        """:meth:`take_owned_batch` on PostgreSQL. Row IDs a rolled-back take had picked go
        back to the take frontier, those of a committed take move its floor."""
        n = sum(wanted)
        rows: list[tuple[int, str, bytes]] = []
        try:  # the usual case, every request served: take and erase in one statement
            with self._write() as conn:
                rows = self._take_erase(conn, link, n)
                if len(rows) < n:
                    raise _ShortError
                alloc = self._open(_split(rows, wanted)[0], link)
                if before_commit is not None:
                    before_commit(alloc)
            self._frontier.taken(link, (r[0] for r in rows))
            return alloc, n
        except _ShortError:
            self._frontier.given_back(link, (r[0] for r in rows))
        except BaseException:
            self._frontier.given_back(link, (r[0] for r in rows))
            raise
        # rolled back: too few units, serve what fits (lock, then erase)
        used: list[int] = []
        try:
            with self._write() as conn:
                alloc, available, used = self._allocate(conn, link, wanted)
                if before_commit is not None and used:
                    before_commit(alloc)
                if used:
                    self._erase(conn, used)
        except BaseException:
            self._frontier.given_back(link, used)
            raise
        self._frontier.taken(link, used)
        return alloc, available

    def _open(
        self, plan: list[list[tuple[int, str, bytes]] | None], link: str
    ) -> list[list[tuple[str, bytes]] | None]:
        """Unseal the material of each request's rows: ``[(key_id, material)]`` or ``None``."""
        opened = self.sealer.open
        return [
            None if part is None else [(kid, opened(m, link, kid)) for _, kid, m in part]
            for part in plan
        ]

    def _allocate(
        self, conn: Connection, link: str, wanted: Sequence[int]
    ) -> tuple[list[list[tuple[str, bytes]] | None], int, list[int]]:
        """Lock the first available owned units (PostgreSQL) and split them among ``wanted``."""
        rows = self._lock_owned(conn, link, sum(wanted))
        # the count only matters to refuse a request, which happens only when too few rows came
        # back (then they are all that was available); no COUNT(*) over the link when all fit
        plan, used = _split(rows, wanted)
        return self._open(plan, link), len(rows), used

    def _set_state(self, conn: Connection, row_ids: Sequence[int], state: int) -> None:
        if not row_ids:
            return
        sql = f"UPDATE {self._units} SET state = {int(state)} WHERE {_in_list('id', self.dialect)}"
        self._sql(conn, sql, (_list_param(row_ids, self.dialect),))

    def recover(self) -> int:
        """Make units left RESERVED by a crash AVAILABLE again; returns how many."""
        with self._write() as conn:
            result = conn.execute(
                units.update().where(units.c.state == RESERVED).values(state=AVAILABLE)
            )
            return int(result.rowcount or 0)

    def take_by_ids(self, link: str, key_ids: Sequence[str]) -> list[tuple[str, bytes]]:
        """Take the peer-owned units ``key_ids`` of ``link`` exactly once (one-time-pad receive).

        A unit held by a grant that no slave fetched yet is taken too (the owner has re-used it
        after a crash); raises :class:`KeysNotFoundError` if any is missing or used.
        """
        with self._write() as conn:
            rows = self._lock_units(conn, link, key_ids)
            taken = [(kid, self.sealer.open(m, link, kid)) for _, kid, m in rows if m is not None]
            self._erase(conn, [r[0] for r in rows])
        return taken

    def _lock_units(
        self, conn: Connection, link: str, key_ids: Sequence[str], material: bool = True
    ) -> list[tuple[int, str, bytes | None]]:
        """Lock units by ID for a new use, dropping stale unfetched grants that hold them:
        ``[(row id, key_id, material)]`` in the order of ``key_ids`` (material ``None`` unless
        ``material``)."""
        lock = " FOR UPDATE" if self.dialect == "postgresql" else ""
        sql = (
            f"SELECT key_id, id, state, grant_id{', material' if material else ''} FROM "
            f"{self._units} WHERE link = {self._p} AND {_in_list('key_id', self.dialect)}{lock}"
        )
        found = {r[0]: r for r in self._sql(conn, sql, (link, _list_param(key_ids, self.dialect)))}
        if len(found) != len(key_ids) or len(set(key_ids)) != len(key_ids):
            missing = sum(1 for k in set(key_ids) if k not in found)
            raise KeysNotFoundError(f"{missing} of {len(key_ids)} units not available on {link}")
        states = {r[2] for r in found.values()}
        if USED in states:
            missing = sum(1 for r in found.values() if r[2] == USED)
            raise KeysNotFoundError(f"{missing} of {len(key_ids)} units not available on {link}")
        if GRANTED in states:
            stale = {r[3] or r[0] for r in found.values() if r[2] == GRANTED}
            self._drop_stale(conn, link, sorted(stale))
        if material:
            return [(found[k][1], k, found[k][4]) for k in key_ids]
        return [(found[k][1], k, None) for k in key_ids]

    def _drop_stale(self, conn: Connection, link: str, keys: Sequence[str]) -> None:
        """Make the units of granted ``keys`` AVAILABLE again: the owner re-used them after a
        crash (it granted them, then died before its erase was final, so no master SAE got
        them). Refused (:class:`KeysNotFoundError`) when a slave already fetched one."""
        lock = " FOR UPDATE" if self.dialect == "postgresql" else ""
        heads = self._sql(
            conn,
            f"SELECT key_id, fetched, key_units, grant_group FROM {self._units} WHERE link = "
            f"{self._p} AND {_in_list('key_id', self.dialect)}{lock}",
            (link, _list_param(keys, self.dialect)),
        ).fetchall()
        if any(fetched is not None for _, fetched, _, _ in heads):
            raise KeysNotFoundError("units of a granted key were already fetched")
        members = [u for kid, _, ku, _ in heads for u in (json.loads(ku) if ku else [kid])]
        self._sql(
            conn,
            f"UPDATE {self._units} SET state = {AVAILABLE}, grant_id = NULL, grant_group = NULL, "
            f"key_units = NULL WHERE link = {self._p} AND state = {GRANTED} AND "
            f"{_in_list('key_id', self.dialect)}",
            (link, _list_param(members, self.dialect)),
        )
        self._close_keys(conn, [g for _, _, _, g in heads])

    def _close_keys(self, conn: Connection, group_ids: Sequence[int]) -> None:
        """One key of each of ``group_ids`` (repeated per key) is done: fetched by every slave,
        or dropped. A group with no open key left is deleted."""
        per_group: dict[int, int] = {}
        for gid in group_ids:
            per_group[gid] = per_group.get(gid, 0) + 1
        p = self._p
        for gid, n in per_group.items():
            self._sql(
                conn,
                f"UPDATE {self._groups} SET open_keys = open_keys - {p} WHERE id = {p}",
                (n, gid),
            )
        if per_group:
            self._sql(
                conn,
                f"DELETE FROM {self._groups} WHERE open_keys <= 0 AND "
                f"{_in_list('id', self.dialect)}",
                (_list_param(list(per_group), self.dialect),),
            )

    # -- grants (slave side) -------------------------------------------------------------------
    def add_grants(self, link: str, groups: Sequence[GrantGroup]) -> None:
        """Record keys the peer KME handed to a master SAE; their units become GRANTED.

        One row per group; per key only its units' state. A repeated grant replaces the
        unfetched one it repeats. Raises :class:`KeysNotFoundError` if a unit is missing here
        (the QKD module has not delivered it to this KME yet) or already used.
        """
        now = time.time()
        with self._write() as conn:
            gids = [self._new_group(conn, link, g, len(g.key_ids), now) for g in groups]
            if not self._grant_available(conn, link, groups, gids):
                self._grant_locked(conn, link, groups, gids)

    def _new_group(self, conn: Connection, link: str, g: GrantGroup, n: int, now: float) -> int:
        p = self._p
        sql = (
            f"INSERT INTO {self._groups} (link, master_sae, slaves, size_bits, open_keys, "
            f"created_at) VALUES ({p}, {p}, {p}, {p}, {p}, {p}) RETURNING id"
        )
        slaves = json.dumps(list(g.slaves))
        return int(
            self._sql(conn, sql, (link, g.master_sae, slaves, g.size_bits, n, now)).fetchone()[0]
        )

    def _grant_available(
        self, conn: Connection, link: str, groups: Sequence[GrantGroup], gids: Sequence[int]
    ) -> bool:
        """The common case of :meth:`add_grants`, one statement per group: every key is one
        unit, and every unit is here and AVAILABLE. Tried in a savepoint; ``False`` (nothing
        changed) when it does not hold, and :meth:`_grant_locked` does the general case."""
        if any(g.units is not None for g in groups):
            return False
        savepoint = conn.begin_nested()
        if self.dialect == "postgresql":
            # find the rows by (link, key_id) first: on a table without fresh statistics the
            # planner would otherwise scan for state = AVAILABLE
            sql = (
                f"WITH t AS MATERIALIZED (SELECT id FROM {self._units} WHERE link = %s AND "
                f"{_in_list('key_id', self.dialect)}) UPDATE {self._units} AS u SET state = "
                f"{GRANTED}, grant_group = %s FROM t WHERE u.id = t.id AND "
                f"u.state = {AVAILABLE}"
            )
        else:
            sql = (
                f"UPDATE {self._units} SET state = {GRANTED}, grant_group = ? "
                f"WHERE link = ? AND {_in_list('key_id', self.dialect)} AND state = {AVAILABLE}"
            )
        for g, gid in zip(groups, gids, strict=True):
            if self._grant_in_order(conn, link, g.key_ids, gid):
                continue
            ids = _list_param(g.key_ids, self.dialect)
            params = (gid, link, ids) if self.dialect == "sqlite" else (link, ids, gid)
            cursor = self._sql(conn, sql, params)
            if cursor.rowcount != len(g.key_ids):
                savepoint.rollback()
                return False
        savepoint.commit()
        return True

    def _grant_in_order(self, conn: Connection, link: str, key_ids: list[str], gid: int) -> bool:
        """Mark ``key_ids`` GRANTED when they are, in this order, the next units of the peer
        on ``link`` from the first one on, all AVAILABLE: the usual case, since both KMEs store
        a link's blocks in the order the QKD module pushed them and the owner takes its units
        in that order. One index lookup and a range instead of an index lookup per key
        (measured on PostgreSQL, 512 keys: ~1 instead of ~4 µs of server CPU per key).
        ``False`` (nothing changed) otherwise."""
        p = self._p
        first = self._sql(
            conn,
            f"SELECT id FROM {self._units} WHERE link = {p} AND key_id = {p}",
            (link, key_ids[0]),
        ).fetchone()
        if first is None:
            return False
        # SQLite: by row ID (``+link``: not by the (link, key_id) index, which would read every
        # unit of the link); PostgreSQL: by the (link, owned, id) index
        peer = "+link = ? AND owned = 0" if self.dialect == "sqlite" else "link = %s AND NOT owned"
        rows = self._sql(
            conn,
            f"SELECT id, key_id FROM {self._units} WHERE {peer} AND id >= {p} ORDER BY id "
            f"LIMIT {p}",
            (link, first[0], len(key_ids)),
        ).fetchall()
        if [r[1] for r in rows] != key_ids:
            return False
        cursor = self._sql(
            conn,
            f"UPDATE {self._units} SET state = {GRANTED}, grant_group = {p} WHERE {peer} AND "
            f"state = {AVAILABLE} AND id BETWEEN {p} AND {p}",
            (gid, link, rows[0][0], rows[-1][0]),
        )
        return bool(cursor.rowcount == len(key_ids))

    def _grant_locked(
        self, conn: Connection, link: str, groups: Sequence[GrantGroup], gids: Sequence[int]
    ) -> None:
        """Mark the units of ``groups`` GRANTED after locking them (missing or used units
        raise, stale unfetched grants on them are dropped)."""
        all_units = [u for g in groups for u in g.unit_ids()]
        rows = self._lock_units(conn, link, all_units, material=False)
        row_id = {kid: rid for rid, kid, _ in rows}
        # per unit: (its key if it has several units, its group, its row); per composite key
        # its units, on its first unit's row
        marks = [
            (k if len(members) > 1 else None, gid, row_id[u])
            for g, gid in zip(groups, gids, strict=True)
            for k, members in zip(g.key_ids, g.units or [(k,) for k in g.key_ids], strict=True)
            for u in members
        ]
        heads = [
            (json.dumps(list(members)), row_id[k])
            for g in groups
            if g.units is not None
            for k, members in zip(g.key_ids, g.units, strict=True)
            if len(members) > 1
        ]
        if self.dialect == "postgresql":
            # rows as one JSON parameter: psycopg's executemany sends a statement per row
            self._sql(
                conn,
                f"UPDATE {self._units} AS u SET state = {GRANTED}, grant_id = r->>0, grant_group "
                "= (r->>1)::bigint FROM json_array_elements(%s::json) AS r "
                "WHERE u.id = (r->>2)::bigint",
                (json.dumps(marks),),
            )
            if heads:
                self._sql(
                    conn,
                    f"UPDATE {self._units} AS u SET key_units = r->>0 FROM "
                    "json_array_elements(%s::json) AS r WHERE u.id = (r->>1)::bigint",
                    (json.dumps(heads),),
                )
            return
        cursor = conn.connection.cursor()
        cursor.executemany(
            f"UPDATE {self._units} SET state = {GRANTED}, grant_id = ?, grant_group = ? "
            "WHERE id = ?",
            marks,
        )
        if heads:
            cursor.executemany(f"UPDATE {self._units} SET key_units = ? WHERE id = ?", heads)

    def add_relayed(
        self, link: str, keys: Sequence[tuple[str, bytes]], master_sae: str, slaves: Sequence[str]
    ) -> None:
        """Store keys relayed from KME ``link`` for ``slaves`` (each key one unit, one group)."""
        now = time.time()
        group = GrantGroup(master_sae, tuple(slaves), 0, [k for k, _ in keys])
        with self._write() as conn:
            sizes = {len(m) * 8 for _, m in keys}
            gid = self._new_group(conn, link, group._replace(size_bits=max(sizes, default=0)),
                                  len(keys), now)  # fmt: skip
            conn.execute(
                units.insert(),
                [
                    {
                        "link": link,
                        "key_id": kid,
                        "size_bits": len(m) * 8,
                        "owned": False,
                        "state": GRANTED,
                        "grant_id": None,
                        "grant_group": gid,
                        "material": self.sealer.seal(m, link, kid),
                        "created_at": now,
                        "used_at": None,
                    }
                    for kid, m in keys
                ],
            )

    def fetch_granted(
        self, link: str, caller: str, master_sae: str, key_ids: Sequence[str]
    ) -> list[tuple[str, bytes]]:
        """Deliver keys granted on ``link`` (the master's KME) to slave ``caller`` once, in the
        order of ``key_ids``.

        Raises :class:`KeysNotFoundError` if a key is unknown, for another master, or already
        fetched by ``caller``; :class:`NotAuthorizedError` if ``caller`` is not a named slave of
        one of them. A key's material is erased once every named slave fetched it.
        """
        p, dialect = self._p, self.dialect
        lock = " FOR UPDATE" if dialect == "postgresql" else ""
        with self._write() as conn:
            found = {
                r[0]: r
                for r in self._sql(
                    conn,
                    f"SELECT key_id, id, state, grant_id, grant_group, key_units, fetched, "
                    f"material FROM {self._units} WHERE link = {p} AND "
                    f"{_in_list('key_id', dialect)}{lock}",
                    (link, _list_param(key_ids, dialect)),
                )
            }
            heads = [found.get(k) for k in key_ids]
            if any(h is None or h[2] != GRANTED or (h[3] or h[0]) != h[0] for h in heads):
                raise KeysNotFoundError("unknown key_ID")
            group_ids = sorted({h[4] for h in heads})  # type: ignore[index]
            groups = {
                gid: (master, json.loads(slaves), size)
                for gid, master, slaves, size in self._sql(
                    conn,
                    f"SELECT id, master_sae, slaves, size_bits FROM {self._groups} WHERE "
                    f"{_in_list('id', dialect)}",
                    (_list_param(group_ids, dialect),),
                )
            }
            if any(caller not in groups[h[4]][1] for h in heads):  # type: ignore[index]
                raise NotAuthorizedError("caller is not a slave of every requested key")
            fetched = [json.loads(h[6]) if h[6] else [] for h in heads]  # type: ignore[index]
            if any(
                groups[h[4]][0] != master_sae or caller in done  # type: ignore[index]
                for h, done in zip(heads, fetched, strict=True)
            ):
                raise KeysNotFoundError("key for another master, or already delivered")
            parts = self._key_parts(conn, link, heads)  # type: ignore[arg-type]
            out: list[tuple[str, bytes]] = []
            erase: list[int] = []
            closed: list[int] = []
            progress: list[tuple[str, int]] = []
            for h, done in zip(heads, fetched, strict=True):
                assert h is not None
                kid, gid = h[0], h[4]
                rows = parts[kid]
                material = [self.sealer.open(m, link, u) for _, u, m in rows]
                out.append((kid, _assemble(material, groups[gid][2])))
                if len(done) + 1 == len(groups[gid][1]):
                    erase.extend(r for r, _, _ in rows)
                    closed.append(gid)
                else:
                    progress.append((json.dumps([*done, caller]), h[1]))
            for value, row in progress:
                self._sql(
                    conn, f"UPDATE {self._units} SET fetched = {p} WHERE id = {p}", (value, row)
                )
            self._erase(conn, erase)
            self._close_keys(conn, closed)
        return out

    def _key_parts(
        self, conn: Connection, link: str, heads: Sequence[tuple[Any, ...]]
    ) -> dict[str, list[tuple[int, str, bytes]]]:
        """Each key's units ``(row id, unit ID, sealed material)`` in order, from its first
        unit's row (the only one, or the one naming the others in ``key_units``)."""
        out = {h[0]: [(h[1], h[0], h[7])] for h in heads}
        wanted = {h[0]: json.loads(h[5]) for h in heads if h[5]}
        rest = [u for members in wanted.values() for u in members[1:]]
        if rest:
            rows = {
                r[0]: r
                for r in self._sql(
                    conn,
                    f"SELECT key_id, id, state, grant_id, material FROM {self._units} WHERE link "
                    f"= {self._p} AND {_in_list('key_id', self.dialect)}",
                    (link, _list_param(rest, self.dialect)),
                )
            }
            for kid, members in wanted.items():
                for u in members[1:]:
                    r = rows.get(u)
                    if r is None or r[2] != GRANTED or r[3] != kid:
                        raise KeysNotFoundError(f"a unit of key {kid} is missing")
                    out[kid].append((r[1], u, r[4]))
        return out

    def pending_grants(self) -> int:
        """Number of granted keys some slave has not fetched yet."""
        with self.engine.connect() as conn:
            total = conn.execute(select(func.sum(grant_groups.c.open_keys))).scalar()
            return int(total or 0)


def assemble_key(parts: Sequence[bytes], size_bits: int) -> bytes:
    """Public form of the unit-concatenation rule shared by both ends of a link."""
    return _assemble(parts, size_bits)
