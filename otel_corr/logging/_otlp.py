"""OTLP logs: records leave for the collector with their trace, span and request IDs.

On only when ``OTEL_LOGS_EXPORTER`` names ``otlp`` (the standard variable).
We deliberately do not follow the SDK distro's "otlp by default" here: every
record is already written to the app's own handlers, and sending each one a
second time over the network is a cost a user should choose.

Why our own handler rather than the SDK's (deprecated) or contrib's: both read
the trace context when the record is *emitted*, which behind a queue handler is
another thread with no context; ours takes the IDs stamped on the record when
it was *created*.  The record is handed to the SDK's LoggerProvider and its
BatchLogRecordProcessor, so export stays off the logging call's path.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from .. import _settings
from ._stamp import FIELDS, MISSING

__all__ = ["OTLPHandler", "enabled_by_env", "install"]

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "short_request_id",
    *FIELDS,
}
_SEVERITY_TEXT = {"WARNING": "WARN", "CRITICAL": "FATAL"}


def enabled_by_env() -> bool:
    return "otlp" in _settings.signal_exporters("LOGS", "none")  # OTEL_LOGS_EXPORTER


class OTLPHandler(logging.Handler):
    """Hand every record to an OpenTelemetry LoggerProvider, tied to the span it was written in."""

    def __init__(self, provider: Any, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._provider = provider

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("opentelemetry"):
            return  # the exporter's own complaints must not loop back into it
        try:
            from opentelemetry._logs import LogRecord, SeverityNumber

            d = record.__dict__
            attributes: dict[str, Any] = {
                k: v if isinstance(v, (str, bool, int, float)) else repr(v)
                for k, v in d.items()
                if k not in _RESERVED and not k.startswith("_")
            }
            request_id = d.get("request_id", MISSING)
            if request_id != MISSING:
                attributes["request.id"] = request_id
            attributes["code.file.path"] = record.pathname
            attributes["code.line.number"] = record.lineno
            if record.exc_info and record.exc_info[0] is not None:
                attributes["exception.type"] = record.exc_info[0].__qualname__
                attributes["exception.message"] = str(record.exc_info[1])
                attributes["exception.stacktrace"] = "".join(traceback.format_exception(*record.exc_info))
            elif record.exc_text:
                attributes["exception.stacktrace"] = record.exc_text
            context = None
            trace_id, span_id = d.get("trace_id", MISSING), d.get("span_id", MISSING)
            if trace_id != MISSING and span_id != MISSING:
                sc = SpanContext(int(trace_id, 16), int(span_id, 16), False, TraceFlags(TraceFlags.SAMPLED))
                context = set_span_in_context(NonRecordingSpan(sc))
            level = record.levelno
            number = (
                SeverityNumber.FATAL
                if level >= 50
                else SeverityNumber.ERROR
                if level >= 40
                else SeverityNumber.WARN
                if level >= 30
                else SeverityNumber.INFO
                if level >= 20
                else SeverityNumber.DEBUG
            )
            self._provider.get_logger(record.name).emit(
                LogRecord(
                    timestamp=int(record.created * 1e9),
                    context=context,
                    severity_text=_SEVERITY_TEXT.get(record.levelname, record.levelname),
                    severity_number=number,
                    body=record.getMessage(),
                    attributes=attributes,
                )
            )
        except Exception:
            self.handleError(record)


_installed: OTLPHandler | None = None
_BY = "logging._otlp (OTEL_LOGS_EXPORTER=otlp)"
_HANDLER_KEY = "OTLP log handler"


def install(resource: Any) -> OTLPHandler | None:
    """Attach one OTLP handler to the root logger (idempotent); None if not enabled."""
    global _installed
    from .. import _patches

    if _patches.active(_HANDLER_KEY) or not enabled_by_env():
        return _installed
    from opentelemetry._logs import get_logger_provider, set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    provider = get_logger_provider()
    if not isinstance(provider, LoggerProvider):
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        protocol = _settings.otlp_protocol("LOGS")  # OTEL_EXPORTER_OTLP_LOGS_PROTOCOL, then OTEL_EXPORTER_OTLP_PROTOCOL
        exporter: Any
        if protocol.strip() == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter

            exporter = GrpcLogExporter()
        else:
            exporter = OTLPLogExporter()
        from .._export import guard_log_exporter  # one warning per collector outage, not one line per batch

        exporter = guard_log_exporter(exporter, f"collector at {getattr(exporter, '_endpoint', 'its OTLP endpoint')}")
        provider = LoggerProvider(resource=resource)
        provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
        set_logger_provider(provider)
        # The API sets the global LoggerProvider once per process, by design: it stays.
        _patches.record(
            "global LoggerProvider",
            "the global LoggerProvider (opentelemetry._logs)",
            "an SDK LoggerProvider exporting log records over OTLP (OTEL_LOGS_EXPORTER=otlp)",
            _BY,
            None,
        )
    handler = _installed = OTLPHandler(provider)
    root = logging.getLogger()
    root.addHandler(handler)
    _patches.record(
        _HANDLER_KEY,
        "the root logger's handlers",
        "an OTLPHandler handing every record to the LoggerProvider",
        _BY,
        lambda: root.removeHandler(handler),
    )
    return handler
