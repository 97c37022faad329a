"""The Jaeger UI that Jaeger v2.20.0 ships, in headless Chromium, against a real ``otel-corr serve``.

The UI's static build (``../shared/jaeger-ui/build`` beside the checkout) is served as a single-page
app with ``/api`` proxied to serve's query port, as Jaeger's query service serves it; the store holds
a small shop (tests/_jaeger_ui.py) posted as OTLP/JSON, spans and log records, and one test adds what a
real instrumented app under uvicorn exports.  Every test asserts
what a user sees, that the page raised no error and that no ``/api`` call failed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ._jaeger_ui import CART, CART_B64, CHECKOUT, CHECKOUT_RID, JaegerUI, shop_bodies
from .conftest import ROOT, server_env
from .test_page_browser import CHROMIUM_ARGS
from .test_server import Backend

#: Beside the checkout, or where OTEL_CORR_JAEGER_UI names (a worktree elsewhere, CI).
BUILD = Path(os.environ.get("OTEL_CORR_JAEGER_UI") or ROOT.parent / "shared" / "jaeger-ui" / "build")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (.ci/run installs it)"),
    pytest.mark.skipif(
        not (BUILD / "index.html").is_file(),
        reason=f"needs the Jaeger UI v2.20.0 static build in {BUILD} (or set OTEL_CORR_JAEGER_UI)",
    ),
]
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    backend = Backend(tmp_path_factory.mktemp("jaeger-ui"), None, "--retention", "0")
    traces, logs = shop_bodies(time.time_ns())
    assert backend.post("/v1/traces", json.dumps(traces).encode(), "application/json").status_code == 200
    assert backend.post("/v1/logs", json.dumps(logs).encode(), "application/json").status_code == 200
    backend.wait_trace(CHECKOUT, spans=3)
    yield backend
    backend.stop()


@pytest.fixture(scope="module")
def ui(shop: Backend) -> Iterator[JaegerUI]:
    server = JaegerUI(BUILD, shop.url)
    yield server
    server.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, ui: JaegerUI, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page (its own local storage); records page errors, console errors and every /api call."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, base_url=ui.url)
    pg = context.new_page()
    pg.problems = []
    pg.api_calls = []
    pg.on("pageerror", lambda e: pg.problems.append(f"pageerror: {e}"))
    pg.on("console", lambda m: pg.problems.append(f"console: {m.text}") if m.type == "error" else None)
    pg.on("requestfailed", lambda r: pg.problems.append(f"failed: {r.url}") if "/api/" in r.url else None)

    def on_response(response: Any) -> None:
        if "/api/" in response.url:
            pg.api_calls.append((response.status, response.url.removeprefix(ui.url)))

    pg.on("response", on_response)
    yield pg
    pg.screenshot(path=str(tmp_path / f"{request.node.name}.png"), full_page=True)  # kept as an artifact
    context.close()


def _assert_clean(pg: Any) -> None:
    assert pg.problems == []
    assert [call for call in pg.api_calls if call[0] >= 400] == []


def _choose(pg: Any, testid: str, text: str) -> None:
    """Pick ``text`` in one of the search form's selects, as a user types into it and clicks the option."""
    pg.locator(f'[data-testid="{testid}"]').click()
    pg.locator(f'[data-testid="{testid}"] input').fill(text)
    pg.locator(f'.ant-select-dropdown:not(.ant-select-dropdown-hidden) .ant-select-item-option[title="{text}"]').click()
    sync_api.expect(pg.locator(f'[data-testid="{testid}"]')).to_contain_text(text)


def _rows(pg: Any) -> list[dict[str, str]]:
    """The results table as the user reads it: one {column title: text} per row.

    The Errors column is shown only when a result has errors; the "+N" after the services is
    the UI's own badge, left out.
    """
    rows = pg.locator(".ant-table-tbody tr.ant-table-row")
    sync_api.expect(rows.first).to_be_visible()
    titles = [" ".join(t.split()) for t in pg.locator(".ant-table-thead th").all_inner_texts()]
    out = []
    for i in range(rows.count()):
        cells = [" ".join(text.split()) for text in rows.nth(i).locator("td").all_inner_texts()]
        row = {title: cell for title, cell in zip(titles, cells, strict=True) if title}
        row["Services"] = re.sub(r" \+\d+$", "", row["Services"])
        out.append(row)
    return out


def _summary(row: dict[str, str]) -> tuple[str, str, str, str, str]:
    return row["Trace Name"], row["Services"], row["Spans"], row.get("Errors", "-"), row["Duration"]


def _find(
    pg: Any, service: str, *, operation: str = "all", tags: str = "", min_duration: str = ""
) -> list[dict[str, str]]:
    """Fill the search form, press Find Traces, return the result rows."""
    pg.goto("/search")
    _choose(pg, "service", service)
    _choose(pg, "operation", operation)
    pg.fill('input[name="tags"]', tags)
    pg.fill('input[name="minDuration"]', min_duration)
    with pg.expect_response(lambda r: "/api/v3/trace-summaries?" in r.url) as answered:
        pg.get_by_role("button", name="Find Traces").click()
    assert answered.value.status == 200
    return _rows(pg)


def test_find_traces_by_service_operation_tag_and_min_duration(page: Any) -> None:
    """Find Traces through /api/v3/trace-summaries: each form field narrows the list as the user expects."""
    by_service = _find(page, "shop")
    assert [_summary(row) for row in by_service] == [  # newest first
        ("shop: GET /cart", "inventory (1) shop (2)", "3", "-", "12.0ms"),
        ("shop: GET /checkout/{id}", "inventory (1) shop (2)", "3", "1", "80.0ms"),
    ]
    assert page.get_by_text("2 Traces").is_visible()

    by_operation = _find(page, "shop", operation="GET /cart")
    assert [_summary(row) for row in by_operation] == [
        ("shop: GET /cart", "inventory (1) shop (2)", "3", "-", "12.0ms")
    ]

    by_tag = _find(page, "shop", tags="http.response.status_code=500")
    assert [row["Trace Name"] for row in by_tag] == ["shop: GET /checkout/{id}"]

    by_duration = _find(page, "inventory", min_duration="100ms")
    assert [_summary(row) for row in by_duration] == [("inventory: POST /restock", "inventory (1)", "1", "-", "300ms")]

    searches = [url for _, url in page.api_calls if url.startswith("/api/v3/trace-summaries?")]
    assert len(searches) == 4
    assert "query.operationName=GET+%2Fcart" in searches[1]
    assert "query.attributes=" in searches[2] and "query.durationMin=100ms" in searches[3]
    _assert_clean(page)


def test_open_a_trace_from_the_results_with_its_log_lines(page: Any) -> None:
    """A result opens the trace view (v1 /api/traces/{id}); the log records show under their spans."""
    _find(page, "shop", operation="GET /checkout/{id}")
    page.get_by_text("shop: GET /checkout/{id}").first.click()
    page.wait_for_url(f"**/trace/{CHECKOUT}")
    header = page.locator(".TracePageHeader")
    sync_api.expect(header).to_contain_text("shop: GET /checkout/{id}")
    assert "Services2" in header.inner_text().replace(" ", "") and "Total Spans3" in header.inner_text()
    names = page.locator(".span-name-wrapper")
    assert [" ".join(t.split()) for t in names.all_inner_texts()] == [
        "1 shop GET /checkout/{id} 500",  # 1: its number of children
        "1 shop GET",
        "inventory GET /stock/{sku} 200",
    ]
    names.nth(0).click()  # the span's details open with their logs unfolded
    sync_api.expect(page.get_by_role("switch", name="Logs (2)")).to_have_attribute("aria-checked", "true")
    content = page.locator(".AccordionEvents--content").first
    sync_api.expect(content).to_contain_text("checking out order 42")
    assert "payment declined for order 42" in content.inner_text() and "ERROR" in content.inner_text()
    names.nth(2).click()
    sync_api.expect(page.get_by_text("stock checked for sku 7")).to_be_visible()
    _assert_clean(page)


def test_lookup_by_uuid_request_id_and_by_base64_trace_id(page: Any) -> None:
    """The header's "Lookup by Trace ID" takes the request ID (a UUID that is not the trace ID) and base64."""
    page.goto("/search")
    page.fill('input[data-testid="idInput"]', CHECKOUT_RID)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/trace/{CHECKOUT}")  # the UI follows the trace ID the answer carries
    sync_api.expect(page.locator(".TracePageHeader")).to_contain_text("shop: GET /checkout/{id}")
    assert (200, f"/api/traces/{CHECKOUT_RID}") in page.api_calls
    page.goto("/trace/" + CART_B64)
    sync_api.expect(page.locator(".TracePageHeader")).to_contain_text("shop: GET /cart")
    _assert_clean(page)


def test_compare_two_traces(page: Any) -> None:
    """Two results ticked, Compare Traces: both headers and the diff of their span trees."""
    _find(page, "shop")
    boxes = page.locator(".ant-table-tbody .ant-checkbox-input")
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.get_by_role("button", name="Compare Traces").click()
    page.wait_for_url(f"**/trace/{CART}...{CHECKOUT}*")
    header = page.locator(".TraceDiffHeader")
    sync_api.expect(header).to_contain_text("Duration: 80.0ms")
    text = " ".join(header.inner_text().split())
    assert "A shop: GET /cart 5c0a3e4" in text and "Duration: 12.0msSpans: 3" in text
    assert "B shop: GET /checkout/{id} 4bf92f3" in text and "Duration: 80.0msSpans: 3" in text
    assert {(200, f"/api/traces/{CART}"), (200, f"/api/traces/{CHECKOUT}")} <= set(page.api_calls)
    sync_api.expect(page.get_by_text("GET /checkout/{id}").last).to_be_visible()  # in the diff graph
    _assert_clean(page)


def test_system_architecture(page: Any) -> None:
    """System Architecture (/api/dependencies): shop calls inventory, twice."""
    page.goto("/dependencies")
    sync_api.expect(page.get_by_text("inventory", exact=True)).to_be_visible()
    assert page.get_by_text("shop", exact=True).is_visible() and page.get_by_text("2", exact=True).is_visible()
    assert any(url.startswith("/api/dependencies?") for _, url in page.api_calls)
    _assert_clean(page)


def test_upload_otlp_json(page: Any, shop: Backend, tmp_path: Path) -> None:
    """The Upload tab posts OTLP/JSON to /api/transform and lists the trace; it opens with its event."""
    upload = tmp_path / "payments.json"
    span = {
        "traceId": "7" * 32,
        "spanId": "d1" * 8,
        "name": "POST /charge",
        "kind": 2,
        "startTimeUnixNano": "1764000000000000000",
        "endTimeUnixNano": "1764000000042000000",
        "status": {"code": 2, "message": "card declined"},
        "events": [{"timeUnixNano": "1764000000010000000", "name": "retry"}],
    }
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "payments"}}]}
    body = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"scope": {"name": "pay"}, "spans": [span]}]}]}
    upload.write_text(json.dumps(body))
    page.goto("/search")
    page.get_by_role("tab", name="Upload").click()
    with page.expect_response(lambda r: r.url.endswith("/api/transform")) as answered:
        page.locator('input[type="file"]').set_input_files(str(upload))
    assert answered.value.status == 200
    assert [_summary(row) for row in _rows(page)] == [("payments: POST /charge", "payments (1)", "1", "1", "42.0ms")]
    page.get_by_text("payments: POST /charge").first.click()
    page.wait_for_url("**/trace/" + "7" * 32)
    sync_api.expect(page.locator(".TracePageHeader")).to_contain_text("payments: POST /charge")
    page.locator(".span-name-wrapper").first.click()
    details = page.locator(".AccordionEvents--content")
    sync_api.expect(details).to_contain_text("event=retry")
    sync_api.expect(page.get_by_text("otel.status_description=card declined")).to_be_visible()
    _assert_clean(page)
    assert "payments" not in shop.get("/api/v3/services").json()["services"]  # converted, not stored


def test_a_real_instrumented_apps_request_found_and_read_in_the_ui(
    page: Any, shop: Backend, start_uvicorn: Any
) -> None:
    """A FastAPI app under uvicorn, instrumented by otel-corr, exports its spans and logs to serve over OTLP:
    Find Traces lists its request, and the request ID the client sent opens it with its log lines."""
    env = server_env(
        None,
        OTEL_EXPORTER_OTLP_ENDPOINT=shop.otlp,
        OTEL_LOGS_EXPORTER="otlp",
        OTEL_SERVICE_NAME="storefront",
        OTEL_CORR_LOG_FORMAT="json",
    )
    app = start_uvicorn(env, "tests.apps.stress_app:app")
    rid = "0d5c9a7e-2b1f-4c3d-8e6a-9f8b7c6d5e4f"
    answer = httpx.get(f"http://127.0.0.1:{app.port}/work/7", headers={"X-Request-ID": rid}, timeout=10)
    assert answer.status_code == 200 and answer.headers["x-request-id"] == rid
    shop.wait_trace(rid)
    deadline = time.monotonic() + 15  # log records come in their own export batches, after the span's
    while len(shop.wait_trace(rid)["spans"][0]["logs"]) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)

    (found,) = _find(page, "storefront")
    assert _summary(found)[:4] == ("storefront: GET /work/{n}", "storefront (1)", "1", "-")
    assert re.fullmatch(r"[\d.]+(ms|μs)", found["Duration"]), found
    page.fill('input[data-testid="idInput"]', rid)
    page.keyboard.press("Enter")
    page.wait_for_url("**/trace/*")
    sync_api.expect(page.locator(".TracePageHeader")).to_contain_text("storefront: GET /work/{n}")
    page.locator(".span-name-wrapper").first.click()
    content = page.locator(".AccordionEvents--content")
    sync_api.expect(content).to_contain_text("message=in loop")
    assert "message=in thread" in content.text_content() and f"request.id={rid}" in page.locator("body").text_content()
    _assert_clean(page)
