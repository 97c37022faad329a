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
- one warning when an outage starts, one more when export works again, at the
  same level so that whoever saw the first sees the second (Python prints
  WARNING and above when logging is not set up), and a last warning from
  :func:`report_outages` at shutdown if it never did;
- a collector on this machine (localhost, 127.0.0.1, ::1) that does not answer
  gets a suggestion: start ``otel-corr serve``, or point
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` at the collector you run.

:func:`guard_log_exporter` does the same for the log-record exporter
(``OTEL_LOGS_EXPORTER``, ``otlp`` by default), whose batch processor behaves
the same way; guards sending to one collector share one outage, so spans and
log records lost together are one warning and one recovery line.

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

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from . import _compat

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["GuardedSpanExporter", "collector", "guard_log_exporter", "install_log_filters", "report_outages"]

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


def _warn(msg: str, *args: object) -> None:
    """A warning on ``otel_corr``, its origin named once.

    A handler's format names the logger (``otel_corr: collector at …``); with no handler set up, Python's
    last-resort handler prints the bare message, so only then does the message name otel-corr itself.
    """
    from .logging._otlp import only_ours  # the OTLP log handler, if any, is not one the user set up

    _log.warning("otel-corr: " + msg if only_ours(_log) else msg, *args)


def _local(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.1, ::1, the rest of 127.0.0.0/8)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def collector(endpoint: str) -> tuple[str, str]:
    """How the lines name the collector at ``endpoint``, and what they suggest when it is down.

    The name is the scheme, host and port (``collector at http://localhost:4318``): spans and log records
    go to two paths of one collector, and never a password written in the URL.  For a collector on this
    machine (localhost, a loopback address) the suggestion is the local backend.
    """
    try:
        parts = urlsplit(endpoint)
        host, port = parts.hostname or "", parts.port
    except ValueError:  # a bad port: the exporter will say so; name what was given
        return f"collector at {endpoint}", ""
    if not host:
        return f"collector at {endpoint}", ""
    shown = f"[{host}]" if ":" in host else host
    target = f"collector at {parts.scheme or 'http'}://{shown}" + (f":{port}" if port else "")
    hint = ""
    if _local(host):
        hint = (
            " To see your traces on this machine, start the local backend: `otel-corr serve`;"
            " if you run a collector elsewhere, set OTEL_EXPORTER_OTLP_ENDPOINT to its URL."
        )
    return target, hint


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


def _count(n: int, noun: str) -> str:
    """``1 span``, ``2 spans``, ``1 log record``: ``noun`` is the plural (``spans``, ``log records``)."""
    return f"{n} {noun[:-1] if n == 1 and noun.endswith('s') else noun}"


class _Outage:
    """One collector's counting and its few lines, shared by the span and log-record guards that send to it.

    Spans and log records usually go to the same collector: one outage is one warning and one recovery
    line, whichever signal noticed first, with the count of each.  Export threads only.
    """

    def __init__(self, target: str, hint: str) -> None:
        self.target, self.hint = target, hint
        self.lock = threading.Lock()
        self.down_since: float | None = None
        self.nouns: dict[str, str] = {}  # "spans" -> "Span": the SDK's name in its "Queue full" warning
        self.failed: dict[str, int] = {}  # items the exporter could not send during the current outage
        self.queue_dropped: dict[str, int] = {}  # items the queue dropped during the current outage
        self.sent: dict[str, int] = {}
        self.overflow: dict[str, int] = {}  # items the queue dropped while the collector was answering
        self.overflow_warned_at = 0.0

    def add(self, noun: str, queue_key: str) -> None:
        with self.lock:
            self.nouns[noun] = queue_key
            for counts in (self.failed, self.queue_dropped, self.sent, self.overflow):
                counts.setdefault(noun, 0)

    def run(self, noun: str, export: Callable[[], bool], count: int) -> bool:
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
                self._succeeded(noun, count)
            else:
                self._failed_batch(noun, count, started, _inside.reason)
        return ok

    def _take_queue_drops(self) -> None:
        for noun, key in self.nouns.items():
            self.queue_dropped[noun] += _queue_full.take(key)

    def _lost(self, *counts: dict[str, int]) -> str:
        """``3 spans, 2 log records``: each noun with its total over ``counts``, zeros left out (one at least)."""
        totals = {noun: sum(c[noun] for c in counts) for noun in self.nouns}
        shown = [_count(n, noun) for noun, n in totals.items() if n] or [_count(0, next(iter(totals)))]
        return ", ".join(shown)

    def _failed_batch(self, noun: str, count: int, started: float, reason: str | None) -> None:
        self.failed[noun] += count
        self._take_queue_drops()
        if self.down_since is None:
            # the outage began when this export did: the exporter spent up to its timeout retrying
            self.down_since = started
            _warn(
                "%s unreachable; %s dropped since %s (%s). "
                "Further failures are counted, not logged, until export resumes.%s",
                self.target,
                self._lost(self.failed, self.queue_dropped),
                _clock(started),
                reason or "export failed",
                self.hint,
            )

    def _succeeded(self, noun: str, count: int) -> None:
        self.sent[noun] += count
        if self.down_since is not None:
            self._take_queue_drops()
            # WARNING like the outage it ends: whoever saw that line (Python's last-resort handler shows
            # WARNING and above when logging is not set up) must see this one too.
            _warn(
                "export to %s resumed; %s dropped during the outage since %s "
                "(not sent: %s; dropped because the queue was full: %s)",
                self.target,
                self._lost(self.failed, self.queue_dropped),
                _clock(self.down_since),
                self._lost(self.failed),
                self._lost(self.queue_dropped),
            )
            self.down_since = None
            for counts in (self.failed, self.queue_dropped):
                counts.update(dict.fromkeys(counts, 0))
            return
        queue_dropped = _queue_full.take(self.nouns[noun])
        if queue_dropped:
            # The collector answers but items come faster than they leave: say so, at most once a minute.
            self.overflow[noun] += queue_dropped
            now = time.monotonic()
            if now - self.overflow_warned_at >= 60:
                _warn(
                    "export queue full; %s dropped (raise OTEL_%s_MAX_QUEUE_SIZE)",
                    _count(self.overflow[noun], noun),
                    "BSP" if self.nouns[noun] == "Span" else "BLRP",
                )
                self.overflow_warned_at, self.overflow[noun] = now, 0

    def report(self) -> None:
        with self.lock:
            if self.down_since is None:
                return
            self._take_queue_drops()
            _warn(
                "%s still unreachable at shutdown; %s dropped since %s",
                self.target,
                self._lost(self.failed, self.queue_dropped),
                _clock(self.down_since),
            )


def _outage(target: str, hint: str, noun: str, queue_key: str) -> _Outage:
    """The outage state of ``target``, shared by every guard sending there (made on first use)."""
    with _filters_lock:
        outage = next((o for o in _guards if o.target == target), None)
        if outage is None:
            outage = _Outage(target, hint)
            _guards.append(outage)
    outage.add(noun, queue_key)
    return outage


class GuardedSpanExporter(SpanExporter):
    """Wrap a span exporter: never raises, counts what it could not send, one warning per outage.

    Args:
        inner: the exporter that sends (OTLP HTTP or gRPC, or a plug-in's).
        target: how the warning names where spans go, e.g. ``collector at http://localhost:4318``
            (see :func:`collector`); guards with the same target share one outage and its lines.
        hint: said after the outage warning (what to do about it), or nothing.
    """

    def __init__(self, inner: SpanExporter, target: str, *, hint: str = "") -> None:
        self.inner = inner
        install_log_filters()
        self._outage = _outage(target, hint, "spans", "Span")

    @property
    def down(self) -> bool:
        return self._outage.down_since is not None

    @property
    def sent(self) -> int:
        """Spans exported successfully so far."""
        return self._outage.sent["spans"]

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = self._outage.run("spans", lambda: self.inner.export(spans) is SpanExportResult.SUCCESS, len(spans))
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def report(self) -> None:
        """If still in an outage, say how many spans it cost in all."""
        self._outage.report()

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def guard_log_exporter(inner: Any, target: str, *, hint: str = "") -> Any:
    """The same guard around a log-record exporter (``OTEL_LOGS_EXPORTER``, ``otlp`` by default).

    With the target of the span guard (the same collector), one outage gives one warning for both.
    """
    from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

    install_log_filters()
    outage = _outage(target, hint, "log records", "Log")

    class GuardedLogExporter(LogRecordExporter):
        def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
            ok = outage.run("log records", lambda: inner.export(batch).name == "SUCCESS", len(batch))
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
