"""The page's one search box in headless Chromium, against a real `otel-corr serve` fed real OTLP posts.

A word of a log line and an attribute find their request, the matched words are inside ``<mark>``,
opening a result lands on the matched log line or span (selected, in view), an ID opens its trace
directly, the list's time range narrows the search, and hostile queries and hostile stored text get a
bounded message or plain text, never a crash.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from . import test_page_browser
from ._search_data import EVIL, OLD, PAY, PAY_CALL, PAY_RID, PAY_ROOT, XSS, seed
from .test_page_browser import SCREENSHOTS
from .test_server import Backend

# The page tests' Chromium and page fixtures (a screenshot kept per test), and their skip marks.
browser, page, pytestmark = test_page_browser.browser, test_page_browser.page, test_page_browser.pytestmark


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Backend, dict[str, int]]]:
    backend = Backend(tmp_path_factory.mktemp("search-page"), None, "--retention", "0")
    try:
        yield backend, seed(backend)
    finally:
        backend.stop()


def _search(page: Any, text: str) -> None:
    """Type ``text`` in the box, press Enter, and wait until the search has answered (or opened a trace)."""
    page.fill("#search-input", text)
    page.press("#search-input", "Enter")
    page.wait_for_function(
        """() => location.pathname.startsWith('/trace/') ? !!document.querySelector('.span-row')
             : !!document.querySelector('#search-results') && !document.body.innerText.includes('Searching…')"""
    )


def test_a_word_of_a_log_line_finds_its_request_and_opens_on_that_line(served: Any, page: Any) -> None:
    """`/` focuses the box; `declined` in the last hour lists the payment (not the two-day-old one), the
    line under it with `declined` in a <mark>; clicking the line opens the trace with it selected and in view."""
    backend, at = served
    page.goto(backend.url + "/?lookback=1h")
    page.wait_for_selector("#requests tbody tr")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "search-input"
    page.keyboard.type("declined")
    page.keyboard.press("Enter")
    page.wait_for_selector("#search-results tr.result-row")
    assert "q=declined" in page.url and "lookback=1h" in page.url
    rows = page.locator("#search-results tr.result-row")
    assert rows.count() == 1 and rows.first.get_attribute("data-trace") == PAY
    head = rows.first.inner_text()
    assert "shop" in head and "POST /pay/{id}" in head and "502" in head and PAY_RID in head
    line = page.locator(f'#search-results tr.result-matches[data-trace="{PAY}"] .match').first
    assert "payment declined by the gateway: GatewayError" in line.inner_text()
    assert line.locator("mark").all_inner_texts() == ["declined"]
    assert page.locator("#search-count").inner_text() == "1 request"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "search-results.png"), full_page=True)

    line.locator("a").click()
    page.wait_for_selector(".log.selected")
    assert page.url.split("#")[0].endswith("/trace/" + PAY)
    assert f"log={at['declined']}" in page.url and f"span={PAY_CALL}" in page.url
    selected = page.locator(".log.selected")
    assert selected.count() == 1 and "payment declined by the gateway" in selected.inner_text()
    assert selected.evaluate("e => e.closest('[data-logs-of]').dataset.logsOf") == PAY_CALL
    assert page.locator(".span-row.selected").get_attribute("data-span") == PAY_CALL
    assert selected.evaluate(
        "e => { const r = e.getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight; }"
    )

    # Back to the results; widened to any time, the old request is listed too, newest first.
    page.go_back()
    page.wait_for_selector("#search-results tr.result-row")
    page.select_option("select[name=range]", "")
    page.wait_for_function("() => document.querySelectorAll('#search-results tr.result-row').length === 2")
    traces = [r.get_attribute("data-trace") for r in page.locator("#search-results tr.result-row").all()]
    assert traces == [PAY, OLD] and "lookback" not in page.url
    assert page.problems == []


def test_an_attribute_finds_its_request_and_opens_on_its_span(served: Any, page: Any) -> None:
    """`user.id=42` lists the payment only, the attribute marked; opening it selects the span that has it."""
    backend, _ = served
    page.goto(backend.url + "/")
    page.wait_for_selector("#requests tbody tr")
    _search(page, "user.id=42")
    rows = page.locator("#search-results tr.result-row")
    assert [r.get_attribute("data-trace") for r in rows.all()] == [PAY]
    match = page.locator("#search-results .match").first
    assert "user.id=42" in match.inner_text()
    marks = match.locator("mark").all_inner_texts()
    assert marks and all(m in "user.id=42" for m in marks)
    rows.first.click()
    page.wait_for_selector(".span-row.selected")
    assert page.locator(".span-row.selected").get_attribute("data-span") == PAY_ROOT
    assert "user.id" in page.locator("#span-details").inner_text()
    assert page.problems == []


def test_an_exception_message_opens_on_its_event(served: Any, page: Any) -> None:
    """`upstream` (in an exception event's message) lists the payment with the event's line; opening it
    selects the span that recorded it, its details (with the event) in view.

    (The event itself is marked when the match's time is the event's: the store gives the span's start today.)
    """
    backend, _ = served
    page.goto(backend.url + "/")
    page.wait_for_selector("#requests tbody tr")
    _search(page, "upstream")
    match = page.locator(f'#search-results tr.result-matches[data-trace="{PAY}"] .match').first
    assert "GatewayError" in match.inner_text() and "upstream timed out" in match.inner_text()
    assert match.locator("mark").all_inner_texts() == ["upstream"]
    match.locator("a").click()
    page.wait_for_selector(".span-row.selected")
    assert f"span={PAY_ROOT}&event=" in page.url
    assert page.locator(".span-row.selected").get_attribute("data-span") == PAY_ROOT
    event = page.locator("#span-details .event")
    assert "exception" in event.inner_text() and "upstream timed out" in event.inner_text()
    assert event.evaluate("e => { const r = e.getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight; }")
    assert page.problems == []


def test_an_id_opens_its_trace_directly(served: Any, page: Any) -> None:
    """A request ID, a trace ID as an upper-case UUID and a span ID each open the trace (the span ID at its
    span, selected); Back returns to the list."""
    backend, _ = served
    uuid = f"{PAY[:8]}-{PAY[8:12]}-{PAY[12:16]}-{PAY[16:20]}-{PAY[20:]}".upper()
    for ident in (PAY_RID, uuid, PAY_CALL.upper()):
        page.goto(backend.url + "/")
        page.wait_for_selector("#requests tbody tr")
        _search(page, ident)
        assert page.url.split("#")[0].endswith("/trace/" + PAY), page.url
        assert page.locator(".span-row").count() == 2
        assert page.locator("#request-id").inner_text() == PAY_RID
        selected = page.locator(".span-row.selected")
        if ident == PAY_CALL.upper():  # a span ID: its span selected
            assert selected.get_attribute("data-span") == PAY_CALL
        else:
            assert selected.count() == 0
        page.go_back()
        page.wait_for_selector("#requests tbody tr")
        assert "q=" not in page.url
    assert page.problems == []


HOSTILE = [
    '"unbalanced',
    "'); DROP TABLE spans; --",
    "NEAR(payment declined) OR *",
    "user.id=",
    "-declined",  # only exclusions: a 400
    "x" * 10_000,  # past the 1024-character bound: a 400
    XSS,
    "\u202egnp.exe \x00 \U0001f600",
]


def test_hostile_queries_get_a_bounded_message_or_no_results(served: Any, page: Any) -> None:
    """Unbalanced quotes, FTS and SQL syntax, 10 KB, markup, control characters: a message under the box (a
    400, shown as text and bounded) or an empty result, never a crash; the box works again afterwards."""
    backend, _ = served
    page.goto(backend.url + "/")
    page.wait_for_selector("#requests tbody tr")
    messages = {}
    for query in HOSTILE:
        _search(page, query)
        message = page.locator("#search-message")
        if message.is_visible():
            messages[query[:20]] = message.inner_text()
            assert 0 < len(message.inner_text()) <= 301
            assert page.locator("#search-input").get_attribute("aria-invalid") == "true"
        else:
            note = page.locator("#view").inner_text()
            assert "No request matches" in note or page.locator("#search-results tr.result-row").count() > 0
    assert "-declined" in messages and "x" * 20 in messages, messages
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img[src=x]").count() == 0 and page.locator("script:not([src])").count() == 0
    _search(page, "declined")
    assert not page.locator("#search-message").is_visible()
    assert page.locator("#search-results tr.result-row").count() >= 1
    assert [p for p in page.problems if "status of 400" not in p] == []


def test_stored_markup_in_a_matched_line_stays_text(served: Any, page: Any) -> None:
    """A log line holding <img onerror> and <script> is found by its word and shown literally: the word in a
    <mark>, the markup as text, nothing run."""
    backend, _ = served
    page.goto(backend.url + "/")
    page.wait_for_selector("#requests tbody tr")
    _search(page, "zebra")
    match = page.locator(f'#search-results tr.result-matches[data-trace="{EVIL}"] .match')
    assert match.count() == 1 and XSS in match.inner_text()
    assert match.locator("mark").all_inner_texts() == ["zebra"]
    assert page.evaluate("window.__pwned") is None and page.locator("img[src=x]").count() == 0
    assert page.problems == []


def test_nothing_found_says_how_to_widen(served: Any, page: Any) -> None:
    """No match in the last 15 minutes: the page says so and suggests a longer range and fewer words."""
    backend, _ = served
    page.goto(backend.url + "/?lookback=15m")
    page.wait_for_selector("#requests tbody tr")
    _search(page, "declined nosuchword")
    text = page.locator("#view").inner_text()
    assert "No request matches declined nosuchword in this time range" in text
    assert "longer time range" in text and "fewer words" in text
    assert page.locator("#search-results tr.result-row").count() == 0
    assert page.problems == []
