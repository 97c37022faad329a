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
from functools import partial
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as LogMessage
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from otel_corr.server import _find as _find_module
from otel_corr.server._find import Found
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
).split() + ["nai\u0308ve"]  # decomposed (NFD), as macOS file names come
INFO = SeverityNumber.SEVERITY_NUMBER_INFO
STATUS_CODES = [Status.STATUS_CODE_UNSET, Status.STATUS_CODE_UNSET, Status.STATUS_CODE_OK, Status.STATUS_CODE_ERROR]
EXCEPTION_KEYS = ("exception.type", "exception.message")
ATTRIBUTE_KEYS = ("user.id", "http.route", "flag", "ratio", "order", "tenant")


class Built:
    """What was sent, to draw queries from (the oracle itself reads the store back, never this)."""

    def __init__(self, traces: bytes = b"", logs: bytes = b"") -> None:
        self.traces, self.logs = traces, logs
        self.trace_ids: list[bytes] = []
        self.span_ids: list[bytes] = []
        self.request_ids: list[str] = []

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
def stores(draw: st.DrawFn, after: Built | None = None) -> Built:
    """An OTLP traces request and a logs request: 5-40 traces of 1-12 spans, each span with 0-2 events and 0-3 logs.

    ``after``: a store sent before, whose trace and span IDs these do not reuse (the same span sent twice with
    different contents is not something an SDK does: the store reads back the later copy).
    """
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
    built = Built()
    taken = set(after.trace_ids) if after else set()
    fresh = st.binary(min_size=16, max_size=16).filter(lambda raw: any(raw) and raw not in taken)
    trace_ids = draw(st.lists(fresh, min_size=5, max_size=40, unique=True))
    next_span = 1 + len(after.span_ids) if after else 1
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
                kind=SpanMessage.SPAN_KIND_CLIENT if parent else SpanMessage.SPAN_KIND_SERVER,
                start_time_unix_nano=start,
                end_time_unix_nano=start + duration,
            )
            parent = parent or span_id
            span.status.CopyFrom(Status(code=draw(st.sampled_from(STATUS_CODES))))
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
                        [
                            _kv("exception.type", draw(st.sampled_from(["GatewayError", "ValueError", "東京Error"]))),
                            _kv("exception.message", draw(WORDS)),
                        ]
                    )
                else:
                    event.name = draw(WORDS)
            by_service[draw(st.sampled_from(SERVICES))].spans.append(span)
            for k in range(draw(st.integers(0, 3))):
                body = draw(WORDS)
                if draw(st.integers(0, 7)) == 0:  # a line that quotes a trace ID (its own or another's)
                    body += " retry of " + draw(st.sampled_from(trace_ids)).hex()
                record = LogMessage(
                    time_unix_nano=start + k + 10,
                    severity_number=INFO,
                    body=AnyValue(string_value=body),
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
            LogMessage(time_unix_nano=BASE + 5, severity_number=INFO, body=AnyValue(string_value=draw(WORDS)))
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


def _texts(spans: Iterable[Span], logs: Iterable[LogRecord]) -> Iterator[tuple[int, str]]:
    """Every searchable line of a trace with its time, each on its own: a phrase never runs from one into the next.

    A log record's body, its exception type and its exception message (at the record's time); a span's status
    message and each event's name, exception type and exception message (at the span's start, as the window
    sees them).
    """
    for record in logs:
        yield record.time_ns, record.body
        for key in EXCEPTION_KEYS:
            if isinstance(record.attributes.get(key), str):
                yield record.time_ns, record.attributes[key]
    for span in spans:
        lines = [span.status_message] if span.status_message else []
        for event in span.events:
            lines.append(event["n"])
            lines.extend(event["a"][k] for k in EXCEPTION_KEYS if isinstance(event["a"].get(k), str))
        yield from ((span.start_ns, line) for line in lines)


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


def _in_window(time_ns: int, query: Query) -> bool:
    """Every clause holds within the window: a line by its time (an event by its span's start), a span by its start."""
    return (query.since_ns is None or time_ns >= query.since_ns) and (
        query.until_ns is None or time_ns <= query.until_ns
    )


def _span_meets(span: Span, query: Query) -> bool:
    status = span.attributes.get("http.response.status_code")
    return (
        _in_window(span.start_ns, query)
        and all(_has_attribute(span, k, v) for k, v in query.attributes)
        and (query.service is None or span.service == query.service)
        and (query.status is None or (isinstance(status, int) and query.status[0] <= status < query.status[1]))
        and (not query.error or span.status == 2)
        and (query.min_duration_ns is None or span.duration_ns >= query.min_duration_ns)
        and (query.max_duration_ns is None or span.duration_ns <= query.max_duration_ns)
    )


def _names(token: str, trace_id: bytes, spans: Sequence[Span]) -> bool:
    """Whether an ID-form token names this trace: its trace ID, or the ID of one of its spans."""
    kind, raw = parse_id(token) or ("", b"")
    return raw == trace_id if kind == "trace" else kind == "span" and any(s.span_id == raw for s in spans)


class Oracle:
    """Every trace of a store read back (spans and log records, decoded by the store), and the brute force."""

    def __init__(self, store: Store, trace_ids: Iterable[bytes], tokenize: Tokenizer) -> None:
        self.tokenize = tokenize
        self.traces: dict[bytes, tuple[list[Span], list[tuple[int, tuple[str, ...]]]]] = {}
        for trace_id in trace_ids:
            spans = store.trace(trace_id)
            if spans:
                texts = [(at, tokenize(text)) for at, text in _texts(spans, store.logs(trace_id))]
                self.traces[trace_id] = (spans, texts)

    def opened(self, query: Query) -> set[bytes]:
        """The traces a lone token names (trace ID, span ID, else request ID): the search opens them directly."""
        if query.lone is None:
            return set()
        named = {t for t, (spans, _) in self.traces.items() if _names(query.lone, t, spans)}
        return named or {t for t, (spans, _) in self.traces.items() if any(s.request_id == query.lone for s in spans)}

    def expected(self, query: Query) -> set[bytes]:
        """The traces that meet every clause of ``query``, decided one trace at a time."""
        opened = self.opened(query)
        if opened:
            return opened
        return {t for t, (spans, texts) in self.traces.items() if self.meets(query, t, spans, texts)}

    def said(self, texts: list[tuple[int, tuple[str, ...]]], term: Term, query: Query) -> bool:
        """A line of the trace, in the window, has the term."""
        phrase = self.tokenize(term.text)
        return any(_in_window(at, query) and _has(tokens, phrase, term.prefix) for at, tokens in texts)

    def meets(self, query: Query, trace_id: bytes, spans: list[Span], texts: list[tuple[int, tuple[str, ...]]]) -> bool:
        in_window = any(_in_window(span.start_ns, query) for span in spans)
        return (
            all(self.said(texts, term, query) for term in query.terms)
            and not any(self.said(texts, term, query) for term in query.excluded)
            # An ID-form token: this trace (with a span in the window), or a trace with a line that contains it.
            and all(
                (in_window and _names(token, trace_id, spans)) or self.said(texts, Term(token), query)
                for token in query.ids
            )
            and (not query.span_filters or any(_span_meets(span, query) for span in spans))
            and not any(_has_attribute(span, k, v) for span in spans for k, v in query.excluded_attributes)
        )


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


def _pair(key: str, value: Any) -> str:
    """``key=value`` as a person types it: a bool as ``true``, a value with spaces quoted."""
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    return f"{key}={_quoted(value)}" if isinstance(value, str) and " " in value else f"{key}={value}"


def clauses(built: Built) -> st.SearchStrategy[str]:
    word = st.sampled_from(VOCABULARY)
    phrase = st.lists(word, min_size=2, max_size=3).map(" ".join).map(_quoted)
    attribute = st.sampled_from(ATTRIBUTE_KEYS).flatmap(lambda key: ATTRIBUTE_VALUES[key].map(partial(_pair, key)))
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
        # Windows around all of a store, none of it, and through it (its traces start over two hours from BASE).
        st.sampled_from(["since:7d", "since:3h", "since:2026-11-01T00:00:00Z", "until:2026-11-30T00:00:00Z"]),
        st.sampled_from(["since:1h", "since:30m", "until:2026-12-01T11:00:00Z", "since:2026-12-01T10:30:00Z"]),
        trace_id,
        span_id,
        st.sampled_from(['"', "NEAR(", "AND OR NOT", "col:word", "^", "'; DROP TABLE spans; --", "\x01", "é"]),
    )


def queries(built: Built) -> st.SearchStrategy[str]:
    return st.lists(clauses(built), min_size=1, max_size=4).map(" ".join)


# --- the property --------------------------------------------------------------------------------------------

# No shrinking: each example builds a store, and shrinking one takes minutes; the failure message names the query.
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _parsed(text: str) -> Query | None:
    """The query, or None for one the parser refuses (a 400: nothing to run)."""
    try:
        return parse(text, now_ns=NOW)
    except QueryError:
        return None


def _find(store: Store, query: Query, limit: int = 100_000) -> list[Found]:
    with store.budget(time.monotonic() + 60):
        result = store.find(query, limit=limit)
    assert result.complete
    found = [f.trace_id for f in result.found]
    assert len(found) == len(set(found)), "a trace listed twice"
    assert all(len(f.matches) <= 3 and f.entry.trace_id == f.trace_id for f in result.found)
    if result.opened is not None:
        assert query.lone is not None and result.opened in found
    return result.found


def _check_highlights(found: list[Found], query: Query, tokenize: Tokenizer) -> None:
    """Each highlight is a query word (or phrase, or prefix) of the match's text, and a line that has one is lit."""
    phrases = [(tokenize(t.text), t.prefix) for t in query.terms] + [(tokenize(i), False) for i in query.ids]
    for f in found:
        for match in f.matches:
            if match.kind not in ("log", "event"):
                continue
            for start, end in match.highlights:
                assert 0 <= start < end <= len(match.text), (match, query.text)
                lit = tokenize(match.text[start:end])
                assert any(_has(lit, p, prefix) and len(lit) == len(p) for p, prefix in phrases), (match, query.text)
            tokens = tokenize(match.text)
            if any(_has(tokens, p, prefix) for p, prefix in phrases):
                assert match.highlights, (match, query.text)


# The store's threads, and an earlier test's exporter retrying with jitter, may use the random module while a
# store is drawn; Hypothesis would take that for the strategy's doing (nothing here calls it).
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
@SETTINGS
@given(stores(), st.data())
def test_find_returns_exactly_what_a_brute_force_finds(built: Built, data: st.DataObject) -> None:
    """Random stores and queries: the same traces as the brute force, before and after retention prunes."""
    tokenize = Tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "oracle.db")
        try:
            ingest(store, built)
            texts = data.draw(st.lists(queries(built), min_size=8, max_size=8), label="queries")
            oracle = Oracle(store, built.trace_ids, tokenize)
            for text in texts:
                query = _parsed(text)
                if query is None:
                    continue
                want = oracle.expected(query)
                found = _find(store, query)
                assert {f.trace_id for f in found} == want, text
                _check_highlights(found, query, tokenize)
                few = _find(store, query, limit=3)
                assert {f.trace_id for f in few} <= want and len(few) == min(3, len(want)), text
            # Retention: what is pruned is never found again (nor through rows that reuse its row IDs), what is
            # left still is.
            store.prune(max_spans=len(built.span_ids) // 2)
            later = data.draw(stores(after=built), label="later")
            ingest(store, later)
            oracle = Oracle(store, built.trace_ids + later.trace_ids, tokenize)
            for text in texts:
                query = _parsed(text)
                if query is None:
                    continue
                assert {f.trace_id for f in _find(store, query)} == oracle.expected(query), f"after prune: {text}"
        finally:
            store.close()


@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
def test_the_paths_of_a_big_store_find_the_same() -> None:
    """The same property with the executor's sizes shrunk to a few rows: the slices of the time window,
    the chunks of hits, the walk of a common clause and the trace set of a second clause (paths a
    small store never takes at the real sizes) are compared with the brute force too."""
    with patch.multiple(_find_module, _SLICE_ROWS=7, _CHUNK=3, _RARE=0, _SET_CHUNK=5, _PREFILTER_CAP=10**9):
        test_find_returns_exactly_what_a_brute_force_finds()


# --- what the random search found, pinned -----------------------------------------------------------------


def _store_of(tmp: Path, lines: dict[bytes, list[tuple[int, str]]], **span_kwargs: Any) -> Store:
    """A store of one-span traces, each with log lines at (ns after BASE, text)."""
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
            span.attributes.append(_kv(key, value))
        rs.scope_spans.add().spans.append(span)
        for at, text in records:
            record = LogMessage(time_unix_nano=BASE + at, body=AnyValue(string_value=text), trace_id=trace_id)
            record.span_id = span.span_id
            rl.scope_logs.add().log_records.append(record)
    store = Store(tmp / "pinned.db")
    ingest(store, Built(traces.SerializeToString(), logs.SerializeToString()))
    return store


def _ids(store: Store, text: str) -> set[str]:
    return {f.trace_id.hex()[:2] for f in _find(store, parse(text, now_ns=NOW))}


T = [bytes([n]) * 16 for n in range(1, 8)]


def test_two_ids_must_both_hold(tmp_path: Path) -> None:
    store = _store_of(tmp_path, {T[0]: [(0, "payment declined")], T[1]: [(MS, "payment declined")]})
    try:
        assert _ids(store, f"{T[0].hex()} {T[1].hex()}") == set()
        assert _ids(store, f"payment {T[0].hex()}") == {"01"}
    finally:
        store.close()


def test_an_id_clause_holds_whichever_clause_drives(tmp_path: Path) -> None:
    quoted = f"retry of {T[0].hex()}"
    lines = {T[0]: [(0, "payment")], T[1]: [(MS, "zebra crossing")], T[2]: [(2 * MS, quoted)], T[3]: [(3 * MS, quoted)]}
    store = _store_of(tmp_path, lines)
    try:
        assert _ids(store, f"zebra {T[0].hex()}") == set()
    finally:
        store.close()


def test_the_time_window_does_not_depend_on_other_traces(tmp_path: Path) -> None:
    old = NOW - 3 * 3_600_000 * MS - BASE  # 3 h before NOW, in ns after BASE
    recent = NOW - 60_000 * MS - BASE  # a minute before NOW
    # The trace: its span (user.id=42) starts 3 h ago and its GatewayError line was logged a minute ago.
    target = {T[0]: [(old, "start"), (recent, "GatewayError: upstream timed out")]}
    users = {T[0].hex(): {"user.id": 42}}
    query = "GatewayError user.id=42 since:1h"
    answers = []
    for extra, name in (({}, "alone"), ({t: [(recent, "GatewayError again")] for t in T[1:6]}, "common")):
        (tmp_path / name).mkdir()
        store = _store_of(tmp_path / name, {**target, **extra}, **users)
        try:
            answers.append("01" in _ids(store, query))
        finally:
            store.close()
    assert answers[0] == answers[1]


def test_an_id_keeps_to_the_window(tmp_path: Path) -> None:
    store = _store_of(tmp_path, {T[0]: [(0, "payment declined")]})
    try:
        assert _ids(store, "payment until:2026-11-30T00:00:00Z") == set()
        assert _ids(store, f"payment {T[0].hex()}") == {"01"}
        assert _ids(store, f"payment {T[0].hex()} until:2026-11-30T00:00:00Z") == set()
    finally:
        store.close()


def test_a_phrase_does_not_run_from_one_line_into_the_next(tmp_path: Path) -> None:
    traces = ExportTraceServiceRequest()
    rs = traces.resource_spans.add()
    rs.resource.attributes.append(_kv("service.name", "checkout"))
    span = SpanMessage(
        trace_id=T[0], span_id=b"\x01" * 8, name="GET", kind=SpanMessage.SPAN_KIND_SERVER, start_time_unix_nano=BASE
    )
    span.end_time_unix_nano = BASE + MS
    span.events.add(time_unix_nano=BASE + 1, name="cache miss")
    span.events.add(time_unix_nano=BASE + 2, name="retry")
    rs.scope_spans.add().spans.append(span)
    store = Store(tmp_path / "events.db")
    try:
        ingest(store, Built(traces.SerializeToString(), ExportLogsServiceRequest().SerializeToString()))
        assert _ids(store, '"cache miss"') == {"01"}
        assert _ids(store, '"miss retry"') == set()
    finally:
        store.close()


def test_a_decomposed_word_is_highlighted(tmp_path: Path) -> None:
    store = _store_of(tmp_path, {T[0]: [(0, "nai\u0308ve payment")]})
    try:
        (found,) = _find(store, parse("naive", now_ns=NOW))
        assert found.matches[0].highlights == ((0, 6),)
    finally:
        store.close()


def test_a_nul_in_the_box_is_an_answer_not_a_crash(tmp_path: Path) -> None:
    """FTS5 ends a query string at a NUL (see test_search_parse): the store answers, whatever it answers."""
    store = _store_of(tmp_path, {T[0]: [(0, "a b payment")]})
    try:
        _find(store, parse("payment a\x00b", now_ns=NOW))
    finally:
        store.close()
