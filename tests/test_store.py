"""The store's row ranges: traces split over commits, retried batches, retention, restart, the format-4 upgrade.

The store indexes a trace by ranges of consecutive rowids (one per trace and commit) rather than
one index entry per span; these tests hold it to what the old per-span index gave.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage

from otel_corr.server._otlp import parse_spans, span_rows
from otel_corr.server._search import parse
from otel_corr.server._store import Store

T1, T2 = bytes(range(1, 17)), bytes(range(2, 18))
BASE = 1_700_000_000_000_000_000


def _span(trace: bytes, n: int, parent: int = 0, service_kind: int = 1, request_id: str = "") -> SpanMessage:
    span = SpanMessage(
        trace_id=trace,
        span_id=n.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent else b"",
        name=f"op-{n}",
        kind=service_kind,
        start_time_unix_nano=BASE + n * 1000,
        end_time_unix_nano=BASE + n * 1000 + 500,
    )
    if request_id:
        span.attributes.append(KeyValue(key="request.id", value=AnyValue(string_value=request_id)))
    return span


def _submit(store: Store, service: str, spans: list[SpanMessage]) -> None:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
    rs.scope_spans.add().spans.extend(spans)
    batch = span_rows(parse_spans(request.SerializeToString(), "application/x-protobuf"), store.resource_id)
    store.submit(batch.rows, batch.resources).result(timeout=30)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "t.db")
    yield s
    s.close()
    _check_integrity(tmp_path / "t.db")


def _check_integrity(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        for table in ("span_attrs", "texts"):  # FTS5's own check of its index structure
            conn.execute(f"INSERT INTO {table}({table}) VALUES ('integrity-check')")
    finally:
        conn.close()


def test_a_trace_over_several_commits_and_services(store: Store) -> None:
    # Interleaved with another trace, in two commits from two services, like two SDKs exporting.
    _submit(store, "front", [_span(T1, 1, request_id="req-1", service_kind=2), _span(T2, 7), _span(T1, 2, 1)])
    _submit(
        store,
        "back",
        [
            _span(T2, 8, 7),
            _span(T1, 3, 2, service_kind=2, request_id="req-1b"),
            _span(T1, 4, 2, service_kind=2, request_id="req-1c"),  # two request IDs: one range, twice
        ],
    )
    assert [s.span_id[-1] for s in store.trace(T1)] == [1, 2, 3, 4]
    assert [s.span_id[-1] for s in store.trace(T2)] == [7, 8]
    assert store.traces_for_request("req-1") == [T1]
    assert store.traces_for_request("req-1b") == [T1] == store.traces_for_request("req-1c")
    assert store.traces_for_request("nope") == []
    assert store.search(tags={"request.id": "req-1b"}) == [T1]
    assert store.search(service="back", tags={"request.id": "req-1"}) == []  # the other criteria still apply
    # Parents found across commits: front -> back is a dependency; only the two roots are entries.
    assert store.dependencies(BASE, BASE + 10**9) == [("front", "back", 3)]
    assert sorted(s.span_id[-1] for s in store.entries()) == [1, 7]


def test_a_retried_batch_is_read_back_once(store: Store) -> None:
    spans = [_span(T1, 1, request_id="req-1", service_kind=2), _span(T1, 2, 1)]
    _submit(store, "front", spans)
    _submit(store, "front", spans)  # the exporter never got the first acknowledgement
    assert [s.span_id[-1] for s in store.trace(T1)] == [1, 2]
    assert store.traces_for_request("req-1") == [T1]
    assert store.search(service="front") == [T1]
    # A status code that str.isdigit() accepts but int() refuses is an attribute search, not an error.
    assert store.search(service="front", tags={"http.response.status_code": "\u00b2"}) == []


def test_a_request_id_that_is_its_trace_id_is_found_without_an_index_entry(store: Store) -> None:
    """otel-corr's rule: a UUID request ID is the trace ID. The store does not index those, yet finds them."""
    own = str(uuid.UUID(bytes=T1)).upper()  # any case, dashes or not: still T1
    foreign = str(uuid.UUID(bytes=T1))  # a UUID request ID naming T1, carried by another trace
    _submit(store, "front", [_span(T1, 1, request_id=own, service_kind=2), _span(T1, 2, 1)])
    _submit(store, "front", [_span(T2, 3, request_id=foreign, service_kind=2)])
    indexed = sqlite3.connect(store.path).execute("SELECT request_id FROM traces ORDER BY request_id").fetchall()
    assert indexed == [("",), (foreign,)]
    assert store.traces_for_request(own) == [T1]
    assert store.traces_for_request(foreign) == [T2]  # the trace it names does not carry it
    assert store.search(tags={"request.id": own}) == [T1]
    assert store.search(tags={"request.id": foreign}) == [T2]
    assert store.search(service="back", tags={"request.id": own}) == []
    assert store.traces_for_request(own.replace("-", "")) == []  # the request ID as sent, not another spelling


def test_retention_and_restart_never_reuse_a_range(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    _submit(store, "front", [_span(T1, 1), _span(T1, 2, 1)])
    _submit(store, "front", [_span(T2, 5)])
    # Count-based retention drops the oldest spans: T1's range goes, T2 stays.
    assert store.prune(max_spans=1) == 2
    assert store.trace(T1) == [] and len(store.trace(T2)) == 1
    store.close()
    store = Store(tmp_path / "t.db")
    _submit(store, "front", [_span(T1, 9)])
    assert [s.span_id[-1] for s in store.trace(T1)] == [9]
    assert [s.span_id[-1] for s in store.trace(T2)] == [5]
    store.close()
    _check_integrity(tmp_path / "t.db")


@pytest.mark.parametrize("leftover", [False, True], ids=["format-4", "interrupted-upgrade"])
def test_a_format_4_store_is_upgraded_in_place(tmp_path: Path, leftover: bool) -> None:
    path = tmp_path / "old.db"
    store = Store(path)
    _submit(store, "front", [_span(T1, 1, request_id="req-1", service_kind=2), _span(T1, 2, 1)])
    store.close()
    # Turn it back into format 4: the per-span indexes, no traces table, no search indexes, raw details.
    conn = sqlite3.connect(path)
    _back_to_format_5(conn)
    # (an interrupted upgrade of an older build could leave an empty traces table behind)
    conn.executescript(
        ("DELETE FROM traces;" if leftover else "DROP TABLE traces;")
        + " CREATE UNIQUE INDEX spans_id ON spans(trace_id, span_id);"
        " CREATE INDEX spans_request ON spans(request_id) WHERE request_id IS NOT NULL; PRAGMA user_version = 4;"
    )
    conn.close()
    store = Store(path)
    assert [s.span_id[-1] for s in store.trace(T1)] == [1, 2]
    assert store.traces_for_request("req-1") == [T1]
    _submit(store, "front", [_span(T1, 3, 2)])
    assert [s.span_id[-1] for s in store.trace(T1)] == [1, 2, 3]
    store.close()
    _check_integrity(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 6
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "traces" in names and "spans_id" not in names and "spans_request" not in names
    conn.close()


def _back_to_format_5(conn: sqlite3.Connection) -> None:
    """A store as format 5 wrote it: details as received (no codec byte), no search tables."""
    assert {r[0] for r in conn.execute("SELECT DISTINCT substr(detail, 1, 1) FROM spans")} == {b"\x00"}
    conn.executescript(
        "UPDATE spans SET detail = substr(detail, 2), scope = (SELECT name FROM scopes WHERE id = spans.scope);"
        " DROP TABLE span_attrs_vocab; DROP TABLE span_attrs; DROP TABLE texts_vocab; DROP TABLE texts;"
        " DROP TABLE batches; DROP TABLE dicts; DROP TABLE scopes; DROP TABLE log_ranges; DROP TABLE logs;"
        " CREATE TABLE logs(id INTEGER PRIMARY KEY, trace_id BLOB, span_id BLOB, time_ns INTEGER NOT NULL,"
        " severity INTEGER NOT NULL, severity_text TEXT NOT NULL, body TEXT NOT NULL, logger TEXT NOT NULL,"
        " request_id TEXT, resource_id INTEGER NOT NULL, attributes TEXT NOT NULL);"
        " CREATE INDEX logs_trace ON logs(trace_id, time_ns) WHERE trace_id IS NOT NULL;"
        " CREATE INDEX logs_time ON logs(time_ns); PRAGMA user_version = 5;"
    )


def test_a_format_5_store_is_upgraded_with_its_logs_and_search_indexes(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = Store(path)
    span = _span(T1, 1, request_id="req-1", service_kind=2)
    span.attributes.append(KeyValue(key="user.id", value=AnyValue(int_value=42)))
    event = span.events.add(name="exception", time_unix_nano=BASE)
    event.attributes.append(KeyValue(key="exception.type", value=AnyValue(string_value="GatewayError")))
    _submit(store, "front", [span, _span(T2, 2)])
    store.close()
    conn = sqlite3.connect(path)
    _back_to_format_5(conn)
    conn.execute(
        "INSERT INTO logs(trace_id, span_id, time_ns, severity, severity_text, body, logger, request_id, resource_id,"
        " attributes) VALUES (:trace, :span, :time, 13, 'WARNING', 'checking out order 1001', 'shop', 'req-1', 1,"
        ' \'{"exception.message":"card declined"}\')',
        {"trace": T1, "span": (1).to_bytes(8, "big"), "time": BASE + 10},
    )
    conn.commit()
    conn.close()
    store = Store(path)
    try:
        for text in ("checking order", '"order 1001"', "declined", "user.id=42", "GatewayError", "req-1"):
            assert [f.trace_id for f in store.find(parse(text)).found] == [T1], text
        (record,) = store.logs(T1)
        assert (record.body, record.severity_text, record.request_id) == ("checking out order 1001", "WARNING", "req-1")
        assert record.attributes == {"exception.message": "card declined"}
        assert [s.span_id[-1] for s in store.trace(T2)] == [2]
    finally:
        store.close()
    _check_integrity(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 6
    assert conn.execute("SELECT count(*) FROM batches").fetchone()[0] >= 2
    conn.close()
