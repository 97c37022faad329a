"""The page in headless Chromium: search, waterfall, logs under spans, span details, XSS payloads stay text;
and `otel-corr demo` end to end."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .collector import free_port
from .conftest import ROOT
from .test_server import Backend

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (.ci/run installs it)"),
]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
XSS = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
RID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    pg.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    pg.problems = problems
    yield pg
    pg.screenshot(path=str(tmp_path / f"{request.node.name}.png"), full_page=True)  # kept as an artifact
    context.close()


def _span(
    trace: str,
    span: str,
    parent: str,
    name: str,
    service: str,
    start: int,
    end: int,
    attrs: dict[str, Any],
    status: int = 0,
    kind: int = 2,
) -> dict[str, Any]:
    return {
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [
            {
                "scope": {"name": "t"},
                "spans": [
                    {
                        "traceId": trace,
                        "spanId": span,
                        "parentSpanId": parent,
                        "name": name,
                        "kind": kind,
                        "startTimeUnixNano": str(start),
                        "endTimeUnixNano": str(end),
                        "status": {"code": status},
                        "attributes": [
                            {"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
                            for k, v in attrs.items()
                        ],
                    }
                ],
            }
        ],
    }


def _log(trace: str, span: str, t: int, level: str, logger: str, body: str) -> dict[str, Any]:
    return {
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
        "scopeLogs": [
            {
                "scope": {"name": logger},
                "logRecords": [
                    {
                        "timeUnixNano": str(t),
                        "severityText": level,
                        "severityNumber": 9 if level == "INFO" else 17,
                        "body": {"stringValue": body},
                        "traceId": trace,
                        "spanId": span,
                        "attributes": [{"key": "request.id", "value": {"stringValue": RID}}],
                    }
                ],
            }
        ],
    }


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Backend]:
    backend = Backend(tmp_path, None, "--retention", "0")
    trace = RID.replace("-", "")
    now = time.time_ns()
    spans = [
        _span(
            trace,
            "a" * 16,
            "",
            "GET /checkout/{id}",
            "shop",
            now,
            now + 80_000_000,
            {"request.id": RID, "http.response.status_code": 500, "http.route": "/checkout/{id}"},
            status=2,
        ),
        _span(
            trace,
            "b" * 16,
            "a" * 16,
            "GET",
            "shop",
            now + 5_000_000,
            now + 40_000_000,
            {"url.full": "http://inventory/stock"},
            kind=3,
        ),
        _span(
            trace,
            "c" * 16,
            "b" * 16,
            XSS,
            "inventory",
            now + 10_000_000,
            now + 35_000_000,
            {"request.id": RID, "evil": XSS},
        ),
    ]
    logs = [
        _log(trace, "a" * 16, now + 1_000_000, "INFO", "shop", "checking out order 42"),
        _log(trace, "c" * 16, now + 20_000_000, "INFO", "inventory", "stock checked " + XSS),
        _log(trace, "a" * 16, now + 70_000_000, "ERROR", "otel_corr.error", "payment failed"),
    ]
    backend.post("/v1/traces", json.dumps({"resourceSpans": spans}).encode(), "application/json")
    backend.post("/v1/logs", json.dumps({"resourceLogs": logs}).encode(), "application/json")
    backend.wait_trace(RID, spans=3)
    yield backend
    backend.stop()


def test_search_a_dashed_request_id_open_the_trace_and_read_it(seeded: Backend, page: Any) -> None:
    """Requests list → search with dashes → waterfall with spans, log lines under their spans, span details."""
    response = page.goto(seeded.url + "/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    page.wait_for_selector("#requests tbody tr")
    assert page.locator("#requests tbody tr").first.inner_text().count(RID) == 1
    page.fill("#search-input", RID.upper())
    page.press("#search-input", "Enter")
    page.wait_for_selector(".span-row")
    assert page.url.endswith("/trace/" + RID.upper())
    rows = page.locator(".span-row").all_inner_texts()
    assert len(rows) == 3
    assert "shop" in rows[0] and "⚠" in rows[0] and "GET /checkout/{id}" in rows[0]
    assert "GET" in rows[1] and "http://inventory/stock" in rows[1] and "inventory" in rows[2]
    root_logs = page.locator(f'[data-logs-of="{"a" * 16}"]').inner_text()
    assert "checking out order 42" in root_logs and "payment failed" in root_logs
    assert "stock checked" in page.locator(f'[data-logs-of="{"c" * 16}"]').inner_text()
    assert page.locator("#request-id").inner_text() == RID
    page.locator(".span-row").nth(0).click()
    details = page.locator("#span-details").inner_text()
    assert "http.response.status_code" in details and "500" in details
    assert "payment failed" in details and "stock checked" not in details
    page.get_by_text("This span and its children").click()
    assert "stock checked" in page.locator("#span-details").inner_text()
    assert page.problems == []


def test_xss_payloads_stay_text(seeded: Backend, page: Any) -> None:
    """Span names, attributes and log messages with <script> and onerror= are shown as text, never run."""
    page.goto(seeded.url + "/trace/" + RID)
    page.wait_for_selector(".span-row")
    page.locator(".span-row").nth(2).click()
    body = page.locator("body").inner_text()
    assert XSS in body  # visible, literally
    assert page.evaluate("window.__pwned") is None
    assert page.locator("script:not([src])").count() == 0 and page.locator("img[src=x]").count() == 0
    assert page.problems == []


def test_filters_unknown_ids_and_endpoints(seeded: Backend, page: Any) -> None:
    """Status filter, an unknown ID, and the endpoints view with its percentiles."""
    page.goto(seeded.url + "/?status=2xx")
    page.wait_for_timeout(500)
    assert page.locator("#requests tbody tr").count() == 0
    page.goto(seeded.url + "/?status=5xx")
    page.wait_for_selector("#requests tbody tr")
    page.goto(seeded.url + "/trace/does-not-exist")
    page.wait_for_selector(".notice")
    assert "No trace found for does-not-exist" in page.locator(".notice").inner_text()
    page.goto(seeded.url + "/endpoints")
    page.wait_for_selector("#endpoints tbody tr")
    row = page.locator("#endpoints tbody tr").first.inner_text()
    assert "GET /checkout/{id}" in row and "100.0%" in row and "80.0 ms" in row
    assert page.locator("#endpoints svg.spark").count() >= 2
    # The unknown ID's 404 is the only resource error the browser may report.
    assert [p for p in page.problems if "status of 404" not in p] == []


def test_demo_end_to_end(tmp_path: Path) -> None:
    """`otel-corr demo` starts everything, prints IDs and links; each ID is found by `otel-corr trace`."""
    port = free_port()
    out = tmp_path / "demo.out"
    with open(out, "w") as handle:
        demo = subprocess.Popen(
            [sys.executable, "-m", "otel_corr", "demo", "--port", str(port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        try:
            deadline = time.monotonic() + 90
            while '"requests"' not in out.read_text() and time.monotonic() < deadline:
                assert demo.poll() is None, out.read_text()
                time.sleep(0.3)
            text = out.read_text()
            info = json.loads(text.strip().splitlines()[-1])
            assert len(info["requests"]) == 4 and f"http://127.0.0.1:{port}/trace/" in text
            for rid in info["requests"]:
                printed = subprocess.run(
                    [sys.executable, "-m", "otel_corr", "trace", rid, "--url", info["url"]],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    cwd=ROOT,
                )
                assert printed.returncode == 0, printed.stderr
            checkout = subprocess.run(
                [sys.executable, "-m", "otel_corr", "trace", info["requests"][0], "--url", info["url"]],
                capture_output=True,
                text=True,
                timeout=30,
                cwd=ROOT,
            ).stdout
            assert "shop: GET /checkout/{order_id}" in checkout and "inventory: GET /stock/{sku}" in checkout
            assert "checking out order 1001" in checkout
            assert httpx.get(info["url"] + "/api/services").json()["data"] == ["inventory", "shop"]
        finally:
            demo.send_signal(signal.SIGINT)
            demo.wait(30)
