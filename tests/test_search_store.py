"""The search store's edge cases found in review: concurrent retention, a log ID a pruned record leaves behind,
Jaeger tags without an index token, numbers past int64.  Each failed before its fix."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue

from otel_corr.server._model import LogRecord
from otel_corr.server._search import parse
from otel_corr.server._store import Store

from .test_store import _check_integrity, _span, _submit

T1, T2 = b"\x01" * 16, b"\x02" * 16
DAY = 86_400 * 10**9


def _log(store: Store, trace_id: bytes, at: int, body: str) -> None:
    record = LogRecord(
        time_ns=at,
        severity_number=9,
        severity_text="INFO",
        body=body,
        service="shop",
        trace_id=trace_id,
        span_id=(1).to_bytes(8, "big"),
        resource={"service.name": "shop"},
    )
    store.submit([], [], [record]).result(timeout=30)


def _found(store: Store, text: str) -> list[bytes]:
    with store.budget(time.monotonic() + 10):
        return [f.trace_id for f in store.find(parse(text)).found]


def test_two_prunes_at_once_leave_the_indexes_whole(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    old = time.time_ns() - 2 * DAY
    for batch in range(4):
        spans = []
        for i in range(batch * 1500, batch * 1500 + 1500):
            span = _span(bytes([batch + 1]) * 15 + bytes([i % 200 + 1]), i + 1)
            span.start_time_unix_nano, span.end_time_unix_nano = old + i, old + i + 10
            span.attributes.append(KeyValue(key="user.id", value=AnyValue(int_value=i)))
            span.events.add(name="retry", time_unix_nano=old + i)
            spans.append(span)
        _submit(store, "shop", spans)
    removed: list[int] = []
    threads = [threading.Thread(target=lambda: removed.append(store.prune(max_age_ns=DAY))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(removed) == [0, 6000]
    assert store.prune(max_age_ns=DAY) == 0  # retention still works afterwards
    store.close()
    _check_integrity(tmp_path / "s.db")  # includes FTS5's own integrity check


def test_a_log_id_left_by_a_pruned_record_is_never_given_to_another_trace(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)
    now = time.time_ns()
    spans = [_span(T1, 1), _span(T2, 2)]
    for span in spans:  # recent: retention keeps them
        span.start_time_unix_nano, span.end_time_unix_nano = now - 1000, now - 900
    _submit(store, "shop", spans)
    _log(store, T1, now - 800, "alpha one")
    _log(store, T1, now - 2 * DAY, "old replay")  # the newest ID, pruned alone: its range stays behind
    store.prune(max_age_ns=DAY)
    store.close()
    store = Store(path)
    try:
        _log(store, T2, now - 500, "zebra two")
        assert _found(store, "alpha zebra") == []
        assert _found(store, "alpha -zebra") == [T1]
        assert [r.body for r in store.logs(T1)] == ["alpha one"]
    finally:
        store.close()


def test_jaeger_tags_on_values_without_an_index_token_are_found(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    try:
        span = _span(T1, 1)
        span.attributes.append(
            KeyValue(key="tags", value=AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1)])))
        )
        span.attributes.append(KeyValue(key="blob", value=AnyValue(bytes_value=b"\x01\x02")))
        span.attributes.append(KeyValue(key="ratio", value=AnyValue(double_value=float("nan"))))
        _submit(store, "shop", [span, _span(T2, 2)])
        assert store.search(tags={"tags": "[1]"}) == [T1]
        assert store.search(tags={"blob": "AQI="}) == [T1]
        assert store.search(tags={"ratio": "nan"}) == [T1]
        assert _found(store, "blob=AQI=") == [T1]
    finally:
        store.close()


def test_a_duration_past_int64_finds_nothing_rather_than_failing(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    try:
        _submit(store, "shop", [_span(T1, 1)])
        assert _found(store, "duration>2562047h47m16.854775807s") == []
        assert _found(store, "duration<2562047h47m16.854775807s") == [T1]
    finally:
        store.close()
