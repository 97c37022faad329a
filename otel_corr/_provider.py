"""The TracerProvider: keep the application's, or build one from ``OTEL_*`` the SDK's way.

We never install a second provider.  When we build one, every piece reads its
own variables exactly as the SDK does: ``Resource.create()`` reads
``OTEL_SERVICE_NAME``/``OTEL_RESOURCE_ATTRIBUTES``, ``TracerProvider()`` reads
``OTEL_TRACES_SAMPLER(_ARG)``, ``BatchSpanProcessor()`` reads ``OTEL_BSP_*``,
the OTLP exporters read ``OTEL_EXPORTER_OTLP_*``.  The one default we change:
``OTEL_TRACES_EXPORTER`` unset means ``otlp`` (the spec's default; the plain
SDK configures no exporter at all), and ``otlp`` without a protocol means
``http/protobuf`` (the spec's default; Python's otherwise means gRPC).

Spans leave only through a BatchSpanProcessor, off the request path, and every
exporter we build is wrapped in :class:`~._export.GuardedSpanExporter`: a dead
collector costs one warning with a count, not a log line per batch.
:func:`flush` is the bounded shutdown flush the servers' hooks call.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING

from opentelemetry import trace

from . import _settings
from .exceptions import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from ._settings import Settings

__all__ = ["ensure_tracer_provider", "flush"]

_log = logging.getLogger("otel_corr")
_lock = threading.Lock()


def _protocol() -> str:
    return _settings.otlp_protocol("TRACES")  # OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, then OTEL_EXPORTER_OTLP_PROTOCOL


def _otlp_target() -> str:
    """Where the OTLP span exporter sends, as ``otel-corr doctor`` shows it."""
    return f"collector at {_settings.otlp_endpoint('TRACES')}"


def _otlp_exporter() -> SpanExporter:
    protocol = _protocol()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError:
            raise ConfigError(
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                protocol,
                "http/protobuf, or grpc after `pip install -e '.[grpc]'` in a clone of otel-corr",
            ) from None
        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _exporters() -> list[SpanExporter]:
    from ._export import GuardedSpanExporter, collector  # imports the SDK: only when we build a provider

    names = _settings.signal_exporters("TRACES", "otlp")  # OTEL_TRACES_EXPORTER
    exporters: list[SpanExporter] = []
    for name in names:
        if name == "none":
            continue
        if name == "otlp":
            target, hint = collector(_settings.otlp_endpoint("TRACES"))
            exporters.append(GuardedSpanExporter(_otlp_exporter(), target, hint=hint))
            continue
        from importlib.metadata import entry_points

        (ep,) = entry_points(group="opentelemetry_traces_exporter", name=name)  # checked in _settings
        exporters.append(GuardedSpanExporter(ep.load()(), f"span exporter {name!r}"))
    return exporters


def ensure_tracer_provider(settings: Settings) -> trace.TracerProvider:
    """Return the provider our server spans use, installing one only if nobody has."""
    if settings.tracer_provider is not None:
        return settings.tracer_provider
    with _lock:
        current = trace.get_tracer_provider()
        # ProxyTracerProvider means "nobody set one yet"; anything else is the app's.
        if not isinstance(current, trace.ProxyTracerProvider):
            return current
        if settings.sdk_disabled:
            return trace.NoOpTracerProvider()

        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        attributes = {SERVICE_NAME: settings.service_name} if settings.service_name else {}
        provider = TracerProvider(resource=Resource.create(attributes))
        for exporter in _exporters():
            provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        from . import _patches

        # The API lets the global TracerProvider be set once per process, by design: it stays
        # after uninstrument() (and a later instrument() finds it and uses it).
        _patches.record(
            "global TracerProvider",
            "the global TracerProvider (opentelemetry.trace)",
            "an SDK TracerProvider exporting spans, with its own at-exit shutdown (only when the app set none)",
            "_provider (instrument)",
            None,
        )
        return provider


def flush(timeout: float = 5.0) -> bool:
    """Export every span still queued, waiting at most ``timeout`` seconds.

    Safe to call from any shutdown hook (ASGI lifespan, gunicorn's
    ``worker_exit``, Celery's ``worker_process_shutdown``): the flush runs in a
    daemon thread, so a dead collector can delay shutdown by ``timeout`` at most.
    Returns ``True`` when the flush finished in time.

    .. versionadded:: 0.1
    """
    from opentelemetry._logs import get_logger_provider

    flushes = [
        f for f in (getattr(p, "force_flush", None) for p in (trace.get_tracer_provider(), get_logger_provider())) if f
    ]
    if not flushes:
        return True
    done = threading.Event()

    def run() -> None:
        try:
            for force_flush in flushes:
                force_flush(int(timeout * 1000))
        except Exception:  # a flush must never take the process down
            _log.warning("otel-corr: flushing telemetry failed", exc_info=True)
        finally:
            done.set()

    threading.Thread(target=run, name="otel-corr-flush", daemon=True).start()
    finished = done.wait(timeout)
    if not finished:
        _log.warning("otel-corr: spans not flushed within %.1f s; some may be lost", timeout)
    export = sys.modules.get("otel_corr._export")  # loaded only if we built the provider
    if export is not None:
        export.report_outages()
    return finished
