"""Subprocesses: the environment carrier, and work shipped to other Python processes.

Carrier: OpenTelemetry's environment-variable convention -- ``TRACEPARENT``,
``TRACESTATE``, ``BAGGAGE`` -- plus ``X_REQUEST_ID`` for the request ID (the
header name, upper-cased, dashes as underscores; ``X_CORRELATION_ID`` with
``OTEL_CORR_REQUEST_ID_HEADER=X-Correlation-ID``).  Its own variable rather
than baggage: baggage travels to every downstream service, including ones
that are not ours, and any program can read ``$X_REQUEST_ID``.

- ``subprocess`` (``run``, ``Popen``, ``check_output``...): a child started
  inside a request gets the variables in its environment, whatever language.
- ``multiprocessing.Process`` and ``ProcessPoolExecutor``: the target is
  wrapped in :class:`_Carried`, which pickles with the carrier and attaches it
  in the child, for every start method (fork, spawn, forkserver).
- A Python child that imports ``otel_corr`` adopts the variables at start
  (:func:`adopt_environment`), with no code.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context

from ._import_hooks import when_imported
from ._propagator import RequestIdPropagator

if TYPE_CHECKING:
    import multiprocessing.process
    from concurrent.futures import Future, ProcessPoolExecutor

__all__ = ["adopt_environment", "attach_carrier", "environment", "install", "uninstall"]


def _env_name(key: str) -> str:
    return key.upper().replace("-", "_")


class _EnvSetter:
    def set(self, carrier: dict[str, str], key: str, value: str) -> None:
        carrier[_env_name(key)] = value


class _EnvGetter:
    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(_env_name(key))
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier)


def environment() -> dict[str, str]:
    """The current context as environment variables (``TRACEPARENT``, ``X_REQUEST_ID``...).

    Empty outside a request or trace.  Pass it to a child yourself where
    otel-corr cannot see the spawn: ``env={**os.environ, **otel_corr.propagation.environment()}``.

    .. versionadded:: 0.1
    """
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.get_global_textmap().inject(carrier, setter=_EnvSetter())  # type: ignore[arg-type]
    return carrier


def attach_carrier(carrier: Mapping[str, str]) -> object:
    """Attach the context an environment-style carrier describes; returns the token to detach."""
    from opentelemetry import propagate

    getter = _EnvGetter()
    ctx = propagate.get_global_textmap().extract(carrier, context=otel_context.Context(), getter=getter)  # type: ignore[arg-type]
    # The global propagator may not know the request ID yet (a child adopts it at import,
    # before any instrument() call): read it with the header name the child is configured for.
    header = os.environ.get("OTEL_CORR_REQUEST_ID_HEADER") or "X-Request-ID"
    ctx = RequestIdPropagator(header).extract(carrier, ctx, getter)  # type: ignore[arg-type]
    return otel_context.attach(ctx)


_adopted = False


def adopt_environment() -> None:
    """In a child process: continue the parent's trace and request ID from the environment.

    Called when ``otel_corr`` is imported; attaches once, in the importing
    thread, for the life of the process.  ``OTEL_CORR_ADOPT_ENVIRONMENT=false``
    turns it off.
    """
    global _adopted
    if _adopted or os.environ.get("OTEL_CORR_ADOPT_ENVIRONMENT", "true").strip().lower() in ("false", "0", "no"):
        return
    header = _env_name(os.environ.get("OTEL_CORR_REQUEST_ID_HEADER") or "X-Request-ID")
    if "TRACEPARENT" in os.environ or header in os.environ:
        _adopted = True
        attach_carrier(os.environ)


_flush_registered = False


class _Carried:
    """A picklable callable: runs ``fn`` in the context the carrier describes, in any process."""

    __slots__ = ("carrier", "fn")

    def __init__(self, fn: Callable[..., Any], carrier: dict[str, str]) -> None:
        self.fn = fn
        self.carrier = carrier

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        global _flush_registered
        from ..logging import _stamp

        _stamp.install()  # a spawned child has no record factory yet
        if not _flush_registered:
            # multiprocessing children leave through os._exit(): atexit never runs, finalizers do.
            import multiprocessing.util

            from .._provider import flush

            multiprocessing.util.Finalize(None, flush, exitpriority=10)
            _flush_registered = True
        token = attach_carrier(self.carrier)
        try:
            return self.fn(*args, **kwargs)
        finally:
            otel_context.detach(token)  # type: ignore[arg-type]


# multiprocessing and concurrent.futures.process are patched when the application imports them
# (never imported here: ~2 MB an app that starts no process would pay for nothing).
_originals: dict[str, Any] = {}


def _popen_init(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
    carrier = environment() if otel_context.get_current() else {}
    if carrier:
        if len(args) > 10:  # env passed positionally (rare)
            env = args[10]
            args = (*args[:10], {**carrier, **env} if env is not None else {**os.environ, **carrier}, *args[11:])
        elif kwargs.get("env") is not None:
            kwargs["env"] = {**carrier, **kwargs["env"]}  # the caller's explicit values win
        else:
            kwargs["env"] = {**os.environ, **carrier}  # ours replace any inherited ones
    _originals["popen"](self, *args, **kwargs)


def _pool_submit(self: ProcessPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
    carrier = environment()
    return _originals["pool"](self, _Carried(fn, carrier) if carrier else fn, *args, **kwargs)  # type: ignore[no-any-return]


def _process_start(self: multiprocessing.process.BaseProcess) -> None:
    target = getattr(self, "_target", None)
    if target is not None and not isinstance(target, _Carried):
        carrier = environment()
        if carrier:
            self._target = _Carried(target, carrier)  # type: ignore[attr-defined]
    _originals["process"](self)


def _patch_pool(module: Any) -> None:
    if "pool" not in _originals:
        _originals["pool"] = module.ProcessPoolExecutor.submit
        module.ProcessPoolExecutor.submit = _pool_submit


def _patch_process(module: Any) -> None:
    if "process" not in _originals:
        _originals["process"] = module.BaseProcess.start
        module.BaseProcess.start = _process_start


def install() -> None:
    if "popen" not in _originals:
        _originals["popen"] = subprocess.Popen.__init__
        subprocess.Popen.__init__ = _popen_init  # type: ignore[method-assign]
    when_imported("concurrent.futures.process", _patch_pool)
    when_imported("multiprocessing.process", _patch_process)


def uninstall() -> None:
    import sys

    if "popen" in _originals:
        subprocess.Popen.__init__ = _originals.pop("popen")  # type: ignore[method-assign]
    if "pool" in _originals:
        sys.modules["concurrent.futures.process"].ProcessPoolExecutor.submit = _originals.pop("pool")
    if "process" in _originals:
        sys.modules["multiprocessing.process"].BaseProcess.start = _originals.pop("process")
