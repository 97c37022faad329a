"""Stamping: every LogRecord created in the process carries the current IDs.

A record factory (``logging.setLogRecordFactory``), not a filter: a filter
works only on the handlers someone remembered to attach it to, a factory
stamps every record of every logger, whichever handlers exist now or later.
The values are taken when the record is *created*, in the caller's context,
so a record formatted later on another thread (a queue handler) keeps them.

The factory puts ``trace_id``, ``span_id``, ``request_id`` and
``service_name`` in the record's ``__dict__`` (so ``%(request_id)s`` works in
any format string).  ``Logger.makeRecord`` refuses an ``extra=`` key that is
already in the record, so a call such as ``logger.info("x",
extra={"request_id": r})`` would raise ``KeyError``.  The guard around
``makeRecord`` keeps the stamped IDs (a value from ``extra=`` may come from
user input: it must not pass for the request's ID) and sets the caller's
value aside as ``extra.request_id`` (see :func:`set_aside`), so it is not lost.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from .. import _settings
from .._context import _REQUEST_ID_KEY, hex_ids

__all__ = [
    "ASIDE",
    "FIELDS",
    "MISSING",
    "install",
    "merge_ids",
    "service_name",
    "set_aside",
    "set_service_name",
    "stamp",
    "uninstall",
]

#: What a field holds outside a request or a span.
MISSING = "-"
FIELDS = ("trace_id", "span_id", "request_id", "service_name")
#: Stamped inside a Celery task only; a caller's ``extra=`` value of the same name is kept as it is
#: elsewhere, and set aside like the IDs' inside a task (LogRecord refuses to overwrite a key).
_TASK_FIELDS = ("task_id", "parent_task_id")
_FIELD_SET = frozenset(FIELDS + _TASK_FIELDS)
#: The prefix a caller's own value for a name otel-corr writes is kept under (``extra.trace_id``).
ASIDE = "extra."


def set_aside(d: MutableMapping[str, Any], key: str, value: object) -> None:
    """Keep ``value`` in ``d`` as ``extra.<key>`` (``extra.extra.<key>`` if that is taken, and so on).

    The one rule for a name otel-corr writes itself that a caller also gave a
    value for (``extra=``, a structlog or loguru binding): otel-corr's value
    stays under the name, the caller's is kept next to it.
    """
    key = ASIDE + key
    while key in d:
        key = ASIDE + key
    d[key] = value


_service = _settings.service_name() or "unknown_service"  # OTEL_SERVICE_NAME
_TASK_KEY: str | None = None  # set when Celery is instrumented


def set_task_key(key: str) -> None:
    global _TASK_KEY
    _TASK_KEY = key


_get_current = otel_context.get_current
_current_span = trace.get_current_span


def _ids_of(ctx: otel_context.Context) -> tuple[str, str, str, tuple[str, str] | None]:
    sc = _current_span(ctx).get_span_context()
    if sc.is_valid:
        trace_id, span_id = hex_ids(sc)  # usually formatted already, for traceresponse
    else:
        trace_id = span_id = MISSING
    task = ctx.get(_TASK_KEY) if _TASK_KEY else None
    request_id = ctx.get(_REQUEST_ID_KEY)
    return (
        trace_id,
        span_id,
        request_id if isinstance(request_id, str) else MISSING,
        (str(task[0]), str(task[1] or MISSING)) if isinstance(task, tuple) else None,
    )


# A one-entry cache keyed on the Context object itself: a Context never changes once made, and the
# same one stays current for every record a span writes, so most records skip the lookups.
_last: tuple[object, tuple[str, str, str, tuple[str, str] | None]] = (None, (MISSING, MISSING, MISSING, None))


def service_name() -> str:
    return _service


def set_service_name(name: str) -> None:
    global _service
    _service = name


def merge_ids(d: MutableMapping[str, Any]) -> None:
    """Put the current IDs into an event dict the app may have bound its own values in (structlog, loguru).

    The rule of the ``extra=`` guard: our IDs win, a different value of the app's is set aside.
    """
    ids: dict[str, Any] = {}
    stamp(ids)
    for key, value in ids.items():
        if key in d:
            given = d[key]
            if not (type(given) is str and given == value):
                set_aside(d, key, given)
        d[key] = value


def stamp(d: dict[str, Any]) -> None:
    """Put the current IDs into a record's ``__dict__``; never raises."""
    global _last
    try:
        ctx = _get_current()
        cached = _last
        if cached[0] is ctx:
            ids = cached[1]
        else:
            ids = _ids_of(ctx)
            _last = (ctx, ids)
        d["trace_id"], d["span_id"], d["request_id"], task = ids
        if task is not None:  # inside a Celery task: its ID and its parent's
            d["task_id"], d["parent_task_id"] = task
    except Exception:  # logging must never fail because of us
        d["trace_id"] = d["span_id"] = d["request_id"] = MISSING
    d["service_name"] = _service


class _StampedRecord(logging.LogRecord):
    """The record class when nobody else installed a factory: stamps in ``__init__``.

    Cheaper than wrapping ``logging.LogRecord`` in a factory function: no ``*args``
    repacking, and the fields are set before the instance dict is first read.
    """

    def __init__(
        self,
        name: str,
        level: int,
        pathname: str,
        lineno: int,
        msg: object,
        args: Any,
        exc_info: Any,
        func: str | None = None,
        sinfo: str | None = None,
        **kwargs: Any,
    ) -> None:
        logging.LogRecord.__init__(self, name, level, pathname, lineno, msg, args, exc_info, func, sinfo, **kwargs)
        stamp(self.__dict__)


class _Factory:
    """The record factory wrapping whatever factory was installed before."""

    __slots__ = ("inner",)

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = self.inner(*args, **kwargs)
        stamp(record.__dict__)
        return record


def _wrap_make_record(original: Any) -> Any:
    def makeRecord(  # the name of the method it replaces
        self: logging.Logger,
        name: str,
        level: int,
        fn: str,
        lno: int,
        msg: object,
        args: Any,
        exc_info: Any,
        func: str | None = None,
        extra: Any = None,
        sinfo: str | None = None,
    ) -> logging.LogRecord:
        if extra is None or _FIELD_SET.isdisjoint(extra):
            return original(self, name, level, fn, lno, msg, args, exc_info, func, extra, sinfo)  # type: ignore[no-any-return]
        rest = {k: v for k, v in extra.items() if k not in _FIELD_SET}
        record: logging.LogRecord = original(self, name, level, fn, lno, msg, args, exc_info, func, rest, sinfo)
        d = record.__dict__
        for key in FIELDS:  # the stamped IDs win; a different value of the caller's is set aside
            if key in extra and not (type(extra[key]) is str and extra[key] == d.get(key)):
                set_aside(d, key, extra[key])
        for key in _TASK_FIELDS:
            if key in extra:
                if key not in d:
                    d[key] = extra[key]  # outside a task: nothing stamped, the caller's value stands
                elif not (type(extra[key]) is str and extra[key] == d[key]):
                    set_aside(d, key, extra[key])
        return record

    return makeRecord


_BY = "logging._stamp (instrument, instrument_logging)"
_FACTORY_KEY = "log record factory"


def install() -> None:
    """Install the factory and the ``extra=`` guard (idempotent)."""
    from .. import _patches

    if not _patches.active(_FACTORY_KEY):
        before = logging.getLogRecordFactory()
        ours: Any = _StampedRecord if before is logging.LogRecord else _Factory(before)
        logging.setLogRecordFactory(ours)

        def restore() -> bool:
            if logging.getLogRecordFactory() is not ours:  # wrapped again since: leave both
                return False
            logging.setLogRecordFactory(before)
            return True

        _patches.record(
            _FACTORY_KEY,
            "logging.setLogRecordFactory",
            "stamps trace_id, span_id, request_id, service_name on every record",
            _BY,
            restore,
        )
    _patches.replace(
        logging.Logger,
        "makeRecord",
        _wrap_make_record,
        what="keeps the stamped IDs on extra={'request_id': ...} (the caller's as extra.request_id), not KeyError",
        by=_BY,
    )


def uninstall() -> None:
    """Remove what :func:`install` installed (only if nobody wrapped it since)."""
    from .. import _patches

    _patches.undo_where(_BY)
