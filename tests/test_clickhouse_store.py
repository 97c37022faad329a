"""The ClickHouse store against a real two-shard cluster (Debian's clickhouse-server), compared with SQLite.

The seed of issue 21's contract suite: the same OTLP requests go to the SQLite store and to the
ClickHouse store (in two batches, through two entry shards, as two replicas would send them), and
a trace, its logs and a request-ID lookup must read back the same.  Then the faults: a shard
stopped makes a lookup say which shard is down, never answer half.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as LogMessage
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from otel_corr.exceptions import StoreError, StoreUnavailable
from otel_corr.server._otlp import decode_logs, parse_spans, span_rows
from otel_corr.server._store import Store
from otel_corr.server._store_api import partial_answers

from .clickhouse_cluster import MISSING, ClickHouseCluster, find_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_server() is None, reason=MISSING),
]

BASE = 1_700_000_000_000_000_000
T1, T2, T3 = bytes(range(1, 17)), bytes(range(2, 18)), bytes(range(3, 19))
OWN = uuid.UUID(bytes=bytes(range(40, 56)))  # a request ID that names its own trace


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseCluster]:
    with ClickHouseCluster(tmp_path_factory.mktemp("clickhouse")) as running:
        yield running


@pytest.fixture
def url(cluster: ClickHouseCluster) -> str:
    """A database of its own per test, on the shared cluster."""
    return cluster.url.replace("/otel_corr?", f"/t_{uuid.uuid4().hex[:12]}?")


def _kv(key: str, value: str | int) -> KeyValue:
    any_value = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
    return KeyValue(key=key, value=any_value)


def _span(
    trace: bytes, n: int, parent: int = 0, *, kind: int = 1, request_id: str = "", status: int = 0
) -> SpanMessage:
    span = SpanMessage(
        trace_id=trace,
        span_id=n.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent else b"",
        name=f"op-{n}",
        kind=kind,
        start_time_unix_nano=BASE + n * 1000,
        end_time_unix_nano=BASE + n * 1000 + 500,
        status=Status(code=status, message="boom" if status == 2 else ""),
    )
    span.attributes.extend([_kv("http.route", f"/r/{n}"), _kv("attempt", n)])
    if request_id:
        span.attributes.append(_kv("request.id", request_id))
    event = span.events.add(time_unix_nano=BASE + n * 1000 + 10, name="checkpoint")
    event.attributes.append(_kv("step", n))
    if parent:
        span.links.add(trace_id=T3, span_id=(99).to_bytes(8, "big"))
    return span


def _request(service: str, spans: list[SpanMessage], scope: str = "lib", version: str = "1.2") -> bytes:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend([_kv("service.name", service), _kv("host.name", "h1")])
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = scope, version
    ss.spans.extend(spans)
    return request.SerializeToString()


def _logs(service: str, trace: bytes, span: int, bodies: list[str]) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.append(_kv("service.name", service))
    sl = rl.scope_logs.add()
    sl.scope.name = "app.logger"
    for i, body in enumerate(bodies):
        record = LogMessage(
            time_unix_nano=BASE + span * 1000 + 100 + i,
            severity_number=9,
            severity_text="INFO",
            body=AnyValue(string_value=body),
            trace_id=trace,
            span_id=span.to_bytes(8, "big") if span else b"",
        )
        record.attributes.append(_kv("request.id", "req-1"))
        sl.log_records.append(record)
    return request


# Two "replicas" worth of batches: trace T1's spans arrive in two requests from two services,
# interleaved with T2; the second request is sent twice (a retry after a lost acknowledgement).
BATCHES = [
    _request("front", [_span(T1, 1, kind=2, request_id="req-1"), _span(T2, 7, request_id=str(OWN)), _span(T1, 2, 1)]),
    _request(
        "back",
        [_span(T2, 8, 7), _span(T1, 3, 2, kind=2, request_id="req-1", status=2), _span(T1, 4, 3)],
        scope="other",
        version="",
    ),
]
LOGS = [
    _logs("front", T1, 1, ["started", "charging"]),
    _logs("back", T1, 3, ["card declined"]),
    _logs("back", b"", 0, ["a line of no trace"]),  # stored (spread by time), in no trace's logs
]


def _submit(store: object, body: bytes) -> None:
    batch = span_rows(parse_spans(body, "application/x-protobuf"), store.resource_id)  # type: ignore[attr-defined]
    store.submit(batch.rows, batch.resources).result(timeout=60)  # type: ignore[attr-defined]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "s.db")
    yield store
    store.close()


def test_schema_creates_on_18_16_and_twice_is_a_no_op(cluster: ClickHouseCluster, url: str) -> None:
    from otel_corr.server._clickhouse import SCHEMA_VERSION, ClickHouseStore

    store = ClickHouseStore(url)
    try:
        assert all(s.up and s.version for s in store.health())
        database = url.rsplit("/", 1)[1].split("?")[0]
        expected = {"schema_version", "spans", "spans_local", "request_ids", "request_ids_local", "logs", "logs_local"}
        expected |= {"spans_in", "spans_in_local", "spans_search", "spans_search_local", "services", "services_local"}
        expected |= {"operations", "operations_local", "spans_local_mv", "spans_search_mv", "operations_mv"}
        expected |= {"services_mv", "log_services_mv"}
        for shard in store.shards:  # every shard, not just the entry one: no ON CLUSTER without ZooKeeper
            tables = store._on(shard).execute(
                "SELECT name FROM system.tables WHERE database = %(db)s", {"db": database}
            )
            assert {t[0].decode() for t in tables} == expected
        applied = list(range(1, SCHEMA_VERSION + 1))  # a row per migration run
        assert store.schema_versions() == {1: applied, 2: applied}
        # A second start (another replica, or a restart): nothing to do, no second version row.
        assert store.ensure_schema() == {1: SCHEMA_VERSION, 2: SCHEMA_VERSION}
        again = ClickHouseStore(url)
        again.close()
        assert store.schema_versions() == {1: applied, 2: applied}
    finally:
        store.close()


def test_the_version_table_refuses_a_newer_schema(cluster: ClickHouseCluster, url: str) -> None:
    from otel_corr.server._clickhouse import ClickHouseStore

    store = ClickHouseStore(url)
    database = url.rsplit("/", 1)[1].split("?")[0]
    store._on(store.shards[1]).execute(
        f"INSERT INTO {database}.schema_version (version, otel_corr, applied_ns) VALUES", [(999, b"future", 0)]
    )
    store.close()
    with pytest.raises(StoreError, match=r"shard 2 .* schema version 999.*upgrade otel-corr"):
        ClickHouseStore(url)


def test_bad_urls_say_what_is_wrong() -> None:
    from otel_corr.server._clickhouse import parse_url

    parsed = parse_url("clickhouse://ch1:9440/traces?cluster=prod_2x")
    assert (parsed.host, parsed.port, parsed.database, parsed.cluster) == ("ch1", 9440, "traces", "prod_2x")
    with pytest.raises(StoreError, match=r"\?cluster=NAME"):
        parse_url("clickhouse://ch1:9000/traces")
    with pytest.raises(StoreError, match="letters, digits and _"):
        parse_url("clickhouse://ch1:9000/x;DROP?cluster=c")
    tricky = parse_url("clickhouse://al%40ice:s3/cr?e#t@ch1:9440,[::1]:9001,ch3/traces?cluster=prod_2x")
    assert (tricky.user, tricky.password, tricky.database) == ("al@ice", "s3/cr?e#t", "traces")
    assert tricky.hosts == (("ch1", 9440), ("::1", 9001), ("ch3", 9000))
    assert "s3/cr" not in repr(tricky) and "s3/cr" not in tricky.redacted()


def test_a_trace_from_two_replicas_reads_back_as_sqlite_reads_it(
    cluster: ClickHouseCluster, url: str, sqlite_store: Store
) -> None:
    from otel_corr.server._clickhouse import ClickHouseStore

    # Two replicas: each enters the cluster through a different shard.
    replicas = [
        ClickHouseStore(url),
        ClickHouseStore(url.replace(cluster.shards[0].address, cluster.shards[1].address)),
    ]
    try:
        _submit(sqlite_store, BATCHES[0])
        _submit(sqlite_store, BATCHES[1])
        _submit(sqlite_store, BATCHES[1])
        _submit(replicas[0], BATCHES[0])
        _submit(replicas[1], BATCHES[1])
        _submit(replicas[1], BATCHES[1])  # the retry: stored twice, read once
        for request in LOGS:
            records, _, _ = decode_logs(request)
            sqlite_store.submit([], [], records).result(timeout=30)
            replicas[1].submit([], [], records).result(timeout=30)

        for trace in (T1, T2):
            expected = sqlite_store.trace(trace)
            assert expected  # the comparison means something only with spans in it
            for replica in replicas:
                assert replica.trace(trace) == expected
        assert [s.span_id[-1] for s in replicas[0].trace(T1)] == [1, 2, 3, 4]
        # What why reads: columns only, each span decoded on demand; the same spans once expanded.
        for replica in replicas:
            bare = {s.span_id: s for s in sqlite_store.trace(T1, details=False)}  # fresh: expand changes them
            spans = replica.trace(T1, details=False)
            # Equal but for ``raw``, which only the store that read it decodes (SQLite's is compressed).
            assert {s.span_id: replace(s, raw=b"") for s in spans} == {k: replace(s, raw=b"") for k, s in bare.items()}
            for span, expected in zip(spans, sorted(bare.values(), key=lambda s: s.start_ns), strict=True):
                replica.expand(span)
                sqlite_store.expand(expected)
                assert span == expected
                assert span.attributes and span.events
            # The page's lean read: a client span's URL from its raw detail, and one span read alone.
            assert {replica.unpack_detail(s.raw) for s in replica.trace(T1, details=False)} == {
                sqlite_store.unpack_detail(s.raw) for s in sqlite_store.trace(T1, details=False)
            }
            three = (3).to_bytes(8, "big")
            assert replica.span(T1, three) == sqlite_store.span(T1, three) is not None
            assert replica.span(T1, (42).to_bytes(8, "big")) is sqlite_store.span(T1, (42).to_bytes(8, "big")) is None
        assert [r.time_ns for r in replicas[1].trace_logs(T1)] == [r.time_ns for r in sqlite_store.logs(T1)]
        assert replicas[0].trace(T3) == sqlite_store.trace(T3) == []
        expected_logs = sqlite_store.logs(T1)
        assert [r.body for r in expected_logs] == ["started", "charging", "card declined"]
        for replica in replicas:
            assert replica.logs(T1) == expected_logs
        # Both shards hold data (the trace sharding spreads), and a trace lives on one shard only.
        counts = [
            int(replicas[0]._on(s).execute(f"SELECT count() FROM {replicas[0].url.database}.spans_local")[0][0])
            for s in replicas[0].shards
        ]
        assert sum(counts) == 3 + 3 + 3  # the retried batch's 3 spans are stored twice
        assert replicas[0].stats()["logs"] == 4  # the line of no trace too
    finally:
        for replica in replicas:
            replica.close()


def test_request_id_lookup_answers_as_sqlite_does(cluster: ClickHouseCluster, url: str, sqlite_store: Store) -> None:
    from otel_corr.server._clickhouse import ClickHouseStore

    store = ClickHouseStore(url)
    try:
        later = _request("front", [_span(T3, 9, kind=2, request_id="req-1")])  # a later trace, same request ID
        for body in (*BATCHES, later):
            _submit(sqlite_store, body)
            _submit(store, body)
        for request_id in ("req-1", str(OWN), str(uuid.uuid4()), "nobody"):
            assert store.traces_for_request(request_id) == sqlite_store.traces_for_request(request_id), request_id
        assert store.traces_for_request("req-1") == [T3, T1]  # newest first
        assert store.traces_for_request(str(OWN)) == [T2]  # the trace it names, not indexed
        assert store.traces_for_request("req-1", limit=1) == [T3]
    finally:
        store.close()


def _home(store: object, table: str, where: str, params: dict[str, str]) -> int:
    """The shard number whose local table holds the rows (asked of each shard directly)."""
    holders = [
        shard.number
        for shard in store.shards  # type: ignore[attr-defined]
        if store._on(shard).execute(  # type: ignore[attr-defined]
            f"SELECT count() FROM {store.url.database}.{table}_local WHERE {where}",  # type: ignore[attr-defined]
            params,
        )[0][0]
    ]
    assert len(holders) == 1, holders
    return holders[0]


def test_a_shard_down_is_named_never_half_an_answer(tmp_path: Path) -> None:
    from otel_corr.server._clickhouse import ClickHouseStore, ShardUnavailable

    # A cluster of its own: stopping a shard must not disturb the other tests.
    with ClickHouseCluster(tmp_path / "cluster") as cluster:
        store = ClickHouseStore(cluster.url_via(1))
        try:
            traces = [uuid.UUID(int=i).bytes for i in range(1, 40)]
            _submit(store, _request("front", [_span(t, i + 1, request_id=f"r-{i}") for i, t in enumerate(traces)]))
            homes = {t: _home(store, "spans", "trace_id = unhex(%(t)s)", {"t": t.hex()}) for t in traces}
            on_2 = next(t for t in traces if homes[t] == 2)
            on_1 = next(t for t in traces if homes[t] == 1)
            whole, whole_2 = store.trace(on_1), store.trace(on_2)
            # The shard a key is looked up on, computed here (ClickHouse's CityHash), is where the
            # cluster stored it: for every trace and every request ID of the batch.
            assert {t: store._home(t).number for t in traces} == homes
            assert all(
                store._home(f"r-{i}".encode()).number
                == _home(store, "request_ids", "request_id = %(r)s", {"r": f"r-{i}"})
                for i in range(len(traces))
            )
            # Several traces at once (a search's results) read as each alone; their logs too.
            assert store.traces([*traces, T1]) == {t: store.trace(t) for t in traces}  # T1: not stored
            assert store.traces_and_logs([T1, *traces[:3]]) == (
                {t: store.trace(t) for t in traces[:3]},
                {t: store.logs(t) for t in traces[:3]},
            )
            request_on_2 = next(
                f"r-{i}"
                for i in range(len(traces))
                if _home(store, "request_ids", "request_id = %(r)s", {"r": f"r-{i}"}) == 2
            )

            # The reads across shards, whole, to compare with what they answer with shard 2 down.
            reads = {
                "search": lambda: store.search(service="front", limit=100),
                "entries": lambda: [(s.trace_id, s.span_id) for s in store.entries(limit=100)],
                "endpoints": lambda: sorted(store.endpoint_stats(0)),
                "recent": lambda: store.recent_requests("front", "op-5", 0, 10),
                "services": store.services,
                "operations": lambda: store.operations("front"),
                "dependencies": lambda: store.dependencies(0, 2**63),
            }
            whole_reads = {name: read() for name, read in reads.items()}
            assert {t for t, _ in whole_reads["entries"]} == set(traces)
            assert whole_reads["recent"] and whole_reads["services"] == ["front"]
            on_shard_1 = {
                "search": [t for t in whole_reads["search"] if homes[t] == 1],
                "entries": [e for e in whole_reads["entries"] if homes[e[0]] == 1],
                "endpoints": [
                    r
                    for r in whole_reads["endpoints"]
                    if r.name in {f"op-{i + 1}" for i, t in enumerate(traces) if homes[t] == 1}
                ],
                "recent": [r for r in whole_reads["recent"] if homes[r.trace_id] == 1],
                "services": ["front"],  # both shards know it
                "operations": [o for o in whole_reads["operations"] if homes[traces[int(o[0][3:]) - 1]] == 1],
                "dependencies": [],
            }
            assert 0 < len(on_shard_1["search"]) < len(traces)

            cluster.stop_shard(2)
            address = cluster.shards[1].address
            # A read across shards answers with shard 1's part and says that shard 2 did not answer.
            for name, read in reads.items():
                with partial_answers() as missing:
                    assert read() == on_shard_1[name], name
                assert [(m.shard, m.address) for m in missing] == [(2, address)], name
                assert missing[0].error, name  # the driver's reason
            with pytest.raises(ShardUnavailable, match=f"shard 2 \\({address}\\)") as raised:
                store.trace(on_2)
            assert [s.number for s in raised.value.shards] == [2]
            assert store.trace(on_1) == whole  # its shard answers: the whole trace, not an error
            assert store.traces([on_1]) == {on_1: whole}
            with pytest.raises(ShardUnavailable, match=f"shard 2 \\({address}\\)"):
                store.traces([on_1, on_2])  # never the half of the traces that are there
            with pytest.raises(ShardUnavailable, match="shard 2"):
                store.traces_and_logs([on_1, on_2])
            with pytest.raises(ShardUnavailable, match="shard 2"):
                store.traces_for_request(request_on_2)
            assert [(s.number, s.up) for s in store.health()] == [(1, True), (2, False)]
            # Ingest is refused, never acknowledged, while a shard it writes to is down.
            batch = span_rows(
                parse_spans(_request("front", [_span(on_2, 77)]), "application/x-protobuf"), store.resource_id
            )
            # The future fails, saying why: the sender is not acknowledged (serve answers 503 / UNAVAILABLE).
            with pytest.raises(StoreUnavailable, match="the batch was not stored: .*Code: 210"):
                store.submit(batch.rows, batch.resources).result(timeout=60)
            # A replica (re)started during the outage opens the current schema and answers shard 1's part.
            restarted = ClickHouseStore(cluster.url_via(1))
            try:
                assert restarted.trace(on_1) == whole
            finally:
                restarted.close()
            # ... but a new database cannot be made on half the cluster.
            with pytest.raises(ShardUnavailable, match="every shard must answer"):
                ClickHouseStore(cluster.url_via(1).replace("/otel_corr?", "/fresh?"))

            cluster.start_shard(2)
            # Back: the trace answers again, without the refused span (a synchronous insert spools nothing).
            assert [s.span_id for s in store.trace(on_2)] == [s.span_id for s in whole_2]

            # The shard the URL names down: the store still finds shard 2's traces, and names shard 1.
            cluster.stop_shard(1)
            assert store.trace(on_2) == whole_2
            with partial_answers() as missing:  # reads across shards no longer need the URL's shard
                assert store.search(service="front", limit=100) == [t for t in whole_reads["search"] if homes[t] == 2]
            assert [m.shard for m in missing] == [1]
            with pytest.raises(ShardUnavailable, match=f"shard 1 \\({cluster.shards[0].address}\\)"):
                store.trace(on_1)
            # Ingest is refused even for a trace shard 2 holds: on 18.16 a synchronous distributed insert
            # opens every shard (measured: "Wrote 0 rows on shard 1" and then the refused connection).
            late = span_rows(
                parse_spans(_request("front", [_span(on_2, 78)]), "application/x-protobuf"), store.resource_id
            )
            with pytest.raises(StoreUnavailable, match="not stored"):
                store.submit(late.rows, late.resources).result(timeout=60)
            cluster.start_shard(1)
            assert store.trace(on_1) == whole
        finally:
            store.close()


def test_importing_the_server_does_not_need_the_driver() -> None:
    import subprocess
    import sys

    code = (
        "import sys, otel_corr.server, otel_corr.server._clickhouse;"
        " assert 'clickhouse_driver' not in sys.modules, 'imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_retention_drops_whole_old_days_on_every_shard(cluster: ClickHouseCluster, url: str) -> None:
    from otel_corr.server._clickhouse import ClickHouseStore

    day = 86_400 * 10**9
    store = ClickHouseStore(url)
    try:
        old = [uuid.UUID(int=i).bytes for i in range(1, 21)]  # enough traces to land on both shards
        new = [uuid.UUID(int=i).bytes for i in range(21, 41)]
        spans = [_span(t, i + 1, request_id=f"old-{i}") for i, t in enumerate(old)]
        for span in spans:  # three days before BASE
            span.start_time_unix_nano -= 3 * day
            span.end_time_unix_nano -= 3 * day
        _submit(store, _request("front", spans))
        _submit(store, _request("front", [_span(t, i + 1, request_id=f"new-{i}") for i, t in enumerate(new)]))
        records, _, _ = decode_logs(_logs("front", old[0], 1, ["old line"]))
        for record in records:
            record.time_ns -= 3 * day
        store.submit([], [], records).result(timeout=30)
        database = store.url.database
        shards_with_old = {
            s.number
            for s in store.shards
            if store._on(s).execute(f"SELECT count() FROM {database}.spans_local WHERE start_ns < {BASE - day}")[0][0]
        }
        assert shards_with_old == {1, 2}  # the drop has to happen on each
        assert store.search(tags={"request.id": "old-3"}) == [old[3]]

        # A window of two days: the old day goes, whole, from every shard; today's stays.
        assert store.prune(max_age_ns=2 * day, now_ns=BASE) == len(old)
        assert all(store.trace(t) == [] for t in old)
        assert store.traces_for_request("old-3") == []
        assert store.search(tags={"request.id": "old-3"}) == []  # the search copy's old day too
        assert store.search(limit=100) == list(reversed(new))
        assert store.logs(old[0]) == []
        assert all(len(store.trace(t)) == 1 for t in new)
        assert store.traces_for_request("new-3") == [new[3]]
        assert store.prune(max_age_ns=2 * day, now_ns=BASE) == 0  # nothing left to drop
    finally:
        store.close()


# --- reads across shards: the same answers as SQLite -------------------------------------------------

MINUTE = 60 * 10**9
HOUR = 60 * MINUTE
SERVICES = ("front", "back", "pay", "queue")


def _value(value: object) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        any_value = AnyValue()
        any_value.array_value.values.extend(_value(v) for v in value)
        return any_value
    return AnyValue(string_value=str(value))


def _corpus() -> list[bytes]:
    """Traces over 30 hours (two days): each enters at ``front`` (a root, or a SERVER span whose caller
    is outside), calls ``back`` (a SERVER span with a stored parent: no entry), some ``pay`` and a
    ``queue`` consumer; attributes of every type, errors, HTTP statuses, request IDs.  One request per
    service and batch, as SDKs send them; every start time distinct (equal starts order differently)."""
    requests: list[bytes] = []
    for t in range(48):
        trace = uuid.UUID(int=(t + 1) * 0x9E3779B97F4A7C15).bytes
        start = BASE + t * 37 * MINUTE
        n = t * 16

        def span(number: int, parent: int, kind: int, offset: int, duration: int, name: str) -> SpanMessage:
            return SpanMessage(
                trace_id=trace,  # noqa: B023 (called in this iteration only)
                span_id=(n + number).to_bytes(8, "big"),  # noqa: B023
                parent_span_id=(n + parent).to_bytes(8, "big") if parent else b"",  # noqa: B023
                name=name,
                kind=kind,
                start_time_unix_nano=start + offset,  # noqa: B023
                end_time_unix_nano=start + offset + duration,  # noqa: B023
            )

        # Every fourth trace came in from a caller outside (its parent is not stored).
        root = span(1, 0, 2, 0, (t % 7 + 1) * 10**7, f"GET /orders/{t % 3}")
        if t % 4 == 3:
            root.parent_span_id = (0xFFFF0000 + t).to_bytes(8, "big")
        status = (200, 404, 500, 201)[t % 4]
        root.attributes.extend(
            [
                KeyValue(key="http.response.status_code", value=_value(status)),
                KeyValue(key="user", value=_value(f"u{t % 5}")),
                KeyValue(key="attempt", value=_value(t % 3)),
                KeyValue(key="ratio", value=_value(t % 4 / 2)),
                KeyValue(key="cached", value=_value(t % 2 == 0)),
                KeyValue(key="tags", value=_value([1, t % 2])),
                KeyValue(key="blob", value=_value(bytes([1, t % 3]))),
            ]
        )
        if t % 3 == 0:
            root.attributes.append(KeyValue(key="request.id", value=_value(f"req-{t % 6}")))
        if status == 500:
            root.status.code = 2
            root.status.message = "upstream failed"
            event = root.events.add(time_unix_nano=start + 5, name="exception")
            event.attributes.append(KeyValue(key="exception.type", value=_value("GatewayError")))
        client = span(2, 1, 3, 1000, 5 * 10**6, "GET back")
        client.attributes.append(KeyValue(key="peer.service", value=_value("back")))
        server = span(3, 2, 2, 2000, 4 * 10**6, "GET /stock")
        server.attributes.append(KeyValue(key="http.status_code", value=_value(status)))
        inner = span(4, 3, 1, 3000, 10**6, "SELECT stock")
        inner.attributes.append(KeyValue(key="db.rows", value=_value(t)))
        by_service = {"front": [root, client], "back": [server, inner]}
        if t % 2 == 0:
            by_service["pay"] = [span(5, 3, 2, 4000, 2 * 10**6, "POST /charge")]
        if t % 3 == 1:
            by_service["queue"] = [span(6, 1, 5, 5000, 10**6, "orders process")]
        for service, spans in by_service.items():
            requests.append(_request(service, spans))
    return requests


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory, cluster: ClickHouseCluster) -> Iterator[tuple[Store, object]]:
    """The corpus in a SQLite store and on the cluster (through two entry shards, a batch sent twice)."""
    from otel_corr.server._clickhouse import ClickHouseStore

    sqlite = Store(tmp_path_factory.mktemp("sqlite") / "s.db")
    url = cluster.url.replace("/otel_corr?", "/t_reads?")
    replicas = [
        ClickHouseStore(url),
        ClickHouseStore(url.replace(cluster.shards[0].address, cluster.shards[1].address)),
    ]
    try:
        corpus = _corpus()
        for i, body in enumerate(corpus):
            _submit(sqlite, body)
            _submit(replicas[i % 2], body)
        _submit(replicas[1], corpus[5])  # a retry after a lost acknowledgement: stored twice, read once
        records, _, _ = decode_logs(_logs("mailer", b"", 0, ["a service that only logs"]))
        sqlite.submit([], [], records).result(timeout=30)
        replicas[0].submit([], [], records).result(timeout=30)
        yield sqlite, replicas[0]
    finally:
        sqlite.close()
        for replica in replicas:
            replica.close()


def test_services_and_operations_answer_as_sqlite(both: tuple[Store, object]) -> None:
    sqlite, clickhouse = both
    assert clickhouse.services() == sqlite.services() == ["back", "front", "mailer", "pay", "queue"]  # type: ignore[attr-defined]
    for service in (*SERVICES, "mailer", "nobody"):
        for kind in (None, 2, 3, 5):
            assert clickhouse.operations(service, kind) == sqlite.operations(service, kind), (service, kind)  # type: ignore[attr-defined]
    assert clickhouse.operations("front") == [
        ("GET /orders/0", 2),
        ("GET /orders/1", 2),
        ("GET /orders/2", 2),
        ("GET back", 3),
    ]  # type: ignore[attr-defined]


SEARCHES: list[dict[str, object]] = [
    {},
    {"limit": 5},
    {"limit": 0},
    {"service": "front"},
    {"service": "back", "operation": "GET /stock"},
    {"service": "front", "operation": "GET /orders/1", "limit": 3},
    {"service": "pay", "start_ns": BASE + 5 * HOUR, "end_ns": BASE + 20 * HOUR},
    {"start_ns": BASE + 10 * HOUR},
    {"end_ns": BASE + 3 * HOUR},
    {"end_ns": -1},
    {"min_duration_ns": 5 * 10**7},
    {"service": "front", "max_duration_ns": 3 * 10**7},
    {"tags": {"error": "true"}},
    {"tags": {"error": "false"}},
    {"tags": {"http.response.status_code": "500"}},
    {"tags": {"http.status_code": "404"}, "service": "back"},
    {"tags": {"http.status_code": "0404"}},
    {"tags": {"http.status_code": "0"}},
    {"tags": {"request.id": "req-3"}},
    {"tags": {"request_id": "req-0"}, "service": "back"},
    {"tags": {"user": "u2"}},
    {"tags": {"user": "u2", "attempt": "1"}},
    {"tags": {"attempt": "2"}},
    {"tags": {"attempt": "2.0"}},
    {"tags": {"attempt": "02"}},
    {"tags": {"ratio": "1.5"}},
    {"tags": {"ratio": "0.0"}},
    {"tags": {"ratio": "0"}},
    {"tags": {"cached": "true"}, "service": "front", "limit": 4},
    {"tags": {"cached": "True"}},
    {"tags": {"tags": "[1, 1]"}},
    {"tags": {"tags": "[1,1]"}},
    {"tags": {"blob": "AQI="}},
    {"tags": {"db.rows": "17"}, "start_ns": BASE, "end_ns": BASE + 30 * HOUR},
    {"tags": {"peer.service": "back"}, "limit": 100},
    {"tags": {"user": ""}},
    {"tags": {"nobody": "u1"}},
    {"tags": {"service.name": "front"}},  # a resource attribute: SQLite's search matches span attributes only
]


@pytest.mark.parametrize("criteria", SEARCHES, ids=[repr(c) for c in SEARCHES])
def test_search_answers_as_sqlite(both: tuple[Store, object], criteria: dict[str, object]) -> None:
    sqlite, clickhouse = both
    expected = sqlite.search(**criteria)  # type: ignore[arg-type]
    assert clickhouse.search(**criteria) == expected  # type: ignore[attr-defined]


def test_the_searches_compared_find_something(both: tuple[Store, object]) -> None:
    """The comparisons above mean something: most find traces, on both shards."""
    sqlite, clickhouse = both
    found = [sqlite.search(**criteria) for criteria in SEARCHES]  # type: ignore[arg-type]
    assert sum(1 for traces in found if traces) >= len(SEARCHES) - 12, found  # 12 ask for what is not there
    every = clickhouse.search(limit=1000)  # type: ignore[attr-defined]
    assert len(every) == 48
    per_shard = [
        int(
            clickhouse._on(s).execute(f"SELECT uniqExact(trace_id) FROM {clickhouse.url.database}.spans_search_local")[
                0
            ][0]
        )  # type: ignore[attr-defined]
        for s in clickhouse.shards  # type: ignore[attr-defined]
    ]
    assert sum(per_shard) == 48 and min(per_shard) > 0, per_shard


WINDOWS = [
    (BASE, BASE + 40 * HOUR),
    (BASE + 2 * HOUR, BASE + 9 * HOUR),
    (BASE + 50 * HOUR, BASE + 60 * HOUR),
    (BASE + 9 * HOUR, BASE),
]


@pytest.mark.parametrize("window", WINDOWS)
def test_dependencies_answer_as_sqlite(both: tuple[Store, object], window: tuple[int, int]) -> None:
    sqlite, clickhouse = both
    assert clickhouse.dependencies(*window) == sqlite.dependencies(*window)  # type: ignore[attr-defined]
    if window == WINDOWS[0]:
        assert clickhouse.dependencies(*window) == [  # type: ignore[attr-defined]
            ("back", "pay", 24),
            ("front", "back", 48),
            ("front", "queue", 16),
        ]


ENTRIES: list[dict[str, object]] = [
    {},
    {"limit": 7},
    {"service": "back"},
    {"service": "queue"},
    {"service": "front", "limit": 5},
    {"name_like": "orders/1"},
    {"name_like": "ORDERS"},
    {"name_like": "%"},
    {"name_like": "_"},
    {"errors_only": True},
    {"min_duration_ns": 4 * 10**7},
    {"since_ns": BASE + 12 * HOUR},
    {"since_ns": BASE + 2 * HOUR, "until_ns": BASE + 8 * HOUR},
    {"status_range": (400, 500)},
    {"status_range": (0, 200)},
    {"service": "back", "status_range": (500, 600), "since_ns": BASE},
    {"service": "pay", "limit": 100},
    {"service": "queue", "status_range": (0, 300)},  # no HTTP status: in no range
]


@pytest.mark.parametrize("filters", ENTRIES, ids=[repr(f) for f in ENTRIES])
def test_entries_answer_as_sqlite(both: tuple[Store, object], filters: dict[str, object]) -> None:
    sqlite, clickhouse = both
    expected = sqlite.entries(**filters)  # type: ignore[arg-type]
    assert clickhouse.entries(**filters) == expected  # type: ignore[attr-defined]
    if not filters:  # the page's list: roots, and SERVER spans called from outside; never back's
        assert len(expected) == 48 and {s.service for s in expected} == {"front"}


@pytest.mark.parametrize("since", [BASE, BASE + 20 * HOUR, BASE + 100 * HOUR])
def test_endpoint_stats_answer_as_sqlite(both: tuple[Store, object], since: int) -> None:
    sqlite, clickhouse = both
    got = clickhouse.endpoint_stats(since)  # type: ignore[attr-defined]
    assert sorted(got) == sorted(sqlite.endpoint_stats(since))
    assert [r.start_ns for r in got] == sorted(r.start_ns for r in got)
    if since == BASE:
        assert len(got) == 48 * 2 + 24 + 16  # front and back each request, pay's, queue's; the retry read once


@pytest.mark.parametrize(
    ("service", "name", "since", "limit", "until"),
    [
        ("front", "GET /orders/1", BASE, 5, None),
        ("front", "GET /orders/1", BASE, 100, BASE + 10 * HOUR),
        ("back", "GET /stock", BASE + 3 * HOUR, 4, None),
        ("queue", "orders process", BASE, 50, None),
        ("front", "GET back", BASE, 10, None),  # a CLIENT span serves no request
    ],
)
def test_recent_requests_answer_as_sqlite(
    both: tuple[Store, object], service: str, name: str, since: int, limit: int, until: int | None
) -> None:
    sqlite, clickhouse = both
    expected = sqlite.recent_requests(service, name, since, limit, until_ns=until)
    assert clickhouse.recent_requests(service, name, since, limit, until_ns=until) == expected  # type: ignore[attr-defined]


def test_a_v1_store_upgrades_to_v2_and_its_spans_stay_readable(
    cluster: ClickHouseCluster, url: str, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from otel_corr.server import _clickhouse
    from otel_corr.server._clickhouse import ClickHouseStore

    corpus = _corpus()
    old, new = corpus[:20], corpus[20:]
    # A store made by a release that knew schema version 1 only, and its writer (spans straight into
    # the Distributed ``spans`` table, no search copy).
    with monkeypatch.context() as patch:
        patch.setattr(_clickhouse, "MIGRATIONS", _clickhouse.MIGRATIONS[:1])
        patch.setattr(_clickhouse, "SCHEMA_VERSION", 1)
        v1 = ClickHouseStore(url)
    try:
        assert v1.schema_versions() == {1: [1], 2: [1]}
        for body in old:
            _submit(sqlite_store, body)
            batch = span_rows(parse_spans(body, "application/x-protobuf"), v1.resource_id)
            resources = {rid: text.encode() for rid, _, _, text in batch.resources}
            v1._entry().execute(
                f"INSERT INTO {v1.url.database}.spans ({_clickhouse._V1_SPAN_COLUMNS}) VALUES",
                [
                    (bytes(r[0]), bytes(r[1]), bytes(r[2]), r[3], r[4].encode(), r[5].encode(), r[6], r[7], r[8])
                    + (r[9], r[10].encode(), r[11].encode(), bytes(r[12]), r[13], resources[r[3]])
                    for r in batch.rows
                ],
                settings={"insert_distributed_sync": 1},
            )
    finally:
        v1.close()

    store = ClickHouseStore(url)  # this release: upgrades every shard
    try:
        current = list(range(1, _clickhouse.SCHEMA_VERSION + 1))
        assert store.schema_versions() == {1: current, 2: current}
        assert store.ensure_schema() == {1: current[-1], 2: current[-1]}  # done once
        for body in new:
            _submit(sqlite_store, body)
            _submit(store, body)
        # Spans stored under v1 read as SQLite reads them: by key, and across shards by every criterion,
        # attributes included (copied into the search copy at the upgrade, decoded from their details).
        first = sqlite_store.search(end_ns=BASE + 4 * HOUR, limit=100)
        assert first and all(store.trace(t) == sqlite_store.trace(t) for t in first)
        assert store.services() == sqlite_store.services()
        assert store.operations("back") == sqlite_store.operations("back")
        for criteria in (
            {"limit": 100},
            {"service": "back", "end_ns": BASE + 4 * HOUR},
            {"tags": {"error": "true"}},
            {"tags": {"http.status_code": "404"}},
            {"tags": {"request.id": "req-0"}},
            {"tags": {"user": "u2"}, "start_ns": BASE + 5 * HOUR},  # after the upgrade
            {"tags": {"user": "u2"}, "end_ns": BASE + 4 * HOUR},  # before it
            {"tags": {"tags": "[1, 0]"}, "end_ns": BASE + 4 * HOUR},
            {"tags": {"cached": "true"}, "limit": 100},
        ):
            expected = sqlite_store.search(**criteria)  # type: ignore[arg-type]
            assert expected and store.search(**criteria) == expected, criteria  # type: ignore[arg-type]
        assert store.entries(limit=100) == sqlite_store.entries(limit=100)
        assert store.dependencies(BASE, BASE + 40 * HOUR) == sqlite_store.dependencies(BASE, BASE + 40 * HOUR)
        assert sorted(store.endpoint_stats(BASE)) == sorted(sqlite_store.endpoint_stats(BASE))
        assert store.recent_requests("front", "GET /orders/1", BASE, 50) == sqlite_store.recent_requests(
            "front", "GET /orders/1", BASE, 50
        )
    finally:
        store.close()


def test_serve_is_told_each_new_service_by_name(cluster: ClickHouseCluster, url: str) -> None:
    from otel_corr.server._clickhouse import ClickHouseStore

    store = ClickHouseStore(url)
    seen: list[str] = []
    store.on_new_service = seen.append
    try:
        for body in (*BATCHES, BATCHES[0]):
            _submit(store, body)
        deadline = time.monotonic() + 30  # the callback runs on the writer after the acknowledgement
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == ["front", "back"]  # "first spans from service ...": names, once each
    finally:
        store.close()


def test_out_of_range_values_never_refuse_a_batch_or_its_neighbours(cluster: ClickHouseCluster, url: str) -> None:
    """OTLP enums are open and a status attribute is any int: an insert into UInt8/UInt16 columns would
    be refused whole (and with it every batch grouped into the same insert, on every retry)."""
    from otel_corr.server._clickhouse import ClickHouseStore
    from otel_corr.server._model import LogRecord

    store = ClickHouseStore(url)
    try:
        odd = _span(T1, 1, kind=300, status=999)
        odd.attributes.append(_kv("http.response.status_code", 70000))
        bodies = [_request("front", [_span(T2, 2)]), _request("front", [odd]), _request("front", [_span(T3, 3)])]
        batches = [span_rows(parse_spans(b, "application/x-protobuf"), store.resource_id) for b in bodies]
        log = LogRecord(
            trace_id=T1, span_id=None, time_ns=BASE, severity_number=300, severity_text="?", body="odd",
            logger="l", request_id=None, attributes={}, service="front", resource={},
        )  # fmt: skip
        futures = [store.submit(b.rows, b.resources) for b in batches] + [store.submit([], [], [log])]
        for future in futures:
            future.result(timeout=60)  # each stored: none raises
        assert [len(store.trace(t)) for t in (T1, T2, T3)] == [1, 1, 1]
        assert [r.body for r in store.logs(T1)] == ["odd"]
    finally:
        store.close()


def test_a_search_decoding_values_reads_in_pages_and_still_finds_an_old_match(
    cluster: ClickHouseCluster, url: str
) -> None:
    """An array tag has no single stored form: its spans are read and formatted, a page at a time
    (not every span carrying the key at once); the one match sits behind 1,200 newer spans."""
    from opentelemetry.proto.common.v1.common_pb2 import ArrayValue

    from otel_corr.server._clickhouse import ClickHouseStore

    def tagged(n: int, values: list[int]) -> SpanMessage:
        span = _span(uuid.UUID(int=n).bytes, n)
        array = ArrayValue(values=[AnyValue(int_value=v) for v in values])
        span.attributes.append(KeyValue(key="k", value=AnyValue(array_value=array)))
        return span

    store = ClickHouseStore(url)
    try:
        _submit(store, _request("front", [tagged(1, [1, 2])] + [tagged(n, [9]) for n in range(2, 1202)]))
        assert store.search(service="front", tags={"k": "[1, 2]"}, limit=1) == [uuid.UUID(int=1).bytes]
        assert len(store.search(service="front", tags={"k": "[9]"}, limit=3)) == 3
    finally:
        store.close()


def test_no_query_starts_past_the_budget(cluster: ClickHouseCluster, url: str) -> None:
    """A handler that reads trace after trace stops at its budget, as on SQLite (503, not an answer
    after 18 times the budget)."""
    import time

    from otel_corr.server._clickhouse import ClickHouseStore
    from otel_corr.server._store import QueryTimeout

    store = ClickHouseStore(url)
    try:
        _submit(store, _request("front", [_span(T1, 1)]))
        with store.budget(time.monotonic() + 30):
            assert store.trace(T1)  # within the budget: answered
        gave_up = time.monotonic() + 30  # a hung test's deadline, not a speed
        with pytest.raises(QueryTimeout), store.budget(time.monotonic() + 0.2):
            while time.monotonic() < gave_up:  # one lookup after another, as Jaeger's search reads
                store.trace(T1)
    finally:
        store.close()


def test_the_all_zero_trace_id_has_no_logs(cluster: ClickHouseCluster, url: str) -> None:
    """Records without a trace are kept under the zero ID: asking for that "trace" finds none, as on SQLite."""
    from otel_corr.server._clickhouse import ClickHouseStore
    from otel_corr.server._model import LogRecord

    store = ClickHouseStore(url)
    try:
        loose = LogRecord(time_ns=BASE, severity_number=9, severity_text="INFO", body="no trace", service="front")
        store.submit([], [], [loose]).result(timeout=60)
        assert store.logs(bytes(16)) == []
    finally:
        store.close()
