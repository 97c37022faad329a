"""Celery: a task keeps the trace and request ID of whoever published it.

``otel_corr.instrument(celery_app)`` connects Celery's signals:

- ``before_task_publish``: a PRODUCER span ``send {task}``; the trace context
  *and the request ID* (through the global propagator) go into the message
  headers, which Celery exposes on ``task.request`` in the worker;
- ``task_prerun`` / ``task_postrun``: a CONSUMER span ``process {task}``, child
  of the producer span, with the request ID bound in the context for the whole
  task -- every log line the task writes carries it.  A task published by a
  task keeps the request ID, and its span records ``celery.parent_id``; a task
  with no publisher context (beat, a script) gets a fresh ID: its trace ID;
- ``task_failure`` / ``task_retry``: recorded on the consumer span;
- ``after_setup_logger`` / ``after_setup_task_logger``: the worker replaces the
  root logger's handlers at start (``worker_hijack_root_logger``); the format
  chosen with :func:`otel_corr.configure_logging` is put back, and the OTLP log
  handler with it;
- ``worker_process_shutdown`` / ``worker_shutdown``: queued spans are flushed.

Why our own signal handlers rather than ``opentelemetry-instrumentation-celery``:
the same reason as for HTTP clients (exact-beta pins that lag the SDK), and
we need the request ID and the task IDs in the log records, which contrib
does not do.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode

from .._context import bind_request_id, get_request_id
from .._ids import REQUEST_ID_ATTRIBUTE, format_trace_id
from ._tracing import tracer

__all__ = ["TASK_KEY", "install", "uninstall"]

#: OpenTelemetry context key holding (task_id, parent_task_id) while a task runs.
TASK_KEY = otel_context.create_key("otel_corr.celery_task")
_producers: dict[str, trace.Span] = {}
_consumers: dict[str, tuple[trace.Span, object]] = {}
_UID = "otel_corr"


class _RequestGetter(Getter[Any]):
    """Read propagated headers from ``task.request`` (Celery puts message headers there)."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        value = getattr(carrier, key, None)
        if value is None:
            headers = getattr(carrier, "headers", None) or {}
            value = headers.get(key) if isinstance(headers, dict) else None
        return None if value is None else [str(value)]

    def keys(self, carrier: Any) -> list[str]:
        return []


_getter = _RequestGetter()


def _before_publish(sender: Any = None, headers: dict[str, Any] | None = None, **kw: Any) -> None:
    if headers is None:
        return
    task_name = str(sender or headers.get("task", "task"))
    task_id = headers.get("id")
    span = tracer("otel_corr.celery").start_span(
        f"send {task_name}",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "celery",
            "messaging.operation.name": "send",
            "messaging.destination.name": str(kw.get("routing_key") or "celery"),
            "messaging.message.id": str(task_id),
            "celery.task_name": task_name,
        },
    )
    rid = get_request_id()
    if rid:
        span.set_attribute(REQUEST_ID_ATTRIBUTE, rid)
    propagate.inject(headers, context=trace.set_span_in_context(span))
    if task_id:
        _producers[str(task_id)] = span
    else:
        span.end()


def _after_publish(sender: Any = None, headers: dict[str, Any] | None = None, **kw: Any) -> None:
    span = _producers.pop(str((headers or {}).get("id")), None)
    if span is not None:
        span.end()


def _prerun(task_id: str | None = None, task: Any = None, **kw: Any) -> None:
    if task is None or task_id is None:
        return
    request = task.request
    parent = propagate.extract(request, context=otel_context.Context(), getter=_getter)
    parent_task = getattr(request, "parent_id", None)
    span = tracer("otel_corr.celery").start_span(
        f"process {task.name}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "celery",
            "messaging.operation.name": "process",
            "messaging.message.id": task_id,
            "celery.task_name": task.name,
            **({"celery.parent_id": parent_task} if parent_task else {}),
        },
    )
    rid = get_request_id(parent) or format_trace_id(span.get_span_context().trace_id)
    span.set_attribute(REQUEST_ID_ATTRIBUTE, rid)
    ctx = bind_request_id(rid, trace.set_span_in_context(span, parent))
    ctx = otel_context.set_value(TASK_KEY, (task_id, parent_task), ctx)
    _consumers[task_id] = (span, otel_context.attach(ctx))


def _postrun(task_id: str | None = None, state: str | None = None, **kw: Any) -> None:
    entry = _consumers.pop(str(task_id), None)
    if entry is None:
        return
    span, token = entry
    if state:
        span.set_attribute("celery.state", state)
    span.end()
    otel_context.detach(token)  # type: ignore[arg-type]


def _failure(task_id: str | None = None, exception: BaseException | None = None, **kw: Any) -> None:
    entry = _consumers.get(str(task_id))
    if entry is not None and exception is not None:
        span = entry[0]
        span.record_exception(exception)
        span.set_attribute("error.type", type(exception).__qualname__)
        span.set_status(Status(StatusCode.ERROR, type(exception).__qualname__))


def _retry(request: Any = None, reason: object = None, **kw: Any) -> None:
    entry = _consumers.get(str(getattr(request, "id", None)))
    if entry is not None:
        entry[0].add_event("celery.retry", {"celery.retry.reason": str(reason)[:256]})


def _after_setup_logger(**kw: Any) -> None:
    from ..logging._otlp import reattach
    from ..logging._setup import reapply

    reapply()
    reattach()  # without configure_logging(), the OTLP log handler instrument() added is gone too


def _after_setup_task_logger(logger: Any = None, **kw: Any) -> None:
    from ..logging._setup import configured

    if logger is not None and configured():
        logger.handlers.clear()
        logger.propagate = True  # task lines go through the root handler configure_logging chose


def _flush(**kw: Any) -> None:
    from .._provider import flush

    flush()


_CONNECTIONS = (
    ("before_task_publish", _before_publish),
    ("after_task_publish", _after_publish),
    ("task_prerun", _prerun),
    ("task_postrun", _postrun),
    ("task_failure", _failure),
    ("task_retry", _retry),
    ("after_setup_logger", _after_setup_logger),
    ("after_setup_task_logger", _after_setup_task_logger),
    ("worker_process_shutdown", _flush),
    ("worker_shutdown", _flush),
)


_KEY = "celery signals"


def install() -> None:
    """Connect the signals (process-wide, once)."""
    from celery import signals

    from .. import _patches

    if _patches.active(_KEY):
        return
    for name, handler in _CONNECTIONS:
        getattr(signals, name).connect(handler, weak=False, dispatch_uid=f"{_UID}.{name}")
    _patches.record(
        _KEY,
        "celery.signals (" + ", ".join(name for name, _ in _CONNECTIONS) + ")",
        "producer and consumer spans; the request ID in task headers and log records",
        "propagation._celery (propagate=celery)",
        _disconnect,
    )


def _disconnect() -> None:
    from celery import signals

    for name, handler in _CONNECTIONS:
        getattr(signals, name).disconnect(handler, dispatch_uid=f"{_UID}.{name}")


def uninstall() -> None:
    from .. import _patches

    _patches.undo(_KEY)
