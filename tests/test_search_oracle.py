"""The search can never silently miss: on random small stores built through the real ingest path (OTLP protobuf
decoded by the server's own functions, committed by the real ``Store``), the traces ``Store.find`` returns for a
random query of the language are exactly the traces a brute force over every stored span and log record finds.

The brute force reads the store back with its own ``trace()`` and ``logs()`` and decides each clause from the
contract (issue 18): words, phrases and prefixes in a log line (body, exception type/message) or a span event (name,
exception type/message) of the trace; exclusions in none of them; ``key=value`` with service/status/duration on
one span (or its resource); an ID names its trace or is text in it.  Text is tokenized by SQLite itself (FTS5's
``unicode61``, read through ``fts5vocab``), so case and diacritic folding are SQLite's, not a Python imitation.
"""

from __future__ import annotations

import base64
import math
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as LogMessage
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from otel_corr.server._model import LogRecord, Span
from otel_corr.server._otlp import decode_logs, parse_logs, parse_spans, span_rows
from otel_corr.server._query import QueryError
from otel_corr.server._search import Query, Term, parse, parse_id
from otel_corr.server._store import Store

PROTOBUF = "application/x-protobuf"
MS = 1_000_000
BASE = 1_796_119_200_000_000_000  # 2026-12-01T10:00:00Z: the stores' spans start in the two hours after
NOW = BASE + 2 * 3_600_000 * MS
SERVICES = ("checkout", "cart", "pay-svc")
#: Log and event words: IDs, dots, quotes, accents, CJK, FTS5 keywords, words sharing a prefix, SQL.
VOCABULARY = (
    "payment declined GatewayError upstream timed out cache miss retry paying payload pay AND OR NOT NEAR "
    "café Cafe naïve NAÏVE 東京 注文 order-42.a_b v1.2.3 user.id=42 x' '1' DROP TABLE spans; -- \"quoted\" "
    "NEAR(a) col:word ^start end* ü Straße"
).split()
ATTRIBUTE_KEYS = ("user.id", "http.route", "flag", "ratio", "order", "tenant")


@dataclass
class Built:
    """What was sent, to draw queries from (the oracle itself reads the store back, never this)."""

    traces: bytes
    logs: bytes
    trace_ids: list[bytes]
    span_ids: list[bytes]
    request_ids: list[str]

    def __repr__(self) -> str:  # what Hypothesis prints for a failing example: the bodies would be 100 kB
        return f"Built({len(self.trace_ids)} traces, {len(self.span_ids)} spans, request IDs {self.request_ids})"


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        any_value = AnyValue(bool_value=value)
    elif isinstance(value, int):
        any_value = AnyValue(int_value=value)
    elif isinstance(value, float):
        any_value = AnyValue(double_value=value)
    else:
        any_value = AnyValue(string_value=value)
    return KeyValue(key=key, value=any_value)


ATTRIBUTE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "user.id": st.integers(1, 50) | st.sampled_from(["42", "7", "alice", "Bob Smith"]),
    "http.route": st.sampled_from(["/pay/{id}", "/cart", "/checkout/{order}"]),
    "flag": st.booleans(),
    "ratio": st.sampled_from([0.5, 2.25, -1.5]),
    "order": st.sampled_from(["ord-1.2", "ord 3", "東京-9", 'say "hi"']),
    "tenant": st.sampled_from(["acme", "ACME", "umbrella"]),
}
WORDS = st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=6).map(" ".join)


@st.composite
def stores(draw: st.DrawFn) -> Built:
    """An OTLP traces request and a logs request: 5-40 traces of 1-12 spans, each span with 0-2 events and 0-3 logs."""
    traces = ExportTraceServiceRequest()
    logs = ExportLogsServiceRequest()
    by_service = {}
    logs_by_service = {}
    for name in SERVICES:
        rs = traces.resource_spans.add()
        rs.resource.attributes.extend([_kv("service.name", name), _kv("deployment.environment", "prod")])
        by_service[name] = rs.scope_spans.add(scope={"name": "oracle"})
        rl = logs.resource_logs.add()
        rl.resource.attributes.extend([_kv("service.name", name), _kv("deployment.environment", "prod")])
        logs_by_service[name] = rl.scope_logs.add(scope={"name": "app"})
    built = Built(b"", b"", [], [], [])
    trace_ids = draw(st.lists(st.binary(min_size=16, max_size=16).filter(any), min_size=5, max_size=40, unique=True))
    next_span = 1
    for t, trace_id in enumerate(trace_ids):
        built.trace_ids.append(trace_id)
        request_id = draw(st.sampled_from(["", f"req-{t}", f"order-{t}.x"]))
        if request_id:
            built.request_ids.append(request_id)
        trace_start = BASE + draw(st.integers(0, 7_000_000)) * MS
        parent = b""
        for n in range(draw(st.integers(1, 12))):
            span_id = next_span.to_bytes(8, "big")
            next_span += 1
            built.span_ids.append(span_id)
            start = trace_start + n * MS
            duration = draw(st.sampled_from([1, 20, 300, 600, 2500])) * MS
            span = SpanMessage(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=parent,
                name=draw(st.sampled_from(["GET /pay", "charge", "SELECT"])),
                kind=2 if not parent else 3,
                start_time_unix_nano=start,
                end_time_unix_nano=start + duration,
            )
            parent = parent or span_id
            span.status.CopyFrom(Status(code=draw(st.sampled_from([0, 0, 1, 2]))))
            if request_id and n == 0:
                span.attributes.append(_kv("request.id", request_id))
            code = draw(st.sampled_from([None, 200, 404, 500, 503]))
            if code is not None:
                span.attributes.append(_kv("http.response.status_code", code))
            for key in draw(st.lists(st.sampled_from(ATTRIBUTE_KEYS), max_size=3, unique=True)):
                span.attributes.append(_kv(key, draw(ATTRIBUTE_VALUES[key])))
            for e in range(draw(st.integers(0, 2))):
                event = span.events.add(time_unix_nano=start + e + 1)
                if draw(st.booleans()):
                    event.name = "exception"
                    event.attributes.extend(
                        [_kv("exception.type", draw(st.sampled_from(["GatewayError", "ValueError", "東京Error"]))),
                         _kv("exception.message", draw(WORDS))]
                    )
                else:
                    event.name = draw(WORDS)
            by_service[draw(st.sampled_from(SERVICES))].spans.append(span)
            for k in range(draw(st.integers(0, 3))):
                record = LogMessage(
                    time_unix_nano=start + k + 10,
                    severity_number=9,
                    body=AnyValue(string_value=draw(WORDS)),
                    trace_id=trace_id,
                    span_id=span_id,
                )
                if draw(st.integers(0, 5)) == 0:
                    record.attributes.extend(
                        [_kv("exception.type", "GatewayError"), _kv("exception.message", draw(WORDS))]
                    )
                if request_id:
                    record.attributes.append(_kv("request.id", request_id))
                logs_by_service[draw(st.sampled_from(SERVICES))].log_records.append(record)
    # Log lines of no trace: never a search result.
    for _ in range(draw(st.integers(0, 5))):
        logs_by_service["cart"].log_records.append(
            LogMessage(time_unix_nano=BASE + 5, severity_number=9, body=AnyValue(string_value=draw(WORDS)))
        )
    built.traces, built.logs = traces.SerializeToString(), logs.SerializeToString()
    return built


def ingest(store: Store, built: Built) -> None:
    """As ``otel-corr serve`` ingests (``_app``): protobuf views -> span rows, logs -> decoded records."""
    batch = span_rows(parse_spans(built.traces, PROTOBUF), store.resource_id)
    assert not batch.rejected
    store.submit(batch.rows, batch.resources).result(timeout=30)
    records, _, _ = decode_logs(parse_logs(built.logs, PROTOBUF))
    store.submit([], [], records).result(timeout=30)


# --- the brute force -----------------------------------------------------------------------------------------


class Tokenizer:
    """Text into FTS5 ``unicode61`` tokens, as SQLite folds them (one in-memory table, read through fts5vocab)."""

    def __init__(self) -> None:
        self.db = sqlite3.connect(":memory:")
        self.db.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='unicode61')")
        self.db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, instance)")
        self.cache: dict[str, tuple[str, ...]] = {}

    def __call__(self, text: str) -> tuple[str, ...]:
        tokens = self.cache.get(text)
        if tokens is None:
            with self.db:
                self.db.execute("DELETE FROM t")
                self.db.execute("INSERT INTO t(rowid, x) VALUES (1, :x)", {"x": text})
                rows = self.db.execute("SELECT term FROM v ORDER BY offset").fetchall()
            tokens = self.cache[text] = tuple(r[0] for r in rows)
        return tokens


def _has(tokens: Sequence[str], phrase: Sequence[str], prefix: bool) -> bool:
    """FTS5 phrase semantics: the phrase's tokens in a row, the last one as a prefix for ``pay*``."""
    if not phrase:
        return False
    n = len(phrase)
    for i in range(len(tokens) - n + 1):
        if list(tokens[i : i + n - 1]) == list(phrase[:-1]) and (
            tokens[i + n - 1].startswith(phrase[-1]) if prefix else tokens[i + n - 1] == phrase[-1]
        ):
            return True
    return False


def _texts(spans: Iterable[Span], logs: Iterable[LogRecord]) -> Iterator[str]:
    """Every text of a trace the contract makes searchable, each a separate row (a phrase never spans two)."""
    for record in logs:
        yield record.body
        for key in ("exception.type", "exception.message"):
            if isinstance(record.attributes.get(key), str):
                yield record.attributes[key]
    for span in spans:
        for event in span.events:
            yield event["n"]
            for key in ("exception.type", "exception.message"):
                if isinstance(event["a"].get(key), str):
                    yield event["a"][key]


def _value_matches(stored: Any, wanted: str) -> bool:
    """``key=value``: the string, or the int/bool/double the text reads as."""
    if isinstance(stored, bool):
        return wanted == ("true" if stored else "false")
    if isinstance(stored, int):
        return wanted.lstrip("+-").isdigit() and wanted.isascii() and int(wanted) == stored
    if isinstance(stored, float):
        try:
            number = float(wanted)
        except ValueError:
            return False
        return math.isfinite(number) and number == stored
    return isinstance(stored, str) and stored == wanted


def _has_attribute(span: Span, key: str, value: str) -> bool:
    return any(key in where and _value_matches(where[key], value) for where in (span.attributes, span.resource))


def _span_meets(span: Span, query: Query) -> bool:
    status = span.attributes.get("http.response.status_code")
    return (
        all(_has_attribute(span, k, v) for k, v in query.attributes)
        and (query.service is None or span.service == query.service)
        and (query.status is None or (isinstance(status, int) and query.status[0] <= status < query.status[1]))
        and (not query.error or span.status == 2)
        and (query.min_duration_ns is None or span.duration_ns >= query.min_duration_ns)
        and (query.max_duration_ns is None or span.duration_ns <= query.max_duration_ns)
    )


def expected(store: Store, trace_ids: Iterable[bytes], query: Query, tokenize: Tokenizer) -> set[bytes]:
    """The traces of ``trace_ids`` that meet every clause of ``query``, decided one trace at a time."""
    found = set()
    for trace_id in trace_ids:
        spans = store.trace(trace_id)
        if not spans:
            continue
        texts = [tokenize(text) for text in _texts(spans, store.logs(trace_id))]

        def said(term: Term) -> bool:
            phrase = tokenize(term.text)
            return any(_has(tokens, phrase, term.prefix) for tokens in texts)  # noqa: B023

        def named(token: str) -> bool:
            kind, raw = parse_id(token) or ("", b"")
            hit = raw == trace_id if kind == "trace" else kind == "span" and any(s.span_id == raw for s in spans)
            return hit or said(Term(token))  # noqa: B023

        if not all(said(term) for term in query.terms) or any(said(term) for term in query.excluded):
            continue
        if not all(named(token) for token in query.ids):
            continue
        if query.span_filters and not any(_span_meets(span, query) for span in spans):
            continue
        if any(_has_attribute(span, k, v) for span in spans for k, v in query.excluded_attributes):
            continue
        found.add(trace_id)
    return found


# --- queries from the grammar ------------------------------------------------------------------------------


def _id_forms(raw: bytes) -> list[str]:
    hexed = raw.hex()
    return [
        hexed,
        hexed.upper(),
        f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}",
        base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ]


def _quoted(text: str) -> str:
    return '"' + text.replace('"', "") + '"'


def clauses(built: Built) -> st.SearchStrategy[str]:
    word = st.sampled_from(VOCABULARY)
    phrase = st.lists(word, min_size=2, max_size=3).map(" ".join).map(_quoted)
    attribute = st.sampled_from(ATTRIBUTE_KEYS).flatmap(
        lambda key: ATTRIBUTE_VALUES[key].map(
            lambda v: f"{key}={_quoted(v) if isinstance(v, str) and ' ' in v else str(v).lower() if isinstance(v, bool) else v}"
        )
    )
    span_id = st.sampled_from(built.span_ids).map(bytes.hex)
    trace_id = st.sampled_from(built.trace_ids).flatmap(lambda raw: st.sampled_from(_id_forms(raw)))
    return st.one_of(
        word,
        word.map(str.lower),
        phrase,
        st.sampled_from(["pay*", "cach*", "caf*", "tim*", "gatewayerr*", "東京e*", "naï*"]),
        word.map("-{}".format),
        phrase.map("-{}".format),
        attribute,
        attribute.map("-{}".format),
        st.sampled_from(["service.name=cart", "deployment.environment=prod", "http.response.status_code=500"]),
        st.sampled_from(SERVICES).map("service:{}".format),
        st.sampled_from(["status:5xx", "status:404", "status:error", "status:2xx"]),
        st.sampled_from(["duration>500ms", "duration<30ms", "duration>=2.5s", "duration<=300ms"]),
        trace_id,
        span_id,
        st.sampled_from(['"', "NEAR(", "AND OR NOT", "col:word", "^", "'; DROP TABLE spans; --", "\x01", "é"]),
    )


def queries(built: Built) -> st.SearchStrategy[str]:
    return st.lists(clauses(built), min_size=1, max_size=4).map(" ".join)


# --- the property --------------------------------------------------------------------------------------------

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def _find(store: Store, query: Query) -> set[bytes]:
    with store.budget(time.monotonic() + 60):
        result = store.find(query, limit=100_000)
    assert result.complete
    found = [f.trace_id for f in result.found]
    assert len(found) == len(set(found)), "a trace listed twice"
    for f in result.found:
        assert 1 <= len(f.matches) <= 3
    return set(found)


@SETTINGS
@given(stores(), st.data())
def test_find_returns_exactly_what_a_brute_force_finds(built: Built, data: st.DataObject) -> None:
    tokenize = Tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "oracle.db")
        try:
            ingest(store, built)
            all_traces = set(built.trace_ids)
            for _ in range(8):
                text = data.draw(queries(built), label="query")
                try:
                    query = parse(text, now_ns=NOW)
                except QueryError:
                    continue
                want = expected(store, all_traces, query, tokenize)
                assert _find(store, query) == want, text
        finally:
            store.close()
