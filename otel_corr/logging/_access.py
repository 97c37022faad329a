"""The access line and the error line, written inside the request context so they carry the IDs.

uvicorn's own access line is written after the ASGI call returns, outside
the request's context, so it can only show zeros; ours is written just before
the context is detached.  The error line summarises the request in a bounded
way, with every sensitive header and query field redacted under the application's own pattern
(its ``sanitize_fields`` included: the request summary is as careful as the span).

One error, one line.  The server or framework logs the same exception again (uvicorn's
``Exception in ASGI application``, hypercorn's ``Error in ASGI Framework``, gunicorn's
``Error handling request``, Flask's ``Exception on /path [GET]``), outside the request or in its
own format.  The exception is marked with the request's IDs when our line is written (or, for
Flask, about to be); a filter on those loggers (:class:`ServerDuplicates`) recognises the same
raise by its traceback and drops the server's record when our line already went to every handler
the server's record would reach.  Otherwise the server's record stays (it goes somewhere ours did
not: no error is lost from a destination the user set up), with the request's IDs stamped on it
and named in its message.  When no handler takes our line at all (logging not set up: Python's
last resort would print it beside the server's own), a re-raised exception is left to the
server's line, which then carries the IDs.  Records the filter does not recognise (start-up
errors, protocol errors, the app's own ``logger.exception``) pass untouched.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from time import perf_counter
from types import TracebackType
from typing import Any

from .._redact import is_sensitive_header, redact_query
from ._otlp import QUIET, OTLPHandler

__all__ = [
    "ACCESS_LOGGER",
    "ERROR_LOGGER",
    "ASGI_SERVER_ERROR_LOGGERS",
    "WSGI_SERVER_ERROR_LOGGERS",
    "ServerDuplicates",
    "access_enabled",
    "log_access",
    "log_error",
    "mark_error",
    "request_summary",
    "set_access_log",
    "watch_server_errors",
]

ACCESS_LOGGER = logging.getLogger("otel_corr.access")
ERROR_LOGGER = logging.getLogger("otel_corr.error")
_INFO = logging.INFO
_ERROR = logging.ERROR
#: The loggers on which servers write an exception that escaped the application: ASGI servers
#: (gunicorn's uvicorn worker logs on uvicorn's), and WSGI servers (a response body that failed).
ASGI_SERVER_ERROR_LOGGERS = ("uvicorn.error", "hypercorn.error")
WSGI_SERVER_ERROR_LOGGERS = ("gunicorn.error",)
_MARK = "_otel_corr_error"
_MAX_FRAMES = 1000  # a traceback walked further than this is not ours (a recursion error's is long)
_MAX_HEADERS = 32
_MAX_VALUE = 256
# A W3C traceparent as the propagator accepts it (version 00 shape; later versions may append fields).
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-[0-9a-zA-Z._-]*)?")
_access = False


def set_access_log(enabled: bool) -> None:
    """Switch the access line on or off for every instrumented app in the process."""
    global _access
    _access = enabled


def access_enabled(setting: bool | None) -> bool:
    """Whether to write the access line: the app's own setting, else the process-wide switch."""
    return (_access if setting is None else setting) and ACCESS_LOGGER.isEnabledFor(_INFO)


def log_access(method: str, path: str, status: int | None, start: float, client: str, user_agent: str | None) -> None:
    """Write the access line (the caller checked :func:`access_enabled`)."""
    duration_ms = round((perf_counter() - start) * 1000, 3)
    ACCESS_LOGGER.info(
        '%s - "%s %s" %s %.1fms',
        client or "-",
        method,
        path,
        status if status is not None else "-",
        duration_ms,
        extra={
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "client": client,
            "user_agent": (user_agent or "")[:_MAX_VALUE],
        },
    )


def request_summary(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    client: str,
    skip: str,
    sanitize: re.Pattern[str],
) -> dict[str, Any]:
    """A bounded, redacted summary of a request for the error line.

    ``skip`` is the request-ID header: its raw value may have been rejected and
    is never logged (the chosen request ID is on the record anyway).  ``sanitize``
    is the application's pattern of secret header and query names.
    """
    shown: dict[str, str] = {}
    for name, value in headers.items():
        if len(shown) >= _MAX_HEADERS:
            break
        if name == skip:
            continue
        if is_sensitive_header(name, sanitize):
            value = "[REDACTED]"
        elif name == "traceparent" and not _TRACEPARENT.fullmatch(value.strip()):
            # Rejected by the propagator, so attacker-shaped: its length, as for a rejected request ID.
            value = f"[not used: {len(value)} characters]"
        shown[name[:64]] = value[:_MAX_VALUE]
    return {
        "method": method,
        "path": path[:2048],
        "query": redact_query(query, sanitize, max_items=_MAX_HEADERS, max_length=_MAX_VALUE),
        "client": client,
        "headers": shown,
    }


class _Mark:
    """What otel-corr knows of one raise of an exception: its request's IDs and who writes its line."""

    __slots__ = ("tb", "trace_id", "span_id", "request_id", "ours", "kept", "used", "logged", "reached")

    def __init__(self, tb: TracebackType | None, trace_id: str, span_id: str, request_id: str) -> None:
        self.tb = tb  # the traceback when marked: the server's record of this raise has it in its chain
        self.trace_id = trace_id
        self.span_id = span_id
        self.request_id = request_id
        self.ours = False  # our error line was written where someone reads it (not only to OTLP)
        self.kept = False  # a server's record of it was kept (stamped with the IDs)
        self.used = False  # a server's record of it was seen: a server logs one raise once
        self.logged = False  # log_error ran for it (Flask: in the signal, then again at close)
        self.reached: frozenset[logging.Handler] = frozenset()  # the handlers that accepted our line

    def suffix(self) -> str:
        return f" (request_id={self.request_id} trace_id={self.trace_id})"


def mark_error(exc: BaseException, trace_id: str, span_id: str, request_id: str) -> _Mark:
    """The mark of ``exc`` in this request (made now if it carries none of this request).

    One mark per exception object: an instance kept and raised by two requests at the same time is
    marked by the later one.  A server record of either raise may then be matched to that mark (kept
    stamped with the later request's IDs, or dropped beside our own line) or not be recognised (kept
    as the server wrote it): each error is still written, twice at worst.  Not worth a lock per error.
    """
    mark = getattr(exc, _MARK, None)
    if type(mark) is _Mark and mark.trace_id == trace_id and mark.request_id == request_id:
        return mark  # Flask: marked by the signal, then our line when the response is closed
    # New, also for an exception object raised again in a later request (an instance kept and reused).
    mark = _Mark(exc.__traceback__, trace_id, span_id, request_id)
    try:
        setattr(exc, _MARK, mark)
    except Exception:  # an exception type with __slots__ and no __dict__: no dedup, nothing worse
        pass
    return mark


def _mark_of(exc: BaseException | None, tb: TracebackType | None) -> _Mark | None:
    """The mark of ``exc`` if this record (its traceback ``tb``) is the first of the marked raise."""
    mark = getattr(exc, _MARK, None) if exc is not None else None
    if type(mark) is not _Mark or mark.used:
        return None
    # Tracebacks grow at the head as the exception leaves frames: the marked one is further down.
    for _ in range(_MAX_FRAMES):
        if tb is mark.tb:
            mark.used, mark.tb = True, None  # done with: a kept exception instance no longer holds its frames
            return mark
        if tb is None:
            return None
        tb = tb.tb_next
    return None


def _handlers(logger: logging.Logger, level: int) -> set[logging.Handler]:
    """The handlers a record of ``level`` on ``logger`` reaches (as ``Logger.callHandlers`` walks them)."""
    found: set[logging.Handler] = set()
    current: logging.Logger | None = logger
    while current is not None:
        found.update(h for h in current.handlers if level >= h.level)
        if not current.propagate:
            break
        current = current.parent
    return found


def _our_handlers() -> set[logging.Handler]:
    """The handlers our error line reaches; none when ``otel_corr.error`` is off.

    Off happens without anyone meaning it: a ``dictConfig`` run after ``import otel_corr`` with
    ``disable_existing_loggers`` (its default) disables the logger.  Then the server's line must stay.
    """
    if ERROR_LOGGER.disabled or not ERROR_LOGGER.isEnabledFor(_ERROR):
        return set()
    return _handlers(ERROR_LOGGER, _ERROR)


class ServerDuplicates(logging.Filter):
    """On a server's or framework's logger: its record of an exception otel-corr wrote a line for.

    Dropped when our line reached every handler this record would reach; otherwise kept, with
    the request's IDs stamped on it and named in its message.  Any other record passes untouched.
    """

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger

    def destinations(self, record: logging.LogRecord) -> set[logging.Handler]:
        """The handlers this record would reach (a framework's subclass may know some of them go nowhere)."""
        return _handlers(self.logger, record.levelno)

    def filter(self, record: logging.LogRecord) -> bool:
        exc_info = record.exc_info
        if not exc_info:
            return True
        try:
            mark = _mark_of(exc_info[1], exc_info[2])
            if mark is None:
                return True
            # Dropped only where our line went: the handlers that accepted it, not those it could reach.
            if mark.ours and self.destinations(record) <= mark.reached:
                return False
            mark.kept = True
            record.trace_id, record.span_id, record.request_id = mark.trace_id, mark.span_id, mark.request_id
            try:
                message = record.getMessage()
            except Exception:
                message = str(record.msg)
            # Servers end the message with a newline to put the traceback on the next line: it does anyway.
            record.msg, record.args = message.rstrip("\r\n") + mark.suffix(), ()
        except Exception:  # pragma: no cover - a filter must never lose a record
            pass
        return True


def watch_server_errors(name: str, by: str, kind: type[ServerDuplicates] = ServerDuplicates) -> None:
    """Put :class:`ServerDuplicates` on the logger ``name`` (once; undone by ``otel_corr.uninstrument()``)."""
    from .. import _patches

    key = f"logger {name!r} filter"
    if _patches.active(key):
        return
    logger = logging.getLogger(name)
    duplicates = kind(logger)
    logger.addFilter(duplicates)
    _patches.record(
        key,
        f"the {name!r} logger's filters",
        "drops its copy of an error otel-corr's error line wrote; names the request IDs on one it keeps",
        by,
        lambda: logger.removeFilter(duplicates),
    )


def log_error(exc: BaseException, summary: dict[str, Any], mark: _Mark, reraised: bool) -> None:
    """Write the ERROR line for an unhandled exception, with its traceback; once per mark.

    ``reraised``: the exception goes on to the server (or Flask), which logs it too.  With no
    handler that shows our line (logging not set up: only the OTLP handler, if any), that server
    line is the one, and carries the IDs; ours then goes to OTLP only, not to its last-resort print.
    """
    try:
        if mark.logged:
            return  # Flask: written in the signal already; complete() at close comes back here
        mark.logged = True
        reaches = _our_handlers()
        shown = any(not isinstance(h, OTLPHandler) for h in reaches)
        quiet = not shown and (reraised or mark.kept)
        if quiet and not reaches:
            return
        # Python's last resort prints only the message and the traceback: name the IDs there.
        fmt = "Unhandled %s in %s %s" if shown else "Unhandled %s in %s %s" + mark.suffix().replace("%", "%%")
        extra: dict[str, Any] = {"method": summary["method"], "path": summary["path"], "request": summary}
        if quiet:
            extra[QUIET] = True
        fn, lno, func, _ = ERROR_LOGGER.findCaller()
        record = ERROR_LOGGER.makeRecord(
            ERROR_LOGGER.name,
            _ERROR,
            fn,
            lno,
            fmt,
            (type(exc).__qualname__, summary["method"], summary["path"]),
            (type(exc), exc, exc.__traceback__),
            func,
            extra,
        )
        if not quiet and ERROR_LOGGER.filter(record):
            # What a filter on the logger or on a handler turns away did not get our line: the
            # server's record must still go there.  (Filters are asked again as the record is handled.)
            mark.reached = frozenset(h for h in reaches if h.filter(record))
            mark.ours = any(not isinstance(h, OTLPHandler) for h in mark.reached)
        ERROR_LOGGER.handle(record)
    except Exception:  # pragma: no cover - logging itself never raises, but never let it break a response
        pass


start_time = perf_counter
