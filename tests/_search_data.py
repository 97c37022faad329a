"""Requests and log lines the search tests (page and CLI) find, posted over OTLP/HTTP to a real backend."""

from __future__ import annotations

import json
import time
from typing import Any

from .test_page_browser import _span
from .test_server import Backend

PAY = "7a" * 16  # POST /pay/{id}, 502: user.id=42, its gateway call's log line says the payment was declined
STOCK = "5c" * 16  # GET /stock/{sku}: another service, another user, other words
OLD = "0d" * 16  # two days ago, its log line declined too: only a wide time range finds it
EVIL = "e1" * 16  # a log line with markup in it
ESC = "ec" * 16  # a span name and a log line with terminal escapes and control characters in them
ESC_LINE = "ansiword \x1b[2J cleared \x9b31m red \x07 bell\nforged line"
PAY_ROOT, PAY_CALL = "a1" * 8, "b2" * 8
PAY_RID = "pay-7f3a"
XSS = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
DAY_NS = 86_400 * 1_000_000_000


def _log(trace: str, span: str, t: int, service: str, level: str, body: str) -> dict[str, Any]:
    return {
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeLogs": [
            {
                "scope": {"name": f"{service}.app"},
                "logRecords": [
                    {
                        "timeUnixNano": str(t),
                        "severityText": level,
                        "severityNumber": 9 if level == "INFO" else 17,
                        "body": {"stringValue": body},
                        "traceId": trace,
                        "spanId": span,
                    }
                ],
            }
        ],
    }


def seed(backend: Backend) -> dict[str, int]:
    """Post the five requests and their log lines over OTLP/HTTP; return when the declined line
    and the exception were recorded (ns)."""
    now = time.time_ns()
    at = {"pay": now - 60_000_000_000, "stock": now - 30_000_000_000, "old": now - 2 * DAY_NS, "evil": now}
    pay = at["pay"]
    at["event"] = pay + 805_000_000
    spans = [
        _span(
            PAY,
            PAY_ROOT,
            "",
            "POST /pay/{id}",
            "shop",
            pay,
            pay + 812_000_000,
            {
                "request.id": PAY_RID,
                "user.id": 42,
                "http.request.method": "POST",
                "http.route": "/pay/{id}",
                "http.response.status_code": 502,
            },
            status=2,
        ),
        _span(PAY, PAY_CALL, PAY_ROOT, "POST gateway", "shop", pay + 5_000_000, pay + 800_000_000, {}, kind=3),
        _span(
            STOCK,
            "c3" * 8,
            "",
            "GET /stock/{sku}",
            "inventory",
            at["stock"],
            at["stock"] + 20_000_000,
            {"user.id": 7, "http.response.status_code": 200},
        ),
        _span(OLD, "d4" * 8, "", "POST /pay/{id}", "shop", at["old"], at["old"] + 90_000_000, {"user.id": 9}),
        _span(EVIL, "e5" * 8, "", "GET /profile", "shop", at["evil"], at["evil"] + 9_000_000, {}),
        _span(ESC, "f6" * 8, "", "GET /\x1b]0;pwned\x07", "shop", at["evil"], at["evil"] + 3_000_000, {}),
    ]
    # The payment's root span also recorded the exception (a span event), found by its message's words.
    spans[0]["scopeSpans"][0]["spans"][0]["events"] = [
        {
            "timeUnixNano": str(at["event"]),
            "name": "exception",
            "attributes": [
                {"key": "exception.type", "value": {"stringValue": "GatewayError"}},
                {"key": "exception.message", "value": {"stringValue": "upstream timed out"}},
            ],
        }
    ]
    logs = [
        _log(PAY, PAY_ROOT, pay + 1_000_000, "shop", "INFO", "checking out basket 9"),
        _log(PAY, PAY_CALL, pay + 790_000_000, "shop", "ERROR", "payment declined by the gateway: GatewayError"),
        _log(STOCK, "c3" * 8, at["stock"] + 1_000_000, "inventory", "INFO", "stock checked for sku 12"),
        _log(OLD, "d4" * 8, at["old"] + 1_000_000, "shop", "ERROR", "payment declined long ago"),
        _log(EVIL, "e5" * 8, at["evil"] + 1_000_000, "shop", "WARN", "zebra " + XSS),
        _log(ESC, "f6" * 8, at["evil"] + 2_000_000, "shop", "WARN", ESC_LINE),
    ]
    r = backend.post("/v1/traces", json.dumps({"resourceSpans": spans}).encode(), "application/json")
    assert r.status_code == 200, r.text
    r = backend.post("/v1/logs", json.dumps({"resourceLogs": logs}).encode(), "application/json")
    assert r.status_code == 200, r.text
    for trace, count in ((PAY, 2), (STOCK, 1), (OLD, 1), (EVIL, 1), (ESC, 1)):
        backend.wait_trace(trace, count)
    return {"declined": pay + 790_000_000, "event": at["event"]}
