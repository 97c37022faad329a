"""Issue 18's search end to end: a real ``otel-corr serve``, and a real app instrumented with
``otel_corr.instrument`` under real uvicorn exporting its spans and log lines to it over OTLP (the default
exporters, nothing else set).  What a person on call has finds the request: a log line's words, a user ID, an
exception message; an excluded word excludes; Jaeger's tag searches find the same trace; and nothing typed into
``/api/search`` makes the server answer 500."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .collector import free_port
from .conftest import Server, server_env
from .test_server import Backend

pytestmark = pytest.mark.e2e

APP = "tests.apps.search_app:app"


class Shop:
    """The backend and the app; each request's trace ID from its ``traceresponse`` header."""

    def __init__(self, backend: Backend, app: Any) -> None:
        self.backend, self.app = backend, app

    def get(self, path: str, status: int = 200) -> str:
        r = httpx.get(f"{self.app.url}{path}", timeout=10)
        assert r.status_code == status, r.text
        return r.headers["traceresponse"].split("-")[1]

    def search(self, q: str, **params: str) -> dict[str, Any]:
        r = self.backend.get("/api/search", q=q, **params)
        assert r.status_code == 200, (q, r.status_code, r.text)
        return r.json()  # type: ignore[no-any-return]

    def found(self, q: str, **params: str) -> list[str]:
        return [row["trace_id"] for row in self.search(q, **params)["results"]]

    def wait_found(self, q: str, trace_id: str) -> dict[str, Any]:
        """Poll until ``q`` finds ``trace_id`` (the app's batch processors export every 100 ms)."""
        deadline = time.monotonic() + 20
        while True:
            rows = {row["trace_id"]: row for row in self.search(q)["results"]}
            if trace_id in rows:
                return rows[trace_id]  # type: ignore[no-any-return]
            assert time.monotonic() < deadline, (q, trace_id, rows)
            time.sleep(0.1)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:

    tmp = tmp_path_factory.mktemp("search")
    backend = Backend(tmp)
    port = free_port()
    env = server_env(
        None,
        OTEL_EXPORTER_OTLP_ENDPOINT=backend.otlp,
        OTEL_SERVICE_NAME="shop",
        OTEL_BLRP_SCHEDULE_DELAY="100",
    )
    argv = [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port)]
    app = Server(argv, env, tmp / "uvicorn.log", port)
    try:
        yield Shop(backend, app)
    finally:
        app.stop()
        backend.stop()


def test_a_log_lines_words_find_their_request(shop: Shop) -> None:
    trace_id = shop.get("/orders/4711")
    row = shop.wait_found("fraud desk 4711", trace_id)
    assert row["service"] == "shop" and row["route"] == "/orders/{order_id}" and row["status"] == 200
    (match,) = [m for m in row["matches"] if m["kind"] == "log"]
    assert match["text"] == "order 4711 held for review by the fraud desk"
    lit = [match["text"][a:b] for a, b in match["highlights"]]
    assert sorted(lit) == ["4711", "desk", "fraud"]
    # A phrase, a prefix, another case: the same request; words of another request: not it.
    assert trace_id in shop.found('"held for review" FRAUD 4711')
    assert trace_id in shop.found("fraud* 4711")
    assert trace_id not in shop.found("fraud 4712")


def test_a_user_id_set_as_an_attribute_finds_the_request(shop: Shop) -> None:
    trace_id = shop.get("/orders/5001?user=42")
    other = shop.get("/orders/5002?user=43")
    shop.wait_found("user.id=43", other)
    row = shop.wait_found("user.id=42", trace_id)
    assert other not in shop.found("user.id=42")
    assert {"kind": "attribute", "text": "user.id=42", "highlights": [[0, 10]]}.items() <= row["matches"][0].items()
    # With the span's other clauses (Jaeger's semantics: one span has them all), and a log word of the trace.
    assert trace_id in shop.found("user.id=42 service:shop status:2xx fraud")
    assert shop.found("user.id=42 status:5xx") == []


def test_an_exception_message_finds_the_failed_request(shop: Shop) -> None:
    trace_id = shop.get("/pay/77", status=500)
    row = shop.wait_found('"upstream timed out" 77', trace_id)
    assert row["status"] == 500 and row["error"] is True
    assert any(
        "GatewayError" in m["text"] and "upstream timed out paying order 77" in m["text"] for m in row["matches"]
    )
    assert trace_id in shop.found("GatewayError status:error")
    assert trace_id in shop.found("GatewayError status:5xx service:shop")


def test_an_excluded_word_excludes(shop: Shop) -> None:
    hit = shop.get("/cache/sku-1")
    shop.wait_found("cache miss sku", hit)
    # The other order logs "held for review", not "refilling": excluded words only drop the traces that have them.
    assert hit in shop.found("cache -fraud")
    assert hit not in shop.found("cache -refilling")
    assert hit not in shop.found('cache -"miss for"')


def test_a_lone_id_opens_its_trace(shop: Shop) -> None:
    trace_id = shop.get("/orders/6001")
    shop.wait_found("6001", trace_id)
    for form in (
        trace_id,
        trace_id.upper(),
        f"{trace_id[:8]}-{trace_id[8:12]}-{trace_id[12:16]}-{trace_id[16:20]}-{trace_id[20:]}",
    ):
        answer = shop.search(form)
        assert answer["opened"] == trace_id and [r["trace_id"] for r in answer["results"]] == [trace_id]


def test_jaeger_tag_searches_find_the_same_trace(shop: Shop) -> None:
    trace_id = shop.get("/orders/7001?user=4242")
    shop.wait_found("user.id=4242", trace_id)
    r = shop.backend.get("/api/traces", service="shop", tags=json.dumps({"user.id": "4242"}), lookback="1h")
    assert r.status_code == 200, r.text
    assert [t["traceID"] for t in r.json()["data"]] == [trace_id]
    now = time.time()
    window = {
        "query.startTimeMin": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600)),
        "query.startTimeMax": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 60)),
    }
    r = shop.backend.get(
        "/api/v3/trace-summaries",
        **{"query.serviceName": "shop", "query.attributes": json.dumps({"user.id": "4242"}), **window},
    )
    assert r.status_code == 200, r.text
    assert [s["traceId"] for s in r.json()["summaries"]] == [trace_id]


HOSTILE = [
    '"unbalanced',
    'fraud "desk',
    "NEAR(fraud desk)",
    "fraud AND OR NOT desk",
    "body:fraud",
    "^fraud",
    "*",
    "(",
    "'; DROP TABLE spans; --",
    "x' OR '1'='1",
    "a" * 10_240,
    " ".join(["fraud"] * 40),
    "\x01\x02\x1b[31m",
    "fraud\x00desk",
    "user.id=\x00",
    "service:\x00",
    "since:999999999999h fraud",
    "until:0001-01-01T00:00:00Z fraud",
    "duration>99999999999999999999h",
    "status:\ufffd",
    "\ud7ff\ue000\uffff",
]


@pytest.mark.parametrize("q", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_queries_get_an_answer_never_a_500(shop: Shop, q: str) -> None:
    r = shop.backend.get("/api/search", q=q)
    assert r.status_code in (200, 400), (r.status_code, r.text[:300])
    body = r.json()
    if r.status_code == 400:
        assert isinstance(body["error"], str) and "\n" not in body["error"]
    else:
        assert isinstance(body["results"], list)


@pytest.mark.parametrize("raw", ["%ff", "fraud%ed%a0%80", "%c0%ae%c0%ae", "%00", "%", "%zz", "q%"])
def test_invalid_percent_escapes_get_an_answer(shop: Shop, raw: str) -> None:
    """Bytes that are not UTF-8 (and a lone surrogate's encoding) in the query string: decoded as U+FFFD, not a 500."""
    r = httpx.get(f"{shop.backend.url}/api/search?q={raw}", timeout=10)
    assert r.status_code in (200, 400), (raw, r.status_code, r.text[:300])


def test_bad_parameters_are_a_400(shop: Shop) -> None:
    for params in ({"q": "fraud", "limit": "x"}, {"q": "fraud", "lookback": "nope"}, {"q": ""}, {}):
        r = shop.backend.get("/api/search", **params)
        assert r.status_code == 400 and r.json()["error"], (params, r.text)
