"""The plugin's OTLP/HTTP receiver: live servers a test starts send their spans and log records here.

Started on 127.0.0.1 (a free port) the first time a test asks for an endpoint, stopped at the session's
end.  Bodies are decoded by the backend's own decoder (protobuf or OTLP/JSON, gzip or not, its limits);
a body it refuses gets a 400 with the reason, and never touches the test run.

Who a received span belongs to: the test whose own endpoint (``/t/<token>``) it came to; else the test its
trace began in; else the test running now, if the span started after that test did (a span that started
earlier belongs to a test already over).  Log records likewise, by their trace, then their time.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ._pytest_capture import Keeper, TestRun
from .server._otlp import BadRequest, TooLarge, decode_logs, decode_spans, decompress, parse_logs, parse_traces

__all__ = ["Receiver"]

_log = logging.getLogger("otel_corr")
_MAX_BODY = 16 * 1024 * 1024
_MAX_ITEMS = 100_000


class Receiver:
    """An OTLP/HTTP server on 127.0.0.1 handing what it receives to each test (see the module docstring)."""

    def __init__(self, keeper: Keeper, forward_to: str | None = None) -> None:
        self._keeper = keeper
        self._forward_to = forward_to  # the backend's OTLP base URL: every body is passed on as it came
        self._tokens: dict[str, TestRun] = {}
        #: Whether the shared endpoint was handed out (``otel_corr_session_endpoint``): a live server of a
        #: module or session may then send for any test, and may not have sent yet when one fails.
        self.shared = False
        self.last_receipt = 0.0  # time.monotonic() of the last body received
        self.last_receipt_ns = 0  # and time.time_ns(), to compare with a test's start
        self.forward_failures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # http.server's name
                receiver._post(self)

            def log_message(self, format: str, *args: Any) -> None:  # http.server's signature
                pass  # not one line on stderr per export

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="otel-corr-pytest-receiver", daemon=True
        )
        # Started without a test's owner: what it receives is placed by _place, not by the thread.
        self._thread.start()

    def endpoint(self, test: TestRun | None) -> tuple[str, dict[str, str]]:
        """(URL, environment) of the endpoint for ``test`` only (its own path), or the shared one for None."""
        base = self.url
        if test is None:
            self.shared = True
        else:
            token = secrets.token_hex(8)
            self._tokens[token] = test
            base = f"{self.url}/t/{token}"
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": base,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{base}/v1/traces",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": f"{base}/v1/logs",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
            # Exported within a tenth of a second of ending, so that they are here when the test fails.
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_BLRP_SCHEDULE_DELAY": "100",
        }
        return base, env

    def forget(self, test: TestRun) -> None:
        for token in [t for t, owner in list(self._tokens.items()) if owner is test]:
            self._tokens.pop(token, None)

    def wait_quiet(self, test: TestRun, quiet: float = 0.4, limit: float = 3.0) -> None:
        """Wait until nothing has arrived for ``quiet`` seconds (at most ``limit``): a live server's last
        batch.  Only for a test that may have a server sending (it asked for an endpoint, the shared
        endpoint is out, or something arrived while it ran): every other failing test would pay
        ``quiet`` for nothing.  (The shared endpoint counts even when nothing arrived yet: a shared
        server's export of the failing request can come after the test's report is being made.)"""
        if test not in self._tokens.values() and not self.shared and self.last_receipt_ns < test.start_ns:
            return
        start = time.monotonic()
        while True:
            now = time.monotonic()
            if now - max(self.last_receipt, start) >= quiet or now - start >= limit:
                return
            time.sleep(0.05)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # -- one request ------------------------------------------------------------------------
    def _post(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0]
        test: TestRun | None = None
        if path.startswith("/t/"):
            _, _, token, rest = path.split("/", 3) if path.count("/") >= 3 else ("", "", "", "")
            test = self._tokens.get(token)
            path = "/" + rest
        kind = {"/v1/traces": "traces", "/v1/logs": "logs"}.get(path)
        try:
            length = int(request.headers.get("content-length") or 0)
        except ValueError:
            length = -1
        if kind is None or not 0 <= length <= _MAX_BODY:
            request.close_connection = True
            self._answer(request, 404 if kind is None else 413, "text/plain", b"not an OTLP/HTTP path, or too big")
            return
        raw = request.rfile.read(length)
        ctype = request.headers.get("content-type", "")
        encoding = request.headers.get("content-encoding", "")
        self.last_receipt = time.monotonic()
        self.last_receipt_ns = time.time_ns()
        try:
            self._ingest(kind, test, decompress(raw, encoding, _MAX_BODY), ctype)
        except (BadRequest, TooLarge) as exc:
            self._answer(request, 400, "text/plain", str(exc).encode())
            return
        except Exception as exc:  # never the test run's problem
            _log.debug("otel-corr pytest: body not read", exc_info=True)
            self._answer(request, 400, "text/plain", f"not read: {type(exc).__name__}".encode())
            return
        json = ctype.split(";")[0].strip().lower() == "application/json"
        self._answer(request, 200, "application/json" if json else "application/x-protobuf", b"{}" if json else b"")
        if self._forward_to:
            self._forward(path, raw, ctype, encoding)

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, status: int, ctype: str, body: bytes) -> None:
        request.send_response(status)
        request.send_header("Content-Type", ctype)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def _ingest(self, kind: str, test: TestRun | None, body: bytes, ctype: str) -> None:
        if kind == "traces":
            spans, _, _ = decode_spans(parse_traces(body, ctype, max_items=_MAX_ITEMS))
            for span in spans:
                owner = self._place(test, int.from_bytes(span.trace_id, "big"), span.start_ns)
                if owner is not None:
                    owner.keep(owner.received_spans, span)
            return
        records, _, _ = decode_logs(parse_logs(body, ctype, max_items=_MAX_ITEMS))
        for record in records:
            trace_id = int.from_bytes(record.trace_id, "big") if record.trace_id else 0
            owner = self._place(test, trace_id, record.time_ns)
            if owner is not None:
                owner.keep(owner.received_logs, record)

    def _place(self, test: TestRun | None, trace_id: int, start_ns: int) -> TestRun | None:
        keeper = self._keeper
        owner = test or (keeper.trace_owner(trace_id) if trace_id else None)
        if owner is None:
            running = keeper.running
            if running is None or start_ns < running.start_ns:
                return None
            owner = running
        if trace_id and not owner.done:
            keeper.claim(trace_id, owner)  # its log records, and its later spans, follow it
        return owner

    def _forward(self, path: str, body: bytes, ctype: str, encoding: str) -> None:
        headers = {"Content-Type": ctype}
        if encoding:
            headers["Content-Encoding"] = encoding
        request = urllib.request.Request(f"{self._forward_to}{path}", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()
        except OSError:
            self.forward_failures += 1
