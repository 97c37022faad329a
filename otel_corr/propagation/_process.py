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
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context

from .. import _settings
from ._import_hooks import when_imported
from ._propagator import RequestIdPropagator

if TYPE_CHECKING:
    import multiprocessing.process
    from concurrent.futures import Future, ProcessPoolExecutor

    from opentelemetry.propagators.textmap import TextMapPropagator

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
    try:
        from opentelemetry import propagate

        textmap: TextMapPropagator = propagate.get_global_textmap()
    except ValueError:
        # A bad OTEL_PROPAGATORS: opentelemetry.propagate raises when imported.  This runs at
        # ``import otel_corr``, which must not fail (instrument() names the variable); read the
        # W3C headers, which is what the default propagators would have read.
        from opentelemetry.baggage.propagation import W3CBaggagePropagator
        from opentelemetry.propagators.composite import CompositePropagator
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        textmap = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    getter = _EnvGetter()
    ctx = textmap.extract(carrier, context=otel_context.Context(), getter=getter)  # type: ignore[arg-type]
    # The global propagator may not know the request ID yet (a child adopts it at import,
    # before any instrument() call): read it with the header name the child is configured for.
    header = _settings.request_id_header()  # OTEL_CORR_REQUEST_ID_HEADER
    ctx = RequestIdPropagator(header).extract(carrier, ctx, getter)  # type: ignore[arg-type]
    return otel_context.attach(ctx)


_BY = "propagation._process (propagate=subprocess)"
_ADOPT_KEY = "context attached at import"


def adopt_enabled() -> bool:
    """``OTEL_CORR_ADOPT_ENVIRONMENT``, in the one boolean grammar (a bad value: on, as by default).

    Read at import, where an error cannot be raised to anyone; ``instrument()`` checks the
    value and raises :class:`~otel_corr.ConfigError` on a bad one.
    """
    return _settings.adopt_environment()  # OTEL_CORR_ADOPT_ENVIRONMENT, in _settings' one grammar


def adopt_environment() -> None:
    """In a child process: continue the parent's trace and request ID from the environment.

    Called when ``otel_corr`` is imported; attaches once, in the importing
    thread, until ``otel_corr.uninstrument()``.  ``OTEL_CORR_ADOPT_ENVIRONMENT=false``
    (or ``0``, ``no``, ``off``) turns it off.
    """
    from .. import _patches

    if _patches.active(_ADOPT_KEY) or not adopt_enabled():
        return
    header = _env_name(_settings.request_id_header())  # OTEL_CORR_REQUEST_ID_HEADER
    carrier = _settings.environ()
    if "TRACEPARENT" in carrier or header in carrier:
        token = attach_carrier(carrier)
        thread = threading.get_ident()

        def detach() -> bool:
            # A context can only be detached in the thread (and contextvars Context) it was attached in.
            if threading.get_ident() != thread:
                return False
            otel_context.detach(token)  # type: ignore[arg-type]
            return True

        _patches.record(
            _ADOPT_KEY,
            "the current context (importing thread)",
            f"continues the parent's trace and request ID from TRACEPARENT/{header}",
            "propagation._process (OTEL_CORR_ADOPT_ENVIRONMENT)",
            detach,
        )


def _flush_at_exit() -> None:
    """Flush in a multiprocessing child: it leaves through ``os._exit()``, so atexit never runs; finalizers do."""
    from .. import _patches

    if _patches.active("multiprocessing exit finalizer"):
        return
    import multiprocessing.util

    from .._provider import flush

    finalizer = multiprocessing.util.Finalize(None, flush, exitpriority=10)
    _patches.record(
        "multiprocessing exit finalizer",
        "multiprocessing.util finalizers (child process)",
        "flushes queued spans when the child exits",
        _BY,
        finalizer.cancel,
    )


class _Carried:
    """A picklable callable: runs ``fn`` in the context the carrier describes, in any process."""

    __slots__ = ("carrier", "fn")

    def __init__(self, fn: Callable[..., Any], carrier: dict[str, str]) -> None:
        self.fn = fn
        self.carrier = carrier

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from ..logging import _stamp

        _stamp.install()  # a spawned child has no record factory yet
        _flush_at_exit()
        token = attach_carrier(self.carrier)
        try:
            return self.fn(*args, **kwargs)
        finally:
            otel_context.detach(token)  # type: ignore[arg-type]


# multiprocessing and concurrent.futures.process are patched when the application imports them
# (never imported here: ~2 MB an app that starts no process would pay for nothing).


def _wrap_popen_init(original: Any) -> Any:
    def __init__(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        carrier = environment() if otel_context.get_current() else {}
        if carrier:
            if len(args) > 10:  # env passed positionally (rare)
                env = args[10]
                args = (*args[:10], {**carrier, **env} if env is not None else {**os.environ, **carrier}, *args[11:])
            elif kwargs.get("env") is not None:
                kwargs["env"] = {**carrier, **kwargs["env"]}  # the caller's explicit values win
            else:
                kwargs["env"] = {**os.environ, **carrier}  # ours replace any inherited ones
        original(self, *args, **kwargs)

    return __init__


def _wrap_pool_submit(original: Any) -> Any:
    def submit(self: ProcessPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        carrier = environment()
        return original(self, _Carried(fn, carrier) if carrier else fn, *args, **kwargs)  # type: ignore[no-any-return]

    return submit


def _wrap_process_start(attribute: str) -> Callable[[Any], Any]:
    def wrap(original: Any) -> Any:
        def start(self: multiprocessing.process.BaseProcess) -> None:
            target = getattr(self, attribute, None)
            if target is not None and not isinstance(target, _Carried):
                carrier = environment()
                if carrier:
                    setattr(self, attribute, _Carried(target, carrier))
            original(self)

        return start

    return wrap


def _patch_pool(module: Any) -> None:
    from .. import _patches

    _patches.replace(
        module.ProcessPoolExecutor, "submit", _wrap_pool_submit, what="the work runs in the submitter's context", by=_BY
    )


def _patch_process(module: Any) -> None:
    from .. import _compat, _patches

    attribute = _compat.process_target_attribute(module.BaseProcess)
    if attribute is not None:
        _patches.replace(
            module.BaseProcess,
            "start",
            _wrap_process_start(attribute),
            what="the target runs in the starter's context",
            by=_BY,
        )


def install() -> None:
    from .. import _patches

    _patches.replace(
        subprocess.Popen,
        "__init__",
        _wrap_popen_init,
        what="a child started in a request gets TRACEPARENT and X_REQUEST_ID",
        by=_BY,
    )
    when_imported("concurrent.futures.process", _patch_pool)
    when_imported("multiprocessing.process", _patch_process)


def uninstall() -> None:
    from .. import _patches

    _patches.undo_where(_BY)
