"""The tracing side every traced configuration shares: an SDK provider, a batch processor, a no-op exporter.

Kept apart from ``_apps.py`` so that the bare configurations never import the
OpenTelemetry SDK: their RSS is the baseline the instrumented rows are compared to.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

__all__ = ["NoopExporter", "make_provider"]


class NoopExporter(SpanExporter):
    """Accept every batch, keep only a count of the spans it saw."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def make_provider(*, set_global: bool) -> tuple[TracerProvider, NoopExporter]:
    """An SDK provider with a real (default-settings) batch processor around a no-op exporter."""
    exporter = NoopExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    if set_global:
        trace.set_tracer_provider(provider)
    return provider, exporter
