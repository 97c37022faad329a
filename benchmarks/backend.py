"""Ingest throughput, query and search latency, storage and memory of ``otel-corr serve`` at up to 1M spans.

Methodology
-----------
* Server: a real ``python -m otel_corr serve --retention 0`` subprocess on three
  free loopback ports with a fresh ``--db`` file in a temporary directory
  (``OTEL_*`` variables removed from its environment).  It is one process: the
  event loop decodes OTLP, one writer thread commits to SQLite (the sqlite3
  module releases the GIL while SQLite runs, so it can use a bit more than one
  core).  Its CPU time (``/proc/<pid>/stat``) is reported next to wall time.
* Workload: traces of 5-10 spans across three services (``web-frontend`` ->
  ``orders-api`` -> ``payments``, two instances each, so six resources), with
  server, client (HTTP and database) and internal spans carrying the attributes
  an instrumented web app produces (``http.request.method``, ``url.path``,
  ``http.route``, ``http.response.status_code``, ``server.address``,
  ``user_agent.original``, ``client.address``, ``db.query.text``...);
  ``request.id`` on every server span, a UUID for 60% of the traces and a
  short non-hex ID (``req_...``) for the rest.  The UUIDs are random, as a
  caller's own request IDs would be; with ``--own-ids`` each is its trace's
  ID, as otel-corr makes them (the store does not index those, see
  ``Store._number``).  About 2% of the traces fail
  with a 500 (error status, ``error.type``, an ``exception`` event with a
  stack trace on the failing span); internal spans sometimes carry an event.
  Server spans also carry what an app adds for its users to search by:
  ``user.id`` (6 digits, 50k users, so a user has a few traces a day) on the
  frontend and orders spans, ``order.id`` (8 digits, one trace each) and
  ``customer.id`` (``c-`` + 7 digits) on the orders and payments spans of
  order and checkout requests.
  Each OTLP/HTTP body is one ``ExportTraceServiceRequest`` (opentelemetry-proto)
  of exactly 512 spans, whole traces only, grouped by resource and scope as an
  SDK/collector batch is.  ``--pool`` (default 32) distinct bodies are built
  with the protobuf library; every body sent is a copy of one of them with
  fresh random trace IDs, span IDs and request IDs and shifted timestamps,
  patched at byte offsets found once per template (one copy is checked by
  decoding it with the server's own decoder).  So bodies are cheap to make and
  the client barely competes with the server for the CPU.
* Logs (``--logs-per-span``, default 2; 0 = none): with each span body goes one
  ``ExportLogsServiceRequest`` (protobuf, for ``/v1/logs``) of log records in
  those traces' spans (their trace and span IDs, times inside the span),
  grouped by resource (the span's) and logger (the scope), as an SDK batch is,
  with what an instrumented app writes: otel-corr's access line on every
  server span (``10.1.2.3 - "GET /api/orders/40912345" 200 23.4ms`` with
  ``method``/``path``/``status``/``duration_ms``/``client``/``user_agent``), the
  app's lines ("checking out order 40912345 for customer c-1048121", "loaded
  order ...", "charging customer ...", "session verified for user 104812"),
  httpx's ``HTTP Request: POST ... "HTTP/1.1 200 OK"``, database timings
  (DEBUG), cache hits (DEBUG) and misses (WARN), retry warnings with the
  request ID, and on the failing span of a 500 an ERROR line and otel-corr's
  "Unhandled GatewayError in POST /charges" with ``exception.type``/
  ``exception.message``/``exception.stacktrace``.  Every record has
  ``request.id``, ``code.file.path`` and ``code.line.number`` (as otel-corr's
  OTLP handler sends them), a severity text and number.  The access and
  error lines are always there; the other lines are dropped at random, or
  chatty DEBUG/INFO lines added, until the template has exactly
  ``--logs-per-span`` x 512 records.  A copy is patched like its span body
  (same fresh trace/span/request IDs and time shift) and gets fresh user,
  order and customer numbers in both bodies (found once per template by
  their prefixes: an attribute's encoding, ``/orders/``, ``order ``, ``user ``,
  ``c-``); ``check_copy`` decodes one copy and checks that no template value
  is left.
* Time: the ``--spans`` spans (default 1,000,000) are spread evenly over the
  ``--hours`` (default 24) before the run started, in sending order.
* Ingest (phase 1, fresh store): bodies built before timing are POSTed to
  ``/v1/traces`` (``Content-Type: application/x-protobuf``) on keep-alive
  connections, first sequentially from one thread, then from two threads.
  A phase ends when its last body is *committed*: the benchmark polls its own
  read-only SQLite connection until a span of each thread's last body is
  there (the server queues bodies and commits each one whole, in order).
  spans/s = spans / (first POST -> commit seen).  A 503 ("store busy") is
  retried after a short back-off (10 ms, doubling, at most 0.5 s) and counted.
  With logs, each of these phases is followed by one that POSTs the same
  bodies' log records to ``/v1/logs`` the same way (records/s, until a record
  of each thread's last body is seen in ``logs``).  Each row gives the
  server's CPU seconds per span (per record in a logs phase).
* Fill: more bodies (made on the fly by two posting threads, each body's
  spans then its log records) until the store holds ``--spans`` minus the last
  ingest phase's spans; then phase 3 repeats the sequential and two-thread
  ingest (spans, then logs) into the nearly full store.
* Queries (at ``--spans``): ``--queries`` (default 300, after 20 warm-up)
  of each kind, interleaved, on one keep-alive connection, timed around the
  whole HTTP exchange (response read in full): ``GET /api/traces/<32 hex>``
  for random stored traces, ``GET /api/traces/<request id>`` for random short
  request IDs (not trace IDs, so the lookup falls back to the request index),
  and ``GET /api/traces?service=web-frontend&tags={"http.response.status_code":
  "500"}&limit=20&start=&end=`` over a 1-hour window (the Jaeger UI's default
  lookback) at a random position in the data.  Extra rows: UUID request IDs
  (parsed as a trace ID first), the trace-ID lookup on a new connection per
  request (a much faster result there than on the kept-alive connection means
  responses wait for a delayed ACK: the script prints a note), and the same
  search over the whole time range (``--wide-queries``, default 20).
* Search (``--search``, on by default; after the queries above, same store):
  ``--queries`` requests of each kind (after ``--warmup``), interleaved, on one
  keep-alive connection, timed around the whole exchange, each for a fresh
  random sample (one trace per body sent, with its IDs and values).
  ``GET /api/search?q=...&limit=20`` with: the trace ID as 32 hex, as a UUID
  and as base64; its root span's ID (16 hex); a UUID and a short request ID
  (must open the trace); ``user.id=U`` (rare) and ``http.route=/api/cart``
  (a sixth of the traces) over a 1-hour window (``since:``/``until:`` in RFC
  3339, at a random position around the sample) and over the whole data ("24
  h"); over the whole data: the sample's order number as a word (in its log
  lines), the common word ``cache``, the phrase "upstream gateway returned"
  (the 2% failing traces), ``"checking out order" http.request.method=POST
  service:orders-api duration>20ms`` (combined), an absent phrase and a phrase
  plus a status that never meet (no match); and Jaeger's
  ``/api/traces?service=web-frontend&tags={"user.id":"U"}`` over 1 h and the
  whole range (``--wide-queries`` requests of the latter: it decodes spans).
  A miss is a response without the sample's trace where it must be there (an
  ID not opening it); a 503 (the query budget) is counted.
* Storage: after the queries and the search (before ``--mixed`` and
  ``--heavy-posts``, which add span bodies without their logs),
  ``PRAGMA wal_checkpoint(TRUNCATE)`` on a separate
  connection, then (database + ``-wal``) bytes / spans, log records and every
  index included; ``dbstat`` gives the size of every table and index (per span
  and per log record), and ``EXPLAIN QUERY PLAN`` the plan of each query
  (of each search kind: the SQL ``Store.find`` ran for one sample).  Memory:
  ``VmRSS`` and ``VmHWM`` (peak) from ``/proc/<pid>/status``.
* ``--mixed`` (after the queries and the storage figures): ``--phase-bodies``
  more bodies from two posting threads while ``--mixed-clients`` (default 1)
  threads loop over the three target queries on their own keep-alive
  connections until the last body is committed; prints each query's p99 under
  load next to its idle p99, and the ingest rate with queries next to the
  "at ...k, 2 threads" phase without them.
* ``--heavy-posts N`` (default 200; after the queries and ``--mixed``): OTLP POST
  latency as one sender sees it (512-span protobuf bodies on one keep-alive
  connection, request sent -> acknowledgement read, 503 retries included), N
  POSTs with nothing else running, then N more while ``--heavy-clients``
  (default 2) threads loop over the heaviest queries over the whole stored
  range: ``/api/dependencies`` and a search for a tag no span carries (each
  span's attributes are decoded).  Prints POST p50/p90/p99/max idle and under
  the queries with the ratio of the p99s (issue 16's target: p99 under queries
  <= 100 ms and <= 3x idle), and how often each query answered 200 or 503 (its
  ``--query-timeout`` budget, 5 s by default).
* ``--ack-cost`` (instead of the above): the server acknowledges a body only
  once its transaction committed; this measures what that costs.  Fresh stores,
  ``--phase-bodies`` prebuilt bodies from 1, 2 and 4 senders, ``--ack-reps``
  rounds; medians.  (Against acknowledging on queueing, the old behaviour, it
  measured 0.95x CPU per span for one sender and 0.88-0.89x for 2-4, at commit
  fe4f48b; that switch lost acknowledged batches on a crash and is gone.)

* ``--upgrade-from DIR`` (instead of the above): a server running the
  ``otel_corr`` of an older checkout in DIR (e.g. ``git archive <commit>
  otel_corr | tar -x -C DIR``) is filled by two posting threads with
  ``--spans`` (default 100k) spans and their log records, and stopped; then
  this checkout's server starts on the same file (retention 0).  Reported:
  Popen -> first answer to ``/api/services`` of that first start (the format
  upgrade runs before the server answers), of a second start with nothing to
  upgrade, their difference per 100k spans, the format and file size before
  and after, and whether a request ID opens its trace afterwards.

Targets are printed with PASS/MISS for information only; the exit code is 0
unless the server fails.  The machine's load average is printed at the start,
before the queries and at the end: on a shared machine, read it with the
numbers.  ``--keep-db PATH`` keeps the store for inspection.  ``--profile``
instead runs the ingest path in-process (``otel_corr.server._otlp`` +
``_store``): µs/span of parse, ``span_rows`` and write, the memory one queued body
holds, and a cProfile of the three.
"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import inspect
import io
import itertools
import json
import os
import platform
import pstats
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from _cluster import Committed as CHCommitted
from _cluster import Markers, lookup_breakdown
from _cluster import parts as ch_parts
from _common import child_env, package_versions, render_table
from _search_workload import (
    SEARCH_HEADERS,
    LogTemplate,
    build_log_template,
    leftover_values,
    print_plans,
    run_search,
    search_plans,
    search_rows,
    value_offsets,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
SPANS_PER_BODY = 512
SEARCH_SERVICE = "web-frontend"
SEARCH_TAGS = {"http.response.status_code": "500"}
SEARCH_WINDOW_NS = 3_600 * 1_000_000_000
PACKAGES = ("otel-corr", "uvicorn", "starlette", "h11", "httptools", "uvloop", "protobuf", "opentelemetry-proto")

TARGET_INGEST = 30_000.0  # spans/s
TARGET_LOG_INGEST = 50_000.0  # log records/s
TARGET_LOOKUP_P99 = 20.0  # ms
TARGET_SEARCH_P99 = 100.0  # ms
TARGET_BYTES_PER_SPAN = 600.0
TARGET_RSS_MB = 200.0
TARGET_POST_UNDER_QUERIES_P99 = 100.0  # ms, and at most TARGET_POST_RATIO x idle
TARGET_POST_RATIO = 3.0
HEAVY_TAGS = {"http.route": "/no/such/route"}  # matches nothing: every span's attributes are decoded

# --------------------------------------------------------------------------- workload

KIND_INTERNAL, KIND_SERVER, KIND_CLIENT = PbSpan.SPAN_KIND_INTERNAL, PbSpan.SPAN_KIND_SERVER, PbSpan.SPAN_KIND_CLIENT
SCOPES = {
    "server": ("opentelemetry.instrumentation.fastapi", "0.50b0"),
    "http": ("opentelemetry.instrumentation.httpx", "0.50b0"),
    "db": ("opentelemetry.instrumentation.asyncpg", "0.50b0"),
    "app": ("shop", "2.14.1"),
}
SERVICES = {"web-frontend": "2.14.1", "orders-api": "1.8.0", "payments": "3.2.5"}
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
    "Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
    "Mobile/15E148 Safari/604.1",
    "okhttp/4.12.0",
    "python-requests/2.32.3",
)
ROUTES = (  # method, route, weight
    ("GET", "/api/orders/{order_id}", 5),
    ("GET", "/api/products", 3),
    ("GET", "/api/cart", 2),
    ("POST", "/api/checkout", 2),
)
STACK = (
    'Traceback (most recent call last):\n  File "/app/.venv/lib/python3.12/site-packages/starlette/routing.py", '
    'line 74, in app\n    response = await f(request)\n  File "/app/.venv/lib/python3.12/site-packages/fastapi/'
    'routing.py", line 297, in app\n    raw_response = await run_endpoint_function(\n  File "/app/shop/'
    'payments/api.py", line 88, in create_charge\n    result = await gateway.charge(card, amount)\n  File "/app/'
    'shop/payments/gateway.py", line 142, in charge\n    raise GatewayError(f"declined: {code}")\n'
    "shop.payments.gateway.GatewayError: upstream gateway returned 502\n"
)


@dataclass
class SpanSpec:
    service: str
    instance: int
    scope: str
    span_id: bytes
    parent_id: bytes
    name: str
    kind: Any  # a protobuf enum value (an int)
    start: int
    end: int
    attrs: list[tuple[str, Any]]
    status: Any = 0  # a protobuf enum value (an int)
    message: str = ""
    events: list[tuple[int, str, list[tuple[str, Any]]]] = field(default_factory=list)


@dataclass(frozen=True)
class TraceVars:
    """A trace's searchable values as digits of a fixed width each (user 6, customer 7, order 8)."""

    user: str
    order: str
    customer: str


USER_RANGE = (100_000, 150_000)  # 50k users: a user has a few traces a day
ORDER_RANGE = (10_000_000, 100_000_000)  # an order number names one trace
CUSTOMER_RANGE = (1_000_000, 1_200_000)


@dataclass(frozen=True)
class TraceRef:
    trace_id: bytes
    request_id: str
    start_ns: int


class TraceMaker:
    """Realistic traces of 5-10 spans, one after the other in time."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        # Per trace: the values a user searches by (user, order, customer number), unique in the maker so
        # a template's copies can find and replace every occurrence (see TraceVars).
        self.vars: dict[bytes, TraceVars] = {}
        self._used: set[str] = set()

    def unique(self, low: int, high: int) -> str:
        while True:
            text = str(self.rng.randrange(low, high))
            if text not in self._used:
                self._used.add(text)
                return text

    def short_id(self) -> str:
        alphabet = "0123456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
        while True:
            text = "req_" + "".join(self.rng.choice(alphabet) for _ in range(16))
            if any(c not in "0123456789abcdefABCDEF" for c in text[4:]):
                return text

    def request_id(self) -> str:
        if self.rng.random() < 0.6:
            return str(uuid.UUID(bytes=self.rng.randbytes(16), version=4))
        return self.short_id()

    def sid(self) -> bytes:
        return self.rng.randbytes(8)

    def trace(self, start: int, max_spans: int) -> tuple[bytes, str, list[SpanSpec]]:
        rng = self.rng
        trace_id = rng.randbytes(16)
        rid = self.request_id()
        method, route, _ = rng.choices(ROUTES, weights=[r[2] for r in ROUTES])[0]
        roll = rng.random()
        code = (
            500 if roll < 0.02 else 404 if roll < 0.05 and "{order_id}" in route else 201 if method == "POST" else 200
        )
        tv = TraceVars(self.unique(*USER_RANGE), self.unique(*ORDER_RANGE), self.unique(*CUSTOMER_RANGE))
        self.vars[trace_id] = tv
        order = tv.order
        path = route.replace("{order_id}", order)
        total = int(rng.lognormvariate(17.0, 0.7))  # ~25 ms median
        ua = rng.choice(USER_AGENTS)
        inst = {s: rng.randrange(2) for s in SERVICES}
        spans: list[SpanSpec] = []

        def server(service: str, parent: bytes, name: str, url_path: str, t0: int, t1: int, agent: str) -> SpanSpec:
            attrs: list[tuple[str, Any]] = [
                ("http.request.method", method),
                ("url.scheme", "https" if service == "web-frontend" else "http"),
                ("url.path", url_path),
                ("http.route", name.split(" ", 1)[1]),
                ("http.response.status_code", code),
                ("server.address", "shop.example.com" if service == "web-frontend" else f"{service}.shop.svc"),
                ("server.port", 443 if service == "web-frontend" else 8080),
                ("network.protocol.version", "1.1"),
                ("user_agent.original", agent),
                ("client.address", f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"),
                ("request.id", rid),
            ]
            # What the app adds to its server spans, that a user searches by.
            if service != "payments":
                attrs.append(("user.id", tv.user))
            if service != "web-frontend" and (method == "POST" or "{order_id}" in route):
                attrs += [("order.id", tv.order), ("customer.id", "c-" + tv.customer)]
            status = 0
            if code >= 500:
                attrs.append(("error.type", str(code)))
                status = PbStatus.STATUS_CODE_ERROR
            span = SpanSpec(
                service, inst[service], "server", self.sid(), parent, name, KIND_SERVER, t0, t1, attrs, status
            )
            spans.append(span)
            return span

        def http_client(caller: SpanSpec, target: str, verb: str, url: str, t0: int, t1: int) -> SpanSpec:
            attrs: list[tuple[str, Any]] = [
                ("http.request.method", verb),
                ("server.address", target),
                ("server.port", 8080 if target.endswith(".svc") else 443),
                ("url.full", url),
                ("http.response.status_code", code),
                ("network.protocol.version", "1.1"),
                ("network.peer.address", f"10.96.{rng.randrange(256)}.{rng.randrange(1, 255)}"),
            ]
            status = 0
            if code >= 500:
                attrs.append(("error.type", str(code)))
                status = PbStatus.STATUS_CODE_ERROR
            span = SpanSpec(
                caller.service,
                caller.instance,
                "http",
                self.sid(),
                caller.span_id,
                verb,
                KIND_CLIENT,
                t0,
                t1,
                attrs,
                status,
            )
            spans.append(span)
            return span

        def db(caller: SpanSpec, op: str, table: str, query: str, t0: int, t1: int) -> None:
            attrs: list[tuple[str, Any]] = [
                ("db.system.name", "postgresql"),
                ("db.namespace", "shop"),
                ("db.collection.name", table),
                ("db.operation.name", op),
                ("db.query.text", query),
                ("server.address", "pg-primary.shop.svc"),
                ("server.port", 5432),
                ("network.peer.address", f"10.0.3.{rng.randrange(1, 255)}"),
            ]
            name = f"{op} shop.{table}"
            spans.append(
                SpanSpec(
                    caller.service, caller.instance, "db", self.sid(), caller.span_id, name, KIND_CLIENT, t0, t1, attrs
                )
            )

        def internal(caller: SpanSpec, name: str, func: str, t0: int, t1: int) -> None:
            attrs: list[tuple[str, Any]] = [
                ("code.function.name", func),
                ("code.file.path", f"/app/shop/{func.split('.')[0]}.py"),
                ("code.line.number", rng.randint(20, 400)),
                ("enduser.id", f"user-{rng.randint(1, 50_000)}"),
            ]
            events = []
            if rng.random() < 0.08:
                events.append((t0 + (t1 - t0) // 2, "cache.miss", [("cache.key", f"cart:{rng.randint(1, 50_000)}")]))
            spans.append(
                SpanSpec(
                    caller.service,
                    caller.instance,
                    "app",
                    self.sid(),
                    caller.span_id,
                    name,
                    KIND_INTERNAL,
                    t0,
                    t1,
                    attrs,
                    events=events,
                )
            )

        end = start + total
        root = server("web-frontend", b"", f"{method} {route}", path, start, end, ua)
        step = total // 16
        internal(root, "authenticate", "auth.verify_session", start + step, start + 2 * step)
        orders_route = "/orders/{order_id}" if "{order_id}" in route else route.replace("/api", "/orders")
        orders_path = orders_route.replace("{order_id}", order)
        orders_url = f"http://orders-api.shop.svc:8080{orders_path}"
        call = http_client(root, "orders-api.shop.svc", method, orders_url, start + 2 * step, end - 2 * step)
        osrv = server(
            "orders-api",
            call.span_id,
            f"{method} {orders_route}",
            orders_path,
            call.start + step // 4,
            call.end - step // 4,
            "python-httpx/0.28.1",
        )
        queries = (
            ("SELECT", "orders", "SELECT id, status, total, currency FROM orders WHERE id = $1"),
            ("SELECT", "order_items", "SELECT sku, qty, price FROM order_items WHERE order_id = $1"),
            ("UPDATE", "carts", "UPDATE carts SET updated_at = now() WHERE user_id = $1"),
        )
        t = osrv.start + step // 4
        payments = method == "POST" or rng.random() < 0.25
        for op, table, query in queries[: rng.randint(1, 2 if payments else 3)]:
            db(osrv, op, table, query, t, t + step)
            t += step
        if payments:
            pay = http_client(
                osrv, "payments.shop.svc", "POST", "http://payments.shop.svc:8080/charges", t, t + 6 * step
            )
            psrv = server(
                "payments",
                pay.span_id,
                "POST /charges",
                "/charges",
                t + step // 4,
                t + 6 * step - step // 4,
                "python-httpx/0.28.1",
            )
            db(
                psrv,
                "SELECT",
                "cards",
                "SELECT token, brand FROM cards WHERE user_id = $1",
                psrv.start,
                psrv.start + step,
            )
            gateway = http_client(
                psrv,
                "api.gateway.example",
                "POST",
                "https://api.gateway.example/v1/charges",
                psrv.start + step,
                psrv.end - step,
            )
            gateway.attrs[4] = ("http.response.status_code", 502 if code >= 500 else 200)
        while len(spans) < 5:
            internal(osrv, "serialize response", "orders.serialize", osrv.end - step, osrv.end - step // 2)
        if rng.random() < 0.4 and len(spans) < 10:
            internal(root, "render", "views.render_page", end - 2 * step, end - step)
        if code >= 500:
            failing = max((s for s in spans if s.kind == KIND_SERVER), key=lambda s: s.start)
            failing.message = "upstream gateway returned 502"
            failing.events.append(
                (
                    failing.end - 1000,
                    "exception",
                    [
                        ("exception.type", "shop.payments.gateway.GatewayError"),
                        ("exception.message", "upstream gateway returned 502"),
                        ("exception.stacktrace", STACK),
                        ("exception.escaped", False),
                    ],
                )
            )
        return trace_id, rid, spans[:max_spans]


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def key_values(attrs: Iterable[tuple[str, Any]]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attrs]


def resource_attrs(service: str, instance: int) -> list[tuple[str, Any]]:
    return [
        ("service.name", service),
        ("service.version", SERVICES.get(service, "1.0.0")),  # other benchmarks' services too
        ("service.namespace", "shop"),
        ("service.instance.id", f"{service}-7d9f8c-{instance}"),
        ("deployment.environment.name", "staging"),
        ("host.name", f"node-{instance + 1}.eu-west-1.compute.internal"),
        ("process.pid", 7 + instance),
        ("process.runtime.name", "cpython"),
        ("process.runtime.version", "3.12.4"),
        ("telemetry.sdk.language", "python"),
        ("telemetry.sdk.name", "opentelemetry"),
        ("telemetry.sdk.version", "1.39.0"),
    ]


@dataclass
class Template:
    """One encoded body plus where its IDs and timestamps sit, so copies can be patched cheaply."""

    body: bytes
    spans: int
    trace_offsets: list[list[int]]  # per trace: offsets of its 16-byte trace ID
    span_offsets: list[list[int]]  # per span: offsets of its 8-byte span ID (own + children's parent)
    rid_offsets: list[tuple[list[int], bool]]  # per trace: offsets of its request ID, and whether it is a UUID
    rid_lengths: list[int]
    time_offsets: list[int]  # every fixed64 timestamp
    trace_starts: list[int]
    marker: tuple[int, int]  # (trace, span slot) of the last trace's first span, to see the body committed
    trace_slots: list[int]  # per trace: the slot of its root span
    failed: list[bool]  # per trace: it ends in a 500
    routes: list[str]  # per trace: its root span's http.route
    logs: LogTemplate | None  # the log records of these traces (None with --logs-per-span 0)
    # per (trace, kind of value): offsets of the value's digits in the span body and in the log body
    values: list[tuple[int, str, list[int], list[int]]]
    table: dict[bytes, tuple[int, str]]  # the template's own values (a patched copy must hold none)


def encode_spans(
    traces: Sequence[tuple[bytes, str, list[SpanSpec]]],
) -> tuple[bytes, dict[tuple[str, int], dict[str, list[SpanSpec]]]]:
    """One ``ExportTraceServiceRequest`` of these spans grouped by resource and scope, as an SDK batch is.

    Returns the encoded body and the grouping (spans are encoded in its order).
    """
    request = ExportTraceServiceRequest()
    groups: dict[tuple[str, int], dict[str, list[SpanSpec]]] = {}
    for _, _, spans in traces:
        for s in spans:
            groups.setdefault((s.service, s.instance), {}).setdefault(s.scope, []).append(s)
    trace_index = {id(s): i for i, (_, _, spans) in enumerate(traces) for s in spans}
    for (service, instance), scopes in groups.items():
        rs = request.resource_spans.add()
        rs.resource.attributes.extend(key_values(resource_attrs(service, instance)))
        for scope, specs in scopes.items():
            ss = rs.scope_spans.add()
            ss.scope.name, ss.scope.version = SCOPES[scope]
            ss.spans.extend(
                PbSpan(
                    trace_id=traces[trace_index[id(s)]][0],
                    span_id=s.span_id,
                    parent_span_id=s.parent_id,
                    name=s.name,
                    kind=s.kind,
                    start_time_unix_nano=s.start,
                    end_time_unix_nano=s.end,
                    attributes=key_values(s.attrs),
                    status=PbStatus(code=s.status, message=s.message),
                    events=[PbSpan.Event(time_unix_nano=t, name=n, attributes=key_values(a)) for t, n, a in s.events],
                )
                for s in specs
            )
    return request.SerializeToString(), groups


def build_template(maker: TraceMaker, start: int, span_dt: int, logs_per_span: float) -> Template:
    """Whole traces until exactly SPANS_PER_BODY spans, encoded with opentelemetry-proto; their log records."""
    traces: list[tuple[bytes, str, list[SpanSpec]]] = []
    count, t = 0, start
    while count < SPANS_PER_BODY:
        trace_id, rid, spans = maker.trace(t, SPANS_PER_BODY - count)
        traces.append((trace_id, rid, spans))
        count += len(spans)
        t += len(spans) * span_dt
    body, groups = encode_spans(traces)
    trace_index = {id(s): i for i, (_, _, spans) in enumerate(traces) for s in spans}
    # Where the IDs and times sit: spans are encoded in the order added, each one's fields in field-number
    # order (1 trace_id, 2 span_id, 4 parent_span_id, 7/8 start/end fixed64, 9 attributes, 11 events with
    # field 1 time fixed64), so one forward walk with tag-prefixed needles finds every occurrence.
    slot = {id(s): k for k, s in enumerate(_all(traces))}
    by_span_id = {s.span_id: k for k, s in enumerate(_all(traces))}
    trace_offsets: list[list[int]] = [[] for _ in traces]
    span_offsets: list[list[int]] = [[] for _ in slot]
    rid_offsets: list[list[int]] = [[] for _ in traces]
    times: list[int] = []

    def find(needle: bytes, start: int, window: int) -> int:
        pos = body.find(needle, start, start + window)
        if pos < 0:
            raise RuntimeError("template: a field is not where the encoding puts it")
        return pos

    cursor = 0
    for scopes in groups.values():
        for specs in scopes.values():
            for s in specs:
                ti = trace_index[id(s)]
                pos = find(b"\x0a\x10" + traces[ti][0] + b"\x12\x08" + s.span_id, cursor, 1 << 16)
                trace_offsets[ti].append(pos + 2)
                span_offsets[slot[id(s)]].append(pos + 20)
                cursor = pos + 28
                if s.parent_id:
                    span_offsets[by_span_id[s.parent_id]].append(find(b"\x22\x08" + s.parent_id, cursor, 64) + 2)
                times.append(find(b"\x39" + s.start.to_bytes(8, "little"), cursor, 2048) + 1)
                times.append(find(b"\x41" + s.end.to_bytes(8, "little"), cursor, 2048) + 1)
                times.extend(find(b"\x09" + t.to_bytes(8, "little"), cursor, 8192) + 1 for t, _, _ in s.events)
                if any(k == "request.id" for k, _ in s.attrs):
                    rid_offsets[ti].append(find(traces[ti][1].encode(), cursor, 4096))
    if count != SPANS_PER_BODY or len(times) != len(set(times)):
        raise RuntimeError("template self-check failed")
    logs = (
        build_log_template(traces, maker.vars.__getitem__, logs_per_span, maker.rng, resource_attrs, key_values)[0]
        if logs_per_span > 0
        else None
    )
    table: dict[bytes, tuple[int, str]] = {}
    for ti, (trace_id, _, _) in enumerate(traces):
        tv = maker.vars[trace_id]
        for kind in ("user", "order", "customer"):
            table[getattr(tv, kind).encode()] = (ti, kind)
    in_spans = value_offsets(body, table)
    in_logs = value_offsets(logs.body, table) if logs else {}
    firsts = list(itertools.accumulate((len(spans) for _, _, spans in traces), initial=0))[:-1]
    return Template(
        body=body,
        spans=count,
        trace_offsets=trace_offsets,
        span_offsets=span_offsets,
        rid_offsets=[(offsets, "-" in rid) for offsets, (_, rid, _) in zip(rid_offsets, traces, strict=True)],
        rid_lengths=[len(rid) for _, rid, _ in traces],
        time_offsets=times,
        trace_starts=[spans[0].start for _, _, spans in traces],
        marker=(len(traces) - 1, count - len(traces[-1][2])),
        trace_slots=firsts,
        failed=[any(s.status == PbStatus.STATUS_CODE_ERROR for s in spans) for _, _, spans in traces],
        routes=[str(dict(spans[0].attrs).get("http.route", "")) for _, _, spans in traces],
        logs=logs,
        values=[(ti, kind, in_spans.get((ti, kind), []), in_logs.get((ti, kind), [])) for ti, kind in table.values()],
        table=table,
    )


def _all(traces: list[tuple[bytes, str, list[SpanSpec]]]) -> Iterator[SpanSpec]:
    for _, _, spans in traces:
        yield from spans


@dataclass(frozen=True)
class SearchRef:
    """One stored trace and the values a user would search it by."""

    trace_id: bytes
    span_id: bytes  # its root span
    request_id: str
    user: str
    order: str
    customer: str
    start_ns: int
    failed: bool
    route: str  # the root span's http.route


@dataclass
class Body:
    data: bytes
    spans: int
    marker: tuple[bytes, bytes]  # (trace ID, span ID) of one span in the body
    short: TraceRef  # one trace with a short request ID (or a UUID one if the body has none)
    uuid: TraceRef
    any: TraceRef
    logs: bytes = b""  # the ExportLogsServiceRequest of these traces' log records
    log_records: int = 0
    log_marker: tuple[bytes, bytes] | None = None  # (trace ID, span ID) of the last log record
    pick: SearchRef | None = None  # a random trace of the body, for the search queries
    values: frozenset[str] = frozenset()  # every searchable value and request ID it holds (for check_copy)


class Workload:
    """Copies of ``pool`` templates, each with fresh IDs and its own slice of the time range."""

    def __init__(
        self,
        total_spans: int,
        hours: float,
        pool: int,
        seed: int = 7,
        own_ids: bool = False,
        logs_per_span: float = 0.0,
    ) -> None:
        self.own_ids = own_ids  # UUID request IDs are their trace's ID (otel-corr's rule), not random
        self.end_ns = time.time_ns() // 1_000_000_000 * 1_000_000_000
        self.begin_ns = self.end_ns - int(hours * SEARCH_WINDOW_NS)
        self.span_dt = max(1, (self.end_ns - self.begin_ns) // max(total_spans, 1))
        self.body_dt = self.span_dt * SPANS_PER_BODY
        maker = TraceMaker(random.Random(seed))
        self.templates = [
            build_template(maker, self.begin_ns + i * self.body_dt, self.span_dt, logs_per_span) for i in range(pool)
        ]
        self._seed = seed

    def body(self, index: int) -> Body:
        """Body number ``index`` in sending order (covering its own slice of the time range)."""
        tpl = self.templates[index % len(self.templates)]
        delta = (index // len(self.templates)) * self.body_dt * len(self.templates)
        # A body's randomness depends on its index only: every thread may make any body, and two stores
        # (--store clickhouse's SQLite baseline) get the very same bodies, IDs included.
        rng = random.Random((self._seed + 1) * 1_000_003 + index)
        buf = bytearray(tpl.body)
        trace_ids = []
        for offsets in tpl.trace_offsets:
            new = rng.randbytes(16)
            trace_ids.append(new)
            for off in offsets:
                buf[off : off + 16] = new
        span_ids = []
        for offsets in tpl.span_offsets:
            new = rng.randbytes(8)
            span_ids.append(new)
            for off in offsets:
                buf[off : off + 8] = new
        rids = []
        for trace_id, (offsets, is_uuid), length in zip(trace_ids, tpl.rid_offsets, tpl.rid_lengths, strict=True):
            if is_uuid:
                text = str(uuid.UUID(bytes=trace_id) if self.own_ids else uuid.UUID(bytes=rng.randbytes(16), version=4))
            else:
                text = "req_" + rng.randbytes((length - 4) // 2).hex().translate(_NOT_HEX)
            rids.append(text)
            for off in offsets:
                buf[off : off + length] = text.encode()
        if delta:
            for off in tpl.time_offsets:
                buf[off : off + 8] = (int.from_bytes(buf[off : off + 8], "little") + delta).to_bytes(8, "little")
        # Fresh searchable values: users come back (50k of them), orders and customers hardly repeat.
        values: list[dict[str, str]] = [
            {
                "user": str(rng.randrange(*USER_RANGE)),
                "order": str(rng.randrange(*ORDER_RANGE)),
                "customer": str(rng.randrange(*CUSTOMER_RANGE)),
            }
            for _ in trace_ids
        ]
        logs = bytearray(tpl.logs.body) if tpl.logs else bytearray()
        for ti, kind, in_spans, in_logs in tpl.values:
            digits = values[ti][kind].encode()
            for off in in_spans:
                buf[off : off + len(digits)] = digits
            for off in in_logs:
                logs[off : off + len(digits)] = digits
        log_marker = None
        if tpl.logs:
            lt = tpl.logs
            for ti, offsets in enumerate(lt.trace_offsets):
                for off in offsets:
                    logs[off : off + 16] = trace_ids[ti]
            for k, offsets in enumerate(lt.span_offsets):
                for off in offsets:
                    logs[off : off + 8] = span_ids[k]
            for ti, offsets in enumerate(lt.rid_offsets):
                rid = rids[ti].encode()
                for off in offsets:
                    logs[off : off + len(rid)] = rid
            if delta:
                for off in lt.time_offsets:
                    logs[off : off + 8] = (int.from_bytes(logs[off : off + 8], "little") + delta).to_bytes(8, "little")
            log_marker = (trace_ids[lt.marker[0]], span_ids[lt.marker[1]])
        pick = rng.randrange(len(trace_ids) - 1)  # not the last trace: it may be cut short to fill the body
        search = SearchRef(
            trace_ids[pick],
            span_ids[tpl.trace_slots[pick]],
            rids[pick],
            values[pick]["user"],
            values[pick]["order"],
            values[pick]["customer"],
            tpl.trace_starts[pick] + delta,
            tpl.failed[pick],
            tpl.routes[pick],
        )
        refs = [TraceRef(t, r, s + delta) for t, r, s in zip(trace_ids, rids, tpl.trace_starts, strict=True)]
        shorts = [r for r, (_, is_uuid) in zip(refs, tpl.rid_offsets, strict=True) if not is_uuid] or refs
        uuids = [r for r, (_, is_uuid) in zip(refs, tpl.rid_offsets, strict=True) if is_uuid] or refs
        return Body(
            bytes(buf),
            tpl.spans,
            (trace_ids[tpl.marker[0]], span_ids[tpl.marker[1]]),
            rng.choice(shorts),
            rng.choice(uuids),
            rng.choice(refs),
            bytes(logs),
            tpl.logs.records if tpl.logs else 0,
            log_marker,
            search,
            frozenset([*(v for d in values for v in d.values()), *rids]),
        )


# Short request IDs must stay non-hex (else they would parse as trace IDs): map hex digits onto other letters.
_NOT_HEX = str.maketrans("0123456789abcdef", "ghijkmnopqrstuvw")


def check_copy(workload: Workload, body: Body, index: int) -> None:
    """Decode one patched copy with the server's own decoder: every span, fresh IDs, shifted times."""
    from otel_corr.server._otlp import decode_spans, parse_traces

    spans, rejected, reason = decode_spans(parse_traces(body.data, "application/x-protobuf"))
    tpl_spans, _, _ = decode_spans(
        parse_traces(workload.templates[index % len(workload.templates)].body, "application/x-protobuf")
    )
    delta = (index // len(workload.templates)) * workload.body_dt * len(workload.templates)
    span_ids = {s.span_id for s in spans}
    ok = (
        len(spans) == SPANS_PER_BODY
        and not rejected
        and any(s.trace_id == body.marker[0] and s.span_id == body.marker[1] for s in spans)
        and all(
            a.start_ns == b.start_ns + delta and a.duration_ns == b.duration_ns
            for a, b in zip(spans, tpl_spans, strict=True)
        )
        and not {s.trace_id for s in spans} & {s.trace_id for s in tpl_spans}
        and not {s.span_id for s in spans} & {s.span_id for s in tpl_spans}
        and all(s.parent_id is None or s.parent_id in span_ids for s in spans)
        and any(s.request_id == body.short.request_id for s in spans)
        and all(
            a.attributes.keys() == b.attributes.keys()
            and (a.parent_id is None) == (b.parent_id is None)
            and len(a.events) == len(b.events)
            for a, b in zip(spans, tpl_spans, strict=True)
        )
    )
    if not ok:
        raise SystemExit(f"patched body {index} does not decode as expected ({rejected} rejected: {reason})")
    tpl = workload.templates[index % len(workload.templates)]
    left = leftover_values(body.data + body.logs, tpl.table, body.values)
    if left:
        raise SystemExit(f"patched body {index} still holds {left} of its template's searchable values")
    if tpl.logs:
        from otel_corr.server._otlp import decode_logs, parse_logs

        records, _, _ = decode_logs(parse_logs(body.logs, "application/x-protobuf"))
        by_span = {(s.trace_id, s.span_id): s for s in spans}
        rids = {(s.trace_id, s.request_id) for s in spans if s.request_id}
        inside = [by_span.get((r.trace_id, r.span_id)) for r in records if r.trace_id and r.span_id]
        ok = (
            len(records) == body.log_records == tpl.logs.records
            and len(inside) == len(records)
            and all(
                s is not None and s.start_ns <= r.time_ns <= s.start_ns + s.duration_ns
                for r, s in zip(records, inside, strict=True)
            )
            and all((r.trace_id, r.request_id) in rids for r in records)
            and body.pick is not None
            and any(body.pick.order in r.body or body.pick.user in r.body for r in records)
        )
        if not ok:
            raise SystemExit(f"patched log body {index} does not decode as expected")


# --------------------------------------------------------------------------- server


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


class Backend:
    """``python -m otel_corr serve`` on free loopback ports with a fresh store.

    ``code``: the checkout whose ``otel_corr`` runs (``python -m`` imports from its working
    directory); ``name``: the log file's, so two servers on one store keep their own; ``db``: a store
    file elsewhere (``tmp/traces.db`` by default), e.g. one kept between runs.
    """

    def __init__(
        self,
        tmp: Path,
        code: Path = REPO_DIR,
        name: str = "serve",
        ready_timeout: float = 60,
        db: Path | None = None,
        store: str | None = None,
    ) -> None:
        self.port, self.otlp_port, grpc_port = free_ports(3)
        self.db = db or tmp / "traces.db"
        self.store = store  # a ClickHouse store URL instead of the file (serve --store)
        self.log_path = tmp / f"{name}.log"
        self._log = open(self.log_path, "wb")
        cmd = [
            sys.executable,
            "-m",
            "otel_corr",
            "serve",
            "--port",
            str(self.port),
            "--otlp-http-port",
            str(self.otlp_port),
            "--otlp-grpc-port",
            str(grpc_port),
            *(["--store", store] if store else ["--db", str(self.db)]),
            "--retention",
            "0",
        ]
        env = child_env()
        if code != REPO_DIR:
            env["PYTHONPATH"] = str(code)
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=code, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"otel-corr serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                # With a ClickHouse store, a trace lookup (a keyed read, 404 for this ID): the reads across
                # shards (/api/services) may be what a commit under test lacks.
                status, _ = get(self.port, "/api/traces/" + "0" * 31 + "1" if store else "/api/services")
                if status == 200 or (store and status == 404):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"otel-corr serve not ready after {ready_timeout:g} s:\n{self.log()}")
            time.sleep(0.05)
        self.ready = time.perf_counter() - self.started  # Popen -> first answer (a store upgrade included)

    @property
    def ports(self) -> list[int]:
        return [self.port]

    @property
    def otlp_ports(self) -> list[int]:
        return [self.otlp_port]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def status(self) -> dict[str, int]:
        """VmRSS / VmHWM in kB."""
        out = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
        return out

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise SystemExit(f"otel-corr serve died with {self.proc.returncode}:\n{self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Poster:
    """POSTs bodies on one keep-alive connection; a 503 is retried after a short back-off."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.busy = 0

    def post(self, body: bytes, path: str = "/v1/traces") -> None:
        delay = 0.01
        while True:
            self.conn.request("POST", path, body, {"Content-Type": "application/x-protobuf"})
            resp = self.conn.getresponse()
            data = resp.read()
            if resp.status == 200:
                return
            if resp.status != 503:
                raise RuntimeError(f"POST {path}: HTTP {resp.status}: {data[:300]!r}")
            self.busy += 1
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def close(self) -> None:
        self.conn.close()


# --------------------------------------------------------------------------- ingest


class Committed(Markers):
    """Our own read-only view of the store, to see when a span is committed."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False)
        self._log_sql: str | None = None

    def has(self, marker: tuple[bytes, bytes]) -> bool:
        from otel_corr.server._store import _TRACE_ROWS

        row = self.conn.execute(f"SELECT 1 FROM spans s {_TRACE_ROWS} AND s.span_id = ?2", marker).fetchone()
        return row is not None

    def has_log(self, marker: tuple[bytes, bytes]) -> bool:
        if self._log_sql is None:
            # Format 6 finds a trace's records by ID ranges (log_ranges); format 5 (an older server, for
            # --upgrade-from) by its logs_trace index.
            ranges = self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'log_ranges'").fetchone()
            self._log_sql = (
                "SELECT 1 FROM log_ranges r CROSS JOIN logs l ON l.id BETWEEN r.first_id AND r.last_id"
                " WHERE r.trace_id = ?1 AND l.trace_id = ?1 AND l.span_id = ?2 LIMIT 1"
                if ranges
                else "SELECT 1 FROM logs WHERE trace_id = ?1 AND span_id = ?2 LIMIT 1"
            )
        return self.conn.execute(self._log_sql, marker).fetchone() is not None

    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM spans").fetchone()[0])


@dataclass
class IngestResult:
    label: str
    threads: int
    spans: int
    wall: float  # first POST -> last body committed
    post_wall: float  # first POST -> last response
    cpu: float  # server CPU seconds over the phase
    busy: int
    rss_kb: int
    logs: int = 0  # log records posted (their own phase, or with the spans in the fill)
    what: str = "spans"  # what the phase posts: "spans", "logs" or "both" (each body's spans, then its logs)
    store_cpu: float | None = None  # CPU seconds of the ClickHouse servers over the phase (--store clickhouse)

    @property
    def rate(self) -> float:
        """Spans per second (log records for a logs phase)."""
        return (self.logs if self.what == "logs" else self.spans) / self.wall


def _no_cpu() -> float | None:
    return None


def run_posts(
    backend: Backend | Replicas,
    committed: Committed | CHCommitted,
    label: str,
    threads: int,
    source: Callable[[int], Iterator[Body]],
    what: str = "spans",
    store_cpu: Callable[[], float | None] = _no_cpu,
) -> IngestResult:
    """``threads`` posting threads, thread ``i`` sending ``source(i)``; ends when every last body is committed.

    ``what``: each body's spans (``/v1/traces``), its log records (``/v1/logs``), or "both", spans first.
    """
    ports = backend.otlp_ports  # thread i posts to replica i mod replicas
    posters = [Poster(ports[i % len(ports)]) for i in range(threads)]
    last: list[Body | None] = [None] * threads
    counts = [0] * threads
    log_counts = [0] * threads
    errors: list[BaseException] = []
    gate = threading.Barrier(threads + 1)

    def work(i: int) -> None:
        try:
            gate.wait()
            for body in source(i):
                if what != "logs":
                    posters[i].post(body.data)
                    counts[i] += body.spans
                if what != "spans" and body.log_records:
                    posters[i].post(body.logs, "/v1/logs")
                    log_counts[i] += body.log_records
                last[i] = body
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    cpu0, store0 = backend.cpu_seconds(), store_cpu()
    gate.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    posted = time.perf_counter()
    if errors:
        backend.alive()
        raise SystemExit(f"{label}: {errors[0]!r}")
    if what != "logs":
        committed.wait([b.marker for b in last if b is not None], backend)
    if what != "spans":
        committed.wait([b.log_marker for b in last if b is not None and b.log_marker], backend, logs=True)
    done = time.perf_counter()
    cpu = backend.cpu_seconds() - cpu0
    store1 = store_cpu()
    for p in posters:
        p.close()
    return IngestResult(
        label,
        threads,
        sum(counts),
        done - t0,
        posted - t0,
        cpu,
        sum(p.busy for p in posters),
        backend.status().get("VmRSS", 0),
        sum(log_counts),
        what,
        None if store0 is None or store1 is None else store1 - store0,
    )


#: Bodies joined into one request by the ingest phases (``--bodies-per-request``): a collector's batch
#: is 4,096-16,384 spans (``collector/otel-corr-replicas.yaml``), the bodies here 512.
BODIES_PER_REQUEST = 1


def joined(bodies: Sequence[Body]) -> Body:
    """Several bodies as one request: OTLP requests concatenate (their repeated fields append)."""
    if len(bodies) == 1:
        return bodies[0]
    last = bodies[-1]
    return replace(
        last,
        data=b"".join(b.data for b in bodies),
        spans=sum(b.spans for b in bodies),
        logs=b"".join(b.logs for b in bodies),
        log_records=sum(b.log_records for b in bodies),
        log_marker=next((b.log_marker for b in reversed(bodies) if b.log_marker), None),
    )


def prebuilt(bodies: Sequence[Body], threads: int) -> Callable[[int], Iterator[Body]]:
    def source(i: int) -> Iterator[Body]:
        mine = bodies[i::threads]
        n = BODIES_PER_REQUEST
        return (joined(mine[k : k + n]) for k in range(0, len(mine), n))

    return source


class Samples:
    """Traces to look up later: a few per body, spread over the whole store."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.short: list[TraceRef] = []
        self.uuid: list[TraceRef] = []
        self.any: list[TraceRef] = []
        self.search: list[SearchRef] = []

    def add(self, body: Body) -> None:
        with self.lock:
            self.short.append(body.short)
            self.uuid.append(body.uuid)
            self.any.append(body.any)
            if body.pick is not None:
                self.search.append(body.pick)


def ingest_phase(
    backend: Backend | Replicas,
    committed: Committed | CHCommitted,
    workload: Workload,
    samples: Samples,
    label: str,
    first: int,
    n: int,
    senders: Sequence[int] = (1, 2),
    store_cpu: Callable[[], float | None] = _no_cpu,
) -> list[IngestResult]:
    """Sequential then two-thread POSTs of prebuilt bodies [first, first + 2n) (``senders``: threads per run)."""
    out = []
    for k, threads in enumerate(senders):
        start = first + k * n
        bodies = [workload.body(i) for i in range(start, start + n)]
        for b in bodies:
            samples.add(b)
        suffix = f"{threads} thread{'s' if threads > 1 else ''}"
        result = run_posts(
            backend, committed, f"{label}, {suffix}", threads, prebuilt(bodies, threads), store_cpu=store_cpu
        )
        print(f"  {result.label}: {result.spans} spans, {result.rate:,.0f} spans/s", file=sys.stderr, flush=True)
        out.append(result)
        if bodies[0].log_records:  # then the same traces' log records
            result = run_posts(
                backend, committed, f"{label}, logs, {suffix}", threads, prebuilt(bodies, threads), "logs", store_cpu
            )
            print(f"  {result.label}: {result.logs} records, {result.rate:,.0f}/s", file=sys.stderr, flush=True)
            out.append(result)
        del bodies
    return out


def fill(
    backend: Backend | Replicas,
    committed: Committed | CHCommitted,
    workload: Workload,
    samples: Samples,
    first: int,
    last: int,
    threads: int = 2,
    store_cpu: Callable[[], float | None] = _no_cpu,
) -> IngestResult:
    """Bodies [first, last) from two threads, made on the fly."""
    counter = iter(range(first, last))
    lock = threading.Lock()
    progress = {"spans": 0, "t": time.perf_counter(), "mark": 0}
    step = max(SPANS_PER_BODY, (last - first) * SPANS_PER_BODY // 10)

    def source(_: int) -> Iterator[Body]:
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            body = workload.body(index)
            samples.add(body)
            yield body
            with lock:
                progress["spans"] += body.spans
                if progress["spans"] - progress["mark"] >= step:
                    now = time.perf_counter()
                    rate = (progress["spans"] - progress["mark"]) / (now - progress["t"])
                    print(
                        f"  fill: {first * SPANS_PER_BODY + progress['spans']:,} spans sent "
                        f"({rate:,.0f} spans/s posted)",
                        file=sys.stderr,
                        flush=True,
                    )
                    progress["mark"], progress["t"] = progress["spans"], now

    return run_posts(backend, committed, f"fill, {threads} threads", threads, source, "both", store_cpu)


# --------------------------------------------------------------------------- queries


@dataclass
class Latency:
    label: str
    ms: list[float] = field(default_factory=list)
    misses: int = 0
    spans: int = 0

    def pct(self, q: float) -> float:
        data = sorted(self.ms)
        return data[min(len(data) - 1, int(round(q / 100 * (len(data) - 1))))]


def search_path(service: str, start_ns: int, end_ns: int) -> str:
    query = urllib.parse.urlencode(
        {
            "service": service,
            "tags": json.dumps(SEARCH_TAGS, separators=(",", ":")),
            "limit": "20",
            "start": str(start_ns // 1000),
            "end": str(end_ns // 1000),
        }
    )
    return f"/api/traces?{query}"


def _timed_get(conn: http.client.HTTPConnection | None, port: int, path: str, result: Latency, expect: bool) -> None:
    """One GET on ``conn`` (keep-alive), or on a new connection made and closed inside the timing."""
    t0 = time.perf_counter()
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", path)
    resp = conn.getresponse()
    data = resp.read()
    if own:
        conn.close()
    elapsed = (time.perf_counter() - t0) * 1000
    if resp.status != 200:
        result.misses += 1
        if resp.status != 404:
            raise SystemExit(f"GET {path}: HTTP {resp.status}: {data[:300]!r}")
        return
    payload = json.loads(data)
    traces = payload.get("data") or []
    if expect and not traces:
        result.misses += 1
    result.ms.append(elapsed)
    result.spans += sum(len(t["spans"]) for t in traces)


def run_queries(
    backend: Backend | Replicas,
    workload: Workload,
    samples: Samples,
    n: int,
    n_wide: int,
    warmup: int,
    failed: dict[str, str] | None = None,
) -> list[Latency]:
    """Each kind in turn; with several replicas, request k goes to replica k mod replicas (own connections).

    ``failed``: a kind whose request fails (HTTP 5xx: a read a commit under test lacks) is named there
    and skipped from then on; without it, the run stops.
    """
    rng = random.Random(11)
    span_range = workload.end_ns - workload.begin_ns
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=120) for port in backend.ports]
    turn = itertools.count()

    def timed_get(keep: bool, path: str, result: Latency, expect: bool, label: str) -> None:
        if failed is not None and label in failed:
            return
        k = next(turn) % len(conns)
        try:
            try:
                _timed_get(conns[k] if keep else None, backend.ports[k], path, result, expect)
            except (http.client.HTTPException, OSError):
                if failed is None:
                    raise
                # The server closed the connection after an error answer: once more on a new one.
                conns[k].close()
                conns[k] = http.client.HTTPConnection("127.0.0.1", backend.ports[k], timeout=120)
                _timed_get(conns[k] if keep else None, backend.ports[k], path, result, expect)
        except SystemExit as exc:
            if failed is None:
                raise
            failed[label] = str(exc).splitlines()[0][:240]
            conns[k].close()
            conns[k] = http.client.HTTPConnection("127.0.0.1", backend.ports[k], timeout=120)

    def window() -> tuple[int, int]:
        if span_range <= SEARCH_WINDOW_NS:
            return workload.begin_ns, workload.end_ns
        start = workload.begin_ns + rng.randrange(span_range - SEARCH_WINDOW_NS)
        return start, start + SEARCH_WINDOW_NS

    def trace_path() -> str:
        return "/api/traces/" + rng.choice(samples.any).trace_id.hex()

    # (row, path maker, a trace is expected, keep-alive)
    kinds: list[tuple[Latency, Callable[[], str], bool, bool]] = [
        (Latency("trace ID (/api/traces/<32 hex>)"), trace_path, True, True),
        (
            Latency("request ID, short (/api/traces/req_...)"),
            lambda: "/api/traces/" + rng.choice(samples.short).request_id,
            True,
            True,
        ),
        (
            Latency("search service+tag, 1 h window, limit 20"),
            lambda: search_path(SEARCH_SERVICE, *window()),
            False,
            True,
        ),
        (
            Latency("(extra) request ID, UUID (/api/traces/<uuid>)"),
            lambda: "/api/traces/" + rng.choice(samples.uuid).request_id,
            True,
            True,
        ),
        (Latency("(extra) trace ID, new connection per request"), trace_path, True, False),
    ]
    wide = Latency("(extra) search service+tag, whole range")
    for _ in range(warmup):
        for lat, make, expect, keep in kinds:
            timed_get(keep, make(), Latency(""), expect, lat.label)
    for i in range(n):
        for lat, make, expect, keep in kinds:
            timed_get(keep, make(), lat, expect, lat.label)
        if i < n_wide:
            path = search_path(SEARCH_SERVICE, workload.begin_ns, workload.end_ns)
            timed_get(True, path, wide, True, wide.label)
    for c in conns:
        c.close()
    return [k[0] for k in kinds] + ([wide] if n_wide else [])


# --------------------------------------------------------------------------- storage


@dataclass
class Storage:
    spans: int
    db_bytes: int
    wal_bytes: int
    checkpoint: tuple[int, int, int]
    objects: list[tuple[str, int, int]]  # (name, bytes, pages)
    detail_avg: float
    plans: list[tuple[str, list[str]]]
    logs: int = 0


def storage(backend: Backend, workload: Workload, samples: Samples) -> Storage:
    conn = sqlite3.connect(backend.db, timeout=60)
    try:
        checkpoint: tuple[int, int, int] = (1, 0, 0)
        for _ in range(50):
            checkpoint = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if checkpoint[0] == 0:
                break
            time.sleep(0.1)
        wal = Path(f"{backend.db}-wal")
        db_bytes, wal_bytes = backend.db.stat().st_size, wal.stat().st_size if wal.exists() else 0
        spans = int(conn.execute("SELECT count(*) FROM spans").fetchone()[0])
        logs = int(conn.execute("SELECT count(*) FROM logs").fetchone()[0])
        try:
            objects = [
                (str(r[0]), int(r[1]), int(r[2]))
                for r in conn.execute(
                    "SELECT name, sum(pgsize), count(*) FROM dbstat GROUP BY name ORDER BY sum(pgsize) DESC"
                )
            ]
        except sqlite3.OperationalError:
            objects = []
        detail_avg = float(conn.execute("SELECT avg(length(detail)) FROM spans").fetchone()[0] or 0)
        ref = samples.short[0]
        start = workload.end_ns - SEARCH_WINDOW_NS
        from otel_corr.server._store import _REQUEST_ROWS as REQUEST_ROWS
        from otel_corr.server._store import _TRACE_ROWS as TRACE_ROWS

        queries = [
            # The store's queries (otel_corr/server/_store.py: trace, traces_for_request, search).
            (
                "trace",
                f"SELECT * FROM spans s JOIN resources r ON r.id = s.resource_id {TRACE_ROWS}"
                " ORDER BY s.start_ns, s.rowid",
                (ref.trace_id,),
            ),
            (
                "request",
                f"SELECT t.trace_id, max(s.start_ns) m FROM {REQUEST_ROWS}"
                " WHERE s.request_id = ?1 GROUP BY t.trace_id ORDER BY m DESC LIMIT 20",
                (ref.request_id, None),
            ),
            (
                "search",
                "SELECT s.trace_id FROM spans s WHERE service = ? AND start_ns >= ? AND start_ns <= ?"
                " AND http_status = ? ORDER BY s.start_ns DESC",
                (SEARCH_SERVICE, start, workload.end_ns, 500),
            ),
        ]
        plans = [
            (name, [str(r[3]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params)])
            for name, sql, params in queries
        ]
    finally:
        conn.close()
    return Storage(spans, db_bytes, wal_bytes, checkpoint, objects, detail_avg, plans, logs)


# --------------------------------------------------------------------------- report


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else "PASS" if ok else "MISS"


def ingest_rows(results: Sequence[IngestResult]) -> list[list[str]]:
    rows = []
    for r in results:
        target = (TARGET_LOG_INGEST if r.what == "logs" else TARGET_INGEST) if r.label.startswith("fresh") else None
        items = r.logs if r.what == "logs" else r.spans
        rows.append(
            [
                r.label,
                f"{r.spans:,} + {r.logs:,} logs" if r.what == "both" else f"{items:,}",
                f"{r.wall:.2f}",
                f"{(r.wall - r.post_wall) * 1000:.0f}",
                f"{r.rate:,.0f}",
                f"{r.cpu / r.wall:.2f}",
                f"{items / r.cpu:,.0f}" if r.cpu else "-",
                f"{r.cpu / max(items, 1) * 1e6:.1f}",
                str(r.busy),
                f"{r.rss_kb / 1024:.0f}",
                f">= {target:,.0f}" if target else "-",
                verdict(r.rate >= target) if target else "-",
            ]
        )
    return rows


def latency_rows(results: Sequence[Latency]) -> list[list[str]]:
    rows = []
    for r in results:
        target = (
            None
            if r.label.startswith("(extra)")
            else (TARGET_SEARCH_P99 if r.label.startswith("search") else TARGET_LOOKUP_P99)
        )
        p99 = r.pct(99) if r.ms else float("nan")
        rows.append(
            [
                r.label,
                str(len(r.ms)),
                f"{r.pct(50):.1f}" if r.ms else "-",
                f"{r.pct(90):.1f}" if r.ms else "-",
                f"{p99:.1f}",
                f"{max(r.ms):.1f}" if r.ms else "-",
                f"{r.spans / max(len(r.ms), 1):.1f}",
                str(r.misses),
                f"<= {target:.0f}" if target else "-",
                verdict(p99 <= target) if target else "-",
            ]
        )
    return rows


def source_state() -> tuple[str, str]:
    """(what is measured, a key that changes when the server code does): commit, otel_corr/server tree, edits."""

    def git(*cmd: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO_DIR), *cmd], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit, tree = git("rev-parse", "--short", "HEAD"), git("rev-parse", "--short", "HEAD:otel_corr/server")
        dirty = git("status", "--porcelain", "--", "otel_corr/server")
    except (OSError, subprocess.SubprocessError):
        return "source: unknown (no git)", ""
    text = f"source: {commit} (otel_corr/server tree {tree})" + (
        " + uncommitted changes in otel_corr/server" if dirty else ""
    )
    return text, f"{tree} {dirty}"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def run(args: argparse.Namespace) -> None:
    n_phase = args.phase_bodies
    total_bodies = max(-(-args.spans // SPANS_PER_BODY), 4 * n_phase + 2)
    state, key = source_state()
    print("otel-corr serve backend benchmark")
    print(state)
    print(f"python {platform.python_version()} ({sys.executable}), {os.cpu_count()} CPUs, {platform.platform()}")
    print(package_versions(PACKAGES), f"SQLite {sqlite3.sqlite_version}")
    print(
        f"{total_bodies * SPANS_PER_BODY:,} spans in {total_bodies} bodies of {SPANS_PER_BODY} spans over "
        f"{args.hours:g} h; {args.pool} template bodies; {args.queries} queries of each kind "
        f"(+{args.warmup} warm-up); UUID request IDs {'= trace IDs (--own-ids)' if args.own_ids else 'random'};"
        f" load average at start {loadavg()}"
        + (
            f"; ingest phases: {BODIES_PER_REQUEST} bodies ({BODIES_PER_REQUEST * SPANS_PER_BODY:,} spans) a request"
            if BODIES_PER_REQUEST > 1
            else ""
        )
    )
    print(flush=True)
    t_start = time.perf_counter()
    workload = Workload(
        total_bodies * SPANS_PER_BODY, args.hours, args.pool, own_ids=args.own_ids, logs_per_span=args.logs_per_span
    )
    check_copy(workload, workload.body(len(workload.templates) + 3), len(workload.templates) + 3)
    print(f"  built {args.pool} templates in {time.perf_counter() - t_start:.1f} s", file=sys.stderr, flush=True)
    samples = Samples()
    with tempfile.TemporaryDirectory(prefix="otel-corr-bench-") as tmp:
        backend = Backend(Path(tmp))
        try:
            rss_start = backend.status()
            committed = Committed(backend.db)
            results = ingest_phase(backend, committed, workload, samples, "fresh store", 0, n_phase)
            fill_first, fill_last = 2 * n_phase, total_bodies - 2 * n_phase
            fill_result = fill(backend, committed, workload, samples, fill_first, fill_last)
            print(f"  fill: {fill_result.spans:,} spans in {fill_result.wall:.1f} s", file=sys.stderr, flush=True)
            results.append(fill_result)
            results += ingest_phase(
                backend, committed, workload, samples, f"at {fill_last * SPANS_PER_BODY // 1000:,}k", fill_last, n_phase
            )
            rss_after_ingest = backend.status()
            stored = committed.count()
            committed.conn.close()
            load_before_queries = loadavg()
            latencies = run_queries(backend, workload, samples, args.queries, args.wide_queries, args.warmup)
            load_before_search = loadavg()
            searches = (
                run_search(
                    backend.port,
                    samples,
                    workload.begin_ns,
                    workload.end_ns,
                    args.queries,
                    args.warmup,
                    args.wide_queries,
                    args.logs_per_span > 0,
                )
                if args.search
                else []
            )
            mem = backend.status()
            # Before --mixed and --heavy-posts: they add span bodies without their logs.
            disk = storage(backend, workload, samples)
            mixed = (
                mixed_phase(backend, workload, samples, total_bodies, n_phase, args.mixed_clients)
                if args.mixed
                else None
            )
            heavy = (
                heavy_phase(backend, workload, total_bodies + n_phase, args.heavy_posts, args.heavy_clients)
                if args.heavy_posts
                else None
            )
            backend.alive()
        finally:
            backend.stop()
        plans = search_plans(backend.db, samples, workload.begin_ns, workload.end_ns) if searches else []
        if args.keep_db:  # the server has closed the store: the WAL is checkpointed into the file
            shutil.copyfile(backend.db, args.keep_db)
            if Path(f"{backend.db}-wal").exists():
                shutil.copyfile(f"{backend.db}-wal", f"{args.keep_db}-wal")
    elapsed = time.perf_counter() - t_start

    print(
        "Ingest (OTLP/HTTP protobuf, 512-span bodies and their traces' log records; per s = spans (log records in a"
        " logs phase) / (first POST -> last body committed))"
    )
    print(
        render_table(
            [
                "phase",
                "spans (records)",
                "wall s",
                "commit lag ms",
                "per s",
                "server cores",
                "per CPU-s",
                "CPU µs each",
                "503s",
                "RSS MB",
                "target",
                "result",
            ],
            ingest_rows(results),
        )
    )
    print(
        "server cores = server CPU seconds / wall seconds (one process: event loop + SQLite writer thread); "
        "per CPU-s = spans (log records) per server CPU second; CPU µs each = its inverse.\n"
        "commit lag = last POST answered -> its spans visible to a reader."
    )
    print()
    print(
        f"Queries at {stored:,} spans (ms, client-side wall time per HTTP request incl. JSON; "
        f"load average {load_before_queries})"
    )
    print(
        render_table(
            ["query", "n", "p50", "p90", "p99", "max", "spans/resp", "misses", "p99 target", "result"],
            latency_rows(latencies),
        )
    )
    print(
        f"search: service={SEARCH_SERVICE}, tags={json.dumps(SEARCH_TAGS)}, limit=20; 1 h windows at random "
        "positions (Jaeger UI default lookback); misses = 404 or an empty result where a trace was expected."
    )
    if searches:
        print()
        print(
            f"Search at {stored:,} spans and {disk.logs:,} log records (GET /api/search?q=...&limit=20 unless marked;"
            f" ms, client-side wall time incl. JSON; load average {load_before_search})"
        )
        print(render_table(SEARCH_HEADERS, search_rows(searches)))
        print(
            "Each request takes a fresh stored sample (trace, its IDs, its user.id / order number); 1 h windows are"
            " since:/until: around the sample at a random position, 24 h = since:/until: over the whole data.\n"
            "results = traces per response; misses = the sample's trace not among them (or not opened) where it must"
            " be; 503 = over the query budget.  Targets: issue 18 (PASS/MISS for information only)."
        )
    if mixed is not None:
        print_mixed(results[-1], latencies, mixed, args.mixed_clients)
    if plans:
        print()
        print_plans(plans)
    if heavy is not None:
        print_heavy(heavy, stored, args.heavy_clients)
    keep_alive, fresh = latencies[0], next(r for r in latencies if "new connection" in r.label)
    if keep_alive.ms and fresh.ms and keep_alive.pct(50) > max(3 * fresh.pct(50), fresh.pct(50) + 20):
        print(
            f"note: the same lookup takes {keep_alive.pct(50):.1f} ms on a kept-alive connection but "
            f"{fresh.pct(50):.1f} ms on a new one: responses on a reused connection wait for a delayed ACK "
            "(Nagle), i.e. the server's sockets lack TCP_NODELAY."
        )
    print()
    per_span = (disk.db_bytes + disk.wal_bytes) / max(disk.spans, 1)
    peak = mem.get("VmHWM", 0) / 1024
    rss = mem.get("VmRSS", 0) / 1024
    print("Storage and memory")
    print(
        render_table(
            ["measure", "value", "target", "result"],
            [
                ["spans stored", f"{disk.spans:,}", "-", "-"],
                ["log records stored", f"{disk.logs:,}", "-", "-"],
                [
                    "database + WAL after checkpoint(TRUNCATE)",
                    f"{(disk.db_bytes + disk.wal_bytes) / 1e6:,.1f} MB",
                    "-",
                    "-",
                ],
                [
                    "bytes per span (logs and every index included)",
                    f"{per_span:,.0f}",
                    f"<= {TARGET_BYTES_PER_SPAN:.0f}",
                    verdict(per_span <= TARGET_BYTES_PER_SPAN),
                ],
                ["server VmRSS at start (empty store)", f"{rss_start.get('VmRSS', 0) / 1024:.0f} MB", "-", "-"],
                ["server VmRSS after ingest", f"{rss_after_ingest.get('VmRSS', 0) / 1024:.0f} MB", "-", "-"],
                [
                    "server VmRSS after queries",
                    f"{rss:.0f} MB",
                    f"<= {TARGET_RSS_MB:.0f} MB",
                    verdict(rss <= TARGET_RSS_MB),
                ],
                [
                    "server VmHWM (peak RSS)",
                    f"{peak:.0f} MB",
                    f"<= {TARGET_RSS_MB:.0f} MB",
                    verdict(peak <= TARGET_RSS_MB),
                ],
            ],
        )
    )
    print(f"checkpoint (busy, log, checkpointed) = {disk.checkpoint}; mean detail column {disk.detail_avg:.0f} B/span")
    if disk.objects:
        print()
        print("Size by table/index (dbstat; every object, B/span = its bytes / spans stored)")
        print(
            render_table(
                ["object", "MB", "B/span", "B/log record", "share"],
                [
                    [
                        name,
                        f"{size / 1e6:.1f}",
                        f"{size / max(disk.spans, 1):.1f}",
                        f"{size / disk.logs:.1f}" if disk.logs else "-",
                        f"{100 * size / max(disk.db_bytes, 1):.1f}%",
                    ]
                    for name, size, _ in disk.objects
                ],
            )
        )
    print()
    print("Query plans (EXPLAIN QUERY PLAN of the SQL in otel_corr/server/_store.py)")
    for name, plan in disk.plans:
        print(f"  {name}: " + " | ".join(plan))
    print()
    print(f"total {elapsed:.0f} s; load average at end {loadavg()}")
    now, now_key = source_state()
    if now_key != key:
        print(f"\nwarning: otel_corr/server changed during the run (started at '{state}', now '{now}')")


# --------------------------------------------------------------------------- mixed: ingest under query load


def mixed_phase(
    backend: Backend, workload: Workload, samples: Samples, first: int, n: int, clients: int
) -> tuple[IngestResult, list[Latency]]:
    """Two posting threads send ``n`` more bodies while ``clients`` threads run the three target queries in a loop.

    Each client has its own keep-alive connection and cycles trace ID, short request ID, 1 h search
    (the rows of the idle query table) until the last body is committed.
    """
    rng = random.Random(13)
    span_range = workload.end_ns - workload.begin_ns
    kinds = [
        Latency("trace ID (/api/traces/<32 hex>)"),
        Latency("request ID, short (/api/traces/req_...)"),
        Latency("search service+tag, 1 h window, limit 20"),
    ]
    lock = threading.Lock()
    done = threading.Event()
    errors: list[BaseException] = []

    def path(kind: int) -> str:
        with lock:
            if kind == 0:
                return "/api/traces/" + rng.choice(samples.any).trace_id.hex()
            if kind == 1:
                return "/api/traces/" + rng.choice(samples.short).request_id
            start = workload.begin_ns + rng.randrange(max(1, span_range - SEARCH_WINDOW_NS))
        return search_path(SEARCH_SERVICE, start, start + SEARCH_WINDOW_NS)

    def client() -> None:
        own = [Latency(k.label) for k in kinds]
        conn = http.client.HTTPConnection("127.0.0.1", backend.port, timeout=120)
        try:
            while not done.is_set():
                for i, lat in enumerate(own):
                    _timed_get(conn, backend.port, path(i), lat, i < 2)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            conn.close()
            with lock:
                for total, part in zip(kinds, own, strict=True):
                    total.ms += part.ms
                    total.misses += part.misses
                    total.spans += part.spans

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    committed = Committed(backend.db)
    try:
        bodies = [workload.body(i) for i in range(first, first + n)]
        result = run_posts(
            backend, committed, f"under query load, 2 threads + {clients} query clients", 2, prebuilt(bodies, 2)
        )
    finally:
        done.set()
        for t in threads:
            t.join(120)
        committed.conn.close()
    if errors:
        raise SystemExit(f"mixed: {errors[0]!r}")
    print(f"  {result.label}: {result.spans} spans, {result.rate:,.0f} spans/s", file=sys.stderr, flush=True)
    return result, kinds


def print_mixed(
    alone: IngestResult, idle: Sequence[Latency], mixed: tuple[IngestResult, list[Latency]], clients: int
) -> None:
    result, loaded = mixed
    print()
    print(f"Mixed: ingest from 2 threads while {clients} clients query (same store, after the idle queries)")
    rows = []
    for lat in loaded:
        before = next(r for r in idle if r.label == lat.label)
        target = TARGET_SEARCH_P99 if lat.label.startswith("search") else TARGET_LOOKUP_P99
        p99 = lat.pct(99) if lat.ms else float("nan")
        rows.append(
            [
                lat.label,
                str(len(lat.ms)),
                f"{before.pct(99):.1f}",
                f"{lat.pct(50):.1f}" if lat.ms else "-",
                f"{p99:.1f}",
                f"{p99 / before.pct(99):.2f}x" if lat.ms else "-",
                str(lat.misses),
                f"<= {target:.0f}",
                verdict(p99 <= target),
            ]
        )
    print(
        render_table(
            [
                "query",
                "n under load",
                "idle p99",
                "load p50",
                "load p99",
                "p99 load/idle",
                "misses",
                "target",
                "result",
            ],
            rows,
        )
    )
    print(
        render_table(
            ["ingest (2 threads)", "spans", "spans/s", "server cores", "spans/CPU-s", "503s"],
            [
                [
                    label,
                    f"{r.spans:,}",
                    f"{r.rate:,.0f}",
                    f"{r.cpu / r.wall:.2f}",
                    f"{r.spans / max(r.cpu, 1e-9):,.0f}",
                    str(r.busy),
                ]
                for label, r in (("without queries (" + alone.label + ")", alone), ("with queries", result))
            ],
        )
    )
    print(f"ingest rate with queries / without: {result.rate / alone.rate:.2f}")


# --------------------------------------------------------------------------- heavy: POST under the heaviest queries


def heavy_paths(workload: Workload) -> list[tuple[str, str]]:
    """The two heaviest queries, over the whole stored range: dependencies, and a tag search that matches nothing."""
    end_ms = workload.end_ns // 1_000_000 + 1
    lookback_ms = end_ms - workload.begin_ns // 1_000_000 + 1
    search = urllib.parse.urlencode(
        {
            "service": SEARCH_SERVICE,
            "tags": json.dumps(HEAVY_TAGS, separators=(",", ":")),
            "limit": "20",
            "start": str(workload.begin_ns // 1000),
            "end": str(workload.end_ns // 1000 + 1),
        }
    )
    return [
        ("dependencies, whole range", f"/api/dependencies?endTs={end_ms}&lookback={lookback_ms}"),
        ("tag search matching nothing, whole range", f"/api/traces?{search}"),
    ]


@dataclass
class Heavy:
    idle: list[float]  # POST ms, nothing else running
    loaded: list[float]  # POST ms while the query clients run
    queries: dict[str, Latency]  # per query: ms of the 200s, misses = 503s (over the query budget)


def post_times(backend: Backend, bodies: Sequence[Body]) -> list[float]:
    """One sender, one keep-alive connection: ms per POST as the sender sees it (503 retries included)."""
    poster = Poster(backend.otlp_port)
    out = []
    try:
        for body in bodies:
            t0 = time.perf_counter()
            poster.post(body.data)
            out.append((time.perf_counter() - t0) * 1000)
    finally:
        poster.close()
    return out


def heavy_phase(backend: Backend, workload: Workload, first: int, n: int, clients: int) -> Heavy:
    """``n`` POSTs alone, then ``n`` more while ``clients`` threads loop over the heaviest queries."""
    bodies = [workload.body(i) for i in range(first, first + 2 * n)]
    idle = post_times(backend, bodies[:n])
    paths = heavy_paths(workload)
    queries = {label: Latency(label) for label, _ in paths}
    done = threading.Event()
    errors: list[BaseException] = []
    lock = threading.Lock()
    started = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        label, path = paths[i % len(paths)]
        own = Latency(label)
        conn = http.client.HTTPConnection("127.0.0.1", backend.port, timeout=300)
        try:
            started.wait()
            while not done.is_set():
                t0 = time.perf_counter()
                conn.request("GET", path)
                resp = conn.getresponse()
                data = resp.read()
                if resp.status == 503:
                    own.misses += 1
                elif resp.status == 200:
                    own.ms.append((time.perf_counter() - t0) * 1000)
                else:
                    raise RuntimeError(f"GET {path}: HTTP {resp.status}: {data[:300]!r}")
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            conn.close()
            with lock:
                queries[label].ms += own.ms
                queries[label].misses += own.misses

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.5)  # the queries are running before the first POST
    try:
        loaded = post_times(backend, bodies[n:])
    finally:
        done.set()
        for t in threads:
            t.join(300)
    if errors:
        raise SystemExit(f"heavy: {errors[0]!r}")
    return Heavy(idle, loaded, queries)


def _pct(values: Sequence[float], q: float) -> float:
    data = sorted(values)
    return data[min(len(data) - 1, int(round(q / 100 * (len(data) - 1))))] if data else float("nan")


def print_heavy(heavy: Heavy, stored: int, clients: int) -> None:
    idle99, loaded99 = _pct(heavy.idle, 99), _pct(heavy.loaded, 99)
    ratio = loaded99 / idle99
    ok = loaded99 <= TARGET_POST_UNDER_QUERIES_P99 and ratio <= TARGET_POST_RATIO
    print()
    print(
        f"OTLP POST latency while {clients} clients run the heaviest queries ({stored:,} spans; one sender, "
        "512-span protobuf bodies, ms until the acknowledgement)"
    )
    print(
        render_table(
            ["POST", "n", "p50", "p90", "p99", "max", "target", "result"],
            [
                ["idle", str(len(heavy.idle)), *(f"{_pct(heavy.idle, q):.1f}" for q in (50, 90, 99, 100)), "-", "-"],
                [
                    f"while {clients} clients query",
                    str(len(heavy.loaded)),
                    *(f"{_pct(heavy.loaded, q):.1f}" for q in (50, 90, 99, 100)),
                    f"p99 <= {TARGET_POST_UNDER_QUERIES_P99:.0f} and <= {TARGET_POST_RATIO:g}x idle",
                    verdict(ok),
                ],
            ],
        )
    )
    print(f"POST p99 under queries / idle: {ratio:.2f}x")
    print(
        render_table(
            ["query (looped by its client)", "answered 200", "p50 ms", "max ms", "503 over budget"],
            [
                [
                    lat.label,
                    str(len(lat.ms)),
                    f"{_pct(lat.ms, 50):.0f}" if lat.ms else "-",
                    f"{max(lat.ms):.0f}" if lat.ms else "-",
                    str(lat.misses),
                ]
                for lat in heavy.queries.values()
            ],
        )
    )
    print(f"tag search: service={SEARCH_SERVICE}, tags={json.dumps(HEAVY_TAGS)}, limit=20; serve's query budget 5 s.")


# --------------------------------------------------------------------------- ack cost


def ack_cost(args: argparse.Namespace) -> None:
    """Fresh stores, acknowledged after commit, 1/2/4 senders, ``--ack-reps`` rounds; medians."""
    n = args.phase_bodies
    senders = (1, 2, 4)
    print("otel-corr serve: ingest when every body is acknowledged after its commit")
    print(source_state()[0])
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs; load average at start {loadavg()}")
    workload = Workload(len(senders) * n * SPANS_PER_BODY, 1, args.pool)
    bodies = [workload.body(i) for i in range(len(senders) * n)]
    rates: dict[int, list[IngestResult]] = {}
    for rep in range(args.ack_reps):
        with tempfile.TemporaryDirectory(prefix="otel-corr-ack-") as tmp:
            backend = Backend(Path(tmp))
            committed = Committed(backend.db)
            try:
                for k, threads in enumerate(senders):
                    phase = bodies[k * n : (k + 1) * n]
                    label = f"{threads} senders"
                    r = run_posts(backend, committed, label, threads, prebuilt(phase, threads))
                    rates.setdefault(threads, []).append(r)
                    print(f"  round {rep + 1}: {label}: {r.rate:,.0f} spans/s", file=sys.stderr, flush=True)
            finally:
                committed.conn.close()
                backend.stop()

    def median(results: list[IngestResult], value: Callable[[IngestResult], float]) -> float:
        values = sorted(value(r) for r in results)
        return values[len(values) // 2]

    rows = []
    for threads in senders:
        after = rates[threads]
        a = median(after, lambda r: r.rate)
        rows.append([str(threads), f"{a:,.0f}", f"{median(after, lambda r: r.spans / max(r.cpu, 1e-9)):,.0f}"])
    print()
    print(
        f"Fresh store, {n} bodies of {SPANS_PER_BODY} spans per row, median of {args.ack_reps} rounds "
        "(spans/s = first POST -> last body committed)"
    )
    print(
        render_table(
            ["senders", "ack after commit spans/s", "spans/CPU-s"],
            rows,
        )
    )
    print(f"load average at end {loadavg()}")


# --------------------------------------------------------------------------- store upgrade


def upgrade_time(args: argparse.Namespace) -> None:
    """The first start of this checkout's server on a store an older checkout (``--upgrade-from``) wrote."""
    old = args.upgrade_from.resolve()
    n_bodies = -(-args.spans // SPANS_PER_BODY)

    def version(db: Path) -> int:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()

    print("otel-corr serve: first start on a store written by an older checkout (the format upgrade)")
    print(source_state()[0], f"; older code: {old}")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs; load average at start {loadavg()}")
    workload = Workload(n_bodies * SPANS_PER_BODY, args.hours, args.pool, logs_per_span=args.logs_per_span)
    samples = Samples()
    with tempfile.TemporaryDirectory(prefix="otel-corr-upgrade-") as tmp:
        first = Backend(Path(tmp), code=old, name="old")
        try:
            committed = Committed(first.db)
            fill(first, committed, workload, samples, 0, n_bodies)
            spans, logs = committed.count(), int(committed.conn.execute("SELECT count(*) FROM logs").fetchone()[0])
            committed.conn.close()
        finally:
            first.stop()
        before, size_before = version(first.db), first.db.stat().st_size
        upgraded = Backend(Path(tmp), name="upgrade", ready_timeout=3600)
        cpu = upgraded.cpu_seconds()
        found = None
        try:
            ref = samples.search[len(samples.search) // 2]
            status, data = get(upgraded.port, "/api/search?" + urllib.parse.urlencode({"q": ref.request_id}))
            found = status == 200 and json.loads(data).get("opened") == ref.trace_id.hex()
        finally:
            upgraded.stop()
        after, size_after = version(upgraded.db), upgraded.db.stat().st_size
        again = Backend(Path(tmp), name="again")  # the same start with nothing to upgrade
        again.stop()
    extra = upgraded.ready - again.ready
    print(
        render_table(
            ["measure", "value"],
            [
                ["spans, log records written by the older code", f"{spans:,}, {logs:,}"],
                ["store format before -> after", f"{before} -> {after}"],
                ["file size before -> after (MB)", f"{size_before / 1e6:,.1f} -> {size_after / 1e6:,.1f}"],
                ["first start, Popen -> first answer (s)", f"{upgraded.ready:.1f}"],
                ["server CPU s at that answer", f"{cpu:.1f}"],
                ["next start, nothing to upgrade (s)", f"{again.ready:.1f}"],
                ["upgrade (difference, s)", f"{extra:.1f}"],
                ["upgrade s per 100k spans (+ their logs)", f"{extra / max(spans, 1) * 1e5:.2f}"],
                ["a request ID opens its trace after the upgrade", "yes" if found else "NO"],
            ],
        )
    )
    print(f"load average at end {loadavg()}")


# --------------------------------------------------------------------------- profile


def profile(args: argparse.Namespace) -> None:
    """The ingest path in-process: protobuf parse, span_rows, the store's write, then cProfile of all three."""
    from otel_corr.server._otlp import parse_spans, span_rows
    from otel_corr.server._store import Store, _Item

    n = args.profile_bodies
    workload = Workload(n * SPANS_PER_BODY, 1, min(args.pool, n))
    bodies = [workload.body(i).data for i in range(n)]
    spans_total = n * SPANS_PER_BODY
    with tempfile.TemporaryDirectory(prefix="otel-corr-prof-") as tmp:
        store = Store(Path(tmp) / "p.db")
        t0 = time.perf_counter()
        parsed = [parse_spans(b, "application/x-protobuf") for b in bodies]
        t1 = time.perf_counter()
        decoded = [span_rows(p, store.resource_id) for p in parsed]
        t2 = time.perf_counter()
        store._write(
            [_Item(d.rows, d.resources, []) for d in decoded[: n // 2]]
        )  # the writer's own method, on this thread
        t3 = time.perf_counter()
        for d in decoded[n // 2 :]:
            store._write([_Item(d.rows, d.resources, [])])
        t4 = time.perf_counter()
        half = (n // 2) * SPANS_PER_BODY
        rest = spans_total - half
        print(f"in-process ingest path, {spans_total:,} spans ({n} bodies), µs per span")
        print(
            render_table(
                ["step", "µs/span", "spans/s if alone"],
                [
                    [
                        "parse_spans (both views of the body)",
                        f"{(t1 - t0) / spans_total * 1e6:.2f}",
                        f"{spans_total / (t1 - t0):,.0f}",
                    ],
                    [
                        "span_rows (protobuf -> SQL row tuples)",
                        f"{(t2 - t1) / spans_total * 1e6:.2f}",
                        f"{spans_total / (t2 - t1):,.0f}",
                    ],
                    [
                        f"Store._write, {n // 2} bodies in one transaction",
                        f"{(t3 - t2) / half * 1e6:.2f}",
                        f"{half / (t3 - t2):,.0f}",
                    ],
                    [
                        "Store._write, one body per transaction",
                        f"{(t4 - t3) / rest * 1e6:.2f}",
                        f"{rest / (t4 - t3):,.0f}",
                    ],
                ],
            )
        )
        del parsed, decoded
        tracemalloc.start()
        held = [span_rows(parse_spans(b, "application/x-protobuf"), store.resource_id) for b in bodies[:4]]
        held_bytes = tracemalloc.get_traced_memory()[0] / len(held)
        tracemalloc.stop()
        del held
        slots = inspect.signature(Store.__init__).parameters["queue_size"].default
        print(
            f"memory held by one queued body: {held_bytes / 2**10:,.0f} KiB decoded ({held_bytes / SPANS_PER_BODY:,.0f}"
            f" B/span) vs {len(bodies[0]) / 2**10:,.0f} KiB as received; a full queue ({slots} bodies) holds"
            f" {held_bytes * slots / 2**20:,.0f} MiB of decoded spans"
        )
        prof = cProfile.Profile()
        prof.enable()
        for b in bodies:
            batch = span_rows(parse_spans(b, "application/x-protobuf"), store.resource_id)
            store._write([_Item(batch.rows, batch.resources, [])])
        prof.disable()
        store.close()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(18)
    print()
    print("cProfile of parse + decode + write (by own time)")
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:6000])


# --------------------------------------------------------------------------- --store clickhouse: replicas on a cluster

# Issue 21's targets (the ClickHouse column; the SQLite column is the baseline the ratios divide by).
CH_TARGET_INGEST = 40_000.0  # spans/s per replica
CH_TARGET_LOOKUP_P99 = 50.0  # ms, trace ID and request ID
CH_TARGET_SEARCH_P99 = 50.0  # ms, service + 1 h + attribute equality
CH_TARGET_TEXT_P99 = 150.0  # ms, log text over 24 h (/api/search)
CH_TARGET_BYTES = 250.0  # per span, every copy and index (system.parts)
# The /api/search kinds timed on both stores (issue 21 sets targets for the log text over 24 h and the
# attribute searches; the lone request ID checks that find opens a trace on each store).
COMPARE_SEARCH = (
    "ID: request ID, req_...",
    "attr rare: user.id=U, 1 h",
    "Jaeger tags user.id=U, 1 h (/api/traces)",
)


class Replicas:
    """Several ``serve`` processes on one store, posted to and queried round-robin (one ``Backend`` for SQLite)."""

    def __init__(self, backends: Sequence[Backend]) -> None:
        self.backends = list(backends)

    @property
    def ports(self) -> list[int]:
        return [b.port for b in self.backends]

    @property
    def otlp_ports(self) -> list[int]:
        return [b.otlp_port for b in self.backends]

    def cpu_seconds(self) -> float:
        return sum(b.cpu_seconds() for b in self.backends)

    def alive(self) -> None:
        for b in self.backends:
            b.alive()

    def status(self) -> dict[str, int]:
        """VmRSS / VmHWM in kB, summed over the replicas."""
        out: dict[str, int] = {}
        for b in self.backends:
            for key, value in b.status().items():
                out[key] = out.get(key, 0) + value
        return out

    def stop(self) -> None:
        for b in self.backends:
            b.stop()


@dataclass
class StoreRun:
    """One store's figures on the comparison workload."""

    name: str
    replicas: int
    ingest: list[IngestResult]
    latencies: list[Latency]
    searches: list[Any]  # _search_workload.Kind
    failed: dict[str, str]  # query kind -> why it could not be timed (a read not implemented at this commit)
    spans: int
    logs: int
    bytes_total: int
    bytes_without_logs: int | None
    objects: list[tuple[str, int, str]]  # (table or index, bytes, detail)
    rss_kb: int
    loads: dict[str, str]
    version: str = ""
    breakdown: list[tuple[str, list[float]]] = field(default_factory=list)  # in-process ms per store call


def compare_search(
    servers: Replicas, samples: Samples, workload: Workload, n: int, warmup: int, logs: bool, budget_s: float = 0
) -> tuple[list[Any], dict[str, str]]:
    """The log-text kinds over 24 h and the attribute searches of ``search_kinds``, round-robin over the replicas.

    A kind whose request fails (HTTP 5xx other than the budget's 503: a read not implemented yet) is
    named and left out, so the figures that exist are still measured.  ``budget_s`` (0: none): no new
    round of requests (one of each kind) after that many seconds of timed requests (the table's n says
    how many were made).
    """
    from _search_workload import search_kinds, timed_search

    rng = random.Random(17)
    kinds = [
        k
        for k in search_kinds(workload.begin_ns, workload.end_ns, logs)
        if k.label in COMPARE_SEARCH or k.label.startswith("text ")
    ]
    pools = {"search": samples.search, "uuid": samples.uuid, "short": samples.short}
    rare = [r for r in samples.search if "{order_id}" in r.route or r.route.endswith("checkout")] or samples.search
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=300) for port in servers.ports]
    failed: dict[str, str] = {}
    turn = 0
    started = time.monotonic()
    try:
        for i in range(warmup + n):
            if i == warmup:
                started = time.monotonic()
            elif budget_s and i > warmup and time.monotonic() - started > budget_s:
                break
            for kind in kinds:
                if kind.label in failed:
                    continue
                pool = rare if kind.label.startswith("text rare") else pools[kind.samples]
                k = turn % len(conns)
                turn += 1
                ref = rng.choice(pool)
                for attempt in (1, 2):
                    try:
                        timed_search(conns[k], kind, ref, rng, record=i >= warmup)
                        break
                    except (http.client.HTTPException, OSError) as exc:
                        # The server closed the connection after an error answer (a warm-up request's
                        # 500 is not looked at): once more on a new connection.
                        conns[k].close()
                        conns[k] = http.client.HTTPConnection("127.0.0.1", servers.ports[k], timeout=300)
                        if attempt == 2:
                            failed[kind.label] = f"{exc!r}"[:240]
                    except SystemExit as exc:
                        failed[kind.label] = str(exc).splitlines()[0][:240]
                        conns[k].close()
                        conns[k] = http.client.HTTPConnection("127.0.0.1", servers.ports[k], timeout=300)
                        break
    finally:
        for c in conns:
            c.close()
    return kinds, failed


def measure_store(
    args: argparse.Namespace, workload: Workload, tmp: Path, cluster: Any | None, total_bodies: int
) -> StoreRun:
    """Ingest, fill, queries, search and storage on one store: SQLite (``cluster`` None) or the cluster."""
    n_phase = args.phase_bodies
    replicas = 1 if cluster is None else args.replicas
    threads = args.senders * replicas
    loads = {"start": loadavg()}
    tmp.mkdir(parents=True, exist_ok=True)
    samples = Samples()
    committed: Committed | CHCommitted
    store_cpu: Callable[[], float | None] = _no_cpu
    if cluster is None:
        servers = Replicas([Backend(tmp)])
        committed = Committed(servers.backends[0].db)
        name = "SQLite, 1 serve"
    else:
        cluster.fresh_database()
        servers = Replicas(
            [Backend(tmp, name=f"serve{i + 1}", store=cluster.replica_url(i, args.multi_host)) for i in range(replicas)]
        )
        committed = CHCommitted(cluster)
        store_cpu = cluster.cpu_seconds
        name = f"ClickHouse {len(cluster.shards)} shards, {replicas} serve"
    print(f"  {name}: started", file=sys.stderr, flush=True)
    try:
        rss_start = servers.status()
        senders = (replicas, threads) if args.senders > 1 else (replicas,)
        results = ingest_phase(servers, committed, workload, samples, "fresh store", 0, n_phase, senders, store_cpu)
        fill_first = len(senders) * n_phase
        fill_last = total_bodies - len(senders) * n_phase
        fill_result = fill(servers, committed, workload, samples, fill_first, fill_last, threads, store_cpu)
        print(f"  fill: {fill_result.spans:,} spans in {fill_result.wall:.1f} s", file=sys.stderr, flush=True)
        results.append(fill_result)
        label = f"at {fill_last * SPANS_PER_BODY // 1000:,}k"
        results += ingest_phase(servers, committed, workload, samples, label, fill_last, n_phase, senders, store_cpu)
        del rss_start
        loads["queries"] = loadavg()
        failed: dict[str, str] = {}
        latencies = run_queries(servers, workload, samples, args.queries, args.wide_queries, args.warmup, failed)
        loads["search"] = loadavg()
        searches, failed_search = (
            compare_search(
                servers,
                samples,
                workload,
                args.search_queries or args.queries,
                args.warmup,
                args.logs_per_span > 0,
                args.search_budget,
            )
            if args.search
            else ([], {})
        )
        failed.update(failed_search)
        rss = servers.status().get("VmRSS", 0)
        breakdown: list[tuple[str, list[float]]] = []
        if cluster is None:
            disk = storage(servers.backends[0], workload, samples)
            spans, logs = disk.spans, disk.logs
            total = disk.db_bytes + disk.wal_bytes
            without: int | None = None
            objects = [(o, size, f"{pages:,} pages") for o, size, pages in disk.objects]
            version = f"SQLite {sqlite3.sqlite_version}"
        else:
            time.sleep(args.settle)  # background merges of the last parts (system.parts counts active parts)
            found = ch_parts(cluster)
            spans, logs, total = found.spans, found.logs, found.total
            without = total - found.of("logs")
            objects = [(t, size, f"{rows:,} rows, {count} parts") for t, size, rows, count in found.tables]
            version = f"ClickHouse {cluster.version}"
            breakdown = lookup_breakdown(
                cluster, samples.short, min(args.queries, 100), (workload.begin_ns, workload.end_ns)
            )
        servers.alive()
    finally:
        committed.close() if isinstance(committed, CHCommitted) else committed.conn.close()
        servers.stop()
    loads["end"] = loadavg()
    return StoreRun(
        name,
        replicas,
        results,
        latencies,
        searches,
        failed,
        spans,
        logs,
        total,
        without,
        objects,
        rss,
        loads,
        version,
        breakdown,
    )


def _p99(rows: Sequence[Any], label: str) -> float | None:
    for r in rows:
        if r.label == label:
            ms = r.ms or []
            return _pct(ms, 99) if ms else None
    return None


def _ingest(run: StoreRun, prefix: str, what: str) -> IngestResult | None:
    """The run's phase with the most senders whose label starts with ``prefix`` (spans or logs)."""
    found = [r for r in run.ingest if r.label.startswith(prefix) and r.what == what]
    return max(found, key=lambda r: r.threads) if found else None


def print_store_run(run: StoreRun) -> None:
    print(f"== {run.name} ({run.version}); load average {run.loads}")
    rows = []
    for r in run.ingest:
        items = r.logs if r.what == "logs" else r.spans
        rows.append(
            [
                r.label,
                f"{r.spans:,} + {r.logs:,} logs" if r.what == "both" else f"{items:,}",
                f"{r.wall:.2f}",
                f"{r.rate:,.0f}",
                f"{r.rate / run.replicas:,.0f}",
                f"{r.cpu / r.wall / run.replicas:.2f}",
                f"{r.cpu / max(items, 1) * 1e6:.1f}",
                "-" if r.store_cpu is None else f"{r.store_cpu / r.wall:.2f}",
                "-" if r.store_cpu is None else f"{r.store_cpu / max(items, 1) * 1e6:.1f}",
                str(r.busy),
            ]
        )
    print(
        render_table(
            [
                "phase",
                "spans (records)",
                "wall s",
                "per s",
                "per s per replica",
                "cores per replica",
                "serve CPU µs each",
                "ClickHouse cores",
                "ClickHouse CPU µs each",
                "503s",
            ],
            rows,
        )
    )
    print(
        render_table(
            ["query", "n", "p50", "p90", "p99", "max", "spans or results / resp", "misses"],
            [
                [
                    r.label,
                    str(len(r.ms)),
                    *(f"{r.pct(q):.1f}" if r.ms else "-" for q in (50, 90, 99)),
                    f"{max(r.ms):.1f}" if r.ms else "-",
                    f"{r.spans / max(len(r.ms), 1):.1f}",
                    str(r.misses),
                ]
                for r in run.latencies
            ]
            + [
                [
                    k.label,
                    str(len(k.ms or [])),
                    *(f"{_pct(k.ms or [], q):.1f}" for q in (50, 90, 99)),
                    f"{max(k.ms):.1f}" if k.ms else "-",
                    f"{k.results / max(len(k.ms or []), 1):.1f}",
                    f"{k.misses}" + (f" + {k.over_budget} 503" if k.over_budget else ""),
                ]
                for k in run.searches
                if k.label not in run.failed
            ],
        )
    )
    for label, why in run.failed.items():
        print(f"not timed: {label}: {why}")
    print(
        f"stored: {run.spans:,} spans, {run.logs:,} log records; {run.bytes_total / 1e6:,.1f} MB"
        f" = {run.bytes_total / max(run.spans, 1):,.0f} B/span; serve RSS after queries {run.rss_kb / 1024:,.0f} MB"
        f" ({run.replicas} process{'es' if run.replicas > 1 else ''})"
    )
    if run.breakdown:
        print("where a lookup's time goes: the store's calls in the benchmark's process (no HTTP), ms")
        print(
            render_table(
                ["call", "n", "p50", "p90", "p99"],
                [
                    [label, str(len(ms)), *(f"{_pct(ms, q):.1f}" if ms else "-" for q in (50, 90, 99))]
                    for label, ms in run.breakdown
                ],
            )
        )
    print(
        render_table(
            ["table / index", "MB", "B/span", "detail"],
            [[o, f"{size / 1e6:,.1f}", f"{size / max(run.spans, 1):,.1f}", d] for o, size, d in run.objects[:14]],
        )
    )
    print()


LOOKUPS = (  # (summary row, query label in run_queries, target)
    ("p99 trace by ID ms (/api/traces/<hex>)", "trace ID (/api/traces/<32 hex>)", CH_TARGET_LOOKUP_P99),
    ("p99 request ID ms (/api/traces/req_...)", "request ID, short (/api/traces/req_...)", CH_TARGET_LOOKUP_P99),
    ("(extra) p99 request ID, UUID ms", "(extra) request ID, UUID (/api/traces/<uuid>)", None),
    (
        "p99 attribute search ms: service + 1 h + status=500",
        "search service+tag, 1 h window, limit 20",
        CH_TARGET_SEARCH_P99,
    ),
)
BYTES_ALL = "bytes per span, every copy, index and the logs"
BYTES_SPANS = "bytes per span, spans' copies and indexes (logs' tables left out)"


def summary_figures(run: StoreRun) -> dict[str, float | None]:
    """The summary's figures of one store, by row (what ``--save-figures`` writes)."""
    out: dict[str, float | None] = {}
    for prefix, name in (("fresh", "fresh store"), ("at ", "full store")):
        for what, noun in (("spans", "spans"), ("logs", "log records")):
            r = _ingest(run, prefix, what)
            out[f"ingest {noun}/s per replica, {name}"] = r.rate / run.replicas if r else None
    for label, key, _ in LOOKUPS:
        out[label] = None if key in run.failed else _p99(run.latencies, key)
    for k in run.searches:
        out[f"p99 {k.label} ms"] = None if k.label in run.failed else _p99(run.searches, k.label)
    out[BYTES_ALL] = run.bytes_total / max(run.spans, 1)
    out[BYTES_SPANS] = None if run.bytes_without_logs is None else run.bytes_without_logs / max(run.spans, 1)
    return out


def _target(label: str) -> tuple[float | None, bool]:
    """Issue 21's target for a summary row, and whether higher is better."""
    if label.startswith("ingest spans/s"):
        return CH_TARGET_INGEST, True
    if label.startswith("ingest"):
        return None, True
    if label.startswith("bytes"):
        return CH_TARGET_BYTES, False
    for row, _, target in LOOKUPS:
        if row == label:
            return target, False
    if label.startswith("p99 text "):
        return CH_TARGET_TEXT_P99, False
    if label.startswith("p99 Jaeger"):
        return CH_TARGET_SEARCH_P99, False
    return None, False


def print_summary(base: dict[str, Any] | None, ch: StoreRun, senders: int) -> None:
    """Issue 21's targets: the ClickHouse figure, the SQLite one, their ratio, PASS/MISS.

    ``base``: the SQLite run's ``{"name", "figures", ...}`` (this run's, or ``--baseline-figures``).
    """
    figures = summary_figures(ch)
    theirs: dict[str, float | None] = base["figures"] if base else {}
    rows = []
    for label, c in figures.items():
        s = theirs.get(label)
        target, higher = _target(label)
        fmt = ",.0f" if label.startswith(("ingest", "bytes")) else ".1f"
        ok = None if c is None or target is None else (c >= target if higher else c <= target)
        rows.append(
            [
                label + ("" if target is not None or label.startswith(("(extra)", "ingest")) else " (extra)"),
                "-" if c is None else format(c, fmt),
                "-" if s is None else format(s, fmt),
                "-" if c is None or not s else f"{c / s:.2f}",
                "-" if target is None else f"{'>=' if higher else '<='} {target:{fmt}}",
                verdict(ok),
            ]
        )
    print(
        f"Issue 21 targets: {ch.name} vs {base['name'] if base else '(no baseline)'}, same workload"
        f" ({ch.spans:,} spans, {ch.logs:,} log records; ingest with {senders} senders per serve)"
    )
    if base and base.get("source"):
        print(f"SQLite figures from {base['source']} (load average {base.get('loads')})")
    print(render_table(["measure", "ClickHouse", "SQLite", "CH / SQLite", "target (ClickHouse)", "result"], rows))
    if ch.failed:
        print("not timed on ClickHouse (a read that failed at this commit): " + "; ".join(ch.failed))


def run_compare(args: argparse.Namespace) -> None:
    """``--store clickhouse[://...]``: the SQLite baseline, then ``--replicas`` serve processes on the cluster."""
    from _cluster import Cluster

    n_phase = args.phase_bodies
    per_store_phases = 2 if args.senders > 1 else 1
    total_bodies = max(-(-args.spans // SPANS_PER_BODY), 2 * per_store_phases * n_phase + 2)
    state, key = source_state()
    print("otel-corr serve backend benchmark: ClickHouse store (issue 21) vs the SQLite store, same workload")
    print(state)
    print(f"python {platform.python_version()} ({sys.executable}), {os.cpu_count()} CPUs, {platform.platform()}")
    print(package_versions((*PACKAGES, "clickhouse-driver")), f"SQLite {sqlite3.sqlite_version}")
    print(
        f"{total_bodies * SPANS_PER_BODY:,} spans in {total_bodies} bodies of {SPANS_PER_BODY} spans over "
        f"{args.hours:g} h, {args.logs_per_span:g} log records per span; {args.replicas} serve replicas x "
        f"{args.senders} senders each (SQLite: 1 serve x {args.senders}); {args.queries} queries of each kind"
        f" (+{args.warmup} warm-up; /api/search {args.search_queries or args.queries} each"
        f"{f', at most {args.search_budget:g} s' if args.search_budget else ''}), round-robin over the replicas;"
        f" load average at start {loadavg()}"
        + (
            f"; ingest phases: {BODIES_PER_REQUEST} bodies ({BODIES_PER_REQUEST * SPANS_PER_BODY:,} spans) a request"
            if BODIES_PER_REQUEST > 1
            else ""
        )
    )
    print(flush=True)
    t_start = time.perf_counter()
    workload = Workload(
        total_bodies * SPANS_PER_BODY, args.hours, args.pool, own_ids=args.own_ids, logs_per_span=args.logs_per_span
    )
    check_copy(workload, workload.body(len(workload.templates) + 3), len(workload.templates) + 3)
    with tempfile.TemporaryDirectory(prefix="otel-corr-bench-ch-") as tmp:
        base_run = (
            measure_store(args, workload, Path(tmp) / "sqlite", None, total_bodies)
            if args.baseline and not args.baseline_figures
            else None
        )
        cluster = Cluster(None if args.store == "clickhouse" else args.store, Path(tmp))
        try:
            print(f"cluster: {cluster.url} ({len(cluster.shards)} shards, {cluster.version}; {cluster.priority})")
            ch = measure_store(args, workload, Path(tmp) / "ch", cluster, total_bodies)
        finally:
            cluster.close()
    base: dict[str, Any] | None = None
    if base_run is not None:
        base = {"name": base_run.name, "figures": summary_figures(base_run), "loads": base_run.loads, "source": ""}
    elif args.baseline_figures:
        base = json.loads(args.baseline_figures.read_text())["sqlite"]
    if args.save_figures:
        saved = {"clickhouse": {"name": ch.name, "figures": summary_figures(ch), "loads": ch.loads, "source": state}}
        if base_run is not None and base is not None:
            saved["sqlite"] = {**base, "source": state}
        args.save_figures.write_text(json.dumps(saved, indent=1))
    print()
    print_summary(base, ch, args.senders)
    print(
        "ingest: spans/s = spans / (first POST -> last body stored and readable), all replicas' senders together,"
        " divided by the replicas (SQLite: one serve);\nqueries: client-side wall ms per HTTP request incl. JSON,"
        " one keep-alive connection per replica, requests alternating between replicas."
    )
    print()
    for run in (base_run, ch):
        if run is not None:
            print_store_run(run)
    print(f"total {time.perf_counter() - t_start:.0f} s; load average at end {loadavg()}")
    now, now_key = source_state()
    if now_key != key:
        print(f"\nwarning: otel_corr/server changed during the run (started at '{state}', now '{now}')")


def profile_clickhouse(args: argparse.Namespace) -> None:
    """``--profile --store clickhouse[://...]``: a replica's ingest path in-process, on a cluster.

    protobuf parse, ``span_rows``, ``ClickHouseStore._insert`` (the writer's own method, on this
    thread, ``--profile-group`` bodies per insert as group commit makes them), each timed alone, the
    ClickHouse servers' CPU over the inserts (own cluster), then a cProfile of the three.
    """
    from _cluster import Cluster

    from otel_corr.server._clickhouse import ClickHouseStore
    from otel_corr.server._otlp import parse_spans, span_rows

    n, group = args.profile_bodies, args.profile_group
    workload = Workload(n * SPANS_PER_BODY, 1, min(args.pool, n))
    bodies = [workload.body(i).data for i in range(n)]
    spans_total = n * SPANS_PER_BODY
    with tempfile.TemporaryDirectory(prefix="otel-corr-prof-ch-") as tmp:
        cluster = Cluster(None if args.store == "clickhouse" else args.store, Path(tmp))
        try:
            cluster.fresh_database()
            store = ClickHouseStore(cluster.url)
            t0 = time.perf_counter()
            parsed = [parse_spans(b, "application/x-protobuf") for b in bodies]
            t1 = time.perf_counter()
            decoded = [span_rows(p, store.resource_id) for p in parsed]
            t2 = time.perf_counter()
            cpu0, ch0 = time.process_time(), cluster.cpu_seconds()
            for k in range(0, n, group):
                part = decoded[k : k + group]
                store._insert([r for d in part for r in d.rows], [r for d in part for r in d.resources], [])
            t3 = time.perf_counter()
            cpu_insert, ch_insert = time.process_time() - cpu0, cluster.cpu_seconds()
            prof = cProfile.Profile()
            prof.enable()
            for k in range(0, n, group):
                part = [
                    span_rows(parse_spans(b, "application/x-protobuf"), store.resource_id)
                    for b in bodies[k : k + group]
                ]
                store._insert([r for d in part for r in d.rows], [r for d in part for r in d.resources], [])
            prof.disable()
            store.close()
        finally:
            cluster.close()
    ch = None if ch_insert is None or ch0 is None else ch_insert - ch0
    print(
        f"in-process ingest path of one replica on ClickHouse {cluster.version}, {spans_total:,} spans ({n} bodies,"
        f" {group} per insert); load average {loadavg()}"
    )
    print(
        render_table(
            ["step", "wall µs/span", "spans/s if alone"],
            [
                ["parse_spans", f"{(t1 - t0) / spans_total * 1e6:.2f}", f"{spans_total / (t1 - t0):,.0f}"],
                ["span_rows", f"{(t2 - t1) / spans_total * 1e6:.2f}", f"{spans_total / (t2 - t1):,.0f}"],
                [
                    f"ClickHouseStore._insert ({group} bodies each, synchronous)",
                    f"{(t3 - t2) / spans_total * 1e6:.2f}",
                    f"{spans_total / (t3 - t2):,.0f}",
                ],
                ["  of which this process's CPU", f"{cpu_insert / spans_total * 1e6:.2f}", "-"],
                ["  ClickHouse servers' CPU", "-" if ch is None else f"{ch / spans_total * 1e6:.2f}", "-"],
            ],
        )
    )
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(22)
    print()
    print("cProfile of parse + decode + insert (by own time)")
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:7000])


# --------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="smoke run: 50,000 spans, 200 queries of each kind")
    p.add_argument("--spans", type=int, default=None, help="spans in the store when queried (default 1M; quick 50k)")
    p.add_argument("--hours", type=float, default=24.0, help="time range the spans are spread over (default 24)")
    p.add_argument("--queries", type=int, default=300, help="timed queries of each kind (default 300)")
    p.add_argument("--warmup", type=int, default=None, help="untimed queries of each kind first (default 20; quick 5)")
    p.add_argument("--wide-queries", type=int, default=None, help="whole-range searches (default 20; quick 5)")
    p.add_argument("--phase-bodies", type=int, default=None, help="bodies per ingest measurement (default 100)")
    p.add_argument("--pool", type=int, default=32, help="distinct template bodies (default 32)")
    p.add_argument(
        "--logs-per-span",
        type=float,
        default=None,
        help="log records per span, tied to the spans' traces (default 2, with --store clickhouse 0.5; 0 = no logs)",
    )
    p.add_argument(
        "--search",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time /api/search query kinds after the Jaeger queries (default on)",
    )
    p.add_argument("--keep-db", type=Path, default=None, help="copy the store file here at the end (for inspection)")
    p.add_argument("--profile", action="store_true", help="profile the ingest path in-process instead")
    p.add_argument(
        "--upgrade-from",
        type=Path,
        default=None,
        help="instead: fill a store (--spans, default 100k) with the otel_corr of this older checkout, then time"
        " this checkout's first start on it (the format upgrade)",
    )
    p.add_argument("--profile-bodies", type=int, default=40, help="bodies for --profile (default 40)")
    p.add_argument(
        "--profile-group", type=int, default=16, help="bodies per insert for --profile --store clickhouse (default 16)"
    )
    p.add_argument(
        "--mixed",
        action="store_true",
        help="after the queries: ingest again while clients query (query p99 under load)",
    )
    p.add_argument(
        "--mixed-clients",
        type=int,
        default=1,
        help="query clients in --mixed (default 1, like the idle table: p99 load/idle is then the cost of ingest alone;"
        " more clients also queue queries behind each other)",
    )
    p.add_argument(
        "--heavy-posts",
        type=int,
        default=None,
        help="after the queries: POSTs timed alone, then as many while --heavy-clients run the heaviest queries"
        " (dependencies and a non-matching tag search over the whole range); default 200, quick 100, 0 skips",
    )
    p.add_argument("--heavy-clients", type=int, default=2, help="query clients for --heavy-posts (default 2)")
    p.add_argument(
        "--ack-cost", action="store_true", help="instead: ingest with ack-after-commit, 1/2/4 senders, fresh stores"
    )
    p.add_argument("--ack-reps", type=int, default=3, help="rounds of --ack-cost (default 3)")
    p.add_argument(
        "--own-ids",
        action="store_true",
        help="UUID request IDs are their trace's ID, as otel-corr makes them (default: random, as a foreign caller's)",
    )
    p.add_argument(
        "--store",
        default="sqlite",
        help="sqlite (default: the run above); clickhouse = start a 2-shard cluster here (Debian's clickhouse-server);"
        " or clickhouse://host:9000[,host2:9000]/db?cluster=NAME: issue 21's comparison, SQLite baseline first",
    )
    p.add_argument(
        "--bodies-per-request",
        type=int,
        default=1,
        help="join this many 512-span bodies into each request of the ingest phases (the fill: one a request);"
        " 8 = 4,096 spans, the smallest batch of collector/otel-corr-replicas.yaml (default 1)",
    )
    p.add_argument("--replicas", type=int, default=2, help="serve processes on the cluster (default 2)")
    p.add_argument("--senders", type=int, default=2, help="posting threads per serve process (default 2)")
    p.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --store clickhouse: the SQLite store on the same workload first, for the ratios (default on)",
    )
    p.add_argument(
        "--search-queries",
        type=int,
        default=None,
        help="with --store clickhouse: timed /api/search requests of each kind (default --queries)",
    )
    p.add_argument(
        "--search-budget",
        type=float,
        default=0,
        help="with --store clickhouse: stop the /api/search rounds after this many seconds (default 0: none)",
    )
    p.add_argument(
        "--save-figures", type=Path, default=None, help="with --store clickhouse: write the summary's figures as JSON"
    )
    p.add_argument(
        "--baseline-figures",
        type=Path,
        default=None,
        help="with --store clickhouse: the SQLite figures of an earlier run's --save-figures (same workload)"
        " instead of running the SQLite store again",
    )
    p.add_argument(
        "--multi-host",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="each replica's URL lists every shard, its own first (default); else only its own shard",
    )
    p.add_argument(
        "--settle", type=float, default=5.0, help="seconds for ClickHouse's merges before system.parts (default 5)"
    )
    args = p.parse_args(argv)
    if args.store != "sqlite" and not args.store.startswith("clickhouse"):
        p.error("--store sqlite, clickhouse or clickhouse://host:port/db?cluster=NAME please")
    if args.logs_per_span is None:  # issue 21's workload is 1M spans + 500k log records
        args.logs_per_span = 2.0 if args.store == "sqlite" else 0.5
    if args.quick:
        args.spans = args.spans or 50_000
        args.queries = max(200, min(args.queries, 200))
        args.phase_bodies = args.phase_bodies or 20
        args.wide_queries = 5 if args.wide_queries is None else args.wide_queries
        args.warmup = 5 if args.warmup is None else args.warmup
        args.heavy_posts = 100 if args.heavy_posts is None else args.heavy_posts
    if args.upgrade_from:
        args.spans = args.spans or 100_000
    args.heavy_posts = 200 if args.heavy_posts is None else args.heavy_posts
    args.phase_bodies = args.phase_bodies or 100
    args.spans = args.spans or 1_000_000
    args.wide_queries = 20 if args.wide_queries is None else args.wide_queries
    args.warmup = 20 if args.warmup is None else args.warmup
    if args.logs_per_span is not None and args.logs_per_span < 0:
        p.error("--logs-per-span >= 0 please")
    if args.bodies_per_request < 1:
        p.error("--bodies-per-request >= 1 please")
    if args.spans < SPANS_PER_BODY or args.queries < 1 or args.phase_bodies < 2 or args.pool < 1 or args.hours <= 0:
        p.error("--spans >= 512, --queries >= 1, --phase-bodies >= 2, --pool >= 1 and --hours > 0 please")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    global BODIES_PER_REQUEST
    BODIES_PER_REQUEST = args.bodies_per_request
    if args.profile:
        profile(args) if args.store == "sqlite" else profile_clickhouse(args)
    elif args.upgrade_from:
        upgrade_time(args)
    elif args.ack_cost:
        ack_cost(args)
    elif args.store != "sqlite":
        run_compare(args)
    else:
        run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
