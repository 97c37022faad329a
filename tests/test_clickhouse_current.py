"""The ClickHouse store on a current ClickHouse release (chDB: ClickHouse 26.x in process), answering as on 18.16.

Issue 21: the store must work on Debian's 18.16 (``test_clickhouse_store.py``, a real cluster)
and on current releases.  No current server installs here; chDB is the engine of one, as a
library (``tests/clickhouse_chdb.py`` puts it behind the driver's client).  Here the store's
own code runs on it unchanged: every statement of ``MIGRATIONS`` (``Distributed`` tables on a
one-shard cluster of the engine itself, materialized views, the Null insert table), the
writer's synchronous distributed inserts, a v1 store's upgrade, and every read (``find``: in
``test_clickhouse_find_current.py``); the answers are compared with the
SQLite store's (the read tests of ``test_clickhouse_store.py``, run again here on 26.x) and,
where Debian's server is installed, with the same rows on a real two-shard 18.16 cluster.
Last, what a current release adds (``docs/design/clickhouse-store.md`` (i)): its DDL creates on
26.x and a log-text query uses the token index.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from otel_corr.server._otlp import decode_logs, parse_spans, span_rows
from otel_corr.server._search import parse
from otel_corr.server._store import QueryTimeout, Store

from .clickhouse_chdb import MISSING, ChdbEngine, available, chdb_store, shared_engine
from .clickhouse_cluster import ClickHouseCluster, find_server
from .test_clickhouse_store import (  # and the read tests of the 18.16 suite, collected again here on 26.x
    BASE,
    BATCHES,
    ENTRIES,
    HOUR,
    LOGS,
    OWN,
    SEARCHES,
    SERVICES,
    T1,
    T2,
    T3,
    WINDOWS,
    _corpus,
    _logs,
    _request,
    _span,
    _submit,
    test_dependencies_answer_as_sqlite,
    test_endpoint_stats_answer_as_sqlite,
    test_entries_answer_as_sqlite,
    test_recent_requests_answer_as_sqlite,
    test_search_answers_as_sqlite,
    test_services_and_operations_answer_as_sqlite,
    test_the_searches_compared_find_something,
)

pytestmark = [pytest.mark.skipif(not available(), reason=MISSING)]

__all__ = [  # collected by pytest in this module too, with this module's ``both``: answered by 26.x
    "test_dependencies_answer_as_sqlite",
    "test_endpoint_stats_answer_as_sqlite",
    "test_entries_answer_as_sqlite",
    "test_recent_requests_answer_as_sqlite",
    "test_search_answers_as_sqlite",
    "test_services_and_operations_answer_as_sqlite",
    "test_the_searches_compared_find_something",
]


@pytest.fixture(scope="module")
def engine() -> ChdbEngine:
    return shared_engine()


def _database() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def _tables(store: Any) -> dict[str, str]:
    """Each table of the store's database and its engine, as the engine lists them."""
    rows = store._on(store.shards[0]).execute(
        "SELECT name, engine FROM system.tables WHERE database = %(db)s", {"db": store.url.database}
    )
    return {name.decode(): kind.decode() for name, kind in rows}


def test_the_engine_is_a_current_release(engine: ChdbEngine) -> None:
    """What "current" means here: a release of the last two years (18.16 is from 2018)."""
    major = int(engine.version.split(".")[0])
    assert major >= 24, engine.version


def test_every_migration_creates_on_a_current_release(engine: ChdbEngine) -> None:
    from otel_corr.server._clickhouse import MIGRATIONS, SCHEMA_VERSION

    store = chdb_store(engine, _database())
    try:
        # Every table and view each statement creates, with the engine it names (a view: its own).
        expected = {}
        for _, statements in MIGRATIONS:
            for statement in statements:
                created = re.match(r"CREATE (TABLE|MATERIALIZED VIEW) IF NOT EXISTS \{db\}\.(\w+)", statement)
                if created:
                    kind = re.search(r"ENGINE = (\w+)", statement)
                    expected[created[2]] = "MaterializedView" if created[1] != "TABLE" else kind[1] if kind else "?"
        assert "Distributed" in expected.values()  # the cluster's tables are made, not skipped
        assert _tables(store) == {**expected, "schema_version": "MergeTree"}
        applied = list(range(1, SCHEMA_VERSION + 1))
        assert store.schema_versions() == {1: applied}
        assert store.ensure_schema() == {1: SCHEMA_VERSION}  # a second start: nothing to do
        assert store.schema_versions() == {1: applied}
        ((version,),) = store._on(store.shards[0]).execute("SELECT version()")
        assert [s.version for s in store.health()] == [version.decode()] == [engine.version]
    finally:
        store.close()


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory, engine: ChdbEngine) -> Iterator[tuple[Store, object]]:
    """``test_clickhouse_store``'s ``both`` with the current engine for the cluster: its corpus in a SQLite
    store and in two store instances (two replicas) on one database, a batch sent twice."""
    sqlite = Store(tmp_path_factory.mktemp("sqlite") / "s.db")
    database = _database()
    replicas = [chdb_store(engine, database), chdb_store(engine, database)]
    try:
        _load(sqlite, replicas)
        yield sqlite, replicas[0]
    finally:
        sqlite.close()
        for replica in replicas:
            replica.close()


def _load(sqlite: Store | None, replicas: list[Any]) -> None:
    """The read tests' corpus, as ``test_clickhouse_store``'s ``both`` sends it; to the ClickHouse stores
    all at once (their writers group the requests into a few inserts: each costs ~0.1 s on chDB)."""
    corpus = _corpus()
    futures = []
    for i, body in enumerate(corpus):
        if sqlite is not None:
            _submit(sqlite, body)
        replica = replicas[i % len(replicas)]
        batch = span_rows(parse_spans(body, "application/x-protobuf"), replica.resource_id)
        futures.append(replica.submit(batch.rows, batch.resources))
    for future in futures:
        future.result(timeout=120)
    _submit(replicas[-1], corpus[5])  # a retry after a lost acknowledgement: stored twice, read once
    records, _, _ = decode_logs(_logs("mailer", b"", 0, ["a service that only logs"]))
    if sqlite is not None:
        sqlite.submit([], [], records).result(timeout=30)
    replicas[0].submit([], [], records).result(timeout=30)


def test_keyed_reads_answer_as_sqlite(engine: ChdbEngine, tmp_path: Path) -> None:
    """A trace (whole, lean, one span), its logs, a request-ID lookup: as SQLite answers them."""
    sqlite = Store(tmp_path / "s.db")
    current = chdb_store(engine, _database())
    try:
        later = _request("front", [_span(T3, 9, kind=2, request_id="req-1")])
        for body in (*BATCHES, BATCHES[1], later):  # the second batch twice: a retry, read once
            _submit(sqlite, body)
            _submit(current, body)
        for request in LOGS:
            records, _, _ = decode_logs(request)
            sqlite.submit([], [], records).result(timeout=30)
            current.submit([], [], records).result(timeout=30)
        for trace in (T1, T2, T3):
            assert current.trace(trace) == sqlite.trace(trace)
            lean, expected = current.trace(trace, details=False), sqlite.trace(trace, details=False)
            assert [replace(s, raw=b"") for s in lean] == [replace(s, raw=b"") for s in expected]
            for span, other in zip(lean, expected, strict=True):
                assert current.unpack_detail(span.raw) == sqlite.unpack_detail(other.raw)
                current.expand(span)
                sqlite.expand(other)
                assert span == other
            assert current.logs(trace) == sqlite.logs(trace)
            assert [r.time_ns for r in current.trace_logs(trace)] == [r.time_ns for r in sqlite.trace_logs(trace)]
        assert [s.span_id[-1] for s in current.trace(T1)] == [1, 2, 3, 4]
        assert [r.body for r in current.logs(T1)] == ["started", "charging", "card declined"]
        three = (3).to_bytes(8, "big")
        assert current.span(T1, three) == sqlite.span(T1, three) is not None
        assert current.span(T1, bytes(8)) is None
        for request_id in ("req-1", str(OWN), str(uuid.uuid4()), "nobody"):
            assert current.traces_for_request(request_id) == sqlite.traces_for_request(request_id), request_id
        assert current.traces_for_request("req-1") == [T3, T1]
        assert current.stats()["spans"] == 3 + 3 + 3 + 1  # the retry stored twice (read once)
    finally:
        sqlite.close()
        current.close()


def test_retention_drops_old_days_on_a_current_release(engine: ChdbEngine) -> None:
    day = 86_400 * 10**9
    store = chdb_store(engine, _database())
    try:
        old = [uuid.UUID(int=i).bytes for i in range(1, 6)]
        spans = [_span(t, i + 1, request_id=f"old-{i}") for i, t in enumerate(old)]
        for span in spans:
            span.start_time_unix_nano -= 3 * day
            span.end_time_unix_nano -= 3 * day
        _submit(store, _request("front", spans))
        _submit(store, _request("front", [_span(T1, 1, request_id="new")]))
        assert store.prune(max_age_ns=2 * day, now_ns=BASE) == len(old)
        assert all(store.trace(t) == [] for t in old)
        assert store.traces_for_request("old-1") == []
        assert len(store.trace(T1)) == 1 and store.traces_for_request("new") == [T1]
        assert store.prune(max_age_ns=2 * day, now_ns=BASE) == 0
    finally:
        store.close()


def test_the_query_budget_stops_a_query_on_a_current_release(engine: ChdbEngine) -> None:
    """``max_execution_time`` (what ``budget`` sends) still stops a query, with the code the store maps."""
    store = chdb_store(engine, _database())
    try:
        slow = "SELECT sum(sleepEachRow(0.25)) FROM numbers(40) SETTINGS max_block_size = 1"  # 10 s unbounded
        from clickhouse_driver.errors import ServerException

        # The server stops it (TIMEOUT_EXCEEDED, 159), rather than the query running out...
        with pytest.raises(ServerException) as stopped:
            store._on(store.shards[0]).execute(slow, settings={"max_execution_time": 1})
        assert stopped.value.code == 159
        # ... and inside a budget the store answers that as QueryTimeout.
        with pytest.raises(QueryTimeout), store.budget(time.monotonic() + 1):
            store._on(store.shards[0]).execute(slow)
        assert store._on(store.shards[0]).execute("SELECT 1") == [(1,)]  # and the store goes on
    finally:
        store.close()


def test_a_v1_store_upgrades_on_a_current_release(
    engine: ChdbEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 1's tables with spans in them, then this release's migrations (views, the copy of the
    stored spans into the search copy): the spans read as SQLite's, old and new."""
    from otel_corr.server import _clickhouse

    sqlite = Store(tmp_path / "s.db")
    database = _database()
    corpus = _corpus()
    with monkeypatch.context() as patch:
        patch.setattr(_clickhouse, "MIGRATIONS", _clickhouse.MIGRATIONS[:1])
        patch.setattr(_clickhouse, "SCHEMA_VERSION", 1)
        v1 = chdb_store(engine, database)
    try:
        rows = []  # as version 1's writer stored them: straight into ``spans`` (one insert: ~0.1 s each)
        for body in corpus[:20]:
            _submit(sqlite, body)
            batch = span_rows(parse_spans(body, "application/x-protobuf"), v1.resource_id)
            texts = {rid: text.encode() for rid, _, _, text in batch.resources}
            rows += [
                (bytes(r[0]), bytes(r[1]), bytes(r[2]), r[3], r[4].encode(), r[5].encode(), r[6], r[7], r[8])
                + (r[9], r[10].encode(), r[11].encode(), bytes(r[12]), r[13], texts[r[3]])
                for r in batch.rows
            ]
        v1._entry().execute(
            f"INSERT INTO {database}.spans ({_clickhouse._V1_SPAN_COLUMNS}) VALUES",
            rows,
            settings={"insert_distributed_sync": 1},
        )
        assert v1.schema_versions() == {1: [1]}
    finally:
        v1.close()
    store = chdb_store(engine, database)
    try:
        assert store.schema_versions() == {1: list(range(1, _clickhouse.SCHEMA_VERSION + 1))}
        futures = []
        for body in corpus[20:]:
            _submit(sqlite, body)
            batch = span_rows(parse_spans(body, "application/x-protobuf"), store.resource_id)
            futures.append(store.submit(batch.rows, batch.resources))
        for future in futures:
            future.result(timeout=120)
        every = sqlite.search(limit=100)
        assert len(every) == 48 and store.search(limit=100) == every
        assert all(store.trace(t) == sqlite.trace(t) for t in every)
        assert store.services() == sqlite.services()
        assert store.entries(limit=100) == sqlite.entries(limit=100)
        assert store.dependencies(BASE, BASE + 40 * HOUR) == sqlite.dependencies(BASE, BASE + 40 * HOUR)
        later = {"tags": {"user": "u2"}, "start_ns": BASE + 5 * HOUR}  # attributes: spans since the upgrade
        assert store.search(**later) == sqlite.search(**later)  # type: ignore[arg-type]
    finally:
        sqlite.close()
        store.close()


# --- the same rows on 18.16 and on the current release ----------------------------------------------


@pytest.fixture(scope="module")
def old_and_current(tmp_path_factory: pytest.TempPathFactory, engine: ChdbEngine) -> Iterator[tuple[Any, Any]]:
    """The read tests' corpus on a real two-shard 18.16 cluster and on the current engine."""
    if find_server() is None:
        pytest.skip("clickhouse-server (18.16) is not installed: nothing to compare the current engine with")
    from otel_corr.server._clickhouse import ClickHouseStore

    with ClickHouseCluster(tmp_path_factory.mktemp("clickhouse")) as cluster:
        old = ClickHouseStore(cluster.url)
        current = chdb_store(engine, _database())
        try:
            _load(None, [old])
            _load(None, [current])
            yield old, current
        finally:
            old.close()
            current.close()


def test_every_read_answers_on_the_current_release_as_on_18_16(old_and_current: tuple[Any, Any]) -> None:
    """Directly, not only each against SQLite: the same rows, the same answers from both engines."""
    old, current = old_and_current
    assert [int(s.version.split(".")[0]) for s in old.health()] == [18, 18]
    assert current.services() == old.services()
    for service in (*SERVICES, "mailer"):
        assert current.operations(service) == old.operations(service), service
    for criteria in SEARCHES:
        assert current.search(**criteria) == old.search(**criteria), criteria
    for window in WINDOWS:
        assert current.dependencies(*window) == old.dependencies(*window), window
    for filters in ENTRIES:
        assert current.entries(**filters) == old.entries(**filters), filters
    for since in (BASE, BASE + 20 * HOUR):
        assert sorted(current.endpoint_stats(since)) == sorted(old.endpoint_stats(since))
    for service, name in (("front", "GET /orders/1"), ("back", "GET /stock"), ("queue", "orders process")):
        assert current.recent_requests(service, name, BASE, 10) == old.recent_requests(service, name, BASE, 10)
    every = old.search(limit=1000)
    assert len(every) == 48
    for trace in every:
        assert current.trace(trace) == old.trace(trace)
        assert current.logs(trace) == old.logs(trace)
    for request_id in ("req-0", "req-3", "nobody"):
        assert current.traces_for_request(request_id) == old.traces_for_request(request_id)
    for text in ("GatewayError", "user=u2", "upstream failed", "status>=500", "a service that only logs"):
        assert repr(_find(current, text)) == repr(_find(old, text)), text
    counted = ("spans", "logs")
    assert {k: current.stats()[k] for k in counted} == {k: old.stats()[k] for k in counted}


def _find(store: Any, text: str) -> Any:
    with store.budget(time.monotonic() + 60):
        return store.find(parse(text), limit=20)


# --- what a current release adds (design note (i)): creates on 26.x, and a query uses it -------------


def test_what_a_current_release_adds_creates_and_is_used(engine: ChdbEngine) -> None:
    """The DDL the design note proposes behind a version check: Map attributes, LowCardinality, codecs,
    DateTime64, TTL and a token index for log text; ``hasToken`` skips granules by the index."""
    client = engine.client()
    db = _database()
    client.execute(f"CREATE DATABASE {db}")
    client.execute(
        f"""CREATE TABLE {db}.logs (
            trace_id FixedString(16), time DateTime64(9) CODEC(Delta, ZSTD(1)),
            service LowCardinality(String), body String CODEC(ZSTD(3)),
            attributes Map(LowCardinality(String), String),
            INDEX body_tokens lower(body) TYPE tokenbf_v1(8192, 3, 0) GRANULARITY 1
        ) ENGINE = MergeTree() PARTITION BY toDate(time) ORDER BY (service, time)
        TTL toDateTime(time) + INTERVAL 30 DAY DELETE SETTINGS index_granularity = 128"""
    )
    client.execute(  # 2048 lines now, and one 40 days old (past the TTL)
        f"INSERT INTO {db}.logs (trace_id, time, service, body, attributes) SELECT toFixedString('', 16),"
        " now64(9) + number, 'front', if(number = 777, 'Card DECLINED', concat('line ', toString(number), ' ok')),"
        " map('k', toString(number)) FROM numbers(2048)"
    )
    client.execute(
        f"INSERT INTO {db}.logs (trace_id, time, service, body, attributes) SELECT toFixedString('', 16),"
        " now64(9) - INTERVAL 40 DAY, 'front', 'old card declined', map() FROM numbers(1)"
    )
    client.execute(f"OPTIMIZE TABLE {db}.logs FINAL")  # TTL applies at merges: the old line goes
    # A word as find looks for it (any case: a regular expression decides), the index on lower(body)
    # narrowing first: what find's word prefilter could add on a current release.
    query = f"SELECT count() FROM {db}.logs WHERE hasToken(lower(body), 'declined') AND match(body, '(?i)declined')"
    assert client.execute(query) == [(1,)]  # the old line is gone
    assert client.execute(f"SELECT count() FROM {db}.logs WHERE attributes['k'] = '777'") == [(1,)]
    plan = "\n".join(r[0].decode() for r in client.execute(f"EXPLAIN indexes = 1 {query}"))
    skip = plan[plan.index("body_tokens") :]
    granules = re.search(r"Granules: (\d+)/(\d+)", skip)
    assert granules and int(granules[1]) < int(granules[2]), plan  # the token index dropped granules


def test_a_projection_could_be_the_search_copy_on_a_current_release(engine: ChdbEngine) -> None:
    """Spans ordered by trace with a projection ordered by (service, start): a service + time query reads
    the projection's few granules, one table instead of a copy filled by a view (design note (i))."""
    client = engine.client()
    db = _database()
    client.execute(f"CREATE DATABASE {db}")
    client.execute(
        f"""CREATE TABLE {db}.spans (trace_id FixedString(16), service LowCardinality(String), start_ns UInt64,
            name String, PROJECTION by_service (SELECT * ORDER BY service, start_ns))
        ENGINE = MergeTree() ORDER BY (trace_id, start_ns) SETTINGS index_granularity = 128"""
    )
    client.execute(
        f"INSERT INTO {db}.spans SELECT toFixedString(reinterpretAsString(cityHash64(intDiv(number, 10))), 16),"
        f" concat('svc', toString(number % 20)), {BASE} + number * 1000, 'op' FROM numbers(20000)"
    )
    query = (
        f"SELECT count() FROM {db}.spans WHERE service = 'svc3'"
        f" AND start_ns BETWEEN {BASE + 2_000_000} AND {BASE + 4_000_000}"
    )
    assert client.execute(query) == [(100,)]
    plan = "\n".join(r[0].decode() for r in client.execute(f"EXPLAIN indexes = 1, projections = 1 {query}"))
    assert "ReadFromMergeTree (by_service)" in plan, plan
    granules = re.search(r"Granules: (\d+)/(\d+)", plan[plan.index("by_service") :])
    assert granules and int(granules[1]) * 10 < int(granules[2]), plan
