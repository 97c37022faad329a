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

__all__ = ["carry", "install", "uninstall"]

P = ParamSpec("P")
R = TypeVar("R")

_original_submit = ThreadPoolExecutor.submit
_original_start = threading.Thread.start
# Wrapping _bootstrap_inner, not run(), covers Thread subclasses that override run().
_original_bootstrap = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]


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


def _submit(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
    # Always bound, even to an empty context: a pool thread lives on after the request
    # that started it, and must not lend that request's IDs to later work.
    return _original_submit(self, carry(fn), *args, **kwargs)


def _start(self: threading.Thread) -> None:
    ctx = otel_context.get_current()
    if ctx:
        self._otel_corr_context = ctx  # type: ignore[attr-defined]
    _original_start(self)


def _bootstrap_inner(self: threading.Thread) -> None:
    ctx = getattr(self, "_otel_corr_context", None)
    if ctx is None:
        _original_bootstrap(self)
        return
    token = otel_context.attach(ctx)
    try:
        _original_bootstrap(self)
    finally:
        otel_context.detach(token)


def install() -> None:
    ThreadPoolExecutor.submit = _submit  # type: ignore[method-assign,assignment]
    threading.Thread.start = _start  # type: ignore[method-assign]
    threading.Thread._bootstrap_inner = _bootstrap_inner  # type: ignore[attr-defined]


def uninstall() -> None:
    ThreadPoolExecutor.submit = _original_submit  # type: ignore[method-assign]
    threading.Thread.start = _original_start  # type: ignore[method-assign]
    threading.Thread._bootstrap_inner = _original_bootstrap  # type: ignore[attr-defined]
