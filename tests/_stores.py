"""Issue 21's contract data and processes: one OTLP corpus; `otel-corr serve` on SQLite or ClickHouse.

Not a fixture file: ``tests/test_store_contract.py`` and ``tests/test_store_faults.py`` import it.

:data:`CORPUS` is what a small shop sends in a few minutes: four services, request IDs (one shared
by a request and its retry, one a UUID that names its own trace), an error with its exception and
log lines, a trace whose spans arrive at two replicas, siblings with equal start times, a batch
sent twice (a retry after a lost acknowledgement), log records without a trace.  Each :class:`Send`
says which of two replicas gets it; a SQLite ``serve`` gets every one, in the same order.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as LogMessage
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from .collector import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent

SERVER, CLIENT, INTERNAL, CONSUMER = 2, 3, 1, 5
MS = 1_000_000
#: Every span starts in the 20 minutes before the tests import this module: inside every default
#: window (Jaeger's 2 days, the page's hour of endpoint statistics, ``why``'s day of baseline).
BASE = (time.time_ns() // 1_000_000_000 - 20 * 60) * 1_000_000_000


def trace_id(name: str) -> bytes:
    """A fixed 16-byte trace ID per name (the corpus is the same on every run)."""
    return hashlib.sha256(b"trace:" + name.encode()).digest()[:16]


def span_id(name: str) -> bytes:
    return hashlib.sha256(b"span:" + name.encode()).digest()[:8]


# --- the traces ------------------------------------------------------------------------------

ORDER = trace_id("order")  # web -> checkout -> payments, 200; its spans reach both replicas
PAY = trace_id("pay")  # web -> payments, 500: GatewayError, an error log with its traceback
OWN = uuid.UUID(bytes=trace_id("own"))  # a request ID that names its own trace (sent twice)
HEALTH = OWN.bytes
RETRY_1, RETRY_2 = trace_id("retry-1"), trace_id("retry-2")  # one request ID, two traces (a client retry)
TIE_1, TIE_2 = trace_id("tie-1"), trace_id("tie-2")  # two consumer roots starting at the same nanosecond
BASELINE = [trace_id(f"baseline-{i}") for i in range(8)]  # earlier GET /orders/{id}: why's "against normal"

ORDER_RID, PAY_RID, RETRY_RID = "req-contract-order", "req-contract-pay", "req-contract-retry"
# Siblings starting together under checkout's server span: the one with the larger span ID is sent
# first, so arrival order and span-ID order disagree (the contract: start, then span ID).
TIE_FIRST_SENT = bytes.fromhex("f0000000000000a6")
TIE_SENT_SECOND = bytes.fromhex("0f000000000000a7")

SERVICES = ["checkout", "inventory", "payments", "web", "worker"]


def _kv(key: str, value: str | int | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


@dataclass
class _S:
    """One span of the corpus before it is a protobuf message."""

    service: str
    trace: bytes
    span: bytes
    parent: bytes | None
    name: str
    kind: int
    start_ms: float
    duration_ms: float
    attributes: dict[str, str | int | bool] = field(default_factory=dict)
    error: str = ""  # the exception message of a failed span: status ERROR and an exception event

    def message(self) -> SpanMessage:
        start = BASE + int(self.start_ms * MS)
        message = SpanMessage(
            trace_id=self.trace,
            span_id=self.span,
            parent_span_id=self.parent or b"",
            name=self.name,
            kind=self.kind,
            start_time_unix_nano=start,
            end_time_unix_nano=start + int(self.duration_ms * MS),
        )
        message.attributes.extend(_kv(k, v) for k, v in self.attributes.items())
        if self.error:
            message.status.CopyFrom(Status(code=2, message=self.error))
            event = message.events.add(time_unix_nano=start + int(self.duration_ms * MS) - MS, name="exception")
            event.attributes.extend(
                [
                    _kv("exception.type", "GatewayError"),
                    _kv("exception.message", self.error),
                    _kv(
                        "exception.stacktrace",
                        f'Traceback (most recent call last):\n  File "pay.py"\nGatewayError: {self.error}',
                    ),
                ]
            )
        return message


def _server(
    service: str,
    trace: bytes,
    span: bytes,
    parent: bytes | None,
    method: str,
    route: str,
    path: str,
    status: int,
    start_ms: float,
    duration_ms: float,
    rid: str | None,
    error: str = "",
) -> _S:
    attributes: dict[str, str | int | bool] = {
        "http.request.method": method,
        "http.route": route,
        "url.path": path,
        "http.response.status_code": status,
    }
    if rid:
        attributes["request.id"] = rid
    return _S(service, trace, span, parent, f"{method} {route}", SERVER, start_ms, duration_ms, attributes, error)


def _client(
    service: str,
    trace: bytes,
    span: bytes,
    parent: bytes,
    method: str,
    url: str,
    status: int,
    start_ms: float,
    duration_ms: float,
    error: str = "",
) -> _S:
    attributes: dict[str, str | int | bool] = {
        "http.request.method": method,
        "url.full": url,
        "http.response.status_code": status,
    }
    return _S(service, trace, span, parent, method, CLIENT, start_ms, duration_ms, attributes, error)


def traces_request(spans: list[_S]) -> bytes:
    """One OTLP/HTTP (or gRPC) export of ``spans``: a resource per service, in first-seen order."""
    request = ExportTraceServiceRequest()
    by_service: dict[str, Any] = {}
    for s in spans:
        scope_spans = by_service.get(s.service)
        if scope_spans is None:
            rs = request.resource_spans.add()
            rs.resource.attributes.extend([_kv("service.name", s.service), _kv("host.name", f"{s.service}-1")])
            scope_spans = by_service[s.service] = rs.scope_spans.add()
            scope_spans.scope.name, scope_spans.scope.version = f"{s.service}.app", "1.0"
        scope_spans.spans.append(s.message())
    return request.SerializeToString()


@dataclass
class _L:
    service: str
    trace: bytes | None
    span: bytes | None
    at_ms: float
    level: str
    body: str
    rid: str | None = None
    exception: str = ""


def logs_request(records: list[_L]) -> bytes:
    request = ExportLogsServiceRequest()
    by_service: dict[str, Any] = {}
    for r in records:
        scope_logs = by_service.get(r.service)
        if scope_logs is None:
            rl = request.resource_logs.add()
            rl.resource.attributes.append(_kv("service.name", r.service))
            scope_logs = by_service[r.service] = rl.scope_logs.add()
            scope_logs.scope.name = f"{r.service}.logger"
        message = LogMessage(
            time_unix_nano=BASE + int(r.at_ms * MS),
            severity_number={"INFO": 9, "WARNING": 13, "ERROR": 17}[r.level],
            severity_text=r.level,
            body=AnyValue(string_value=r.body),
            trace_id=r.trace or b"",
            span_id=r.span or b"",
        )
        if r.rid:
            message.attributes.append(_kv("request.id", r.rid))
        if r.exception:
            message.attributes.extend(
                [
                    _kv("exception.type", "GatewayError"),
                    _kv("exception.message", r.exception),
                    _kv("exception.stacktrace", f"Traceback (most recent call last):\nGatewayError: {r.exception}"),
                ]
            )
        scope_logs.log_records.append(message)
    return request.SerializeToString()


@dataclass(frozen=True)
class Send:
    """One OTLP export: its signal, body, protocol, and the replicas (0, 1) that get it.

    A SQLite ``serve`` gets it once per replica listed: a batch sent to both is stored twice there too."""

    kind: str  # "traces" | "logs"
    body: bytes
    replicas: tuple[int, ...]
    grpc: bool = False


def _corpus() -> list[Send]:
    o = {n: span_id(f"order-{n}") for n in range(1, 6)}
    p = {n: span_id(f"pay-{n}") for n in range(1, 4)}
    order_web = [
        _server("web", ORDER, o[1], None, "GET", "/orders/{id}", "/orders/4711", 200, 600_000, 120, ORDER_RID),
        _client("web", ORDER, o[2], o[1], "POST", "http://checkout:8000/checkout", 200, 600_005, 100),
    ]
    order_back = [
        _server("checkout", ORDER, o[3], o[2], "POST", "/checkout", "/checkout", 200, 600_010, 90, ORDER_RID),
        _S("checkout", ORDER, TIE_FIRST_SENT, o[3], "reserve stock", INTERNAL, 600_020, 10, {"sku": "sku-9"}),
        _S("checkout", ORDER, TIE_SENT_SECOND, o[3], "price basket", INTERNAL, 600_020, 12, {"items": 3}),
        _client("checkout", ORDER, o[4], o[3], "POST", "http://payments:8000/pay", 200, 600_040, 50),
        _server("payments", ORDER, o[5], o[4], "POST", "/pay", "/pay", 200, 600_045, 40, ORDER_RID),
    ]
    order_logs_web = [_L("web", ORDER, o[1], 600_001, "INFO", "order 4711 looked up for customer 42", ORDER_RID)]
    order_logs_back = [
        _L("checkout", ORDER, TIE_FIRST_SENT, 600_021, "INFO", "reserving stock for sku-9", ORDER_RID),
        _L("payments", ORDER, o[5], 600_050, "WARNING", "card check slow for customer 42", ORDER_RID),
    ]
    pay_web = [
        _server(
            "web",
            PAY,
            p[1],
            None,
            "POST",
            "/pay/{id}",
            "/pay/77",
            500,
            900_000,
            812,
            PAY_RID,
            error="upstream timed out paying order 77",
        ),
        _client(
            "web",
            PAY,
            p[2],
            p[1],
            "POST",
            "http://payments:8000/pay",
            502,
            900_010,
            800,
            error="upstream timed out paying order 77",
        ),
    ]
    pay_back = [
        _server(
            "payments",
            PAY,
            p[3],
            p[2],
            "POST",
            "/pay",
            "/pay",
            502,
            900_020,
            780,
            PAY_RID,
            error="upstream timed out paying order 77",
        ),
    ]
    pay_logs = [
        _L(
            "payments",
            PAY,
            p[3],
            900_700,
            "ERROR",
            "payment gateway did not answer for order 77",
            PAY_RID,
            exception="upstream timed out paying order 77",
        ),
        _L("web", PAY, p[1], 900_805, "ERROR", "POST /pay/77 failed: 500", PAY_RID),
    ]
    health = [_server("web", HEALTH, span_id("health"), None, "GET", "/health", "/health", 200, 700_000, 3, str(OWN))]
    retries = [
        [
            _server(
                "web",
                t,
                span_id(f"retry-{i}"),
                None,
                "GET",
                "/orders/{id}",
                "/orders/9",
                200,
                650_000 + i * 1000,
                40 + i,
                RETRY_RID,
            )
        ]
        for i, t in enumerate((RETRY_1, RETRY_2), start=1)
    ]
    ties = [
        _S(
            "inventory",
            t,
            span_id(f"tie-{i}"),
            None,
            "process inventory.update",
            CONSUMER,
            800_000,
            25 + i,
            {"messaging.system": "kafka", "sku": f"sku-{i}"},
        )
        for i, t in enumerate((TIE_1, TIE_2), start=1)
    ]
    baseline = [
        _server(
            "web",
            t,
            span_id(f"baseline-{i}"),
            None,
            "GET",
            "/orders/{id}",
            f"/orders/{100 + i}",
            200,
            60_000 * i,
            20 + 3 * i,
            f"req-baseline-{i}",
        )
        for i, t in enumerate(BASELINE)
    ]
    nightly = [
        _L("worker", None, None, 500_000, "INFO", "nightly reindex started"),
        _L("worker", None, None, 500_100, "WARNING", "nightly reindex skipped 3 documents"),
    ]
    return [
        Send("traces", traces_request(baseline[0::2]), (0,)),
        Send("traces", traces_request(baseline[1::2]), (1,), grpc=True),
        Send("logs", logs_request(nightly), (0,)),
        Send("traces", traces_request(order_web), (0,)),
        Send("traces", traces_request(order_back), (1,)),
        Send("logs", logs_request(order_logs_web), (0,), grpc=True),
        Send("logs", logs_request(order_logs_back), (1,)),
        Send("traces", traces_request(retries[0]), (0,)),
        Send("traces", traces_request(retries[1]), (1,)),
        Send("traces", traces_request(health), (0, 1)),  # the span sent twice: once per replica
        Send("traces", traces_request(ties), (1,), grpc=True),
        Send("traces", traces_request(pay_back), (1,)),
        Send("traces", traces_request(pay_web), (0,)),
        Send("logs", logs_request(pay_logs), (1,)),
    ]


CORPUS = _corpus()


# --- otel-corr serve processes ---------------------------------------------------------------


class Serve:
    """``otel-corr serve`` on free loopback ports, on the store its arguments name (``--db`` or ``--store``)."""

    def __init__(self, tmp: Path, name: str, *store: str) -> None:
        self.name = name
        self.port, self.http, self.grpc = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.otlp = f"http://127.0.0.1:{self.http}"
        self.log = tmp / f"serve-{name}-{self.port}.log"
        self._out = open(self.log, "w")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NO_COLOR"))}
        env["PYTHONPATH"] = str(ROOT)
        argv = [sys.executable, "-m", "otel_corr", "serve", "--port", str(self.port)]
        argv += ["--otlp-http-port", str(self.http), "--otlp-grpc-port", str(self.grpc), *store]
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        try:
            for port in (self.port, self.http, self.grpc):
                wait_for_port(port, self.proc, timeout=60)
        except BaseException:
            self.stop()
            raise

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, timeout=30)

    def post(self, kind: str, body: bytes) -> httpx.Response:
        """An OTLP/HTTP protobuf export (``kind``: traces or logs)."""
        return httpx.post(
            f"{self.otlp}/v1/{kind}", content=body, headers={"content-type": "application/x-protobuf"}, timeout=60
        )

    def export_grpc(self, kind: str, body: bytes) -> None:
        """An OTLP/gRPC export; raises ``grpc.RpcError`` as an SDK's exporter would see it."""
        import grpc

        service = "trace.v1.TraceService" if kind == "traces" else "logs.v1.LogsService"
        with grpc.insecure_channel(f"127.0.0.1:{self.grpc}") as channel:
            channel.unary_unary(f"/opentelemetry.proto.collector.{service}/Export")(body, timeout=60)

    def send(self, item: Send) -> None:
        """Send one export and require its acknowledgement."""
        if item.grpc:
            self.export_grpc(item.kind, item.body)
        else:
            response = self.post(item.kind, item.body)
            assert response.status_code == 200, (self.name, response.status_code, response.text[:300])

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to finish anything."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()


def clickhouse_serve(tmp: Path, name: str, url: str) -> Serve:
    """A replica on the cluster ``url`` names (retention off: the corpus is minutes old anyway)."""
    return Serve(tmp, name, "--store", url, "--retention", "0")


def sqlite_serve(tmp: Path, name: str = "sqlite") -> Serve:
    return Serve(tmp, name, "--db", str(tmp / f"{name}.db"), "--retention", "0")


def shard_of(url_host_port: str, database: str, trace: bytes) -> bool:
    """Whether the shard at ``host:port`` holds spans of ``trace`` (its local table, asked directly)."""
    import importlib

    driver = importlib.import_module("clickhouse_driver")
    host, _, port = url_host_port.partition(":")
    client = driver.Client(host, port=int(port))
    try:
        rows = client.execute(
            f"SELECT count() FROM {database}.spans_local WHERE trace_id = unhex(%(t)s)", {"t": trace.hex()}
        )
    finally:
        client.disconnect()
    return bool(rows[0][0])


def small_trace(name: str, service: str = "shop") -> tuple[bytes, bytes, bytes]:
    """A request of its own trace: a server span, its client call and a log line under it.

    Returns (trace ID, the OTLP traces body, the OTLP logs body); the request ID is ``req-`` + ``name``."""
    trace = trace_id(name)
    root, call = span_id(f"{name}-root"), span_id(f"{name}-call")
    spans = [
        _server(service, trace, root, None, "GET", "/items/{id}", f"/items/{name}", 200, 1000, 30, f"req-{name}"),
        _client(service, trace, call, root, "GET", "http://stock:8000/stock", 200, 1005, 20),
        _S(service, trace, span_id(f"{name}-work"), root, "render", INTERNAL, 1026, 3),
    ]
    logs = [_L(service, trace, root, 1001, "INFO", f"item {name} looked up", f"req-{name}")]
    return trace, traces_request(spans), logs_request(logs)


def crossing_trace(name: str) -> tuple[bytes, bytes, bytes, bytes]:
    """A request that crosses two hosts: ``front`` calls ``back``, each host exporting its own spans (as two
    nodes' agents forward them), ``back`` logging a line under its span.

    Returns (trace ID, the front host's OTLP traces body, the back host's traces body, its logs body);
    the request ID is ``req-`` + ``name``."""
    trace = trace_id(name)
    root, call, served = span_id(f"{name}-root"), span_id(f"{name}-call"), span_id(f"{name}-served")
    front = [
        _server("front", trace, root, None, "GET", "/cart", "/cart", 200, 2000, 50, f"req-{name}"),
        _client("front", trace, call, root, "GET", "http://back:8000/prices", 200, 2005, 40),
    ]
    back = [_server("back", trace, served, call, "GET", "/prices", "/prices", 200, 2010, 30, f"req-{name}")]
    logs = [_L("back", trace, served, 2011, "INFO", f"prices for {name} read", f"req-{name}")]
    return trace, traces_request(front), traces_request(back), logs_request(logs)
