"""The trace page's Why panel in headless Chromium, against a real `otel-corr serve` fed by the demo's shop
and inventory under real uvicorn (and the search tests' posted traces).

The panel shows the route's headline (alarming: open and red; calm: folded) and its causes in order; a
cause is a link that selects its span and scrolls to it as a search result does (``#span=``); the gap's
brackets and the error's exception, frames and chain are shown; stored markup stays text; and when the why
route fails the trace page still works, with one line saying so.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from . import test_page_browser
from ._search_data import EVIL, STOCK, XSS
from ._why_data import CHECKOUT, PAY_RID, Demo, demo

# The page tests' Chromium and page fixtures (a screenshot kept per test), and their skip marks.
browser, page, pytestmark = test_page_browser.browser, test_page_browser.page, test_page_browser.pytestmark

IN_VIEW = "e => { const r = e.getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight; }"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with demo(tmp_path_factory.mktemp("why-page")) as served:
        yield served


def _answer(shop: Demo, ident: str) -> dict[str, Any]:
    r = shop.backend.get(f"/api/ui/why/{ident}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _open(page: Any, shop: Demo, ident: str) -> Any:
    page.goto(f"{shop.backend.url}/trace/{ident}")
    page.wait_for_selector("#why")
    return page.locator("#why")


def test_a_failed_request_shows_an_open_alarming_panel_with_where_it_started(shop: Demo, page: Any) -> None:
    """The demo's failed payment: the panel is open and alarming, its headline the route's, its causes in
    the route's order, the first the error with its exception, last frames (the demo's `pay`) and chain."""
    answer = _answer(shop, PAY_RID)
    panel = _open(page, shop, shop.pay)
    assert panel.evaluate("e => e.tagName") == "DETAILS" and panel.evaluate("e => e.open") is True
    assert "why-alarming" in (panel.get_attribute("class") or "")
    assert panel.locator(".why-headline").inner_text() == answer["verdict"]["headline"]
    causes = panel.locator("li.why-cause")
    assert [c.get_attribute("data-kind") for c in causes.all()] == [c["kind"] for c in answer["causes"]]
    first = causes.first
    assert first.locator(".why-kind").inner_text() == "error"
    assert first.locator(".why-title").inner_text() == answer["causes"][0]["title"]
    assert first.locator(".why-exception").inner_text() == "RuntimeError: payment provider timed out for order 1004"
    assert "_demo_shop.py" in first.locator(".why-frames").inner_text()
    assert first.locator(".why-chain a").all_inner_texts() == ["GET /pay/{order_id} (shop)"]
    assert page.problems == []


def test_clicking_a_cause_selects_its_span_and_scrolls_to_it(shop: Demo, page: Any) -> None:
    """The demo's first checkout: each cause links to its span; clicking one on a span of the inventory call
    (not the root) selects that span's row, puts #span=<id> in the URL, shows its details in view."""
    answer = _answer(shop, CHECKOUT)
    panel = _open(page, shop, CHECKOUT)
    if not answer["verdict"]["alarming"]:  # folded (on a fast machine the first checkout is ordinary): unfold it
        panel.locator("summary").click()
    # The stretch after "checking out order 1001" (first, or second to the connect wait on a slow run).
    rank = next(
        i
        for i, c in enumerate(answer["causes"])
        if c.get("gap", {}).get("before", {}).get("text") == "checking out order 1001"
    )
    cause = panel.locator("li.why-cause").nth(rank)
    assert cause.locator(".why-kind").inner_text() == "untraced"
    gap = cause.locator(".why-gap").inner_text()
    assert "checking out order 1001" in gap and "start of" in gap and "GET /stock/sku-0" in gap
    heads = panel.locator("li.why-cause > a.why-head")
    assert [h.get_attribute("data-span") for h in heads.all()] == [c["span_id"] for c in answer["causes"]]
    # A cause on a span other than the root (the inventory's, or the call to it): its row is not the first.
    target = next(c["span_id"] for c in answer["causes"] if c["span_id"] != answer["entry"]["span_id"])
    assert page.locator(".span-row.selected").count() == 0
    # Folded under the root, the span is hidden: the click unfolds it into view (it used to select a hidden row).
    page.locator(f'[data-toggle="{answer["entry"]["span_id"]}"]').click()
    assert page.locator(f'.span-row[data-span="{target}"]').is_hidden()
    panel.locator(f'li.why-cause > a.why-head[data-span="{target}"]').first.click()
    page.wait_for_selector(f'.span-row.selected[data-span="{target}"]')
    assert page.locator(".span-row.selected").is_visible()
    assert page.url.endswith(f"/trace/{CHECKOUT}#span={target}")
    assert page.locator(".span-row.selected").count() == 1
    assert target in page.locator("#span-details").inner_text()
    assert page.locator(".span-row.selected").evaluate(IN_VIEW)
    # The critical path's spans are links too; the comparison line is there.
    assert panel.locator(".why-critical a").count() == min(3, len(answer["critical_path"]))
    assert panel.locator(".why-normal").inner_text().startswith("AGAINST NORMAL")
    assert page.problems == []


def test_a_calm_request_is_folded_and_stored_markup_stays_text(shop: Demo, page: Any) -> None:
    """An ordinary request's panel is folded, its headline calm; a log line with <script> and onerror in
    it (a gap's bracket) is shown as text and runs nothing."""
    assert _answer(shop, STOCK)["verdict"]["alarming"] is False
    panel = _open(page, shop, STOCK)
    assert panel.evaluate("e => e.open") is False and "why-calm" in (panel.get_attribute("class") or "")
    assert panel.locator(".why-headline").is_visible() and not panel.locator(".why-causes").is_visible()
    panel = _open(page, shop, EVIL)
    panel.locator("summary").click()
    assert f"log line zebra {XSS} and " in panel.locator(".why-gap").inner_text()
    assert page.evaluate("window.__pwned") is None and panel.locator("script, img").count() == 0
    assert page.problems == []


def test_a_failed_why_request_leaves_the_waterfall_working(shop: Demo, page: Any) -> None:
    """The why route answering 500: one line says there is no analysis; the waterfall is all there, and a
    click on a span still selects it and shows its details."""
    page.route("**/api/ui/why/**", lambda route: route.fulfill(status=500, body="Internal Server Error"))
    panel = _open(page, shop, CHECKOUT)
    assert panel.inner_text() == "Why: no analysis for this trace (HTTP 500). The waterfall below is complete."
    rows = page.locator(".span-row")
    assert rows.count() == 3
    rows.nth(1).click()
    assert page.locator(".span-row.selected").get_attribute("data-span") == rows.nth(1).get_attribute("data-span")
    assert "Attributes" in page.locator("#span-details").inner_text()
    # The one console line is the browser's own report of the 500; nothing thrown.
    assert [p for p in page.problems if "status of 500" not in p] == []
