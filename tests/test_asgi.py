"""The ASGI middleware as a client sees it: headers, spans, errors, websockets, lifespan, isolation."""

from __future__ import annotations

import asyncio
import logging
from importlib.metadata import version
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.routing import Route

import otel_corr
from otel_corr.fastapi import RequestIds

from .conftest import Capture

_STARLETTE_NAMES_ROUTES = tuple(int(p) for p in version("starlette").split(".")[:2]) >= (1, 7)


def _client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def _app(capture: Capture, **options: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int, ids: RequestIds) -> dict[str, str]:
        return {"request_id": ids.request_id, "trace_id": ids.trace_id}

    @app.get("/own-header")
    async def own_header() -> JSONResponse:
        return JSONResponse({}, headers={"X-Request-ID": "set-by-route", "traceresponse": "bogus"})

    @app.get("/teapot")
    async def teapot() -> PlainTextResponse:
        return PlainTextResponse("no", status_code=418)

    @app.get("/unavailable")
    async def unavailable() -> PlainTextResponse:
        return PlainTextResponse("down", status_code=503)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    @app.get("/health")
    async def health() -> str:
        return "ok"

    otel_corr.instrument(app, tracer_provider=capture.provider, **options)
    return app


async def test_fastapi_yields_exactly_one_server_span_with_stable_semconv(capture: Capture) -> None:
    """One SERVER span named 'GET /items/{item_id}' with stable HTTP attributes, and nothing else."""
    async with _client(_app(capture)) as c:
        r = await c.get("/items/7?q=1&api_key=secret", headers={"user-agent": "ua/1"})
    assert r.status_code == 200
    span = capture.one()
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET /items/{item_id}"
    a = span.attributes
    assert a["http.request.method"] == "GET"
    assert a["url.path"] == "/items/7"
    assert a["url.query"] == "q=1&api_key=REDACTED"
    assert a["url.scheme"] == "http"
    assert a["http.route"] == "/items/{item_id}"
    assert a["http.response.status_code"] == 200
    assert a["server.address"] == "testserver"
    assert a["user_agent.original"] == "ua/1"
    assert a["request.id"] == r.headers["x-request-id"]
    assert span.status.status_code is StatusCode.UNSET


async def test_fastapi_native_telemetry_is_switched_off_even_with_a_global_sdk_provider(capture: Capture) -> None:
    """FastAPI's built-in telemetry would add its own spans when an SDK provider exists: we keep one span."""
    if not hasattr(FastAPI(), "_telemetry"):
        pytest.skip("this FastAPI has no built-in telemetry to switch off")
    app = FastAPI(telemetry={"tracer_provider": capture.provider})

    @app.get("/x")
    async def x() -> dict[str, int]:
        return {}

    async with _client(app) as c:
        await c.get("/x")
    assert len(capture.spans()) >= 2  # what FastAPI does on its own (server + operation spans)
    capture.clear()
    otel_corr.instrument(app, tracer_provider=capture.provider)
    async with _client(app) as c:
        await c.get("/x")
    assert [s.name for s in capture.spans()] == ["GET /x"]
    otel_corr.uninstrument(app)
    async with _client(app) as c:
        await c.get("/x")
    assert len(capture.spans()) >= 3  # restored


async def test_route_header_is_replaced_never_duplicated(capture: Capture) -> None:
    """A route that sets X-Request-ID or traceresponse itself gets ours instead, once."""
    async with _client(_app(capture)) as c:
        r = await c.get("/own-header", headers={"X-Request-ID": "abc"})
    assert r.headers.get_list("x-request-id") == ["abc"]
    assert len(r.headers.get_list("traceresponse")) == 1
    assert r.headers["traceresponse"] != "bogus"


@pytest.mark.parametrize(
    ("path", "status", "error"), [("/teapot", 418, False), ("/unavailable", 503, True), ("/nope", 404, False)]
)
async def test_errors_carry_the_ids(capture: Capture, path: str, status: int, error: bool) -> None:
    """4xx and 5xx responses carry the IDs; 5xx marks the span as an error, 4xx does not."""
    async with _client(_app(capture)) as c:
        r = await c.get(path, headers={"X-Request-ID": "req-1"})
    assert r.status_code == status
    assert r.headers["x-request-id"] == "req-1"
    assert "traceresponse" in r.headers
    span = capture.one()
    assert span.attributes["http.response.status_code"] == status
    assert (span.status.status_code is StatusCode.ERROR) == error
    if status == 404:
        assert span.name == "GET" and "http.route" not in span.attributes


async def test_unhandled_exception_500_has_ids_error_status_and_event(capture: Capture) -> None:
    """Starlette's own 500 for an unhandled exception still carries the IDs; the span records the exception."""
    async with _client(_app(capture)) as c:
        r = await c.get("/boom", headers={"X-Request-ID": "req-err"})
    assert r.status_code == 500
    assert r.headers["x-request-id"] == "req-err"
    span = capture.one()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "RuntimeError"
    assert [e.name for e in span.events] == ["exception"]
    assert span.events[0].attributes["exception.message"] == "kaboom"


async def test_bare_asgi_exception_gets_a_500_with_ids(capture: Capture) -> None:
    """A raw ASGI app that raises before responding: we answer 500 with the IDs, then re-raise."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("raw")

    wrapped = otel_corr.instrument(app, tracer_provider=capture.provider)
    assert wrapped is not app
    async with _client(wrapped) as c:
        r = await c.get("/", headers={"X-Request-ID": "raw-1"})
    assert r.status_code == 500
    assert r.headers["x-request-id"] == "raw-1"
    assert capture.one().attributes["error.type"] == "ValueError"


@pytest.mark.parametrize(
    "value",
    [
        "x" * 5000,
        "${jndi:ldap://evil/a}",
        "<script>alert(1)</script>",
        "a\x00b",
        "\u00e9t\u00e9",
        "a\tb",
        "' OR 1=1 --",
    ],
)
async def test_hostile_request_ids_are_replaced_and_never_logged(
    capture: Capture, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    """Hostile IDs never raise, never 5xx, are never echoed or logged raw."""
    caplog.set_level(logging.DEBUG)
    async with _client(_app(capture)) as c:
        r = await c.get("/items/1", headers={"X-Request-ID": value.encode("utf-8")})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == r.json()["trace_id"]
    assert value not in caplog.text
    assert value.encode("utf-8").decode("latin-1") not in caplog.text


async def test_keep_alive_requests_never_see_each_others_ids(capture: Capture) -> None:
    """Sequential and concurrent requests on one client: each sees only its own IDs; nothing leaks out."""
    app = _app(capture)
    async with _client(app) as c:
        first = await c.get("/items/1", headers={"X-Request-ID": "first"})
        second = await c.get("/items/2")
        many = await asyncio.gather(*[c.get("/items/3", headers={"X-Request-ID": f"r{i}"}) for i in range(50)])
    assert first.json()["request_id"] == "first"
    assert second.json()["request_id"] not in ("first", "")
    assert [r.json()["request_id"] for r in many] == [f"r{i}" for i in range(50)]
    assert not otel_corr.current_ids()


async def test_request_header_written_back_for_the_app(capture: Capture) -> None:
    """The chosen ID replaces the incoming header in the scope, so the app reads the one we echo."""
    seen: list[list[tuple[bytes, bytes]]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append([h for h in scope["headers"] if h[0] == b"x-request-id"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with _client(otel_corr.instrument(app, tracer_provider=capture.provider)) as c:
        r = await c.get("/", headers={"X-Request-ID": "bad id"})
    assert seen[0] == [(b"x-request-id", r.headers["x-request-id"].encode())]
    seen.clear()
    async with _client(
        otel_corr.instrument(app, tracer_provider=capture.provider, update_request_header=False, trace_response=False)
    ) as c:
        r = await c.get("/", headers={"X-Request-ID": "bad id"})
    assert seen[0] == [(b"x-request-id", b"bad id")]
    assert "traceresponse" not in r.headers


async def test_custom_header_generator_validator_transformer(capture: Capture) -> None:
    """Hooks: another header name, our generator, our validator and transformer."""
    app = _app(
        capture,
        header_name="X-Correlation-ID",
        generator=lambda: "gen-1",
        validator=lambda v: v.startswith("ok-"),
        transformer=str.upper,
    )
    async with _client(app) as c:
        a = await c.get("/items/1", headers={"X-Correlation-ID": "ok-abc"})
        b = await c.get("/items/1", headers={"X-Correlation-ID": "nope"})
        d = await c.get("/items/1", headers={"X-Request-ID": "ignored"})
    assert a.headers["x-correlation-id"] == "OK-ABC"
    assert b.headers["x-correlation-id"] == "gen-1"
    assert d.headers["x-correlation-id"] == "gen-1"
    assert "x-request-id" not in a.headers


async def test_a_generator_returning_a_uuid_makes_it_the_trace_id(capture: Capture) -> None:
    """A custom generator that returns a UUID still gives one ID: the trace ID is that UUID."""
    import uuid

    u = uuid.uuid4()
    async with _client(_app(capture, generator=lambda: str(u))) as c:
        r = await c.get("/items/1")
    assert r.headers["x-request-id"] == str(u)
    assert capture.one().context.trace_id == u.int


async def test_broken_hooks_never_break_the_request(capture: Capture) -> None:
    """A validator, transformer or generator that raises or returns junk falls back to the trace ID."""

    def boom(*_: Any) -> Any:
        raise RuntimeError("hook")

    async with _client(_app(capture, validator=boom, generator=lambda: "bad\nvalue")) as c:
        r = await c.get("/items/1", headers={"X-Request-ID": "x"})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == r.json()["trace_id"]


async def test_excluded_urls_are_not_traced(capture: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_PYTHON_FASTAPI_EXCLUDED_URLS (contrib's name) excludes health checks."""
    monkeypatch.setenv("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "/health$")
    async with _client(_app(capture)) as c:
        await c.get("/health")
        await c.get("/items/1")
    assert [s.name for s in capture.spans()] == ["GET /items/{item_id}"]


async def test_header_capture_redacts_sensitive_headers(capture: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Captured request/response headers become attributes; authorization, cookies and *token* are redacted."""
    monkeypatch.setenv(
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", "x-tenant,authorization,x-api-token,cookie"
    )
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE", "content-type")
    async with _client(_app(capture)) as c:
        await c.get(
            "/items/1",
            headers={"X-Tenant": "acme", "Authorization": "Bearer s3cret", "X-Api-Token": "t0k", "Cookie": "sid=1"},
        )
    a = capture.one().attributes
    assert a["http.request.header.x-tenant"] == ("acme",)
    assert a["http.request.header.authorization"] == ("[REDACTED]",)
    assert a["http.request.header.x-api-token"] == ("[REDACTED]",)
    assert a["http.request.header.cookie"] == ("[REDACTED]",)
    assert a["http.response.header.content-type"] == ("application/json",)
    assert "s3cret" not in repr(dict(a))


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
async def test_websocket_handshake_gets_the_ids(capture: Capture) -> None:
    """A websocket's accept carries the request ID and traceresponse; it has one server span."""
    from starlette.testclient import TestClient

    app = FastAPI()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(otel_corr.current_ids().request_id)
        await websocket.close()

    otel_corr.instrument(app, tracer_provider=capture.provider)
    with TestClient(app) as client, client.websocket_connect("/ws", headers={"X-Request-ID": "ws-1"}) as conn:
        assert conn.receive_text() == "ws-1"
    span = capture.one()
    assert span.attributes["request.id"] == "ws-1"
    assert span.attributes["http.route"] == "/ws"


async def test_lifespan_passes_through_untouched(capture: Capture) -> None:
    """The app's own lifespan runs; no span is made for it."""
    events: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            events.append(message["type"])
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    sent: list[str] = []
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> Any:
        return inbox.pop(0)

    async def send(message: Any) -> None:
        sent.append(message["type"])

    await otel_corr.instrument(app, tracer_provider=capture.provider)({"type": "lifespan"}, receive, send)
    assert events == ["lifespan.startup", "lifespan.shutdown"]
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert capture.spans() == []


async def test_starlette_in_place_mounts_and_idempotency(capture: Capture) -> None:
    """Starlette is instrumented in place; a second instrument() adds nothing; uninstrument() undoes it."""
    from starlette.routing import Mount

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse(otel_corr.current_ids().request_id)

    inner = Starlette(routes=[Route("/users/{uid}", hello)])
    app = Starlette(routes=[Mount("/api", app=inner)])
    assert otel_corr.instrument(app, tracer_provider=capture.provider) is app
    assert otel_corr.instrument(app, tracer_provider=capture.provider) is app
    async with _client(app) as c:
        r = await c.get("/api/users/5", headers={"X-Request-ID": "s-1"})
    assert r.text == "s-1"
    span = capture.one()
    # Starlette names the matched route in the scope from 1.7 on; before, a plain Starlette app's span has no route.
    assert span.name == ("GET /api/users/{uid}" if _STARLETTE_NAMES_ROUTES else "GET")
    capture.clear()
    otel_corr.uninstrument(app)
    async with _client(app) as c:
        r = await c.get("/api/users/5")
    assert "x-request-id" not in r.headers
    assert capture.spans() == []


async def test_sdk_disabled_keeps_request_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_SDK_DISABLED=true: no spans, but IDs are still chosen, echoed and readable."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    app = FastAPI()

    @app.get("/x")
    async def x(ids: RequestIds) -> dict[str, str]:
        return {"trace_id": ids.trace_id, "request_id": ids.request_id}

    otel_corr.instrument(app)
    async with _client(app) as c:
        r = await c.get("/x", headers={"X-Request-ID": "3f2504e0-4f89-11d3-9a0c-0305e82c3301"})
        r2 = await c.get("/x")
    assert r.json() == {
        "trace_id": "3f2504e04f8911d39a0c0305e82c3301",
        "request_id": "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
    }
    assert r2.headers["x-request-id"] == r2.json()["trace_id"] != "0" * 32


async def test_a_failing_background_task_still_gets_its_error_line_with_the_ids(
    capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    # The response (200) is over before the task runs: the span has ended, but the error the
    # task raises must still be written once, by otel_corr.error, with the request's IDs.
    from starlette.background import BackgroundTask

    def fail() -> None:
        raise RuntimeError("background failed")

    async def endpoint(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok", background=BackgroundTask(fail))

    app = Starlette(routes=[Route("/", endpoint)])
    otel_corr.instrument(app, tracer_provider=capture.provider)
    caplog.set_level(logging.ERROR, logger="otel_corr.error")
    async with _client(app) as client:
        response = await client.get("/", headers={"X-Request-ID": "bg-1"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "bg-1"
    errors = [r for r in caplog.records if r.name == "otel_corr.error"]
    assert len(errors) == 1, [r.getMessage() for r in caplog.records]
    assert "RuntimeError" in errors[0].getMessage()
    assert getattr(errors[0], "request_id", None) == "bg-1"


async def test_asgi_response_header_names_are_lower_case(capture: Capture) -> None:
    # The ASGI spec wants lower-case names: Starlette's Headers(raw=...) finds ours only then.
    from starlette.datastructures import Headers

    seen: list[list[tuple[bytes, bytes]]] = []
    app = _app(capture, header_name="X-Correlation-ID")

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        async def spy(message: Any) -> None:
            if message["type"] == "http.response.start":
                seen.append(list(message["headers"]))
            await send(message)

        await app(scope, receive, spy)

    async with _client(outer) as client:
        response = await client.get("/health", headers={"X-Correlation-ID": "abc-1"})
    assert response.status_code == 200
    names = [name for name, _ in seen[0]]
    assert names == [name.lower() for name in names], names
    assert Headers(raw=seen[0]).get("x-correlation-id") == "abc-1"
