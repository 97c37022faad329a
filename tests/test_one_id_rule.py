"""The one-ID rule, every row, for ASGI (FastAPI) and WSGI (Flask), as a client sees it."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from flask import Flask, jsonify

import otel_corr

from .conftest import Capture

HEX32 = re.compile(r"[0-9a-f]{32}")
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
U = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def _fastapi(capture: Capture) -> httpx.Client | Any:
    app = FastAPI()

    @app.get("/ids")
    async def ids() -> dict[str, str]:
        i = otel_corr.current_ids()
        return {"trace_id": i.trace_id, "span_id": i.span_id, "request_id": i.request_id}

    otel_corr.instrument(app, tracer_provider=capture.provider)
    return app


def _flask(capture: Capture) -> Any:
    app = Flask(__name__)

    @app.get("/ids")
    def ids() -> Any:
        i = otel_corr.current_ids()
        return jsonify(trace_id=i.trace_id, span_id=i.span_id, request_id=i.request_id)

    otel_corr.instrument(app, tracer_provider=capture.provider)
    return app


async def _get(kind: str, capture: Capture, headers: dict[str, str]) -> httpx.Response:
    if kind == "asgi":
        transport: Any = httpx.ASGITransport(app=_fastapi(capture))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.get("/ids", headers=headers)
    with httpx.Client(transport=httpx.WSGITransport(app=_flask(capture)), base_url="http://testserver") as client:
        return client.get("/ids", headers=headers)


Check = Callable[[httpx.Response, Any, dict[str, str]], None]


def _new_trace_echoed(r: httpx.Response, span: Any, sent: dict[str, str]) -> None:
    tid = format(span.context.trace_id, "032x")
    assert span.parent is None
    assert r.headers["x-request-id"] == tid
    assert HEX32.fullmatch(tid) and tid != CALLER_TRACE


def _trace_is_request_id(r: httpx.Response, span: Any, sent: dict[str, str]) -> None:
    rid = sent["X-Request-ID"]
    assert span.context.trace_id == uuid.UUID(rid.replace("-", "")).int
    assert span.parent is None  # a root span: no invented parent
    assert r.headers["x-request-id"] == rid  # exactly as sent


def _callers_trace_trace_id_echoed(r: httpx.Response, span: Any, sent: dict[str, str]) -> None:
    assert format(span.context.trace_id, "032x") == CALLER_TRACE
    assert format(span.parent.span_id, "016x") == CALLER_SPAN
    assert r.headers["x-request-id"] == CALLER_TRACE


def _callers_trace_request_id_echoed(r: httpx.Response, span: Any, sent: dict[str, str]) -> None:
    assert format(span.context.trace_id, "032x") == CALLER_TRACE
    assert format(span.parent.span_id, "016x") == CALLER_SPAN
    assert r.headers["x-request-id"] == sent["X-Request-ID"]


def _new_trace_request_id_echoed(r: httpx.Response, span: Any, sent: dict[str, str]) -> None:
    assert span.parent is None
    assert r.headers["x-request-id"] == sent["X-Request-ID"]
    assert format(span.context.trace_id, "032x") != CALLER_TRACE


ROWS: list[tuple[str, dict[str, str], Check, bool]] = [
    ("nothing", {}, _new_trace_echoed, False),
    ("uuid-lower", {"X-Request-ID": U}, _trace_is_request_id, False),
    ("uuid-upper", {"X-Request-ID": U.upper()}, _trace_is_request_id, False),
    ("uuid-no-dashes", {"X-Request-ID": U.replace("-", "")}, _trace_is_request_id, False),
    ("hex32-mixed-case", {"X-Request-ID": "ABCDEF0123456789abcdef0123456789"}, _trace_is_request_id, False),
    ("traceparent-only", {"traceparent": TRACEPARENT}, _callers_trace_trace_id_echoed, False),
    ("traceparent+uuid", {"traceparent": TRACEPARENT, "X-Request-ID": U}, _callers_trace_request_id_echoed, False),
    (
        "traceparent+text",
        {"traceparent": TRACEPARENT, "X-Request-ID": "order-42.a_b"},
        _callers_trace_request_id_echoed,
        False,
    ),
    ("text-id", {"X-Request-ID": "order-42.a_b"}, _new_trace_request_id_echoed, False),
    ("control-chars", {"X-Request-ID": "abc\x01def"}, _new_trace_echoed, True),
    ("too-long", {"X-Request-ID": "a" * 129}, _new_trace_echoed, True),
    ("bad-chars", {"X-Request-ID": "a/b c"}, _new_trace_echoed, True),
    ("zero-uuid", {"X-Request-ID": str(uuid.UUID(int=0))}, _new_trace_echoed, True),
    ("zero-hex", {"X-Request-ID": "0" * 32}, _new_trace_echoed, True),
    ("bad-traceparent", {"traceparent": "00-zz-yy-01"}, _new_trace_echoed, True),
    ("zero-traceparent", {"traceparent": f"00-{'0' * 32}-{CALLER_SPAN}-01"}, _new_trace_echoed, True),
]


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
@pytest.mark.parametrize(("headers", "check", "warns"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
async def test_one_id_rule(
    kind: str, headers: dict[str, str], check: Check, warns: bool, capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    """Each row of the one-ID table: the trace, the echoed ID, and one value-free warning when rejected."""
    caplog.set_level(logging.WARNING, logger="otel_corr")
    r = await _get(kind, capture, headers)
    assert r.status_code == 200
    span = capture.one()
    check(r, span, headers)
    body = r.json()
    # Whatever the rule, the request ID is on the span and in current_ids().
    assert span.attributes["request.id"] == r.headers["x-request-id"] == body["request_id"]
    assert body["trace_id"] == format(span.context.trace_id, "032x")
    assert body["span_id"] == format(span.context.span_id, "016x")
    assert r.headers["traceresponse"] == f"00-{body['trace_id']}-{body['span_id']}-{int(span.context.trace_flags):02x}"
    warnings = [rec for rec in caplog.records if rec.name == "otel_corr" and rec.levelno == logging.WARNING]
    assert len(warnings) == (1 if warns else 0)
    for rec in warnings:
        text = rec.getMessage()
        for value in headers.values():
            assert value not in text
