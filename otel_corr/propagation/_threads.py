"""Threads: ``ThreadPoolExecutor.submit`` (hence ``loop.run_in_executor``) and ``threading.Thread``.

``asyncio.to_thread`` and anyio's thread pool (sync FastAPI endpoints) already
copy the context; the executor and ``Thread`` do not, so a function started
from a request would log with no IDs.  We capture the OpenTelemetry context
(which holds the span *and* the request ID) where the work is submitted and
attach it, with a token, where it runs.

Why not ``opentelemetry-instrumentation-threading``: it does the same for the
trace context, but it pins ``opentelemetry-instrumentation`` to one exact beta
that lags the SDK (no 0.66b2 release to match SDK 1.45.2), so depending on it
would downgrade or break users' OpenTelemetry installs.  If it is active, both
attach the same context: harmless.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context

from .. import _compat

__all__ = ["carry", "install", "uninstall"]

P = ParamSpec("P")
R = TypeVar("R")


def carry(fn: Callable[P, R]) -> Callable[P, R]:
    """Return ``fn`` bound to the current request's context, to run anywhere later.

    For code that hands work to something otel-corr does not know (a custom
    thread pool, a callback registry)::

        pool.schedule(otel_corr.carry(send_receipt), order_id)

    .. versionadded:: 0.1
    """
    ctx = otel_context.get_current()

    def carried(*args: P.args, **kwargs: P.kwargs) -> R:
        token = otel_context.attach(ctx)
        try:
            return fn(*args, **kwargs)
        finally:
            otel_context.detach(token)

    carried.__wrapped__ = fn  # type: ignore[attr-defined]
    return carried


_BY = "propagation._threads (propagate=threads)"


def _wrap_submit(original: Any) -> Any:
    def submit(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        # Always bound, even to an empty context: a pool thread lives on after the request
        # that started it, and must not lend that request's IDs to later work.
        return original(self, carry(fn), *args, **kwargs)  # type: ignore[no-any-return]

    return submit


def _wrap_start(original: Any) -> Any:
    def start(self: threading.Thread) -> None:
        ctx = otel_context.get_current()
        if ctx:
            self._otel_corr_context = ctx  # type: ignore[attr-defined]
        original(self)

    return start


def _wrap_start_public(original: Any) -> Any:
    """Without ``Thread._bootstrap_inner``: carry the context in this thread's own ``run``."""

    def start(self: threading.Thread) -> None:
        if otel_context.get_current():
            self.run = carry(self.run)  # type: ignore[method-assign]
        original(self)

    return start


def _wrap_bootstrap(original: Any) -> Any:
    def _bootstrap_inner(self: threading.Thread) -> None:
        ctx = getattr(self, "_otel_corr_context", None)
        if ctx is None:
            original(self)
            return
        token = otel_context.attach(ctx)
        try:
            original(self)
        finally:
            otel_context.detach(token)

    return _bootstrap_inner


def install() -> None:
    from .. import _patches

    _patches.replace(
        ThreadPoolExecutor, "submit", _wrap_submit, what="runs the work in the submitter's context", by=_BY
    )
    bootstrap = _compat.THREAD_BOOTSTRAP
    if bootstrap is None:
        _patches.replace(
            threading.Thread, "start", _wrap_start_public, what="runs the thread in the starter's context", by=_BY
        )
        return
    _patches.replace(threading.Thread, "start", _wrap_start, what="remembers the starting thread's context", by=_BY)
    # Wrapping the bootstrap, not run(), covers Thread subclasses that override run().
    _patches.replace(
        threading.Thread, bootstrap, _wrap_bootstrap, what="runs the thread in the context start() remembered", by=_BY
    )


def uninstall() -> None:
    from .. import _patches

    _patches.undo_where(_BY)
