"""The server span as the SDK's pipeline sees it.

otel-corr records its server span without the SDK ``Span`` class (``otel_corr/_span.py``);
these tests hold it to what an SDK span would give processors and exporters: the
provider's sampler, ID generator, limits, resource and processors, the app's own
attributes/events/links/status through the span API, and ``ReadableSpan`` at the end.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags, TraceState

import otel_corr
from otel_corr._request import Runtime, finish_span
from otel_corr._settings import resolve_settings
from otel_corr._span import RequestSpan, recorder_for

_ODD = object()
UUID = "0af76519-16cd-43dd-8448-eb211c80319c"
TRACE_HEX = "0af7651916cd43dd8448eb211c80319c"


class _Sdk:
    """A provider with an in-memory exporter, and the exporter."""

    def __init__(self, **provider_args: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(**provider_args)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


def _app(sdk: _Sdk) -> FastAPI:
    app = FastAPI()

    @app.get("/work")
    async def work() -> dict[str, str]:
        span = trace.get_current_span()
        span.set_attribute("tenant", "acme")
        span.set_attribute("tags", ["a", "b"])  # lists become tuples, as in the SDK
        span.set_attribute("nested", {"k": [1, 2]})  # type: ignore[arg-type]  # an AnyValue, kept by the SDK
        span.set_attribute("odd", _ODD)  # type: ignore[arg-type]  # not an AnyValue: the SDK's rules apply
        span.add_event("cache.miss", {"key": "k1"})
        span.add_link(SpanContext(int(TRACE_HEX, 16), 0x1234, True, TraceFlags(1)), {"why": "batch"})
        span.set_status(StatusCode.OK)
        span.set_status(StatusCode.ERROR, "ignored: OK is final")
        with trace.get_tracer("app").start_as_current_span("child"):
            pass
        ctx = span.get_span_context()
        return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}

    @app.get("/boom")
    async def boom() -> None:
        raise ValueError("kaboom")

    otel_corr.instrument(app, tracer_provider=sdk.provider)
    return app


def _client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture(autouse=True)
def _app_tracer_uses_the_same_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    # trace.get_tracer("app") in the route must reach the test's provider.
    monkeypatch.setattr(trace, "get_tracer", lambda name, *a, **k: _PROVIDER[0].get_tracer(name))


_PROVIDER: list[TracerProvider] = []


def _sdk(**provider_args: Any) -> _Sdk:
    sdk = _Sdk(**provider_args)
    _PROVIDER[:] = [sdk.provider]
    return sdk


async def test_exported_server_span_matches_what_the_sdk_would_export() -> None:
    sdk = _sdk(resource=Resource.create({"service.name": "shop"}))
    async with _client(_app(sdk)) as c:
        r = await c.get("/work", headers={"X-Request-ID": UUID})
    assert r.status_code == 200
    server, child = sorted(sdk.spans(), key=lambda s: s.kind != SpanKind.SERVER)
    assert type(server) is ReadableSpan and isinstance(child, ReadableSpan)
    assert server.kind is SpanKind.SERVER and server.name == "GET /work"
    assert server.resource.attributes["service.name"] == "shop"
    assert server.instrumentation_scope is not None
    assert server.instrumentation_scope.name == "otel_corr"
    assert server.instrumentation_scope.version == otel_corr.__version__
    assert server.context.trace_id == int(TRACE_HEX, 16)  # the one-ID rule
    assert r.json() == {"trace_id": TRACE_HEX, "span_id": format(server.context.span_id, "016x")}
    assert server.parent is None
    assert server.start_time is not None and server.end_time is not None and server.start_time <= server.end_time
    a = server.attributes
    assert a["request.id"] == UUID and a["http.route"] == "/work" and a["http.response.status_code"] == 200
    # the app's attributes are validated exactly as an SDK span validates them
    reference = sdk.provider.get_tracer("reference").start_span("reference")
    for key, value in (("tenant", "acme"), ("tags", ["a", "b"]), ("nested", {"k": [1, 2]}), ("odd", _ODD)):
        reference.set_attribute(key, value)  # type: ignore[arg-type]
    assert isinstance(reference, ReadableSpan)
    expected = dict(reference.attributes or {})
    assert {k: a[k] for k in ("tenant", "tags", "nested", "odd") if k in a} == expected
    assert [(e.name, dict(e.attributes or {})) for e in server.events] == [("cache.miss", {"key": "k1"})]
    assert [(link.context.span_id, dict(link.attributes or {})) for link in server.links] == [
        (0x1234, {"why": "batch"})
    ]
    assert server.status.status_code is StatusCode.OK
    # the app's own span is an ordinary SDK child of ours
    assert child.parent is not None and child.parent.span_id == server.context.span_id
    assert child.context.trace_id == server.context.trace_id


async def test_exception_event_and_error_status_like_the_sdk() -> None:
    sdk = _sdk()
    async with _client(_app(sdk)) as c:
        r = await c.get("/boom")
    assert r.status_code == 500 and r.headers["x-request-id"]
    (span,) = sdk.spans()
    assert span.status.status_code is StatusCode.ERROR
    (event,) = span.events
    assert event.name == "exception"
    attrs = dict(event.attributes or {})
    assert attrs["exception.type"] == "ValueError" and attrs["exception.message"] == "kaboom"
    assert "Traceback" in str(attrs["exception.stacktrace"])
    assert span.attributes["error.type"] == "ValueError"


async def test_the_providers_sampler_decides() -> None:
    sdk = _sdk(sampler=ALWAYS_OFF)
    async with _client(_app(sdk)) as c:
        r = await c.get("/work", headers={"X-Request-ID": UUID})
    assert sdk.spans() == []
    # unsampled, but the IDs still flow: the response, the route's context
    assert r.headers["x-request-id"] == UUID
    assert r.headers["traceresponse"].startswith(f"00-{TRACE_HEX}-") and r.headers["traceresponse"].endswith("-00")
    assert r.json()["trace_id"] == TRACE_HEX

    sdk = _sdk(sampler=ParentBased(TraceIdRatioBased(1.0)))
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"  # the caller did not sample
    async with _client(_app(sdk)) as c:
        r = await c.get("/work", headers={"traceparent": parent})
    assert sdk.spans() == []
    assert r.json()["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


_PARENTS = [
    trace.INVALID_SPAN_CONTEXT,
    SpanContext(0x4BF9, 0x00F0, True, TraceFlags(1), TraceState([("v", "1")])),
    SpanContext(0x4BF9, 0x00F0, True, TraceFlags(0), TraceState([("v", "2")])),
    SpanContext(0x4BF9, 0x00F0, False, TraceFlags(1)),
    SpanContext(0x4BF9, 0x00F0, False, TraceFlags(0)),
]


@pytest.mark.parametrize(
    "sampler",
    [ALWAYS_ON, ALWAYS_OFF, DEFAULT_ON, DEFAULT_OFF, ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON)],
)
@pytest.mark.parametrize("parent_sc", _PARENTS)
def test_static_samplers_decide_as_if_called(sampler: Sampler, parent_sc: SpanContext) -> None:
    # For the SDK's static samplers the decision is looked up, not asked (see _span.py): it must be
    # what calling the sampler gives, for every kind of parent.
    class Fixed(IdGenerator):
        def generate_span_id(self) -> int:
            return 0xABC

        def generate_trace_id(self) -> int:
            return 0x1234

    tracer = TracerProvider(sampler=sampler, id_generator=Fixed()).get_tracer("t")
    parent = trace.set_span_in_context(NonRecordingSpan(parent_sc), otel_context.Context())
    spans = []
    for lookup in (True, False):
        recorder = recorder_for(tracer, InstrumentationScope("t"))
        assert recorder is not None and (recorder._decisions is not None)
        if not lookup:
            recorder._decisions = None  # the general path: the sampler is called
        spans.append(recorder.start("GET", parent, parent_sc, 0x1234, True, {"a": 1}))
    looked_up, called = spans
    assert type(looked_up) is type(called)
    assert looked_up.get_span_context() == called.get_span_context()
    if isinstance(called, RequestSpan):
        assert isinstance(looked_up, RequestSpan) and looked_up.attributes == called.attributes == {"a": 1}


def test_other_samplers_are_called() -> None:
    for sampler in (TraceIdRatioBased(0.5), ParentBased(TraceIdRatioBased(0.5))):
        recorder = recorder_for(TracerProvider(sampler=sampler).get_tracer("t"), InstrumentationScope("t"))
        assert recorder is not None and recorder._decisions is None


async def test_span_limits_bound_our_attributes_and_the_apps() -> None:
    sdk = _sdk(span_limits=SpanLimits(max_span_attribute_length=6, max_span_attributes=14))
    async with _client(_app(sdk)) as c:
        await c.get("/work?q=" + "x" * 50, headers={"User-Agent": "a-very-long-agent"})
    server = next(s for s in sdk.spans() if s.kind is SpanKind.SERVER)
    a = server.attributes
    assert a["user_agent.original"] == "a-very" and a["url.path"] == "/work"
    assert all(len(v) <= 6 for v in a.values() if isinstance(v, str))
    assert len(a) <= 14 + 2  # room for the app's attributes is what the limit leaves; +2 end attributes


async def test_the_providers_id_generator_makes_random_ids() -> None:
    class Fixed(IdGenerator):
        def generate_span_id(self) -> int:
            return 0xABC

        def generate_trace_id(self) -> int:
            return 0x1234

    sdk = _sdk(id_generator=Fixed())
    async with _client(_app(sdk)) as c:
        r = await c.get("/work")
    assert r.json() == {"trace_id": format(0x1234, "032x"), "span_id": format(0xABC, "016x")}
    assert r.headers["x-request-id"] == format(0x1234, "032x")


async def test_span_processors_see_the_span_at_start_and_a_readable_span_at_end() -> None:
    seen: dict[str, Any] = {}

    class Tagger(SpanProcessor):
        def on_start(self, span: SdkSpan, parent_context: otel_context.Context | None = None) -> None:
            if span.kind is SpanKind.SERVER:
                seen["start"] = (span.name, dict(span.attributes or {}).get("request.id"), span.is_recording())
                span.set_attribute("deployment", "blue")

        def on_end(self, span: ReadableSpan) -> None:
            if span.kind is SpanKind.SERVER:
                seen["end"] = (type(span), span.attributes.get("deployment"))

    sdk = _sdk()
    sdk.provider.add_span_processor(Tagger())
    async with _client(_app(sdk)) as c:
        await c.get("/work", headers={"X-Request-ID": "req-1"})
    assert seen == {"start": ("GET", "req-1", True), "end": (ReadableSpan, "blue")}


def test_after_end_the_span_ignores_changes() -> None:
    sdk = _sdk()
    runtime = Runtime(resolve_settings({}), sdk.provider)
    span, request_id, token = runtime.begin({}, "GET", {})
    otel_context.detach(token)
    finish_span(span, 204, None, "GET", None)
    span.set_attribute("late", 1)
    span.add_event("late")
    span.update_name("late")
    span.end()  # a second end exports nothing more
    (exported,) = sdk.spans()
    assert exported.name == "GET" and "late" not in exported.attributes and exported.events == ()
    assert exported.attributes["request.id"] == request_id
    assert not span.is_recording()


def test_extract_is_skipped_only_for_the_w3c_propagators_without_their_headers() -> None:
    from opentelemetry import baggage, propagate
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    class Always(TraceContextTextMapPropagator):  # a subclass may read anything: always asked
        def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> otel_context.Context:
            return baggage.set_baggage("from", "always", otel_context.Context())

    runtime = Runtime(resolve_settings({}), _sdk().provider)
    saved = propagate.get_global_textmap()
    try:
        for propagator, expected in [
            (CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()]), None),
            (CompositePropagator([W3CBaggagePropagator(), Always()]), "always"),
            (Always(), "always"),
        ]:
            propagate.set_global_textmap(propagator)
            _, _, token = runtime.begin({"host": "h"}, "GET", {})
            assert baggage.get_baggage("from") == expected
            otel_context.detach(token)
            _, _, token = runtime.begin({"baggage": "from=header"}, "GET", {})
            assert baggage.get_baggage("from") == (expected or "header")
            otel_context.detach(token)
    finally:
        propagate.set_global_textmap(saved)
