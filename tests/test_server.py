"""otel-corr serve as a user meets it: a real process on free ports, real exporters and collector in front,
Jaeger's query API answered field by field, hostile bodies refused, data kept across restarts, the CLI."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ._wire import field
from .collector import free_port, wait_for_port
from .conftest import ROOT, Server, server_env

pytestmark = pytest.mark.e2e

TRACE = "0af7651916cd43dd8448eb211c80319c"


class Backend:
    def __init__(self, tmp: Path, db: Path | None = None, *extra: str) -> None:
        self.port, self.http, self.grpc = free_port(), free_port(), free_port()
        self.db = db or tmp / "traces.db"
        self.url = f"http://127.0.0.1:{self.port}"
        self.otlp = f"http://127.0.0.1:{self.http}"
        self.log = tmp / f"serve-{self.port}.log"
        self._out = open(self.log, "w")
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "otel_corr",
                "serve",
                "--port",
                str(self.port),
                "--otlp-http-port",
                str(self.http),
                "--otlp-grpc-port",
                str(self.grpc),
                "--db",
                str(self.db),
                *extra,
            ],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )
        for port in (self.port, self.http, self.grpc):
            wait_for_port(port, self.proc)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, timeout=10)

    def post(self, path: str, body: bytes, ctype: str, **headers: str) -> httpx.Response:
        return httpx.post(f"{self.otlp}{path}", content=body, headers={"content-type": ctype, **headers}, timeout=30)

    def wait_trace(self, ident: str, spans: int = 1) -> dict[str, Any]:
        deadline = time.monotonic() + 15
        while True:
            r = self.get(f"/api/traces/{ident}")
            if r.status_code == 200 and len(r.json()["data"][0]["spans"]) >= spans:
                return r.json()["data"][0]  # type: ignore[no-any-return]
            assert time.monotonic() < deadline, (r.status_code, r.text[:300])
            time.sleep(0.1)

    def stop(self) -> int:
        self.proc.terminate()
        code = self.proc.wait(20)
        self._out.close()
        return code


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    b = Backend(tmp_path)
    yield b
    if b.proc.poll() is None:
        b.stop()


def _otlp_json(
    trace_id: str = TRACE,
    *,
    attrs: list[dict[str, Any]] | None = None,
    span_id: str = "b7ad6b7169203331",
    parent: str = "",
    name: str = "GET /orders/{id}",
    end: str = "1706678909209835000",
) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "orders"}},
                        {"key": "host.name", "value": {"stringValue": "box-1"}},
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "otel_corr", "version": "0.1.0"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "parentSpanId": parent,
                                "name": name,
                                "kind": 2,
                                "startTimeUnixNano": "1706678909209712000",
                                "endTimeUnixNano": end,
                                "attributes": attrs
                                if attrs is not None
                                else [
                                    {"key": "request.id", "value": {"stringValue": "order-42.a_b"}},
                                    {"key": "http.response.status_code", "value": {"intValue": "500"}},
                                    {"key": "big", "value": {"intValue": "9223372036854775000"}},
                                    {"key": "ratio", "value": {"doubleValue": 0.5}},
                                    {"key": "ok", "value": {"boolValue": False}},
                                ],
                                "events": [
                                    {
                                        "timeUnixNano": "1706678909209800000",
                                        "name": "exception",
                                        "attributes": [
                                            {"key": "exception.type", "value": {"stringValue": "RuntimeError"}}
                                        ],
                                    }
                                ],
                                "status": {"code": 2, "message": "boom"},
                            }
                        ],
                    }
                ],
            }
        ]
    }


def test_otlp_json_ingest_and_the_v1_model_field_by_field(backend: Backend) -> None:
    """OTLP/JSON (hex IDs, string int64s) in; Jaeger's v1 envelope and span model out, as Jaeger shapes it."""
    r = backend.post("/v1/traces", json.dumps(_otlp_json()).encode(), "application/json")
    assert r.status_code == 200 and r.json() == {"partialSuccess": {}}
    body = backend.get(f"/api/traces/{TRACE.upper()}")
    assert body.status_code == 200
    envelope = body.json()
    assert {k: envelope[k] for k in ("total", "limit", "offset", "errors")} == {
        "total": 0,
        "limit": 0,
        "offset": 0,
        "errors": None,
    }
    (trace,) = envelope["data"]
    assert trace["traceID"] == TRACE and trace["warnings"] is None
    assert trace["processes"] == {
        "p1": {"serviceName": "orders", "tags": [{"key": "host.name", "type": "string", "value": "box-1"}]}
    }
    (span,) = trace["spans"]
    assert span["spanID"] == "b7ad6b7169203331" and span["operationName"] == "GET /orders/{id}"
    assert span["references"] == [] and span["processID"] == "p1"
    assert span["startTime"] == 1706678909209712 and span["duration"] == 123
    tags = {t["key"]: (t["type"], t["value"]) for t in span["tags"]}
    assert tags["span.kind"] == ("string", "server")
    assert tags["otel.scope.name"] == ("string", "otel_corr") and tags["otel.scope.version"] == ("string", "0.1.0")
    assert tags["otel.status_code"] == ("string", "ERROR") and tags["error"] == ("bool", True)
    assert tags["otel.status_description"] == ("string", "boom")
    assert tags["http.response.status_code"] == ("int64", 500)
    assert tags["big"] == ("int64", "9223372036854775000")  # too big for a JS number: a string, as Jaeger does
    assert tags["ratio"] == ("float64", 0.5) and tags["ok"] == ("bool", False)
    assert span["logs"] == [
        {
            "timestamp": 1706678909209800,
            "fields": [
                {"key": "event", "type": "string", "value": "exception"},
                {"key": "exception.type", "type": "string", "value": "RuntimeError"},
            ],
        }
    ]


def test_trace_ids_in_every_accepted_form_and_by_request_id(backend: Backend) -> None:
    """1-32 hex in any case with leading zeros optional, UUIDs with dashes, and request IDs all find the trace."""
    short = "00000000000000000000000000abcdef"
    backend.post("/v1/traces", json.dumps(_otlp_json(short)).encode(), "application/json")
    backend.post("/v1/traces", json.dumps(_otlp_json()).encode(), "application/json")
    assert backend.wait_trace("ABCDEF")["traceID"] == "0000000000abcdef"  # Jaeger prints 64-bit IDs as 16 hex
    assert backend.get(f"/api/traces/{short}").status_code == 200
    dashed = str(uuid.UUID(TRACE))
    assert backend.get(f"/api/traces/{dashed}").json()["data"][0]["traceID"] == TRACE
    assert backend.get("/api/traces/order-42.a_b").status_code == 200
    missing = backend.get("/api/traces/ffffffffffffffffffffffffffffffff")
    assert missing.status_code == 404
    assert missing.json() == {
        "data": None,
        "total": 0,
        "limit": 0,
        "offset": 0,
        "errors": [{"code": 404, "msg": "trace not found"}],
    }
    assert backend.get("/api/v3/traces/nope").json() == {"error": {"httpCode": 404, "message": "No traces found"}}


def test_search_services_operations_dependencies_v1_and_v3(backend: Backend) -> None:
    """The search endpoints of both generations."""
    child = _otlp_json(span_id="1111111111111111", parent="b7ad6b7169203331", name="SELECT orders")
    child["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"] = "db"
    child["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["kind"] = 3
    backend.post("/v1/traces", json.dumps(_otlp_json()).encode(), "application/json")
    backend.post("/v1/traces", json.dumps(child).encode(), "application/json")
    backend.wait_trace(TRACE, spans=2)
    assert backend.get("/api/services").json()["data"] == ["db", "orders"]
    assert backend.get("/api/services/orders/operations").json()["data"] == ["GET /orders/{id}"]
    assert backend.get("/api/operations", service="db").json()["data"] == [
        {"name": "SELECT orders", "spanKind": "client"}
    ]
    assert backend.get("/api/operations").status_code == 400
    start, end = "1706678900000000", "1706678999000000"
    found = backend.get(
        "/api/traces",
        service="orders",
        start=start,
        end=end,
        tags=json.dumps({"http.response.status_code": "500"}),
        minDuration="100us",
    ).json()
    assert [t["traceID"] for t in found["data"]] == [TRACE]
    assert backend.get("/api/traces", service="orders", start=start, end=end, minDuration="1s").json()["data"] == []
    assert backend.get("/api/traces", service="orders", minDuration="fast").status_code == 400
    assert backend.get("/api/traces").json()["errors"][0]["msg"] == "parameter 'service' is required"
    deps = backend.get("/api/dependencies", endTs="1706678999000", lookback="100000").json()["data"]
    assert deps == [{"parent": "orders", "child": "db", "callCount": 1}]
    assert backend.get("/api/v3/services").json() == {"services": ["db", "orders"]}
    assert backend.get("/api/v3/operations", service="db").json() == {
        "operations": [{"name": "SELECT orders", "spanKind": "client"}]
    }
    v3 = backend.get(
        "/api/v3/traces",
        **{
            "query.service_name": "orders",
            "query.start_time_min": "2024-01-31T05:28:00Z",
            "query.start_time_max": "2024-01-31T05:29:00.5Z",
        },
    )
    spans = [s for rs in v3.json()["result"]["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
    assert {s["spanId"] for s in spans} == {"b7ad6b7169203331", "1111111111111111"}
    root = [s for s in spans if s["spanId"] == "b7ad6b7169203331"][0]
    assert root["traceId"] == TRACE and root["startTimeUnixNano"] == "1706678909209712000" and root["kind"] == 2
    assert backend.get("/api/v3/traces", **{"query.service_name": "orders"}).status_code == 400
    empty = backend.get(
        "/api/v3/traces",
        **{
            "query.service_name": "nobody",
            "query.start_time_min": "2024-01-31T05:28:00Z",
            "query.start_time_max": "2024-01-31T05:29:00Z",
        },
    )
    assert empty.status_code == 404


BOMB = gzip.compress(b"\0" * (64 * 1024 * 1024))


def _with_span(span: bytes) -> bytes:
    """A well-formed ExportTraceServiceRequest around one span's bytes (which may be anything)."""
    return field(1, field(2, field(2, span)))  # request > resource spans > scope spans > span


def _protobuf_span(**fields: Any) -> bytes:
    from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage

    span = SpanMessage(trace_id=bytes.fromhex(TRACE), span_id=b"\x01" * 8, name="GET /", **fields)
    return span.SerializeToString()  # type: ignore[no-any-return]


def _bad_utf8_attribute() -> bytes:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    good = _protobuf_span(attributes=[KeyValue(key="k", value=AnyValue(string_value="zzzz"))])
    return good.replace(b"zzzz", b"\xff\xfe\xfd\xfc")


@pytest.mark.parametrize(
    ("body", "ctype", "headers", "status", "reason"),
    [
        (b"\x0a\xff\xff\xff\xff\x0f", "application/x-protobuf", {}, 400, "invalid OTLP protobuf"),
        (
            _with_span(b"\x0a\x10\xff"),
            "application/x-protobuf",
            {},
            400,
            "invalid OTLP protobuf: not an ExportTraceServiceRequest",
        ),
        (
            _with_span(_bad_utf8_attribute()),
            "application/x-protobuf",
            {},
            400,
            "invalid OTLP protobuf: not an ExportTraceServiceRequest",
        ),
        (b"{not json", "application/json", {}, 400, "invalid OTLP JSON"),
        (b"{}", "text/plain", {}, 400, "unsupported Content-Type"),
        (
            gzip.compress(b'{"resourceSpans": []}')[:-6],
            "application/json",
            {"content-encoding": "gzip"},
            400,
            "truncated gzip",
        ),
        (BOMB, "application/x-protobuf", {"content-encoding": "gzip"}, 413, "after decompression"),
        (
            json.dumps(
                _otlp_json(attrs=[{"key": f"k{i}", "value": {"intValue": "1"}} for i in range(10_000)])
            ).encode(),
            "application/json",
            {},
            400,
            "10000 attributes",
        ),
        (
            json.dumps(_otlp_json(attrs=[{"key": "v", "value": {"stringValue": "x" * 1_000_000}}])).encode(),
            "application/json",
            {},
            400,
            "limit is 65536",
        ),
        (json.dumps(_otlp_json(trace_id="abcd")).encode(), "application/json", {}, 400, "traceId must be 16 bytes"),
        (json.dumps(_otlp_json(span_id="00112233")).encode(), "application/json", {}, 400, "spanId must be 8 bytes"),
    ],
    ids=[
        "garbage-protobuf",
        "garbage-span",
        "span-attribute-not-utf8",
        "garbage-json",
        "content-type",
        "truncated-gzip",
        "gzip-bomb",
        "10k-attributes",
        "1mb-value",
        "short-trace-id",
        "short-span-id",
    ],
)
def test_bad_bodies_get_a_clear_4xx_and_nothing_is_stored(
    backend: Backend, body: bytes, ctype: str, headers: dict[str, str], status: int, reason: str
) -> None:
    """Each hostile body: a 4xx with a one-line reason, nothing stored, and the server keeps answering."""
    r = backend.post("/v1/traces", body, ctype, **headers)
    assert r.status_code == status, r.text[:300]
    if r.headers["content-type"] == "application/x-protobuf":  # OTLP/HTTP: a google.rpc.Status
        from google.rpc import status_pb2

        message = status_pb2.Status.FromString(r.content).message
    else:
        message = r.json()["message"]
    assert reason in message and "\n" not in message
    assert backend.get("/api/services").json()["data"] == []
    ok = backend.post("/v1/traces", json.dumps(_otlp_json()).encode(), "application/json")
    assert ok.status_code == 200 and backend.wait_trace(TRACE)


def test_grpc_bad_bodies_are_invalid_argument(backend: Backend) -> None:
    """OTLP/gRPC: an undecodable request or span is INVALID_ARGUMENT with the reason; then a good one is stored."""
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{backend.grpc}") as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        for body in (b"\x0a\xff\xff\xff\xff\x0f", _with_span(b"\x0a\x10\xff"), _with_span(_bad_utf8_attribute())):
            with pytest.raises(grpc.RpcError) as failed:
                export(body, timeout=10)
            assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "invalid OTLP protobuf" in failed.value.details()
        assert backend.get("/api/services").json()["data"] == []
        export(_with_span(_protobuf_span(start_time_unix_nano=1, end_time_unix_nano=2)), timeout=10)
    assert [s["operationName"] for s in backend.wait_trace(TRACE)["spans"]] == ["GET /"]


def test_partial_success_and_protobuf_response(backend: Backend) -> None:
    """A span that ends before it starts is rejected alone, reported as partial success."""
    bad = _otlp_json(end="1")
    good = _otlp_json(span_id="2222222222222222")
    bad["resourceSpans"][0]["scopeSpans"][0]["spans"] += good["resourceSpans"][0]["scopeSpans"][0]["spans"]
    r = backend.post("/v1/traces", json.dumps(bad).encode(), "application/json")
    assert r.json() == {"partialSuccess": {"rejectedSpans": "1", "errorMessage": "a span ends before it starts"}}
    assert [s["spanID"] for s in backend.wait_trace(TRACE)["spans"]] == ["2222222222222222"]


def _run_app(tmp: Path, env: dict[str, str]) -> None:
    code = (
        "import asyncio, logging, httpx, otel_corr\n"
        "from tests.apps.logging_app import app\n"
        "async def main():\n"
        "    t = httpx.ASGITransport(app=app, raise_app_exceptions=False)\n"
        "    async with httpx.AsyncClient(transport=t, base_url='http://shop') as c:\n"
        "        await c.get('/work', headers={'X-Request-ID': '3f2504e0-4f89-11d3-9a0c-0305e82c3301'})\n"
        "        await c.get('/boom', headers={'X-Request-ID': 'boom-7'})\n"
        "asyncio.run(main())\n"
        "otel_corr.flush(10)\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True, timeout=60, capture_output=True)


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_sdk_exporters_spans_and_logs_on_their_spans(backend: Backend, tmp_path: Path, protocol: str) -> None:
    """An instrumented app exporting with the SDK's OTLP exporters: spans, and its log lines under their span."""
    endpoint = backend.otlp if protocol == "http/protobuf" else f"http://127.0.0.1:{backend.grpc}"
    env = server_env(
        None,
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        OTEL_LOGS_EXPORTER="otlp",
        OTEL_SERVICE_NAME="shop",
        APP_CONFIGURE_LOGGING="1",
    )
    _run_app(tmp_path, env)
    trace = backend.wait_trace("3f2504e0-4f89-11d3-9a0c-0305e82c3301")
    (span,) = trace["spans"]
    assert span["operationName"] == "GET /work"
    messages = [{f["key"]: f["value"] for f in log["fields"]} for log in span["logs"]]
    assert {"event": "log", "level": "INFO", "message": "working on order", "logger": "shop"} in messages
    assert any(m.get("logger") == "otel_corr.access" for m in messages)
    boom = backend.wait_trace("boom-7")
    fields = [{f["key"]: f["value"] for f in log["fields"]} for log in boom["spans"][0]["logs"]]
    assert any(f.get("level") == "ERROR" and "RuntimeError" in str(f.get("stack", "")) for f in fields)


def test_rotel_in_front_gzip_protobuf(backend: Backend, tmp_path: Path) -> None:
    """A real collector (rotel) forwarding gzip'd protobuf to the backend."""
    from .collector import AGENT

    grpc_port, http_port = free_port(), free_port()
    rotel = subprocess.Popen(
        [
            str(AGENT),
            "start",
            "--otlp-grpc-endpoint",
            f"127.0.0.1:{grpc_port}",
            "--otlp-http-endpoint",
            f"127.0.0.1:{http_port}",
            "--exporter",
            "otlp",
            "--otlp-exporter-endpoint",
            backend.otlp,
            "--otlp-exporter-protocol",
            "http",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(http_port, rotel)
        env = server_env(None, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{http_port}", OTEL_SERVICE_NAME="shop")
        _run_app(tmp_path, env)
        assert backend.wait_trace("3f2504e04f8911d39a0c0305e82c3301")["spans"][0]["operationName"] == "GET /work"
    finally:
        rotel.terminate()
        rotel.wait(10)


def test_restart_keeps_data_and_cli_trace(tmp_path: Path) -> None:
    """Data survives a restart; `otel-corr trace` prints the waterfall and log lines, and exits 1 on unknown IDs."""
    # The fixture spans are from 2024: keep everything (retention 0) so that only a restart could lose them.
    first = Backend(tmp_path, None, "--retention", "0")
    first.post("/v1/traces", json.dumps(_otlp_json()).encode(), "application/json")
    first.wait_trace(TRACE)
    first.stop()
    second = Backend(tmp_path, first.db, "--retention", "0")
    try:
        assert second.wait_trace("order-42.a_b")["traceID"] == TRACE
        cli: Callable[..., subprocess.CompletedProcess[str]] = lambda *a: subprocess.run(  # noqa: E731
            [sys.executable, "-m", "otel_corr", "trace", *a, "--url", second.url],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        )
        out = cli(str(uuid.UUID(TRACE)))
        assert out.returncode == 0, out.stderr
        assert f"trace {TRACE}" in out.stdout and "orders: GET /orders/{id}" in out.stdout and "ERROR" in out.stdout
        assert f"{second.url}/trace/{TRACE}" in out.stdout
        as_json = cli("order-42.a_b", "--json")
        assert json.loads(as_json.stdout)["traceID"] == TRACE
        unknown = cli("no-such-request")
        assert unknown.returncode == 1 and "no trace found" in unknown.stderr
    finally:
        second.stop()


def test_refuses_non_loopback_without_the_flag(tmp_path: Path) -> None:
    """Binding beyond loopback needs --allow-remote; the message says so."""
    out = subprocess.run(
        [sys.executable, "-m", "otel_corr", "serve", "--host", "0.0.0.0", "--db", str(tmp_path / "x.db")],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert out.returncode == 2 and "--allow-remote" in out.stderr


def test_server_fixture_is_a_real_process(backend: Backend) -> None:
    """Sanity: the fixture runs the real command."""
    assert backend.proc.poll() is None and isinstance(Server, type)


def test_retention_by_age_prunes_at_start(tmp_path: Path) -> None:
    """Spans older than the retention are deleted (here: the 2024 fixture with the default 7 days)."""
    first = Backend(tmp_path, None, "--retention", "0")
    first.post("/v1/traces", json.dumps(_otlp_json()).encode(), "application/json")
    first.wait_trace(TRACE)
    first.stop()
    second = Backend(tmp_path, first.db, "--retention", "7d")
    try:
        assert second.get(f"/api/traces/{TRACE}").status_code == 404
    finally:
        second.stop()


def test_a_store_from_another_version_is_refused_clearly(tmp_path: Path) -> None:
    """An older store file: exit status 2 and one line saying what to do, never a traceback."""
    import sqlite3

    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE spans(x)")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "otel_corr",
            "serve",
            "--db",
            str(db),
            "--port",
            str(free_port()),
            "--otlp-http-port",
            str(free_port()),
            "--otlp-grpc-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 2 and "move it aside" in out.stderr and "Traceback" not in out.stderr
