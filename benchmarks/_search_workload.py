"""Issue 18's half of ``backend.py``: the log records that go with the spans, and the search queries.

Log records are built once per span template (``backend.build_template``) as one OTLP
``ExportLogsServiceRequest`` with the records of that template's traces, and copied with the same
fresh IDs, request IDs, searchable values and time shift as the span body (byte patches at offsets
found here), so the client stays cheap.  The module imports nothing from ``backend.py`` (that
imports this): the span specs come in duck-typed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from random import Random
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as PbLogRecord

KIND_INTERNAL, KIND_SERVER, KIND_CLIENT = 1, 2, 3
DEBUG, INFO, WARN, ERROR = (5, "DEBUG"), (9, "INFO"), (13, "WARN"), (17, "ERROR")
SITE = "/app/.venv/lib/python3.12/site-packages"
REASONS = {200: "OK", 201: "Created", 404: "Not Found", 500: "Internal Server Error", 502: "Bad Gateway"}
# Every searchable value sits after one of these prefixes (an attribute's string encoding, a path, a word of
# a log line), so one regex pass finds them all in a body; a capture is one of ours only if it is in the
# template's own table of values (6 digits user, 7 customer, 8 order: unique in the workload).  No look-ahead
# for the value's end: the byte after a string in protobuf may well be an ASCII digit (a field tag).
VALUES = re.compile(rb"(?:\x0a\x06|user )(\d{6})|c-(\d{7})|(?:\x0a\x08|/orders/|order )(\d{8})")
_KINDS = ("user", "customer", "order")


@dataclass
class Line:
    """One log record before encoding."""

    trace: int  # index of its trace in the template
    slot: int  # its span's index in the template's span order
    span: Any  # the SpanSpec it is written in
    time: int
    severity: tuple[int, str]
    logger: str
    body: str
    attrs: list[tuple[str, Any]]
    keep: bool = True  # the access and error lines stay whatever --logs-per-span says


@dataclass
class LogTemplate:
    body: bytes
    records: int
    trace_offsets: list[list[int]]  # per trace: offsets of its 16-byte trace ID
    span_offsets: list[list[int]]  # per span slot: offsets of its 8-byte span ID
    rid_offsets: list[list[int]]  # per trace: offsets of its request ID text
    time_offsets: list[int]  # every fixed64 timestamp (time and observed time)
    marker: tuple[int, int]  # (trace, span slot) of the last record: seen committed = body committed


def value_offsets(body: bytes, table: dict[bytes, tuple[int, str]]) -> dict[tuple[int, str], list[int]]:
    """Where each of the template's searchable values sits in ``body``: (trace, kind) -> offsets."""
    out: dict[tuple[int, str], list[int]] = {}
    for m in VALUES.finditer(body):
        group = m.lastindex or 0
        hit = table.get(m.group(group))
        if hit is not None and hit[1] == _KINDS[group - 1]:
            out.setdefault(hit, []).append(m.start(group))
    return out


def leftover_values(body: bytes, table: dict[bytes, tuple[int, str]], fresh: Iterable[str]) -> int:
    """How many of the template's values a patched copy still holds anywhere (must be 0).

    A plain search, not VALUES: it catches an occurrence the regex would miss.  ``fresh`` are the
    copy's own values (one may happen to equal or contain a template's).
    """
    for value in sorted({v.encode() for v in fresh}, key=len, reverse=True):
        body = body.replace(value, b"#")  # a fresh value may hold a template's (c-1080551 holds 108055)
    return sum(body.count(value) for value in table)


def _lines_of_span(
    trace: int, slot: int, span: Any, tv: Any, rid: str, rng: Random, attrs_of: dict[str, Any]
) -> list[Line]:
    """What an instrumented app logs inside one span (otel-corr's access and error lines, the app's own)."""
    t0, t1 = int(span.start), int(span.end)
    dur = max(t1 - t0, 1000)
    out: list[Line] = []

    def at(frac: float) -> int:
        return t0 + int(dur * frac)

    def code(path: str, line: int) -> list[tuple[str, Any]]:
        # What otel-corr's OTLP handler adds to every record (logging/_otlp.py), plus the request ID.
        return [("request.id", rid), ("code.file.path", path), ("code.line.number", line)]

    def app(
        frac: float, sev: tuple[int, str], logger: str, body: str, path: str, line: int, keep: bool = False
    ) -> None:
        out.append(Line(trace, slot, span, at(frac), sev, logger, body, code(path, line), keep))

    if span.kind == KIND_SERVER:
        method, path = attrs_of["http.request.method"], attrs_of["url.path"]
        status, client = attrs_of["http.response.status_code"], attrs_of["client.address"]
        ms = round(dur / 1e6, 1)
        route = attrs_of["http.route"]
        if span.service == "orders-api":
            if method == "POST":
                app(
                    0.2,
                    INFO,
                    "shop.orders",
                    f"checking out order {tv.order} for customer c-{tv.customer}",
                    "/app/shop/orders/checkout.py",
                    57,
                    True,
                )
            elif "{order_id}" in route:
                app(
                    0.3,
                    INFO,
                    "shop.orders",
                    f"loaded order {tv.order} for customer c-{tv.customer}: {rng.randint(1, 6)} items, total "
                    f"{rng.randint(5, 400)}.{rng.randint(0, 99):02d} EUR",
                    "/app/shop/orders/api.py",
                    112,
                    True,
                )
            elif route.endswith("products"):
                app(
                    0.3,
                    INFO,
                    "shop.catalog",
                    f"listing products page {rng.randint(1, 9)} for user {tv.user}",
                    "/app/shop/catalog/api.py",
                    41,
                    True,
                )
            else:
                app(
                    0.3,
                    INFO,
                    "shop.cart",
                    f"cart of user {tv.user} has {rng.randint(0, 7)} items",
                    "/app/shop/cart/api.py",
                    66,
                    True,
                )
        elif span.service == "payments":
            app(
                0.1,
                INFO,
                "shop.payments",
                f"charging customer c-{tv.customer} {rng.randint(5, 400)}.{rng.randint(0, 99):02d} EUR for order "
                f"{tv.order}",
                "/app/shop/payments/api.py",
                80,
                True,
            )
        if any(name == "exception" for _, name, _ in span.events):
            ev = next(a for _, name, a in span.events if name == "exception")
            exc = dict(ev)
            app(
                0.97,
                ERROR,
                "shop.payments",
                f"charge for order {tv.order} failed: {exc['exception.message']}",
                "/app/shop/payments/api.py",
                91,
                True,
            )
            out.append(
                Line(
                    trace,
                    slot,
                    span,
                    at(0.98),
                    ERROR,
                    "otel_corr.error",
                    f"Unhandled {exc['exception.type'].rsplit('.', 1)[-1]} in {method} {path}",
                    [
                        ("method", method),
                        ("path", path),
                        *code(f"{SITE}/otel_corr/logging/_access.py", 283),
                        ("exception.type", exc["exception.type"].rsplit(".", 1)[-1]),
                        ("exception.message", exc["exception.message"]),
                        ("exception.stacktrace", exc["exception.stacktrace"]),
                    ],
                )
            )
        out.append(
            Line(
                trace,
                slot,
                span,
                t1 - 20_000,
                INFO,
                "otel_corr.access",
                f'{client} - "{method} {path}" {status} {ms:.1f}ms',
                [
                    ("method", method),
                    ("path", path),
                    ("status", status),
                    ("duration_ms", ms),
                    ("client", client),
                    ("user_agent", attrs_of["user_agent.original"]),
                    *code(f"{SITE}/otel_corr/logging/_access.py", 79),
                ],
            )
        )
    elif span.kind == KIND_CLIENT and "url.full" in attrs_of:
        url, status = attrs_of["url.full"], attrs_of["http.response.status_code"]
        if status >= 500 or rng.random() < 0.03:
            app(
                0.5,
                WARN,
                "shop.payments.gateway" if "gateway" in url else "shop.http",
                f"retrying {attrs_of['http.request.method']} {url} (attempt 2 of 3) after ConnectionResetError: "
                f"[Errno 104] Connection reset by peer; idempotency-key {rid}",
                "/app/shop/http.py",
                133,
            )
        app(
            0.99,
            INFO,
            "httpx",
            f'HTTP Request: {attrs_of["http.request.method"]} {url} "HTTP/1.1 {status} {REASONS.get(status, "")}"',
            f"{SITE}/httpx/_client.py",
            1025,
        )
    elif span.kind == KIND_CLIENT:
        app(
            0.95,
            DEBUG,
            "shop.db",
            f"{span.name} took {dur / 1e6:.1f} ms, {rng.randint(0, 40)} rows",
            "/app/shop/db.py",
            48,
        )
    else:
        func = attrs_of.get("code.function.name", "")
        if func == "auth.verify_session":
            app(0.8, INFO, "shop.auth", f"session verified for user {tv.user}", "/app/shop/auth.py", 31)
        if span.events:
            key = dict(span.events[0][2]).get("cache.key", "cart")
            app(
                0.5,
                WARN,
                "shop.cache",
                f"cache miss for {key}, falling back to postgres (ttl 300s)",
                "/app/shop/cache.py",
                72,
            )
        elif rng.random() < 0.5:
            app(0.4, DEBUG, "shop.cache", f"cache hit for user {tv.user} session", "/app/shop/cache.py", 64)
    return out


FILLERS = (
    (DEBUG, "shop.cache", "cache hit for products:page:{n} (ttl {m}s)", "/app/shop/cache.py", 64),
    (DEBUG, "shop.features", "feature flag new_checkout is {flag} for user {user}", "/app/shop/features.py", 22),
    (INFO, "shop.audit", "request validated: {n} fields, {m} headers", "/app/shop/validation.py", 19),
)


def log_lines(
    traces: list[tuple[bytes, str, list[Any]]], vars_of: Callable[[bytes], Any], per_span: float, rng: Random
) -> list[Line]:
    """The template's log records: what the app writes in each span, then trimmed or padded to ``per_span``."""
    lines: list[Line] = []
    slot = 0
    for ti, (trace_id, rid, spans) in enumerate(traces):
        tv = vars_of(trace_id)
        for s in spans:
            lines += _lines_of_span(ti, slot, s, tv, rid, rng, dict(s.attrs))
            slot += 1
    all_spans = [(ti, s) for ti, (_, _, spans) in enumerate(traces) for s in spans]
    target = round(per_span * len(all_spans))
    optional = [i for i, line in enumerate(lines) if not line.keep]
    rng.shuffle(optional)
    drop = set(optional[: max(0, len(lines) - target)])
    lines = [line for i, line in enumerate(lines) if i not in drop]
    while len(lines) < target:  # more than the app writes by itself: its chattier lines
        k = rng.randrange(len(all_spans))
        ti, span = all_spans[k]
        sev, logger, text, path, lineno = rng.choice(FILLERS)
        user = vars_of(traces[ti][0]).user
        body = text.format(n=rng.randint(1, 40), m=rng.randint(1, 300), flag=rng.choice(("on", "off")), user=user)
        t = span.start + rng.randrange(max(span.end - span.start, 1))
        attrs = [("request.id", traces[ti][1]), ("code.file.path", path), ("code.line.number", lineno)]
        lines.append(Line(ti, k, span, t, sev, logger, body, attrs, False))
    return lines


def encode_lines(
    traces: Sequence[tuple[bytes, str, list[Any]]],
    lines: Iterable[Line],
    resource_attrs: Callable[[str, int], list[tuple[str, Any]]],
    key_values: Callable[[Iterable[tuple[str, Any]]], list[KeyValue]],
) -> tuple[bytes, list[Line]]:
    """One ``ExportLogsServiceRequest`` of ``lines``, grouped by resource and logger as an SDK batch is.

    Returns the encoded body and the lines in the order they are encoded.
    """
    groups: dict[tuple[str, int], dict[str, list[Line]]] = {}
    for line in sorted(lines, key=lambda x: x.time):
        groups.setdefault((line.span.service, line.span.instance), {}).setdefault(line.logger, []).append(line)
    request = ExportLogsServiceRequest()
    order: list[Line] = []
    for (service, instance), loggers in groups.items():
        rl = request.resource_logs.add()
        rl.resource.attributes.extend(key_values(resource_attrs(service, instance)))
        for logger, group in loggers.items():
            sl = rl.scope_logs.add()
            sl.scope.name = logger
            for line in group:
                sl.log_records.append(
                    PbLogRecord(
                        time_unix_nano=line.time,
                        observed_time_unix_nano=line.time + 150_000,
                        severity_number=line.severity[0],  # type: ignore[arg-type]
                        severity_text=line.severity[1],
                        body=AnyValue(string_value=line.body),
                        attributes=key_values(line.attrs),
                        flags=1,
                        trace_id=traces[line.trace][0],
                        span_id=line.span.span_id,
                    )
                )
                order.append(line)
    body: bytes = request.SerializeToString()
    return body, order


def build_log_template(
    traces: list[tuple[bytes, str, list[Any]]],
    vars_of: Callable[[bytes], Any],
    per_span: float,
    rng: Random,
    resource_attrs: Callable[[str, int], list[tuple[str, Any]]],
    key_values: Callable[[Iterable[tuple[str, Any]]], list[KeyValue]],
) -> tuple[LogTemplate, list[Line]]:
    """One ``ExportLogsServiceRequest`` of the template's records, grouped by resource and logger as an SDK batch."""
    lines = log_lines(traces, vars_of, per_span, rng)
    body, order = encode_lines(traces, lines, resource_attrs, key_values)
    # Records are encoded in the order added, each one's fields in field-number order (1 time fixed64, 5 body,
    # 6 attributes, 9 trace_id, 10 span_id, 11 observed time fixed64): one forward walk finds them.
    trace_offsets: list[list[int]] = [[] for _ in traces]
    span_offsets: list[list[int]] = [[] for _ in range(sum(len(t[2]) for t in traces))]
    rid_offsets: list[list[int]] = [[] for _ in traces]
    times: list[int] = []

    def find(needle: bytes, start: int, window: int) -> int:
        pos = body.find(needle, start, start + window)
        if pos < 0:
            raise RuntimeError("log template: a field is not where the encoding puts it")
        return pos

    cursor = 0
    for line in order:
        t = find(b"\x09" + line.time.to_bytes(8, "little"), cursor, 8192)
        times.append(t + 1)
        tid = traces[line.trace][0]
        p = find(b"\x4a\x10" + tid + b"\x52\x08" + line.span.span_id, t, 16384)
        trace_offsets[line.trace].append(p + 2)
        span_offsets[line.slot].append(p + 20)
        times.append(find(b"\x59" + (line.time + 150_000).to_bytes(8, "little"), p + 28, 16) + 1)
        rid = traces[line.trace][1].encode()
        r = body.find(rid, t, p)
        while r >= 0:
            rid_offsets[line.trace].append(r)
            r = body.find(rid, r + len(rid), p)
        cursor = p + 37
    last = order[-1]
    return (
        LogTemplate(body, len(order), trace_offsets, span_offsets, rid_offsets, times, (last.trace, last.slot)),
        order,
    )


# --------------------------------------------------------------------------- search queries

HOUR_NS = 3_600 * 1_000_000_000
TARGET_ID = 20.0  # ms, p99
TARGET_ATTRIBUTE = 100.0
TARGET_TEXT = 150.0
TARGET_COMBINED = 200.0
COMMON_ROUTE = "/api/cart"  # the root span's route in a sixth of the traces
COMMON_WORD = "cache"
PHRASE = "upstream gateway returned"  # the failing traces' log lines (2 %)
COMBINED = '"checking out order" http.request.method=POST service:orders-api duration>20ms'
ABSENT = '"zebra quokka"'
NEVER_TOGETHER = '"upstream gateway" status:404'  # both are common enough; no trace has both


@dataclass
class Kind:
    """One row of the search table: how to make a request for a sample, and what it must find."""

    label: str
    target: float | None
    make: Callable[[Any, Random], tuple[str, bytes | None]]  # sample -> (path, trace that must be found)
    samples: str = "search"  # which list of samples: "search", "uuid" (UUID request IDs) or "short"
    slow: bool = False  # a scan of the whole range: only ``wide`` requests (--wide-queries)
    sql: str = ""  # the query as the store's parser reads it (for the plan)
    ms: list[float] | None = None
    misses: int = 0
    over_budget: int = 0
    results: int = 0

    def __post_init__(self) -> None:
        self.ms = []


def rfc3339(ns: int, up: bool = False) -> str:
    seconds = -(-ns // 1_000_000_000) if up else ns // 1_000_000_000
    import datetime

    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def search_kinds(begin_ns: int, end_ns: int, logs: bool = True) -> list[Kind]:
    """The query kinds issue 18 sets targets for, each over a fresh stored sample per request."""
    from urllib.parse import urlencode

    day = f"since:{rfc3339(begin_ns)} until:{rfc3339(end_ns + 60_000_000_000, up=True)}"

    def hour(ref: Any, rng: Random) -> tuple[int, int]:
        lo = ref.start_ns - rng.randrange(HOUR_NS - 120_000_000_000) - 60_000_000_000
        lo = max(begin_ns, min(lo, end_ns - HOUR_NS))
        return lo, lo + HOUR_NS

    def window(ref: Any, rng: Random) -> str:
        lo, hi = hour(ref, rng)
        return f"since:{rfc3339(lo)} until:{rfc3339(hi, up=True)}"

    def q(text: str) -> str:
        return "/api/search?" + urlencode({"q": text, "limit": "20"})

    def jaeger(ref: Any, lo: int, hi: int) -> str:
        tags = '{"user.id":"' + ref.user + '"}'
        query = urlencode(
            {"service": "web-frontend", "tags": tags, "limit": "20", "start": lo // 1000, "end": hi // 1000 + 1}
        )
        return "/api/traces?" + query

    import base64
    import uuid as uuid_mod

    return [
        Kind("ID: trace ID, 32 hex", TARGET_ID, lambda r, g: (q(r.trace_id.hex()), r.trace_id)),
        Kind("ID: trace ID as a UUID", TARGET_ID, lambda r, g: (q(str(uuid_mod.UUID(bytes=r.trace_id))), r.trace_id)),
        Kind("ID: trace ID, base64", TARGET_ID, lambda r, g: (q(base64.b64encode(r.trace_id).decode()), r.trace_id)),
        Kind("ID: span ID, 16 hex", TARGET_ID, lambda r, g: (q(r.span_id.hex()), r.trace_id)),
        Kind("ID: request ID, UUID", TARGET_ID, lambda r, g: (q(r.request_id), r.trace_id), "uuid"),
        Kind("ID: request ID, req_...", TARGET_ID, lambda r, g: (q(r.request_id), r.trace_id), "short"),
        Kind(
            "attr rare: user.id=U, 1 h",
            TARGET_ATTRIBUTE,
            lambda r, g: (q(f"user.id={r.user} {window(r, g)}"), r.trace_id),
        ),
        Kind("attr rare: user.id=U, 24 h", TARGET_ATTRIBUTE, lambda r, g: (q(f"user.id={r.user} {day}"), r.trace_id)),
        Kind(
            f"attr common: http.route={COMMON_ROUTE}, 1 h",
            TARGET_ATTRIBUTE,
            lambda r, g: (q(f"http.route={COMMON_ROUTE} {window(r, g)}"), None),
        ),
        Kind(
            f"attr common: http.route={COMMON_ROUTE}, 24 h",
            TARGET_ATTRIBUTE,
            lambda r, g: (q(f"http.route={COMMON_ROUTE} {day}"), None),
        ),
        Kind(
            "text rare word: an order number, 24 h",
            TARGET_TEXT,
            lambda r, g: (q(f"{r.order} {day}"), r.trace_id if logs and _has_order(r) else None),
        ),
        Kind(f"text common word: {COMMON_WORD}, 24 h", TARGET_TEXT, lambda r, g: (q(f"{COMMON_WORD} {day}"), None)),
        Kind(f'text phrase: "{PHRASE}", 24 h', TARGET_TEXT, lambda r, g: (q(f'"{PHRASE}" {day}'), None)),
        Kind(
            "combined: phrase key=value service duration, 24 h",
            TARGET_COMBINED,
            lambda r, g: (q(f"{COMBINED} {day}"), None),
        ),
        Kind("no match: absent phrase, 24 h", TARGET_TEXT, lambda r, g: (q(f"{ABSENT} {day}"), None)),
        Kind(
            "no match: phrase + status never together, 24 h",
            TARGET_COMBINED,
            lambda r, g: (q(f"{NEVER_TOGETHER} {day}"), None),
        ),
        Kind(
            "Jaeger tags user.id=U, 1 h (/api/traces)",
            TARGET_ATTRIBUTE,
            lambda r, g: (jaeger(r, *hour(r, g)), r.trace_id),
        ),
        Kind(
            "Jaeger tags user.id=U, 24 h (/api/traces)",
            TARGET_ATTRIBUTE,
            lambda r, g: (jaeger(r, begin_ns, end_ns + 60_000_000_000), r.trace_id),
            slow=True,
        ),
    ]


def _has_order(ref: Any) -> bool:
    return "{order_id}" in ref.route or ref.route.endswith("checkout")


def _found(path: str, payload: Any) -> tuple[list[str], str | None]:
    if path.startswith("/api/traces"):
        return [t["traceID"] for t in payload.get("data") or []], None
    return [r["trace_id"] for r in payload.get("results") or []], payload.get("opened")


def timed_search(conn: Any, kind: Kind, ref: Any, rng: Random, record: bool = True) -> None:
    """One GET on the kept-alive connection, timed around the whole exchange (response read in full)."""
    import json
    import time

    path, expected = kind.make(ref, rng)
    t0 = time.perf_counter()
    conn.request("GET", path)
    resp = conn.getresponse()
    data = resp.read()
    elapsed = (time.perf_counter() - t0) * 1000
    if not record:
        return
    assert kind.ms is not None
    if resp.status == 503:
        kind.over_budget += 1
        return
    if resp.status != 200:
        raise SystemExit(f"GET {path}: HTTP {resp.status}: {data[:300]!r}")
    found, opened = _found(path, json.loads(data))
    kind.ms.append(elapsed)
    kind.results += len(found)
    if expected is not None and opened != expected.hex() and expected.hex() not in found:
        kind.misses += 1


def run_search(
    port: int, samples: Any, begin_ns: int, end_ns: int, n: int, warmup: int, wide: int, logs: bool = True
) -> list[Kind]:
    """``n`` requests of each kind (``wide`` of a slow one), interleaved, on one keep-alive connection.

    Each request takes a fresh random sample.
    """
    import http.client

    rng = Random(17)
    kinds = search_kinds(begin_ns, end_ns, logs)  # without logs, the order number is in no log line
    pools = {"search": samples.search, "uuid": samples.uuid, "short": samples.short}
    rare_words = [r for r in samples.search if _has_order(r)] or samples.search
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        for i in range(warmup + n):
            for kind in kinds:
                if kind.slow and not (warmup <= i < warmup + wide):
                    continue
                pool = rare_words if kind.label.startswith("text rare") else pools[kind.samples]
                timed_search(conn, kind, rng.choice(pool), rng, record=i >= warmup)
    finally:
        conn.close()
    return kinds


def _pct(values: list[float], q: float) -> float:
    data = sorted(values)
    return data[min(len(data) - 1, int(round(q / 100 * (len(data) - 1))))] if data else float("nan")


def search_rows(kinds: list[Kind]) -> list[list[str]]:
    rows = []
    for k in kinds:
        ms = k.ms or []
        p99 = _pct(ms, 99)
        rows.append(
            [
                k.label,
                str(len(ms)),
                *(f"{_pct(ms, q):.1f}" for q in (50, 90, 99, 100)),
                f"{k.results / max(len(ms), 1):.1f}",
                str(k.misses),
                str(k.over_budget),
                f"<= {k.target:.0f}" if k.target else "-",
                f"{p99 / k.target:.2f}" if k.target and ms else "-",
                ("PASS" if p99 <= k.target else "MISS") if k.target and ms else "-",
            ]
        )
    return rows


SEARCH_HEADERS = ["query", "n", "p50", "p90", "p99", "max", "results", "misses", "503", "p99 target", "ratio", "result"]


# --------------------------------------------------------------------------- the SQL each kind runs

_LITERALS = re.compile(r"X'[0-9A-Fa-f]*'|'(?:[^']|'')*'|\b-?\d+\b")


@dataclass
class Plan:
    label: str
    statements: int  # statements the query ran
    distinct: list[tuple[int, str, list[str]]]  # (times run, SQL with literals as ?, EXPLAIN QUERY PLAN rows)
    results: int


def search_plans(db: Any, samples: Any, begin_ns: int, end_ns: int) -> list[Plan]:
    """Run one sample of each kind in-process on the stopped server's store and explain every statement it ran.

    ``Store.find`` (and Jaeger's ``Store.search``) run their statements on the thread's read
    connection; its trace callback sees each one with its parameters expanded, so each distinct
    shape is explained as it ran.
    """
    import json
    import time
    from urllib.parse import parse_qs, urlsplit

    from otel_corr.server._search import parse
    from otel_corr.server._store import Store

    rng = Random(19)
    store = Store(db)
    out: list[Plan] = []
    try:
        conn = store.read_connection()
        ran: list[str] = []
        conn.set_trace_callback(ran.append)
        pools = {"search": samples.search, "uuid": samples.uuid, "short": samples.short}
        rare_words = [r for r in samples.search if _has_order(r)] or samples.search
        for kind in search_kinds(begin_ns, end_ns):
            pool = rare_words if kind.label.startswith("text rare") else pools[kind.samples]
            path, _ = kind.make(rng.choice(pool), rng)
            params = {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
            ran.clear()
            with store.budget(time.monotonic() + 60):
                if path.startswith("/api/traces"):
                    results = len(
                        store.search(
                            service=params["service"],
                            tags=json.loads(params["tags"]),
                            start_ns=int(params["start"]) * 1000,
                            end_ns=int(params["end"]) * 1000,
                            limit=20,
                        )
                    )
                else:
                    found = store.find(parse(params["q"]), limit=20)
                    results = len(found.found)
            shapes: dict[str, tuple[int, str]] = {}
            for sql in ran:
                if sql.startswith(("--", "PRAGMA")):
                    continue  # FTS5's own statements on its shadow tables (nested: the trace shows them as comments)
                shape = " ".join(_LITERALS.sub("?", sql).split())
                n, first = shapes.get(shape, (0, sql))
                shapes[shape] = (n + 1, first)
            distinct = []
            for shape, (n, sql) in shapes.items():
                try:
                    plan = [str(r[3]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql)]
                except Exception as exc:  # a statement EXPLAIN cannot take (PRAGMA...): say so, go on
                    plan = [f"(no plan: {exc})"]
                distinct.append((n, shape, plan))
            ran.clear()
            out.append(Plan(kind.label, sum(n for n, _, _ in distinct), distinct, results))
        conn.set_trace_callback(None)
    finally:
        store.close()
    return out


def print_plans(plans: list[Plan]) -> None:
    print("SQL each search kind runs (one sample, in-process on the stopped server's store; EXPLAIN QUERY PLAN)")
    for p in plans:
        print(f"  {p.label}: {p.statements} statements, {len(p.distinct)} distinct, {p.results} results")
        for n, sql, plan in p.distinct:
            print(f"    {n} x {sql[:220]}{'...' if len(sql) > 220 else ''}")
            print(f"        plan: {' | '.join(plan)}")
