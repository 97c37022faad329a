"""``_analysis``: the critical path, untraced gaps, runs, failure origin and "against normal" on
traces built by hand, where the right answer is known by construction."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from otel_corr.server._analysis import Baseline, Window, analyse
from otel_corr.server._model import LogRecord, Span
from otel_corr.server._store import Store
from otel_corr.server._ui import _baseline as read_baseline

from .test_store import _span as message
from .test_store import _submit

MS = 1_000_000
TRACE = bytes(range(16))
_ids = iter(range(1, 10**9))


def span(
    name: str,
    start_ms: float,
    end_ms: float,
    parent: Span | None = None,
    *,
    kind: int = 1,
    service: str = "shop",
    status: int = 0,
    attributes: dict[str, Any] | None = None,
    events: list[dict[str, Any]] | None = None,
) -> Span:
    return Span(
        trace_id=TRACE,
        span_id=next(_ids).to_bytes(8, "big"),
        parent_id=parent.span_id if parent else None,
        service=service,
        name=name,
        kind=kind,
        start_ns=int(start_ms * MS),
        duration_ns=int((end_ms - start_ms) * MS),
        status=status,
        attributes=attributes or {},
        events=events or [],
    )


def log(message: str, at_ms: float, owner: Span, severity: int = 9) -> LogRecord:
    return LogRecord(
        time_ns=int(at_ms * MS),
        severity_number=severity,
        severity_text="INFO" if severity < 13 else "ERROR",
        body=message,
        service=owner.service,
        trace_id=TRACE,
        span_id=owner.span_id,
    )


def exception(kind: str, message: str, stacktrace: str = "") -> dict[str, Any]:
    return {
        "t": 0,
        "n": "exception",
        "a": {"exception.type": kind, "exception.message": message, "exception.stacktrace": stacktrace},
    }


def test_the_demo_gap_is_named_by_the_log_line_and_the_call_around_it() -> None:
    entry = span("GET /checkout/{order_id}", 0, 482, kind=2, attributes={"http.response.status_code": 200})
    call = span("GET", 401, 470, entry, kind=3, attributes={"url.full": "http://inventory:8000/stock/sku-0?x=1"})
    downstream = span("GET /stock/{sku}", 405, 465, call, kind=2, service="inventory")
    logs = [log("checking out order 1001", 0.5, entry), log("order 1001 reserved 1 items", 472, entry)]
    why = analyse([entry, call, downstream], logs)
    top = why["causes"][0]
    assert top["kind"] == "untraced" and top["span_id"] == entry.span_id.hex()
    assert 399 <= top["ms"] <= 401
    assert top["gap"]["before"] == {
        "what": "log",
        "text": "checking out order 1001",
        "span_id": entry.span_id.hex(),
        "time_ns": str(int(0.5 * MS)),
    }
    assert top["gap"]["after"]["what"] == "span_start"
    assert top["gap"]["after"]["text"] == "GET /stock/sku-0"
    assert "between “checking out order 1001” and GET /stock/sku-0" in top["title"]
    assert [r["message"] for r in top["logs"]] == ["checking out order 1001"]
    # The critical path: the entry's own 400 ms first, then the downstream's 60 ms.
    path = [(p["name"], p["self_ms"]) for p in why["critical_path"]]
    assert path[0][0] == "GET /checkout/{order_id}" and path[1] == ("GET /stock/{sku}", 60.0)
    assert sum(p["self_ms"] for p in why["critical_path"]) == pytest.approx(482, abs=0.5)
    # No baseline: a 400 ms untraced stretch that is most of the request is worth an alarm.
    assert why["verdict"]["alarming"] is True
    assert why["normal"] is None


def test_an_n_plus_one_of_30_is_one_cause_with_its_count_not_30_slow_calls() -> None:
    entry = span("GET /orders", 0, 200, kind=2)
    query = [
        span("SELECT item", 10 + i * 6, 15 + i * 6, entry, kind=3, attributes={"db.system": "sqlite"})
        for i in range(30)
    ]
    why = analyse([entry, *query], [])
    top = why["causes"][0]
    assert top["kind"] == "repeated" and top["span_id"] == entry.span_id.hex()
    assert top["repeat"]["count"] == 30 and top["repeat"]["failed"] == 0
    assert top["repeat"]["span_ids"] == [s.span_id.hex() for s in query[:5]]
    assert top["ms"] == pytest.approx(179, abs=0.5)
    assert not any(c["kind"] == "slow" and c["name"] == "SELECT item" for c in why["causes"])
    assert why["verdict"]["alarming"] is True


def test_four_inserts_are_not_a_loop() -> None:
    entry = span("POST /orders", 0, 20, kind=2)
    writes = [span("INSERT", 1 + i * 4, 4 + i * 4, entry, kind=3) for i in range(4)]
    why = analyse([entry, *writes], [])
    assert not any(c["kind"] == "repeated" for c in why["causes"])
    assert why["verdict"]["alarming"] is False


def test_a_retry_loop_counts_the_failed_attempts_and_the_waits_between() -> None:
    entry = span("GET /quote", 0, 400, kind=2)
    url = {"url.full": "http://rates/quote?ccy=EUR"}
    attempts = [
        span("GET", 5, 25, entry, kind=3, status=2, attributes={**url, "http.response.status_code": 503}),
        span("GET", 125, 145, entry, kind=3, status=2, attributes={**url, "http.response.status_code": 503}),
        span("GET", 345, 365, entry, kind=3, attributes={**url, "http.response.status_code": 200}),
    ]
    why = analyse([entry, *attempts], [])
    top = why["causes"][0]
    assert top["kind"] == "retried"
    assert top["repeat"]["count"] == 3 and top["repeat"]["failed"] == 2
    assert top["ms"] == pytest.approx(360, abs=0.5)
    # The backoff waits are inside the loop, not causes of their own.
    assert not any(c["kind"] == "untraced" and c["ms"] >= 99 for c in why["causes"])
    assert why["verdict"]["alarming"] is True


TRACEBACK = """Traceback (most recent call last):
  File "app/repo.py", line 10, in load
    return rows[order_id]
KeyError: 1001

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "app/service.py", line 20, in checkout
    raise LookupFailed("order 1001") from exc
app.service.LookupFailed: order 1001
"""


def test_a_failure_starts_at_the_deepest_span_whose_error_is_its_own() -> None:
    entry = span("GET /checkout", 0, 50, kind=2, status=2, attributes={"http.response.status_code": 500})
    entry.events = [exception("app.service.LookupFailed", "order 1001", TRACEBACK)]
    service = span(
        "checkout", 2, 40, entry, status=2, events=[exception("app.service.LookupFailed", "order 1001", TRACEBACK)]
    )
    ok = span("SELECT user", 3, 5, service, kind=3)
    repo = span(
        "repo.load", 10, 30, service, status=2, events=[exception("KeyError", "1001", TRACEBACK.split("\n\n")[0])]
    )
    logs = [log("loading order 1001", 11, repo), log("lookup failed", 31, service, severity=17)]
    why = analyse([entry, service, ok, repo], logs)
    top = why["causes"][0]
    assert top["kind"] == "error" and top["span_id"] == repo.span_id.hex()
    assert top["error"]["type"] == "KeyError" and top["error"]["message"] == "1001"
    assert top["error"]["frames"] == ['File "app/repo.py", line 10, in load']
    assert [c["name"] for c in top["error"]["chain"]] == ["repo.load", "checkout", "GET /checkout"]
    assert "lookup failed" in [r["message"] for r in top["logs"]]
    assert why["verdict"]["alarming"] is True and why["verdict"]["headline"].startswith("Failed after 50 ms: KeyError")


def test_a_chained_exception_on_one_span_names_where_it_started() -> None:
    entry = span("GET /checkout", 0, 50, kind=2, status=2, attributes={"http.response.status_code": 500})
    entry.events = [exception("app.service.LookupFailed", "order 1001", TRACEBACK)]
    top = analyse([entry], [])["causes"][0]
    assert top["error"]["type"] == "KeyError"
    assert top["detail"][0] == "re-raised as app.service.LookupFailed: order 1001"


def test_background_work_after_the_response_is_its_own_cause_and_no_alarm() -> None:
    entry = span("POST /orders/{order_id}", 0, 2, kind=2)
    task = span("BackgroundTask send_receipt", 3, 153, entry)
    why = analyse([entry, task], [])
    top = why["causes"][0]
    assert top["kind"] == "after_response" and top["span_id"] == task.span_id.hex()
    assert top["ms"] == pytest.approx(151, abs=0.5)
    assert why["extent_ms"] == pytest.approx(153, abs=0.5)
    assert why["verdict"]["alarming"] is False


def _baseline(durations_ms: list[float], typical: list[Span]) -> Baseline:
    ns = sorted(int(d * MS) for d in durations_ms)
    return Baseline("shop", "GET /checkout", [Window("1h", ns), Window("24h", ns)], typical)


def test_against_normal_gives_the_percentile_and_what_differs_from_the_median_request() -> None:
    entry = span("GET /checkout", 0, 300, kind=2)
    db = span("SELECT cart", 5, 280, entry, kind=3)
    extra = span("GET", 281, 290, entry, kind=3)
    t_entry = span("GET /checkout", 0, 30, kind=2)
    t_db = span("SELECT cart", 5, 25, t_entry, kind=3)
    t_cache = span("cache.get", 1, 3, t_entry)
    why = analyse([entry, db, extra], [], _baseline([20 + i for i in range(40)], [t_entry, t_db, t_cache]))
    hour = why["normal"]["windows"][0]
    assert hour == {
        "window": "1h",
        "count": 40,
        "sampled": False,
        "enough": True,
        "percentile": 100.0,
        "median_ms": 40.0,
        "p95_ms": 57.0,
    }
    changes = {(d["change"], d["name"]): d["diff_ms"] for d in why["normal"]["differences"]}
    assert changes == {("longer", "SELECT cart"): 255.0, ("new", "GET"): 9.0, ("missing", "cache.get"): -2.0}
    assert why["verdict"]["alarming"] is True
    assert why["verdict"]["headline"].startswith("Slow: 300 ms (p100 of 40 in the last 1h, median 40 ms)")
    assert why["causes"][0]["kind"] == "slow" and why["causes"][0]["name"] == "SELECT cart"


def test_an_ordinary_request_is_nothing_unusual() -> None:
    entry = span("GET /checkout", 0, 31, kind=2)
    db = span("SELECT cart", 5, 25, entry, kind=3)
    why = analyse([entry, db], [], _baseline([20 + i for i in range(40)], [entry, db]))
    assert why["verdict"]["alarming"] is False
    assert why["verdict"]["headline"].startswith("Nothing unusual: 31 ms (p28.8 of 40")
    assert why["normal"]["differences"] == []


def test_an_n_plus_one_the_endpoint_always_does_is_not_news() -> None:
    def trace() -> list[Span]:
        entry = span("GET /orders", 0, 100, kind=2)
        return [entry, *(span("SELECT item", 2 + i * 8, 8 + i * 8, entry, kind=3) for i in range(12))]

    here, typical = trace(), trace()
    why = analyse(here, [], _baseline([95 + i for i in range(20)], typical))
    assert why["causes"][0]["kind"] == "repeated"
    assert why["verdict"]["alarming"] is False


def _reference_path(spans: list[Span]) -> dict[bytes, int]:
    """Jaeger's critical path, written the way its UI writes it (recursive, on a sanitized copy)."""
    by_id = {s.span_id: s for s in spans}
    root = next(s for s in spans if s.parent_id is None)
    start = {s.span_id: s.start_ns for s in spans}
    end = {s.span_id: s.start_ns + s.duration_ns for s in spans}
    kids: dict[bytes, list[bytes]] = {s.span_id: [] for s in spans}
    order = [root.span_id]
    for sid in order:  # sanitize top-down: clip each child to its (clipped) parent, drop outsiders
        for child in (s for s in spans if s.parent_id == sid):
            if child.start_ns >= end[sid] or end[child.span_id] <= start[sid]:
                continue
            start[child.span_id] = max(start[child.span_id], start[sid])
            end[child.span_id] = min(end[child.span_id], end[sid])
            kids[sid].append(child.span_id)
            order.append(child.span_id)
    out: dict[bytes, int] = {}

    def walk(sid: bytes, returning: int | None) -> None:
        eligible = [c for c in kids[sid] if returning is None or end[c] < returning]
        bound = end[sid] if returning is None else returning
        if eligible:
            last = max(eligible, key=lambda c: (end[c], -start[c]))  # a tie: the longest
            out[sid] = out.get(sid, 0) + bound - end[last]
            walk(last, None)
        else:
            out[sid] = out.get(sid, 0) + bound - start[sid]
            parent = by_id[sid].parent_id
            if parent is not None:
                walk(parent, start[sid])

    walk(root.span_id, None)
    return {k: v for k, v in out.items() if v}


def test_the_critical_path_is_jaegers_on_random_trees() -> None:
    rng = random.Random(19)
    for _ in range(300):
        entry = span("root", 0, 1000, kind=2)
        spans = [entry]
        for i in range(rng.randint(1, 19)):  # at most 20 spans: the whole path is listed
            parent = rng.choice(spans)
            a = parent.start_ns / MS + rng.uniform(-50, parent.duration_ns / MS)
            spans.append(span(f"s{i}", a, a + rng.uniform(0, 400), parent))
        why = analyse(spans, [])
        got = {bytes.fromhex(p["span_id"]): p["self_ms"] for p in why["critical_path"]}
        want = {sid: round(ns / MS, 1) for sid, ns in _reference_path(spans).items()}
        assert sum(got.values()) == pytest.approx(1000, abs=0.5)
        assert got == pytest.approx(want, abs=0.11)


def test_hostile_shapes_are_answered() -> None:
    entry = span("GET /x", 0, 100, kind=2)
    loop_a = span("a", 10, 20, entry)
    loop_b = span("b", 11, 19, loop_a)
    loop_a.parent_id = loop_b.span_id  # a cycle below no root
    self_parent = span("self", 30, 40, entry)
    self_parent.parent_id = self_parent.span_id
    twin = span("twin", 50, 60, entry)
    twin2 = span("twin again", 50, 70, entry)
    twin2.span_id = twin.span_id
    zero = span("zero", 80, 80, entry)
    huge = span("\x1b[31m" + "x" * 10_000, 85, 99, entry, kind=3)
    why = analyse([entry, loop_a, loop_b, self_parent, twin, twin2, zero, huge], [])
    assert all(len(c["title"]) <= 120 for c in why["causes"])
    assert sum(p["self_ms"] for p in why["critical_path"]) == pytest.approx(100, abs=0.5)
    # The cycle hangs from no root: it is on no path; the doubled ID is placed once.
    assert not {p["name"] for p in why["critical_path"]} & {"a", "b", "self"}
    assert [p["span_id"] for p in why["critical_path"]].count(twin.span_id.hex()) <= 1


def test_a_chain_of_10000_spans_has_no_recursion_limit() -> None:
    spans = [span("root", 0, 20_000, kind=2)]
    for i in range(9_999):
        spans.append(span(f"level {i}", i + 1, 20_000 - i - 1, spans[-1]))
    why = analyse(spans, [])
    assert why["critical_path_spans"] == 10_000 and len(why["critical_path"]) == 20


def test_the_baseline_is_the_endpoints_own_recent_requests_newest_first(tmp_path: Path) -> None:
    """``Store.recent_requests`` through the why route's ``_baseline``: only requests the endpoint
    served (a root, or a SERVER span), of that service and name, in the window, this one left out."""
    store = Store(tmp_path / "b.db")
    try:
        now = time.time_ns()
        rows = []
        for i in range(30):
            trace = (i + 1).to_bytes(16, "big")
            root = message(trace, 1)
            root.name = "GET /checkout"
            root.kind = 2
            age = (10 + i) * 60 * 10**9 if i < 20 else (3 + i) * 3600 * 10**9  # 20 in the hour, 10 older
            root.start_time_unix_nano, root.end_time_unix_nano = now - age, now - age + (i + 1) * MS
            inner = message(trace, 2, parent=1)  # same name, not a request: never counted
            inner.name = "GET /checkout"
            inner.start_time_unix_nano, inner.end_time_unix_nano = root.start_time_unix_nano, root.end_time_unix_nano
            rows += [root, inner]
        other = message(b"\x09" * 16, 1)
        other.name = "GET /other"
        other.start_time_unix_nano, other.end_time_unix_nano = now - 60 * 10**9, now
        _submit(store, "shop", [*rows, other])
        _submit(store, "inventory", [message(b"\x08" * 16, 1)])
        recent = store.recent_requests("shop", "GET /checkout", now - 24 * 3600 * 10**9, 100)
        assert [r.trace_id for r in recent] == [
            (i + 1).to_bytes(16, "big") for i in range(22)
        ]  # 8 are older than a day
        assert [r.duration_ns for r in recent[:3]] == [1 * MS, 2 * MS, 3 * MS]
        this = store.trace((5).to_bytes(16, "big"))[0]  # 14 min old: the 4 newer ones are not its past
        baseline = read_baseline(store, this, now)
        hour, day = baseline.windows
        assert (hour.name, len(hour.durations), day.name, len(day.durations)) == ("1h", 15, "24h", 17)
        assert 5 * MS not in hour.durations and list(hour.durations) == sorted(hour.durations)
        assert min(hour.durations) == 6 * MS
        # The median request of the hour (12 ms or 13 ms), read back whole for the diff.
        assert baseline.typical and baseline.typical[0].duration_ns in (12 * MS, 13 * MS)
        # A request of 28 hours ago is compared with its own day, not today's traffic.
        old = store.trace((26).to_bytes(16, "big"))[0]
        hour, day = read_baseline(store, old, now).windows
        assert (len(hour.durations), sorted(day.durations)) == (0, [27 * MS, 28 * MS, 29 * MS, 30 * MS])
        assert len(store.recent_requests("shop", "GET /checkout", now - 24 * 3600 * 10**9, 7)) == 7
    finally:
        store.close()


def test_jitter_on_a_fast_endpoint_is_not_slow() -> None:
    """The corpus found it: 9.6 ms on a 6.4 ms endpoint is p100 and 1.5x the median, and no news."""
    entry = span("POST /invoices/{id}/send", 0, 9.6, kind=2)
    update = span("UPDATE invoices", 1, 4.1, entry, kind=3)
    why = analyse([entry, update], [], _baseline([5 + i * 0.2 for i in range(14)], [entry, update]))
    assert why["normal"]["windows"][0]["percentile"] == 100.0
    assert why["verdict"]["alarming"] is False


def test_two_queries_an_item_tell_the_requests_time_once() -> None:
    """The corpus found it: 30 x (SELECT item, SELECT price) claimed 406 ms of a 312 ms request."""
    entry = span("GET /cart", 0, 312, kind=2)
    spans = [entry]
    for i in range(30):
        spans.append(span("SELECT item", 5 + i * 10, 11 + i * 10, entry, kind=3))
        spans.append(span("SELECT price", 11 + i * 10, 14 + i * 10, entry, kind=3))
    runs = [c for c in analyse(spans, [])["causes"] if c["kind"] == "repeated"]
    assert [(c["repeat"]["name"], c["repeat"]["count"]) for c in runs] == [("SELECT item", 30), ("SELECT price", 30)]
    assert sum(c["ms"] for c in runs) <= 312
    # Each wait goes to the run whose call it follows: the 1 ms before each next item, to the prices.
    assert [c["ms"] for c in runs] == [pytest.approx(30 * 6, abs=0.5), pytest.approx(30 * 3 + 29, abs=0.5)]
    assert runs[0]["repeat"]["total_ms"] == runs[0]["ms"]


def test_a_failure_no_span_recorded_takes_its_exception_from_the_log_line() -> None:
    """The page tests' seeded trace: a 500 whose traceback is only in a log line (once a 500 here)."""
    entry = span("GET /pay", 0, 40, kind=2, status=2, attributes={"http.response.status_code": 500})
    bare = analyse([entry], [])["causes"][0]
    assert (bare["kind"], bare["error"]["type"], bare["error"]["frames"]) == ("error", "HTTP 500", [])
    line = log("Unhandled RuntimeError in GET /pay", 39, entry, severity=17)
    line.attributes = {
        "exception.type": "RuntimeError",
        "exception.message": "card declined",
        "exception.stacktrace": (
            'Traceback (most recent call last):\n  File "pay.py", line 9, in pay\nRuntimeError: card declined\n'
        ),
    }
    top = analyse([entry], [line])["causes"][0]
    assert (top["error"]["type"], top["error"]["message"]) == ("RuntimeError", "card declined")
    assert top["error"]["frames"] == ['File "pay.py", line 9, in pay']
    assert top["logs"][0]["message"] == "Unhandled RuntimeError in GET /pay"


def test_the_collector_pause_ends_with_the_last_analysis_and_keeps_a_disabled_collector_disabled() -> None:
    import gc
    import threading

    from otel_corr.server._ui import _CollectorPause

    pause = _CollectorPause()
    assert gc.isenabled()
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with pause():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other)
    with pause():
        thread.start()
        assert inside.wait(10)
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other analysis is still running
    release.set()
    thread.join(10)
    assert gc.isenabled()
    gc.disable()
    try:
        with pause():
            pass
        assert not gc.isenabled()  # someone else's choice, left alone
    finally:
        gc.enable()


def test_an_undecoded_read_expands_to_the_decoded_one(tmp_path: Path) -> None:
    """``Store.trace(details=False)`` + ``Store.expand`` is what why reads: the same spans as the
    page's read, field by field (this fails if the positional read and ``Span``'s fields drift)."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    store = Store(tmp_path / "u.db")
    try:
        trace = b"\x05" * 16
        spans = [message(trace, 1, request_id="req-1"), message(trace, 2, parent=1), message(trace, 3, parent=1)]
        spans[1].attributes.append(KeyValue(key="http.response.status_code", value=AnyValue(int_value=503)))
        spans[1].status.code, spans[1].status.message = 2, "upstream down"
        spans[2].events.add(name="exception", time_unix_nano=5)
        spans[2].trace_state = "k=v"
        _submit(store, "shop", spans)
        _submit(store, "shop", [spans[2]])  # a retried batch: the later copy is the one read
        full = {s.span_id: s for s in store.trace(trace)}
        bare = store.trace(trace, details=False)
        assert len(bare) == 3
        assert [s.http_status for s in bare] == [None, 503, None]
        for span in bare:
            assert span.raw and span.attributes == {}
            store.expand(span)
            want = full[span.span_id]
            for name in (
                "trace_id", "span_id", "parent_id", "service", "name", "kind", "start_ns", "duration_ns",
                "status", "request_id", "attributes", "events", "links", "status_message", "trace_state",
            ):  # fmt: skip
                assert getattr(span, name) == getattr(want, name), name
            assert span.raw == b""
    finally:
        store.close()


def test_an_n_plus_one_with_a_failed_call_is_not_a_retry_loop() -> None:
    """The review found it: one item's failure made 30 different calls "tried 30 times"."""
    entry = span("GET /cart", 0, 200, kind=2)
    queries = [span("SELECT item", 5 + i * 6, 10 + i * 6, entry, kind=3, status=2 if i == 9 else 0) for i in range(30)]
    top = analyse([entry, *queries], [])["causes"][0]
    assert (top["kind"], top["repeat"]["count"], top["repeat"]["failed"]) == ("repeated", 30, 1)
    assert "1 failed" in top["title"]
    entry = span("GET /cart", 0, 200, kind=2)
    calls = [
        span(
            "GET",
            5 + i * 6,
            10 + i * 6,
            entry,
            kind=3,
            attributes={"url.full": f"http://inv/items?id={i}", "http.response.status_code": 404 if i == 3 else 200},
        )
        for i in range(30)
    ]
    top = analyse([entry, *calls], [])["causes"][0]
    assert (top["kind"], top["repeat"]["count"]) == ("repeated", 30)


def test_a_loop_where_every_attempt_failed_is_a_retry_and_the_failure_leads() -> None:
    entry = span("GET /quote", 0, 300, kind=2, status=2, attributes={"http.response.status_code": 502})
    url = {"url.full": "http://rates/quote", "http.response.status_code": 503}
    attempts = [span("GET", 5 + i * 100, 25 + i * 100, entry, kind=3, status=2, attributes=url) for i in range(3)]
    causes = analyse([entry, *attempts], [])["causes"]
    assert causes[0]["kind"] == "error" and causes[0]["span_id"] == attempts[0].span_id.hex()  # where it started
    assert (causes[1]["kind"], causes[1]["repeat"]["count"], causes[1]["repeat"]["failed"]) == ("retried", 3, 3)


def test_a_failure_explains_at_most_the_request_it_failed() -> None:
    entry = span("GET /x", 0, 100, kind=2, status=2, attributes={"http.response.status_code": 500})
    late = span("job", 50, 400, entry, status=2)
    top = analyse([entry, late], [])["causes"][0]
    assert top["span_id"] == late.span_id.hex() and top["ms"] == 50.0 and top["share"] == 0.5


def test_a_retry_the_endpoint_always_makes_is_not_news() -> None:
    def trace() -> list[Span]:
        entry = span("GET /quote", 0, 60, kind=2)
        url = {"url.full": "http://rates/quote"}
        first = span("GET", 2, 10, entry, kind=3, status=2, attributes={**url, "http.response.status_code": 503})
        return [entry, first, span("GET", 30, 50, entry, kind=3, attributes=url)]

    here = trace()
    assert analyse(here, [])["verdict"]["alarming"] is True  # nothing to compare with: a retry is news
    why = analyse(here, [], _baseline([55 + i for i in range(20)], trace()))
    assert why["causes"][0]["kind"] == "retried" and why["verdict"]["alarming"] is False


def test_a_java_stack_trace_gives_its_innermost_frames() -> None:
    trace = (
        "java.lang.IllegalStateException: pool exhausted\n"
        "\tat com.shop.db.Pool.take(Pool.java:88)\n"
        "\tat com.shop.db.Repo.load(Repo.java:41)\n"
        "\tat com.shop.api.Orders.get(Orders.java:17)\n"
        "\tat com.shop.api.Server.handle(Server.java:9)\n"
    )
    entry = span("GET /orders", 0, 10, kind=2, status=2, attributes={"http.response.status_code": 500})
    entry.events = [exception("java.lang.IllegalStateException", "pool exhausted", trace)]
    error = analyse([entry], [])["causes"][0]["error"]
    assert error["frames"] == [
        "at com.shop.api.Orders.get(Orders.java:17)",
        "at com.shop.db.Repo.load(Repo.java:41)",
        "at com.shop.db.Pool.take(Pool.java:88)",
    ]
    assert error["type"] == "java.lang.IllegalStateException"


def test_spans_read_undecoded_need_the_stores_expand() -> None:
    entry = span("GET", 0, 10, kind=3)
    entry.raw = b"\x01compressed"
    child = span("GET", 1, 2, entry, kind=3)
    with pytest.raises(TypeError, match="expand_span=store.expand"):
        analyse([entry, child, span("GET", 3, 4, entry, kind=3)], [])
