"""Propagation pieces in-process: the request-ID propagator, client spans, carry(), the env carrier, opt-outs."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI
from opentelemetry.trace import SpanKind, StatusCode

import otel_corr
from otel_corr import ConfigError
from otel_corr._context import bound_request_id
from otel_corr.propagation import RequestIdPropagator, environment, parse_links

from .conftest import Capture


@pytest.fixture
def traced(capture: Capture) -> Capture:
    """Client spans go to the provider instrument() was given."""
    return capture


def test_propagator_round_trip_validates() -> None:
    """inject writes X-Request-ID from the context; extract binds only valid values."""
    p = RequestIdPropagator()
    carrier: dict[str, str] = {}
    with bound_request_id("order-7"):
        p.inject(carrier)
    assert carrier == {"X-Request-ID": "order-7"}
    from otel_corr._context import get_request_id

    assert get_request_id(p.extract({"x-request-id": "abc"})) == "abc"
    assert get_request_id(p.extract({"x-request-id": "bad value\n"})) is None
    assert p.fields == {"x-request-id"}


def test_environment_carrier_inside_and_outside() -> None:
    """The env carrier holds TRACEPARENT and X_REQUEST_ID inside a request, nothing outside."""
    otel_corr.instrument(FastAPI(), tracer_provider=Capture().provider)
    assert environment() == {}
    tracer = Capture().provider.get_tracer("t")
    with tracer.start_as_current_span("s") as span, bound_request_id("r-1"):
        env = environment()
    assert env["X_REQUEST_ID"] == "r-1"
    assert env["TRACEPARENT"].split("-")[1] == format(span.get_span_context().trace_id, "032x")


def test_a_python_child_adopts_the_environment() -> None:
    """A child that imports otel_corr continues the parent's trace and request ID with no code."""
    code = "import otel_corr; i = otel_corr.current_ids(); print(i.trace_id, i.span_id, i.request_id)"
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    import os

    env = {**os.environ, "TRACEPARENT": tp, "X_REQUEST_ID": "from-parent"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "from-parent"]
    env["OTEL_CORR_ADOPT_ENVIRONMENT"] = "false"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[2:] == []  # request_id "" is not printed as a word


def test_httpx_client_span_and_headers_over_any_transport(traced: Capture) -> None:
    """An httpx call in a request: one CLIENT span, traceparent and X-Request-ID on the wire, even via MockTransport."""
    otel_corr.instrument(FastAPI(), tracer_provider=traced.provider)
    seen: list[httpx.Headers] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(503)

    tracer = traced.provider.get_tracer("t")
    with tracer.start_as_current_span("server") as server, bound_request_id("out-1"):
        with httpx.Client(transport=httpx.MockTransport(handler)) as client:
            client.get("https://user:pw@api.example/v1?token=abc&page=2")
    client_span = [s for s in traced.spans() if s.kind is SpanKind.CLIENT][0]
    assert seen[0]["x-request-id"] == "out-1"
    assert seen[0]["traceparent"].split("-")[2] == format(client_span.context.span_id, "016x")
    assert client_span.parent.span_id == server.get_span_context().span_id
    assert client_span.name == "GET"
    assert client_span.attributes["url.full"] == "https://api.example/v1?token=REDACTED&page=2"
    assert client_span.attributes["http.response.status_code"] == 503
    assert client_span.status.status_code is StatusCode.ERROR


async def test_async_httpx_client_span(traced: Capture) -> None:
    """The async client is covered too."""
    otel_corr.instrument(FastAPI(), tracer_provider=traced.provider)

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"rid": request.headers.get("x-request-id")})

    with bound_request_id("out-2"):
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            r = await client.get("http://svc/x")
    assert r.json() == {"rid": "out-2"}
    assert [s.kind for s in traced.spans()] == [SpanKind.CLIENT]


def test_carry_and_pools_keep_and_never_leak_ids(capture: Capture) -> None:
    """A pool thread started by one request never lends its IDs to later work; carry() binds explicitly."""
    otel_corr.instrument(FastAPI(), tracer_provider=capture.provider)
    pool = ThreadPoolExecutor(1)
    with bound_request_id("first"):
        assert pool.submit(lambda: otel_corr.current_ids().request_id).result() == "first"
    assert pool.submit(lambda: otel_corr.current_ids().request_id).result() == ""
    with bound_request_id("carried"):
        fn = otel_corr.carry(lambda: otel_corr.current_ids().request_id)
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(fn()))
    t.start()
    t.join()
    assert box == ["carried"]
    pool.shutdown()


async def test_asyncio_tasks_inherit_natively() -> None:
    """asyncio tasks copy the context: no patch needed."""
    with bound_request_id("aio"):
        got = await asyncio.gather(
            *(asyncio.create_task(asyncio.sleep(0, otel_corr.current_ids().request_id)) for _ in range(3))
        )
    assert got == ["aio"] * 3


def test_propagate_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    """propagate / OTEL_CORR_PROPAGATE accept all, none or known links; anything else fails naming it."""
    assert parse_links("threads, httpx", "x") == {"threads", "httpx"}
    assert parse_links("none", "x") == frozenset() and "celery" in parse_links(True, "x")
    monkeypatch.setenv("OTEL_CORR_PROPAGATE", "threads,carrier-pigeon")
    with pytest.raises(ConfigError, match="OTEL_CORR_PROPAGATE"):
        otel_corr.instrument(FastAPI())


def test_background_span_is_child_and_server_span_ends_first(capture: Capture) -> None:
    """In-process: the BackgroundTask span is a child of the server span and starts after it ended."""
    app = FastAPI()

    @app.get("/bg")
    async def bg(tasks: BackgroundTasks) -> dict[str, str]:
        tasks.add_task(lambda: None)
        return {}

    otel_corr.instrument(app, tracer_provider=capture.provider)

    async def go() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.get("/bg")

    asyncio.run(go())
    server = [s for s in capture.spans() if s.kind is SpanKind.SERVER][0]
    background = [s for s in capture.spans() if s.name.startswith("BackgroundTask")][0]
    assert background.parent.span_id == server.context.span_id
    assert background.start_time >= server.end_time


def test_clients_are_patched_when_imported_later_and_never_imported_by_us() -> None:
    # A fresh interpreter: the import hook must wait for the module, patch it on its first import,
    # and otel_corr itself must not drag in heavy standard modules it does not use (beyond what the
    # OpenTelemetry SDK it needs imports: before 1.42 its importlib_metadata backport
    # brings tempfile and importlib.resources).
    code = (
        "import sys\n"
        "import opentelemetry.sdk.trace\n"
        "theirs = set(sys.modules)\n"
        "import otel_corr\n"
        "from otel_corr.propagation._import_hooks import when_imported\n"
        "names = ('requests', 'httpx', 'aiohttp', 'tempfile', 'importlib.resources')\n"
        "heavy = [m for m in names if m in sys.modules and m not in theirs]\n"
        "seen = []\n"
        "when_imported('colorsys', lambda m: seen.append(m.__name__))\n"
        "assert 'colorsys' not in sys.modules and seen == []\n"
        "import colorsys\n"
        "print(heavy, seen)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] ['colorsys']"
