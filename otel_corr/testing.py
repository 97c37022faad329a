"""Helpers for your own tests: capture the spans and IDs of an instrumented app in memory.

::

    from otel_corr.testing import capture

    def test_checkout_logs_the_request_id(client_factory):
        with capture() as cap:
            app = otel_corr.instrument(make_app(), tracer_provider=cap.provider)
            response = TestClient(app).get("/checkout", headers={"X-Request-ID": "abc"})
        assert cap.server_span().attributes["request.id"] == "abc"

or, with pytest, the ``otel_corr_capture`` fixture: ``pytest_plugins = ["otel_corr.testing"]`` in your
top-level ``conftest.py``, or ``from otel_corr.testing import otel_corr_capture`` in a test module.
An in-memory capture is for unit tests; to prove spans leave the process, point the app at
``otel-corr serve`` or a real collector.

.. versionadded:: 0.1
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from ._ids import REQUEST_ID_ATTRIBUTE

__all__ = ["Capture", "capture", "otel_corr_capture"]


class Capture:
    """Spans finished through :attr:`provider` (pass it as ``instrument(app, tracer_provider=...)``)."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        # With the pytest plugin on (--otel-corr), a failing test shows these spans too.
        plugin = sys.modules.get("otel_corr._pytest_capture")
        keeper = getattr(plugin, "current_keeper", None)
        if keeper is not None:
            keeper.watch(self.provider)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """Every finished span (named ``name``, if given), in end order."""
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def server_spans(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.kind is SpanKind.SERVER]

    def server_span(self, request_id: str | None = None) -> ReadableSpan:
        """The one server span (of ``request_id``, if given); fails clearly if there is not exactly one."""
        found = [
            s
            for s in self.server_spans()
            if request_id is None or (s.attributes or {}).get(REQUEST_ID_ATTRIBUTE) == request_id
        ]
        if len(found) != 1:
            raise AssertionError(f"expected one server span, found {len(found)}: {[s.name for s in found]}")
        return found[0]

    def trace_ids(self) -> set[str]:
        return {format(s.context.trace_id, "032x") for s in self.spans() if s.context is not None}

    def clear(self) -> None:
        self.exporter.clear()


@contextmanager
def capture() -> Iterator[Capture]:
    """A fresh :class:`Capture`, shut down on exit."""
    cap = Capture()
    try:
        yield cap
    finally:
        cap.provider.shutdown()


try:
    import pytest
except ImportError:  # pragma: no cover - the fixture exists only where pytest does
    pass
else:

    @pytest.fixture
    def otel_corr_capture() -> Iterator[Capture]:
        """A :class:`Capture` for one test."""
        with capture() as cap:
            yield cap
