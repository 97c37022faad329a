"""Issue 19's speed proof: ``otel-corr why`` on traces of 10,000, 1,000 and 100 spans in a store of 1M spans.

Methodology
-----------
* Store: ``--spans`` (default 1,000,000; ``--quick`` 20,000) spans of ``backend.py``'s workload
  (traces of 5-10 spans over three services, ``--logs-per-span`` log records per span, default 2)
  spread over the ``--hours`` (default 24) before the run, POSTed as OTLP/HTTP protobuf by two
  threads (``backend.fill``) to a real ``python -m otel_corr serve --retention 0`` on free loopback
  ports.  ``--store PATH`` keeps the store (and ``PATH.why.json``, which names the traces below):
  a second run with the same path measures again without filling.
* Big traces (``ReportTrace``): one ``GET /api/reports/{report_id}`` request on ``web-frontend`` of
  exactly 10,000, 1,000 and 100 spans (``--sizes``), placed in the last 20 minutes of the range:
  web-frontend -> reports-api -> orders-api / inventory / pricing, nested 9 deep (entry, HTTP
  client, reports server, "build report", "build section", HTTP client, orders server, "load order
  lines", query); hundreds of "build section" branches of 11-15 spans; an N+1 run of
  ``SELECT shop.customers`` under one parent (300 / 30 / 8 queries); a failed branch (a pricing
  call answering 503 with an ``exception`` event, retried after a back-off); a "render pdf" span
  with a long stretch no child covers, bracketed by log lines; background work ending after the
  response; small gaps between siblings.  Log records: ``_search_workload``'s lines for each span
  (access lines on every server span, httpx/database/cache lines, the error lines of the failed
  call) trimmed or padded to about one per 5 spans, plus the gap's two lines.  Sent as an SDK
  exporter would: bodies of at most 512 spans, log bodies of at most 1,000 records.
* Baseline: ``--baseline`` (default 300; quick 60) ordinary requests of the same endpoint (40-120
  spans, same shape, no failure, N+1 of 5-9), at random times over the range, a tenth of them in
  the last hour, so "against normal" has a 1 h and a 24 h window to compare with.
* Busy endpoint: ``why`` on one ordinary trace of the backend workload too
  (``web-frontend GET /api/orders/{order_id}``, about 40% of the store's traces): the baseline of a
  busy endpoint is the expensive part there.
* Measurements: a fresh ``serve`` process on the store (after a fill the filling server is stopped
  and a new one started, so every run starts from the same process state: a cold SQLite cache and
  a warm OS page cache).  The first request of each kind for each trace is reported on its own
  ("first": why, then the trace page, then Jaeger, so the why column pays the cold reads).  Then
  ``--warmup`` (3) untimed rounds and ``--runs`` (default 30; quick 10) timed rounds, each round
  GETting for every trace ``/api/ui/why/<id>``, ``/api/ui/trace/<id>`` (what the trace page loads)
  and Jaeger's ``/api/traces/<id>`` in turn on one keep-alive connection, timed around the whole
  exchange (response read in full); the server's CPU time (``/proc/<pid>/stat``) around each
  request is summed per kind and divided by the runs (10 ms ticks: a mean over the runs).
* CLI: ``otel-corr why <trace id>`` as a subprocess (the console script next to the interpreter,
  ``OTEL_CORR_URL`` pointed at the server), ``--cli-runs`` (default 30; quick 5) times per trace,
  wall time Popen -> exit; ``otel-corr --help`` as many times first, for Python's start-up and the
  CLI's imports, which every command pays.
* The target (issue 19): why on the 10,000-span trace answers in <= 200 ms: the route's p50 and
  p99, and the command's p50.  Informational; the exit code is 0 unless the server fails.  Ratios:
  why / trace page and why / Jaeger, same trace, same run.  ``--profile ID`` instead runs the
  route's store reads and analysis in this process on the ``--store`` under cProfile.
"""

from __future__ import annotations

import argparse
import http.client
import inspect
import json
import os
import platform
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import REPO_DIR, child_env, package_versions, render_table, source_state
from _search_workload import INFO, WARN, Line, encode_lines, log_lines
from backend import (
    KIND_CLIENT,
    KIND_INTERNAL,
    KIND_SERVER,
    SPANS_PER_BODY,
    USER_AGENTS,
    USER_RANGE,
    Backend,
    Committed,
    Poster,
    Samples,
    SpanSpec,
    TraceVars,
    Workload,
    check_copy,
    encode_spans,
    fill,
    key_values,
    loadavg,
    resource_attrs,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus

MS = 1_000_000
MINUTE_NS = 60_000_000_000
HOUR_NS = 60 * MINUTE_NS
TARGET_MS = 200.0
ENDPOINT = ("web-frontend", "GET /api/reports/{report_id}")
BUSY_ROUTE = "/api/orders/{order_id}"
LOGS_PER_BODY = 1000
PACKAGES = ("otel-corr", "uvicorn", "starlette", "protobuf", "opentelemetry-proto")
SECTION_MAX = 15  # spans one "build section" branch has at most
TAIL = 5  # spans built after the sections: render pdf (3), render page, background write
STACK = (
    "Traceback (most recent call last):\n"
    '  File "/app/.venv/lib/python3.12/site-packages/starlette/routing.py", line 74, in app\n'
    "    response = await f(request)\n"
    '  File "/app/pricing/api.py", line 51, in quote\n'
    "    rates = await ledger.rates(currency, at=day)\n"
    '  File "/app/pricing/ledger.py", line 118, in rates\n'
    "    raise LedgerTimeout(f'ledger did not answer in {timeout}s')\n"
    "pricing.ledger.LedgerTimeout: ledger did not answer in 0.03s\n"
)


# --------------------------------------------------------------------------- the big traces


@dataclass
class Built:
    """One trace: its spans in start order and the log records written in them."""

    trace_id: bytes
    request_id: str
    spans: list[SpanSpec]
    lines: list[Line]
    label: str = ""


class ReportTrace:
    """Builds one ``GET /api/reports/{report_id}`` request of exactly ``n`` spans (see the module docstring)."""

    def __init__(self, rng: random.Random, n: int, start: int, *, failed_branch: bool, repeats: int, gap_ms: float):
        if n < 40:
            raise ValueError("a report trace has at least 40 spans")
        self.rng = rng
        self.n = n
        self.trace_id = rng.randbytes(16)
        self.rid = str(uuid.UUID(bytes=rng.randbytes(16), version=4))
        self.report = str(rng.randrange(100_000, 1_000_000))
        self.agent = rng.choice(USER_AGENTS)
        self.spans: list[SpanSpec] = []
        self.extra: list[Line] = []
        self.inst = {s: rng.randrange(2) for s in ("web-frontend", "reports-api", "orders-api", "inventory", "pricing")}
        self.tv = TraceVars(str(rng.randrange(*USER_RANGE)), str(rng.randrange(10**7, 10**8)), "1000000")
        self._build(start, failed_branch, repeats, gap_ms)

    def ms(self, lo: float, hi: float) -> int:
        return int(self.rng.uniform(lo, hi) * MS)

    # -- span makers (attributes as backend.py's instrumented app writes them, so its log lines fit)

    def _span(
        self, parent: SpanSpec | None, service: str, scope: str, name: str, kind: Any, t0: int, attrs: list[Any]
    ) -> SpanSpec:
        span = SpanSpec(
            service, self.inst[service], scope, self.rng.randbytes(8), parent.span_id if parent else b"", name, kind,
            t0, t0, attrs,
        )  # fmt: skip
        self.spans.append(span)
        return span

    def server(
        self, parent: SpanSpec | None, service: str, route: str, path: str, t0: int, code: int = 200
    ) -> SpanSpec:
        rng = self.rng
        attrs: list[tuple[str, Any]] = [
            ("http.request.method", "GET" if parent is None or service != "pricing" else "POST"),
            ("url.scheme", "https" if parent is None else "http"),
            ("url.path", path),
            ("http.route", route),
            ("http.response.status_code", code),
            ("server.address", "shop.example.com" if parent is None else f"{service}.shop.svc"),
            ("server.port", 443 if parent is None else 8080),
            ("network.protocol.version", "1.1"),
            ("user_agent.original", self.agent if parent is None else "python-httpx/0.28.1"),
            ("client.address", f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"),
            ("request.id", self.rid),
        ]
        method = attrs[0][1]
        span = self._span(parent, service, "server", f"{method} {route}", KIND_SERVER, t0, attrs)
        if code >= 500:
            attrs.append(("error.type", str(code)))
            span.status = PbStatus.STATUS_CODE_ERROR
        return span

    def http(self, parent: SpanSpec, target: str, method: str, path: str, t0: int, code: int = 200) -> SpanSpec:
        attrs: list[tuple[str, Any]] = [
            ("http.request.method", method),
            ("server.address", target),
            ("server.port", 8080),
            ("url.full", f"http://{target}:8080{path}"),
            ("http.response.status_code", code),
            ("network.protocol.version", "1.1"),
            ("network.peer.address", f"10.96.{self.rng.randrange(256)}.{self.rng.randrange(1, 255)}"),
        ]
        span = self._span(parent, parent.service, "http", method, KIND_CLIENT, t0, attrs)
        if code >= 500:
            attrs.append(("error.type", str(code)))
            span.status = PbStatus.STATUS_CODE_ERROR
        return span

    def db(self, parent: SpanSpec, op: str, table: str, query: str, t0: int, lo: float = 0.2, hi: float = 1.5) -> int:
        attrs: list[tuple[str, Any]] = [
            ("db.system.name", "postgresql"),
            ("db.namespace", "shop"),
            ("db.collection.name", table),
            ("db.operation.name", op),
            ("db.query.text", query),
            ("server.address", "pg-primary.shop.svc"),
            ("server.port", 5432),
        ]
        span = self._span(parent, parent.service, "db", f"{op} shop.{table}", KIND_CLIENT, t0, attrs)
        span.end = t0 + self.ms(lo, hi)
        return span.end + self.ms(0.02, 0.1)

    def internal(self, parent: SpanSpec, name: str, func: str, t0: int) -> SpanSpec:
        attrs: list[tuple[str, Any]] = [
            ("code.function.name", func),
            ("code.file.path", f"/app/{parent.service.split('-')[0]}/{func.split('.')[0]}.py"),
            ("code.line.number", self.rng.randint(20, 400)),
        ]
        return self._span(parent, parent.service, "app", name, KIND_INTERNAL, t0, attrs)

    def leaf(self, parent: SpanSpec, name: str, func: str, t0: int, lo: float, hi: float) -> int:
        span = self.internal(parent, name, func, t0)
        span.end = t0 + self.ms(lo, hi)
        return span.end + self.ms(0.02, 0.1)

    def close(self, span: SpanSpec, t: int, lo: float = 0.05, hi: float = 0.3) -> int:
        span.end = t + self.ms(lo, hi)
        return span.end

    def line(self, span: SpanSpec, t: int, sev: tuple[int, str], logger: str, body: str, path: str, no: int) -> None:
        attrs = [("request.id", self.rid), ("code.file.path", path), ("code.line.number", no)]
        self.extra.append(Line(0, self.spans.index(span), span, t, sev, logger, body, attrs, True))

    # -- the request

    def section(self, parent: SpanSpec, t: int) -> int:
        sec = self.internal(parent, "build section", "reports.build_section", t)
        t = self.db(
            sec, "SELECT", "report_sections", "SELECT kind, params FROM report_sections WHERE id = $1", t + 50_000
        )
        call = self.http(sec, "orders-api.shop.svc", "GET", f"/orders/search?report={self.report}", t)
        osrv = self.server(call, "orders-api", "/orders/search", "/orders/search", call.start + self.ms(0.2, 0.5))
        lines = self.internal(osrv, "load order lines", "orders.load_lines", osrv.start + self.ms(0.05, 0.2))
        t = lines.start + 30_000
        for _ in range(self.rng.randint(2, 4)):
            t = self.db(
                lines, "SELECT", "order_items", "SELECT sku, qty, price FROM order_items WHERE order_id = $1", t
            )
        if self.rng.random() < 0.5:
            t = self.leaf(lines, "cache get", "orders.cache_get", t, 0.05, 0.3)
        t = self.close(lines, t)
        t = self.leaf(osrv, "serialize response", "orders.serialize", t, 0.1, 0.6)
        t = self.close(call, self.close(osrv, t), 0.2, 0.6)
        call = self.http(sec, "inventory.shop.svc", "GET", "/stock", t + 30_000)
        isrv = self.server(call, "inventory", "/stock", "/stock", call.start + self.ms(0.2, 0.5))
        t = self.db(isrv, "SELECT", "stock", "SELECT sku, on_hand FROM stock WHERE sku = ANY($1)", isrv.start + 50_000)
        t = self.close(call, self.close(isrv, t), 0.2, 0.6)
        if self.rng.random() < 0.5:
            t = self.leaf(sec, "aggregate rows", "reports.aggregate", t + 20_000, 0.1, 1.0)
        return self.close(sec, t) + self.ms(0.02, 0.3)  # a small gap before the next section

    def pricing(self, parent: SpanSpec, t: int, failed: bool) -> int:
        apply = self.internal(parent, "apply pricing", "reports.apply_pricing", t)
        t = apply.start + 40_000
        for attempt in (1, 2) if failed else (2,):
            code = 503 if attempt == 1 else 200
            call = self.http(apply, "pricing.shop.svc", "POST", "/quotes", t, code)
            psrv = self.server(call, "pricing", "/quotes", "/quotes", call.start + self.ms(0.2, 0.5), code)
            t = self.db(psrv, "SELECT", "price_lists", "SELECT * FROM price_lists WHERE currency = $1", psrv.start)
            if code >= 500:
                t += 30 * MS  # the ledger call that timed out (not traced)
                psrv.message = "ledger did not answer in 0.03s"
                psrv.events.append(
                    (
                        t,
                        "exception",
                        [
                            ("exception.type", "pricing.ledger.LedgerTimeout"),
                            ("exception.message", "ledger did not answer in 0.03s"),
                            ("exception.stacktrace", STACK),
                            ("exception.escaped", False),
                        ],
                    )
                )
            t = self.close(call, self.close(psrv, t), 0.2, 0.6)
            if code >= 500:
                self.line(apply, t + 100_000, WARN, "reports.pricing", f"pricing answered 503, retrying in 50 ms "
                          f"(attempt 1 of 3); request {self.rid}", "/app/reports/pricing.py", 77)  # fmt: skip
                t += 50 * MS  # back-off
        return self.close(apply, t) + self.ms(0.05, 0.3)

    def _build(self, start: int, failed_branch: bool, repeats: int, gap_ms: float) -> None:
        path = f"/api/reports/{self.report}"
        root = self.server(None, "web-frontend", "/api/reports/{report_id}", path, start)
        t = self.leaf(root, "authenticate", "auth.verify_session", start + self.ms(0.2, 0.5), 1.0, 3.0)
        call = self.http(root, "reports-api.shop.svc", "GET", f"/reports/{self.report}", t)
        rsrv = self.server(
            call, "reports-api", "/reports/{report_id}", f"/reports/{self.report}", t + self.ms(0.3, 0.8)
        )
        load = self.internal(rsrv, "load report definition", "reports.load_definition", rsrv.start + 100_000)
        t = self.db(load, "SELECT", "reports", "SELECT * FROM reports WHERE id = $1", load.start + 30_000, 0.5, 2.0)
        t = self.close(load, t)
        build = self.internal(rsrv, "build report", "reports.build", t + 50_000)
        t = build.start + 50_000
        # The N+1: one query per customer of the report, one after the other.
        names = self.internal(build, "load customer names", "reports.customer_names", t)
        t = names.start + 20_000
        for _ in range(repeats):
            t = self.db(names, "SELECT", "customers", "SELECT name FROM customers WHERE id = $1", t, 0.3, 1.2)
        t = self.close(names, t)
        t = self.pricing(build, t, failed_branch)
        while len(self.spans) + SECTION_MAX <= self.n - TAIL:
            t = self.section(build, t)
        while len(self.spans) < self.n - TAIL:  # exactly n: a few more cache reads
            t = self.leaf(build, "cache get", "reports.cache_get", t, 0.05, 0.3)
        t = self.close(build, t)
        # A span with a long stretch no child covers, its two ends marked by log lines.
        render = self.internal(rsrv, "render pdf", "reports.render_pdf", t + 50_000)
        t = self.leaf(render, "load template", "reports.load_template", render.start + 30_000, 0.5, 2.0)
        rows = len(self.spans) * 7
        self.line(render, t + 10_000, INFO, "reports.render", f"rendering {rows:,} rows to PDF (template quarterly-v3)",
                  "/app/reports/render.py", 40)  # fmt: skip
        t += int(gap_ms * MS)
        self.line(render, t, INFO, "reports.render", f"PDF rendered: {rows // 5000 + 1} pages, {rows * 190:,} bytes",
                  "/app/reports/render.py", 58)  # fmt: skip
        upload = self.http(render, "storage.shop.svc", "PUT", f"/reports/{self.report}.pdf", t + 20_000)
        t = self.close(render, self.close(upload, upload.start, 2.0, 6.0))
        t = self.close(rsrv, t)
        t = self.close(call, t, 0.2, 0.6)
        t = self.leaf(root, "render page", "views.render_page", t + 50_000, 0.5, 2.0)
        end = self.close(root, t)
        # Background work the request started: it ends after the response.
        audit = self.internal(root, "write audit record", "audit.write", end - self.ms(0.5, 1.0))
        audit.end = end + self.ms(30, 120)
        assert len(self.spans) == self.n, (len(self.spans), self.n)

    def built(self, per_span: float, label: str = "") -> Built:
        """The spans, and the log records: ``_search_workload``'s lines at ``per_span`` plus this trace's own."""
        traces: list[tuple[bytes, str, list[Any]]] = [(self.trace_id, self.rid, self.spans)]
        lines = log_lines(traces, lambda _: self.tv, per_span, self.rng) if per_span > 0 else []
        return Built(self.trace_id, self.rid, sorted(self.spans, key=lambda s: s.start), lines + self.extra, label)


def big_traces(sizes: Sequence[int], end_ns: int, per_span: float, seed: int) -> list[Built]:
    """The traces ``why`` is timed on, in the last 20 minutes before ``end_ns``."""
    out = []
    for i, n in enumerate(sizes):
        rng = random.Random(seed * 1000 + n)
        start = end_ns - 20 * MINUTE_NS + i * 4 * MINUTE_NS
        repeats = max(8, min(300, n * 3 // 100))
        gap = {10_000: 400.0, 1_000: 120.0}.get(n, 40.0)
        maker = ReportTrace(rng, n, start, failed_branch=True, repeats=repeats, gap_ms=gap)
        out.append(maker.built(per_span / 10, f"{n:,} spans"))  # ~1 record per 5 spans at the default 2
    return out


def baseline_traces(count: int, begin_ns: int, end_ns: int, per_span: float, seed: int) -> list[Built]:
    """Ordinary requests of the same endpoint over the range, a tenth in its last hour."""
    rng = random.Random(seed + 99)
    out = []
    for i in range(count):
        recent = i % 10 == 0
        lo = end_ns - HOUR_NS if recent else begin_ns
        start = rng.randrange(lo, end_ns - 25 * MINUTE_NS)
        maker = ReportTrace(
            random.Random(rng.getrandbits(64)),
            rng.randint(40, 120),
            start,
            failed_branch=False,
            repeats=rng.randint(5, 9),
            gap_ms=rng.uniform(5, 30),
        )
        out.append(maker.built(per_span / 10))
    return out


def post_built(backend: Backend, traces: Sequence[Built]) -> tuple[int, int]:
    """POST each trace as an SDK would (span bodies of <= 512, log bodies of <= 1,000); wait for the commit."""
    poster = Poster(backend.otlp_port)
    span_marks: list[tuple[bytes, bytes]] = []
    log_marks: list[tuple[bytes, bytes]] = []
    spans = records = 0
    try:
        for tr in traces:
            ref = [(tr.trace_id, tr.request_id, tr.spans)]
            for i in range(0, len(tr.spans), SPANS_PER_BODY):
                chunk = tr.spans[i : i + SPANS_PER_BODY]
                poster.post(encode_spans([(tr.trace_id, tr.request_id, chunk)])[0])
                spans += len(chunk)
            span_marks.append((tr.trace_id, tr.spans[-1].span_id))
            lines = sorted(tr.lines, key=lambda x: x.time)
            for i in range(0, len(lines), LOGS_PER_BODY):
                chunk_lines = lines[i : i + LOGS_PER_BODY]
                body, order = encode_lines(ref, chunk_lines, resource_attrs, key_values)
                poster.post(body, "/v1/logs")
                records += len(chunk_lines)
                log_marks.append((tr.trace_id, order[-1].span.span_id))
    finally:
        poster.close()
    committed = Committed(backend.db)
    try:
        committed.wait(span_marks[-1:], backend)  # bodies commit in order: the last one means all
        committed.wait(log_marks[-1:], backend, logs=True)
    finally:
        committed.conn.close()
    return spans, records


# --------------------------------------------------------------------------- the store


@dataclass
class Target:
    """A trace to ask ``why`` about."""

    label: str
    trace_id: str
    request_id: str
    spans: int
    logs: int


def sidecar(store: Path) -> Path:
    return store.with_name(store.name + ".why.json")


def fill_store(args: argparse.Namespace, backend: Backend) -> dict[str, Any]:
    """The backend workload, then the baseline and the big traces; returns what ``sidecar`` keeps."""
    bodies = -(-args.spans // SPANS_PER_BODY)
    t0 = time.perf_counter()
    workload = Workload(bodies * SPANS_PER_BODY, args.hours, args.pool, logs_per_span=args.logs_per_span)
    check_copy(workload, workload.body(len(workload.templates) + 3), len(workload.templates) + 3)
    print(f"  built {args.pool} templates in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    samples = Samples()
    committed = Committed(backend.db)
    try:
        result = fill(backend, committed, workload, samples, 0, bodies)
    finally:
        committed.conn.close()
    print(
        f"  fill: {result.spans:,} spans + {result.logs:,} log records in {result.wall:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    base = baseline_traces(args.baseline, workload.begin_ns, workload.end_ns, args.logs_per_span, args.seed)
    base_spans, base_logs = post_built(backend, base)
    big = big_traces(args.sizes, workload.end_ns, args.logs_per_span, args.seed)
    counts = [post_built(backend, [tr]) for tr in big]
    print(f"  baseline: {len(base)} traces, {base_spans:,} spans, {base_logs:,} log records", file=sys.stderr)
    # The busy endpoint's ordinary trace: a recent one of the most common route, not failed.
    busy = max(
        (s for s in samples.search if s.route == BUSY_ROUTE and not s.failed),
        key=lambda s: s.start_ns,
    )
    return {
        "spans": result.spans + base_spans + sum(c[0] for c in counts),
        "log_records": result.logs + base_logs + sum(c[1] for c in counts),
        "workload_spans": result.spans,
        "hours": args.hours,
        "end_ns": workload.end_ns,
        "filled_by": source_state(),
        "filled_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "fill_s": round(result.wall, 1),
        "baseline": {"traces": len(base), "spans": base_spans, "log_records": base_logs},
        "targets": [
            *(
                {"label": tr.label, "trace_id": tr.trace_id.hex(), "request_id": tr.request_id,
                 "spans": c[0], "logs": c[1]}
                for tr, c in zip(big, counts, strict=True)
            ),
            {"label": f"busy: {BUSY_ROUTE}", "trace_id": busy.trace_id.hex(), "request_id": busy.request_id,
             "spans": 0, "logs": 0},
        ],
    }  # fmt: skip


# --------------------------------------------------------------------------- measuring


@dataclass
class Timing:
    """Client-side ms and the server's CPU seconds of one kind of request on one trace."""

    first_ms: float = 0.0
    ms: list[float] = field(default_factory=list)
    cpu: float = 0.0
    bytes: int = 0
    status: int = 0
    busy: int = 0  # 503s in the timed rounds (the query budget ran out): not timed, counted

    def pct(self, q: float) -> float:
        data = sorted(self.ms)
        return data[min(len(data) - 1, int(round(q / 100 * (len(data) - 1))))] if data else float("nan")


KINDS = (("why", "/api/ui/why/{}"), ("trace page", "/api/ui/trace/{}"), ("jaeger", "/api/traces/{}"))


def timed(conn: http.client.HTTPConnection, backend: Backend, path: str) -> tuple[float, float, int, bytes]:
    cpu0 = backend.cpu_seconds()
    t0 = time.perf_counter()
    conn.request("GET", path)
    resp = conn.getresponse()
    data = resp.read()
    ms = (time.perf_counter() - t0) * 1000
    return ms, backend.cpu_seconds() - cpu0, resp.status, data


def measure_http(backend: Backend, targets: Sequence[Target], runs: int, warmup: int) -> dict[tuple[str, str], Timing]:
    out = {(t.label, k): Timing() for t in targets for k, _ in KINDS}
    conn = http.client.HTTPConnection("127.0.0.1", backend.port, timeout=120)
    try:
        for t in targets:  # first request of each kind in the fresh server
            for kind, path in KINDS:
                ms, _, status, data = timed(conn, backend, path.format(t.trace_id))
                tm = out[(t.label, kind)]
                tm.first_ms, tm.status, tm.bytes = ms, status, len(data)
                if status != 200:
                    print(f"  GET {path.format(t.trace_id)}: HTTP {status} {data[:200]!r}", file=sys.stderr)
        for r in range(warmup + runs):
            for t in targets:
                for kind, path in KINDS:
                    tm = out[(t.label, kind)]
                    if tm.status != 200:
                        continue
                    ms, cpu, status, data = timed(conn, backend, path.format(t.trace_id))
                    if status == 503:
                        tm.busy += 1
                        continue
                    if status != 200:
                        raise SystemExit(f"GET {path.format(t.trace_id)}: HTTP {status} {data[:300]!r}")
                    if r >= warmup:
                        tm.ms.append(ms)
                        tm.cpu += cpu
            backend.alive()
    finally:
        conn.close()
    return out


def cli_command() -> list[str]:
    script = Path(sys.executable).with_name("otel-corr")
    return [str(script)] if script.exists() else [sys.executable, "-m", "otel_corr"]


def measure_cli(
    backend: Backend, targets: Sequence[Target], runs: int, checkout: Path | None = None
) -> tuple[dict[str, list[float]], str]:
    """Wall ms of ``otel-corr --help`` and ``otel-corr why <id>`` per trace; a note if the command is missing.

    ``checkout``: the ``otel_corr`` the command imports, if not this one's (a branch's CLI before it is merged).
    """
    env = child_env()
    if checkout is not None:
        env["PYTHONPATH"] = str(checkout.resolve())
    env["OTEL_CORR_URL"] = f"http://127.0.0.1:{backend.port}"
    cmd = cli_command()
    out: dict[str, list[float]] = {"--help": []}

    def run(argv: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
        t0 = time.perf_counter()
        proc = subprocess.run([*cmd, *argv], env=env, capture_output=True, text=True, timeout=120, check=False)
        return (time.perf_counter() - t0) * 1000, proc

    _, probe = run(["why", targets[0].trace_id])
    if probe.returncode != 0:
        return out, f"`otel-corr why` exited {probe.returncode}: {(probe.stderr or probe.stdout).strip()[:300]}"
    for _ in range(runs):
        out["--help"].append(run(["--help"])[0])
    for t in targets:
        out[t.label] = []
        for _ in range(runs):
            ms, proc = run(["why", t.trace_id])
            if proc.returncode != 0:
                return out, f"`otel-corr why {t.trace_id}` exited {proc.returncode}: {proc.stderr.strip()[:300]}"
            out[t.label].append(ms)
    return out, ""


def cli_source(checkout: Path) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(checkout), "log", "-1", "--format=%h %s"], capture_output=True, text=True, timeout=10
        ).stdout.strip()[:100]
    except (OSError, subprocess.SubprocessError):
        return "no git"


def pct(values: Sequence[float], q: float) -> float:
    data = sorted(values)
    return data[min(len(data) - 1, int(round(q / 100 * (len(data) - 1))))] if data else float("nan")


def describe(backend: Backend, t: Target) -> str:
    """What why answered for one trace, in a few lines (to see the analysis is doing its job at scale)."""
    conn = http.client.HTTPConnection("127.0.0.1", backend.port, timeout=120)
    try:
        conn.request("GET", f"/api/ui/why/{t.trace_id}")
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        return f"  {t.label}: HTTP {resp.status}"
    why = json.loads(data)
    lines = [f"  {t.label} ({t.trace_id}): {why.get('verdict', {}).get('headline', '?')}"]
    for c in why.get("causes", []):
        extra = f", x{c['repeat']['count']}" if c.get("repeat") else ""
        lines.append(f"    {c['rank']}. {c['kind']}: {c['service']} {c['name']} {c['ms']} ms{extra}: {c['title']}")
    normal = why.get("normal") or {}
    windows = ", ".join(f"{w['window']} {w['count']} requests, p{w['percentile']}" for w in normal.get("windows", []))
    lines.append(
        f"    critical path {len(why.get('critical_path', []))} spans; normal: {windows or 'none'}; "
        f"{len(normal.get('differences', []))} differences"
    )
    return "\n".join(lines)


def verdict(value: float) -> str:
    return "PASS" if value <= TARGET_MS else "MISS"


def report(
    targets: Sequence[Target],
    http_t: dict[tuple[str, str], Timing],
    cli: dict[str, list[float]],
    cli_note: str,
    runs: int,
) -> None:
    print(f"HTTP, one keep-alive connection, {runs} timed rounds (ms; CPU = the server's, mean per request)")
    rows = []
    for t in targets:
        for kind, _ in KINDS:
            tm = http_t[(t.label, kind)]
            if tm.status != 200:
                rows.append([t.label, kind, f"HTTP {tm.status}", "", "", "", "", "", "", "", ""])
                continue
            page = http_t[(t.label, "trace page")]
            ratio = f"{tm.pct(50) / page.pct(50):.2f} / {tm.pct(99) / page.pct(99):.2f}" if page.ms else ""
            rows.append(
                [
                    t.label,
                    kind,
                    f"{tm.first_ms:.1f}",
                    f"{tm.pct(50):.1f}",
                    f"{tm.pct(90):.1f}",
                    f"{tm.pct(99):.1f}",
                    f"{max(tm.ms, default=float('nan')):.1f}",
                    f"{tm.cpu / max(len(tm.ms), 1) * 1000:.0f}",
                    f"{tm.bytes:,}",
                    str(tm.busy),
                    ratio,
                ]
            )
    print(
        render_table(
            ["trace", "GET", "first", "p50", "p90", "p99", "max", "CPU ms", "bytes", "503s", "x page p50 / p99"], rows
        )
    )
    print()
    whys = [(t, http_t[(t.label, "why")]) for t in targets if http_t[(t.label, "why")].ms]
    if whys:
        print("why against the other reads of the same trace (p50 ratios):")
        for t, tm in whys:
            page, jaeger = http_t[(t.label, "trace page")], http_t[(t.label, "jaeger")]
            print(
                f"  {t.label}: why / trace page {tm.pct(50) / page.pct(50):.2f}x, why / Jaeger "
                f"{tm.pct(50) / jaeger.pct(50):.2f}x (why {tm.pct(50):.1f} ms, page {page.pct(50):.1f}, "
                f"Jaeger {jaeger.pct(50):.1f})"
            )
        print()
    print("CLI (wall ms, Popen -> exit; each run a new process)")
    if cli_note:
        print(f"  {cli_note}")
    help_p50 = pct(cli.get("--help", []), 50)
    rows = []
    for label, values in cli.items():
        if not values:
            continue
        name = "otel-corr --help" if label == "--help" else f"otel-corr why <{label}>"
        minus = "" if label == "--help" else f"{pct(values, 50) - help_p50:.1f}"
        rows.append([name, str(len(values)), f"{pct(values, 50):.1f}", f"{pct(values, 99):.1f}",
                     f"{max(values):.1f}", minus])  # fmt: skip
    if rows:
        print(render_table(["command", "runs", "p50", "p99", "max", "p50 - --help p50"], rows))
    print()
    big = next((t for t in targets if t.spans == 10_000), targets[0])
    tm = http_t[(big.label, "why")]
    print(f"Target (issue 19): why on the {big.label} trace answers in <= {TARGET_MS:.0f} ms")
    if tm.ms:
        print(f"  GET /api/ui/why: p50 {tm.pct(50):.1f} ms {verdict(tm.pct(50))}, p99 {tm.pct(99):.1f} ms "
              f"{verdict(tm.pct(99))}")  # fmt: skip
    else:
        print(f"  GET /api/ui/why: HTTP {tm.status} (no route at this commit?)")
    if cli.get(big.label):
        p50 = pct(cli[big.label], 50)
        print(f"  otel-corr why: p50 {p50:.1f} ms {verdict(p50)} (of which Python + CLI start-up ~{help_p50:.0f} ms, "
              f"the rest {p50 - help_p50:.1f} ms {verdict(p50 - help_p50)})")  # fmt: skip


def header(args: argparse.Namespace, meta: dict[str, Any] | None) -> None:
    print("otel-corr why benchmark (issue 19)")
    print(source_state())
    print(f"python {platform.python_version()} ({sys.executable}), {os.cpu_count()} CPUs, {platform.platform()}")
    print(package_versions(PACKAGES), f"SQLite {sqlite3.sqlite_version}")
    print(f"niceness {os.nice(0)}; load average at start {loadavg()}")
    if meta:
        b = meta["baseline"]
        print(
            f"store: {meta['spans']:,} spans, {meta['log_records']:,} log records (backend workload "
            f"{meta['workload_spans']:,} spans over {meta['hours']:g} h; {b['traces']} baseline traces of "
            f"{ENDPOINT[0]} {ENDPOINT[1]}, {b['spans']:,} spans), filled {meta['filled_at']} by "
            f"{meta['filled_by'].removeprefix('source: ')} in {meta['fill_s']:.0f} s"
        )
    print(flush=True)


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="otel-corr-why-") as tmp:
        store = args.store or Path(tmp) / "traces.db"
        meta_path = sidecar(store)
        meta = json.loads(meta_path.read_text()) if store.exists() and meta_path.exists() else None
        if meta is None:
            if store.exists():
                raise SystemExit(f"{store} exists without {meta_path}: give a new path or remove it")
            store.parent.mkdir(parents=True, exist_ok=True)
            print(f"filling {store} ...", file=sys.stderr, flush=True)
            filler = Backend(Path(tmp), name="fill", db=store)
            try:
                meta = fill_store(args, filler)
            finally:
                filler.stop()
            meta_path.write_text(json.dumps(meta, indent=1))
        header(args, meta)
        targets = [Target(**t) for t in meta["targets"]]
        backend = Backend(Path(tmp), name="serve", db=store)
        try:
            rss0 = backend.status()
            print(f"fresh serve: ready in {backend.ready:.2f} s, VmRSS {rss0.get('VmRSS', 0) / 1024:.0f} MB")
            print()
            http_t = measure_http(backend, targets, args.runs, args.warmup)
            rss1 = backend.status()
            load_mid = loadavg()
            cli, note = (
                measure_cli(backend, targets, args.cli_runs, args.cli_checkout) if args.cli_runs else ({}, "skipped")
            )
            if args.cli_checkout is not None:
                note = f"the CLI imports otel_corr from {args.cli_checkout} ({cli_source(args.cli_checkout)}). {note}"
            print("what why answered:")
            for t in targets:
                print(describe(backend, t))
            print()
            report(targets, http_t, cli, note, args.runs)
            print()
            print(
                f"server VmRSS {rss0.get('VmRSS', 0) / 1024:.0f} MB at start, {rss1.get('VmRSS', 0) / 1024:.0f} MB "
                f"after the HTTP rounds (peak VmHWM {rss1.get('VmHWM', 0) / 1024:.0f} MB); load average after the "
                f"HTTP rounds {load_mid}, at the end {loadavg()}"
            )
        finally:
            backend.stop()


# --------------------------------------------------------------------------- --profile


def route_handler(store: Any, prefix: str) -> tuple[Any, str]:
    """The page API's handler for ``prefix`` (e.g. ``/api/ui/why/``) as the server builds it, run here directly."""
    from otel_corr.server._app import find_trace
    from otel_corr.server._ui import ui_routes

    for route in ui_routes(store, find_trace, lambda handler: handler):
        if getattr(route, "path", "").startswith(prefix) and route.param_convertors:
            return route.endpoint, next(iter(route.param_convertors))
    raise SystemExit(f"no route {prefix}... in otel_corr.server._ui at this commit")


def call(handler: Any, param: str, value: str) -> Any:
    from starlette.requests import Request

    scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": [],
             "path_params": {param: value}}  # fmt: skip
    return handler(Request(scope))


def profile(args: argparse.Namespace) -> None:
    """The store reads and the analysis of one trace in this process: ms per step, then cProfile of the route."""
    import cProfile
    import pstats

    sys.path.insert(0, str(REPO_DIR))  # this checkout's otel_corr, as the server the run mode starts imports
    from otel_corr.server._app import find_trace
    from otel_corr.server._store import Store

    if args.store is None or not sidecar(args.store).exists():
        raise SystemExit("--profile needs --store PATH of a store this benchmark filled (and stopped serving)")
    meta = json.loads(sidecar(args.store).read_text())
    target = next((t for t in meta["targets"] if args.profile in (t["label"], t["trace_id"], str(t["spans"]))), None)
    if target is None:
        raise SystemExit(f"--profile: one of {[t['label'] for t in meta['targets']]} or a trace ID please")
    tid = target["trace_id"]
    print(f"in-process: {target['label']} trace {tid}; {source_state()}; load average {loadavg()}")
    store = Store(args.store)
    try:
        trace_id = bytes.fromhex(tid)
        steps: list[tuple[str, Any]] = [
            ("find_trace (store.trace)", lambda: find_trace(store, tid)),
            ("store.logs", lambda: store.logs(trace_id)),
        ]
        try:  # the route's parts one by one (names as at the commit that added them; skipped if moved)
            from otel_corr.server._analysis import analyse, entry_of
            from otel_corr.server._ui import _baseline

            spans, logs = store.trace(trace_id), store.logs(trace_id)
            extra: dict[str, Any] = {}
            if "details" in inspect.signature(store.trace).parameters:  # the read the route makes since 16ec902
                spans = store.trace(trace_id, details=False)
                steps.append(("store.trace(details=False)", lambda: store.trace(trace_id, details=False)))
            if hasattr(store, "trace_logs"):  # since d2c3bed: records decoded where the analysis looks
                logs = store.trace_logs(trace_id)
                steps.append(("store.trace_logs (lazy)", lambda: store.trace_logs(trace_id)))
            if "expand_span" in inspect.signature(analyse).parameters:  # since d2c3bed
                extra["expand_span"] = store.expand
            entry = entry_of(spans)
            base = _baseline(store, entry, time.time_ns())
            steps += [
                ("_baseline (recent requests + typical trace)", lambda: _baseline(store, entry, time.time_ns())),
                ("analyse() alone (GC on)", lambda: analyse(spans, logs, base, **extra)),
                ("json.dumps of the answer", lambda: json.dumps(analyse(spans, logs, base, **extra))),
            ]
        except ImportError as exc:
            print(f"  the route's parts: {exc}")
        for label, prefix in (
            ("GET /api/ui/trace handler", "/api/ui/trace/"),
            ("GET /api/ui/why handler", "/api/ui/why/"),
        ):
            try:
                handler, param = route_handler(store, prefix)
            except SystemExit as exc:
                print(f"  {exc}")
                continue
            steps.append((label, lambda h=handler, pm=param: call(h, pm, tid)))
        rows = []
        for label, fn in steps:
            fn()  # warm
            ms = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                fn()
                ms.append((time.perf_counter() - t0) * 1000)
            rows.append([label, f"{pct(ms, 50):.1f}", f"{pct(ms, 90):.1f}", f"{max(ms):.1f}"])
        print(render_table(["step", "p50 ms", "p90 ms", "max ms"], rows))
        label, fn = steps[-1]
        print(f"\ncProfile of {label}, {min(args.runs, 5)} calls, by cumulative time:")
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(min(args.runs, 5)):
            fn()
        prof.disable()
        pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(30)
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(20)
    finally:
        store.close()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="smoke run: 20,000 spans, 60 baseline traces, 10 rounds")
    p.add_argument("--spans", type=int, default=None, help="spans of the backend workload (default 1M; quick 20k)")
    p.add_argument("--hours", type=float, default=24.0, help="time range the spans are spread over (default 24)")
    p.add_argument("--logs-per-span", type=float, default=2.0, help="log records per workload span (default 2)")
    p.add_argument("--pool", type=int, default=32, help="distinct template bodies of the workload (default 32)")
    p.add_argument("--sizes", default="10000,1000,100", help="spans of each big trace (default 10000,1000,100)")
    p.add_argument("--baseline", type=int, default=None, help="ordinary traces of the endpoint (default 300; quick 60)")
    p.add_argument("--runs", type=int, default=None, help="timed rounds of HTTP requests (default 30; quick 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default 3)")
    p.add_argument("--cli-runs", type=int, default=None, help="otel-corr why runs per trace (default 30; quick 5)")
    p.add_argument(
        "--cli-checkout",
        type=Path,
        default=None,
        help="run the otel-corr command with the otel_corr of this checkout (a branch's CLI before it is merged)",
    )
    p.add_argument("--seed", type=int, default=19)
    p.add_argument("--store", type=Path, default=None, help="fill this store, or reuse it if filled before")
    p.add_argument(
        "--profile",
        metavar="TRACE",
        default=None,
        help="instead: time and cProfile the route's reads and analysis in-process on --store (no server);"
        " TRACE is a label, a size (10000) or a trace ID",
    )
    args = p.parse_args(argv)
    args.spans = args.spans or (20_000 if args.quick else 1_000_000)
    args.baseline = args.baseline if args.baseline is not None else (60 if args.quick else 300)
    args.runs = args.runs or (10 if args.quick else 30)
    args.cli_runs = args.cli_runs if args.cli_runs is not None else (5 if args.quick else 30)
    try:
        args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        p.error("--sizes: spans per trace, comma-separated, e.g. 10000,1000,100")
    if not args.sizes or min(args.sizes) < 40 or args.spans < SPANS_PER_BODY or args.runs < 1:
        p.error("--sizes >= 40 each, --spans >= 512, --runs >= 1 please")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("git") is None:
        print("note: no git, the source commit is unknown", file=sys.stderr)
    if args.profile:
        profile(args)
    else:
        run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
