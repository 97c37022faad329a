"""The page's endpoints view and service map in headless Chromium, against a real `otel-corr serve` fed
real OTLP posts: every service that serves requests is listed, sparklines have a scale and say what each
point is, and the map draws who calls whom, how often, and opens a service's requests."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import test_page_browser
from .test_page_browser import _span
from .test_server import Backend

# The page tests' Chromium and page fixtures (screenshots kept), and their skip marks (no chromium).
browser, page, pytestmark = test_page_browser.browser, test_page_browser.page, test_page_browser.pytestmark

#: Calls from shop to inventory in the last hour, and one more two hours ago.
CALLS = 3


def _checkout(trace: int, start: int) -> list[dict[str, Any]]:
    """shop's GET /checkout (root) → its HTTP client span → inventory's GET /stock/{sku} (a SERVER span
    whose parent is stored: not where the request entered the system)."""
    tid, root, client, served = (
        f"{trace:032x}",
        f"{trace:08x}" + "a" * 8,
        f"{trace:08x}" + "b" * 8,
        f"{trace:08x}" + "c" * 8,
    )
    route = {"http.route": "/checkout/{id}", "http.response.status_code": 200}
    return [
        _span(tid, root, "", "GET /checkout/{id}", "shop", start, start + 60_000_000, route),
        _span(tid, client, root, "GET", "shop", start + 5_000_000, start + 45_000_000, {}, kind=3),
        _span(tid, served, client, "GET /stock/{sku}", "inventory", start + 10_000_000, start + 40_000_000, {}),
    ]


def _email(trace: int, start: int) -> list[dict[str, Any]]:
    """shop's POST /orders publishes a message (PRODUCER) that mailer consumes (CONSUMER)."""
    tid, root, sent, taken = (
        f"{trace:032x}",
        f"{trace:08x}" + "d" * 8,
        f"{trace:08x}" + "e" * 8,
        f"{trace:08x}" + "f" * 8,
    )
    return [
        _span(tid, root, "", "POST /orders", "shop", start, start + 20_000_000, {"http.response.status_code": 201}),
        _span(tid, sent, root, "publish order-email", "shop", start + 2_000_000, start + 3_000_000, {}, kind=4),
        _span(tid, taken, sent, "process order-email", "mailer", start + 9_000_000, start + 19_000_000, {}, kind=5),
    ]


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Backend]:
    backend = Backend(tmp_path, None)
    now = time.time_ns()
    spans = [s for i in range(CALLS) for s in _checkout(i + 1, now - (i + 1) * 1_000_000_000)]
    spans += _checkout(CALLS + 1, now - 2 * 3600 * 1_000_000_000)  # outside the last hour, inside 24 h
    spans += _email(CALLS + 2, now - 500_000_000)
    response = backend.post("/v1/traces", json.dumps({"resourceSpans": spans}).encode(), "application/json")
    assert response.status_code == 200, response.text
    for trace in range(1, CALLS + 3):
        backend.wait_trace(f"{trace:032x}", spans=3)
    yield backend
    backend.stop()


def test_endpoints_lists_every_service_that_serves_requests(shop: Backend, page: Any) -> None:
    """inventory (only ever called by shop) and mailer (a CONSUMER) are listed with their endpoints."""
    page.goto(shop.url + "/endpoints")
    page.wait_for_selector("#endpoints tbody tr")
    rows = [[c.strip() for c in tr.locator("td").all_inner_texts()] for tr in page.locator("#endpoints tbody tr").all()]
    assert sorted(r[0] for r in rows) == ["inventory", "mailer", "shop", "shop"]
    # Service, endpoint, requests/min, errors, p50, p95, p99: shop called inventory three times in the hour.
    assert ["inventory", "GET /stock/{sku}", f"{CALLS / 60:.2f}", "0.0%", "30.0 ms", "30.0 ms", "30.0 ms"] in [
        r[:7] for r in rows
    ]
    assert ["mailer", "process order-email"] in [r[:2] for r in rows]
    assert page.problems == []


def test_sparkline_has_a_scale_and_hover_shows_bucket_and_value(shop: Backend, page: Any) -> None:
    """Each sparkline is labelled with its highest value and 0; hovering a point shows its time and value."""
    page.goto(shop.url + "/endpoints")
    page.wait_for_selector('#endpoints tr[data-service="inventory"] svg.spark')
    count, p95 = page.locator('#endpoints tr[data-service="inventory"] svg.spark').all()
    assert count.locator(".spark-scale").all_text_contents() == [str(CALLS), "0"]
    assert p95.locator(".spark-scale").all_text_contents() == ["30.0 ms", "0"]
    tip = page.locator("#spark-tip")
    # The calls are seconds old: in the last of the 30 two-minute buckets of the default hour.
    count.locator('.spark-hit[data-bucket="29"]').hover()
    assert tip.is_visible()
    assert re.fullmatch(rf"\d\d:\d\d – \d\d:\d\d: {CALLS} requests", tip.inner_text()), tip.inner_text()
    p95.locator('.spark-hit[data-bucket="29"]').hover()
    assert re.fullmatch(r"\d\d:\d\d – \d\d:\d\d: p95 30\.0 ms", tip.inner_text()), tip.inner_text()
    p95.locator('.spark-hit[data-bucket="3"]').hover()
    assert tip.inner_text().endswith(": no requests")
    page.mouse.move(5, 5)
    assert not tip.is_visible()
    assert page.problems == []


def test_at_420_px_endpoints_and_map_scroll_inside_their_cards(shop: Backend, browser: Any) -> None:
    """On a phone-sized window the page keeps its width: the table and the map scroll in their cards."""
    context = browser.new_context(viewport={"width": 420, "height": 800})
    try:
        narrow = context.new_page()
        for path, selector in (("/endpoints", "#endpoints tbody tr"), ("/map", ".map-node")):
            narrow.goto(shop.url + path)
            narrow.wait_for_selector(selector)
            assert narrow.evaluate("document.documentElement.scrollWidth") <= 420, path
        # Still readable: inventory's row is there, scrolled to, with its p95 on one line.
        narrow.goto(shop.url + "/endpoints")
        cells = narrow.locator("#endpoints tbody tr", has_text="inventory").locator("td")
        cells.nth(5).scroll_into_view_if_needed()
        assert cells.nth(5).inner_text() == "30.0 ms"
    finally:
        context.close()


def _edge_count(page: Any, parent: str, child: str) -> str:
    label = page.locator(f'.map-count[data-parent="{parent}"][data-child="{child}"] .edge-count')
    return str(label.text_content())


def test_service_map_draws_calls_with_counts_and_a_time_range(shop: Backend, page: Any) -> None:
    """From the nav link: shop → inventory with the number of calls, layered caller left of callee;
    the time range selector widens it to the call two hours ago."""
    page.goto(shop.url + "/")
    page.get_by_role("link", name="Service map").click()
    page.wait_for_selector(".map-node")
    assert page.url == shop.url + "/map"
    nodes = page.locator(".map-node")
    assert sorted(nodes.nth(i).get_attribute("data-service") for i in range(nodes.count())) == [
        "inventory",
        "mailer",
        "shop",
    ]
    assert _edge_count(page, "shop", "inventory") == f"{CALLS} calls"
    assert _edge_count(page, "shop", "mailer") == "1 call"
    assert page.locator(".map-edge").count() == 2

    def left(service: str) -> float:
        return float(page.locator(f'.map-node[data-service="{service}"]').bounding_box()["x"])

    assert left("shop") < left("inventory") == left("mailer")
    page.select_option("select[name=range]", "86400")
    page.locator(".edge-count", has_text=f"{CALLS + 1} calls").wait_for()
    assert page.url.endswith("/map?range=86400")
    assert _edge_count(page, "shop", "inventory") == f"{CALLS + 1} calls"
    assert page.problems == []


def test_clicking_a_service_opens_its_requests(shop: Backend, page: Any) -> None:
    """A node is a link to the requests list filtered by that service."""
    page.goto(shop.url + "/map")
    page.locator('.map-node[data-service="shop"]').click()
    page.wait_for_url(shop.url + "/?service=shop")
    page.wait_for_selector("#requests tbody tr")
    services = page.locator("#requests tbody tr td:nth-child(2)").all_inner_texts()
    assert len(services) == CALLS + 2 and {s.strip() for s in services} == {"shop"}
    assert page.locator("select[name=service]").input_value() == "shop"
    assert page.problems == []


def test_a_service_only_ever_called_lists_the_requests_it_served(shop: Backend, page: Any) -> None:
    """inventory never starts a trace: its node still opens a list of the requests it served."""
    page.goto(shop.url + "/map")
    page.locator('.map-node[data-service="inventory"]').click()
    page.wait_for_url(shop.url + "/?service=inventory")
    page.wait_for_selector("#requests tbody tr")
    rows = page.locator("#requests tbody tr")
    assert rows.count() == CALLS + 1
    assert {t.strip() for t in rows.locator("td:nth-child(3)").all_inner_texts()} == {"GET /stock/{sku}"}
    assert page.problems == []


def test_service_map_draws_services_calling_each_other(tmp_path: Path, page: Any) -> None:
    """shop calls inventory twice and inventory calls shop back once: a cycle still draws both edges."""
    backend = Backend(tmp_path, None)
    try:
        now = time.time_ns()
        spans = _checkout(1, now - 3_000_000_000) + _checkout(2, now - 2_000_000_000)
        tid, root, client, served = "9" * 32, "9" * 15 + "1", "9" * 15 + "2", "9" * 15 + "3"
        spans += [
            _span(tid, root, "", "GET /restock", "inventory", now, now + 50_000_000, {}),
            _span(tid, client, root, "GET", "inventory", now + 1_000_000, now + 30_000_000, {}, kind=3),
            _span(tid, served, client, "GET /prices", "shop", now + 2_000_000, now + 20_000_000, {}),
        ]
        backend.post("/v1/traces", json.dumps({"resourceSpans": spans}).encode(), "application/json")
        for trace in (f"{1:032x}", f"{2:032x}", tid):
            backend.wait_trace(trace, spans=3)
        page.goto(backend.url + "/map")
        page.wait_for_selector(".map-node")
        assert page.locator(".map-node").count() == 2
        assert _edge_count(page, "shop", "inventory") == "2 calls"
        assert _edge_count(page, "inventory", "shop") == "1 call"
        assert page.problems == []
    finally:
        backend.stop()


def test_service_map_without_calls_says_so(tmp_path: Path, page: Any) -> None:
    """A store with one service (nothing calls another) shows the empty state, not an empty box."""
    backend = Backend(tmp_path, None)
    try:
        now = time.time_ns()
        alone = _span("1" * 32, "1" * 16, "", "GET /health", "shop", now, now + 1_000_000, {})
        backend.post("/v1/traces", json.dumps({"resourceSpans": [alone]}).encode(), "application/json")
        backend.wait_trace("1" * 32)
        page.goto(backend.url + "/map")
        page.wait_for_selector(".map-message")
        assert page.locator(".map-message").inner_text().startswith("No calls between services in the last 1 hour.")
        assert page.locator(".map-node").count() == 0
        assert page.problems == []
    finally:
        backend.stop()


def test_service_map_over_its_query_budget_shows_the_reason(tmp_path: Path, page: Any) -> None:
    """/api/dependencies answering 503 (its query ran over the budget) is a message on the page."""
    backend = Backend(tmp_path, None, "--query-timeout", "0.000001")
    try:
        assert backend.get("/api/dependencies").status_code == 503  # the real server's answer
        page.goto(backend.url + "/map")
        page.wait_for_selector(".map-message")
        message = page.locator(".map-message").inner_text()
        assert message.startswith("Could not load the service map: the query ran over its")
        assert "narrow the time range" in message
        # The 503 itself is the only error the browser may report; the page's script kept running.
        assert [p for p in page.problems if "status of 503" not in p] == []
        page.get_by_role("link", name="Endpoints").click()
        page.wait_for_selector("#endpoints")
    finally:
        backend.stop()
