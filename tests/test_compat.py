"""Each shortcut through another project's private names (``otel_corr/_compat.py``) against its public fallback.

For every shortcut: the fallback gives the same spans (and contexts) as the shortcut, and the feature
check finds the private name on the SDK installed (so a release that renames one fails here, loudly,
instead of silently taking the slower path).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    DEFAULT_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from otel_corr import _compat, _export
from otel_corr._context import get_request_id
from otel_corr._request import Runtime, finish_span
from otel_corr._settings import resolve_settings
from otel_corr.propagation import RequestIdPropagator
from otel_corr.propagation._propagator import install_global

UUID = "0af76519-16cd-43dd-8448-eb211c80319c"
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class _Fixed(IdGenerator):
    def generate_span_id(self) -> int:
        return 0xABC

    def generate_trace_id(self) -> int:
        return 0x1234


class _Tagging(Sampler):
    """A sampler that adds an attribute and drops requests to /drop: the span keeps what it returns."""

    def should_sample(self, parent_context: Any, trace_id: int, name: str, *args: Any, **kwargs: Any) -> SamplingResult:
        attributes = dict(args[1] if len(args) > 1 else kwargs.get("attributes") or {})
        if attributes.get("url.path") == "/drop":
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, {**attributes, "sampled.by": "tagging"})

    def get_description(self) -> str:
        return "tagging"


def _request(runtime: Runtime, carrier: dict[str, str], path: str, exc: BaseException | None) -> trace.Span:
    """One request through the core as the middlewares drive it, the app touching its span on the way."""
    attributes = runtime.request_attributes(
        scheme="http",
        path=path,
        query="token=secret&q=1",
        host="shop.local:8080",
        server=None,
        client=("10.0.0.1", 5000),
        user_agent="curl/8",
        protocol="1.1",
    )
    span, _, token = runtime.begin(carrier, "GET", attributes)
    try:
        app_span = trace.get_current_span()
        app_span.set_attribute("tenant", "acme")
        app_span.set_attribute("tags", ["a", "b"])
        app_span.add_event("cache.miss", {"key": "k1"})
        app_span.add_link(SpanContext(0x77, 0x1234, True, TraceFlags(1)), {"why": "batch"})
    finally:
        otel_context.detach(token)
    finish_span(span, None if exc else 200, "/items/{id}", "GET", exc)
    return span


def _seen(span: trace.Span, exported: Sequence[ReadableSpan]) -> tuple[Any, ...]:
    """What a user sees of one request: its span context and the exported span, minus span ID and times."""
    sc = span.get_span_context()
    out: list[Any] = [sc.trace_id, int(sc.trace_flags), sc.trace_state, sc.is_valid, span.is_recording()]
    for s in exported:
        events = [
            (e.name, {k: v for k, v in (e.attributes or {}).items() if k != "exception.stacktrace"}) for e in s.events
        ]
        parent = None if s.parent is None else (s.parent.trace_id, s.parent.span_id, s.parent.is_remote)
        scope = s.instrumentation_scope
        out.append(
            (
                s.name,
                s.kind,
                s.context.trace_id,
                int(s.context.trace_flags),
                s.context.trace_state,
                parent,
                dict(s.attributes or {}),
                events,
                [(link.context, dict(link.attributes or {})) for link in s.links],
                (s.status.status_code, s.status.description),
                dict(s.resource.attributes),
                None if scope is None else (scope.name, scope.version, scope.schema_url),
            )
        )
    return tuple(out)


_CASES = [
    ({}, "/items/1", None),
    ({"x-request-id": UUID}, "/items/1", None),
    ({"x-request-id": "not-a-trace-id"}, "/items/1", ValueError("kaboom")),
    ({"traceparent": PARENT, "tracestate": "v=1"}, "/items/1", None),
    ({"traceparent": PARENT.replace("-01", "-00")}, "/items/1", None),
    ({"traceparent": PARENT.replace("-01", "-03")}, "/items/1", None),
    ({}, "/drop", None),
]
_PROVIDERS: list[dict[str, Any]] = [
    {},
    {"sampler": ALWAYS_OFF},
    {"sampler": ParentBased(TraceIdRatioBased(0.5))},
    {"sampler": _Tagging()},
    # (A cap below the request's own dozen attributes is where the two differ by design: the SDK drops
    # the oldest, url.path first; the shortcut keeps its own and gives the app what is left.)
    {"span_limits": SpanLimits(max_span_attribute_length=5, max_span_attributes=16, max_events=1)},
]


@pytest.mark.parametrize("provider_args", _PROVIDERS, ids=["default", "always_off", "ratio", "tagging", "limits"])
def test_the_public_path_gives_the_same_spans_as_the_shortcut_span(
    provider_args: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shortcut: RequestSpan, built on Tracer._is_enabled, Tracer._span_limits and a hand-made
    # ReadableSpan.  The fallback: tracer.start_span, the trace ID forced through the tracer's public
    # id_generator.  Same requests, same provider settings: the same spans must come out.
    seen = []
    for shortcuts in (True, False):
        monkeypatch.setattr(_compat, "SHORTCUTS", shortcuts)
        exporter = InMemorySpanExporter()
        provider = TracerProvider(id_generator=_Fixed(), **provider_args)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        runtime = Runtime(resolve_settings({}), provider)
        assert (runtime._recorder is not None) is shortcuts
        spans = []
        for carrier, path, exc in _CASES:
            exporter.clear()
            span = _request(runtime, carrier, path, exc)
            spans.append(_seen(span, exporter.get_finished_spans()))
        seen.append(spans)
    shortcut, public = seen
    for case, a, b in zip(_CASES, shortcut, public, strict=True):
        assert a == b, case


def test_the_public_path_keeps_random_trace_ids_random(monkeypatch: pytest.MonkeyPatch) -> None:
    # With the SDK's random generator, a new trace's ID is random on both paths and its flags say so
    # (the W3C random-trace-ID flag, on SDKs that have it); a request ID that is a trace ID is not random.
    for shortcuts in (True, False):
        monkeypatch.setattr(_compat, "SHORTCUTS", shortcuts)
        runtime = Runtime(resolve_settings({}), TracerProvider())
        span = _request(runtime, {}, "/items/1", None)
        assert span.get_span_context().trace_flags == TraceFlags(TraceFlags.SAMPLED | _compat.RANDOM_TRACE_ID)
        span = _request(runtime, {"x-request-id": UUID}, "/items/1", None)
        assert span.get_span_context().trace_flags == TraceFlags(TraceFlags.SAMPLED)
        assert format(span.get_span_context().trace_id, "032x") == UUID.replace("-", "")


def test_the_span_shortcut_is_taken_on_the_sdk_installed() -> None:
    # The feature checks find what the shortcut span needs: a release that renames one fails here.
    tracer = TracerProvider().get_tracer("t")
    assert _compat.span_shortcut_ok(tracer)
    assert isinstance(_compat.span_limits(tracer), SpanLimits)
    assert Runtime(resolve_settings({}), TracerProvider())._recorder is not None


def test_a_tracer_without_the_private_limits_takes_the_public_path() -> None:
    tracer = TracerProvider().get_tracer("t")
    del tracer._span_limits  # type: ignore[attr-defined]  # what a release that renames it looks like
    assert not _compat.span_shortcut_ok(tracer)


@pytest.mark.parametrize("sampler", [DEFAULT_ON, ALWAYS_OFF, ParentBased(ALWAYS_OFF)])
def test_static_sampler_decisions_are_found_and_fall_back_to_calling_the_sampler(
    sampler: Sampler, monkeypatch: pytest.MonkeyPatch
) -> None:
    # That the looked-up decision equals the called one, for every kind of parent, is
    # tests/test_request_span.py::test_static_samplers_decide_as_if_called.
    decisions = _compat.static_decisions(sampler)
    assert decisions is not None and len(decisions) == 5
    monkeypatch.setattr(_compat, "SHORTCUTS", False)
    assert _compat.static_decisions(sampler) is None


def test_a_static_sampler_without_its_private_decision_is_called() -> None:
    sampler = StaticSampler(Decision.RECORD_AND_SAMPLE)
    del sampler._decision  # type: ignore[attr-defined]
    assert _compat.static_decisions(sampler) is None
    assert _compat.static_decisions(ParentBased(sampler)) is None


@pytest.fixture
def _global_propagator() -> Iterator[None]:
    saved = propagate.get_global_textmap()
    try:
        yield
    finally:
        propagate.set_global_textmap(saved)


@pytest.mark.usefixtures("_global_propagator")
def test_reading_the_composite_propagator_gives_the_same_parents_as_running_it_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The shortcut reads CompositePropagator._propagators: it skips extract for requests without
    # traceparent/baggage and drops the request-ID propagator from the server's.  The fallback runs
    # the composite whole; the parent, the baggage and the request ID must come out the same.
    composite = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator(), RequestIdPropagator()])
    assert _compat.composite_members(composite) is not None
    carriers = [
        {},
        {"traceparent": PARENT, "baggage": "tenant=acme"},
        {"x-request-id": "req-7"},
        {"x-request-id": "req-7", "traceparent": PARENT},
        {"x-request-id": "bad\nid", "baggage": "tenant=acme"},
    ]
    seen = []
    for shortcuts in (True, False):
        monkeypatch.setattr(_compat, "SHORTCUTS", shortcuts)
        propagate.set_global_textmap(composite)
        runtime = Runtime(resolve_settings({}), TracerProvider(id_generator=_Fixed()))
        assert (runtime._server_propagator() is composite) is not shortcuts
        results = []
        for carrier in carriers:
            span, request_id, token = runtime.begin(carrier, "GET", {})
            results.append((span.get_span_context().trace_id, request_id, get_request_id(), baggage.get_all()))
            otel_context.detach(token)
            finish_span(span, 200, None, "GET", None)
        seen.append(results)
    assert seen[0] == seen[1]


@pytest.mark.usefixtures("_global_propagator")
def test_the_request_id_propagator_is_added_once_on_either_path(monkeypatch: pytest.MonkeyPatch) -> None:
    for shortcuts in (True, False):
        monkeypatch.setattr(_compat, "SHORTCUTS", shortcuts)
        propagate.set_global_textmap(CompositePropagator([TraceContextTextMapPropagator()]))
        install_global("X-Request-ID")
        once = propagate.get_global_textmap()
        install_global("X-Request-ID")
        assert propagate.get_global_textmap() is once
        assert once.fields == {"traceparent", "tracestate", "x-request-id"}
        propagate.set_global_textmap(CompositePropagator([]))  # OTEL_PROPAGATORS=none: left alone
        install_global("X-Request-ID")
        assert propagate.get_global_textmap().fields == set()


@pytest.mark.skipif(not _compat.QUEUE_FULL_LOGGED, reason="SDKs before 1.40 drop from a full queue silently")
def test_the_sdk_still_logs_the_queue_full_line_the_guard_counts() -> None:
    # _export counts spans a full queue dropped by the SDK's "Queue full" warning: this SDK must
    # still log exactly that message on that logger, or the count silently stays 0.
    release = threading.Event()

    class Stuck(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            release.wait(10)
            return SpanExportResult.SUCCESS

    _export.install_log_filters()
    _export._queue_full.take("Span")
    processor = BatchSpanProcessor(Stuck(), max_queue_size=4, max_export_batch_size=2, schedule_delay_millis=60_000)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    logging.getLogger(_compat.QUEUE_FULL_LOGGER).setLevel(logging.WARNING)
    try:
        for _ in range(40):
            tracer.start_span("s").end()
        assert _export._queue_full.take("Span") > 0
    finally:
        release.set()
        provider.shutdown()


def test_the_switch_turns_every_shortcut_off() -> None:
    code = (
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.sampling import DEFAULT_ON\n"
        "from otel_corr import _compat\n"
        "from otel_corr._settings import resolve_settings\n"
        "from otel_corr._request import Runtime\n"
        "r = Runtime(resolve_settings({}), TracerProvider())\n"
        "print(_compat.SHORTCUTS, r._recorder, r._forcing is not None, _compat.static_decisions(DEFAULT_ON))\n"
    )
    for value, expected in (("1", "False None True None"), ("", "True <otel_corr._span.Recorder")):
        env = {**os.environ, "OTEL_CORR_NO_SHORTCUTS": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert out.stdout.startswith(expected), out.stderr


def test_the_switch_takes_all_or_a_list_of_shortcuts() -> None:
    assert _compat._switched_off("") == frozenset()
    assert _compat._switched_off("1") == _compat._switched_off("All") == _compat._NAMES
    assert _compat._switched_off("span, sampler") == {"span", "sampler"}
