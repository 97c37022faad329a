"""A dead collector costs one warning, not a log line per batch: the exporter guard.

What the SDK does on its own when the collector is down (SDK 1.45): the
``BatchSpanProcessor``'s thread hands batches of up to 512 spans to the OTLP
exporter; the HTTP exporter retries a refused connection with backoff (1 s,
2 s, 4 s…) until ``OTEL_EXPORTER_OTLP_TIMEOUT`` (10 s) runs out, logging a
"Transient error … retrying" warning per attempt and a "Failed to export spans
batch" error per batch; a collector that accepts and never answers costs the
whole timeout per batch.  Meanwhile the request threads keep adding spans to a
bounded queue (``OTEL_BSP_MAX_QUEUE_SIZE``, 2048) that silently drops the
oldest when full, with a "Queue full" warning that the SDK's duplicate filter
lets through once per 20 s.  Requests never wait on any of it.

:class:`GuardedSpanExporter` wraps the exporter the processor calls, so
everything here runs on the export thread, never per request:

- the exporter's own per-batch warnings are swallowed while it runs inside
  the guard (only on that thread; the last one is kept as the reason);
- spans that could not be sent, and spans the queue dropped, are counted;
- one warning when an outage starts, one info line with the total when export
  works again (and a last warning from :func:`report_outages` at shutdown if it
  never did).

:func:`guard_log_exporter` does the same for the OTLP log-record exporter
(``OTEL_LOGS_EXPORTER=otlp``), whose batch processor behaves the same way.

Queue-full drops are counted through the SDK's own "Queue full" warning (a
filter placed ahead of its duplicate filter): the SDK exposes no counter
without a metrics pipeline.  SDKs before 1.40 drop without that warning, and
then only what the exporter could not send is counted
(``_compat.QUEUE_FULL_LOGGED``).  If that logger is set above WARNING, those drops
go uncounted; and the SDK warns before it appends, so a batch taken off the
queue in between makes one warning with no drop (an over-count of a few spans
at most, only while the queue is full).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from . import _compat

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["GuardedSpanExporter", "guard_log_exporter", "install_log_filters", "report_outages"]

_log = logging.getLogger("otel_corr")

# Loggers the OTLP exporters write their per-attempt and per-batch complaints to.
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.exporter.otlp.proto.grpc._log_exporter",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
)
# The batch processor's logger; "Queue full, dropping %s." is logged there from the thread that ended the span
# (SDK 1.40+: older ones drop silently, and then only what the exporter could not send is counted).
_PROCESSOR_LOGGER = _compat.QUEUE_FULL_LOGGER
_QUEUE_FULL = _compat.QUEUE_FULL_MESSAGE

_inside = threading.local()
_guards: list[_Outage] = []


def _clock(when: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(when))


class _QuietInsideGuard(logging.Filter):
    """Drop exporter records written while the guard's export runs on this thread; keep the last as the reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(_inside, "active", False):
            return True
        try:
            _inside.reason = record.getMessage()
        except Exception:  # a broken record must not break the export thread
            _inside.reason = str(record.msg)
        return False


class _QueueFullCounter(logging.Filter):
    """Count the SDK's "Queue full, dropping Span." / "… Log." records and keep them out of the logs."""

    def __init__(self) -> None:
        super().__init__()
        # written under the GIL by the threads that end spans or log, read and reset by the export threads
        self.dropped = {"Span": 0, "Log": 0}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == _QUEUE_FULL and isinstance(record.args, tuple) and record.args[0] in self.dropped:
            self.dropped[record.args[0]] += 1
            return False
        return True

    def take(self, what: str) -> int:
        # a drop counted between the two steps is lost: one item, not a crash
        n, self.dropped[what] = self.dropped[what], 0
        return n


_queue_full = _QueueFullCounter()
_filters_installed = False
_filters_lock = threading.Lock()


def install_log_filters() -> None:
    """Put the two filters in place once per process (idempotent)."""
    global _filters_installed
    with _filters_lock:
        if _filters_installed:
            return
        quiet = _QuietInsideGuard()
        for name in _EXPORTER_LOGGERS:
            logging.getLogger(name).addFilter(quiet)
        # First in line: the SDK's DuplicateFilter would otherwise hide most drops from us.
        if _compat.QUEUE_FULL_LOGGED:
            logging.getLogger(_PROCESSOR_LOGGER).filters.insert(0, _queue_full)
        _filters_installed = True


class _Outage:
    """The counting and the few lines, shared by the span and the log-record guards; export threads only."""

    def __init__(self, target: str, noun: str, queue_key: str) -> None:
        self.target, self.noun, self.queue_key = target, noun, queue_key
        self.lock = threading.Lock()
        self.down_since: float | None = None
        self.failed = 0  # items the exporter could not send during the current outage
        self.queue_dropped = 0  # items the queue dropped during the current outage
        self.sent = 0
        self.overflow = 0  # items the queue dropped while the collector was answering
        self.overflow_warned_at = 0.0

    def run(self, export: Callable[[], bool], count: int) -> bool:
        started = time.time()
        _inside.active, _inside.reason = True, None
        try:
            ok = export()
        except Exception as exc:  # an exporter bug must not end the batch thread's loop
            ok, _inside.reason = False, f"{type(exc).__name__}: {exc}"
        finally:
            _inside.active = False
        with self.lock:
            if ok:
                self._succeeded(count)
            else:
                self._failed_batch(count, started, _inside.reason)
        return ok

    def _failed_batch(self, count: int, started: float, reason: str | None) -> None:
        self.failed += count
        self.queue_dropped += _queue_full.take(self.queue_key)
        if self.down_since is None:
            # the outage began when this export did: the exporter spent up to its timeout retrying
            self.down_since = started
            _log.warning(
                "otel-corr: %s unreachable; %d %s dropped since %s (%s). "
                "Further failures are counted, not logged, until export resumes.",
                self.target,
                self.failed + self.queue_dropped,
                self.noun,
                _clock(started),
                reason or "export failed",
            )

    def _succeeded(self, count: int) -> None:
        self.sent += count
        queue_dropped = _queue_full.take(self.queue_key)
        if self.down_since is not None:
            self.queue_dropped += queue_dropped
            _log.info(
                "otel-corr: export to %s resumed; %d %s dropped during the outage since %s "
                "(%d not sent, %d dropped because the queue was full)",
                self.target,
                self.failed + self.queue_dropped,
                self.noun,
                _clock(self.down_since),
                self.failed,
                self.queue_dropped,
            )
            self.down_since, self.failed, self.queue_dropped = None, 0, 0
        elif queue_dropped:
            # The collector answers but items come faster than they leave: say so, at most once a minute.
            self.overflow += queue_dropped
            now = time.monotonic()
            if now - self.overflow_warned_at >= 60:
                _log.warning(
                    "otel-corr: export queue full; %d %s dropped (raise OTEL_%s_MAX_QUEUE_SIZE)",
                    self.overflow,
                    self.noun,
                    "BSP" if self.queue_key == "Span" else "BLRP",
                )
                self.overflow_warned_at, self.overflow = now, 0

    def report(self) -> None:
        with self.lock:
            if self.down_since is None:
                return
            self.queue_dropped += _queue_full.take(self.queue_key)
            _log.warning(
                "otel-corr: %s still unreachable at shutdown; %d %s dropped since %s",
                self.target,
                self.failed + self.queue_dropped,
                self.noun,
                _clock(self.down_since),
            )


class GuardedSpanExporter(SpanExporter):
    """Wrap a span exporter: never raises, counts what it could not send, one warning per outage.

    Args:
        inner: the exporter that sends (OTLP HTTP or gRPC, or a plug-in's).
        target: how the warning names where spans go, e.g. ``collector at http://…/v1/traces``.
    """

    def __init__(self, inner: SpanExporter, target: str) -> None:
        self.inner = inner
        self._outage = _Outage(target, "spans", "Span")
        install_log_filters()
        _guards.append(self._outage)

    @property
    def down(self) -> bool:
        return self._outage.down_since is not None

    @property
    def sent(self) -> int:
        """Spans exported successfully so far."""
        return self._outage.sent

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = self._outage.run(lambda: self.inner.export(spans) is SpanExportResult.SUCCESS, len(spans))
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def report(self) -> None:
        """If still in an outage, say how many spans it cost in all."""
        self._outage.report()

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def guard_log_exporter(inner: Any, target: str) -> Any:
    """The same guard around an OTLP log-record exporter (``OTEL_LOGS_EXPORTER=otlp``)."""
    from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

    outage = _Outage(target, "log records", "Log")
    install_log_filters()
    _guards.append(outage)

    class GuardedLogExporter(LogRecordExporter):
        def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
            ok = outage.run(lambda: inner.export(batch).name == "SUCCESS", len(batch))
            return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

        def shutdown(self) -> None:
            inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return bool(inner.force_flush(timeout_millis))

    return GuardedLogExporter()


def report_outages() -> None:
    """Log the final count for every guard still in an outage (called by the shutdown flush)."""
    for outage in list(_guards):
        outage.report()
