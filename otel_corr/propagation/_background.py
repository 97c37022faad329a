"""Starlette/FastAPI ``BackgroundTasks``: each task gets its own span, a child of the request span.

The tasks run after the response was sent, still inside the ASGI call and so
inside the request's context: the IDs are there.  The server span has already
ended by then (the middleware ends it when the last body chunk is sent), so
the request's duration does not include the work.

Child, not link: the work belongs to the request -- it has the request's trace
ID, so the ID the customer quotes finds it, and the waterfall shows it under
the request, after it.  A link would put it in a trace of its own, and "one
ID" would become two.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from opentelemetry.trace import Status, StatusCode

from .._context import get_request_id
from .._ids import REQUEST_ID_ATTRIBUTE
from ._import_hooks import when_imported
from ._tracing import tracer

__all__ = ["install", "uninstall"]


def _wrap(original: Any) -> Any:
    async def __call__(self: Any) -> None:
        request_id = get_request_id()
        if request_id is None:  # not inside an instrumented request
            await original(self)
            return
        func = getattr(self, "func", None)
        name = getattr(func, "__qualname__", None) or type(func).__name__
        with tracer("otel_corr.background").start_as_current_span(
            f"BackgroundTask {name}",
            attributes={REQUEST_ID_ATTRIBUTE: request_id},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                await original(self)
            except Exception as exc:
                span.record_exception(exc)
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
                raise

    return __call__


def install() -> None:
    """Wrap ``BackgroundTask.__call__`` now if Starlette is imported, else when it is.

    Never imports Starlette itself: an app that does not use it (a raw ASGI or WSGI app)
    would pay starlette and anyio in memory (about 1 MB) for nothing.
    """
    when_imported("starlette.background", _patch)


_BY = "propagation._background (propagate=background)"


def _patch(module: ModuleType) -> None:
    from .. import _patches

    _patches.replace(module.BackgroundTask, "__call__", _wrap, what="a span per background task", by=_BY)


def uninstall() -> None:
    from .. import _patches

    _patches.undo_where(_BY)
