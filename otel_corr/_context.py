"""The current request ID, kept in the OpenTelemetry context beside the span.

Why in the OpenTelemetry ``Context`` and not a ContextVar of our own: the
request ID then travels wherever the span travels -- through
``opentelemetry.context.attach``/``detach``, through anything that copies the
OpenTelemetry context into a thread, task or worker -- and one ``attach`` per
request binds both.  The context is itself one ContextVar, so asyncio tasks and
``contextvars.copy_context()`` carry it too.

Every bind returns a token; every token is detached in a ``finally``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanContext

from ._ids import INVALID_SPAN_ID, INVALID_TRACE_ID, format_span_id, format_trace_id

__all__ = [
    "Ids",
    "bind_request_id",
    "bound_request_id",
    "current_ids",
    "get_request_id",
    "hex_ids",
    "request_context",
    "seed_hex_ids",
]

_REQUEST_ID_KEY = otel_context.create_key("otel_corr.request_id")

# The hex IDs of the last span context asked for: the server span's IDs are needed as hex for
# traceresponse, for the log records' stamp and for current_ids(), and formatting a 128-bit
# int is not cheap.  One entry, keyed on the SpanContext object itself (immutable, and held
# here, so identity is safe); the span hex is filled in on first use.  Replaced as a whole
# tuple, so threads only ever see a consistent entry; a miss just formats again.
_hex: tuple[SpanContext | None, str, str | None] = (None, INVALID_TRACE_ID, None)


def seed_hex_ids(span_context: SpanContext, trace_hex: str) -> None:
    """Remember ``trace_hex``, already formatted by the caller, as ``span_context``'s trace ID."""
    global _hex
    _hex = (span_context, trace_hex, None)


def hex_ids(span_context: SpanContext) -> tuple[str, str]:
    """The trace ID and span ID of ``span_context`` as 32 and 16 lower-case hex digits."""
    global _hex
    last = _hex
    if last[0] is span_context:
        trace_hex = last[1]
        span_hex = last[2]
        if span_hex is not None:
            return trace_hex, span_hex
    else:
        trace_hex = format_trace_id(span_context.trace_id)
    span_hex = format_span_id(span_context.span_id)
    _hex = (span_context, trace_hex, span_hex)
    return trace_hex, span_hex


@dataclass(frozen=True, slots=True)
class Ids:
    """The IDs of the current request.

    Attributes:
        trace_id: 32 lower-case hex digits; all zeros outside a trace.
        span_id: 16 lower-case hex digits of the current span; all zeros outside a span.
        request_id: the request ID echoed to the client; ``""`` outside a request.

    An ``Ids`` is false outside a request and outside a trace.
    """

    trace_id: str = INVALID_TRACE_ID
    span_id: str = INVALID_SPAN_ID
    request_id: str = ""

    def __bool__(self) -> bool:
        return bool(self.request_id) or self.trace_id != INVALID_TRACE_ID


def get_request_id(context: otel_context.Context | None = None) -> str | None:
    """The request ID bound in ``context`` (default: the current context), or ``None``."""
    value = otel_context.get_value(_REQUEST_ID_KEY, context)
    return value if isinstance(value, str) else None


def bind_request_id(request_id: str, context: otel_context.Context | None = None) -> otel_context.Context:
    """Return a copy of ``context`` (default: the current one) carrying ``request_id``."""
    return otel_context.set_value(_REQUEST_ID_KEY, request_id, context)


def request_context(parent: otel_context.Context, span: trace.Span, request_id: str) -> otel_context.Context:
    """``parent`` with ``span`` as the current span and ``request_id`` bound.

    Through the API's public calls.  (Building it in one copy with the API's private span key saved
    about 1 % of otel-corr's per-request instructions: not worth a private name.)
    """
    return bind_request_id(request_id, trace.set_span_in_context(span, parent))


@contextmanager
def bound_request_id(request_id: str) -> Iterator[None]:
    """Bind ``request_id`` for the duration of the ``with`` block, then restore."""
    token = otel_context.attach(bind_request_id(request_id))
    try:
        yield
    finally:
        otel_context.detach(token)


def current_ids() -> Ids:
    """Return the trace ID, span ID and request ID of the current request.

    Works anywhere the request's context reaches: the endpoint, its
    dependencies, tasks and threads it starts with the context.  Outside a
    request the fields hold all-zero IDs and an empty request ID.

    In FastAPI, use it as a dependency: ``ids: Ids = Depends(otel_corr.current_ids)``
    (or the ready-made ``otel_corr.fastapi.RequestIds`` annotation).
    """
    ctx = otel_context.get_current()
    span_context = trace.get_current_span(ctx).get_span_context()
    request_id = ctx.get(_REQUEST_ID_KEY)
    if span_context.is_valid:
        return Ids(*hex_ids(span_context), request_id if isinstance(request_id, str) else "")
    return Ids(request_id=request_id if isinstance(request_id, str) else "")
