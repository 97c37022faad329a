"""The search box and ``otel-corr find`` on the ClickHouse store give the SQLite store's answers.

The same OTLP requests go to a SQLite store and to a ClickHouse store on a real two-shard cluster
(Debian's clickhouse-server); then the search corpora of the page and CLI tests (``_search_data``),
the random stores and queries of ``test_search_oracle`` and its pinned cases run on both, and the
answers are compared: the traces (in order), the trace opened directly, each trace's entry span and
matches.  Then a shard down: the search answers with the live shard and names the missing one.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as LogMessage
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage

from otel_corr.server._clickhouse import SCHEMA_VERSION
from otel_corr.server._find import FindResult
from otel_corr.server._otlp import decode_logs, parse_logs, parse_spans, span_rows
from otel_corr.server._search import parse
from otel_corr.server._store import Store
from otel_corr.server._store_api import missing, partial_answers

from . import _search_data as corpus
from .clickhouse_cluster import MISSING, ClickHouseCluster, find_server
from .test_search_oracle import (
    BASE,
    MS,
    NOW,
    SETTINGS,
    Built,
    Oracle,
    T,
    Tokenizer,
    _kv,
    _parsed,
    queries,
    stores,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_server() is None, reason=MISSING),
]

JSON = "application/json"
PROTOBUF = "application/x-protobuf"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseCluster]:
    with ClickHouseCluster(tmp_path_factory.mktemp("clickhouse")) as running:
        yield running


def _url(cluster: ClickHouseCluster) -> str:
    """A database of its own on the shared cluster."""
    return cluster.url.replace("/otel_corr?", f"/f_{uuid.uuid4().hex[:12]}?")


class Both:
    """A SQLite store and a ClickHouse store fed the same requests (quacks like ``test_server.Backend``
    for ``_search_data.seed``)."""

    def __init__(self, tmp: Path, url: str) -> None:
        from otel_corr.server._clickhouse import ClickHouseStore

        self.sqlite = Store(tmp / "s.db")
        self.clickhouse = ClickHouseStore(url)

    def post(self, path: str, body: bytes, ctype: str) -> Any:
        for store in (self.sqlite, self.clickhouse):
            if path == "/v1/traces":
                batch = span_rows(parse_spans(body, ctype), store.resource_id)
                assert not batch.rejected
                store.submit(batch.rows, batch.resources).result(timeout=60)
            else:
                records, _, _ = decode_logs(parse_logs(body, ctype))
                store.submit([], [], records).result(timeout=60)
        return SimpleNamespace(status_code=200, text="")

    def ingest(self, built: Built) -> None:
        self.post("/v1/traces", built.traces, PROTOBUF)
        self.post("/v1/logs", built.logs, PROTOBUF)

    def wait_trace(self, ident: str, spans: int = 1) -> None:
        """Stored once ``submit``'s future resolved: nothing to wait for."""

    def close(self) -> None:
        self.sqlite.close()
        self.clickhouse.close()


def _run(store: Any, text: str, *, limit: int = 20, now_ns: int | None = None) -> FindResult:
    with store.budget(time.monotonic() + 60):
        result: FindResult = store.find(parse(text, now_ns=now_ns), limit=limit)
    return result


def _same(both: Both, text: str, *, limit: int = 20, now_ns: int | None = None) -> FindResult:
    """The query's answer, the same on both stores (traces in order, entries, matches, opened)."""
    expected = _run(both.sqlite, text, limit=limit, now_ns=now_ns)
    got = _run(both.clickhouse, text, limit=limit, now_ns=now_ns)
    assert got.complete and expected.complete
    assert [f.trace_id.hex() for f in got.found] == [f.trace_id.hex() for f in expected.found], text
    assert got.opened == expected.opened, text
    assert repr(got.found) == repr(expected.found), text  # repr: a NaN attribute is not equal to itself
    return got


@pytest.fixture(scope="module")
def seeded(cluster: ClickHouseCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Both]:
    both = Both(tmp_path_factory.mktemp("seeded"), _url(cluster))
    corpus.seed(both)  # type: ignore[arg-type]
    yield both
    both.close()


PAGE_QUERIES = [
    "declined",
    "declined since:1h",
    "declined since:3d",
    "user.id=42",
    corpus.PAY_RID,
    corpus.PAY,
    corpus.PAY.upper(),
    corpus.PAY_ROOT,
    corpus.PAY_CALL,
    "upstream",
    '"upstream timed out"',
    "GatewayError",
    "gatewayerr*",
    "zebra",
    "ansiword",
    "declined nosuchword",
    "declined service:inventory",
    "declined service:shop",
    "declined -gateway",
    "payment -retry",
    "status:5xx",
    "status:error",
    "duration>500ms",
    "duration<10ms",
    "user.id=42 status:5xx declined",
    "user.id=7",
    "-user.id=42 declined",
    "service.name=inventory",
    f"declined {corpus.PAY}",
    "nosuchword",
    "http.route=/pay/{id}",
]


@pytest.mark.parametrize("text", PAGE_QUERIES)
def test_the_page_and_cli_corpus_finds_the_same(seeded: Both, text: str) -> None:
    _same(seeded, text)


def test_what_the_page_corpus_finds(seeded: Both) -> None:
    """The comparison above means something: the answers hold what the page and CLI tests expect."""
    declined = _same(seeded, "declined")
    assert [f.trace_id.hex() for f in declined.found] == [corpus.PAY, corpus.OLD]
    assert declined.found[0].matches[0].text == "payment declined by the gateway: GatewayError"
    assert declined.found[0].matches[0].highlights == ((8, 16),)
    assert _same(seeded, corpus.PAY_RID).opened == bytes.fromhex(corpus.PAY)
    assert _same(seeded, corpus.PAY_CALL).found[0].matches[0].span_id == bytes.fromhex(corpus.PAY_CALL)
    (user,) = _same(seeded, "user.id=42").found
    assert user.matches[0].kind == "attribute" and user.entry.name == "POST /pay/{id}"
    assert [m.kind for m in _same(seeded, "upstream").found[0].matches] == ["event"]
    assert len(_same(seeded, "declined", limit=1).found) == 1


# --- the random stores and queries of test_search_oracle --------------------------------------------------


@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
@settings(SETTINGS, max_examples=15)  # a database per example on the cluster: fewer than the oracle's 60
@given(stores(), st.data())
def test_random_stores_and_queries_find_the_same(cluster: ClickHouseCluster, built: Built, data: st.DataObject) -> None:
    """The oracle's random stores and queries: the same traces as SQLite and as the brute force; where one
    clause decides the order (all but the queries SQLite and ClickHouse may drive by different clauses),
    the same order and matches."""
    tokenize = Tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        both = Both(Path(tmp), _url(cluster))
        try:
            both.ingest(built)
            oracle = Oracle(both.sqlite, built.trace_ids, tokenize)
            for text in data.draw(st.lists(queries(built), min_size=8, max_size=8), label="queries"):
                query = _parsed(text)
                if query is None:
                    continue
                expected = _run(both.sqlite, text, limit=100_000, now_ns=NOW)
                got = _run(both.clickhouse, text, limit=100_000, now_ns=NOW)
                assert {f.trace_id for f in got.found} == oracle.expected(query) == {f.trace_id for f in expected.found}
                assert got.opened == expected.opened, text
                assert {f.trace_id: f.entry for f in got.found} == {f.trace_id: f.entry for f in expected.found}
                few = _run(both.clickhouse, text, limit=3, now_ns=NOW)
                assert len(few.found) == min(3, len(got.found)), text
                assert {f.trace_id for f in few.found} <= {f.trace_id for f in got.found}, text
        finally:
            both.close()


# --- the pinned cases of test_search_oracle and test_search_store -----------------------------------------


def _lines(both: Both, lines: dict[bytes, list[tuple[int, str]]], **span_kwargs: Any) -> None:
    """One-span traces, each with log lines at (ns after BASE, text), sent to both stores in time order."""
    traces = ExportTraceServiceRequest()
    logs = ExportLogsServiceRequest()
    rs = traces.resource_spans.add()
    rs.resource.attributes.append(_kv("service.name", "checkout"))
    rl = logs.resource_logs.add()
    rl.resource.attributes.append(_kv("service.name", "checkout"))
    for n, (trace_id, records) in enumerate(lines.items(), start=1):
        start = min((t for t, _ in records), default=0)
        span = SpanMessage(
            trace_id=trace_id,
            span_id=n.to_bytes(8, "big"),
            name="GET /pay",
            kind=SpanMessage.SPAN_KIND_SERVER,
            start_time_unix_nano=BASE + start,
            end_time_unix_nano=BASE + start + MS,
        )
        for key, value in span_kwargs.get(trace_id.hex(), {}).items():
            span.attributes.append(value if isinstance(value, KeyValue) else _kv(key, value))
        rs.scope_spans.add().spans.append(span)
        for at, text in records:
            record = LogMessage(time_unix_nano=BASE + at, body=AnyValue(string_value=text), trace_id=trace_id)
            record.span_id = span.span_id
            rl.scope_logs.add().log_records.append(record)
    both.ingest(Built(traces.SerializeToString(), logs.SerializeToString()))


@pytest.fixture
def both(cluster: ClickHouseCluster, tmp_path: Path) -> Iterator[Both]:
    stores = Both(tmp_path, _url(cluster))
    yield stores
    stores.close()


def _ids(both: Both, text: str) -> list[str]:
    return [f.trace_id.hex()[:2] for f in _same(both, text, now_ns=NOW).found]


def test_pinned_ids_windows_and_phrases(both: Both) -> None:
    quoted = f"retry of {T[0].hex()}"
    old = NOW - 3 * 3_600_000 * MS - BASE
    recent = NOW - 60_000 * MS - BASE
    _lines(
        both,
        {
            T[0]: [(0, "payment declined")],
            T[1]: [(MS, "payment declined"), (2 * MS, "zebra crossing")],
            T[2]: [(3 * MS, quoted)],
            T[3]: [(4 * MS, quoted), (5 * MS, "nai\u0308ve payment")],
            T[4]: [(old, "start"), (recent, "GatewayError: upstream timed out")],
            T[5]: [(recent + MS, "GatewayError again"), (recent + 2 * MS, "a b payment")],
        },
        **{T[4].hex(): {"user.id": 42}},
    )
    assert _ids(both, f"{T[0].hex()} {T[1].hex()}") == []  # two IDs must both hold
    assert _ids(both, f"payment {T[0].hex()}") == ["01", "04"]  # the trace named, then a line quoting it
    assert _ids(both, f"zebra {T[0].hex()}") == []  # an ID clause holds whichever clause drives
    assert _ids(both, "payment until:2026-11-30T00:00:00Z") == []  # an ID keeps to the window
    assert _ids(both, f"payment {T[0].hex()} until:2026-11-30T00:00:00Z") == []
    assert _ids(both, "GatewayError user.id=42 since:1h") == []  # the span is 3 h old: outside the window
    assert _ids(both, "GatewayError since:1h") == ["06", "05"]
    assert _ids(both, '"declined zebra"') == []  # a phrase does not run from one line into the next
    assert _ids(both, "payment") == ["06", "04", "02", "01"]
    (found,) = _same(both, "naive", now_ns=NOW).found  # a decomposed word, found and highlighted
    assert found.matches[0].highlights == ((0, 6),)
    _same(both, "payment a\x00b", now_ns=NOW)  # a NUL in the box: an answer, not a crash


def test_pinned_events_tags_and_numbers(both: Both) -> None:
    traces = ExportTraceServiceRequest()
    rs = traces.resource_spans.add()
    rs.resource.attributes.extend([_kv("service.name", "checkout"), _kv("deployment.environment", "prod")])
    span = SpanMessage(trace_id=T[0], span_id=b"\x01" * 8, name="GET", kind=2, start_time_unix_nano=BASE)
    span.end_time_unix_nano = BASE + MS
    span.events.add(time_unix_nano=BASE + 1, name="cache miss")
    span.events.add(time_unix_nano=BASE + 2, name="retry Café")
    span.attributes.extend(
        [
            KeyValue(key="tags", value=AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1)]))),
            KeyValue(key="blob", value=AnyValue(bytes_value=b"\x01\x02")),
            KeyValue(key="ratio", value=AnyValue(double_value=float("nan"))),
            _kv("user.id", 42),
        ]
    )
    other = SpanMessage(trace_id=T[1], span_id=b"\x02" * 8, name="GET", kind=2, start_time_unix_nano=BASE + MS)
    other.end_time_unix_nano = BASE + 2 * MS
    rs.scope_spans.add().spans.extend([span, other])
    both.ingest(Built(traces.SerializeToString(), ExportLogsServiceRequest().SerializeToString()))
    assert _ids(both, '"cache miss"') == ["01"]
    assert _ids(both, '"miss retry"') == []
    assert _ids(both, "cafe") == _ids(both, "CAFÉ") == ["01"]
    assert _ids(both, "blob=AQI=") == ["01"]
    for text in ("tags=[1]", "ratio=nan", "ratio=NaN", "tags=1"):  # values without an index token: as SQLite
        _ids(both, text)
    assert _ids(both, "user.id=42.0") == _ids(both, "user.id=+42") == ["01"]
    assert _ids(both, "deployment.environment=prod") == ["02", "01"]
    assert _ids(both, "duration>2562047h47m16.854775807s") == []
    assert _ids(both, "duration<2562047h47m16.854775807s") == ["02", "01"]
    assert _ids(both, "-deployment.environment=prod cache") == []


# --- a shard down ------------------------------------------------------------------------------------------


def test_a_shard_down_gives_the_live_shards_answer_and_names_the_missing_one(
    cluster: ClickHouseCluster, tmp_path: Path
) -> None:
    from otel_corr.server._clickhouse import ShardUnavailable

    both = Both(tmp_path, _url(cluster))
    try:
        traces = [uuid.UUID(int=i).bytes for i in range(1, 21)]
        _lines(both, {t: [(i * MS, f"payment declined {i}")] for i, t in enumerate(traces)})
        store = both.clickhouse
        database = store.url.database
        homes = {
            t: next(
                s.number
                for s in store.shards
                if store._on(s).execute(
                    f"SELECT count() FROM {database}.spans_local WHERE trace_id = unhex(%(t)s)", {"t": t.hex()}
                )[0][0]
            )
            for t in traces
        }
        on_1 = [t for t in reversed(traces) if homes[t] == 1]
        on_2 = [t for t in traces if homes[t] == 2]
        assert on_1 and on_2
        whole = _same(both, "declined", limit=100)
        assert len(whole.found) == len(traces)
        with partial_answers():
            _run(store, "declined")
            assert missing() == ()

        cluster.stop_shard(2)
        address = cluster.shards[1].address
        with partial_answers():
            partial = _run(store, "declined", limit=100)
            assert [f.trace_id for f in partial.found] == on_1  # the live shard's traces, newest first
            assert [(s.shard, s.address) for s in missing()] == [(2, address)]
        with partial_answers():
            assert [f.trace_id for f in _run(store, "user.id=1 declined").found] == []
            assert [s.shard for s in missing()] == [2]
        with partial_answers():  # a trace ID on the live shard: opened, complete
            opened = _run(store, on_1[0].hex())
            assert opened.opened == on_1[0] and missing() == ()
        with pytest.raises(ShardUnavailable, match=f"shard 2 \\({address}\\)"):
            _run(store, on_2[0].hex())  # its shard is down: named, not "not found"
        with partial_answers():  # an ID among other words: the rest is searched
            assert _run(store, f"declined {on_2[0].hex()}").found == []
            assert [s.shard for s in missing()] == [2]
        # Shard 2 stops *during* a search (its first look at the shards saw both up): the Distributed
        # reads skip it without a word, so the search looks again at the end and names it.
        real_health, calls = store.health, []

        def stale_first() -> list:  # type: ignore[type-arg]
            calls.append(1)
            states = real_health()
            return (
                [s.__class__(s.number, s.address, True, "", s.version) for s in states] if len(calls) == 1 else states
            )

        store.health = stale_first  # type: ignore[method-assign]
        try:
            with partial_answers():
                assert [f.trace_id for f in _run(store, "payment declined", limit=100).found] == on_1
                assert [s.shard for s in missing()] == [2]
        finally:
            store.health = real_health  # type: ignore[method-assign]
    finally:
        cluster.start_shard(2)
        both.close()


def test_the_answer_is_json_serializable_as_the_routes_send_it(seeded: Both) -> None:
    """What the page's route sends: plain values (bytes only in IDs), on both stores alike."""
    got = _run(seeded.clickhouse, "declined")
    assert json.dumps([[m.text for m in f.matches] for f in got.found])


def test_recent_spans_are_found_by_their_events_and_attributes(both: Both) -> None:
    """Spans that start after the store was made (on schema v2: the search copy alone answers for them)."""
    start = time.time_ns() + 2 * 3_600_000 * MS  # past the store's migration and its hour of slack
    traces = ExportTraceServiceRequest()
    rs = traces.resource_spans.add()
    rs.resource.attributes.extend([_kv("service.name", "checkout"), _kv("deployment.environment", "prod")])
    spans = []
    for n in range(4):
        span = SpanMessage(trace_id=T[n], span_id=bytes([n + 1]) * 8, name="GET", kind=2)
        span.start_time_unix_nano, span.end_time_unix_nano = start + n * MS, start + n * MS + (n + 1) * 100 * MS
        span.events.add(time_unix_nano=start + n * MS + 1, name=["cache miss", "retry Café", "naïve", "ok"][n])
        span.attributes.extend([_kv("user.id", 40 + n), _kv("tenant", "ACME" if n % 2 else "umbrella")])
        if n == 3:
            span.status.code, span.status.message = 2, "upstream timed out"
        spans.append(span)
    rs.scope_spans.add().spans.extend(spans)
    both.ingest(Built(traces.SerializeToString(), ExportLogsServiceRequest().SerializeToString()))
    now = start + 3_600_000 * MS
    for text, expected in (
        ("cafe", ["02"]),
        ('"cache miss"', ["01"]),
        ("naive", ["03"]),
        ("timed", ["04"]),
        ("user.id=42", ["03"]),
        ("tenant=ACME", ["04", "02"]),
        ("deployment.environment=prod duration>250ms", ["04", "03"]),
        ("status:error tenant=ACME", ["04"]),
        ("retry tenant=ACME", ["02"]),
        ("-tenant=ACME ok", []),
    ):
        assert [f.trace_id.hex()[:2] for f in _same(both, text, now_ns=now).found] == expected, text


@pytest.mark.skipif(SCHEMA_VERSION < 2, reason="a store upgraded to the search copy (schema v2)")
def test_spans_stored_before_the_upgrade_to_v2_are_found_by_their_events_and_attributes(
    cluster: ClickHouseCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The v2 migration copies v1 spans into the search copy without texts or attributes (SQL cannot decode a
    detail): find still finds them by their events' words and their attributes, as SQLite does."""
    from otel_corr.server import _clickhouse
    from otel_corr.server._clickhouse import ClickHouseStore

    url = _url(cluster)
    old = ExportTraceServiceRequest()
    rs = old.resource_spans.add()
    rs.resource.attributes.append(_kv("service.name", "checkout"))
    span = SpanMessage(trace_id=T[0], span_id=b"\x01" * 8, name="GET", kind=2, start_time_unix_nano=BASE)
    span.end_time_unix_nano = BASE + MS
    span.events.add(time_unix_nano=BASE + 1, name="retry Café")
    span.attributes.append(_kv("user.id", 42))
    rs.scope_spans.add().spans.append(span)
    with monkeypatch.context() as patch:  # a release that knew schema v1 only, and its writer
        patch.setattr(_clickhouse, "MIGRATIONS", _clickhouse.MIGRATIONS[:1])
        patch.setattr(_clickhouse, "SCHEMA_VERSION", 1)
        v1 = ClickHouseStore(url)
    try:
        batch = span_rows(parse_spans(old.SerializeToString(), PROTOBUF), v1.resource_id)
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
        for shard in v1.shards:  # applied a day before the upgrade (not in the same start as v2)
            v1._on(shard).execute(
                f"INSERT INTO {v1.url.database}.schema_version (version, otel_corr, applied_ns) VALUES",
                [(1, b"0.1", time.time_ns() - 86_400 * 10**9)],
            )
    finally:
        v1.close()
    both = Both(tmp_path, url)  # this release: upgrades every shard
    try:
        sqlite_batch = span_rows(parse_spans(old.SerializeToString(), PROTOBUF), both.sqlite.resource_id)
        both.sqlite.submit(sqlite_batch.rows, sqlite_batch.resources).result(timeout=60)
        for text in ("cafe", "retry", "user.id=42", "user.id=42 retry"):
            assert [f.trace_id for f in _same(both, text, now_ns=NOW).found] == [T[0]], text
    finally:
        both.close()


def test_log_records_stored_before_v3_are_found_by_their_exception(
    cluster: ClickHouseCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Schema v3 searches a log record's body and ``texts`` (its exception's type and message) instead of
    the whole attributes JSON.  Records stored before it, and what a replica still on v2 inserts during
    a rolling upgrade, have no ``texts`` of their own: the column's DEFAULT computes it from the
    attributes, so their exceptions are still found, as SQLite finds them.  An interrupted migration
    runs again without failing on the column it already added."""
    from otel_corr.server import _clickhouse
    from otel_corr.server._clickhouse import ClickHouseStore

    url = _url(cluster)

    def logs(trace: bytes, kind: str, message: str) -> bytes:
        request = ExportLogsServiceRequest()
        rl = request.resource_logs.add()
        rl.resource.attributes.append(_kv("service.name", "checkout"))
        record = LogMessage(time_unix_nano=BASE + 5, trace_id=trace, span_id=b"\x01" * 8, severity_number=17)
        record.body.string_value = "charge failed"
        record.attributes.extend(
            [_kv("exception.type", kind), _kv("exception.message", message), _kv("code.file.path", "/app/zebra.py")]
        )
        rl.scope_logs.add().log_records.append(record)
        return request.SerializeToString()

    def spans(trace: bytes) -> bytes:
        request = ExportTraceServiceRequest()
        rs = request.resource_spans.add()
        rs.resource.attributes.append(_kv("service.name", "checkout"))
        span = SpanMessage(trace_id=trace, span_id=b"\x01" * 8, name="POST /charge", kind=2)
        span.start_time_unix_nano, span.end_time_unix_nano = BASE, BASE + MS
        rs.scope_spans.add().spans.append(span)
        return request.SerializeToString()

    def v2_insert(store: Any, body: bytes) -> None:
        """As a v2 writer inserts log records: without ``texts``."""
        records, _, _ = decode_logs(parse_logs(body, PROTOBUF))
        store._entry().execute(
            f"INSERT INTO {store.url.database}.logs ({_clickhouse._LOG_COLUMNS}) VALUES",
            [
                (r.trace_id, r.span_id, r.time_ns, r.severity_number, r.severity_text.encode(), r.body.encode())
                + (r.logger.encode(), (r.request_id or "").encode(), _clickhouse._dumps(r.attributes).encode())
                + (r.service.encode(), _clickhouse._dumps(r.resource).encode())
                for r in records
            ],
            settings={"insert_distributed_sync": 1},
        )

    old = (T[0], "GatewayError", "upstream déclined")
    late, new = (T[1], "QuotaExceeded", "over budget"), (T[2], "CardExpired", "expired card")
    with monkeypatch.context() as patch:  # a release that knew schema v2, and its writer
        patch.setattr(_clickhouse, "MIGRATIONS", _clickhouse.MIGRATIONS[:2])
        patch.setattr(_clickhouse, "SCHEMA_VERSION", 2)
        v2 = ClickHouseStore(url)
    try:
        assert v2.schema_versions() == {1: [1, 2], 2: [1, 2]}
        v2_insert(v2, logs(*old))
    finally:
        v2.close()
    both = Both(tmp_path, url)  # this release: upgrades every shard to v3
    try:
        clickhouse = both.clickhouse
        assert clickhouse.schema_versions() == {1: [1, 2, 3], 2: [1, 2, 3]}
        v2_insert(clickhouse, logs(*late))  # a replica still on v2, after the upgrade
        both.post("/v1/logs", logs(*new), PROTOBUF)
        for case in (old, late):  # SQLite: the same records
            both.sqlite.submit([], [], decode_logs(parse_logs(logs(*case), PROTOBUF))[0]).result(timeout=60)
        for trace in (old[0], late[0], new[0]):
            both.post("/v1/traces", spans(trace), PROTOBUF)
        for text, expected in (
            ("gatewayerror", [old[0]]),
            ("declined", [old[0]]),  # folded from the stored "déclined"
            ("quotaexceeded budget", [late[0]]),
            ('"expired card"', [new[0]]),
            ("zebra", []),  # a path in the attributes: not a word of the record (SQLite's answer too)
        ):
            assert [f.trace_id for f in _same(both, text, now_ns=NOW).found] == expected, text
        # The migration again, as after an interruption before its version row: the column is there.
        for shard in clickhouse.shards:
            clickhouse._on(shard).execute(
                f"ALTER TABLE {clickhouse.url.database}.schema_version DELETE WHERE version = 3"
            )
        deadline = time.monotonic() + 30
        while clickhouse.schema_versions() != {1: [1, 2], 2: [1, 2]} and time.monotonic() < deadline:
            time.sleep(0.1)  # the mutation runs in the background
        assert clickhouse.ensure_schema() == {1: 2, 2: 2}
        assert clickhouse.schema_versions() == {1: [1, 2, 3], 2: [1, 2, 3]}
    finally:
        both.close()
