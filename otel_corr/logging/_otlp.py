"""OTLP logs: records leave for the collector with their trace, span and request IDs.

On by default, as the specification's default for ``OTEL_LOGS_EXPORTER`` is
``otlp``: the records go where the spans go (the same ``OTEL_EXPORTER_OTLP_*``
resolution, ``_LOGS_`` variants first), so a user's own app shows its log lines
under its spans with nothing more set.  ``OTEL_LOGS_EXPORTER=none`` turns it
off; unset, it follows ``OTEL_TRACES_EXPORTER`` (no OTLP spans, no OTLP logs)
and ``OTEL_SDK_DISABLED`` (see :func:`otel_corr._settings.logs_exporters`).
A record the loggers' levels filter out is never created, so it costs nothing
here; one that is created costs a translation and a queue append, measured by
``benchmarks/log_overhead.py``.

Why our own handler rather than the SDK's (deprecated) or contrib's: both read
the trace context when the record is *emitted*, which behind a queue handler is
another thread with no context; ours takes the IDs stamped on the record when
it was *created*.  The record is handed to the SDK's LoggerProvider and its
BatchLogRecordProcessor, so export stays off the logging call's path.
"""

from __future__ import annotations

import atexit
import logging
import threading
import traceback
from typing import Any

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from .. import _settings
from ..exceptions import ConfigError
from ._stamp import FIELDS, MISSING

__all__ = ["QUIET", "OTLPHandler", "enabled_by_env", "install", "only_ours", "reattach"]

#: On a record for OTLP only: never printed by the last-resort imitation (``logging._access.log_error``
#: leaves the printed line to the server's own, which carries the IDs).
QUIET = "_otel_corr_quiet"

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "short_request_id",
    *FIELDS,
}
_SEVERITY_TEXT = {"WARNING": "WARN", "CRITICAL": "FATAL"}
_PLAIN = (str, bool, int, float)  # attribute values the SDK takes as they are


def _severity(level: int) -> SeverityNumber:
    if level >= 50:
        return SeverityNumber.FATAL
    if level >= 40:
        return SeverityNumber.ERROR
    if level >= 30:
        return SeverityNumber.WARN
    return SeverityNumber.INFO if level >= 20 else SeverityNumber.DEBUG


_SEVERITY = {level: _severity(level) for level in (10, 20, 30, 40, 50)}


def enabled_by_env() -> bool:
    """Whether log records leave the process: ``OTEL_LOGS_EXPORTER`` resolved (``otlp`` when unset)."""
    return bool(_settings.logs_exporters())


def only_ours(logger: logging.Logger) -> bool:
    """Whether a record of ``logger`` meets no handler but an :class:`OTLPHandler`.

    Python would then have printed it with its last-resort handler (``%(message)s`` on stderr, WARNING
    and above); :meth:`OTLPHandler.emit` still does.  The walk is the one ``Logger.callHandlers`` makes.
    """
    current: logging.Logger | None = logger
    while current is not None:
        if any(not isinstance(h, OTLPHandler) for h in current.handlers):
            return False
        current = current.parent if current.propagate else None
    return True


class OTLPHandler(logging.Handler):
    """Hand every record to an OpenTelemetry LoggerProvider, tied to the span it was written in."""

    def __init__(self, provider: Any, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._provider = provider
        # One SDK Logger per logger name, kept here: the provider's get_logger takes two locks per call.
        self._loggers: dict[str, Any] = {}
        self._last_ids: tuple[str, str] = ("", "")
        self._last_context: Context | None = None
        from .._export import _inside

        self._exporting = _inside  # set on an export thread while its exporter runs

    def _context(self, trace_id: str, span_id: str) -> Context | None:
        """The context of the span the record was written in, from the IDs stamped on it.

        The lines of one request are usually written one after another: the last context is kept
        (emit runs under the handler's lock, so one thread at a time).
        """
        if trace_id == MISSING or span_id == MISSING:
            return None
        if self._last_ids != (trace_id, span_id):
            sc = SpanContext(int(trace_id, 16), int(span_id, 16), False, TraceFlags(TraceFlags.SAMPLED))
            self._last_ids, self._last_context = (trace_id, span_id), set_span_in_context(NonRecordingSpan(sc))
        return self._last_context

    def _logger(self, name: str) -> Any:
        logger = self._loggers.get(name)
        if logger is None:
            logger = self._provider.get_logger(name)
            if len(self._loggers) < 1024:  # logger names made per request must not grow it without bound
                self._loggers[name] = logger
        return logger

    def emit(self, record: logging.LogRecord) -> None:
        last = logging.lastResort
        # Only for an app with no logging set up (the root logger has no handler but this one): Python
        # prints WARNING and above there through its last-resort handler, which our handler would silence.
        if (
            last is not None
            and record.levelno >= last.level
            and len(logging.root.handlers) == 1
            and QUIET not in record.__dict__
        ):
            logger = logging.root if record.name == "root" else logging.root.manager.loggerDict.get(record.name)
            if isinstance(logger, logging.Logger) and only_ours(logger):
                last.handle(record)
        name = record.name
        if name.startswith("opentelemetry") or getattr(self._exporting, "active", False):
            # The exporter's own complaints, and whatever its HTTP client logs while an export runs on this
            # thread (urllib3's "POST /v1/logs" at DEBUG), must not loop back into it: each export would
            # make the next one, forever.
            return
        try:
            d = record.__dict__
            # Only the app's own fields (extra=...) are left once the standard attributes are taken away:
            # a set difference in C rather than a test per attribute.
            attributes: dict[str, Any] = {}
            for k in d.keys() - _RESERVED:
                if k[:1] != "_":
                    v = d[k]
                    attributes[k] = v if isinstance(v, _PLAIN) else repr(v)
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
            level = record.levelno
            self._logger(name).emit(
                LogRecord(
                    timestamp=int(record.created * 1e9),
                    context=self._context(d.get("trace_id", MISSING), d.get("span_id", MISSING)),
                    severity_text=_SEVERITY_TEXT.get(record.levelname, record.levelname),
                    severity_number=_SEVERITY.get(level) or _severity(level),
                    body=record.getMessage(),
                    attributes=attributes,
                )
            )
        except Exception:
            self.handleError(record)


_installed: OTLPHandler | None = None
_BY = "logging._otlp (OTEL_LOGS_EXPORTER, otlp by default)"
_HANDLER_KEY = "OTLP log handler"


def _otlp_exporter() -> Any:
    protocol = _settings.otlp_protocol("LOGS")  # OTEL_EXPORTER_OTLP_LOGS_PROTOCOL, then OTEL_EXPORTER_OTLP_PROTOCOL
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
        except ImportError:
            var = "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"
            raise ConfigError(
                var if _settings.env_text(var) else "OTEL_EXPORTER_OTLP_PROTOCOL",
                protocol,
                "http/protobuf, or grpc after `pip install -e '.[grpc]'` in a clone of otel-corr",
            ) from None
        return GrpcLogExporter()
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    return OTLPLogExporter()


def _processors(names: list[str]) -> list[Any]:
    """One batch processor per exporter ``OTEL_LOGS_EXPORTER`` names; export stays off the logging call."""
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    from .._export import collector, guard_log_exporter  # one warning per collector outage, not a line per batch

    processors = []
    for name in dict.fromkeys(names):
        if name == "otlp":
            target, hint = collector(_settings.otlp_endpoint("LOGS"))
            exporter = guard_log_exporter(_otlp_exporter(), target, hint=hint)
        elif name == "console":
            from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

            exporter = ConsoleLogRecordExporter()
        else:
            from importlib.metadata import entry_points

            (ep,) = entry_points(group="opentelemetry_logs_exporter", name=name)  # checked in _settings
            exporter = guard_log_exporter(ep.load()(), f"log-record exporter {name!r}")
        processors.append(BatchLogRecordProcessor(exporter))
    return processors


def _theirs(root: logging.Logger) -> logging.Handler | None:
    """An OpenTelemetry LoggingHandler already on the root logger (the SDK's, or contrib's instrumentation)."""
    for handler in root.handlers:
        kind = type(handler)
        if kind.__name__ == "LoggingHandler" and kind.__module__.startswith("opentelemetry."):
            return handler
    return None


def _exit_timeout() -> float:
    """``OTEL_CORR_SHUTDOWN_TIMEOUT`` (seconds, 5 by default; a bad value, which instrument() rejects, is 5)."""
    try:
        value = float(_settings.env_text("OTEL_CORR_SHUTDOWN_TIMEOUT") or 5)
    except ValueError:
        return 5.0
    return value if 0 <= value <= 300 else 5.0


def _shut_down(provider: Any, timeout: float | None = None) -> bool:
    """Export the queued log records and shut the provider down, waiting at most ``timeout`` seconds.

    Runs at exit.  The OTLP handler leaves the root logger first: a line logged during the shutdown (the
    outage warning) is printed by the app's handlers, not handed to a provider that would answer
    "Shutdown called, ignoring Log.".  The shutdown runs in a daemon thread, so a collector that does not
    answer costs ``timeout`` at most.  Returns whether it finished in time.
    """
    handler = _installed
    if handler is not None:
        logging.getLogger().removeHandler(handler)
    worker = threading.Thread(target=provider.shutdown, name="otel-corr-logs-shutdown", daemon=True)
    worker.start()
    wait = _exit_timeout() if timeout is None else timeout
    worker.join(wait)
    if worker.is_alive():
        # the exporter is still retrying (no collector): the queued records are lost, and say so
        log = logging.getLogger("otel_corr")
        msg = "log records not exported within %.1f s at exit (OTEL_CORR_SHUTDOWN_TIMEOUT); some may be lost"
        log.warning("otel-corr: " + msg if only_ours(log) else msg, wait)  # named once, as _export._warn does
        return False
    return True


def reattach() -> None:
    """Put the installed handler back on the root logger if something emptied its handlers since.

    A Celery worker does at start (``worker_hijack_root_logger``), as does ``dictConfig``: records
    would silently stop leaving.  Nothing happens when no handler was installed or it is still there.
    """
    from .. import _patches

    handler = _installed
    root = logging.getLogger()
    if handler is not None and _patches.active(_HANDLER_KEY) and handler not in root.handlers:
        root.addHandler(handler)


def install(resource: Any) -> OTLPHandler | None:
    """Attach one OTLP handler to the root logger (idempotent); None if log records go nowhere.

    Builds an SDK LoggerProvider with the exporters ``OTEL_LOGS_EXPORTER`` names unless the app set one.
    Nothing is added when an OpenTelemetry ``LoggingHandler`` is on the root logger already: every
    record would be sent twice.
    """
    global _installed
    from .. import _patches

    if _patches.active(_HANDLER_KEY):
        reattach()
        return _installed
    names = _settings.logs_exporters()
    root = logging.getLogger()
    if not names or _theirs(root) is not None:
        return None
    from opentelemetry._logs import get_logger_provider, set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider

    provider = get_logger_provider()
    if not isinstance(provider, LoggerProvider):
        processors = _processors(names)  # may raise ConfigError: before anything is changed
        # Not the SDK's own at-exit shutdown: with no collector it waits for the exporter's retries
        # (OTEL_EXPORTER_OTLP_TIMEOUT, 10 s); ours is bounded by OTEL_CORR_SHUTDOWN_TIMEOUT.
        provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        for processor in processors:
            provider.add_log_record_processor(processor)
        set_logger_provider(provider)
        atexit.register(_shut_down, provider)
        # The API sets the global LoggerProvider once per process, by design: it stays, with its exit hook.
        _patches.record(
            "global LoggerProvider",
            "the global LoggerProvider (opentelemetry._logs)",
            f"an SDK LoggerProvider exporting log records ({', '.join(names)}), shut down at exit within"
            " OTEL_CORR_SHUTDOWN_TIMEOUT",
            _BY,
            None,
        )
    handler = _installed = OTLPHandler(provider)
    root.addHandler(handler)
    _patches.record(
        _HANDLER_KEY,
        "the root logger's handlers",
        "an OTLPHandler handing every record to the LoggerProvider",
        _BY,
        lambda: root.removeHandler(handler),
    )
    _patches.replace(
        logging,
        "basicConfig",
        _basic_config,
        what="runs with the OTLP handler off the root logger, so that it still configures logging",
        by=_BY,
    )
    return handler


def _basic_config(original: Any) -> Any:
    """``logging.basicConfig`` that does not count our handler as logging already set up.

    basicConfig does nothing when the root logger has a handler; ours is not the app's configuration,
    so it is taken off for the call and put back after it (the SDK's fix for its LoggingHandler).
    """

    def basicConfig(**kwargs: Any) -> None:  # the name it replaces
        root = logging.getLogger()
        ours = _installed
        if ours is None or ours not in root.handlers:
            original(**kwargs)
            return
        root.removeHandler(ours)
        try:
            original(**kwargs)
        finally:
            root.addHandler(ours)

    basicConfig.__doc__ = original.__doc__
    return basicConfig
