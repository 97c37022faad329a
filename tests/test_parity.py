"""ASGI and WSGI give the same answer: every one-ID row and every setting, through real servers.

The same routes run as FastAPI under uvicorn and as Flask under gunicorn (``tests/apps/parity_app.py``),
both exporting to one real collector and writing JSON log lines to a file.  Each request goes to both
over a raw socket (so hostile bytes reach the server as sent); the response headers we own, the span
as the collector received it and our log lines must be identical once the values that are random by
design (trace, span and generated request IDs, client ports, durations) are replaced by placeholders.
"""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from .collector import Collector, ReceivedSpan
from .conftest import server_env
from .test_one_id_rule import CALLER_SPAN, ROWS, TRACEPARENT

pytestmark = pytest.mark.e2e

# Settings for each server pair: every instrument() option that shapes a request, on or off.
CONFIGS: dict[str, dict[str, Any]] = {
    "a": {
        "access_log": True,
        "capture_request_headers": ["x-custom-in", "authorization", "x-internal-auth", "content-type"],
        "capture_response_headers": ["x-custom", "traceresponse"],
        "sanitize_fields": ["x-internal-auth", "signature"],
        "excluded_urls": ["/health"],
    },
    "b": {
        "header_name": "X-Correlation-ID",
        "update_request_header": False,
        "trace_response": False,
        "error_log": False,
        "access_log": True,
        "hooks": True,  # validator: starts with "ok-"; transformer: upper-case
    },
}
# Headers the servers or frameworks set their own way; everything else must be identical.
_SERVER_HEADERS = frozenset({"date", "server", "content-length", "content-type", "connection", "transfer-encoding"})
_CLIENT = re.compile(r"127\.0\.0\.1:\d+")
_DURATION = re.compile(r" [0-9.]+ms")


def _requests(header: str) -> list[tuple[str, bytes, str, list[tuple[str, str]], bytes]]:
    """``(name, method, target, headers, body)``: the one-ID table, then what the settings act on."""
    out = []
    for name, headers, _check, _warns in ROWS:
        if name == "control-chars":
            continue  # gunicorn answers 400 itself (uvicorn lets it through); in-process in test_one_id_rule
        sent = [(header if k == "X-Request-ID" else k, v) for k, v in headers.items()]
        out.append((name, b"GET", "/ids", sent, b""))
    body = json.dumps({"user": "ada", "password": "pw-in-body"}).encode()
    return out + [
        ("own-headers", b"GET", "/own", [], b""),
        ("boom", b"GET", "/boom", [(header, "boom-1")], b""),
        ("unavailable", b"GET", "/unavailable", [], b""),
        ("excluded", b"GET", "/health", [], b""),
        ("query", b"GET", "/ids?token=t0p&signature=s1g&page=2", [], b""),
        (
            "captured",
            b"GET",
            "/ids",
            [("Authorization", "Bearer au7h"), ("X-Internal-Auth", "1nt"), ("X-Custom-In", "in")],
            b"",
        ),
        ("login", b"POST", "/login", [("Content-Type", "application/json"), (header, "ok-login")], body),
        ("hook-accepted", b"GET", "/ids", [(header, "ok-abc")], b""),
        ("hook-rejected", b"GET", "/ids", [(header, "bad-abc")], b""),
        (
            "baggage",
            b"GET",
            "/ids",
            [("baggage", "a=1,bad entry,b=2"), ("traceparent", TRACEPARENT), ("tracestate", "k=v")],
            b"",
        ),
    ]


def _send(
    port: int, method: bytes, target: str, headers: list[tuple[str, str]], body: bytes
) -> tuple[int, dict[str, list[str]], bytes]:
    lines = [method + b" " + target.encode() + b" HTTP/1.1", b"Host: testhost", b"Connection: close"]
    lines += [k.encode("latin-1") + b": " + v.encode("latin-1") for k, v in headers]
    if body:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    answer: dict[str, list[str]] = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        answer.setdefault(key.strip().lower(), []).append(value.strip())
    return int(status_line.split()[1]), answer, payload


def _span_for(spans: list[ReceivedSpan], server: str, row: str) -> ReceivedSpan | None:
    found = [
        s
        for s in spans
        if s.resource.get("parity.server") == server and f"row={row}" in s.attributes.get("url.query", "").split("&")
    ]
    assert len(found) <= 1, found
    return found[0] if found else None


def _wait_for_spans(collector: Collector, servers: list[str], count: int) -> list[ReceivedSpan]:
    deadline = time.monotonic() + 20
    while True:
        spans = collector.spans()
        done = all(sum(s.resource.get("parity.server") == name for s in spans) >= count for name in servers)
        if done or time.monotonic() > deadline:
            return spans
        time.sleep(0.2)


def _observed(
    server: str,
    row: str,
    answer: tuple[int, dict[str, list[str]], bytes],
    spans: list[ReceivedSpan],
    logs: list[dict[str, Any]],
    header: str,
) -> str:
    """What a user sees of one request, with the by-design random values replaced."""
    status, headers, payload = answer
    ours = {k: v for k, v in sorted(headers.items()) if k not in _SERVER_HEADERS}
    body = json.loads(payload) if headers.get("content-type", [""])[0].startswith("application/json") else None
    span = _span_for(spans, server, row)
    seen: dict[str, Any] = {"status": status, "headers": ours, "body": body}
    ids: list[tuple[str, str]] = []
    if span is not None:
        attrs = {k: v for k, v in span.attributes.items() if not k.startswith("_")}
        seen["span"] = {
            "name": span.name,
            "kind": span.kind,
            "status": span.status,
            "parent": span.parent_id,
            "attributes": attrs,
            "events": span.events,
        }
        ids = [(span.trace_id, "<trace>"), (span.span_id, "<span>")]
        request_id = attrs.get("request.id", "")
        seen["logs"] = [
            {k: v for k, v in line.items() if k not in ("timestamp", "duration_ms", "exception", "service")}
            for line in logs
            if line.get("logger", "").startswith("otel_corr") and line.get("span_id") == span.span_id
        ]
        ids.append((request_id, "<request-id>"))
    text = json.dumps(seen, sort_keys=True)
    for value, placeholder in ids:
        if value and value != CALLER_SPAN and value not in {v for _, v in ROWS_SENT}:
            text = text.replace(value, placeholder)
    return _DURATION.sub(" <ms>", _CLIENT.sub("127.0.0.1:<port>", text))


# Values a client sent are the same in both runs: never replaced (the echo itself is compared).
ROWS_SENT = [(k, v) for _, headers, _, _ in ROWS for k, v in headers.items()]


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_asgi_and_wsgi_give_identical_headers_spans_and_log_lines(
    config: str, tmp_path: Path, collector: Collector, start_uvicorn: Any, start_gunicorn: Any
) -> None:
    """Every one-ID row and every setting: the same response headers, span and log lines from both."""
    options = CONFIGS[config]
    header = options.get("header_name", "X-Request-ID")
    requests = _requests(header)
    answers: dict[str, dict[str, Any]] = {}
    logs: dict[str, Path] = {}
    for kind, start in (("asgi", start_uvicorn), ("wsgi", start_gunicorn)):
        name = f"{kind}-{config}"
        logs[name] = tmp_path / f"{name}.jsonl"
        env = server_env(
            collector,
            OTEL_SERVICE_NAME="parity",
            OTEL_RESOURCE_ATTRIBUTES=f"parity.server={name}",
            PARITY_OPTIONS=json.dumps(options),
            PARITY_LOG=str(logs[name]),
        )
        server = start(env, f"tests.apps.parity_app:{kind}")
        answers[name] = {}
        for row, method, target, headers, body in requests:
            target = f"{target}&row={row}" if "?" in target else f"{target}?row={row}"
            answers[name][row] = _send(server.port, method, target, headers, body)
        server.sigterm()  # flushes the spans; the log file is complete

    traced = sum(1 for row, *_ in requests if not (row == "excluded" and "excluded_urls" in options))
    spans = _wait_for_spans(collector, list(answers), traced)
    mismatches = []
    for row, *_ in requests:
        seen = {}
        for name in answers:
            lines = [json.loads(line) for line in logs[name].read_text().splitlines() if line.strip()]
            seen[name] = _observed(name, row, answers[name][row], spans, lines, header)
        asgi, wsgi = seen.values()
        if asgi != wsgi:
            mismatches.append(f"{row}:\n  asgi {asgi}\n  wsgi {wsgi}")
    assert not mismatches, "\n".join(mismatches)
    # The headers we set replace the app's own; one we do not set is the app's to send.
    own = answers[f"wsgi-{config}"]["own-headers"][1]
    assert own["x-custom"] == ["c-value"]
    if options.get("trace_response", True):
        assert own["traceresponse"] != ["00-set-by-route"] and len(own["traceresponse"]) == 1
    else:
        assert own["traceresponse"] == ["00-set-by-route"]
    assert own[header.lower()] != ["set-by-route"]
    assert own["x-request-id"] == ["set-by-route" if header != "X-Request-ID" else own[header.lower()][0]]
