"""The Jaeger UI's static build served as Jaeger's query service serves it, for browser tests.

A single-page app on a loopback port: files from the build, ``index.html`` for every other path,
and ``/api/*`` reverse-proxied to ``otel-corr serve``'s query port.  Standard library only: a
threading HTTP server in the test process and ``http.client`` to the backend.
"""

from __future__ import annotations

import base64
import http.client
import mimetypes
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: Hop-by-hop headers a proxy must not forward (RFC 9110 §7.6.1), plus the length it recomputes.
_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"})


class JaegerUI:
    """Serve ``build`` on 127.0.0.1 (port 0) with ``/api`` proxied to ``upstream`` (``http://host:port``)."""

    def __init__(self, build: Path, upstream: str) -> None:
        root = build.resolve()
        target = urlsplit(upstream)
        host, port = target.hostname or "127.0.0.1", target.port or 80

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass  # the browser test asserts on responses; access lines would only be noise

            def do_GET(self) -> None:
                if self.path.startswith("/api/"):
                    self._proxy()
                else:
                    self._static()

            def do_POST(self) -> None:
                if self.path.startswith("/api/"):
                    self._proxy()
                else:
                    self._send(405, b"", "text/plain")

            def _proxy(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP | {"host"}}
                conn = http.client.HTTPConnection(host, port, timeout=30)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    upstream_response = conn.getresponse()
                    data = upstream_response.read()
                    self.send_response(upstream_response.status)
                    for key, value in upstream_response.getheaders():
                        if key.lower() not in _HOP:
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    conn.close()

            def _static(self) -> None:
                path = (root / urlsplit(self.path).path.lstrip("/")).resolve()
                if not path.is_relative_to(root) or not path.is_file():
                    path = root / "index.html"  # the app's own router handles /search, /trace/..., etc.
                ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                self._send(200, path.read_bytes(), ctype)

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="jaeger-ui", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


# --- a small shop, posted as OTLP/JSON: what the UI tests and the api_v3 tests search ---------------

CHECKOUT, CART, RESTOCK = "4bf92f3577b34da6a3ce929d0e0e4736", "5c0a3e4b1f2d47e8a9b6c7d8e9f00112", "6d1b4f5c2a3e48f9"
#: The checkout's request ID: a UUID that is *not* its trace ID (the caller sent its own traceparent).
CHECKOUT_RID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
CART_RID = "9b2f6c1e-7a4d-4e8b-8c3f-2d1e0f9a8b7c"
#: CART in unpadded standard base64, as Jaeger v2.20 also accepts a trace ID.
CART_B64 = base64.b64encode(bytes.fromhex(CART)).decode().rstrip("=")


def _attributes(values: dict[str, Any]) -> list[dict[str, Any]]:
    def value(v: Any) -> dict[str, Any]:
        return {"intValue": str(v)} if isinstance(v, int) else {"stringValue": str(v)}

    return [{"key": k, "value": value(v)} for k, v in values.items()]


def _span(
    trace: str, span: str, parent: str, name: str, kind: int, start: int, ms: float, status: int = 0, **attrs: Any
) -> dict[str, Any]:
    return {
        "traceId": trace,
        "spanId": span,
        "parentSpanId": parent,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + int(ms * 1_000_000)),
        "status": {"code": status},
        "attributes": _attributes(attrs),
    }


def _resource(service: str, key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    scope = "scopeSpans" if key == "spans" else "scopeLogs"
    return {
        "resource": {"attributes": _attributes({"service.name": service, "host.name": f"{service}-1"})},
        scope: [{"scope": {"name": service}, key: items}],
    }


def _log(trace: str, span: str, t: int, level: str, body: str, rid: str) -> dict[str, Any]:
    return {
        "timeUnixNano": str(t),
        "severityText": level,
        "severityNumber": 9 if level == "INFO" else 17,
        "body": {"stringValue": body},
        "traceId": trace,
        "spanId": span,
        "attributes": _attributes({"request.id": rid}),
    }


def shop_bodies(now_ns: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """OTLP/JSON ``(traces, logs)``: a failing checkout, a cart view and a slow restock, minutes before ``now_ns``.

    shop calls inventory in the first two (the System Architecture edge, 2 calls); the checkout
    has log lines under two of its spans.
    """
    t1, t2, t3 = now_ns - 300_000_000_000, now_ns - 240_000_000_000, now_ns - 180_000_000_000
    server, client = 2, 3
    shop = [
        _span(
            CHECKOUT,
            "a1" * 8,
            "",
            "GET /checkout/{id}",
            server,
            t1,
            80,
            2,
            **{"request.id": CHECKOUT_RID, "http.response.status_code": 500, "http.route": "/checkout/{id}"},
        ),
        _span(
            CHECKOUT, "a2" * 8, "a1" * 8, "GET", client, t1 + 5_000_000, 35, **{"url.full": "http://inventory/stock/7"}
        ),
        _span(
            CART,
            "b1" * 8,
            "",
            "GET /cart",
            server,
            t2,
            12,
            **{"request.id": CART_RID, "http.response.status_code": 200, "http.route": "/cart"},
        ),
        _span(CART, "b2" * 8, "b1" * 8, "GET", client, t2 + 2_000_000, 7, **{"url.full": "http://inventory/stock/9"}),
    ]
    inventory = [
        _span(
            CHECKOUT,
            "a3" * 8,
            "a2" * 8,
            "GET /stock/{sku}",
            server,
            t1 + 10_000_000,
            25,
            **{"request.id": CHECKOUT_RID, "http.response.status_code": 200},
        ),
        _span(
            CART,
            "b3" * 8,
            "b2" * 8,
            "GET /stock/{sku}",
            server,
            t2 + 3_000_000,
            5,
            **{"request.id": CART_RID, "http.response.status_code": 200},
        ),
        _span(
            RESTOCK.rjust(32, "0"), "c1" * 8, "", "POST /restock", server, t3, 300, **{"http.response.status_code": 200}
        ),
    ]
    logs = [
        _log(CHECKOUT, "a1" * 8, t1 + 1_000_000, "INFO", "checking out order 42", CHECKOUT_RID),
        _log(CHECKOUT, "a1" * 8, t1 + 70_000_000, "ERROR", "payment declined for order 42", CHECKOUT_RID),
    ]
    inventory_logs = [_log(CHECKOUT, "a3" * 8, t1 + 20_000_000, "INFO", "stock checked for sku 7", CHECKOUT_RID)]
    traces = {"resourceSpans": [_resource("shop", "spans", shop), _resource("inventory", "spans", inventory)]}
    records = {
        "resourceLogs": [_resource("shop", "logRecords", logs), _resource("inventory", "logRecords", inventory_logs)]
    }
    return traces, records
